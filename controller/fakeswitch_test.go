package controller

// A scripted in-memory OpenFlow 1.3 switch for OFConn tests.

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

type ofFakeErr struct {
	typ, code uint16
	exp       uint32 // experimenter id for OFPET_EXPERIMENTER
}

type ofFakeSwitch struct {
	t    testing.TB
	nc   net.Conn
	br   *bufio.Reader
	wmu  sync.Mutex
	dpid uint64

	mu        sync.Mutex
	ports     map[uint32]string
	role      OFRole
	gen       uint64
	genSet    bool
	flowStats [][]byte // entries returned for OFPMP_FLOW
	perPart   int      // entries per multipart reply part
	bundles   map[uint32][][]byte
	rejected  map[uint32]int
	installed [][]byte
	received  []ofHeader
	discards  int
	commits   int
	// addErr rejects the i-th message added to a bundle (at add time, like OVS
	// does for decode/validation errors).
	addErr func(i int, inner []byte) *ofFakeErr
	// commitErr rejects the i-th message of a bundle at commit time.
	commitErr func(i int, inner []byte) *ofFakeErr
	// flowModErr rejects a flow-mod sent outside a bundle.
	flowModErr func(msg []byte) *ofFakeErr
	// delayErrorsToBarrier queues errors for plain flow-mods and sends them in
	// the same write as the next barrier reply (error first).
	delayErrorsToBarrier bool
	errorsAfterBarrier   bool
	queued               [][]byte
	// hook sees every message first; returning true means handled.
	hook func(fs *ofFakeSwitch, h ofHeader, msg []byte) bool
	// silent: answer nothing at all (not even echo) after the handshake.
	silent bool
}

func ofNewFakeSwitch(t testing.TB, nc net.Conn, dpid uint64) *ofFakeSwitch {
	return &ofFakeSwitch{
		t: t, nc: nc, br: bufio.NewReader(nc), dpid: dpid,
		ports:   map[uint32]string{1: "eth0", 2: "vnet0", OFPPLocal: "br0"},
		role:    OFRoleEqual,
		perPart: 100,
		bundles: map[uint32][][]byte{},
	}
}

func (fs *ofFakeSwitch) send(b []byte) {
	fs.wmu.Lock()
	defer fs.wmu.Unlock()
	_, _ = fs.nc.Write(b)
}

func (fs *ofFakeSwitch) read() (ofHeader, []byte, error) {
	var hb [8]byte
	if _, err := io.ReadFull(fs.br, hb[:]); err != nil {
		return ofHeader{}, nil, err
	}
	h := ofDecodeHeader(hb[:])
	msg := make([]byte, h.Length)
	copy(msg, hb[:])
	if _, err := io.ReadFull(fs.br, msg[8:]); err != nil {
		return h, nil, err
	}
	return h, msg, nil
}

// serve answers our HELLO and then handles requests until the pipe closes.
func (fs *ofFakeSwitch) serve() {
	fs.send(ofHelloMsg(1))
	for {
		h, msg, err := fs.read()
		if err != nil {
			return
		}
		fs.mu.Lock()
		fs.received = append(fs.received, h)
		hook, silent := fs.hook, fs.silent
		fs.mu.Unlock()
		if hook != nil && hook(fs, h, msg) {
			continue
		}
		if silent && h.Type != OFPTHello && h.Type != OFPTFeaturesRequest && h.Type != OFPTMultipartReq {
			continue
		}
		fs.handle(h, msg)
	}
}

func ofFakeErrMsg(xid uint32, e *ofFakeErr, data []byte) []byte {
	if len(data) > 64 {
		data = data[:64]
	}
	if e.typ == OFPETExperimenter {
		p := make([]byte, 8)
		binary.BigEndian.PutUint16(p[0:2], e.typ)
		binary.BigEndian.PutUint16(p[2:4], e.code)
		binary.BigEndian.PutUint32(p[4:8], e.exp)
		return ofSimple(OFPTError, xid, append(p, data...))
	}
	return ofErrorMsg(xid, e.typ, e.code, data)
}

