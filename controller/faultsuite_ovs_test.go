package controller

// TestFaultSwitchMatchesOVS: the fault suite's fake switch (fsSwitch) and a
// real ovs-vswitchd (3.1, userspace datapath) answer one script of role
// requests and writes from two controller connections identically. The
// script covers what the suite's invariants rest on: a fresh connection is
// EQUAL and can write; an older id is refused STALE, an equal id accepted;
// a new MASTER demotes the old one with ROLE_STATUS; a SLAVE's bundle and
// plain flow-mod are refused IS_SLAVE; EQUAL needs no id; the id is per
// switch and survives a role change to EQUAL.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

type fsNullObs struct{}

func (fsNullObs) logf(string, ...any)              {}
func (fsNullObs) violation(string, string, ...any) {}
func (fsNullObs) policyRevision(string) uint32     { return 0 }

// fsRoleScript runs the script over two connections to one bridge and
// returns its transcript.
func fsRoleScript(t *testing.T, c1, c2 *OFConn) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	errClass := func(err error) string {
		var oe *OFError
		switch {
		case err == nil:
			return "ok"
		case errors.Is(err, ErrStaleGeneration):
			return "STALE"
		case errors.Is(err, ErrIsSlave):
			return "IS_SLAVE"
		case errors.As(err, &oe):
			return fmt.Sprintf("error %d/%d", oe.Type, oe.Code)
		}
		return "error: " + err.Error()
	}
	role := func(name string, c *OFConn, r OFRole, gen uint64) {
		got, g, err := c.RequestRole(ctx, r, gen)
		if err != nil {
			out = append(out, fmt.Sprintf("%s %s gen=%d: %s", name, r, gen, errClass(err)))
			return
		}
		out = append(out, fmt.Sprintf("%s %s gen=%d: %s gen=%d", name, r, gen, got, g))
	}
	n := 0
	write := func(name string, c *OFConn, bundle bool) {
		n++
		msg := ofOVSFlowMod(t, n, 0xfa000000)
		var err error
		if bundle {
			err = c.Bundle(ctx, [][]byte{msg})
		} else {
			err = c.Send(ctx, [][]byte{msg})
		}
		kind := "flow-mod"
		if bundle {
			kind = "bundle"
		}
		out = append(out, fmt.Sprintf("%s %s write: %s", name, kind, errClass(err)))
	}
	status := func(name string, c *OFConn) {
		select {
		case st := <-c.RoleStatus():
			out = append(out, fmt.Sprintf("%s ROLE_STATUS %s gen=%d reason=%d", name, st.Role, st.GenerationID, st.Reason))
		case <-time.After(5 * time.Second):
			out = append(out, name+" no ROLE_STATUS")
		}
	}
	count := func(c *OFConn) {
		raw, err := c.DumpFlows(ctx)
		out = append(out, fmt.Sprintf("flows installed: %d (%s)", len(raw), errClass(err)))
	}

	role("c1", c1, OFRoleNoChange, 0) // fresh: EQUAL, id undefined
	write("c1", c1, true)             // EQUAL writes
	role("c1", c1, OFRoleMaster, 5)
	role("c2", c2, OFRoleMaster, 4) // older: STALE
	role("c2", c2, OFRoleNoChange, 0)
	write("c2", c2, true)           // c2 still EQUAL: writes while c1 is MASTER
	role("c2", c2, OFRoleMaster, 5) // equal id: accepted, demotes c1
	status("c1", c1)
	write("c1", c1, true)  // SLAVE bundle
	write("c1", c1, false) // SLAVE flow-mod
	role("c1", c1, OFRoleSlave, 4)
	role("c1", c1, OFRoleEqual, 0) // no id check
	write("c1", c1, true)
	role("c2", c2, OFRoleNoChange, 0)
	role("c1", c1, OFRoleMaster, 7)
	status("c2", c2)
	write("c2", c2, false)
	role("c2", c2, OFRoleSlave, 7)
	role("c1", c1, OFRoleNoChange, 0)
	count(c1)
	return out
}

func TestFaultSwitchMatchesOVS(t *testing.T) {
	// The fake: two TCP connections to one fsSwitch.
	sw := newFSSwitch(fsNullObs{}, 0xfeed0000fa11, "fake", map[uint32]string{1: "p1", OFPPLocal: "br"})
	t.Cleanup(sw.close)
	fake := make([]*OFConn, 2)
	for i := range fake {
		a, b := net.Pipe()
		go sw.attach(fmt.Sprintf("c%d", i+1), b)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := OFHandshake(ctx, a, ofTestLogger(t))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		fake[i] = c
	}
	fakeOut := fsRoleScript(t, fake[0], fake[1])

	// Real Open vSwitch: one bridge with two Controller rows.
	lab := ofStartOVS(t)
	br := fmt.Sprintf("vfs%04x", time.Now().UnixNano()&0xffff)
	dpid := uint64(0xfeed0000fa11)
	addr1, conns1 := ofListen(t)
	addr2, conns2 := ofListen(t)
	lab.run("ovs-vsctl", "--timeout=10", "add-br", br, "--", "set", "bridge", br,
		"datapath_type=netdev", "protocols=OpenFlow13", "fail_mode=secure",
		fmt.Sprintf("other-config:datapath-id=%016x", dpid))
	t.Cleanup(func() { lab.run("ovs-vsctl", "--timeout=10", "--if-exists", "del-br", br) })
	lab.run("ovs-vsctl", "--timeout=10",
		"--", "--id=@c1", "create", "Controller", "target=\"tcp:"+addr1+"\"", "max_backoff=1000", "inactivity_probe=0",
		"--", "--id=@c2", "create", "Controller", "target=\"tcp:"+addr2+"\"", "max_backoff=1000", "inactivity_probe=0",
		"--", "set", "bridge", br, "controller=@c1,@c2")
	c1 := ofAwaitConn(t, conns1, addr1)
	c2 := ofAwaitConn(t, conns2, addr2)
	ovsOut := fsRoleScript(t, c1, c2)

	t.Logf("transcript (real OVS):\n  %s", strings.Join(ovsOut, "\n  "))
	if len(fakeOut) != len(ovsOut) {
		t.Fatalf("transcripts differ in length: fake %d, OVS %d", len(fakeOut), len(ovsOut))
	}
	for i := range ovsOut {
		if fakeOut[i] != ovsOut[i] {
			t.Errorf("step %d: fake switch %q, real OVS %q", i, fakeOut[i], ovsOut[i])
		}
	}
}
