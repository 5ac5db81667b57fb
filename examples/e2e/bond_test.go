package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/tunnel"
)

// bondBlueprint is the demo blueprint with kvm1's uplink bonded over eth0
// and eth1 (lacp off: active-backup into the underlay's Linux bridge; lacp
// active: balance-tcp into an LACP partner switch).
func bondBlueprint(t *testing.T, lacp bool) string {
	bond := "uplink: {name: bond0, bond: [eth0, eth1]}"
	if lacp {
		bond = "uplink: {name: bond0, bond: [eth0, eth1], lacp: active, mode: balance-tcp}"
	}
	return demoBlueprint(t, func(s string) string {
		// kvm1 is the first host: its uplink line is the first one.
		return strings.Replace(s, "uplink: eth0", bond, 1)
	})
}

// TestBondedUplinkFailover: kvm1's uplink is an OVS bond of two underlay
// links; `vpcflow host apply` converted the hand-made single-NIC port into
// the bond. VMs on kvm1 reach VMs on kvm2 across the tunnel; cutting the
// member that carries the traffic (both veth ends down) keeps the tunnel
// up: the bundle action moves to the live member. The outage is measured
// with a 50 ms ping. Isolation still holds, and the controller's read-back
// and audit stay in sync (the bundle action round-trips, so no drift).
func TestBondedUplinkFailover(t *testing.T) {
	t.Run("lacp-off", func(t *testing.T) { bondFailover(t, false) })
	t.Run("lacp-active", func(t *testing.T) { bondFailover(t, true) })
}

func bondFailover(t *testing.T, lacp bool) {
	e := startEnv(t, bondBlueprint(t, lacp))
	ports, err := e.lab.OVS(e.ctx, "kvm1", "ovs-vsctl", "list-ports", lab.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(ports); !contains(f, "bond0") || contains(f, "eth0") {
		t.Fatalf("kvm1 ports %q: want the bond (host apply converts the hand-made eth0 port)", f)
	}
	if lacp {
		eventually(t, 20*time.Second, "LACP negotiated on both members", func() (bool, string) {
			out, _ := e.lab.OVS(e.ctx, "kvm1", "ovs-appctl", "bond/show", "bond0")
			return strings.Contains(out, "lacp_status: negotiated") && strings.Count(out, ": enabled") >= 2, out
		})
	}
	out, _ := e.lab.OVS(e.ctx, "kvm1", "ovs-appctl", "bond/show", "bond0")
	t.Logf("kvm1 bond/show:\n%s", out)
	hostOut, err := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "--names", "dump-flows", lab.Bridge, "table=20")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`bundle\((eth_src|symmetric_l4),0,(active_backup|hrw),ofport,members:"?eth0"?,"?eth1"?\)`).MatchString(hostOut) {
		t.Fatalf("kvm1 host_out is not a bundle over both members:\n%s", hostOut)
	}

	e.pingOK("blue-web-1", "10.10.1.12", 15*time.Second)
	assertExact(t, e, 1, 30*time.Second)
	sent := bridgeOf(e.status(), "kvm1").FlowModsSent
	eventually(t, 20*time.Second, "doctor passes the bond", func() (bool, string) {
		r := e.doctor("kvm1")
		return r.status(tunnel.CheckBond) == tunnel.StatusPass && r.status(tunnel.CheckMTU) == tunnel.StatusPass, r.summary()
	})

	// explain --trace: the model (bundle: a live member) and ofproto/trace
	// on the real bridges agree, out of and into the bond.
	e.explainAgrees("blue-web-1", "blue-web-2")
	e.explainAgrees("blue-web-2", "blue-web-1")

	// The member that carries kvm1's tunnel traffic now.
	active := e.busyMember("kvm1", []string{"eth0", "eth1"}, "blue-web-1", "10.10.1.12")
	other := "eth1"
	if active == "eth1" {
		other = "eth0"
	}
	t.Logf("kvm1 sends on %s", active)

	ping, err := e.lab.StartPing("blue-web-1", "10.10.1.12", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer ping.Stop()
	waitReplies(t, ping, 10)
	cut := time.Now()
	if err := e.lab.SetBondLink(e.ctx, "kvm1", active, false); err != nil {
		t.Fatal(err)
	}
	n := replies(ping)
	waitReplies(t, ping, n+20)
	if err := ping.Stop(); err != nil {
		t.Logf("stop ping: %v", err)
	}
	rs, _ := pingTimeline(ping)
	gap, first := pingGap(rs, cut)
	tx, rx := ping.PingStats()
	t.Logf("bond member %s cut: tunnel ping %d transmitted, %d received, outage %d ms (longest gap between replies), first reply %d ms after the cut",
		active, tx, rx, gap.Milliseconds(), first.Sub(cut).Milliseconds())
	if gap > 5*time.Second {
		t.Errorf("outage %s after cutting %s: the bond should fail over within seconds", gap, active)
	}
	if got := e.busyMember("kvm1", []string{"eth0", "eth1"}, "blue-web-1", "10.10.1.12"); got != other {
		t.Errorf("after the cut kvm1 sends on %q, want %s", got, other)
	}
	// The reverse direction and another tier across the tunnel.
	e.pingOK("blue-web-2", "10.10.1.11", 10*time.Second)
	// vpcflow doctor sees the member down (OVSDB link_state): a warning,
	// the bond runs without redundancy.
	eventually(t, 20*time.Second, "doctor reports the cut member", func() (bool, string) {
		r := e.doctor("kvm1")
		return r.status(tunnel.CheckBond) == tunnel.StatusWarn && strings.Contains(r.results[tunnel.CheckBond].Detail, active+" down"), r.results[tunnel.CheckBond].Detail
	})

	// Isolation holds on the surviving member; nothing changed in the flows
	// (a link going down is no port change) and the audit is in sync.
	checkMatrix(t, e)
	assertExact(t, e, 1, 30*time.Second)
	if now := bridgeOf(e.status(), "kvm1").FlowModsSent; now != sent {
		t.Errorf("kvm1: %d flow-mods sent after convergence (%d -> %d): drift from the bundle action?", now-sent, sent, now)
	}

	// The member comes back; traffic keeps flowing.
	if err := e.lab.SetBondLink(e.ctx, "kvm1", active, true); err != nil {
		t.Fatal(err)
	}
	if lacp {
		eventually(t, 20*time.Second, "both members enabled again", func() (bool, string) {
			out, _ := e.lab.OVS(e.ctx, "kvm1", "ovs-appctl", "bond/show", "bond0")
			return strings.Count(out, ": enabled") >= 2, out
		})
	}
	e.pingOK("blue-web-1", "10.10.1.12", 15*time.Second)
	// The bundle is revertive: with both members live it picks the same
	// member as before the cut (the first live one, or the same hash).
	if got := e.busyMember("kvm1", []string{"eth0", "eth1"}, "blue-web-1", "10.10.1.12"); got != active {
		t.Errorf("after %s came back kvm1 sends on %q, want %s again", active, got, active)
	}
	if lacp {
		lacpHonoured(t, e)
	}
}

