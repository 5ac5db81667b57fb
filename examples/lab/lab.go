// Package lab builds a namespace lab of real Open vSwitch hypervisors on one
// Linux machine: an underlay switch, N hosts (each a network namespace with
// its own ovsdb-server and ovs-vswitchd on the userspace datapath and a
// cloudbr0 made by hand as in the field guides), a management namespace for
// the controller, one namespace per VM on a veth port of its host's cloudbr0,
// and a rogue node on the underlay. `vpcflow demo` and the end-to-end tests
// use it. See README.md for the topology and /work/shared/LAB.md for the
// pitfalls it works around.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vpcflow/vpcflow/flows"
)

// Addresses and sizes of the lab's fixed parts.
const (
	// DefaultMgmtAddr is the management namespace's address when the
	// blueprint names no tcp:/ssl: controller target.
	DefaultMgmtAddr = "192.0.2.250"
	// RogueAddr is the rogue underlay node's address.
	RogueAddr = "192.0.2.66"
	// RogueMAC is the rogue node's (initial) MAC address.
	RogueMAC = "02:00:c0:00:02:42"
	// UnderlayMTU is the MTU of every underlay link (VM MTU + VXLAN/GRE overhead fits).
	UnderlayMTU = 1600
	// VMMTU is the MTU of every VM NIC.
	VMMTU = 1450
	// Bridge is the name of the OVS bridge on every host.
	Bridge = "cloudbr0"
	// UnderlayBridge is the Linux bridge in the underlay namespace.
	UnderlayBridge = "br0"
	// VMIface is the NIC name inside every VM namespace.
	VMIface = "eth0"
	// NodeIface is the NIC name inside the management and rogue namespaces.
	NodeIface = "eth0"
)

// Options configure Up. Only Blueprint or BlueprintPath is required.
type Options struct {
	// Prefix starts every namespace, underlay interface and log line of
	// this lab; unique per lab. Default: "vf" + 4 random hex digits + "-".
	// At most 10 characters so interface names stay within 15.
	Prefix string
	// Dir is the state directory (per-host OVS run/log/db directories,
	// process logs, helper scripts). Default: a new os.MkdirTemp directory.
	// Down removes the directory if the lab created it (a temporary one, or
	// a Dir that did not exist yet) and KeepDir is false; an existing Dir is
	// never removed.
	Dir string
	// KeepDir keeps the state directory (logs) after Down.
	KeepDir bool
	// Blueprint is the cloud to build. When nil it is read from BlueprintPath.
	Blueprint *flows.Blueprint
	// BlueprintPath is the blueprint file handed to provisioning commands
	// (and read when Blueprint is nil).
	BlueprintPath string
	// VPCFlowBin is the vpcflow binary used by the default Provision hook,
	// by Watch and by StartController.
	VPCFlowBin string
	// Provision is called for every host after cloudbr0 exists (standalone,
	// host IP on its internal port) and before that host's VMs are created.
	// It must set fail_mode=secure and the controller targets before any
	// tunnel port exists. Default: DefaultProvision (`vpcflow host apply`).
	Provision func(ctx context.Context, l *Lab, h *flows.Host) error
	// VMBridge is the bridge VM ports join (default cloudbr0); VMPortArgs,
	// when set, returns extra ovs-vsctl arguments for a VM's add-port (e.g.
	// an OVN iface-id). Used to build the same lab for another controller.
	VMBridge   string
	VMPortArgs func(vm *flows.VM) []string
	// Watch starts `vpcflow host watch` in each host namespace after
	// provisioning (log: Dir/<host>/watch.log); Down stops it.
	Watch bool
	// HostFiles gives each host its host file instead of the blueprint, as
	// on a fleet host: `vpcflow host config` writes Dir/<host>/host.yaml
	// (HostConfigPath) before provisioning; the default Provision hook runs
	// `host apply --host-config` and the watcher `host watch --host-config`
	// without --host (it finds its host by the bridge's datapath id, which
	// host apply set). Default false: both read BlueprintPath.
	HostFiles bool
	// Log receives the lab's progress lines (logrus text). Default: discarded.
	Log io.Writer
}

