package e2e

// The revision fence on real Open vSwitch (docs/cluster.md, "The revision
// fence"): an older blueprint never overwrites flows a newer one wrote,
// neither from a restarted single controller nor from surviving replicas
// after the replica that applied the newer revision was killed (issue 13,
// defects 2 and 10).

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/examples/lab"
)

const blueWeb2Line = `          - {name: blue-web-2, host: kvm2, port: vnet0, mac: "52:54:00:b1:01:0c", ip: 10.10.1.12}` + "\n"

// withRevision sets the blueprint's revision; withoutBlueWeb2 removes the
// VM blue-web-2 (kvm2), the peer of blue-web-1 (kvm1) in tier blue/web.
func withRevision(t *testing.T, s string, rev int) string {
	t.Helper()
	out := strings.Replace(s, "revision: 1\n", fmt.Sprintf("revision: %d\n", rev), 1)
	if out == s {
		t.Fatal("test bug: revision line not found")
	}
	return out
}

func withoutBlueWeb2(t *testing.T, s string) string {
	t.Helper()
	out := strings.Replace(s, blueWeb2Line, "", 1)
	if out == s {
		t.Fatal("test bug: blue-web-2 line not found")
	}
	return out
}

// dumpAll returns every host's flows without counters (ovs-ofctl).
func dumpAll(e *env) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, h := range e.bp.Hosts {
		d, err := e.lab.OVS(e.ctx, h.Name, "ovs-ofctl", "--no-stats", "dump-flows", lab.Bridge)
		if err != nil {
			e.t.Fatalf("dump-flows %s: %v", h.Name, err)
		}
		out[h.Name] = d
	}
	return out
}

// noReplies pings from a VM for d and fails on any reply.
func noReplies(e *env, from, ip string, d time.Duration, what string) {
	e.t.Helper()
	ping, err := e.lab.StartPing(from, ip, 100*time.Millisecond)
	if err != nil {
		e.t.Fatal(err)
	}
	time.Sleep(d) // a bounded observation window for a negative check
	_ = ping.Stop()
	tx, rx := ping.PingStats()
	e.t.Logf("%s: %s -> %s: %d transmitted, %d received", what, from, ip, tx, rx)
	if tx < int(d/(200*time.Millisecond)) || rx != 0 {
		e.t.Fatalf("%s: the removed VM was reachable again: %d of %d pings answered", what, rx, tx)
	}
}

// fencedOrUntouched checks one replica's view after it started with an
// older blueprint: every bridge holding revision 3 is fenced (and says
// so), every other one is converged without a single flow-mod; want names
// the hosts that must be fenced.
func fencedOrUntouched(st *controller.Status, want ...string) (bool, string) {
	by := map[string]controller.BridgeStatus{}
	for _, b := range st.Bridges {
		by[b.Host] = b
	}
	for _, h := range want {
		b := by[h]
		if !b.Fenced || b.InstalledRevision != 3 || !strings.Contains(b.Standby, "revision 3") {
			return false, fmt.Sprintf("%s not fenced by revision 3: %+v", h, b)
		}
	}
	for _, b := range st.Bridges {
		if b.FlowModsSent != 0 {
			return false, fmt.Sprintf("%s: %d flow-mods sent", b.Host, b.FlowModsSent)
		}
	}
	return true, ""
}

