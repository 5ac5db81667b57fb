package tunnel

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ovsLab is a private ovsdb-server (and optionally ovs-vswitchd) in its own
// state directory, stopped by pid when the test ends.
type ovsLab struct {
	t        *testing.T
	dir      string
	endpoint string
	vswitchd bool
}

// requireE2E skips only when VPCFLOW_E2E=0 and fails loudly when the OVS
// tools are missing.
func requireE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("VPCFLOW_E2E") == "0" {
		t.Skip("VPCFLOW_E2E=0: skipping test against a real ovsdb-server")
	}
	for _, tool := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vsctl", "ovs-vswitchd", "ovs-ofctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found in PATH: install Open vSwitch (apt-get install openvswitch-switch) or set VPCFLOW_E2E=0 to skip: %v", tool, err)
		}
	}
}

func randName(prefix string) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

func schemaPath(t *testing.T) string {
	for _, p := range []string{"/usr/share/openvswitch/vswitch.ovsschema", "/usr/local/share/openvswitch/vswitch.ovsschema"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("vswitch.ovsschema not found under /usr/share/openvswitch or /usr/local/share/openvswitch")
	return ""
}

// startOVS starts a private ovsdb-server, and ovs-vswitchd when vswitchd.
func startOVS(t *testing.T, vswitchd bool) *ovsLab {
	t.Helper()
	requireE2E(t)
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "vft")
	if err != nil {
		t.Fatal(err)
	}
	l := &ovsLab{t: t, dir: dir, endpoint: "unix:" + filepath.Join(dir, "db.sock"), vswitchd: vswitchd}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("OVS state and logs kept in %s", dir)
		}
	})
	l.run("ovsdb-tool", "create", filepath.Join(dir, "conf.db"), schemaPath(t))
	l.run("ovsdb-server", "--remote=punix:"+filepath.Join(dir, "db.sock"), "--pidfile", "--detach",
		"--log-file", "-vconsole:off", filepath.Join(dir, "conf.db"))
	t.Cleanup(func() { l.stop("ovsdb-server") })
	l.vsctl("--no-wait", "init")
	if vswitchd {
		l.run("ovs-vswitchd", "--pidfile", "--detach", "--log-file", "-vconsole:off")
		t.Cleanup(func() { l.stop("ovs-vswitchd") })
	}
	return l
}

func (l *ovsLab) env() []string {
	env := os.Environ()
	for _, k := range []string{"OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"} {
		env = append(env, k+"="+l.dir)
	}
	return env
}

func (l *ovsLab) run(name string, args ...string) string {
	l.t.Helper()
	out, err := l.try(name, args...)
	if err != nil {
		l.t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func (l *ovsLab) try(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = l.env()
	cmd.Dir = l.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", &cmdError{err: err, stderr: strings.TrimSpace(errb.String())}
	}
	return strings.TrimSpace(out.String()), nil
}

type cmdError struct {
	err    error
	stderr string
}

func (e *cmdError) Error() string { return e.err.Error() + ": " + e.stderr }

// vsctl runs ovs-vsctl against the lab (always with a timeout; writes do
// not wait for a vswitchd when there is none).
func (l *ovsLab) vsctl(args ...string) string {
	l.t.Helper()
	a := []string{"--timeout=5"}
	if !l.vswitchd {
		a = append(a, "--no-wait")
	}
	return l.run("ovs-vsctl", append(a, args...)...)
}

func (l *ovsLab) ofctl(args ...string) string {
	l.t.Helper()
	return l.run("ovs-ofctl", append([]string{"-O", "OpenFlow13", "--timeout=5"}, args...)...)
}

// stop terminates a daemon by the pid in its pidfile and waits for it.
func (l *ovsLab) stop(daemon string) {
	pidfile := filepath.Join(l.dir, daemon+".pid")
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// addBridge creates a hand-made bridge (userspace datapath) with an uplink
// port, as an operator would, plus extra ovs-vsctl arguments, and deletes
// it when the test ends (its LOCAL port is a tap device in the root
// namespace while a vswitchd runs).
func (l *ovsLab) addBridge(name, uplink string, extra ...string) {
	l.t.Helper()
	args := []string{"add-br", name, "--", "set", "bridge", name, "datapath_type=netdev"}
	if uplink != "" {
		args = append(args, "--", "add-port", name, uplink)
		if l.vswitchd {
			args = append(args, "--", "set", "interface", uplink, "type=internal")
		}
	}
	args = append(args, extra...)
	l.vsctl(args...)
	l.cleanupBridge(name)
}

func (l *ovsLab) cleanupBridge(name string) {
	if !l.vswitchd {
		return // only ovs-vswitchd makes devices; the database dies with its server
	}
	l.t.Cleanup(func() {
		_, _ = l.try("ovs-vsctl", "--timeout=5", "--if-exists", "del-br", name)
	})
}

// waitFor polls cond until it returns true or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last: %s)", d, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
