package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/tunnel"
)

// doctorRun is one `vpcflow doctor --format json` run inside a host namespace.
type doctorRun struct {
	code    int
	results map[string]tunnel.CheckResult
	raw     string
}

// summary renders one line per check.
func (r *doctorRun) summary() string {
	var b strings.Builder
	for _, c := range tunnel.DoctorChecks {
		fmt.Fprintf(&b, "%-4s %-20s %s\n", r.results[c].Status, c, r.results[c].Detail)
	}
	return b.String()
}

func (r *doctorRun) status(check string) tunnel.CheckStatus { return r.results[check].Status }

// doctor runs the real binary in host's namespace with its OVS environment
// (OVS_RUNDIR etc.), against its unix socket, as an operator would.
func (e *env) doctor(host string, args ...string) *doctorRun {
	e.t.Helper()
	return e.doctorIn(e.lab.HostNS(host), host, args...)
}

// doctorIn runs doctor for host from namespace ns (the host's OVS
// environment and unix socket work from any namespace).
func (e *env) doctorIn(ns, host string, args ...string) *doctorRun {
	e.t.Helper()
	argv := append([]string{"netns", "exec", ns, vpcflowBin, "doctor",
		"--blueprint", e.bpPath, "--host", host, "--format", "json", "--wait", "2s"}, args...)
	cmd := exec.CommandContext(e.ctx, "ip", argv...)
	cmd.Env = append(os.Environ(), e.lab.OVSEnv(host)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			e.t.Fatalf("vpcflow doctor: %v", err)
		}
		code = ee.ExitCode()
	}
	var list []tunnel.CheckResult
	if err := json.Unmarshal(out, &list); err != nil {
		e.t.Fatalf("vpcflow doctor (exit %d): bad JSON: %v\nstdout:\n%s\nstderr:\n%s", code, err, out, stderr.String())
	}
	r := &doctorRun{code: code, results: map[string]tunnel.CheckResult{}, raw: string(out)}
	for i, c := range list {
		r.results[c.Check] = c
		if i >= len(tunnel.DoctorChecks) || tunnel.DoctorChecks[i] != c.Check {
			e.t.Fatalf("doctor JSON is not the stable check list: entry %d is %q\n%s", i, c.Check, out)
		}
	}
	if len(list) != len(tunnel.DoctorChecks) {
		e.t.Fatalf("doctor reported %d checks, want %d", len(list), len(tunnel.DoctorChecks))
	}
	return r
}

func (e *env) ovs(host, tool string, args ...string) string {
	e.t.Helper()
	out, err := e.lab.OVS(e.ctx, host, tool, args...)
	if err != nil {
		e.t.Fatalf("%s %v: %v", tool, args, err)
	}
	return out
}

func (e *env) hostExec(host string, argv ...string) {
	e.t.Helper()
	if _, err := e.lab.Exec(e.ctx, e.lab.HostNS(host), argv...); err != nil {
		e.t.Fatalf("%v in %s: %v", argv, host, err)
	}
}

func expectCheck(t *testing.T, r *doctorRun, check string, want tunnel.CheckStatus, detailHas string) {
	t.Helper()
	got := r.results[check]
	if got.Status != want || !strings.Contains(got.Detail, detailHas) {
		t.Fatalf("check %s = %s %q, want %s containing %q\nfull report:\n%s", check, got.Status, got.Detail, want, detailHas, r.raw)
	}
	if (want == tunnel.StatusFail || want == tunnel.StatusWarn) && got.Remediation == "" {
		t.Fatalf("check %s %s without a remediation", check, want)
	}
}