// lacpHonoured: the partner switch stops speaking LACP. Both members keep
// their carrier, but once the partner's PDUs expire (lacp-time fast: ~3 s)
// LACP disables them and the bundle action sends nothing: the tunnel stops
// and doctor fails the bond. This is the documented behaviour (no
// lacp-fallback-ab): an output that honoured only carrier would have kept
// sending into a partner that no longer aggregates the links. With LACP
// back on the partner, the tunnel recovers.
func lacpHonoured(t *testing.T, e *env) {
	if _, err := e.lab.PartnerVsctl(e.ctx, "kvm1", "set", "port", lab.PartnerBond, "lacp=off"); err != nil {
		t.Fatal(err)
	}
	off := time.Now()
	eventually(t, 20*time.Second, "LACP expired on both members", func() (bool, string) {
		out, _ := e.lab.OVS(e.ctx, "kvm1", "ovs-appctl", "bond/show", "bond0")
		return strings.Count(out, ": disabled") >= 2, out
	})
	t.Logf("partner LACP off: both members disabled by LACP %s later", time.Since(off).Round(time.Millisecond))
	e.pingBlocked("blue-web-1", "10.10.1.12")
	eventually(t, 20*time.Second, "doctor fails the bond", func() (bool, string) {
		r := e.doctor("kvm1")
		return r.status(tunnel.CheckBond) == tunnel.StatusFail && strings.Contains(r.results[tunnel.CheckBond].Detail, "LACP partner not current"), r.results[tunnel.CheckBond].Detail
	})
	if _, err := e.lab.PartnerVsctl(e.ctx, "kvm1", "set", "port", lab.PartnerBond, "lacp=active"); err != nil {
		t.Fatal(err)
	}
	e.pingOK("blue-web-1", "10.10.1.12", 20*time.Second)
	t.Logf("partner LACP on again: tunnel back %s after it was turned off", time.Since(off).Round(time.Millisecond))
}

