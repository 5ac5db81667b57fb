package lab

import (
	"fmt"
	"path/filepath"
	"syscall"
)

// startWatcher starts `vpcflow host watch` for host name in its namespace
// (Options.Watch), appending to Dir/<host>/watch.log.
func (l *Lab) startWatcher(name string) (*Proc, error) {
	argv := []string{l.opts.VPCFlowBin, "host", "watch", "--blueprint", l.opts.BlueprintPath, "--host", name, "--ovsdb", l.DBSock(name)}
	if l.opts.HostFiles { // one command line for every host: no --host
		argv = []string{l.opts.VPCFlowBin, "host", "watch", "--host-config", l.HostConfigPath(name), "--ovsdb", l.DBSock(name)}
	}
	return l.startProcess(l.HostNS(name), name+"-watch", filepath.Join(l.hostDir(name), "watch.log"), "", l.OVSEnv(name), syscall.SIGTERM, argv...)
}

// RestartWatcher stops host's `vpcflow host watch` (SIGTERM, as systemd
// does) and starts it again with the same command line, as a package
// upgrade's `systemctl try-restart` does.
func (l *Lab) RestartWatcher(host string) (*Proc, error) {
	l.mu.Lock()
	var old *Proc
	for _, p := range l.procs {
		if p.Name == host+"-watch" && p.NS == l.HostNS(host) {
			old = p
		}
	}
	l.mu.Unlock()
	if old == nil {
		return nil, fmt.Errorf("lab: no watcher runs for host %s (Options.Watch)", host)
	}
	if err := old.Stop(); err != nil {
		return nil, err
	}
	return l.startWatcher(host)
}
