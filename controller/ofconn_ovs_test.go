package controller

// OFConn against a real, private ovs-vswitchd (userspace datapath).
// Skipped only when VPCFLOW_E2E=0; fails loudly when OVS is missing.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contiv/libOpenflow/openflow13"
)

type ofOVSLab struct {
	t   *testing.T
	dir string
	env []string
}

func ofRequireOVS(t *testing.T) {
	t.Helper()
	if os.Getenv("VPCFLOW_E2E") == "0" {
		t.Skip("VPCFLOW_E2E=0: skipping real Open vSwitch test")
	}
	for _, bin := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found (%v): install openvswitch-switch, or set VPCFLOW_E2E=0 to skip real-OVS tests", bin, err)
		}
	}
}

// ofStartOVS starts a private ovsdb-server + ovs-vswitchd in a temp dir and
// stops both by pid (from their pidfiles) at cleanup.
func ofStartOVS(t *testing.T, vswitchdArgs ...string) *ofOVSLab {
	t.Helper()
	ofRequireOVS(t)
	dir, err := os.MkdirTemp("", "vof")
	if err != nil {
		t.Fatal(err)
	}
	lab := &ofOVSLab{t: t, dir: dir}
	lab.env = append(os.Environ(), "OVS_RUNDIR="+dir, "OVS_LOGDIR="+dir, "OVS_DBDIR="+dir, "OVS_SYSCONFDIR="+dir)
	t.Cleanup(func() {
		for _, d := range []string{"ovs-vswitchd", "ovsdb-server"} {
			lab.stopByPidfile(filepath.Join(dir, d+".pid"))
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "ovs-vswitchd.log")); err == nil {
				t.Logf("ovs-vswitchd.log (tail):\n%s", ofTail(string(b), 3000))
			}
		}
		_ = os.RemoveAll(dir)
	})
	lab.run("ovsdb-tool", "create", filepath.Join(dir, "conf.db"), "/usr/share/openvswitch/vswitch.ovsschema")
	lab.run("ovsdb-server", "--remote=punix:"+filepath.Join(dir, "db.sock"), "--pidfile", "--detach", "--log-file", "-vconsole:off", filepath.Join(dir, "conf.db"))
	lab.run("ovs-vsctl", "--timeout=10", "--no-wait", "init")
	lab.run("ovs-vswitchd", append([]string{"--pidfile", "--detach", "--log-file", "-vconsole:off"}, vswitchdArgs...)...)
	return lab
}

func ofTail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (l *ofOVSLab) run(name string, args ...string) string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = l.env
	cmd.Dir = l.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ofReadPidfile is the pid in an OVS pidfile (0 if unreadable).
func ofReadPidfile(pidfile string) int {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	return pid
}

func (l *ofOVSLab) stopByPidfile(pidfile string) {
	pid := ofReadPidfile(pidfile)
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// ofListen accepts switch connections and hands back handshaken OFConns.
func ofListen(t *testing.T) (string, <-chan *OFConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	ch := make(chan *OFConn, 4)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				c, err := OFHandshake(ctx, nc, ofTestLogger(t))
				if err != nil {
					t.Logf("handshake: %v", err)
					return
				}
				t.Cleanup(func() { _ = c.Close() })
				select {
				case ch <- c:
				default:
					_ = c.Close()
				}
			}()
		}
	}()
	return ln.Addr().String(), ch
}

func ofAwaitConn(t *testing.T, ch <-chan *OFConn, what string) *OFConn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(20 * time.Second):
		t.Fatalf("ovs-vswitchd did not connect to %s", what)
		return nil
	}
}

