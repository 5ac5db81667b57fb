package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// daemonStartTimeout bounds the wait for an OVS daemon's pidfile and socket.
const daemonStartTimeout = 15 * time.Second

func mustAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		panic(fmt.Sprintf("lab: constant address %q: %v", s, err))
	}
	return a
}

// startOVS creates a host's private OVS state directory and database and
// starts its ovsdb-server and ovs-vswitchd inside the host namespace.
func (l *Lab) startOVS(ctx context.Context, host string) error {
	d := l.hostDir(host)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("lab: host %s: state directory: %w", host, err)
	}
	db := filepath.Join(d, "conf.db")
	if _, err := run(ctx, nil, "ovsdb-tool", "create", db, ovsSchema); err != nil {
		return err
	}
	if err := l.startOVSDB(ctx, host); err != nil {
		return err
	}
	if _, err := l.OVS(ctx, host, "ovs-vsctl", "--no-wait", "init"); err != nil {
		return err
	}
	return l.StartVSwitchdContext(ctx, host)
}

func (l *Lab) startOVSDB(ctx context.Context, host string) error {
	d := l.hostDir(host)
	sock := filepath.Join(d, "db.sock")
	_, err := l.execEnv(ctx, l.HostNS(host), l.OVSEnv(host), ovsBin("ovsdb-server"),
		"--remote=punix:"+sock, "--pidfile", "--detach", "--no-chdir", "--log-file", "-vconsole:off",
		filepath.Join(d, "conf.db"))
	if err != nil {
		return err
	}
	pid, err := l.waitDaemon(ctx, host, "ovsdb-server", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	if err != nil {
		return err
	}
	l.setDaemon(host, "ovsdb-server", pid)
	return nil
}

func ovsBin(name string) string {
	if p, err := lookPath(name); err == nil {
		return p
	}
	return name
}

// waitDaemon polls until the daemon's pidfile names a live process and ready
// reports true; it returns the pid.
func (l *Lab) waitDaemon(ctx context.Context, host, daemon string, ready func() bool) (int, error) {
	pidfile := filepath.Join(l.hostDir(host), daemon+".pid")
	var pid int
	err := poll(ctx, daemonStartTimeout, fmt.Sprintf("%s of host %s (pidfile %s)", daemon, host, pidfile), func() (bool, error) {
		p, err := readPidfile(pidfile)
		if err != nil || !pidAlive(p) {
			return false, nil
		}
		pid = p
		return ready(), nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w; see %s", err, filepath.Join(l.hostDir(host), daemon+".log"))
	}
	return pid, nil
}

func (l *Lab) setDaemon(host, daemon string, pid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.daemons[host] == nil {
		l.daemons[host] = map[string]int{}
	}
	if pid == 0 {
		delete(l.daemons[host], daemon)
		return
	}
	l.daemons[host][daemon] = pid
}

// stopDaemon stops a host's OVS daemon by the pid in its pidfile (or the pid
// the lab recorded), SIGTERM then SIGKILL, and waits until it is gone.
func (l *Lab) stopDaemon(ctx context.Context, host, daemon string) error {
	pidfile := filepath.Join(l.hostDir(host), daemon+".pid")
	pids := map[int]bool{}
	if p, err := readPidfile(pidfile); err == nil {
		pids[p] = true
	}
	l.mu.Lock()
	if p := l.daemons[host][daemon]; p != 0 {
		pids[p] = true
	}
	l.mu.Unlock()
	for pid := range pids {
		// Only a pid whose command line is this daemon: a stale pidfile
		// must never make us signal someone else's process.
		if !isDaemon(pid, daemon) {
			continue
		}
		if err := killPid(ctx, pid, daemon+" of "+host); err != nil {
			return err
		}
	}
	l.setDaemon(host, daemon, 0)
	_ = os.Remove(pidfile)
	return nil
}

func isDaemon(pid int, daemon string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0 := strings.SplitN(string(b), "\x00", 2)[0]
	return filepath.Base(argv0) == daemon || strings.HasPrefix(filepath.Base(argv0), daemon)
}

// StopVSwitchd stops a host's ovs-vswitchd by pid (SIGTERM, wait, SIGKILL).
// The userspace datapath and its flows go with it; cloudbr0's internal port
// (a tap device) disappears with its address.
func (l *Lab) StopVSwitchd(host string) error {
	if _, err := l.host(host); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return l.stopDaemon(ctx, host, "ovs-vswitchd")
}

// StartVSwitchd starts a host's ovs-vswitchd and waits until it is ready;
// when cloudbr0 exists it restores the host IP on its internal port (the
// tap device is recreated empty), as the host's network configuration would.
func (l *Lab) StartVSwitchd(host string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return l.StartVSwitchdContext(ctx, host)
}

// StartVSwitchdContext is StartVSwitchd with a context.
func (l *Lab) StartVSwitchdContext(ctx context.Context, host string) error {
	hi, err := l.host(host)
	if err != nil {
		return err
	}
	ns := l.HostNS(host)
	if err := l.runVSwitchd(ctx, host, ns); err != nil {
		return err
	}
	// After a restart: wait for the bridge's internal port and give it the
	// host IP back. (Before the first add-br there is no bridge.)
	out, err := l.OVS(ctx, host, "ovs-vsctl", "--if-exists", "get", "bridge", Bridge, "name")
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) == "" {
		return nil
	}
	if err := l.waitLink(ctx, ns, Bridge); err != nil {
		return err
	}
	if err := l.ip(ctx, ns, "addr", "replace", fmt.Sprintf("%s/%d", hi.addr, hi.bits), "dev", Bridge); err != nil {
		return err
	}
	return l.ip(ctx, ns, "link", "set", Bridge, "up")
}

// runVSwitchd starts the ovs-vswitchd of state directory key in namespace
// ns and waits for its pidfile and control socket.
func (l *Lab) runVSwitchd(ctx context.Context, key, ns string) error {
	d := l.hostDir(key)
	if _, err := l.execEnv(ctx, ns, l.OVSEnv(key), ovsBin("ovs-vswitchd"),
		"--pidfile", "--detach", "--no-chdir", "--log-file", "-vconsole:off",
		"unix:"+filepath.Join(d, "db.sock")); err != nil {
		return err
	}
	pid, err := l.waitDaemon(ctx, key, "ovs-vswitchd", func() bool {
		p, err := readPidfile(filepath.Join(d, "ovs-vswitchd.pid"))
		if err != nil {
			return false
		}
		_, err = os.Stat(filepath.Join(d, fmt.Sprintf("ovs-vswitchd.%d.ctl", p)))
		return err == nil
	})
	if err != nil {
		return err
	}
	l.setDaemon(key, "ovs-vswitchd", pid)
	return nil
}

// RestartVSwitchd stops and starts a host's ovs-vswitchd (an empty flow
// table afterwards: nothing restores flows on the userspace datapath).
func (l *Lab) RestartVSwitchd(host string) error {
	if err := l.StopVSwitchd(host); err != nil {
		return err
	}
	return l.StartVSwitchd(host)
}
