package tunnel

// vpcflow doctor checks 8-10: ovsdb-server listening sockets, MTU and the
// tunnel IP, and the tunnel port.

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vpcflow/vpcflow/flows"
)

// 8. ovsdb-server listening beyond loopback/management.

// listener is one passive OVSDB remote or listening socket.
type listener struct {
	proto  string // ptcp or pssl ("tcp" when only the socket is known)
	addr   netip.Addr
	port   int
	source string
}

// ParsePassiveRemote parses an OVSDB passive remote ptcp:PORT[:IP] or
// pssl:PORT[:IP] (IPv6 in brackets). ok is false for other remotes.
func ParsePassiveRemote(r string) (proto string, port int, addr netip.Addr, ok bool) {
	proto, rest, found := strings.Cut(strings.TrimSpace(r), ":")
	if !found || (proto != "ptcp" && proto != "pssl") {
		return "", 0, netip.Addr{}, false
	}
	ps, host, _ := strings.Cut(rest, ":")
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, netip.Addr{}, false
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return proto, p, netip.IPv4Unspecified(), true
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", 0, netip.Addr{}, false
	}
	return proto, p, a.Unmap(), true
}

// ParseProcNetTCP returns the listening sockets (state 0A) of a
// /proc/net/tcp or /proc/net/tcp6 file, by socket inode.
func ParseProcNetTCP(data string) map[string]netip.AddrPort {
	out := map[string]netip.AddrPort{}
	for _, line := range strings.Split(data, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		h, ps, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(ps, 16, 16)
		if err != nil {
			continue
		}
		raw, err := hex.DecodeString(h)
		if err != nil || (len(raw) != 4 && len(raw) != 16) {
			continue
		}
		// The kernel prints each 32-bit word in host (little-endian) order.
		for i := 0; i+4 <= len(raw); i += 4 {
			raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
		}
		a, _ := netip.AddrFromSlice(raw)
		out[f[9]] = netip.AddrPortFrom(a.Unmap(), uint16(port))
	}
	return out
}

// sockets lists the TCP sockets ovsdb-server (pid) listens on.
func (d *doctor) sockets(pid int) ([]netip.AddrPort, error) {
	fds, err := d.env.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := d.env.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []netip.AddrPort
	read := 0
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := d.env.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		read++
		for ino, ap := range ParseProcNetTCP(string(b)) {
			if inodes[ino] {
				out = append(out, ap)
			}
		}
	}
	if read == 0 {
		return nil, fmt.Errorf("cannot read /proc/%d/net/tcp", pid)
	}
	return out, nil
}

