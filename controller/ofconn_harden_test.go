package controller

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// TestOFHandshakeNoRace: the datapath id and the connection's logger are
// set before the reader and keepalive goroutines start. A switch that sends
// PORT_STATUS right behind its FEATURES_REPLY and then hangs up makes the
// reader log (c.log) and report the dpid (c.dpid) while the handshake is
// still finishing: `go test -race` flags any write of those fields after the
// goroutines started.
func TestOFHandshakeNoRace(t *testing.T) {
	for i := 0; i < 20; i++ {
		a, b := net.Pipe()
		fs := ofNewFakeSwitch(t, b, 0xa1)
		fs.hook = func(fs *ofFakeSwitch, h ofHeader, msg []byte) bool {
			if h.Type != OFPTFeaturesRequest {
				return false
			}
			p := make([]byte, 24)
			binary.BigEndian.PutUint64(p[0:8], fs.dpid)
			ps := make([]byte, 8, 8+ofpPortLen)
			ps[0] = ofpPRAdd
			ps = append(ps, ofFakePort(3, "vnet9")...)
			fs.send(append(ofSimple(OFPTFeaturesReply, h.Xid, p), ofSimple(OFPTPortStatus, 0, ps)...))
			_ = fs.nc.Close()
			return true
		}
		go fs.serve()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := ofHandshake(ctx, a, ofTestLogger(t), ofFakeOpts())
		cancel()
		if err == nil {
			<-c.Done()
			_ = c.Close()
		}
		_ = b.Close()
	}
}
