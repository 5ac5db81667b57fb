package lab

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed rogue_vxlan.py rogue_gre.py rogue_vlan.py
var scripts embed.FS

// writeScripts copies the embedded scapy senders into the state directory.
func (l *Lab) writeScripts() error {
	for _, name := range []string{"rogue_vxlan.py", "rogue_gre.py", "rogue_vlan.py"} {
		b, err := scripts.ReadFile(name)
		if err != nil {
			return fmt.Errorf("lab: embedded %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(l.dir, name), b, 0o755); err != nil {
			return fmt.Errorf("lab: write %s: %w", name, err)
		}
	}
	return nil
}

// addNS creates a namespace, records it for Down, brings lo up and disables
// IPv6 (router solicitations and DAD would otherwise flood tiers and tunnels).
func (l *Lab) addNS(ctx context.Context, ns string) error {
	if err := l.ip(ctx, "", "netns", "add", ns); err != nil {
		return fmt.Errorf("%w (a namespace of that name exists: remove it with `ip netns del %s` or use another prefix)", err, ns)
	}
	l.mu.Lock()
	l.namespaces = append(l.namespaces, ns)
	l.mu.Unlock()
	if err := l.sysctl(ctx, ns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
		return err
	}
	return l.ip(ctx, ns, "link", "set", "lo", "up")
}

func (l *Lab) sysctl(ctx context.Context, ns string, kv ...string) error {
	args := []string{"sysctl", "-q", "-w"}
	if p, err := lookPath("sysctl"); err == nil {
		args[0] = p
	}
	_, err := l.Exec(ctx, ns, append(args, kv...)...)
	return err
}

// buildUnderlay creates the underlay namespace and its Linux bridge.
func (l *Lab) buildUnderlay(ctx context.Context) error {
	ul := l.UnderlayNS()
	if err := l.addNS(ctx, ul); err != nil {
		return err
	}
	if err := l.ip(ctx, ul, "link", "add", UnderlayBridge, "mtu", strconv.Itoa(UnderlayMTU), "type", "bridge", "stp_state", "0", "forward_delay", "0"); err != nil {
		return err
	}
	return l.ip(ctx, ul, "link", "set", UnderlayBridge, "up")
}

// attach creates a veth between namespace ns (end named inner) and the
// underlay bridge (end named outer), both with the underlay MTU, and
// brings both up.
func (l *Lab) attach(ctx context.Context, ns, inner, outer string) error {
	ul := l.UnderlayNS()
	mtu := strconv.Itoa(UnderlayMTU)
	// Create each end directly in its namespace: names like eth0 never
	// appear in (or collide with) the root namespace.
	if err := l.ip(ctx, "", "link", "add", outer, "netns", ul, "mtu", mtu, "type", "veth", "peer", "name", inner, "netns", ns, "mtu", mtu); err != nil {
		return err
	}
	// TX checksum offload off on both ends: a veth leaves checksums
	// unfilled (CHECKSUM_PARTIAL) and the userspace datapath reading the
	// host's uplink with AF_PACKET forwards them unfilled to cloudbr0's tap,
	// whose stack then drops every TCP segment from the management network
	// (pings work either way). A physical NIC would fill them in.
	for _, end := range []struct{ ns, dev string }{{ul, outer}, {ns, inner}} {
		if _, err := l.Exec(ctx, end.ns, ethtoolBin(), "-K", end.dev, "tx", "off"); err != nil {
			return err
		}
	}
	if err := l.ip(ctx, ul, "link", "set", outer, "master", UnderlayBridge, "up"); err != nil {
		return err
	}
	return l.ip(ctx, ns, "link", "set", inner, "up")
}

// buildNodes creates the management and rogue namespaces.
func (l *Lab) buildNodes(ctx context.Context) error {
	// One management namespace per controller replica (the blueprint's
	// controllers: addresses), each with its own underlay link, so tests can
	// partition replicas from each other.
	for i, a := range l.mgmtAddrs {
		mg := l.ReplicaNS(i)
		if err := l.addNS(ctx, mg); err != nil {
			return err
		}
		veth := l.prefix + "um"
		if i > 0 {
			veth = fmt.Sprintf("%sum%d", l.prefix, i+1)
		}
		if err := l.attach(ctx, mg, NodeIface, veth); err != nil {
			return err
		}
		if err := l.ip(ctx, mg, "addr", "add", fmt.Sprintf("%s/%d", a, l.hostBits(mustAddr(a))), "dev", NodeIface); err != nil {
			return err
		}
	}
	rg := l.RogueNS()
	if err := l.addNS(ctx, rg); err != nil {
		return err
	}
	if err := l.attach(ctx, rg, NodeIface, l.prefix+"ur"); err != nil {
		return err
	}
	if err := l.ip(ctx, rg, "link", "set", NodeIface, "address", RogueMAC); err != nil {
		return err
	}
	return l.ip(ctx, rg, "addr", "add", fmt.Sprintf("%s/%d", RogueAddr, l.hostBits(mustAddr(RogueAddr))), "dev", NodeIface)
}

// buildHost builds one hypervisor: namespace, uplink, OVS daemons, cloudbr0
// by hand, host IP, provisioning, optional watch, then its VMs.
func (l *Lab) buildHost(ctx context.Context, hi *hostInfo) error {
	name := hi.h.Name
	ns := l.HostNS(name)
	log := l.log.WithField("host", name)
	t0 := time.Now()
	if err := l.addNS(ctx, ns); err != nil {
		return err
	}
	// arp_ignore=1: only the owner of the host IP (cloudbr0) answers ARP
	// for it, never the uplink veth (ARP flux breaks tunnels).
	if err := l.sysctl(ctx, ns, "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.ip_forward=0"); err != nil {
		return err
	}
	if len(hi.members) == 0 {
		if err := l.attach(ctx, ns, hi.uplink, hi.ulPeer); err != nil {
			return err
		}
	} else if err := l.attachBond(ctx, hi); err != nil {
		return err
	}
	if err := l.startOVS(ctx, name); err != nil {
		return err
	}
	set := []string{"--", "set", "bridge", Bridge, "datapath_type=netdev"}
	if hi.mac != "" {
		set = append(set, "other-config:hwaddr="+strconv.Quote(hi.mac))
	}
	args := append([]string{"add-br", Bridge}, set...)
	args = append(args, "--", "add-port", Bridge, hi.uplink)
	if _, err := l.OVS(ctx, name, "ovs-vsctl", args...); err != nil {
		return err
	}
	if err := l.waitLink(ctx, ns, Bridge); err != nil {
		return err
	}
	if err := l.ip(ctx, ns, "addr", "add", fmt.Sprintf("%s/%d", hi.addr, hi.bits), "dev", Bridge); err != nil {
		return err
	}
	if err := l.ip(ctx, ns, "link", "set", Bridge, "up"); err != nil {
		return err
	}
	log.WithField("took", time.Since(t0).Round(time.Millisecond)).Debug("cloudbr0 up")
	if l.opts.HostFiles {
		// What an operator does per host: the host file, not the blueprint.
		if _, err := run(ctx, nil, l.opts.VPCFlowBin, "host", "config", "--blueprint", l.opts.BlueprintPath,
			"--host", name, "--output-file", l.HostConfigPath(name)); err != nil {
			return err
		}
	}
	if err := l.opts.Provision(ctx, l, hi.h); err != nil {
		return fmt.Errorf("lab: provisioning host %s: %w", name, err)
	}
	if l.opts.Watch {
		if _, err := l.startWatcher(name); err != nil {
			return err
		}
	}
	for i := range l.vms {
		if l.vms[i].host == name {
			if err := l.buildVM(ctx, hi, &l.vms[i]); err != nil {
				return err
			}
		}
	}
	log.WithField("took", time.Since(t0).Round(time.Millisecond)).Info("host up")
	return nil
}

// buildVM creates a VM namespace on a veth port of its host's cloudbr0.
func (l *Lab) buildVM(ctx context.Context, hi *hostInfo, v *vmInfo) error {
	hns := l.HostNS(hi.h.Name)
	port := v.vm.Port
	if err := l.addNS(ctx, v.ns); err != nil {
		return err
	}
	mtu := strconv.Itoa(VMMTU)
	if err := l.ip(ctx, "", "link", "add", port, "netns", hns, "mtu", mtu, "type", "veth", "peer", "name", VMIface, "netns", v.ns, "mtu", mtu); err != nil {
		return err
	}
	if err := l.ip(ctx, v.ns, "link", "set", VMIface, "address", v.mac); err != nil {
		return err
	}
	if err := l.ip(ctx, v.ns, "addr", "add", fmt.Sprintf("%s/%d", v.addr, v.bits), "dev", VMIface); err != nil {
		return err
	}
	// TX checksum offload off on both ends, or TCP over VXLAN carries bad
	// checksums on the AF_PACKET path of the userspace datapath.
	for _, end := range []struct{ ns, dev string }{{v.ns, VMIface}, {hns, port}} {
		if _, err := l.Exec(ctx, end.ns, ethtoolBin(), "-K", end.dev, "tx", "off"); err != nil {
			return err
		}
		if err := l.ip(ctx, end.ns, "link", "set", end.dev, "up"); err != nil {
			return err
		}
	}
	br := Bridge
	if l.opts.VMBridge != "" {
		br = l.opts.VMBridge
	}
	args := []string{"add-port", br, port}
	if l.opts.VMPortArgs != nil {
		args = append(args, l.opts.VMPortArgs(v.vm)...)
	}
	_, err := l.OVS(ctx, hi.h.Name, "ovs-vsctl", args...)
	return err
}

func ethtoolBin() string {
	if p, err := lookPath("ethtool"); err == nil {
		return p
	}
	return "ethtool"
}

// waitLink polls until dev exists in ns.
func (l *Lab) waitLink(ctx context.Context, ns, dev string) error {
	return poll(ctx, 10*time.Second, fmt.Sprintf("link %s in %s", dev, ns), func() (bool, error) {
		_, err := l.Exec(ctx, ns, ipBin(), "link", "show", "dev", dev)
		return err == nil, nil
	})
}

// poll calls f every pollEvery until it reports done, fails, or the deadline
// (the earlier of d and ctx) passes.
func poll(ctx context.Context, d time.Duration, what string, f func() (bool, error)) error {
	deadline := time.Now().Add(d)
	var lastErr error
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("lab: waiting for %s: %w", what, ctx.Err())
		}
		if time.Now().After(deadline) {
			if lastErr != nil {
				return fmt.Errorf("lab: %s not ready after %s: %w", what, d, lastErr)
			}
			return fmt.Errorf("lab: %s not ready after %s", what, d)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollEvery):
		}
	}
}

