package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vpcflow/vpcflow/flows"
)

// ovsSchema is the OVSDB schema every host's conf.db is created from.
const ovsSchema = "/usr/share/openvswitch/vswitch.ovsschema"

// lookPath finds a tool in PATH or in the sbin directories that a non-login
// root shell may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or sbin", name)
}

// findScapyPython returns a python3 interpreter that can import scapy. The
// distribution's /usr/bin/python3 comes first: python3-scapy is installed
// for it, and a pyenv or venv python3 earlier in PATH usually lacks it.
func findScapyPython() (string, error) {
	var cands []string
	cands = append(cands, "/usr/bin/python3")
	if p, err := exec.LookPath("python3"); err == nil {
		cands = append(cands, p)
	}
	for _, p := range cands {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := exec.Command(p, "-c", "import scapy.all").Run(); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("lab: no python3 with scapy (tried %s): install it with `apt-get install -y python3-scapy`", strings.Join(cands, ", "))
}

// loadBlueprint reads, defaults and validates a blueprint file.
func loadBlueprint(path string) (*flows.Blueprint, error) {
	bp, err := flows.Load(path)
	if err != nil {
		return nil, fmt.Errorf("lab: blueprint %s: %w", path, err)
	}
	return bp, nil
}

// cmdError formats a failed command with its output.
func cmdError(argv []string, out []byte, err error) error {
	o := strings.TrimSpace(string(out))
	if o == "" {
		return fmt.Errorf("lab: `%s`: %w", strings.Join(argv, " "), err)
	}
	return fmt.Errorf("lab: `%s`: %w: %s", strings.Join(argv, " "), err, o)
}

// run runs argv in the root namespace with extra environment, returning the
// combined output. A failure names the command and carries its output.
func run(ctx context.Context, env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	cmd.WaitDelay = waitDelay
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		return buf.String(), cmdError(argv, buf.Bytes(), err)
	}
	return buf.String(), nil
}

// nsArgv wraps argv to run in namespace ns ("" = the root namespace).
func nsArgv(ns string, argv []string) []string {
	if ns == "" {
		return argv
	}
	return append([]string{ipBin(), "netns", "exec", ns}, argv...)
}

func ipBin() string {
	if p, err := lookPath("ip"); err == nil {
		return p
	}
	return "ip"
}

// Exec runs argv inside namespace ns (`ip netns exec`) and returns its
// combined output; on failure the error carries the command and its output.
func (l *Lab) Exec(ctx context.Context, ns string, argv ...string) (string, error) {
	if len(argv) == 0 {
		return "", fmt.Errorf("lab: Exec in %s: empty command", ns)
	}
	return run(ctx, nil, nsArgv(ns, argv)...)
}

// execEnv is Exec with extra environment variables.
func (l *Lab) execEnv(ctx context.Context, ns string, env []string, argv ...string) (string, error) {
	return run(ctx, env, nsArgv(ns, argv)...)
}

// ip runs `ip ARGS` in ns.
func (l *Lab) ip(ctx context.Context, ns string, args ...string) error {
	_, err := l.Exec(ctx, ns, append([]string{ipBin()}, args...)...)
	return err
}

// OVSEnv returns the environment that points the OVS tools and daemons at a
// host's private state directory.
func (l *Lab) OVSEnv(host string) []string {
	d := l.hostDir(host)
	return []string{"OVS_RUNDIR=" + d, "OVS_LOGDIR=" + d, "OVS_DBDIR=" + d, "OVS_SYSCONFDIR=" + d}
}

// OVS runs an OVS tool (ovs-vsctl, ovs-ofctl, ovs-appctl, ovs-dpctl,
// ovsdb-client) in a host's namespace with that host's OVS environment.
// ovs-vsctl always gets --timeout=10 (unless args set one); ovs-ofctl gets
// -O OpenFlow13 unless args choose a protocol.
func (l *Lab) OVS(ctx context.Context, host string, tool string, args ...string) (string, error) {
	if _, err := l.host(host); err != nil {
		return "", err
	}
	switch tool {
	case "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ovs-dpctl", "ovsdb-client":
	default:
		return "", fmt.Errorf("lab: OVS: %q is not an OVS tool (ovs-vsctl, ovs-ofctl, ovs-appctl, ovs-dpctl, ovsdb-client)", tool)
	}
	argv := []string{tool}
	switch tool {
	case "ovs-vsctl":
		if !hasFlag(args, "--timeout", "-t") {
			argv = append(argv, "--timeout=10")
		}
	case "ovs-ofctl":
		if !hasFlag(args, "-O", "--protocols") {
			argv = append(argv, "-O", "OpenFlow13")
		}
	case "ovs-appctl":
		if !hasFlag(args, "-T", "--timeout") {
			argv = append(argv, "--timeout=10")
		}
	}
	argv = append(argv, args...)
	return l.execEnv(ctx, l.HostNS(host), l.OVSEnv(host), argv...)
}

func hasFlag(args []string, names ...string) bool {
	for _, a := range args {
		for _, n := range names {
			if a == n || strings.HasPrefix(a, n+"=") || (len(n) == 2 && strings.HasPrefix(a, n) && len(a) > 2) {
				return true
			}
		}
	}
	return false
}

// DefaultProvision provisions a host with `vpcflow host apply`, run inside
// the host namespace with the host's OVS environment and its unix socket,
// from the blueprint or (Options.HostFiles) the host's host file. --host is
// given: the hand-made bridge has no datapath id to find the host by yet.
func DefaultProvision(ctx context.Context, l *Lab, h *flows.Host) error {
	src := []string{"--blueprint", l.opts.BlueprintPath}
	if l.opts.HostFiles {
		src = []string{"--host-config", l.HostConfigPath(h.Name)}
	}
	argv := append([]string{l.opts.VPCFlowBin, "host", "apply"}, src...)
	_, err := l.execEnv(ctx, l.HostNS(h.Name), l.OVSEnv(h.Name),
		append(argv, "--host", h.Name, "--ovsdb", l.DBSock(h.Name))...)
	return err
}