// Lab is a running namespace lab. Its methods are safe for concurrent use.
type Lab struct {
	opts   Options
	bp     *flows.Blueprint
	prefix string
	dir    string
	ownDir bool
	log    *logrus.Entry
	python string // python3 with scapy

	mgmtAddrs []string
	hosts     []hostInfo
	vms       []vmInfo

	mu         sync.Mutex
	namespaces []string // created, in creation order
	procs      []*Proc
	daemons    map[string]map[string]int // host -> daemon -> last known pid
	down       bool
}

type hostInfo struct {
	h      *flows.Host
	addr   netip.Addr
	bits   int
	mac    string // may be empty
	uplink string
	ulPeer string // veth end in the underlay namespace
	// A bonded uplink (the blueprint's uplink has bond:): one underlay link
	// per member, members[i] in the host and memberPeers[i] in the
	// underlay namespace (members[0], memberPeers[0] = uplink, ulPeer).
	members, memberPeers []string
	lacp                 bool   // the bond runs LACP: its links end on a partner bond
	partnerPeer          string // with LACP: the partner's veth end on the underlay bridge
}

type vmInfo struct {
	vm   *flows.VM
	host string
	mac  string
	addr netip.Addr
	bits int
	ns   string
}

// Up builds the lab described by opts and returns it running. On any error it
// tears down everything it built and returns the error.
func Up(ctx context.Context, opts Options) (l *Lab, err error) {
	start := time.Now()
	if err := preflight(); err != nil {
		return nil, err
	}
	bp := opts.Blueprint
	if bp == nil {
		if opts.BlueprintPath == "" {
			return nil, errors.New("lab: Options.Blueprint or Options.BlueprintPath is required")
		}
		if bp, err = loadBlueprint(opts.BlueprintPath); err != nil {
			return nil, err
		}
	}
	if opts.Provision == nil || opts.Watch || opts.HostFiles {
		if opts.VPCFlowBin == "" {
			return nil, errors.New("lab: Options.VPCFlowBin is required by the default Provision hook, Watch and HostFiles (build it with `go build ./cmd/vpcflow`)")
		}
		if opts.BlueprintPath == "" {
			return nil, errors.New("lab: Options.BlueprintPath is required by the default Provision hook, Watch and HostFiles (vpcflow reads the blueprint file)")
		}
		bin, err := exec.LookPath(opts.VPCFlowBin)
		if err != nil {
			return nil, fmt.Errorf("lab: vpcflow binary %s: %w (build it with `go build -o %s ./cmd/vpcflow`)", opts.VPCFlowBin, err, opts.VPCFlowBin)
		}
		if opts.VPCFlowBin, err = filepath.Abs(bin); err != nil {
			return nil, fmt.Errorf("lab: vpcflow binary %s: %w", bin, err)
		}
	}
	if opts.Provision == nil {
		opts.Provision = DefaultProvision
	}
	prefix := opts.Prefix
	if prefix == "" {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("lab: random prefix: %w", err)
		}
		prefix = "vf" + hex.EncodeToString(b[:]) + "-"
	}
	if len(prefix) > 10 {
		return nil, fmt.Errorf("lab: prefix %q is longer than 10 characters: underlay interface names (prefix + 'u' + index) must fit in 15", prefix)
	}
	python, err := findScapyPython()
	if err != nil {
		return nil, err
	}
	logOut := opts.Log
	if logOut == nil {
		logOut = io.Discard
	}
	logger := logrus.New()
	logger.SetOutput(logOut)
	logger.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})

	l = &Lab{
		opts:    opts,
		bp:      bp,
		prefix:  prefix,
		log:     logger.WithField("lab", prefix),
		python:  python,
		daemons: map[string]map[string]int{},
	}
	if err := l.resolve(); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "vpcflow-lab-")
		if err != nil {
			return nil, fmt.Errorf("lab: state directory: %w", err)
		}
		l.dir, l.ownDir = d, true
	} else {
		d, err := filepath.Abs(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("lab: state directory %s: %w", opts.Dir, err)
		}
		if _, err := os.Stat(d); os.IsNotExist(err) {
			l.ownDir = true
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("lab: state directory: %w", err)
		}
		l.dir = d
	}
	// Unix socket paths are limited to 107 bytes; the longest is the
	// vswitchd control socket: <dir>/<host>/ovs-vswitchd.<pid>.ctl.
	for _, hi := range l.hosts {
		if n := len(l.hostDir(hi.h.Name)) + len("/ovs-vswitchd.4194304.ctl"); n > 107 {
			l.cleanupDir()
			return nil, fmt.Errorf("lab: state directory %s is too long for OVS unix sockets (%d > 107 bytes): choose a shorter Options.Dir", l.dir, n)
		}
	}
	defer func() {
		if err != nil {
			l.log.WithError(err).Warn("lab up failed, tearing down")
			if derr := l.Down(); derr != nil {
				err = fmt.Errorf("%w (teardown also failed: %v)", err, derr)
			}
			l = nil
		}
	}()
	if err := l.writeScripts(); err != nil {
		return l, err
	}
	if err := l.buildUnderlay(ctx); err != nil {
		return l, err
	}
	if err := l.buildNodes(ctx); err != nil {
		return l, err
	}
	// Hosts are independent of each other: build them in parallel.
	errs := make([]error, len(l.hosts))
	var wg sync.WaitGroup
	for i := range l.hosts {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = l.buildHost(ctx, &l.hosts[i])
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return l, err
	}
	l.log.WithField("took", time.Since(start).Round(time.Millisecond)).Info("lab up")
	return l, nil
}