func (fs *ofFakeSwitch) handle(h ofHeader, msg []byte) {
	switch h.Type {
	case OFPTHello, OFPTEchoReply:
	case OFPTEchoRequest:
		fs.send(ofSimple(OFPTEchoReply, h.Xid, msg[8:]))
	case OFPTFeaturesRequest:
		p := make([]byte, 24)
		binary.BigEndian.PutUint64(p[0:8], fs.dpid)
		p[12] = 254
		fs.send(ofSimple(OFPTFeaturesReply, h.Xid, p))
	case OFPTMultipartReq:
		fs.handleMultipart(h, msg)
	case OFPTRoleRequest:
		fs.handleRole(h, msg)
	case OFPTBarrierRequest:
		fs.mu.Lock()
		q := fs.queued
		fs.queued = nil
		fs.mu.Unlock()
		var out []byte
		if !fs.errorsAfterBarrier {
			for _, m := range q {
				out = append(out, m...)
			}
		}
		out = append(out, ofSimple(OFPTBarrierReply, h.Xid, nil)...)
		if fs.errorsAfterBarrier {
			for _, m := range q {
				out = append(out, m...)
			}
		}
		fs.send(out) // one write: ordering on the wire is exactly this
	case OFPTFlowMod:
		fs.mu.Lock()
		var e *ofFakeErr
		if fs.role == OFRoleSlave {
			e = &ofFakeErr{typ: OFPETBadRequest, code: OFPBRCIsSlave}
		} else if fs.flowModErr != nil {
			e = fs.flowModErr(msg)
		}
		if e == nil {
			fs.installed = append(fs.installed, msg)
			fs.mu.Unlock()
			return
		}
		if fs.delayErrorsToBarrier || fs.errorsAfterBarrier {
			fs.queued = append(fs.queued, ofFakeErrMsg(h.Xid, e, msg))
			fs.mu.Unlock()
			return
		}
		fs.mu.Unlock()
		fs.send(ofFakeErrMsg(h.Xid, e, msg))
	case OFPTExperimenter:
		fs.handleExperimenter(h, msg)
	default:
		fs.send(ofFakeErrMsg(h.Xid, &ofFakeErr{typ: OFPETBadRequest, code: 1}, msg))
	}
}

func (fs *ofFakeSwitch) handleMultipart(h ofHeader, msg []byte) {
	mpType := binary.BigEndian.Uint16(msg[8:10])
	part := func(body []byte, more bool) []byte {
		p := make([]byte, 8, 8+len(body))
		binary.BigEndian.PutUint16(p[0:2], mpType)
		if more {
			binary.BigEndian.PutUint16(p[2:4], OFPMPFReplyMore)
		}
		return ofSimple(OFPTMultipartReply, h.Xid, append(p, body...))
	}
	switch mpType {
	case OFPMPPortDesc:
		fs.mu.Lock()
		var body []byte
		for no, name := range fs.ports {
			body = append(body, ofFakePort(no, name)...)
		}
		fs.mu.Unlock()
		fs.send(part(body, false))
	case OFPMPFlow:
		if len(msg) != 16+40 || msg[16] != 0xff || binary.BigEndian.Uint32(msg[20:24]) != OFPPAny {
			fs.t.Errorf("bad flow stats request %x", msg)
		}
		fs.mu.Lock()
		entries, per := fs.flowStats, fs.perPart
		fs.mu.Unlock()
		if len(entries) == 0 {
			fs.send(part(nil, false))
			return
		}
		for i := 0; i < len(entries); i += per {
			j := min(i+per, len(entries))
			var body []byte
			for _, e := range entries[i:j] {
				body = append(body, e...)
			}
			fs.send(part(body, j < len(entries)))
		}
	default:
		fs.send(ofFakeErrMsg(h.Xid, &ofFakeErr{typ: OFPETBadRequest, code: 2}, msg))
	}
}

func ofFakePort(no uint32, name string) []byte {
	p := make([]byte, ofpPortLen)
	binary.BigEndian.PutUint32(p[0:4], no)
	copy(p[16:32], name)
	return p
}

func ofFakeFlowStats(cookie uint64) []byte {
	e := make([]byte, 56)
	binary.BigEndian.PutUint16(e[0:2], 56)
	binary.BigEndian.PutUint64(e[24:32], cookie)
	binary.BigEndian.PutUint16(e[48:50], 1) // OXM match
	binary.BigEndian.PutUint16(e[50:52], 4)
	return e
}

// handleRole arbitrates like OVS: MASTER/SLAVE claims carry a generation id
// that must not go backwards (serial number arithmetic).
func (fs *ofFakeSwitch) handleRole(h ofHeader, msg []byte) {
	role := OFRole(binary.BigEndian.Uint32(msg[8:12]))
	gen := binary.BigEndian.Uint64(msg[16:24])
	fs.mu.Lock()
	if role == OFRoleMaster || role == OFRoleSlave {
		if fs.genSet && int64(gen-fs.gen) < 0 {
			fs.mu.Unlock()
			fs.send(ofFakeErrMsg(h.Xid, &ofFakeErr{typ: OFPETRoleRequestFailed, code: OFPRRFCStale}, msg))
			return
		}
		fs.gen, fs.genSet = gen, true
	}
	if role != OFRoleNoChange {
		fs.role = role
	}
	p := make([]byte, 16)
	binary.BigEndian.PutUint32(p[0:4], uint32(fs.role))
	binary.BigEndian.PutUint64(p[8:16], fs.gen)
	fs.mu.Unlock()
	fs.send(ofSimple(OFPTRoleReply, h.Xid, p))
}

