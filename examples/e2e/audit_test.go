package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

// audit runs `vpcflow audit --format json` in the management namespace.
func (e *env) audit(args ...string) (*controller.AuditReport, int) {
	e.t.Helper()
	argv := append([]string{"netns", "exec", e.lab.MgmtNS(), vpcflowBin, "audit", "--format", "json", "--controller", lab.ControllerURL}, args...)
	out, err := exec.CommandContext(e.ctx, "ip", argv...).Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("audit: %v", err)
	}
	var rep controller.AuditReport
	if err := json.Unmarshal(out, &rep); err != nil {
		e.t.Fatalf("audit json (exit %d): %v\n%s", code, err, out)
	}
	return &rep, code
}

// writeAPIToken writes an API bearer token file (mode 0600) for the
// controller's --http-token-file and the CLI's --token-file.
func writeAPIToken(t *testing.T) (path, token string) {
	t.Helper()
	token = "e2e-api-token-0123456789abcdef"
	path = filepath.Join(t.TempDir(), "api.token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, token
}

func exitCodeOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func bridgeAudit(t *testing.T, rep *controller.AuditReport, host string) *controller.BridgeAudit {
	for i := range rep.Bridges {
		if rep.Bridges[i].Host == host {
			return &rep.Bridges[i]
		}
	}
	t.Fatalf("no audit for %s", host)
	return nil
}

// TestAuditDriftAndRepair: audit finds drift made behind the controller's
// back; a GET /audit (plain `vpcflow audit`) only reports it and the
// tampered flows stay; `vpcflow audit --repair` (POST /audit?repair=1 with
// the token) repairs it; without the token the repair is refused.
func TestAuditDriftAndRepair(t *testing.T) {
	// A long drift interval: the audit itself must find the drift, and
	// only a repair request may fix it.
	tokenFile, _ := writeAPIToken(t)
	e := startEnv(t, demoBlueprint(t, nil), "--drift-interval", "1h", "--http-token-file", tokenFile)
	rep, code := e.audit()
	if code != 0 || !rep.InSync || !rep.Complete {
		t.Fatalf("fresh lab: audit exit %d, in_sync %v, complete %v", code, rep.InSync, rep.Complete)
	}
	b := bridgeAudit(t, rep, "kvm2")
	if b.Intended != b.Installed || b.InSync != b.Intended || len(b.Rules) == 0 {
		t.Fatalf("kvm2 audit: %+v", b)
	}

	// Behind the controller's back: a foreign flow and a deleted intended flow.
	if _, err := e.lab.OVS(e.ctx, "kvm2", "ovs-ofctl", "add-flow", lab.Bridge, "table=70,priority=500,reg0=0x1389,actions=drop"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lab.OVS(e.ctx, "kvm2", "ovs-ofctl", "del-flows", lab.Bridge, "--strict", "table=30,priority=100,in_port=vnet0"); err != nil {
		t.Fatal(err)
	}
	rep, code = e.audit("--host", "kvm2")
	b = bridgeAudit(t, rep, "kvm2")
	if code != 1 || rep.InSync || !b.Drift {
		t.Fatalf("after tampering: exit %d, in_sync %v, drift %v", code, rep.InSync, b.Drift)
	}
	if len(b.Extra) != 1 || !b.Extra[0].Foreign || !strings.Contains(b.Extra[0].Flow, "priority=500") {
		t.Errorf("extra: %+v", b.Extra)
	}
	if len(b.Missing) != 1 || b.Missing[0].Rule != flows.CatSpoofDrop.String() {
		t.Errorf("missing: %+v", b.Missing)
	}
	t.Logf("audit reported: extra %q (%s); missing %q (%s)", b.Extra[0].Flow, b.Extra[0].Describe, b.Missing[0].Flow, b.Missing[0].Describe)
	// A read never repairs: however often audit runs, the drift stays
	// (observed for 3 s) and the tampered flows are still installed.
	mods := bridgeOf(e.status(), "kvm2").FlowModsSent
	window := time.Now().Add(3 * time.Second)
	for time.Now().Before(window) {
		rep, code := e.audit("--host", "kvm2")
		if b := bridgeAudit(t, rep, "kvm2"); code != 1 || !b.Drift || len(b.Extra) != 1 || len(b.Missing) != 1 || rep.RepairRequested {
			t.Fatalf("GET /audit repaired or changed the drift: exit %d drift %v extra %d missing %d", code, b.Drift, len(b.Extra), len(b.Missing))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := bridgeOf(e.status(), "kvm2").FlowModsSent; got != mods {
		t.Fatalf("kvm2 got %d flow-mods during read-only audits (was %d)", got, mods)
	}
	if out, _ := e.lab.OVS(e.ctx, "kvm2", "ovs-ofctl", "dump-flows", lab.Bridge, "table=70"); !strings.Contains(out, "priority=500") {
		t.Fatalf("the foreign flow vanished after read-only audits:\n%s", out)
	}
	// A repair without the token is refused (exit 2, nothing written).
	refused, rerr := exec.CommandContext(e.ctx, "ip", "netns", "exec", e.lab.MgmtNS(), vpcflowBin, "audit", "--controller", lab.ControllerURL, "--host", "kvm2", "--repair").CombinedOutput()
	if exitCodeOf(rerr) != 2 || !strings.Contains(string(refused), "401") {
		t.Fatalf("audit --repair without the token: %v\n%s", rerr, refused)
	}
	// With the token: POST /audit?repair=1 repairs by the same diff path.
	rep, code = e.audit("--host", "kvm2", "--repair", "--token-file", tokenFile)
	if code != 1 || !rep.RepairRequested {
		t.Fatalf("audit --repair: exit %d, repair_requested %v", code, rep.RepairRequested)
	}
	eventually(t, 15*time.Second, "drift repaired", func() (bool, string) {
		rep, code := e.audit("--host", "kvm2")
		return code == 0 && rep.InSync, ""
	})
	if got := bridgeOf(e.status(), "kvm2").FlowModsSent; got <= mods {
		t.Errorf("the repair sent no flow-mod to kvm2 (%d, was %d)", got, mods)
	}
	if !strings.Contains(readFile(e.lab.Dir()+"/controller.log"), "drift detected") {
		t.Errorf("controller log has no drift line")
	}

	// Security counters: a rogue VXLAN burst and spoofed packets show up per rule.
	vm := e.vm("blue-web-1")
	if err := e.lab.SendRogueVXLAN(e.ctx, "kvm1", 5001, vm.MAC, vm.IP, 7); err != nil {
		t.Fatal(err)
	}
	if err := e.lab.SetVMAddr(e.ctx, vm.Name, "", "10.10.1.98"); err != nil {
		t.Fatal(err)
	}
	_, _ = e.lab.Exec(e.ctx, e.lab.VMNS(vm.Name), "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "10.10.1.98", "10.10.1.12")
	eventually(t, 10*time.Second, "drop counters in the audit", func() (bool, string) {
		rep, _ := e.audit("--host", "kvm1")
		var tunnelDrops, spoofDrops uint64
		for _, r := range bridgeAudit(t, rep, "kvm1").Rules {
			switch r.Rule {
			case flows.CatTunnelDrop.String():
				tunnelDrops += r.Packets
			case flows.CatSpoofDrop.String():
				if strings.Contains(r.Describe, vm.Name) {
					spoofDrops += r.Packets
				}
			}
		}
		return tunnelDrops >= 7 && spoofDrops >= 1, ""
	})

	// Metrics.
	out, err := e.lab.Exec(e.ctx, e.lab.MgmtNS(), "python3", "-c", "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9653/metrics').read().decode())")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"vpcflow_switches_connected 3", "vpcflow_flows_installed{", "vpcflow_drift_detected_total{bridge=\"00000000000000a2\"}",
		"vpcflow_reconcile_duration_seconds_bucket", "vpcflow_rule_packets_total{", "vpcflow_blueprint_revision 1", "vpcflow_flow_mods_total{",
		`vpcflow_bridge_info{bridge="00000000000000a2",host="kvm2"} 1`, "process_start_time_seconds "} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The conventions, checked by Prometheus' own linter on the live lab
	// (docs/metrics.md; promtool from Debian's prometheus package, make deps).
	pt, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (make deps installs Debian's prometheus package): %v", err)
	}
	lint := exec.Command(pt, "check", "metrics")
	lint.Stdin = strings.NewReader(out)
	if msg, err := lint.CombinedOutput(); err != nil || strings.TrimSpace(string(msg)) != "" {
		t.Errorf("promtool check metrics on the lab's /metrics: %v\n%s", err, msg)
	}
}

// TestManagementPathRepaired: a flow deleted behind the controller's back
// cuts kvm2's out-of-band control channel (uplink -> LOCAL). The host
// watcher notices the controller has been unreachable past its grace period,
// opens in-band control, the controller reconnects and repairs the flow, and
// the watcher closes in-band again.
func TestManagementPathRepaired(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, nil), "--drift-interval", "1h")
	e.pingOK("blue-web-2", "10.10.1.11", 10*time.Second)
	start := time.Now()
	if _, err := e.lab.OVS(e.ctx, "kvm2", "ovs-ofctl", "del-flows", lab.Bridge, "--strict", "table=10,priority=100"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "uplink->LOCAL flow restored on kvm2", func() (bool, string) {
		out, _ := e.lab.OVS(e.ctx, "kvm2", "ovs-ofctl", "dump-flows", lab.Bridge, "table=10")
		return strings.Contains(out, "priority=100 actions=LOCAL"), out
	})
	t.Logf("management path repaired %s after the flow was deleted", time.Since(start).Round(time.Second))
	eventually(t, 30*time.Second, "in-band control closed again", func() (bool, string) {
		out, _ := e.lab.OVS(e.ctx, "kvm2", "ovs-vsctl", "--columns=connection_mode", "list", "controller")
		return strings.Contains(out, "out-of-band") && !strings.Contains(out, "in-band\n"), out
	})
	if _, err := e.lab.WaitConverged(e.ctx, 30*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	log := readFile(e.lab.Dir() + "/kvm2/watch.log")
	if !strings.Contains(log, "no controller connected for") {
		t.Errorf("watch log does not show the unreachable-controller path:\n%s", log)
	}
	e.pingOK("blue-web-2", "10.10.1.11", 10*time.Second)
}