// resolve reads the blueprint's string fields (parsed fields are used when a
// loader already filled them) into the lab's own host and VM tables.
func (l *Lab) resolve() error {
	var errs []error
	seenHost := map[string]bool{}
	for i := range l.bp.Hosts {
		h := &l.bp.Hosts[i]
		if h.Name == "" || strings.ContainsAny(h.Name, "/ \t") {
			errs = append(errs, fmt.Errorf("lab: host #%d: bad name %q", i+1, h.Name))
			continue
		}
		if seenHost[h.Name] {
			errs = append(errs, fmt.Errorf("lab: host %s: duplicate name", h.Name))
		}
		seenHost[h.Name] = true
		addr := h.Addr
		if !addr.IsValid() {
			a, err := netip.ParseAddr(h.TunnelIP)
			if err != nil || !a.Is4() {
				errs = append(errs, fmt.Errorf("lab: host %s: tunnel_ip %q is not an IPv4 address", h.Name, h.TunnelIP))
				continue
			}
			addr = a
		}
		mac := ""
		if h.HasMAC {
			mac = h.MAC.String()
		} else if h.TunnelMAC != "" {
			m, err := flows.ParseMAC(h.TunnelMAC)
			if err != nil {
				errs = append(errs, fmt.Errorf("lab: host %s: tunnel_mac: %w", h.Name, err))
				continue
			}
			mac = m.String()
		}
		uplink := h.Uplink
		if uplink == "" {
			uplink = "eth0"
		}
		if len(uplink) > 15 {
			errs = append(errs, fmt.Errorf("lab: host %s: uplink name %q is longer than 15 characters", h.Name, uplink))
		}
		hi := hostInfo{
			h: h, addr: addr, bits: l.hostBits(addr), mac: mac, uplink: uplink,
			ulPeer: fmt.Sprintf("%su%d", l.prefix, len(l.hosts)),
		}
		if h.IsBond() {
			// One underlay link per member. The lab adds only the first
			// member to cloudbr0 by hand (as the field guides do with one
			// NIC): two plain ports of a standalone bridge into one L2
			// underlay would loop. `vpcflow host apply` turns it into the
			// bond.
			hi.lacp = h.UplinkSpec.LACP == flows.LACPActive
			hi.partnerPeer = fmt.Sprintf("%su%dp", l.prefix, len(l.hosts))
			for mi, m := range h.UplinkSpec.Members {
				if len(m) > 15 {
					errs = append(errs, fmt.Errorf("lab: host %s: bond member name %q is longer than 15 characters", h.Name, m))
				}
				hi.members = append(hi.members, m)
				hi.memberPeers = append(hi.memberPeers, fmt.Sprintf("%su%db%d", l.prefix, len(l.hosts), mi))
			}
			hi.uplink, hi.ulPeer = hi.members[0], hi.memberPeers[0]
		}
		l.hosts = append(l.hosts, hi)
	}
	for vi := range l.bp.VPCs {
		vpc := &l.bp.VPCs[vi]
		for ti := range vpc.Tiers {
			t := &vpc.Tiers[ti]
			pfx := t.Prefix
			if !pfx.IsValid() {
				p, err := netip.ParsePrefix(t.CIDR)
				if err != nil {
					errs = append(errs, fmt.Errorf("lab: vpc %s tier %s: cidr %q: %v", vpc.Name, t.Name, t.CIDR, err))
					continue
				}
				pfx = p
			}
			for mi := range t.VMs {
				vm := &t.VMs[mi]
				if !seenHost[vm.Host] {
					errs = append(errs, fmt.Errorf("lab: vm %s: host %q is not in the blueprint", vm.Name, vm.Host))
					continue
				}
				if vm.Port == "" || len(vm.Port) > 15 {
					errs = append(errs, fmt.Errorf("lab: vm %s: port name %q must be 1..15 characters", vm.Name, vm.Port))
					continue
				}
				addr := vm.Addr
				if !addr.IsValid() {
					a, err := netip.ParseAddr(vm.IP)
					if err != nil {
						errs = append(errs, fmt.Errorf("lab: vm %s: ip %q: %v", vm.Name, vm.IP, err))
						continue
					}
					addr = a
				}
				m, err := flows.ParseMAC(vm.MAC)
				if err != nil {
					errs = append(errs, fmt.Errorf("lab: vm %s: mac: %w", vm.Name, err))
					continue
				}
				l.vms = append(l.vms, vmInfo{
					vm: vm, host: vm.Host, mac: m.String(), addr: addr, bits: pfx.Bits(),
					ns: l.prefix + "v-" + vm.Name,
				})
			}
		}
	}
	seenVM := map[string]bool{}
	for _, v := range l.vms {
		if seenVM[v.vm.Name] {
			errs = append(errs, fmt.Errorf("lab: vm %s: duplicate name", v.vm.Name))
		}
		seenVM[v.vm.Name] = true
	}
	// The management namespace carries every controller address of the
	// blueprint (one per replica), or DefaultMgmtAddr.
	for _, c := range l.bp.Controllers {
		parts := strings.Split(c, ":")
		if len(parts) == 3 && (parts[0] == "tcp" || parts[0] == "ssl") {
			if a, err := netip.ParseAddr(parts[1]); err == nil && a.Is4() && !contains(l.mgmtAddrs, a.String()) {
				l.mgmtAddrs = append(l.mgmtAddrs, a.String())
			}
		}
	}
	if len(l.mgmtAddrs) == 0 {
		l.mgmtAddrs = []string{DefaultMgmtAddr}
	}
	return errors.Join(errs...)
}