// TestRestartWithOlderBlueprintChangesNothing (defect 2): a single
// controller restarted with an older blueprint file changes nothing on any
// switch, and the VM revision 3 removed stays unreachable.
func TestRestartWithOlderBlueprintChangesNothing(t *testing.T) {
	rev2 := withRevision(t, demoBlueprint(t, nil), 2)
	rev3 := withoutBlueWeb2(t, withRevision(t, demoBlueprint(t, nil), 3))
	e := startEnv(t, rev2)
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	if err := os.WriteFile(e.bpPath, []byte(rev3), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lab.WaitConverged(e.ctx, 20*time.Second, 3); err != nil {
		t.Fatal(err)
	}
	e.pingBlocked("blue-web-1", "10.10.1.12")
	before := dumpAll(e)

	// The controller dies; the operator restores the older file.
	if err := e.ctl.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.bpPath, []byte(rev2), 0o644); err != nil {
		t.Fatal(err)
	}
	e.startController()
	eventually(t, 30*time.Second, "every bridge connected and read", func() (bool, string) {
		st, err := e.lab.ControllerStatus(e.ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, b := range st.Bridges {
			if !b.Connected || !(b.Fenced || b.Reconciles > 0) {
				return false, b.Host + " not read yet"
			}
		}
		return true, ""
	})
	// Probe through a few drift checks (--drift-interval 2s).
	noReplies(e, "blue-web-1", "10.10.1.12", 5*time.Second, "older controller running")
	after := dumpAll(e)
	for h, d := range before {
		if after[h] != d {
			t.Errorf("%s: flows changed under the older controller:\nbefore:\n%s\nafter:\n%s", h, d, after[h])
		}
	}
	// kvm1 and kvm2 hold revision-3 flows (blue/web changed there); kvm3
	// does not carry blue/web: revision 3 never wrote it.
	if ok, why := fencedOrUntouched(e.status(), "kvm1", "kvm2"); !ok {
		t.Fatal(why)
	}
	if !strings.Contains(e.ctl.Log(), "revision fence: the bridge holds flows of a newer blueprint revision") {
		t.Errorf("no fence warning in the controller log:\n%s", tailLines(e.ctl.Log(), 20))
	}
	out, err := e.lab.Exec(e.ctx, e.lab.ReplicaNS(0), vpcflowBin, "status", "--controller", lab.ControllerURL)
	if err == nil || !strings.Contains(out, "fenced") {
		t.Errorf("vpcflow status must show fenced bridges and exit 1: err %v\n%s", err, out)
	}

	// The newer blueprint arrives: writing resumes, nothing to change.
	if err := os.WriteFile(e.bpPath, []byte(rev3), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lab.WaitConverged(e.ctx, 20*time.Second, 3); err != nil {
		t.Fatal(err)
	}
	for _, b := range e.status().Bridges {
		if b.Fenced || b.Standby != "" {
			t.Errorf("%s still on standby at revision 3: %q", b.Host, b.Standby)
		}
	}
	e.pingBlocked("blue-web-1", "10.10.1.12")
	e.pingOK("red-app-1", "10.20.2.12", 5*time.Second)
}

// TestFailoverNeverRollsBack (defect 10): three replicas at revision 2;
// revision 3 (blue-web-2 removed) reaches only the owner of kvm1, which
// applies it; the owner is SIGKILLed. The survivors, still at revision 2,
// must never give blue-web-2 its connectivity back, and report why.
func TestFailoverNeverRollsBack(t *testing.T) {
	rev2 := withRevision(t, clusterBlueprint(t), 2)
	rev3 := withoutBlueWeb2(t, rev2)
	rev3 = strings.Replace(rev3, "revision: 2\n", "revision: 3\n", 1)
	e := startEnvNoController(t, rev2)
	ce := &clusterEnv{env: e, procs: map[int]*lab.Proc{}}
	files := map[int]string{}
	for _, i := range allReplicas {
		files[i] = filepath.Join(t.TempDir(), fmt.Sprintf("replica-%d.yaml", i))
		if err := os.WriteFile(files[i], []byte(rev2), 0o644); err != nil {
			t.Fatal(err)
		}
		// Each replica reads its own file (no distribution between them:
		// the survivors must still be at revision 2 when the owner dies).
		ce.startReplica(i, "--blueprint", files[i], "--drift-interval", "2s", "--cluster-no-fetch")
	}
	v, err := e.lab.WaitClusterConverged(e.ctx, allReplicas, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	victim := v.OwnerOf("kvm1")
	survivors := without(allReplicas, victim)
	t.Logf("owners: %s; replica %d gets revision 3", v.Ownership(), victim)

	if err := os.WriteFile(files[victim], []byte(rev3), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the owner wrote revision 3 to kvm1", func() (bool, string) {
		st, err := e.lab.ReplicaStatus(e.ctx, victim)
		if err != nil {
			return false, err.Error()
		}
		for _, b := range st.Bridges {
			if b.Host == "kvm1" {
				return b.Converged && b.Revision == 3, fmt.Sprintf("%+v", b)
			}
		}
		return false, "kvm1 not in status"
	})
	e.pingBlocked("blue-web-1", "10.10.1.12")

	// Probe across the kill, the failover and the survivors' standby.
	ping, err := e.lab.StartPing("blue-web-1", "10.10.1.12", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer ping.Stop()
	// What each survivor had sent kvm1 before (ownership may have moved at
	// start-up): only writes after the kill count.
	sentBefore := map[int]uint64{}
	for _, i := range survivors {
		if st, err := e.lab.ReplicaStatus(e.ctx, i); err == nil {
			for _, b := range st.Bridges {
				if b.Host == "kvm1" {
					sentBefore[i] = b.FlowModsSent
				}
			}
		}
	}
	killed := time.Now()
	if err := ce.procs[victim].Kill(); err != nil {
		t.Fatal(err)
	}
	var fencedBy int
	eventually(t, 30*time.Second, "a survivor masters kvm1 and has read its table", func() (bool, string) {
		for _, i := range survivors {
			st, err := e.lab.ReplicaStatus(e.ctx, i)
			if err != nil {
				return false, err.Error()
			}
			for _, b := range st.Bridges {
				if b.Host == "kvm1" && b.Role == "MASTER" && (b.Fenced || b.Reconciles > 0) {
					fencedBy = i
					return true, ""
				}
			}
		}
		return false, "no survivor masters kvm1 yet"
	})
	t.Logf("replica %d masters kvm1 %s after SIGKILL of replica %d", fencedBy, time.Since(killed).Round(time.Millisecond), victim)
	time.Sleep(4 * time.Second) // keep probing through two drift checks
	_ = ping.Stop()
	tx, rx := ping.PingStats()
	t.Logf("blue-web-1 -> blue-web-2 (removed in revision 3) across the failover: %d transmitted, %d received", tx, rx)
	if tx < 20 || rx != 0 {
		t.Fatalf("the removed VM regained reachability after the failover: %d of %d pings answered", rx, tx)
	}
	st, err := e.lab.ReplicaStatus(e.ctx, fencedBy)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Bridges {
		if b.Host != "kvm1" {
			continue
		}
		if n := b.FlowModsSent - sentBefore[fencedBy]; n != 0 {
			t.Errorf("replica %d sent %d flow-mods to kvm1 (revision 3) with revision 2 after the failover", fencedBy, n)
		}
		if !b.Fenced || b.InstalledRevision != 3 || !strings.Contains(b.Standby, "revision 3") {
			t.Errorf("replica %d does not report the fence on kvm1: %+v", fencedBy, b)
		}
	}
	if !strings.Contains(ce.procs[fencedBy].Log(), "revision fence") {
		t.Errorf("replica %d logged no revision fence warning", fencedBy)
	}
}