// Down stops every process the lab started (by pid: SIGTERM, wait, SIGKILL),
// stops each host's OVS daemons, deletes the lab's namespaces and removes
// the state directory if the lab created it. It is idempotent and keeps
// going after errors, returning them all.
func (l *Lab) Down() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.down && len(l.namespaces) == 0 && len(l.procs) == 0 {
		l.mu.Unlock()
		return nil
	}
	l.down = true
	procs := append([]*Proc(nil), l.procs...)
	l.mu.Unlock()
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []error
	// Newest first: pings, captures and listeners before the controller.
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := range l.hosts {
		keys := []string{l.hosts[i].h.Name}
		if l.hosts[i].lacp {
			keys = append(keys, partnerKey(keys[0]))
		}
		for _, name := range keys {
			for _, d := range []string{"ovs-vswitchd", "ovsdb-server"} {
				if err := l.stopDaemon(ctx, name, d); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	l.mu.Lock()
	nss := append([]string(nil), l.namespaces...)
	l.mu.Unlock()
	for i := len(nss) - 1; i >= 0; i-- {
		ns := nss[i]
		// Safety net: anything still running inside our own namespace
		// was started by us (or by our processes).
		if out, err := l.ip2(ctx, "netns", "pids", ns); err == nil {
			for _, f := range strings.Fields(out) {
				if pid, err := strconv.Atoi(f); err == nil {
					l.log.WithFields(map[string]any{"ns": ns, "pid": pid}).Warn("stopping leftover process in lab namespace")
					if err := killPid(ctx, pid, "leftover in "+ns); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
		if err := l.ip(ctx, "", "netns", "del", ns); err != nil && nsExists(ns) {
			errs = append(errs, err)
			continue
		}
		l.mu.Lock()
		for j, n := range l.namespaces {
			if n == ns {
				l.namespaces = append(l.namespaces[:j], l.namespaces[j+1:]...)
				break
			}
		}
		l.mu.Unlock()
	}
	if len(errs) == 0 {
		l.cleanupDir()
	}
	l.log.WithField("took", time.Since(t0).Round(time.Millisecond)).Info("lab down")
	return errors.Join(errs...)
}

// ip2 runs ip in the root namespace and returns its output.
func (l *Lab) ip2(ctx context.Context, args ...string) (string, error) {
	return run(ctx, nil, append([]string{ipBin()}, args...)...)
}

func nsExists(ns string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", ns))
	return err == nil
}

// cleanupDir removes the state directory if the lab created it.
func (l *Lab) cleanupDir() {
	if l.ownDir && !l.opts.KeepDir && l.dir != "" {
		if err := os.RemoveAll(l.dir); err != nil {
			l.log.WithError(err).Warn("removing state directory")
		}
	}
}