// hostBits is the prefix length of an underlay address: that of the
// management CIDR containing it, else /24.
func (l *Lab) hostBits(a netip.Addr) int {
	for _, c := range l.bp.Management.CIDRs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Contains(a) {
			return p.Bits()
		}
	}
	return 24
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Blueprint returns the blueprint the lab was built from.
func (l *Lab) Blueprint() *flows.Blueprint { return l.bp }

// Prefix returns the lab's name prefix.
func (l *Lab) Prefix() string { return l.prefix }

// Dir returns the lab's state directory.
func (l *Lab) Dir() string { return l.dir }

// HostNS returns the network namespace of a host.
func (l *Lab) HostNS(host string) string { return l.prefix + host }

// VMNS returns the network namespace of a VM.
func (l *Lab) VMNS(vm string) string { return l.prefix + "v-" + vm }

// MgmtNS returns the management namespace (the first controller replica
// runs there).
func (l *Lab) MgmtNS() string { return l.prefix + "mgmt" }

// Replicas is the number of controller replica namespaces (one per address
// in the blueprint's controllers:, at least one).
func (l *Lab) Replicas() int { return len(l.mgmtAddrs) }

// ReplicaNS returns replica i's management namespace (0 = MgmtNS).
func (l *Lab) ReplicaNS(i int) string {
	if i == 0 {
		return l.MgmtNS()
	}
	return fmt.Sprintf("%smgmt%d", l.prefix, i+1)
}