func (fs *ofFakeSwitch) handleExperimenter(h ofHeader, msg []byte) {
	exp := binary.BigEndian.Uint32(msg[8:12])
	typ := binary.BigEndian.Uint32(msg[12:16])
	if exp != ONFExperimenterID {
		fs.send(ofFakeErrMsg(h.Xid, &ofFakeErr{typ: OFPETBadRequest, code: 3}, msg))
		return
	}
	bid := binary.BigEndian.Uint32(msg[16:20])
	switch typ {
	case ONFETBundleCtrl:
		ctrl := binary.BigEndian.Uint16(msg[20:22])
		reply := func(t uint16) {
			b := make([]byte, 8)
			copy(b, msg[16:24])
			binary.BigEndian.PutUint16(b[4:6], t)
			hd := make([]byte, 8)
			binary.BigEndian.PutUint32(hd[0:4], ONFExperimenterID)
			binary.BigEndian.PutUint32(hd[4:8], ONFETBundleCtrl)
			fs.send(ofSimple(OFPTExperimenter, h.Xid, append(hd, b...)))
		}
		fs.mu.Lock()
		slave := fs.role == OFRoleSlave
		fs.mu.Unlock()
		if slave {
			fs.send(ofFakeErrMsg(h.Xid, &ofFakeErr{typ: OFPETBadRequest, code: OFPBRCIsSlave}, msg))
			return
		}
		switch ctrl {
		case 0: // open
			fs.mu.Lock()
			fs.bundles[bid] = [][]byte{}
			fs.mu.Unlock()
			reply(1)
		case 4: // commit
			fs.mu.Lock()
			msgs, ok := fs.bundles[bid]
			delete(fs.bundles, bid)
			fs.commits++
			var errs []byte
			if ok && fs.commitErr != nil {
				for i, m := range msgs {
					if e := fs.commitErr(i, m); e != nil {
						errs = append(errs, ofFakeErrMsg(binary.BigEndian.Uint32(m[4:8]), e, m)...)
						errs = append(errs, ofFakeErrMsg(h.Xid, &ofFakeErr{typ: OFPETExperimenter, code: 2313, exp: ONFExperimenterID}, msg)...)
						break
					}
				}
			}
			if ok && errs == nil {
				fs.installed = append(fs.installed, msgs...)
			}
			fs.mu.Unlock()
			if !ok {
				fs.send(ofFakeErrMsg(h.Xid, &ofFakeErr{typ: OFPETExperimenter, code: 2302, exp: ONFExperimenterID}, msg))
			} else if errs != nil {
				fs.send(errs)
			} else {
				reply(5)
			}
		case 6: // discard
			fs.mu.Lock()
			delete(fs.bundles, bid)
			fs.discards++
			fs.mu.Unlock()
			reply(7)
		}
	case ONFETBundleAdd:
		inner := msg[24:]
		if ih := ofDecodeHeader(inner); ih.Xid != h.Xid || int(ih.Length) != len(inner) {
			fs.send(ofFakeErrMsg(h.Xid, &ofFakeErr{typ: OFPETExperimenter, code: 2309, exp: ONFExperimenterID}, msg))
			return
		}
		fs.mu.Lock()
		msgs, ok := fs.bundles[bid]
		var e *ofFakeErr
		if fs.addErr != nil {
			e = fs.addErr(len(msgs)+fs.rejectedIn(bid), inner)
		}
		if ok && e == nil {
			fs.bundles[bid] = append(msgs, append([]byte(nil), inner...))
		}
		if e != nil {
			fs.rejected[bid]++
		}
		fs.mu.Unlock()
		if !ok {
			fs.send(ofFakeErrMsg(h.Xid, &ofFakeErr{typ: OFPETExperimenter, code: 2302, exp: ONFExperimenterID}, msg))
		} else if e != nil {
			fs.send(ofFakeErrMsg(h.Xid, e, msg))
		}
	}
}

// rejectedIn counts adds refused in bundle bid so addErr sees the position
// of an add in the bundle, refused ones included.
func (fs *ofFakeSwitch) rejectedIn(bid uint32) int {
	if fs.rejected == nil {
		fs.rejected = map[uint32]int{}
	}
	return fs.rejected[bid]
}

func (fs *ofFakeSwitch) snapshot() (installed int, discards, commits int, role OFRole) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.installed), fs.discards, fs.commits, fs.role
}

// ofFakeOpts are short timers for tests (echo 50ms, dead after 300ms).
func ofFakeOpts() ofOptions {
	o := ofDefaultOptions()
	o.echoInterval = 50 * time.Millisecond
	o.deadAfter = 300 * time.Millisecond
	return o
}

func ofTestLogger(t testing.TB) logrus.FieldLogger {
	w := &ofTestWriter{t: t}
	t.Cleanup(func() { // goroutines may still log after the test: drop that
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	l.SetOutput(w)
	return l
}

type ofTestWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *ofTestWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(p))
	}
	return len(p), nil
}

// ofNewFakePair connects an OFConn to a fake switch over net.Pipe.
func ofNewFakePair(t testing.TB, opts ofOptions, setup func(fs *ofFakeSwitch)) (*OFConn, *ofFakeSwitch) {
	t.Helper()
	a, b := net.Pipe()
	fs := ofNewFakeSwitch(t, b, 0x00000000000000a1)
	if setup != nil {
		setup(fs)
	}
	go fs.serve()
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ofHandshake(ctx, a, ofTestLogger(t), opts)
	if err != nil {
		t.Fatalf("handshake with fake switch: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, fs
}

// ofWaitFor polls cond until it holds or the deadline passes.
func ofWaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
