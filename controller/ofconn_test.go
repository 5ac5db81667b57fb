package controller

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contiv/libOpenflow/openflow13"
)

func ofTestCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ofTestFlowMod builds an add flow-mod: table 0, in_port=port, priority,
// cookie, output:outPort.
func ofTestFlowMod(t testing.TB, port uint32, priority uint16, cookie uint64, outPort uint32) []byte {
	t.Helper()
	fm := openflow13.NewFlowMod()
	fm.TableId = 0
	fm.Priority = priority
	fm.Cookie = cookie
	fm.Match.AddField(*openflow13.NewInPortField(port))
	ia := openflow13.NewInstrApplyActions()
	ia.AddAction(openflow13.NewActionOutput(outPort), false)
	fm.AddInstruction(ia)
	b, err := fm.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal flow-mod: %v", err)
	}
	return b
}

func ofTestFlowMods(t testing.TB, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = ofTestFlowMod(t, 1, uint16(100+i), uint64(i+1), 2)
	}
	return out
}

func TestOFHandshakeFake(t *testing.T) {
	c, _ := ofNewFakePair(t, ofFakeOpts(), nil)
	if got := c.DatapathID(); got != 0xa1 {
		t.Fatalf("dpid %x, want a1", got)
	}
	p := c.Ports()
	if p["LOCAL"] != OFPPLocal || p["br0"] != OFPPLocal || p["eth0"] != 1 || p["vnet0"] != 2 || len(p) != 4 {
		t.Fatalf("ports %v", p)
	}
	if c.Role() != OFRoleEqual {
		t.Fatalf("initial role %v", c.Role())
	}
	if err := c.Barrier(ofTestCtx(t)); err != nil {
		t.Fatal(err)
	}
	p["x"] = 9 // Ports returns a copy
	if _, ok := c.Ports()["x"]; ok {
		t.Fatal("Ports() is not a copy")
	}
}

func TestOFHelloFailedFake(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hello []byte
	}{
		{"of10-only-bitmap", func() []byte {
			m := ofHelloMsg(1)
			m[0] = 6                                   // claims 1.5 ...
			binary.BigEndian.PutUint32(m[12:16], 1<<1) // ... but the bitmap offers only 1.0
			return m
		}()},
		{"of10-no-bitmap", append([]byte{1}, ofSimple(OFPTHello, 1, nil)[1:]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hello := tc.hello
			a, b := net.Pipe()
			defer b.Close()
			got := make(chan []byte, 1)
			go func() {
				_, _ = b.Write(hello)
				br := bufio.NewReader(b)
				fs := &ofFakeSwitch{br: br}
				var msgs []byte
				for {
					_, m, err := fs.read()
					if err != nil {
						break
					}
					msgs = append(msgs, m...)
				}
				got <- msgs
			}()
			_, err := ofHandshake(ofTestCtx(t), a, ofTestLogger(t), ofFakeOpts())
			if err == nil || !strings.Contains(err.Error(), "OFPET_HELLO_FAILED") {
				t.Fatalf("want HELLO_FAILED error, got %v", err)
			}
			msgs := <-got
			// our HELLO, then the error
			h := ofDecodeHeader(msgs)
			if h.Type != OFPTHello || h.Version != OFVersion13 {
				t.Fatalf("first message %+v", h)
			}
			e := msgs[h.Length:]
			if len(e) < 12 || e[1] != OFPTError || binary.BigEndian.Uint16(e[8:10]) != OFPETHelloFailed {
				t.Fatalf("no HELLO_FAILED error sent: %x", e)
			}
		})
	}
}

func TestOFEchoFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), nil)
	// The switch asks: the reply must carry the same xid and payload.
	replies := make(chan []byte, 1)
	fs.mu.Lock()
	fs.hook = func(fs *ofFakeSwitch, h ofHeader, msg []byte) bool {
		if h.Type == OFPTEchoReply && h.Xid == 4242 {
			replies <- msg
			return true
		}
		return false
	}
	fs.mu.Unlock()
	fs.send(ofSimple(OFPTEchoRequest, 4242, []byte("ping")))
	select {
	case m := <-replies:
		if string(m[8:]) != "ping" {
			t.Fatalf("echo payload %q", m[8:])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no echo reply")
	}
	// We send echo requests on our own.
	ofWaitFor(t, 5*time.Second, "echo requests from the controller", func() bool {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		n := 0
		for _, h := range fs.received {
			if h.Type == OFPTEchoRequest {
				n++
			}
		}
		return n >= 3
	})
	// The connection stays up while the switch answers (>> deadAfter).
	time.Sleep(3 * ofFakeOpts().deadAfter)
	if err := c.Err(); err != nil {
		t.Fatalf("live connection declared dead: %v", err)
	}
}

func TestOFEchoDeadFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), nil)
	fs.mu.Lock()
	fs.silent = true
	fs.mu.Unlock()
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("silent switch not declared dead")
	}
	if !strings.Contains(c.Err().Error(), "silent") {
		t.Fatalf("err %v", c.Err())
	}
	if d := time.Since(start); d < ofFakeOpts().deadAfter/2 {
		t.Fatalf("declared dead too early: %s", d)
	}
	if err := c.Barrier(ofTestCtx(t)); err == nil {
		t.Fatal("barrier on dead conn succeeded")
	}
}

func TestOFRoleFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), nil)
	ctx := ofTestCtx(t)
	role, gen, err := c.RequestRole(ctx, OFRoleMaster, 5)
	if err != nil || role != OFRoleMaster || gen != 5 {
		t.Fatalf("master gen 5: %v %v %v", role, gen, err)
	}
	_, _, err = c.RequestRole(ctx, OFRoleMaster, 4)
	if !errors.Is(err, ErrStaleGeneration) {
		t.Fatalf("want ErrStaleGeneration, got %v", err)
	}
	var oe *OFError
	if !errors.As(err, &oe) || oe.Name() != "OFPET_ROLE_REQUEST_FAILED/OFPRRFC_STALE" {
		t.Fatalf("error detail: %v", err)
	}
	if c.Role() != OFRoleMaster {
		t.Fatalf("role after stale claim %v", c.Role())
	}
	role, gen, err = c.RequestRole(ctx, OFRoleNoChange, 0)
	if err != nil || role != OFRoleMaster || gen != 5 {
		t.Fatalf("nochange: %v %v %v", role, gen, err)
	}

	// Demotion by ONF ROLE_STATUS (experimenter 0x4f4e4600 type 1911), with a property.
	p := make([]byte, 24+8)
	binary.BigEndian.PutUint32(p[0:4], ONFExperimenterID)
	binary.BigEndian.PutUint32(p[4:8], ONFETRoleStatus)
	binary.BigEndian.PutUint32(p[8:12], uint32(OFRoleSlave))
	p[12] = OFRoleReasonMasterRequest
	binary.BigEndian.PutUint64(p[16:24], 6)
	binary.BigEndian.PutUint16(p[24:26], 0xffff) // experimenter property
	binary.BigEndian.PutUint16(p[26:28], 8)
	fs.send(ofSimple(OFPTExperimenter, 0, p))
	select {
	case st := <-c.RoleStatus():
		if st.Role != OFRoleSlave || st.GenerationID != 6 || st.Reason != OFRoleReasonMasterRequest {
			t.Fatalf("role status %+v", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no role status")
	}
	if c.Role() != OFRoleSlave {
		t.Fatalf("role after demotion %v", c.Role())
	}
	// OF1.4-style OFPT_ROLE_STATUS too.
	q := make([]byte, 16)
	binary.BigEndian.PutUint32(q[0:4], uint32(OFRoleMaster))
	binary.BigEndian.PutUint64(q[8:16], 7)
	fs.send(ofSimple(OFPTRoleStatus14, 0, q))
	select {
	case st := <-c.RoleStatus():
		if st.Role != OFRoleMaster || st.GenerationID != 7 {
			t.Fatalf("role status %+v", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no OF1.4 role status")
	}
	if err := c.Barrier(ctx); err != nil {
		t.Fatalf("conn broken after role status: %v", err)
	}
}

func TestOFDumpFlowsFake(t *testing.T) {
	const n = 12345
	c, fs := ofNewFakePair(t, ofFakeOpts(), func(fs *ofFakeSwitch) {
		for i := 0; i < n; i++ {
			fs.flowStats = append(fs.flowStats, ofFakeFlowStats(uint64(i)))
		}
		fs.perPart = 1000 // 13 parts, all but the last with REPLY_MORE
	})
	start := time.Now()
	flows, err := c.DumpFlows(ofTestCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dumped %d flows in %s", len(flows), time.Since(start))
	if len(flows) != n {
		t.Fatalf("got %d flows, want %d", len(flows), n)
	}
	for i, f := range flows {
		if len(f) != 56 || binary.BigEndian.Uint16(f[0:2]) != 56 || binary.BigEndian.Uint64(f[24:32]) != uint64(i) {
			t.Fatalf("entry %d wrong: %x", i, f)
		}
	}
	// empty table
	fs.mu.Lock()
	fs.flowStats = nil
	fs.mu.Unlock()
	if flows, err := c.DumpFlows(ofTestCtx(t)); err != nil || len(flows) != 0 {
		t.Fatalf("empty dump: %d %v", len(flows), err)
	}
	// a corrupt entry length fails the call, not the process
	fs.mu.Lock()
	bad := ofFakeFlowStats(1)
	binary.BigEndian.PutUint16(bad[0:2], 9000)
	fs.flowStats = [][]byte{ofFakeFlowStats(0), bad}
	fs.mu.Unlock()
	if _, err := c.DumpFlows(ofTestCtx(t)); err == nil || !strings.Contains(err.Error(), "bad entry length") {
		t.Fatalf("corrupt dump: %v", err)
	}
}

func TestOFBundleFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), nil)
	msgs := ofTestFlowMods(t, 3000)
	orig := append([]byte(nil), msgs[0]...)
	start := time.Now()
	if err := c.Bundle(ofTestCtx(t), msgs); err != nil {
		t.Fatal(err)
	}
	t.Logf("bundle of %d flow-mods to fake switch: %s", len(msgs), time.Since(start))
	installed, discards, commits, _ := fs.snapshot()
	if installed != len(msgs) || discards != 0 || commits != 1 {
		t.Fatalf("installed %d discards %d commits %d", installed, discards, commits)
	}
	// the caller's slices are not modified
	if !bytes.Equal(msgs[0], orig) {
		t.Fatal("Bundle modified the caller's message")
	}
	if err := c.Bundle(ofTestCtx(t), nil); err != nil {
		t.Fatal("empty bundle:", err)
	}
	if err := c.Bundle(ofTestCtx(t), [][]byte{{4, 14, 0, 9}}); err == nil {
		t.Fatal("short message accepted")
	}
	c.mu.Lock()
	left := len(c.pending)
	c.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d pending registrations leaked", left)
	}
}

func TestOFBundleAddErrorFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), func(fs *ofFakeSwitch) {
		fs.addErr = func(i int, _ []byte) *ofFakeErr {
			if i == 2 {
				return &ofFakeErr{typ: OFPETBadAction, code: openflow13.BAC_BAD_OUT_PORT}
			}
			return nil
		}
	})
	err := c.Bundle(ofTestCtx(t), ofTestFlowMods(t, 5))
	var oe *OFError
	if !errors.As(err, &oe) || oe.Index != 2 || oe.Type != OFPETBadAction || oe.Code != 4 {
		t.Fatalf("want OFError index 2 BAD_OUT_PORT, got %v", err)
	}
	for _, want := range []string{"message index 2", "OFPBAC_BAD_OUT_PORT", "not committed"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q lacks %q", err, want)
		}
	}
	installed, discards, commits, _ := fs.snapshot()
	if installed != 0 || commits != 0 || discards != 1 {
		t.Fatalf("installed %d commits %d discards %d", installed, commits, discards)
	}
}

func TestOFBundleCommitErrorFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), func(fs *ofFakeSwitch) {
		fs.commitErr = func(i int, _ []byte) *ofFakeErr {
			if i == 2 {
				return &ofFakeErr{typ: OFPETFlowModFailed, code: openflow13.FMFC_TABLE_FULL}
			}
			return nil
		}
	})
	err := c.Bundle(ofTestCtx(t), ofTestFlowMods(t, 4))
	var oe *OFError
	if !errors.As(err, &oe) || oe.Index != 2 || !strings.Contains(err.Error(), "OFPFMFC_TABLE_FULL") ||
		!strings.Contains(err.Error(), "+1 more") {
		t.Fatalf("want index 2 TABLE_FULL (+ BEC_MSG_FAILED), got %v", err)
	}
	if installed, _, _, _ := fs.snapshot(); installed != 0 {
		t.Fatalf("installed %d", installed)
	}
}

func TestOFBundleSlaveFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), nil)
	if _, _, err := c.RequestRole(ofTestCtx(t), OFRoleSlave, 1); err != nil {
		t.Fatal(err)
	}
	err := c.Bundle(ofTestCtx(t), ofTestFlowMods(t, 2))
	if !errors.Is(err, ErrIsSlave) || !strings.Contains(err.Error(), "OFPBRC_IS_SLAVE") {
		t.Fatalf("bundle as slave: %v", err)
	}
	err = c.Send(ofTestCtx(t), ofTestFlowMods(t, 2))
	var oe *OFError
	if !errors.Is(err, ErrIsSlave) || !errors.As(err, &oe) || oe.Index != 0 {
		t.Fatalf("send as slave: %v", err)
	}
	if installed, discards, _, _ := fs.snapshot(); installed != 0 || discards != 0 {
		t.Fatalf("installed %d discards %d (no discard after a failed open)", installed, discards)
	}
}

func TestOFSendErrorBeforeBarrierFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), func(fs *ofFakeSwitch) {
		fs.delayErrorsToBarrier = true
		fs.flowModErr = func(msg []byte) *ofFakeErr {
			if binary.BigEndian.Uint64(msg[8:16]) == 3 { // cookie 3 = index 2
				return &ofFakeErr{typ: OFPETBadInstruction, code: openflow13.BIC_BAD_TABLE_ID}
			}
			return nil
		}
	})
	err := c.Send(ofTestCtx(t), ofTestFlowMods(t, 6))
	var oe *OFError
	if !errors.As(err, &oe) || oe.Index != 2 || !strings.Contains(err.Error(), "OFPBIC_BAD_TABLE_ID") {
		t.Fatalf("want index 2 error, got %v", err)
	}
	if installed, _, _, _ := fs.snapshot(); installed != 5 {
		t.Fatalf("installed %d (Send is not atomic)", installed)
	}
	// An error that arrives after the barrier reply is not part of the batch:
	// the call has already succeeded and the error is logged as unsolicited.
	fs.mu.Lock()
	fs.delayErrorsToBarrier, fs.errorsAfterBarrier = false, true
	fs.mu.Unlock()
	if err := c.Send(ofTestCtx(t), ofTestFlowMods(t, 6)); err != nil {
		t.Fatalf("late error attributed to the batch: %v", err)
	}
	ofWaitFor(t, 5*time.Second, "unsolicited error counted", func() bool { return c.unsolicited.Load() == 1 })
	if err := c.Barrier(ofTestCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestOFPortStatusFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), nil)
	ps := func(reason uint8, no uint32, name string) {
		p := make([]byte, 8, 8+ofpPortLen)
		p[0] = reason
		fs.send(ofSimple(OFPTPortStatus, 0, append(p, ofFakePort(no, name)...)))
	}
	wait := func(what string, cond func(map[string]uint32) bool) {
		t.Helper()
		select {
		case <-c.PortEvents():
		case <-time.After(5 * time.Second):
			t.Fatalf("no port event for %s", what)
		}
		ofWaitFor(t, 5*time.Second, what, func() bool { return cond(c.Ports()) })
	}
	ps(ofpPRAdd, 7, "vnet1")
	wait("add", func(p map[string]uint32) bool { return p["vnet1"] == 7 })
	ps(ofpPRDelete, 2, "vnet0")
	wait("delete", func(p map[string]uint32) bool { _, ok := p["vnet0"]; return !ok })
	ps(ofpPRModify, 7, "vnet9") // renamed port
	wait("rename", func(p map[string]uint32) bool { _, ok := p["vnet1"]; return !ok && p["vnet9"] == 7 })
	ps(ofpPRAdd, 8, "vnet0") // name reused with a new number
	wait("reuse", func(p map[string]uint32) bool { return p["vnet0"] == 8 && p["LOCAL"] == OFPPLocal })
}

func TestOFUnknownMessagesFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), nil)
	exp := make([]byte, 12)
	binary.BigEndian.PutUint32(exp[0:4], 0x00002320) // Nicira
	binary.BigEndian.PutUint32(exp[4:8], 99)
	onfOther := make([]byte, 8)
	binary.BigEndian.PutUint32(onfOther[0:4], ONFExperimenterID)
	binary.BigEndian.PutUint32(onfOther[4:8], 1234)
	var all []byte
	for _, m := range [][]byte{
		ofSimple(OFPTPacketIn, 0, make([]byte, 40)),
		ofSimple(OFPTFlowRemoved, 0, make([]byte, 50)),
		ofSimple(OFPTExperimenter, 0, exp),
		ofSimple(OFPTExperimenter, 0, onfOther),
		ofSimple(OFPTBarrierReply, 987654, nil), // late reply, nobody waits
		ofSimple(OFPTHello, 0, nil),
		ofSimple(99, 0, []byte("future message type")),
		ofErrorMsg(55555, OFPETBadRequest, 1, nil), // unsolicited error
	} {
		all = append(all, m...)
	}
	fs.send(all)
	// PACKET_IN is delivered (drop logging), everything else ignored.
	ofWaitFor(t, 5*time.Second, "messages ignored", func() bool { return c.IgnoredMessages() == 6 && c.unsolicited.Load() == 1 })
	select {
	case pi := <-c.PacketIns():
		if pi[1] != OFPTPacketIn {
			t.Fatalf("PacketIns delivered message type %d", pi[1])
		}
	default:
		t.Fatal("PACKET_IN not delivered")
	}
	if err := c.Barrier(ofTestCtx(t)); err != nil {
		t.Fatalf("conn broken by unknown messages: %v", err)
	}
}