// ofOVSFlowMod builds "table=0, priority=100, in_port=1, metadata=i,
// cookie=cookieBase+i, actions=output:LOCAL".
func ofOVSFlowMod(t testing.TB, i int, cookieBase uint64) []byte {
	fm := openflow13.NewFlowMod()
	fm.TableId = 0
	fm.Priority = 100
	fm.Cookie = cookieBase + uint64(i)
	fm.Match.AddField(*openflow13.NewInPortField(1))
	fm.Match.AddField(*openflow13.NewMetadataField(uint64(i), nil))
	ia := openflow13.NewInstrApplyActions()
	_ = ia.AddAction(openflow13.NewActionOutput(OFPPLocal), false)
	fm.AddInstruction(ia)
	b, err := fm.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (l *ofOVSLab) flowCount(br string) int {
	out := l.run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", br)
	return strings.Count(out, "cookie=")
}

func TestOFOVS(t *testing.T) {
	lab := ofStartOVS(t)
	var rb [3]byte
	_, _ = rand.Read(rb[:])
	br := "vof" + hex.EncodeToString(rb[:])[:5]
	dpid := uint64(0xfeed00000000) | uint64(binary.BigEndian.Uint16(rb[:2]))
	addr1, conns1 := ofListen(t)
	addr2, conns2 := ofListen(t)

	lab.run("ovs-vsctl", "--timeout=10", "add-br", br, "--", "set", "bridge", br,
		"datapath_type=netdev", "protocols=OpenFlow13", "fail_mode=secure",
		fmt.Sprintf("other-config:datapath-id=%016x", dpid))
	t.Cleanup(func() {
		cmd := exec.Command("ovs-vsctl", "--timeout=10", "--if-exists", "del-br", br)
		cmd.Env = lab.env
		_ = cmd.Run()
	})
	start := time.Now()
	lab.run("ovs-vsctl", "--timeout=10",
		"--", "--id=@c1", "create", "Controller", "target=\"tcp:"+addr1+"\"", "max_backoff=1000", "inactivity_probe=1000",
		"--", "--id=@c2", "create", "Controller", "target=\"tcp:"+addr2+"\"", "max_backoff=1000", "inactivity_probe=1000",
		"--", "set", "bridge", br, "controller=@c1,@c2")
	c1 := ofAwaitConn(t, conns1, addr1)
	c2 := ofAwaitConn(t, conns2, addr2)
	t.Logf("both controller connections handshaken %s after set-controller", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	t.Run("handshake", func(t *testing.T) {
		for _, c := range []*OFConn{c1, c2} {
			if c.DatapathID() != dpid {
				t.Fatalf("dpid %016x, want %016x", c.DatapathID(), dpid)
			}
			p := c.Ports()
			if p["LOCAL"] != OFPPLocal || p[br] != OFPPLocal {
				t.Fatalf("ports %v lack LOCAL", p)
			}
		}
	})

	t.Run("roles", func(t *testing.T) {
		role, gen, err := c1.RequestRole(ctx, OFRoleMaster, 5)
		if err != nil || role != OFRoleMaster || gen != 5 {
			t.Fatalf("c1 MASTER gen 5: %v %d %v", role, gen, err)
		}
		_, _, err = c2.RequestRole(ctx, OFRoleMaster, 4)
		if !errors.Is(err, ErrStaleGeneration) {
			t.Fatalf("c2 MASTER gen 4: want ErrStaleGeneration, got %v", err)
		}
		t.Logf("stale claim: %v", err)
		if c2.Role() != OFRoleEqual {
			t.Fatalf("c2 role after stale claim: %v", c2.Role())
		}
		role, gen, err = c2.RequestRole(ctx, OFRoleMaster, 6)
		if err != nil || role != OFRoleMaster || gen != 6 {
			t.Fatalf("c2 MASTER gen 6: %v %d %v", role, gen, err)
		}
		select {
		case st := <-c1.RoleStatus():
			if st.Role != OFRoleSlave || st.GenerationID != 6 {
				t.Fatalf("c1 role status %+v", st)
			}
			t.Logf("c1 demoted by ROLE_STATUS: %+v", st)
		case <-time.After(10 * time.Second):
			t.Fatal("c1 got no ROLE_STATUS demotion")
		}
		if c1.Role() != OFRoleSlave {
			t.Fatalf("c1 role %v", c1.Role())
		}
		if err := c1.Barrier(ctx); err != nil {
			t.Fatalf("c1 broken after ROLE_STATUS: %v", err)
		}
		if r, g, err := c1.RequestRole(ctx, OFRoleNoChange, 0); err != nil || r != OFRoleSlave || g != 6 {
			t.Fatalf("c1 NOCHANGE: %v %d %v", r, g, err)
		}
	})

	t.Run("slave-write-refused", func(t *testing.T) {
		err := c1.Send(ctx, [][]byte{ofOVSFlowMod(t, 0, 0x5000)})
		var oe *OFError
		if !errors.Is(err, ErrIsSlave) || !errors.As(err, &oe) || oe.Index != 0 {
			t.Fatalf("slave Send: want OFPBRC_IS_SLAVE at index 0, got %v", err)
		}
		t.Logf("slave Send: %v", err)
		err = c1.Bundle(ctx, [][]byte{ofOVSFlowMod(t, 0, 0x5000), ofOVSFlowMod(t, 1, 0x5000)})
		if !errors.Is(err, ErrIsSlave) {
			t.Fatalf("slave Bundle: want OFPBRC_IS_SLAVE, got %v", err)
		}
		t.Logf("slave Bundle: %v", err)
		if n := lab.flowCount(br); n != 0 {
			t.Fatalf("slave writes installed %d flows", n)
		}
	})

	const n = 2500
	t.Run("bundle-2500", func(t *testing.T) {
		msgs := make([][]byte, n)
		for i := range msgs {
			msgs[i] = ofOVSFlowMod(t, i, 0x1000000)
		}
		start := time.Now()
		if err := c2.Bundle(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		t.Logf("TIMING bundle of %d flow-mods committed and barrier-acked in %s", n, time.Since(start).Round(time.Microsecond))
		if got := lab.flowCount(br); got != n {
			t.Fatalf("ovs-ofctl dump-flows shows %d flows, want %d", got, n)
		}
		start = time.Now()
		parts, err := c2.multipart(ctx, "flow stats", OFPMPFlow, ofFlowStatsAllBody())
		if err != nil {
			t.Fatal(err)
		}
		flows, err := ofSplitFlowStats(parts)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("TIMING flow stats of %d flows in %d multipart parts: %s", len(flows), len(parts), time.Since(start).Round(time.Microsecond))
		if len(flows) != n || len(parts) < 2 {
			t.Fatalf("%d flows in %d parts, want %d in several", len(flows), len(parts), n)
		}
		dumped, err := c1.DumpFlows(ctx) // reading is allowed for a slave
		if err != nil || len(dumped) != n {
			t.Fatalf("DumpFlows from slave: %d %v", len(dumped), err)
		}
		seen := map[uint64]bool{}
		for _, f := range dumped {
			seen[binary.BigEndian.Uint64(f[24:32])] = true
		}
		for i := 0; i < n; i++ {
			if !seen[0x1000000+uint64(i)] {
				t.Fatalf("cookie %x missing from DumpFlows", 0x1000000+i)
			}
		}
	})

	t.Run("bundle-invalid-installs-nothing", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			bad  func() []byte
			want string
		}{
			{"goto-lower-table", func() []byte {
				fm := openflow13.NewFlowMod()
				fm.TableId = 5
				fm.Priority = 10
				fm.Cookie = 0x2000000 + 7
				fm.AddInstruction(openflow13.NewInstrGotoTable(1))
				b, _ := fm.MarshalBinary()
				return b
			}, "OFPBIC_BAD_TABLE_ID"},
			{"output-bad-port", func() []byte {
				fm := openflow13.NewFlowMod()
				fm.Priority = 10
				fm.Cookie = 0x2000000 + 7
				ia := openflow13.NewInstrApplyActions()
				_ = ia.AddAction(openflow13.NewActionOutput(0x12345), false) // above OFPP_MAX, not reserved
				fm.AddInstruction(ia)
				b, _ := fm.MarshalBinary()
				return b
			}, "OFPBAC_BAD_OUT_PORT"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				msgs := make([][]byte, 10)
				for i := range msgs {
					msgs[i] = ofOVSFlowMod(t, 10000+i, 0x2000000-10000)
				}
				msgs[7] = tc.bad()
				err := c2.Bundle(ctx, msgs)
				var oe *OFError
				if !errors.As(err, &oe) || oe.Index != 7 || !strings.Contains(err.Error(), "message index 7") ||
					!strings.Contains(err.Error(), tc.want) {
					t.Fatalf("want error for message index 7 (%s), got %v", tc.want, err)
				}
				t.Logf("invalid bundle: %v", err)
				if got := lab.flowCount(br); got != n {
					t.Fatalf("flow count %d after a refused bundle, want %d (nothing installed)", got, n)
				}
				if err := c2.Barrier(ctx); err != nil {
					t.Fatalf("conn unusable after refused bundle: %v", err)
				}
			})
		}
	})

	t.Run("bundle-commit-time-error", func(t *testing.T) {
		// Valid at add time, refused at commit: CHECK_OVERLAP against an
		// installed flow. The switch names the inner message by its xid.
		msgs := make([][]byte, 5)
		for i := range msgs {
			msgs[i] = ofOVSFlowMod(t, 15000+i, 0x2000000)
		}
		fm := openflow13.NewFlowMod()
		fm.Priority = 100
		fm.Cookie = 0x2000000 + 99
		fm.Flags = 1 << 1 // OFPFF_CHECK_OVERLAP
		fm.Match.AddField(*openflow13.NewInPortField(1))
		ia := openflow13.NewInstrApplyActions()
		_ = ia.AddAction(openflow13.NewActionOutput(OFPPLocal), false)
		fm.AddInstruction(ia)
		msgs[3], _ = fm.MarshalBinary()
		err := c2.Bundle(ctx, msgs)
		var oe *OFError
		if !errors.As(err, &oe) || oe.Index != 3 || !strings.Contains(err.Error(), "OFPFMFC_OVERLAP") {
			t.Fatalf("want OFPFMFC_OVERLAP for message index 3, got %v", err)
		}
		t.Logf("commit-time failure: %v", err)
		if got := lab.flowCount(br); got != n {
			t.Fatalf("flow count %d after a failed commit, want %d (atomic)", got, n)
		}
	})

	t.Run("bundle-10000-more", func(t *testing.T) {
		const m = 10000
		msgs := make([][]byte, m)
		for i := range msgs {
			msgs[i] = ofOVSFlowMod(t, 20000+i, 0x3000000)
		}
		start := time.Now()
		if err := c2.Bundle(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		t.Logf("TIMING bundle of %d flow-mods committed and barrier-acked in %s", m, time.Since(start).Round(time.Microsecond))
		start = time.Now()
		flows, err := c2.DumpFlows(ctx)
		if err != nil || len(flows) != n+m {
			t.Fatalf("DumpFlows: %d %v, want %d", len(flows), err, n+m)
		}
		t.Logf("TIMING DumpFlows of %d flows: %s", len(flows), time.Since(start).Round(time.Microsecond))
	})

	t.Run("idle-keepalive", func(t *testing.T) {
		// inactivity_probe=1000: OVS probes us after 1 s idle and drops us
		// 1 s later unless we answer. Stay idle for 3 s.
		select {
		case <-c1.Done():
			t.Fatalf("c1 died while idle: %v", c1.Err())
		case <-c2.Done():
			t.Fatalf("c2 died while idle: %v", c2.Err())
		case <-time.After(3 * time.Second):
		}
		if err := c2.Barrier(ctx); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(lab.dir, "ovs-vswitchd.log")); strings.Contains(string(b), "inactivity probe") {
			t.Fatalf("OVS disconnected us for inactivity:\n%s", ofTail(string(b), 2000))
		}
	})

	for _, c := range []*OFConn{c1, c2} {
		if err := c.Err(); err != nil {
			t.Fatalf("connection died: %v", err)
		}
		if c.panics.Load() != 0 {
			t.Fatal("decode panic")
		}
	}
}
