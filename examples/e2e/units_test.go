package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
)

// TestUnitsPrivileges drives the demo lab with the controller and the host
// watchers confined as the packaged systemd units confine them
// (packaging/systemd/*.service; without systemd as PID 1): every process
// runs with an empty capability bounding set, no_new_privs, and a
// read-only root file system (ProtectSystem=strict); the controller as an
// unprivileged user (User=vpcflow; nobody here), the watcher as root
// without capabilities (User=root: the OVS sockets' owner). The lab must
// converge, every watcher must close in-band control (an OVSDB write over
// the unix socket), and a watcher must restore its bootstrap flows into an
// emptied table (ovs-ofctl over the bridge's management socket). The
// watchers run from host files without --host, as host-watch.env has it,
// and the controller from the packaged controller.yaml (--config, as
// ExecStart has it) with an API token file.
// PrivateTmp is not emulated: the lab's OVS sockets live under /tmp, where
// a production host has /run/openvswitch.
func TestUnitsPrivileges(t *testing.T) {
	skipIfDisabled(t)
	units := map[string]map[string]string{}
	for _, u := range []string{"vpcflow-controller.service", "vpcflow-host-watch.service"} {
		units[u] = readUnitFile(t, filepath.Join("..", "..", "packaging", "systemd", u))
	}
	// The wrapper below emulates exactly these settings: fail if a unit
	// asks for something else, so that this test follows the units.
	want := map[string]string{"CapabilityBoundingSet": "", "AmbientCapabilities": "", "NoNewPrivileges": "yes", "ProtectSystem": "strict"}
	for u, kv := range units {
		for k, v := range want {
			if got, ok := kv[k]; !ok || got != v {
				t.Fatalf("%s: %s=%q, this test emulates %s=%q: update it", u, k, got, k, v)
			}
		}
	}
	if u := units["vpcflow-controller.service"]["User"]; u != "vpcflow" {
		t.Fatalf("controller unit User=%q: this test emulates vpcflow with nobody", u)
	}
	if u := units["vpcflow-host-watch.service"]["User"]; u != "root" {
		t.Fatalf("host watch unit User=%q: this test emulates root", u)
	}

	// Everything the unprivileged controller reads must be reachable for
	// nobody: a world-readable copy of the binary and the blueprint in a
	// 0755 directory.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "vpcflow")
	copyFile(t, vpcflowBin, bin, 0o755)
	confine := "--bounding-set=-all --inh-caps=-all --no-new-privs"
	wrapper := filepath.Join(dir, "vpcflow-confined")
	script := fmt.Sprintf(`#!/bin/sh
# vpcflow as the packaged units run it (see TestUnitsPrivileges).
bin=%q
case "$1 $2" in
"host watch") priv=%q ;;
controller*) priv=%q ;;
*) exec "$bin" "$@" ;;
esac
exec unshare --mount --propagation private sh -c 'mount -o remount,bind,ro / && exec setpriv '"$priv"' "$0" "$@"' "$bin" "$@"
`, bin, confine, "--reuid=65534 --regid=65534 --clear-groups "+confine)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	saved := vpcflowBin
	vpcflowBin = wrapper // startEnv's lab runs host apply (unconfined), host watch and the controller through it
	t.Cleanup(func() { vpcflowBin = saved })

	// Host files (no --host), as the packaged host-watch.env runs the watcher.
	e := startEnvOpts(t, demoBlueprint(t, nil), "", filepath.Join(t.TempDir(), "lab"), nil, func(o *lab.Options) { o.HostFiles = true })
	if err := os.Chmod(filepath.Dir(e.bpPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.bpPath, 0o644); err != nil {
		t.Fatal(err)
	}
	for p := filepath.Dir(e.bpPath); p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The controller runs as the unit runs it: ExecStart's --config with
	// the packaged controller.yaml, edited as an operator would (this
	// lab's blueprint and addresses, an API token file readable by the
	// service user only).
	execStart := units["vpcflow-controller.service"]["ExecStart"]
	if execStart != "/usr/bin/vpcflow controller --config /etc/vpcflow/controller.yaml" {
		t.Fatalf("controller unit ExecStart=%q: this test runs --config with the packaged controller.yaml: update it", execStart)
	}
	cfgPath, token := unitControllerConfig(t, dir, e)
	ctl, err := e.lab.StartController("--config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	e.ctl = ctl
	t.Cleanup(func() {
		if ctl.Running() {
			_ = ctl.Stop()
		}
	})
	t0 := time.Now()
	if _, err := e.lab.WaitConverged(e.ctx, 60*time.Second, 0); err != nil {
		t.Fatalf("the confined controller did not converge: %v\n%s", err, tailLines(e.ctl.Log(), 20))
	}
	t.Logf("confined controller: all bridges converged after %s", time.Since(t0).Round(time.Millisecond))

	// The processes really ran confined.
	checkConfined(t, e.ctl.Pid, "controller", 65534)
	watchers := 0
	for _, pid := range e.lab.Pids() {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmd), "host\x00watch\x00") {
			checkConfined(t, pid, "host watch", 0)
			watchers++
		}
	}
	if watchers != len(e.bp.Hosts) {
		t.Fatalf("found %d confined watchers, want %d", watchers, len(e.bp.Hosts))
	}

	// The confined controller read its token: POST /reload needs it.
	post := func(tok string) string {
		out, _ := e.lab.Exec(e.ctx, e.lab.MgmtNS(), "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Authorization: Bearer "+tok, lab.ControllerURL+"/reload")
		return strings.TrimSpace(out)
	}
	if code := post(token); code != "200" {
		t.Errorf("POST /reload with the token from controller.yaml's http-token-file: %s, want 200", code)
	}
	if code := post("wrong-token-wrong-token"); code != "401" {
		t.Errorf("POST /reload with a wrong token: %s, want 401", code)
	}

	// Every watcher closed in-band control: an OVSDB write.
	for _, h := range e.bp.Hosts {
		eventually(t, 20*time.Second, h.Name+": in-band control closed by the confined watcher", func() (bool, string) {
			out, _ := e.lab.OVS(e.ctx, h.Name, "ovs-vsctl", "--timeout=5", "--bare", "--columns=connection_mode", "list", "controller")
			modes := strings.Fields(out)
			for _, m := range modes {
				if m != "out-of-band" {
					return false, out
				}
			}
			return len(modes) > 0, out
		})
	}

	// With the controller gone, an emptied table gets the bootstrap flows
	// back from the confined watcher (ovs-ofctl, the management socket).
	if err := e.ctl.Stop(); err != nil {
		t.Fatalf("stop controller: %v", err)
	}
	if _, err := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "-O", "OpenFlow13", "del-flows", lab.Bridge); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "kvm1: the confined watcher restores the bootstrap flows", func() (bool, string) {
		out, _ := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "-O", "OpenFlow13", "--names", "dump-flows", lab.Bridge, "table=0")
		return strings.Contains(out, "in_port=LOCAL") && strings.Contains(out, "in_port=eth0"), out
	})
	watchLog := readFile(filepath.Join(e.lab.Dir(), "kvm1", "watch.log"))
	if !strings.Contains(watchLog, "bootstrap management flows installed") {
		t.Errorf("kvm1's watcher did not log the bootstrap:\n%s", tailLines(watchLog, 10))
	}
	for _, bad := range []string{"read-only file system", "permission denied", "operation not permitted"} {
		if strings.Contains(strings.ToLower(watchLog), bad) {
			t.Errorf("kvm1's watcher log mentions %q:\n%s", bad, tailLines(watchLog, 10))
		}
	}
}