// Garbage on one connection closes only that connection.
func TestOFMalformedFake(t *testing.T) {
	roleStatusShort := make([]byte, 8)
	binary.BigEndian.PutUint32(roleStatusShort[0:4], ONFExperimenterID)
	binary.BigEndian.PutUint32(roleStatusShort[4:8], ONFETRoleStatus)
	cases := map[string][]byte{
		"length-below-header": {4, 0, 0, 4, 0, 0, 0, 1},
		"truncated":           append([]byte{4, 10, 0, 100, 0, 0, 0, 1}, make([]byte, 20)...),
		"oversized-claim":     append([]byte{4, 19, 0xff, 0xff, 0, 0, 0, 1}, make([]byte, 100)...),
		"wrong-version":       append([]byte{1}, ofSimple(OFPTEchoRequest, 1, nil)[1:]...),
		"garbage":             []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"short-port-status":   ofSimple(OFPTPortStatus, 0, make([]byte, 20)),
		"short-role-status":   ofSimple(OFPTExperimenter, 0, roleStatusShort),
		"short-experimenter":  ofSimple(OFPTExperimenter, 0, []byte{1, 2}),
	}

	other, _ := ofNewFakePair(t, ofFakeOpts(), nil)
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			c, fs := ofNewFakePair(t, ofFakeOpts(), nil)
			fs.send(bad)
			if name == "truncated" || name == "oversized-claim" {
				_ = fs.nc.Close() // EOF in the middle of the message
			}
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("connection not closed")
			}
			t.Logf("closed: %v", c.Err())
			if c.panics.Load() != 0 {
				t.Fatalf("decode panicked: %v", c.Err())
			}
			if err := other.Barrier(ofTestCtx(t)); err != nil {
				t.Fatalf("other connection affected: %v", err)
			}
		})
	}
}

// A panic while decoding closes only that connection (forced here through a
// deliberately broken pending entry; the parsers themselves are bounds-checked).
func TestOFPanicRecoveredFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), nil)
	other, _ := ofNewFakePair(t, ofFakeOpts(), nil)
	c.mu.Lock()
	c.pending[77] = &ofPending{kind: ofPendBatch, op: "broken"} // nil batch
	c.mu.Unlock()
	fs.send(ofErrorMsg(77, OFPETBadRequest, 1, nil))
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed after a decode panic")
	}
	if c.panics.Load() != 1 || !strings.Contains(c.Err().Error(), "panic") {
		t.Fatalf("panics %d err %v", c.panics.Load(), c.Err())
	}
	if err := other.Barrier(ofTestCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// Calls honour their context; a stuck switch blocks only its own conn.
func TestOFContextFake(t *testing.T) {
	stuck, fs := ofNewFakePair(t, ofFakeOpts(), nil)
	other, _ := ofNewFakePair(t, ofFakeOpts(), nil)
	fs.mu.Lock()
	fs.hook = func(fs *ofFakeSwitch, h ofHeader, msg []byte) bool {
		if h.Type == OFPTBarrierRequest {
			fs.send(ofSimple(OFPTEchoRequest, 1, nil)) // alive, but never answers barriers
			return true
		}
		return false
	}
	fs.mu.Unlock()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if err := stuck.Barrier(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("stuck barrier: %v", err)
			}
		}()
	}
	for i := 0; i < 20; i++ {
		if err := other.Barrier(ofTestCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if stuck.Err() != nil {
		t.Fatalf("ctx timeout killed the conn: %v", stuck.Err())
	}
	// a switch that does not read at all: writes honour ctx too
	a, b := net.Pipe()
	defer b.Close()
	c := newOFConn(a, ofTestLogger(t), ofFakeOpts())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Bundle(ctx, ofTestFlowMods(t, 10)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked write: %v", err)
	}
	_ = c.Close()
}

func TestOFConcurrentCallsFake(t *testing.T) {
	c, fs := ofNewFakePair(t, ofFakeOpts(), func(fs *ofFakeSwitch) {
		for i := 0; i < 3000; i++ {
			fs.flowStats = append(fs.flowStats, ofFakeFlowStats(uint64(i)))
		}
	})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx := ofTestCtx(t)
			switch i % 4 {
			case 0:
				if err := c.Bundle(ctx, ofTestFlowMods(t, 500)); err != nil {
					t.Error(err)
				}
			case 1:
				if f, err := c.DumpFlows(ctx); err != nil || len(f) != 3000 {
					t.Error(len(f), err)
				}
			case 2:
				if err := c.Send(ctx, ofTestFlowMods(t, 50)); err != nil {
					t.Error(err)
				}
			case 3:
				if _, _, err := c.RequestRole(ctx, OFRoleNoChange, 0); err != nil {
					t.Error(err)
				}
			}
		}(i)
	}
	wg.Wait()
	if installed, _, _, _ := fs.snapshot(); installed != 2*500+2*50 {
		t.Fatalf("installed %d", installed)
	}
}

