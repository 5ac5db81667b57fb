// Package ovsbench is the benchmarks' switch harness: one userspace
// ovs-vswitchd (datapath_type=netdev) in a private network namespace with a
// private OVS run directory, started with --enable-dummy=override so bridges
// get hundreds of ports of type=dummy without creating kernel devices, and
// helpers to run the controller (bench/ctl) next to it and read its logs,
// CPU and memory from /proc. Everything it creates carries a unique prefix
// and is removed by Close; processes are stopped by pid only.
package ovsbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const ovsSchema = "/usr/share/openvswitch/vswitch.ovsschema"

// Switch is one private ovsdb-server + ovs-vswitchd in namespace NS.
type Switch struct {
	NS    string // network namespace (unique prefix)
	Dir   string // OVS run/log/db directory
	env   []string
	shard bool // started by StartShard: the namespace is not its own
}

// Start creates the namespace and state directory and starts the daemons.
// prefix must be unique (e.g. "vfb" + pid); on error everything is undone.
func Start(ctx context.Context, prefix, dir string) (s *Switch, err error) {
	return start(ctx, prefix, dir, true)
}

// StartShard starts another ovsdb-server + ovs-vswitchd pair with its own
// state directory in s's namespace (bridges spread over several vswitchd
// processes, as on a cloud where every hypervisor has its own). Close it
// before s.
func (s *Switch) StartShard(ctx context.Context, dir string) (*Switch, error) {
	return start(ctx, s.NS, dir, false)
}