// unitControllerConfig writes the packaged controller.yaml as an operator
// edits it for this lab: blueprint, listen and http set to the lab's
// values, http-token-file naming a token owned by root, group nobody's
// (the confined controller's), mode 0640.
func unitControllerConfig(t *testing.T, dir string, e *env) (path, token string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "packaging", "etc", "controller.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	args := e.lab.ControllerArgs()
	val := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		val[strings.TrimPrefix(args[i], "--")] = args[i+1]
	}
	cfg := string(b)
	for _, k := range []string{"blueprint", "listen", "http"} {
		re := regexp.MustCompile(`(?m)^` + k + `: .*$`)
		if val[k] == "" || !re.MatchString(cfg) {
			t.Fatalf("the packaged controller.yaml has no %s: line (or the lab no --%s): update this test", k, k)
		}
		cfg = re.ReplaceAllLiteralString(cfg, fmt.Sprintf("%s: %q", k, val[k]))
	}
	token = "units-test-token-0123456789abcdef"
	tokPath := filepath.Join(dir, "api.token")
	if err := os.WriteFile(tokPath, []byte(token+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tokPath, 0, 65534); err != nil {
		t.Fatal(err)
	}
	cfg += fmt.Sprintf("\n# added by TestUnitsPrivileges\nhttp-token-file: %q\n", tokPath)
	path = filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, token
}

// readUnitFile returns a unit file's Key=Value settings (last one wins).
func readUnitFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkConfined reads /proc/PID: no capability at all (effective,
// permitted, bounding), no_new_privs, the uid, and a read-only root mount.
func checkConfined(t *testing.T, pid int, what string, uid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("%s (pid %d): %v", what, pid, err)
	}
	st := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			st[k] = strings.TrimSpace(v)
		}
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		if st[k] != "0000000000000000" {
			t.Errorf("%s (pid %d): %s %s, want none", what, pid, k, st[k])
		}
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("%s (pid %d): NoNewPrivs %q", what, pid, st["NoNewPrivs"])
	}
	if u := strings.Fields(st["Uid"]); len(u) == 0 || u[0] != strconv.Itoa(uid) {
		t.Errorf("%s (pid %d): Uid %q, want %d", what, pid, st["Uid"], uid)
	}
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	ro := false
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			ro = strings.HasPrefix(f[5], "ro") // mount options: ro,... (the last "/" mount is the visible one)
		}
	}
	if !ro {
		t.Errorf("%s (pid %d): / is not mounted read-only", what, pid)
	}
}