// ReplicaAddr returns replica i's management address.
func (l *Lab) ReplicaAddr(i int) string { return l.mgmtAddrs[i] }

// RogueNS returns the rogue underlay node's namespace.
func (l *Lab) RogueNS() string { return l.prefix + "rogue" }

// UnderlayNS returns the underlay switch's namespace.
func (l *Lab) UnderlayNS() string { return l.prefix + "ul" }

// MgmtAddr returns the management namespace's first address (the first
// controller target's IP).
func (l *Lab) MgmtAddr() string { return l.mgmtAddrs[0] }

// HostAddr returns a host's tunnel IP.
func (l *Lab) HostAddr(host string) (string, error) {
	hi, err := l.host(host)
	if err != nil {
		return "", err
	}
	return hi.addr.String(), nil
}

// hostDir is a host's private OVS state directory.
func (l *Lab) hostDir(host string) string { return filepath.Join(l.dir, host) }

// HostConfigPath is where Options.HostFiles puts a host's host file.
func (l *Lab) HostConfigPath(host string) string { return filepath.Join(l.hostDir(host), "host.yaml") }

// DBSock returns the OVSDB remote of a host's ovsdb-server ("unix:<dir>/db.sock").
func (l *Lab) DBSock(host string) string { return "unix:" + filepath.Join(l.hostDir(host), "db.sock") }

// Namespaces returns every namespace the lab created and still owns.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.namespaces...)
}

// Pids returns the pids of every process the lab started and still tracks
// (OVS daemons included).
func (l *Lab) Pids() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for _, p := range l.procs {
		out = append(out, p.Pid)
	}
	hosts := make([]string, 0, len(l.daemons))
	for h := range l.daemons {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		for _, pid := range l.daemons[h] {
			out = append(out, pid)
		}
	}
	return out
}

func (l *Lab) host(name string) (*hostInfo, error) {
	for i := range l.hosts {
		if l.hosts[i].h.Name == name {
			return &l.hosts[i], nil
		}
	}
	return nil, fmt.Errorf("lab: no host %q in the blueprint", name)
}

func (l *Lab) vm(name string) (*vmInfo, error) {
	for i := range l.vms {
		if l.vms[i].vm.Name == name {
			return &l.vms[i], nil
		}
	}
	return nil, fmt.Errorf("lab: no vm %q in the blueprint", name)
}

// nsOf resolves a VM name, a host name, "mgmt", "rogue", "underlay" or a
// namespace name of this lab to a namespace.
func (l *Lab) nsOf(name string) (string, error) {
	if _, err := l.vm(name); err == nil {
		return l.VMNS(name), nil
	}
	if _, err := l.host(name); err == nil {
		return l.HostNS(name), nil
	}
	for i := 1; i < len(l.mgmtAddrs); i++ {
		if name == fmt.Sprintf("mgmt%d", i+1) {
			return l.ReplicaNS(i), nil
		}
	}
	switch name {
	case "mgmt":
		return l.MgmtNS(), nil
	case "rogue":
		return l.RogueNS(), nil
	case "underlay", "ul":
		return l.UnderlayNS(), nil
	}
	if strings.HasPrefix(name, l.prefix) {
		return name, nil
	}
	return "", fmt.Errorf("lab: %q is neither a VM, a host nor a namespace of lab %s", name, l.prefix)
}

// preflight checks the platform, privileges and tools.
func preflight() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("lab: needs Linux network namespaces; this is %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("lab: must run as root (it creates network namespaces, veths and OVS daemons); run as root, or set VPCFLOW_E2E=0 to skip the end-to-end tests")
	}
	var missing []string
	for _, t := range []string{"ip", "ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ethtool", "tcpdump", "ping"} {
		if _, err := lookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if _, err := os.Stat(ovsSchema); err != nil {
		missing = append(missing, ovsSchema)
	}
	if len(missing) > 0 {
		return fmt.Errorf("lab: missing %s: install them with `apt-get install -y openvswitch-switch iproute2 iputils-ping tcpdump ethtool python3-scapy`", strings.Join(missing, ", "))
	}
	return nil
}