func (d *doctor) checkOVSDBListen(ctx context.Context) CheckResult {
	var ls []listener
	var notes []string
	// Configured passive remotes: ovsdb-server's own (--remote, add-remote)
	// and the Manager rows it serves when it has the db:...manager_options
	// remote (as the distribution scripts start it).
	pid, perr := d.pidAlive(filepath.Join(d.o.RunDir, "ovsdb-server.pid"), "ovsdb-server")
	remotesKnown := false
	if perr == nil {
		out, err := d.env.Run(ctx, []string{"OVS_RUNDIR=" + d.o.RunDir}, "ovs-appctl", "--timeout=5", "-t", "ovsdb-server", "ovsdb-server/list-remotes")
		if err != nil {
			notes = append(notes, "list-remotes: "+err.Error())
		} else {
			remotesKnown = true
			for _, r := range strings.Fields(out) {
				if proto, port, a, ok := ParsePassiveRemote(r); ok {
					ls = append(ls, listener{proto: proto, addr: a, port: port, source: "remote " + r})
				}
			}
		}
	} else {
		notes = append(notes, perr.Error())
	}
	if d.db != nil {
		for _, m := range d.db.Managers {
			if proto, port, a, ok := ParsePassiveRemote(m.Target); ok {
				ls = append(ls, listener{proto: proto, addr: a, port: port, source: "Manager " + m.Target})
			}
		}
	}
	// Ground truth: the sockets the ovsdb-server process listens on.
	socketsKnown := false
	if perr == nil {
		socks, err := d.sockets(pid)
		if err != nil {
			notes = append(notes, "sockets: "+err.Error())
		} else {
			socketsKnown = true
			for _, s := range socks {
				proto := "tcp"
				for _, l := range ls {
					if l.port == int(s.Port()) {
						proto = l.proto
					}
				}
				ls = append(ls, listener{proto: proto, addr: s.Addr(), port: int(s.Port()), source: "socket"})
			}
			for i := range ls {
				if ls[i].source == "socket" && !slices.ContainsFunc(ls[:i], func(o listener) bool { return o.addr == ls[i].addr && o.port == ls[i].port }) {
					ls[i].source = "listening socket"
				}
			}
		}
	}
	if !remotesKnown && !socketsKnown && (d.db == nil || len(ls) == 0) {
		return warn(CheckOVSDBListen, "cannot inspect ovsdb-server's remotes or sockets: "+strings.Join(notes, "; "),
			"run vpcflow doctor on the hypervisor as root (with OVS_RUNDIR set if Open vSwitch uses a non-default run directory)")
	}
	// One verdict per address:port; a socket and the remote that opened it
	// are the same listener.
	type key struct {
		a netip.Addr
		p int
	}
	seen := map[key]int{}
	var uniq []listener
	for _, l := range ls {
		k := key{l.addr, l.port}
		if i, ok := seen[k]; ok {
			if uniq[i].proto == "tcp" {
				uniq[i].proto = l.proto
			}
			switch {
			case l.source == "socket" && !strings.HasSuffix(uniq[i].source, ", listening"):
				uniq[i].source += ", listening"
			case l.source != "socket" && !strings.Contains(uniq[i].source, l.source):
				uniq[i].source += ", " + l.source
			}
			continue
		}
		seen[k] = len(uniq)
		uniq = append(uniq, l)
	}
	status := StatusPass
	var bad, ok []string
	fix := ""
	raise := func(s CheckStatus, f string) {
		if s == StatusFail || (s == StatusWarn && status == StatusPass) {
			status = s
			fix = f
		}
	}
	removeFix := func(l listener) string {
		return fmt.Sprintf("ovs-appctl -t ovsdb-server ovsdb-server/remove-remote %s:%d%s (and drop it from the startup options / Manager table: ovs-vsctl del-manager); listen on loopback or a management address with pssl:",
			l.proto, l.port, addrSuffix(l.addr))
	}
	for _, l := range uniq {
		desc := fmt.Sprintf("%s %s (%s)", l.proto, netip.AddrPortFrom(l.addr, uint16(l.port)), l.source)
		switch {
		case l.addr.IsUnspecified():
			bad = append(bad, desc+": every address")
			raise(StatusFail, removeFix(l))
		case l.addr.IsLoopback():
			ok = append(ok, desc)
		case d.inMgmt(l.addr):
			if l.proto == "pssl" {
				ok = append(ok, desc)
			} else {
				bad = append(bad, desc+": management address without TLS")
				raise(StatusWarn, fmt.Sprintf("use pssl:%d:%s with ovs-vsctl set-ssl instead of %s", l.port, l.addr, l.proto))
			}
		case len(d.mgmtNets) == 0:
			bad = append(bad, desc+": cannot tell whether this is a management address")
			raise(StatusWarn, "pass --blueprint FILE --host NAME so doctor knows the management CIDRs")
		default:
			bad = append(bad, desc+": not loopback and outside the management CIDRs "+prefixList(d.mgmtNets))
			raise(StatusFail, removeFix(l))
		}
	}
	if status != StatusPass {
		return CheckResult{Check: CheckOVSDBListen, Status: status, Detail: "ovsdb-server listens beyond loopback/management: " + strings.Join(bad, "; "), Remediation: fix}
	}
	if len(ok) == 0 {
		return pass(CheckOVSDBListen, "ovsdb-server has no TCP listeners (unix socket only)")
	}
	return pass(CheckOVSDBListen, "ovsdb-server listens only on loopback/management: "+strings.Join(ok, "; "))
}

func addrSuffix(a netip.Addr) string {
	if a.Is6() {
		return ":[" + a.String() + "]"
	}
	return ":" + a.String()
}

func prefixList(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return "[" + strings.Join(s, ",") + "]"
}