func TestOFErrorNames(t *testing.T) {
	for _, tc := range []struct {
		typ, code uint16
		exp       uint32
		want      string
	}{
		{1, 10, 0, "OFPET_BAD_REQUEST/OFPBRC_IS_SLAVE"},
		{2, 4, 0, "OFPET_BAD_ACTION/OFPBAC_BAD_OUT_PORT"},
		{5, 2, 0, "OFPET_FLOW_MOD_FAILED/OFPFMFC_BAD_TABLE_ID"},
		{11, 0, 0, "OFPET_ROLE_REQUEST_FAILED/OFPRRFC_STALE"},
		{0xffff, 2313, ONFExperimenterID, "OFPET_EXPERIMENTER/ONF BEC_MSG_FAILED"},
		{0xffff, 7, 0x2320, "OFPET_EXPERIMENTER/experimenter 0x00002320 code 7"},
		{42, 1, 0, "OFPET_42/code 1"},
		{5, 99, 0, "OFPET_FLOW_MOD_FAILED/code 99"},
	} {
		if got := ofErrorName(tc.typ, tc.code, tc.exp); got != tc.want {
			t.Errorf("ofErrorName(%d,%d,%x) = %q, want %q", tc.typ, tc.code, tc.exp, got, tc.want)
		}
	}
}

func TestOFWireEncodings(t *testing.T) {
	rr := ofRoleRequestMsg(9, OFRoleMaster, 0x0102030405060708)
	if len(rr) != 24 || rr[1] != 24 || binary.BigEndian.Uint16(rr[2:4]) != 24 || binary.BigEndian.Uint32(rr[8:12]) != 2 ||
		binary.BigEndian.Uint64(rr[16:24]) != 0x0102030405060708 {
		t.Fatalf("role request %x", rr)
	}
	fsr := ofMultipartRequest(3, OFPMPFlow, ofFlowStatsAllBody())
	want := "04120038000000030001000000000000" + "ff000000ffffffffffffffff00000000" + "00000000000000000000000000000000" + "0001000400000000"
	if got := ofHex(fsr); got != want {
		t.Fatalf("flow stats request\n got %s\nwant %s", got, want)
	}
	inner := ofTestFlowMod(t, 1, 1, 1, 2)
	binary.BigEndian.PutUint32(inner[4:8], 11)
	add, err := ofBundleAddMsg(11, 5, 3, inner)
	if err != nil {
		t.Fatal(err)
	}
	if len(add) != 24+len(inner) || binary.BigEndian.Uint16(add[2:4]) != uint16(len(add)) ||
		binary.BigEndian.Uint32(add[8:12]) != ONFExperimenterID || binary.BigEndian.Uint32(add[12:16]) != ONFETBundleAdd ||
		binary.BigEndian.Uint32(add[16:20]) != 5 || binary.BigEndian.Uint16(add[22:24]) != 3 || !bytes.Equal(add[24:], inner) ||
		binary.BigEndian.Uint32(add[4:8]) != 11 {
		t.Fatalf("bundle add %x", add)
	}
	ctl := ofBundleCtrlMsg(12, 5, 4, 3)
	if ofHex(ctl) != "040400180000000c4f4e4600000008fc0000000500040003" {
		t.Fatalf("bundle ctrl %s", ofHex(ctl))
	}
	h := ofHelloMsg(1)
	if ofHex(h) != "04000010000000010001000800000010" {
		t.Fatalf("hello %s", ofHex(h))
	}
}

func ofHex(b []byte) string {
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&15])
	}
	return sb.String()
}