// TestDoctor runs `vpcflow doctor` on a healthy lab host, then breaks one
// fault line at a time and expects the matching FAIL (and exit 1), restoring
// each before the next.
func TestDoctor(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, nil))
	const host = "kvm1"
	start := time.Now()

	// Healthy: exit 0. The kernel datapath WARN (no module here) and an
	// in-band WARN until the host watcher has closed it are allowed.
	var r *doctorRun
	eventually(t, 20*time.Second, "doctor passes on a healthy host", func() (bool, string) {
		r = e.doctor(host)
		return r.code == 0 && r.status(tunnel.CheckConnectionMode) == tunnel.StatusPass, r.raw
	})
	for _, c := range []string{tunnel.CheckOVSDB, tunnel.CheckVSwitchd, tunnel.CheckBridge, tunnel.CheckFailMode,
		tunnel.CheckProtocols, tunnel.CheckDatapathID, tunnel.CheckControllerTargets, tunnel.CheckControllerConnected,
		tunnel.CheckOVSDBListen, tunnel.CheckMTU, tunnel.CheckTunnelIP, tunnel.CheckTunnelPort, tunnel.CheckNetworkManager} {
		expectCheck(t, r, c, tunnel.StatusPass, "")
	}
	if s := r.status(tunnel.CheckDatapath); s != tunnel.StatusPass && s != tunnel.StatusWarn {
		t.Fatalf("datapath check %s on netdev lab: %s", s, r.raw)
	}
	expectCheck(t, r, tunnel.CheckControllerTLS, tunnel.StatusWarn, "not encrypted")
	t.Logf("healthy host: exit 0 (%s):\n%s", time.Since(start).Round(time.Millisecond), r.summary())

	// The controller's view: its status API listens on the management
	// namespace's loopback, so ask from there (the host's OVSDB socket is a
	// file and reachable from any namespace).
	r = e.doctorIn(e.lab.MgmtNS(), host, "--controller-url", lab.ControllerURL)
	expectCheck(t, r, tunnel.CheckControllerStatus, tunnel.StatusPass, "converged, role MASTER")
	r = e.doctorIn(e.lab.MgmtNS(), host, "--controller-url", "http://127.0.0.1:1")
	expectCheck(t, r, tunnel.CheckControllerStatus, tunnel.StatusFail, "cannot read")

	// ovsdb-server listening on every address: FAIL; on the management
	// address without TLS: WARN.
	e.ovs(host, "ovs-appctl", "-t", "ovsdb-server", "ovsdb-server/add-remote", "ptcp:16640:0.0.0.0")
	removed := false
	defer func() {
		if !removed {
			_, _ = e.lab.OVS(e.ctx, host, "ovs-appctl", "-t", "ovsdb-server", "ovsdb-server/remove-remote", "ptcp:16640:0.0.0.0")
		}
	}()
	eventually(t, 5*time.Second, "doctor sees the 0.0.0.0 listener", func() (bool, string) {
		r = e.doctor(host)
		return r.status(tunnel.CheckOVSDBListen) == tunnel.StatusFail, r.raw
	})
	expectCheck(t, r, tunnel.CheckOVSDBListen, tunnel.StatusFail, "0.0.0.0:16640")
	if r.code != 1 {
		t.Fatalf("exit %d with a FAIL, want 1", r.code)
	}
	e.ovs(host, "ovs-appctl", "-t", "ovsdb-server", "ovsdb-server/remove-remote", "ptcp:16640:0.0.0.0")
	removed = true
	addr, err := e.lab.HostAddr(host)
	if err != nil {
		t.Fatal(err)
	}
	mgmtRemote := fmt.Sprintf("ptcp:16641:%s", addr)
	e.ovs(host, "ovs-appctl", "-t", "ovsdb-server", "ovsdb-server/add-remote", mgmtRemote)
	r = e.doctor(host)
	e.ovs(host, "ovs-appctl", "-t", "ovsdb-server", "ovsdb-server/remove-remote", mgmtRemote)
	expectCheck(t, r, tunnel.CheckOVSDBListen, tunnel.StatusWarn, "without TLS")
	eventually(t, 5*time.Second, "listener check passes again", func() (bool, string) {
		r = e.doctor(host)
		return r.status(tunnel.CheckOVSDBListen) == tunnel.StatusPass, r.raw
	})

	// Uplink MTU below 1500 + 50 (VXLAN).
	e.hostExec(host, "ip", "link", "set", "eth0", "mtu", "1400")
	restored := false
	defer func() {
		if !restored {
			_, _ = e.lab.Exec(e.ctx, e.lab.HostNS(host), "ip", "link", "set", "eth0", "mtu", fmt.Sprint(lab.UnderlayMTU))
		}
	}()
	r = e.doctor(host)
	e.hostExec(host, "ip", "link", "set", "eth0", "mtu", fmt.Sprint(lab.UnderlayMTU))
	restored = true
	expectCheck(t, r, tunnel.CheckMTU, tunnel.StatusFail, "MTU 1400 < 1550")
	if r.code != 1 {
		t.Fatalf("exit %d with an MTU FAIL, want 1", r.code)
	}

	// fail_mode unset (standalone) on a throwaway userspace bridge: never on
	// cloudbr0 with its tunnel port (LAB pitfall: NORMAL + tunnel + LOCAL
	// loops).
	const scratch = "vfdoc0"
	e.ovs(host, "ovs-vsctl", "add-br", scratch, "--", "set", "bridge", scratch, "datapath_type=netdev")
	defer func() { _, _ = e.lab.OVS(e.ctx, host, "ovs-vsctl", "--if-exists", "del-br", scratch) }()
	r = e.doctor(host, "--bridge", scratch, "--uplink", "eth0")
	t.Logf("throwaway standalone bridge:\n%s", r.summary())
	expectCheck(t, r, tunnel.CheckFailMode, tunnel.StatusFail, "standalone")
	expectCheck(t, r, tunnel.CheckControllerTargets, tunnel.StatusFail, "no controller")
	expectCheck(t, r, tunnel.CheckDatapathID, tunnel.StatusFail, "not set")
	if r.code != 1 {
		t.Fatalf("exit %d on a standalone bridge, want 1", r.code)
	}
	e.ovs(host, "ovs-vsctl", "del-br", scratch)

	// A Linux bridge where the OVS bridge should be.
	const linuxBr = "vfdoclb0"
	e.hostExec(host, "ip", "link", "add", linuxBr, "type", "bridge")
	defer func() { _, _ = e.lab.Exec(e.ctx, e.lab.HostNS(host), "ip", "link", "del", linuxBr) }()
	r = e.doctor(host, "--bridge", linuxBr)
	expectCheck(t, r, tunnel.CheckBridge, tunnel.StatusFail, "Linux bridge")
	if !strings.Contains(r.results[tunnel.CheckBridge].Remediation, "network.bridge.type=openvswitch") {
		t.Fatalf("Linux bridge remediation lacks the CloudStack setting: %q", r.results[tunnel.CheckBridge].Remediation)
	}

	// Back to healthy.
	r = e.doctor(host)
	if r.code != 0 {
		t.Fatalf("doctor after restoring everything: exit %d\n%s", r.code, r.raw)
	}
	t.Logf("doctor checks done in %s", time.Since(start).Round(time.Millisecond))
}