// explainAgrees runs `vpcflow explain --trace` (model and ofproto/trace on
// every host it crosses) and fails unless the packet is delivered and both
// agree.
func (e *env) explainAgrees(from, to string) {
	e.t.Helper()
	args := []string{"explain", "--blueprint", e.bpPath, "--from", from, "--to", to, "--trace", "--format", "json"}
	for _, h := range e.bp.Hosts {
		args = append(args, "--rundir", h.Name+"="+filepath.Join(e.lab.Dir(), h.Name))
	}
	out, code := runCLI(e.t, args...)
	var x struct {
		Verdict string `json:"verdict"`
		Trace   struct {
			Agree bool `json:"agree"`
		} `json:"trace"`
	}
	if err := json.Unmarshal([]byte(out), &x); err != nil || code != 0 || x.Verdict != "delivered" || !x.Trace.Agree {
		e.t.Fatalf("explain --trace %s -> %s: exit %d, verdict %q, agree %v (%v):\n%s", from, to, code, x.Verdict, x.Trace.Agree, err, out)
	}
}

// busyMember returns the bond member whose TX counter rises most while
// from pings dst (the member the bundle action picked for that traffic).
func (e *env) busyMember(host string, members []string, from, dst string) string {
	e.t.Helper()
	txOf := func() []int {
		var out []int
		for _, m := range members {
			s, err := e.lab.Exec(e.ctx, e.lab.HostNS(host), "cat", fmt.Sprintf("/sys/class/net/%s/statistics/tx_packets", m))
			if err != nil {
				e.t.Fatal(err)
			}
			n, _ := strconv.Atoi(strings.TrimSpace(s))
			out = append(out, n)
		}
		return out
	}
	before := txOf()
	if _, recv, err := e.lab.Ping(e.ctx, from, dst, 20, 20*time.Millisecond, time.Second); err != nil || recv < 15 {
		e.t.Fatalf("%s -> %s: %d/20 replies (%v)", from, dst, recv, err)
	}
	after := txOf()
	best, bestN := "", 0
	for i, m := range members {
		if d := after[i] - before[i]; d > bestN {
			best, bestN = m, d
		}
	}
	if bestN < 15 {
		e.t.Fatalf("no member of %s sent the 20 echo requests (tx before %v, after %v)", host, before, after)
	}
	return best
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestBondConvertLive: a running host with a single-NIC uplink (eth0, flows
// in place, a ping across the tunnel running) is converted to a bond the
// way docs/ARCHITECTURE.md orders it: edit the blueprint, run `vpcflow host
// apply` (one transaction: eth0's interface moves into bond0 with its
// ofport, eth1 joins), the controller reloads. The established ping loses
// at most a couple of echoes, the controller converges at the new revision
// with the bundle action, and the new member then carries the tunnel when
// eth0 is cut.
func TestBondConvertLive(t *testing.T) {
	single := demoBlueprint(t, nil)
	bonded := strings.Replace(bondBlueprint(t, false), "revision: 1", "revision: 2", 1)
	e := startEnvTopology(t, single, bonded, filepath.Join(t.TempDir(), "lab"), nil)
	e.startController()
	if _, err := e.lab.WaitConverged(e.ctx, 60*time.Second, 1); err != nil {
		t.Fatal(err)
	}
	e.pingOK("blue-web-1", "10.10.1.12", 15*time.Second)
	ping, err := e.lab.StartPing("blue-web-1", "10.10.1.12", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer ping.Stop()
	waitReplies(t, ping, 10)

	if err := os.WriteFile(e.bpPath, []byte(bonded), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := e.lab.Exec(e.ctx, e.lab.HostNS("kvm1"), vpcflowBin, "host", "apply", "--blueprint", e.bpPath, "--host", "kvm1", "--ovsdb", e.lab.DBSock("kvm1"))
	if err != nil {
		t.Fatalf("host apply: %v\n%s", err, out)
	}
	t.Logf("host apply (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	if !strings.Contains(out, "port eth0 converted into a member of bond bond0") {
		t.Errorf("host apply did not report the conversion")
	}
	if _, err := e.lab.WaitConverged(e.ctx, 30*time.Second, 2); err != nil {
		t.Fatal(err)
	}
	t.Logf("converged at revision 2 %s after the blueprint change", time.Since(start).Round(time.Millisecond))
	n := replies(ping)
	waitReplies(t, ping, n+20)
	assertNoLoss(t, ping, "the live conversion to a bond", n+20) // spans the conversion and 20 echoes after it (a fixed count failed when convergence was quick)
	hostOut, _ := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "--names", "dump-flows", lab.Bridge, "table=20")
	if !strings.Contains(hostOut, "bundle(") {
		t.Fatalf("kvm1 host_out after the conversion:\n%s", hostOut)
	}
	assertExact(t, e, 2, 30*time.Second)
	if err := e.lab.SetBondLink(e.ctx, "kvm1", "eth0", false); err != nil {
		t.Fatal(err)
	}
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	if got := e.busyMember("kvm1", []string{"eth0", "eth1"}, "blue-web-1", "10.10.1.12"); got != "eth1" {
		t.Errorf("with eth0 cut kvm1 sends on %q, want eth1", got)
	}
}
