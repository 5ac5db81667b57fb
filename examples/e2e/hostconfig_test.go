package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
	"github.com/vpcflow/vpcflow/tunnel"
)

// TestHostFilesLab: the lab run as a fleet is: every host gets its host
// file (`vpcflow host config`, no tenant inventory), `host apply
// --host-config` provisions it, and `host watch --host-config` runs with
// one command line for every host (no --host: it finds its host by the
// bridge's datapath id). The demo converges and forwards as with the
// blueprint, the watchers close in-band control, `vpcflow doctor
// --host-config` checks a host against its file, and a new host file
// (revision 2, a new trusted peer) is what kvm1's watcher installs when
// its table empties with no controller running.
func TestHostFilesLab(t *testing.T) {
	e := startEnvOpts(t, demoBlueprint(t, nil), "", filepath.Join(t.TempDir(), "lab"), nil, func(o *lab.Options) { o.HostFiles = true })
	e.startController()
	start := time.Now()
	if _, err := e.lab.WaitConverged(e.ctx, 60*time.Second, 0); err != nil {
		t.Fatalf("controller did not converge with host-file hosts: %v", err)
	}
	t.Logf("all bridges converged %s after controller start", time.Since(start).Round(time.Millisecond))

	// The hosts hold no tenant inventory.
	vmData := map[string]string{}
	for _, p := range e.bp.VPCs {
		for _, tr := range p.Tiers {
			for _, m := range tr.VMs {
				vmData[m.IP], vmData[strings.ToLower(m.MAC)], vmData[m.Name] = m.Name, m.Name, m.Name
			}
		}
	}
	tokens := regexp.MustCompile(`[0-9A-Za-z:._-]+`)
	for _, h := range e.bp.Hosts {
		path := e.lab.HostConfigPath(h.Name)
		text := readFile(path)
		hc, err := flows.LoadHostConfig(path)
		if err != nil || hc.Host.Name != h.Name {
			t.Fatalf("%s's host file %s: %v\n%s", h.Name, path, err, text)
		}
		for _, tok := range tokens.FindAllString(text, -1) {
			if vm, ok := vmData[strings.Trim(strings.ToLower(tok), `"':,`)]; ok {
				t.Errorf("%s's host file holds %s's %q:\n%s", h.Name, vm, tok, text)
			}
		}
		// The watcher read that file, and found its host by the bridge's
		// datapath id (its command line has no --host).
		eventually(t, 10*time.Second, h.Name+"'s watcher started from its host file", func() (bool, string) {
			l := readFile(filepath.Join(e.lab.Dir(), h.Name, "watch.log"))
			return strings.Contains(l, "file="+path) && strings.Contains(l, "host="+h.Name) && strings.Contains(l, "host_by=datapath-id"), tailLines(l, 3)
		})
		eventually(t, 15*time.Second, h.Name+"'s Controller rows out-of-band", func() (bool, string) {
			out, _ := e.lab.OVS(e.ctx, h.Name, "ovs-vsctl", "--columns=connection_mode", "list", "controller")
			return strings.Contains(out, "out-of-band") && !strings.Contains(out, "in-band\n"), out
		})
	}
	// doctor takes its expectations from the host file too: kvm1's file
	// passes on kvm1, kvm2's file there fails on the datapath id.
	doctor := func(file string) *doctorRun {
		t.Helper()
		argv := []string{"netns", "exec", e.lab.HostNS("kvm1"), vpcflowBin, "doctor", "--host-config", file,
			"--ovsdb", e.lab.DBSock("kvm1"), "--format", "json", "--wait", "2s"}
		cmd := exec.CommandContext(e.ctx, "ip", argv...)
		cmd.Env = append(os.Environ(), e.lab.OVSEnv("kvm1")...)
		out, err := cmd.Output()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("vpcflow doctor: %v", err)
		}
		var list []tunnel.CheckResult
		if err := json.Unmarshal(out, &list); err != nil {
			t.Fatalf("vpcflow doctor --host-config (exit %d): %v\n%s", code, err, out)
		}
		r := &doctorRun{code: code, results: map[string]tunnel.CheckResult{}, raw: string(out)}
		for _, c := range list {
			r.results[c.Check] = c
		}
		return r
	}
	var r *doctorRun
	eventually(t, 20*time.Second, "doctor --host-config passes on kvm1", func() (bool, string) {
		r = doctor(e.lab.HostConfigPath("kvm1"))
		return r.code == 0, r.raw
	})
	for _, c := range []string{tunnel.CheckDatapathID, tunnel.CheckControllerTargets, tunnel.CheckTunnelIP, tunnel.CheckTunnelPort, tunnel.CheckOVSDBListen} {
		expectCheck(t, r, c, tunnel.StatusPass, "")
	}
	r = doctor(e.lab.HostConfigPath("kvm2"))
	if r.code != 1 {
		t.Fatalf("doctor with kvm2's host file on kvm1: exit %d, want 1\n%s", r.code, r.summary())
	}
	expectCheck(t, r, tunnel.CheckDatapathID, tunnel.StatusFail, "00000000000000a2")

	// Forwarding as with the blueprint: same tier across hosts, not
	// another VPC.
	e.pingOK("blue-web-1", "10.10.1.12", 15*time.Second)
	e.pingOK("red-app-1", "10.20.2.12", 15*time.Second)
	e.pingBlocked("blue-web-1", "10.20.2.11")

	// A new host file for kvm1 (revision 2, a new trusted peer), made from
	// a new blueprint the hosts never see.
	if err := e.ctl.Stop(); err != nil {
		t.Fatalf("stop controller: %v", err)
	}
	const peer = "198.51.100.77"
	const peerCookie = "cookie=0x4c633644d000002" // tunnel-allowlist, 198.51.100.77, revision 2
	bp2 := filepath.Join(t.TempDir(), "blueprint-r2.yaml")
	if err := os.WriteFile(bp2, []byte(demoBlueprint(t, func(s string) string {
		s = strings.Replace(s, "revision: 1", "revision: 2", 1)
		return strings.Replace(s, "trusted_peers: []", "trusted_peers: ["+peer+"]", 1)
	})), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := e.lab.Exec(e.ctx, "", vpcflowBin, "host", "config", "--blueprint", bp2, "--host", "kvm1", "--output-file", e.lab.HostConfigPath("kvm1")); err != nil {
		t.Fatalf("host config: %v\n%s", err, out)
	}
	watchLog := filepath.Join(e.lab.Dir(), "kvm1", "watch.log")
	eventually(t, 15*time.Second, "kvm1's watcher loads its new host file", func() (bool, string) {
		l := readFile(watchLog)
		return strings.Contains(l, "host file loaded") && strings.Contains(l, "revision=2"), tailLines(l, 3)
	})
	table10 := func() string {
		out, _ := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", lab.Bridge, "table=10")
		return out
	}
	if _, err := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "-O", "OpenFlow13", "del-flows", lab.Bridge); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "kvm1's watcher installs the revision 2 bootstrap flows from its host file", func() (bool, string) {
		d := table10()
		return strings.Contains(d, "nw_src="+peer) && strings.Contains(d, peerCookie), d
	})
	t.Logf("kvm1 watcher log:\n%s", grepLines(readFile(watchLog), "host file", 4))
}
