package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
)

func dropLines(e *env, rule string) []string {
	var out []string
	for _, l := range strings.Split(readFile(e.lab.Dir()+"/controller.log"), "\n") {
		if strings.Contains(l, `msg="dropped packet"`) && strings.Contains(l, "rule="+rule+" ") {
			out = append(out, l)
		}
	}
	return out
}

// TestDropLogging: with --drop-log, drops by the security rules reach the
// controller as rate-limited packet-ins and become structured log lines
// naming the rule in blueprint terms; allowed traffic never touches the meter.
func TestDropLogging(t *testing.T) {
	const rate = 5
	e := startEnv(t, demoBlueprint(t, nil), "--drop-log", "--drop-log-rate", "5")
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)

	// Only security drop flows carry the meter.
	out, err := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "dump-flows", lab.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "meter:1") && !regexp.MustCompile(`cookie=0x(8|b|5)[0-9a-f]{14},`).MatchString(l) {
			t.Errorf("meter on a flow that is not a security drop: %s", l)
		}
	}
	if !strings.Contains(out, "meter:1,CONTROLLER:128") {
		t.Fatalf("no drop-logging flows:\n%s", out)
	}

	// Spoofed source IP from blue-web-1.
	vm, peer := e.vm("blue-web-1"), e.vm("blue-web-2")
	ns := e.lab.VMNS(vm.Name)
	if _, err := e.lab.Exec(e.ctx, ns, "ip", "neigh", "replace", peer.IP, "lladdr", peer.MAC, "dev", lab.VMIface, "nud", "permanent"); err != nil {
		t.Fatal(err)
	}
	if err := e.lab.SetVMAddr(e.ctx, vm.Name, "", "10.10.1.99"); err != nil {
		t.Fatal(err)
	}
	_, _ = e.lab.Exec(e.ctx, ns, "ping", "-c", "2", "-i", "0.3", "-W", "1", "-I", "10.10.1.99", peer.IP)
	eventually(t, 10*time.Second, "spoof drop logged", func() (bool, string) {
		for _, l := range dropLines(e, "spoof-drop") {
			if strings.Contains(l, "src=10.10.1.99") && strings.Contains(l, "blue-web-1") && strings.Contains(l, "in_port=vnet0") {
				return true, l
			}
		}
		return false, ""
	})

	// Guest to the controller's OpenFlow port: management guard.
	if err := e.lab.GuestRouteToUnderlay(e.ctx, vm.Name); err != nil {
		t.Fatal(err)
	}
	if e.lab.TCPOpen(e.ctx, vm.Name, e.lab.MgmtAddr(), 6653, time.Second) {
		t.Fatal("guest reached the controller")
	}
	eventually(t, 10*time.Second, "mgmt-guard drop logged", func() (bool, string) {
		for _, l := range dropLines(e, "mgmt-guard") {
			if strings.Contains(l, "dst=192.0.2.250") && strings.Contains(l, "dport=6653") {
				return true, l
			}
		}
		return false, ""
	})

	// A rogue VXLAN flood: logged at most at the meter's rate, the rest
	// dropped by the meter; a same-tier ping runs undisturbed meanwhile.
	ping, err := e.lab.StartPing("blue-web-2", "10.10.1.11", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	before := len(dropLines(e, "tunnel-allowlist-drop"))
	start := time.Now()
	if err := e.lab.SendRogueVXLAN(e.ctx, "kvm1", 5001, vm.MAC, vm.IP, 300); err != nil {
		t.Fatal(err)
	}
	flood := time.Since(start)
	eventually(t, 10*time.Second, "tunnel drops logged", func() (bool, string) {
		return len(dropLines(e, "tunnel-allowlist-drop")) > before, ""
	})
	time.Sleep(time.Second) // bounded window for late log lines (negative bound check below)
	logged := len(dropLines(e, "tunnel-allowlist-drop")) - before
	max := int(flood.Seconds()*rate) + rate + 3 // rate x duration + burst + slack
	t.Logf("rogue flood of 300 packets in %s: %d logged (meter %d/s, bound %d)", flood.Round(time.Millisecond), logged, rate, max)
	if logged > max {
		t.Errorf("%d drop events logged for a %s flood: the meter (%d/s) did not limit them", logged, flood, rate)
	}
	ms, _ := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "meter-stats", lab.Bridge)
	if !regexp.MustCompile(`0: packet_count:[1-9]`).MatchString(ms) {
		t.Errorf("meter band dropped nothing:\n%s", ms)
	}
	n := replies(ping)
	waitReplies(t, ping, n+10)
	_ = ping.Stop()
	tx, rx := ping.PingStats()
	if tx-rx > 1 {
		t.Errorf("same-tier ping lost %d of %d during the drop-log flood", tx-rx, tx)
	}
	if rep, code := e.audit(); code != 0 || !rep.InSync {
		t.Errorf("audit with drop logging: exit %d", code)
	}
}