func start(ctx context.Context, prefix, dir string, ownNS bool) (s *Switch, err error) {
	sw := &Switch{NS: prefix, Dir: dir, shard: !ownNS}
	sw.env = append(os.Environ(), "OVS_RUNDIR="+dir, "OVS_LOGDIR="+dir, "OVS_DBDIR="+dir, "OVS_SYSCONFDIR="+dir)
	s = sw
	defer func() {
		if err != nil {
			sw.Close() // s may already be nil here: the error returns below clear it
			var e *exec.Error
			if errors.As(err, &e) {
				err = fmt.Errorf("%w (is Open vSwitch installed? apt-get install openvswitch-switch)", err)
			}
		}
	}()
	if err = os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if ownNS {
		if _, err = run(ctx, nil, "ip", "netns", "add", s.NS); err != nil {
			return nil, err
		}
		if _, err = s.Exec(ctx, "ip", "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	if _, err = run(ctx, nil, "ovsdb-tool", "create", filepath.Join(dir, "conf.db"), ovsSchema); err != nil {
		return nil, err
	}
	if _, err = s.Exec(ctx, "ovsdb-server", "--remote=punix:"+filepath.Join(dir, "db.sock"), "--pidfile", "--detach",
		"--no-chdir", "--log-file", "-vconsole:off", filepath.Join(dir, "conf.db")); err != nil {
		return nil, err
	}
	if err = s.waitPid(ctx, "ovsdb-server", func() bool { return exists(filepath.Join(dir, "db.sock")) }); err != nil {
		return nil, err
	}
	if _, err = s.Vsctl(ctx, "--no-wait", "init"); err != nil {
		return nil, err
	}
	// Generous flow limits: the benchmarks install up to ~1.2M flows.
	if _, err = s.Vsctl(ctx, "--no-wait", "set", "Open_vSwitch", ".", "other_config:flow-limit=2000000",
		"other_config:max-idle=10000"); err != nil {
		return nil, err
	}
	return s, s.StartVSwitchd(ctx)
}

// StartVSwitchd starts ovs-vswitchd (dummy netdevs, userspace datapath) and
// waits for its control socket.
func (s *Switch) StartVSwitchd(ctx context.Context) error {
	if _, err := s.Exec(ctx, "ovs-vswitchd", "--enable-dummy=override", "--pidfile", "--detach", "--no-chdir",
		"--log-file", "-vconsole:off", "unix:"+filepath.Join(s.Dir, "db.sock")); err != nil {
		return err
	}
	return s.waitPid(ctx, "ovs-vswitchd", func() bool {
		p, err := readPid(filepath.Join(s.Dir, "ovs-vswitchd.pid"))
		return err == nil && exists(filepath.Join(s.Dir, fmt.Sprintf("ovs-vswitchd.%d.ctl", p)))
	})
}

// VSwitchdPid is ovs-vswitchd's pid (0 if not running).
func (s *Switch) VSwitchdPid() int {
	p, err := readPid(filepath.Join(s.Dir, "ovs-vswitchd.pid"))
	if err != nil || !isProc(p, "ovs-vswitchd") {
		return 0
	}
	return p
}

// StopVSwitchd stops ovs-vswitchd by pid (SIGTERM, then SIGKILL) and waits.
func (s *Switch) StopVSwitchd() {
	stopPidfile(filepath.Join(s.Dir, "ovs-vswitchd.pid"), "ovs-vswitchd")
}

// Close stops the daemons (by pid), deletes the namespace and the directory.
func (s *Switch) Close() {
	stopPidfile(filepath.Join(s.Dir, "ovs-vswitchd.pid"), "ovs-vswitchd")
	stopPidfile(filepath.Join(s.Dir, "ovsdb-server.pid"), "ovsdb-server")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !s.shard && exists("/run/netns/"+s.NS) {
		_, _ = run(ctx, nil, "ip", "netns", "del", s.NS)
	}
	if s.Dir != "" && strings.Contains(s.Dir, "vpcflow-bench") {
		_ = os.RemoveAll(s.Dir)
	}
}

// Exec runs argv inside the namespace with the OVS environment.
func (s *Switch) Exec(ctx context.Context, argv ...string) (string, error) {
	return run(ctx, s.env, append([]string{"ip", "netns", "exec", s.NS}, argv...)...)
}

// Command returns an unstarted command running argv in the namespace.
func (s *Switch) Command(argv ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", s.NS}, argv...)...)
	cmd.Env = s.env
	return cmd
}

// Vsctl runs ovs-vsctl with a timeout.
func (s *Switch) Vsctl(ctx context.Context, args ...string) (string, error) {
	return s.Exec(ctx, append([]string{"ovs-vsctl", "--timeout=60"}, args...)...)
}

// Ofctl runs ovs-ofctl -O OpenFlow13.
func (s *Switch) Ofctl(ctx context.Context, args ...string) (string, error) {
	return s.Exec(ctx, append([]string{"ovs-ofctl", "-O", "OpenFlow13"}, args...)...)
}

// Bridge describes one benchmark bridge.
type Bridge struct {
	Name  string
	DPID  uint64
	Ports []string // dummy ports (uplink, VM ports)
	// TunnelPort, if set, is added as a flow-based VXLAN port with
	// options:local_ip=TunnelIP (interface names are global in one OVS DB,
	// so only one bridge per ovs-vswitchd can have vpcflow-vxlan).
	TunnelPort string
	TunnelIP   string
}

// AddBridges creates bridges (fail_mode=secure, OpenFlow13, fixed datapath
// id, no controller yet), batch bridges per ovs-vsctl transaction.
func (s *Switch) AddBridges(ctx context.Context, brs []Bridge, batch int) error {
	if batch < 1 {
		batch = 10
	}
	for i := 0; i < len(brs); i += batch {
		var args []string
		for _, b := range brs[i:min(i+batch, len(brs))] {
			args = append(args, "--", "add-br", b.Name, "--", "set", "bridge", b.Name, "datapath_type=netdev",
				"fail_mode=secure", "protocols=OpenFlow13", fmt.Sprintf("other-config:datapath-id=%016x", b.DPID))
			for _, p := range b.Ports {
				args = append(args, "--", "add-port", b.Name, p, "--", "set", "interface", p, "type=dummy")
			}
			if b.TunnelPort != "" {
				args = append(args, "--", "add-port", b.Name, b.TunnelPort, "--", "set", "interface", b.TunnelPort,
					"type=vxlan", "options:remote_ip=flow", "options:key=flow", "options:local_ip="+b.TunnelIP)
			}
		}
		if _, err := s.Vsctl(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// SetControllers points bridges at target (out-of-band), or removes their
// controllers when target is "". One transaction per batch bridges.
func (s *Switch) SetControllers(ctx context.Context, bridges []string, target string, batch int) error {
	if batch < 1 {
		batch = 50
	}
	for i := 0; i < len(bridges); i += batch {
		var args []string
		for j, b := range bridges[i:min(i+batch, len(bridges))] {
			if target == "" {
				args = append(args, "--", "del-controller", b)
				continue
			}
			id := fmt.Sprintf("@c%d", j)
			args = append(args, "--", "--id="+id, "create", "Controller", "target=\""+target+"\"", "connection_mode=out-of-band",
				"--", "set", "bridge", b, "controller="+id)
		}
		if _, err := s.Vsctl(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// FlowCount returns the number of flows on a bridge (dump-aggregate).
func (s *Switch) FlowCount(ctx context.Context, br string) (int, error) {
	out, err := s.Ofctl(ctx, "dump-aggregate", br)
	if err != nil {
		return 0, err
	}
	i := strings.Index(out, "flow_count=")
	if i < 0 {
		return 0, fmt.Errorf("dump-aggregate %s: no flow_count in %q", br, out)
	}
	f := strings.Fields(out[i+len("flow_count="):])
	if len(f) == 0 {
		return 0, fmt.Errorf("dump-aggregate %s: %q", br, out)
	}
	return strconv.Atoi(f[0])
}

// TimeOfctlBundle times `ovs-ofctl -O OpenFlow13 --bundle add-flows BR FILE`.
func (s *Switch) TimeOfctlBundle(ctx context.Context, br, file string) (time.Duration, error) {
	t0 := time.Now()
	_, err := s.Ofctl(ctx, "--bundle", "add-flows", br, file)
	return time.Since(t0), err
}

func (s *Switch) waitPid(ctx context.Context, daemon string, ready func() bool) error {
	pidfile := filepath.Join(s.Dir, daemon+".pid")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p, err := readPid(pidfile); err == nil && isProc(p, daemon) && ready() {
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, daemon+".log"))
			return fmt.Errorf("%s did not start within 20s (pidfile %s); log tail:\n%s", daemon, pidfile, tail(string(log), 1500))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func run(ctx context.Context, env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = env
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, tail(errb.String(), 2000))
	}
	return out.String(), nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func readPid(pidfile string) (int, error) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// isProc reports whether pid is alive and runs a program named name.
func isProc(pid int, name string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return false
	}
	argv0 := strings.SplitN(string(b), "\x00", 2)[0]
	return strings.HasPrefix(filepath.Base(argv0), name)
}

func stopPidfile(pidfile, name string) {
	p, err := readPid(pidfile)
	if err != nil || !isProc(p, name) {
		return
	}
	StopPid(p, name, 10*time.Second)
	_ = os.Remove(pidfile)
}

// StopPid sends SIGTERM to pid (only if it still runs name), waits up to
// grace, then SIGKILLs it and waits for it to vanish.
func StopPid(pid int, name string, grace time.Duration) {
	if !isProc(pid, name) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for isProc(pid, name) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if isProc(pid, name) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 200 && isProc(pid, name); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}