func (d *doctor) inMgmt(a netip.Addr) bool {
	for _, p := range d.mgmtNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// 9. MTU and the tunnel IP.

func (d *doctor) readMTU(dev string) (int, error) {
	b, err := d.env.ReadFile(filepath.Join("/sys/class/net", dev, "mtu"))
	if err != nil {
		return 0, fmt.Errorf("interface %s not found (/sys/class/net/%s/mtu): %w", dev, dev, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func (d *doctor) checkMTU() CheckResult {
	if d.uplink == "" {
		return skip(CheckMTU, "uplink unknown: pass --uplink or --blueprint FILE --host NAME")
	}
	encap := d.encap
	if encap == "" {
		encap = flows.EncapVXLAN
	}
	over := EncapOverhead(encap)
	need := d.o.GuestMTU + over
	if ms := d.bondMembers(); len(ms) > 0 {
		return d.checkBondMTU(ms, need, fmt.Sprintf("%d guest + %d %s", d.o.GuestMTU, over, encap))
	}
	mtu, err := d.readMTU(d.uplink)
	if err != nil {
		return fail(CheckMTU, err.Error(), "check the uplink name (blueprint uplink: or --uplink)")
	}
	what := fmt.Sprintf("%d guest + %d %s", d.o.GuestMTU, over, encap)
	vlan := ""
	if b, err := d.env.ReadFile(filepath.Join("/proc/net/vlan", d.uplink)); err == nil {
		vlan = fmt.Sprintf("; %s is an 802.1Q VLAN device: its parent NIC and the switch ports must carry %d + %d bytes", d.uplink, need, VLANOverhead)
		for _, line := range strings.Split(string(b), "\n") {
			if _, parent, ok := strings.Cut(line, "Device: "); ok {
				if pm, err := d.readMTU(strings.TrimSpace(parent)); err == nil && pm < need {
					return fail(CheckMTU, fmt.Sprintf("VLAN parent %s MTU %d < %d (%s)", strings.TrimSpace(parent), pm, need, what),
						fmt.Sprintf("ip link set %s mtu %d (and the underlay switch ports)", strings.TrimSpace(parent), need+VLANOverhead))
				}
			}
		}
	} else {
		vlan = fmt.Sprintf(" (+%d if the underlay is VLAN-tagged)", VLANOverhead)
	}
	if mtu < need {
		return fail(CheckMTU, fmt.Sprintf("uplink %s MTU %d < %d (%s): large guest packets are dropped silently after encapsulation%s", d.uplink, mtu, need, what, vlan),
			fmt.Sprintf("ip link set %s mtu %d and persist it (and the underlay switch ports), or lower the guest MTU to %d", d.uplink, need, mtu-over))
	}
	return pass(CheckMTU, fmt.Sprintf("uplink %s MTU %d >= %d (%s)%s", d.uplink, mtu, need, what, vlan))
}

func (d *doctor) checkTunnelIP() CheckResult {
	if d.o.Host == nil || !d.o.Host.Addr.IsValid() {
		return skip(CheckTunnelIP, "tunnel_ip unknown: pass --blueprint FILE --host NAME")
	}
	want := d.o.Host.Addr
	addrs, err := d.env.InterfaceAddrs(d.bridge)
	fix := fmt.Sprintf("ip addr add %s/PREFIX dev %s && ip link set %s up (the host IP lives on the bridge's internal port, as CloudStack does)", want, d.bridge, d.bridge)
	if err != nil {
		return warn(CheckTunnelIP, fmt.Sprintf("cannot read %s's addresses: %v", d.bridge, err), fix)
	}
	for _, p := range addrs {
		if p.Addr().Unmap() == want {
			return pass(CheckTunnelIP, fmt.Sprintf("tunnel_ip %s is on %s", p, d.bridge))
		}
	}
	return warn(CheckTunnelIP, fmt.Sprintf("tunnel_ip %s is not configured on %s (addresses: %s): tunnels are routed out of the bridge that owns it", want, d.bridge, prefixList(addrs)), fix)
}

// 10. Tunnel port.

func (d *doctor) checkTunnelPort() CheckResult {
	if r, ok := d.needBridge(CheckTunnelPort); !ok {
		return r
	}
	encap := d.encap
	fix := fmt.Sprintf("vpcflow host apply%s", d.hostSuffix())
	if encap == "" {
		return fail(CheckTunnelPort, fmt.Sprintf("no vpcflow tunnel port (vpcflow-vxlan or vpcflow-gre) on %s", d.bridge), fix)
	}
	name := TunnelPortName(encap)
	var iface *InterfaceState
	for _, p := range d.br.Ports {
		if p.Name == name && len(p.Interfaces) > 0 {
			iface = &p.Interfaces[0]
		}
	}
	if iface == nil {
		return fail(CheckTunnelPort, fmt.Sprintf("tunnel port %s is missing on %s", name, d.bridge), fix)
	}
	var probs []string
	if iface.Type != string(encap) {
		probs = append(probs, fmt.Sprintf("type %q, want %s", iface.Type, encap))
	}
	for _, k := range []string{optRemoteIP, optKey} {
		if iface.Options[k] != flowValue {
			probs = append(probs, fmt.Sprintf("options:%s=%q, want flow", k, iface.Options[k]))
		}
	}
	if d.o.Host != nil && d.o.Host.Addr.IsValid() {
		if iface.Options[optLocalIP] != d.o.Host.Addr.String() {
			probs = append(probs, fmt.Sprintf("options:local_ip=%q, want %s", iface.Options[optLocalIP], d.o.Host.Addr))
		}
	} else if iface.Options[optLocalIP] == "" {
		probs = append(probs, "options:local_ip unset")
	}
	if iface.Error != "" {
		probs = append(probs, "error: "+iface.Error)
	}
	if iface.Ofport != nil && *iface.Ofport < 0 {
		probs = append(probs, "ofport -1 (the switch could not add it)")
	}
	if len(probs) > 0 {
		return fail(CheckTunnelPort, fmt.Sprintf("tunnel port %s: %s", name, strings.Join(probs, "; ")), fix)
	}
	of := ""
	if iface.Ofport != nil {
		of = fmt.Sprintf(", ofport %d", *iface.Ofport)
	}
	return pass(CheckTunnelPort, fmt.Sprintf("%s: type %s, remote_ip=flow, key=flow, local_ip=%s%s", name, iface.Type, iface.Options[optLocalIP], of))
}
