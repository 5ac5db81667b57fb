package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
)

// TestControllerRestartNoLoss: flows persist under fail_mode=secure while the
// controller is gone; the restarted controller finds them identical (zero
// flow-mods) and a running same-tier ping across hosts loses nothing.
func TestControllerRestartNoLoss(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, nil))
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	ping, err := e.lab.StartPing("blue-web-1", "10.10.1.12", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Let the ping run, then kill the controller hard.
	waitReplies(t, ping, 10)
	if err := e.ctl.Kill(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	// Controller gone: the dataplane keeps forwarding (bounded window).
	n0 := replies(ping)
	waitReplies(t, ping, n0+20)
	e.startController()
	st, err := e.lab.WaitConverged(e.ctx, 30*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("controller restarted; re-converged %s after the kill", time.Since(down).Round(time.Millisecond))
	for _, b := range st.Bridges {
		if b.FlowModsSent != 0 {
			t.Errorf("%s: restarted controller sent %d flow-mods; reconcile of unchanged flows must be a no-op", b.Host, b.FlowModsSent)
		}
	}
	n1 := replies(ping)
	waitReplies(t, ping, n1+20)
	if err := ping.Stop(); err != nil {
		t.Logf("stop ping: %v", err)
	}
	tx, rx := ping.PingStats()
	t.Logf("ping across controller restart: %d transmitted, %d received, %d lost", tx, rx, tx-rx)
	if tx < 40 || tx-rx > 1 { // the very last echo may be in flight when ping is stopped
		t.Fatalf("packet loss across controller restart: %d transmitted, %d received", tx, rx)
	}
}

func replies(p *lab.Proc) int {
	_, rx := p.PingStats()
	return rx
}

func waitReplies(t *testing.T, p *lab.Proc, n int) {
	t.Helper()
	eventually(t, 20*time.Second, "ping replies", func() (bool, string) {
		r := replies(p)
		return r >= n, strings.TrimSpace(tailLines(p.Log(), 2))
	})
}

// TestVSwitchdRestartRecovers: a restarted ovs-vswitchd starts with an empty
// table; the host watcher opens in-band control so the controller behind
// cloudbr0 is reachable, the controller reinstalls the flows, and the watcher
// closes in-band again.
func TestVSwitchdRestartRecovers(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, nil))
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	start := time.Now()
	if err := e.lab.RestartVSwitchd("kvm2"); err != nil {
		t.Fatal(err)
	}
	e.pingOK("blue-web-1", "10.10.1.12", 30*time.Second)
	t.Logf("kvm2 ovs-vswitchd restart: cross-host ping back after %s", time.Since(start).Round(time.Millisecond))
	if _, err := e.lab.WaitConverged(e.ctx, 30*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("kvm2 re-converged %s after the restart", time.Since(start).Round(time.Millisecond))
	eventually(t, 15*time.Second, "in-band control closed again on kvm2", func() (bool, string) {
		out, _ := e.lab.OVS(e.ctx, "kvm2", "ovs-vsctl", "--columns=connection_mode", "list", "controller")
		return strings.Contains(out, "out-of-band"), out
	})
	checkMatrix(t, e)
}

// TestBlueprintReload: an invalid blueprint is rejected with its errors and
// the last good policy stays; a valid newer revision is applied by diff.
func TestBlueprintReload(t *testing.T) {
	text := demoBlueprint(t, nil)
	e := startEnv(t, text)
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	before := e.status()

	// 1. Invalid: an unknown key. Rejected, nothing changes on the switches.
	bad := strings.Replace(text, "revision: 1", "revision: 2\nbogus_key: 1", 1)
	if err := os.WriteFile(e.bpPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "reload rejected", func() (bool, string) {
		st := e.status()
		return strings.Contains(st.LastReloadError, "bogus_key"), st.LastReloadError
	})
	st := e.status()
	if st.Revision != 1 {
		t.Fatalf("revision %d after a rejected reload, want 1", st.Revision)
	}
	for i, b := range st.Bridges {
		if b.FlowModsSent != before.Bridges[i].FlowModsSent {
			t.Errorf("%s: flow-mods sent after a rejected reload", b.Host)
		}
	}
	e.pingOK("blue-web-1", "10.10.1.12", 5*time.Second)

	// 2. Valid revision 2: blue-web-2 leaves the blueprint. Its flows go
	// away everywhere; blue-web-1 can no longer reach it; others untouched.
	good := strings.Replace(text, "revision: 1", "revision: 2", 1)
	good = strings.Replace(good, `          - {name: blue-web-2, host: kvm2, port: vnet0, mac: "52:54:00:b1:01:0c", ip: 10.10.1.12}`+"\n", "", 1)
	if good == strings.Replace(text, "revision: 1", "revision: 2", 1) {
		t.Fatal("test bug: VM line not removed")
	}
	if err := os.WriteFile(e.bpPath, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lab.WaitConverged(e.ctx, 20*time.Second, 2); err != nil {
		t.Fatal(err)
	}
	if st := e.status(); st.LastReloadError != "" {
		t.Fatalf("valid reload reported an error: %s", st.LastReloadError)
	}
	e.pingBlocked("blue-web-1", "10.10.1.12")
	e.pingOK("red-app-1", "10.20.2.12", 5*time.Second)

	// 3. Revision 3 removes host kvm3 (and its VMs) while the controller is
	// down: the restarted controller has never seen kvm3, finds vpcflow flows
	// on it, and reduces it to its management flows (LOCAL<->uplink, tunnel
	// allowlist): stale guest policy is removed, the host stays reachable.
	if err := e.ctl.Kill(); err != nil {
		t.Fatal(err)
	}
	var kept []string
	skip := false
	for _, line := range strings.Split(strings.Replace(good, "revision: 2", "revision: 3", 1), "\n") {
		switch {
		case strings.HasPrefix(line, "  - name: kvm3"):
			skip = true
			continue
		case skip && strings.HasPrefix(line, "    "):
			continue
		case strings.Contains(line, "host: kvm3"):
			continue
		}
		skip = false
		kept = append(kept, line)
	}
	if err := os.WriteFile(e.bpPath, []byte(strings.Join(kept, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	e.startController()
	eventually(t, 20*time.Second, "kvm3 reduced to its management flows", func() (bool, string) {
		st, err := e.lab.ControllerStatus(e.ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, b := range st.Bridges {
			if b.DatapathID == "00000000000000a3" {
				return b.Converged && b.FlowsInstalled > 0 && b.FlowsInstalled < 30, fmt.Sprintf("%+v", b)
			}
		}
		return false, "kvm3 not in status"
	})
	n, err := e.lab.FlowCount(e.ctx, "kvm3")
	if err != nil || n == 0 || n >= 30 {
		t.Fatalf("kvm3 has %d flows (%v): want only its management flows", n, err)
	}
	ln, err := e.lab.Listen("kvm3", "tcp", 22)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Stop()
	if err := e.lab.TCPConnect(e.ctx, "mgmt", "192.0.2.13", 22, 3*time.Second); err != nil {
		t.Fatalf("management cannot reach the removed host kvm3: %v", err)
	}
	e.pingBlocked("blue-db-2", "10.10.2.11") // blue-db-1 was on kvm3 and left with it
}
