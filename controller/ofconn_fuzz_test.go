package controller

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/sirupsen/logrus"
)

// FuzzOFRead feeds arbitrary bytes through the framing reader and the
// dispatcher (with requests of every kind pending) and through the HELLO,
// PORT_DESC and flow stats decoders. Any panic, recovered or not, fails.
func FuzzOFRead(f *testing.F) {
	onfRole := make([]byte, 24)
	binary.BigEndian.PutUint32(onfRole[0:4], ONFExperimenterID)
	binary.BigEndian.PutUint32(onfRole[4:8], ONFETRoleStatus)
	binary.BigEndian.PutUint32(onfRole[8:12], 3)
	mpFlow := func(xid uint32, more bool, body []byte) []byte {
		p := make([]byte, 8)
		binary.BigEndian.PutUint16(p[0:2], OFPMPFlow)
		if more {
			p[3] = 1
		}
		return ofSimple(OFPTMultipartReply, xid, append(p, body...))
	}
	ps := make([]byte, 8, 8+ofpPortLen)
	ps = append(ps, ofFakePort(3, "vnet3")...)
	for _, seed := range [][]byte{
		ofSimple(OFPTEchoRequest, 1, []byte("x")),
		ofSimple(OFPTBarrierReply, 1, nil),
		ofSimple(OFPTExperimenter, 0, onfRole),
		ofSimple(OFPTPortStatus, 0, ps),
		ofErrorMsg(3, OFPETBadAction, 4, []byte{1, 2, 3}),
		ofErrorMsg(3, OFPETExperimenter, 2313, []byte{0x4f, 0x4e, 0x46, 0}),
		append(mpFlow(2, true, ofFakeFlowStats(1)), mpFlow(2, false, ofFakeFlowStats(2))...),
		mpFlow(2, false, []byte{0, 200, 0}),
		ofRoleRequestMsg(5, OFRoleSlave, 9),
		ofHelloMsg(1),
		{4, 0, 0, 4, 0, 0, 0, 0},
		{4, 19, 0xff, 0xff},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) >= 8 {
			_ = ofHelloOffers13(ofDecodeHeader(data), data)
		}
		_, _ = ofParseError(data)
		_, _ = ofSplitFlowStats([][]byte{data})

		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		l := logrus.New()
		l.SetOutput(io.Discard)
		c := newOFConn(a, l, ofDefaultOptions())
		reply := &ofPending{kind: ofPendReply, op: "barrier", want: OFPTBarrierReply, ch: make(chan ofReply, 1)}
		flows := &ofPending{kind: ofPendMultipart, op: "flows", mpType: OFPMPFlow, ch: make(chan ofReply, 1)}
		ports := &ofPending{kind: ofPendMultipart, op: "ports", mpType: OFPMPPortDesc, ch: make(chan ofReply, 1)}
		batch := &ofBatch{}
		c.pending[1] = reply
		c.pending[2] = flows
		c.pending[3] = &ofPending{kind: ofPendBatch, op: "bundle add", batch: batch, index: 0}
		c.pending[4] = ports
		c.pending[5] = &ofPending{kind: ofPendReply, op: "role", want: OFPTRoleReply, ch: make(chan ofReply, 1)}
		_ = c.readLoop(bufio.NewReader(bytes.NewReader(data)))
		if n := c.panics.Load(); n != 0 {
			t.Fatalf("decode panicked on %x", data)
		}
		select {
		case r := <-flows.ch:
			if r.err == nil {
				_, _ = ofSplitFlowStats(flows.parts)
			}
		default:
		}
		select {
		case r := <-ports.ch:
			if r.err == nil {
				_ = c.loadPortDesc(ports.parts)
			}
		default:
		}
		_ = c.Ports()
		_ = c.Role()
	})
}
