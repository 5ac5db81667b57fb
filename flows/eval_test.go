package flows

import (
	"fmt"
	"math/rand"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// This file is the isolation proof: the compiled flows of every host are run
// through the in-memory evaluator (eval.go), linked by a simulated underlay,
// and every ordered pair of VMs is checked for exactly the reachability the
// design allows. It runs on the demo blueprint and on ~200 generated
// topologies with overlapping tenant CIDRs and identical VM IPs.

const demoBlueprint = "../examples/demo/blueprint.yaml"

func loadDemo(t testing.TB) *Blueprint {
	t.Helper()
	bp, err := Load(demoBlueprint)
	if err != nil {
		t.Fatalf("load demo blueprint: %v", err)
	}
	return bp
}

// tvm is a VM with everything the tests need about it.
type tvm struct {
	name, vpc, tier string
	vni             uint32
	host, port      string
	mac             MAC
	ip              netip.Addr
	prefix          netip.Prefix
}

func (v tvm) at() string { return v.host + ":" + v.port }

func vmsOf(bp *Blueprint) []tvm {
	var out []tvm
	for _, p := range bp.VPCs {
		for _, t := range p.Tiers {
			for _, m := range t.VMs {
				out = append(out, tvm{m.Name, p.Name, t.Name, t.VNI, m.Host, m.Port, m.HW, m.Addr, t.Prefix})
			}
		}
	}
	return out
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// ---- generator ----

// genBlueprint builds a random valid topology: 2-6 hosts, 2-4 VPCs of 1-3
// tiers with 1-5 VMs each on random hosts. Tier i of every VPC uses the same
// (or an overlapping) CIDR and the same VM addresses, so overlapping tenant
// address space is the norm. Encapsulation, tunnel_mac, trusted_peers, host
// addresses inside/outside the management CIDRs and host_ports vary. The
// result goes through YAML and Parse, so the loader and validator check it.
func genBlueprint(t testing.TB, r *rand.Rand, n int) *Blueprint {
	t.Helper()
	bp := &Blueprint{Version: 1, Revision: uint32(1 + r.Intn(5000)), Encapsulation: EncapVXLAN,
		Controllers: []string{"tcp:192.0.2.250:6653"}}
	if r.Intn(2) == 0 {
		bp.Encapsulation = EncapGRE
	}
	bp.Management.CIDRs = []string{"192.0.2.0/24"}
	if r.Intn(3) == 0 {
		bp.Management.CIDRs = append(bp.Management.CIDRs, "198.18.0.0/15")
	}
	switch r.Intn(5) {
	case 0:
		bp.Management.HostPorts = []uint16{22, 53, 80}
	case 1:
		bp.Management.HostPorts = []uint16{}
	default:
		bp.Management.HostPorts = append([]uint16(nil), DefaultHostPorts...)
	}
	nHosts := 2 + r.Intn(5)
	uplinks := []string{"eth0", "eno1", "bond0"}
	for i := 0; i < nHosts; i++ {
		h := Host{Name: fmt.Sprintf("h%d", i+1), DatapathID: fmt.Sprintf("%016x", 0xa0+i),
			Uplink: uplinks[r.Intn(len(uplinks))]}
		if h.Uplink == "bond0" { // a real bond (no extra draws: the random stream is unchanged)
			h.UplinkSpec = UplinkSpec{Name: "bond0", Members: []string{"eth0", "eth1"}}
			if i%2 == 1 {
				h.UplinkSpec.LACP = LACPActive
			}
		}
		if r.Intn(3) == 0 {
			h.TunnelIP = fmt.Sprintf("203.0.113.%d", 10+i) // outside the management CIDRs
		} else {
			h.TunnelIP = fmt.Sprintf("192.0.2.%d", 10+i)
		}
		if r.Intn(2) == 0 {
			h.TunnelMAC = fmt.Sprintf("02:00:00:00:00:%02x", 0x10+i)
		}
		bp.Hosts = append(bp.Hosts, h)
	}
	if r.Intn(3) == 0 {
		for k := 0; k <= r.Intn(2); k++ {
			bp.TrustedPeers = append(bp.TrustedPeers, fmt.Sprintf("198.51.100.%d", 200+k))
		}
	}
	ports := map[string]int{}
	nVPCs := 2 + r.Intn(3)
	for vi := 0; vi < nVPCs; vi++ {
		p := VPC{Name: fmt.Sprintf("vpc%d", vi+1)}
		nTiers := 1 + r.Intn(3)
		for ti := 0; ti < nTiers; ti++ {
			tr := Tier{Name: fmt.Sprintf("t%d", ti+1), VNI: uint32(1000*(vi+1) + ti + 1),
				CIDR: fmt.Sprintf("10.%d.0.0/24", ti+1)}
			if r.Intn(4) == 0 {
				tr.CIDR = fmt.Sprintf("10.%d.0.0/23", ti+1) // overlaps the /24 of other VPCs
			}
			nVMs := 1 + r.Intn(5)
			for k := 0; k < nVMs; k++ {
				host := bp.Hosts[r.Intn(nHosts)].Name
				tr.VMs = append(tr.VMs, VM{
					Name: fmt.Sprintf("v%d-t%d-%d", vi+1, ti+1, k+1),
					Host: host,
					Port: fmt.Sprintf("vnet%d", ports[host]),
					MAC:  fmt.Sprintf("52:54:00:%02x:%02x:%02x", vi+1, ti+1, k+1),
					IP:   fmt.Sprintf("10.%d.0.%d", ti+1, 10+k), // same IPs in every VPC
				})
				ports[host]++
			}
			p.Tiers = append(p.Tiers, tr)
		}
		bp.VPCs = append(bp.VPCs, p)
	}
	data, err := yaml.Marshal(bp)
	if err != nil {
		t.Fatalf("marshal generated blueprint %d: %v", n, err)
	}
	parsed, err := Parse(fmt.Sprintf("generated-%d.yaml", n), data)
	if err != nil {
		t.Fatalf("generated blueprint %d does not validate: %v\n%s", n, err, data)
	}
	return parsed
}

// genCount is the number of generated topologies (fewer with -short).
func genCount() int {
	if testing.Short() {
		return 40
	}
	return 200
}

// ---- assertion helpers ----

func arrivalKeys(as []Arrival) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.Host+":"+a.Port)
	}
	sort.Strings(out)
	return out
}

// reporter is the part of testing.T the checks use (the mutation test
// counts failures instead).
type reporter interface {
	Errorf(format string, args ...any)
}

// checker runs sends and reports failures with the whole journey. (The hot
// helpers do not call t.Helper: it costs a stack walk per packet; every
// message names the scenario instead.)
type checker struct {
	t  reporter
	c  *Cloud
	bp *Blueprint
	n  int // failures reported, capped
}

func (k *checker) fail(format string, args ...any) {
	k.n++
	if k.n <= 5 {
		k.t.Errorf(format, args...)
	} else if k.n == 6 {
		k.t.Errorf("(further failures suppressed)")
	}
}

// journeyDefects reports pipeline defects seen anywhere in a journey:
// ambiguous matches, evaluation errors, hop limits.
func (k *checker) journeyDefects(what string, j Journey) {
	for _, h := range j.Hops {
		if h.Trace.Err != "" {
			k.fail("%s: pipeline error on %s: %s\n%s", what, h.Host, h.Trace.Err, j)
		}
		for _, s := range h.Trace.Steps {
			if len(s.Ambiguous) > 0 {
				k.fail("%s: ambiguous match on %s in table %s\n%s", what, h.Host, TableName(s.Table), j)
			}
		}
	}
	for _, l := range j.Lost {
		if strings.Contains(l, "hop limit") {
			k.fail("%s: %s\n%s", what, l, j)
		}
	}
}

// expect sends p on host and checks the arrivals are exactly want (host:port,
// duplicates significant).
func (k *checker) expect(what, host string, p Packet, want ...string) Journey {
	j := k.c.Trace(host, p)
	k.journeyDefects(what, j)
	k.compare(what, j, want)
	return j
}

func (k *checker) compare(what string, j Journey, want []string) {
	got := arrivalKeys(j.Arrivals)
	w := append([]string(nil), want...)
	sort.Strings(w)
	if strings.Join(got, ",") != strings.Join(w, ",") {
		k.fail("%s: arrivals %v, want %v\n%s", what, got, w, j)
	}
}

// expectDropBy sends p and checks it arrives nowhere and that hop hop (0 =
// the first switch) was dropped by a flow of category cat.
func (k *checker) expectDropBy(what, host string, p Packet, hop int, cat Category) Journey {
	j := k.expect(what, host, p)
	k.dropBy(what, j, hop, cat)
	return j
}

func (k *checker) dropBy(what string, j Journey, hop int, cat Category) {
	if hop >= len(j.Hops) {
		k.fail("%s: no hop %d\n%s", what, hop, j)
		return
	}
	tr := j.Hops[hop].Trace
	if !tr.Dropped || tr.DropBy == nil || tr.DropBy.Cookie.Category() != cat {
		k.fail("%s: hop %d (%s on %s): %s, want a drop by [%s]\n%s", what, hop, j.Hops[hop].Stage, j.Hops[hop].Host, tr.Verdict(), cat, j)
	}
}

func (k *checker) dropInTable(what string, j Journey, hop int, table TableID) {
	if hop >= len(j.Hops) {
		k.fail("%s: no hop %d\n%s", what, hop, j)
		return
	}
	tr := j.Hops[hop].Trace
	if !tr.Dropped || tr.DropBy == nil || tr.DropBy.Table != table {
		k.fail("%s: hop %d on %s: %s, want a drop in table %s\n%s", what, hop, j.Hops[hop].Host, tr.Verdict(), TableName(table), j)
	}
}

// ---- the isolation proof ----

// isolationOptions bound the work per topology.
type isolationOptions struct {
	maxPairs int // 0 = every ordered pair
	seed     int64
}

// checkIsolation runs every check on c and returns the number of failures.
func checkIsolation(t reporter, c *Cloud, opt isolationOptions) int {
	bp := c.Blueprint
	k := &checker{t: t, c: c, bp: bp}
	vms := vmsOf(bp)
	r := rand.New(rand.NewSource(opt.seed))

	type pair struct{ a, b int }
	var pairs []pair
	for i := range vms {
		for j := range vms {
			if i != j {
				pairs = append(pairs, pair{i, j})
			}
		}
	}
	if opt.maxPairs > 0 && len(pairs) > opt.maxPairs {
		r.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
		pairs = pairs[:opt.maxPairs]
	}
	for _, pr := range pairs {
		checkPair(k, vms, vms[pr.a], vms[pr.b])
	}
	for _, a := range vms {
		checkVM(k, vms, a)
	}
	for i := range bp.Hosts {
		checkUnderlay(k, vms, &bp.Hosts[i])
	}
	return k.n
}

func newCloud(t testing.TB, bp *Blueprint) *Cloud {
	t.Helper()
	c, err := NewCloud(bp)
	if err != nil {
		t.Fatalf("NewCloud: %v", err)
	}
	return c
}

func sameTier(a, b tvm) bool { return a.vpc == b.vpc && a.tier == b.tier }

func checkPair(k *checker, vms []tvm, a, b tvm) {
	desc := fmt.Sprintf("%s -> %s", a.name, b.name)
	unicast := []struct {
		what string
		p    Packet
	}{
		{"icmp", ICMPPacket(a.port, a.mac, b.mac, a.ip, b.ip)},
		{"tcp/80", TCPPacket(a.port, a.mac, b.mac, a.ip, b.ip, 40000, 80)},
		{"tcp/22", TCPPacket(a.port, a.mac, b.mac, a.ip, b.ip, 40001, 22)},
		{"udp/53", UDPPacket(a.port, a.mac, b.mac, a.ip, b.ip, 40002, 53)},
	}
	if sameTier(a, b) {
		for _, u := range unicast {
			j := k.expect(desc+" "+u.what+" (same tier)", a.host, u.p, b.at())
			for _, ar := range j.Arrivals {
				if ar.VM != b.name || ar.Packet.EthDst != b.mac || ar.Packet.IPDst != b.ip ||
					ar.Packet.EthSrc != a.mac || ar.Packet.IPSrc != a.ip {
					k.fail("%s %s: delivered packet altered: %s", desc, u.what, ar.Packet)
				}
			}
		}
	} else {
		for _, u := range unicast {
			k.expect(desc+" "+u.what+" (other tier/VPC, dst MAC+IP of b)", a.host, u.p)
		}
		// b's MAC with an address of a's own tier: still not b.
		k.expect(desc+" icmp to b's MAC with a tier address", a.host,
			ICMPPacket(a.port, a.mac, b.mac, a.ip, a.prefix.Addr().Next()))
	}

	// ARP who-has b.ip: answered only by a VM of a's own tier with that IP
	// (other than a itself), never with b's MAC across tiers/VPCs.
	var responder *tvm
	for i := range vms {
		if sameTier(vms[i], a) && vms[i].name != a.name && vms[i].ip == b.ip {
			responder = &vms[i]
		}
	}
	arp := ARPRequest(a.port, a.mac, a.ip, b.ip)
	if responder == nil {
		k.expect(desc+" arp who-has "+b.ip.String()+" (no tier VM has it)", a.host, arp)
		return
	}
	j := k.expect(desc+" arp who-has "+b.ip.String(), a.host, arp, a.at())
	for _, ar := range j.Arrivals {
		q := ar.Packet
		if q.EthType != EthARP || q.ARPOp != 2 || q.ARPSha != responder.mac || q.ARPSpa != responder.ip ||
			q.EthSrc != responder.mac || q.EthDst != a.mac || q.ARPTha != a.mac || q.ARPTpa != a.ip {
			k.fail("%s: bad ARP reply %s, want %s is-at %s to %s", desc, q, responder.ip, responder.mac, a.mac)
		}
		if len(ar.Trace.Outputs) != 1 || !ar.Trace.Outputs[0].ViaInPort {
			k.fail("%s: ARP reply not sent by output:IN_PORT:\n%s", desc, ar.Trace)
		}
	}
}

func checkVM(k *checker, vms []tvm, a tvm) {
	bp := k.bp
	var tierMates []string
	var mate *tvm
	for i := range vms {
		if sameTier(vms[i], a) && vms[i].name != a.name {
			tierMates = append(tierMates, vms[i].at())
			mate = &vms[i]
		}
	}
	otherIP := a.prefix.Addr().Next()
	if otherIP == a.ip {
		otherIP = otherIP.Next()
	}
	dstMAC, dstIP := BroadcastMAC, otherIP
	if mate != nil {
		dstMAC, dstIP = mate.mac, mate.ip
	}

	// ARP for its own IP: never answered.
	k.expectDropBy(a.name+" arp for own ip", a.host, ARPRequest(a.port, a.mac, a.ip, a.ip), 0, CatARPDrop)

	// Spoofing.
	foreignMAC := MAC{0x52, 0x54, 0x00, 0xee, 0xee, 0xee}
	wrongIP := mustAddr("10.250.250.250")
	spoofs := []struct {
		what string
		p    Packet
	}{
		{"wrong src MAC", ICMPPacket(a.port, foreignMAC, dstMAC, a.ip, dstIP)},
		{"wrong src IP", ICMPPacket(a.port, a.mac, dstMAC, wrongIP, dstIP)},
		{"tier-neighbour src IP", ICMPPacket(a.port, a.mac, dstMAC, otherIP, dstIP)},
		{"wrong ARP sha", func() Packet { p := ARPRequest(a.port, a.mac, a.ip, dstIP); p.ARPSha = foreignMAC; return p }()},
		{"wrong ARP spa", ARPRequest(a.port, a.mac, wrongIP, dstIP)},
		{"wrong ARP eth src", func() Packet { p := ARPRequest(a.port, a.mac, a.ip, dstIP); p.EthSrc = foreignMAC; return p }()},
		{"spoofed ARP reply", ARPReply(a.port, a.mac, otherIP, dstMAC, dstIP)},
		{"other ethertype", Packet{InPort: a.port, EthSrc: a.mac, EthDst: BroadcastMAC, EthType: 0x88cc}},
	}
	for _, v := range vms {
		if v.name != a.name {
			// another VM's identity (possibly the same IP in another VPC)
			spoofs = append(spoofs, struct {
				what string
				p    Packet
			}{"identity of " + v.name, ICMPPacket(a.port, v.mac, dstMAC, v.ip, dstIP)})
			break
		}
	}
	for _, s := range spoofs {
		if s.what == "tier-neighbour src IP" && otherIP == a.ip {
			continue
		}
		k.expectDropBy(a.name+" spoof: "+s.what, a.host, s.p, 0, CatSpoofDrop)
	}

	// Management: guests never reach management networks, host addresses
	// or host service ports, whatever the destination MAC.
	macs := []MAC{BroadcastMAC}
	if mate != nil {
		macs = append(macs, mate.mac)
	}
	var targets []netip.Addr
	for _, p := range bp.MgmtPrefixes {
		targets = append(targets, p.Addr().Next(), mustAddr("192.0.2.250"))
		if p.Contains(mustAddr("198.18.5.5")) {
			targets = append(targets, mustAddr("198.18.5.5"))
		}
	}
	for i := range bp.Hosts {
		h := &bp.Hosts[i]
		targets = append(targets, h.Addr)
	}
	h0 := &bp.Hosts[len(bp.Hosts)-1]
	macs = append(macs, underlayMAC(h0, h0.Addr))
	for _, dst := range targets {
		if !dst.IsValid() {
			continue
		}
		for _, m := range macs {
			for _, p := range []Packet{
				ICMPPacket(a.port, a.mac, m, a.ip, dst),
				TCPPacket(a.port, a.mac, m, a.ip, dst, 40000, 22),
				TCPPacket(a.port, a.mac, m, a.ip, dst, 40000, 8080),
				UDPPacket(a.port, a.mac, m, a.ip, dst, 40000, VXLANPort),
				IPv4Packet(a.port, a.mac, m, a.ip, dst, ProtoGRE),
			} {
				k.expectDropBy(fmt.Sprintf("%s to management/host %s", a.name, dst), a.host, p, 0, CatMgmtGuard)
			}
		}
	}
	for _, port := range bp.Management.HostPorts {
		for _, dst := range []netip.Addr{bp.Hosts[0].Addr, mustAddr("8.8.8.8"), mustAddr("100.64.0.1")} {
			for _, m := range macs {
				k.expectDropBy(fmt.Sprintf("%s to host port tcp/%d on %s", a.name, port, dst), a.host,
					TCPPacket(a.port, a.mac, m, a.ip, dst, 40000, port), 0, CatMgmtGuard)
				k.expectDropBy(fmt.Sprintf("%s to host port udp/%d on %s", a.name, port, dst), a.host,
					UDPPacket(a.port, a.mac, m, a.ip, dst, 40000, port), 0, CatMgmtGuard)
			}
		}
	}
	// Outside the tier, other traffic is L2: delivered only to a MAC of the tier.
	if mate != nil {
		k.expect(a.name+" to an outside address via a tier MAC", a.host,
			TCPPacket(a.port, a.mac, mate.mac, a.ip, mustAddr("8.8.8.8"), 40000, 443), mate.at())
	}

	// Broadcast and multicast reach every other VM of the tier exactly once.
	k.expect(a.name+" DHCP discover", a.host, DHCPDiscover(a.port, a.mac), tierMates...)
	bcast := UDPPacket(a.port, a.mac, BroadcastMAC, a.ip, lastAddr(a.prefix), 5000, 5000)
	k.expect(a.name+" subnet broadcast", a.host, bcast, tierMates...)
	mcast := UDPPacket(a.port, a.mac, MAC{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}, a.ip, mustAddr("224.0.0.251"), 5353, 5353)
	k.expect(a.name+" multicast", a.host, mcast, tierMates...)
	grat := ARPReply(a.port, a.mac, a.ip, BroadcastMAC, a.ip)
	k.expect(a.name+" gratuitous ARP reply", a.host, grat, tierMates...)

	// Unknown unicast reaches nobody.
	k.expect(a.name+" unknown unicast", a.host, ICMPPacket(a.port, a.mac, MAC{0x52, 0x54, 0x00, 0xee, 0xee, 0x01}, a.ip, otherIP))
	// IPv6 and DHCP server replies are dropped.
	k.expectDropBy(a.name+" ipv6", a.host, Packet{InPort: a.port, EthSrc: a.mac, EthDst: BroadcastMAC, EthType: EthIPv6}, 0, CatIPv6Drop)
	k.expectDropBy(a.name+" DHCP offer", a.host, UDPPacket(a.port, a.mac, BroadcastMAC, a.ip, mustAddr("255.255.255.255"), 67, 68), 0, CatDHCPGuard)
}

// carriers returns the hosts with a VM of tier vni.
func carriers(vms []tvm, vni uint32) map[string]bool {
	m := map[string]bool{}
	for _, v := range vms {
		if v.vni == vni {
			m[v.host] = true
		}
	}
	return m
}

func localOf(vms []tvm, vni uint32, host string) []string {
	var out []string
	for _, v := range vms {
		if v.vni == vni && v.host == host {
			out = append(out, v.at())
		}
	}
	return out
}

func roguePacket(bp *Blueprint, src netip.Addr, dst *Host) Packet {
	o := Packet{EthSrc: MAC{0x0e, 0x66, 0, 0, 0, 0x66}, EthDst: underlayMAC(dst, dst.Addr), EthType: EthIPv4,
		IPSrc: src, IPDst: dst.Addr}
	if bp.Encapsulation == EncapGRE {
		o.IPProto = ProtoGRE
	} else {
		o.IPProto, o.L4Src, o.L4Dst = ProtoUDP, 50000, VXLANPort
	}
	return o
}

// otherEncap turns an outer packet into the encapsulation the blueprint does
// not use.
func otherEncap(bp *Blueprint, o Packet) Packet {
	if bp.Encapsulation == EncapGRE {
		o.IPProto, o.L4Src, o.L4Dst = ProtoUDP, 50000, VXLANPort
	} else {
		o.IPProto, o.L4Src, o.L4Dst = ProtoGRE, 0, 0
	}
	return o
}

func checkUnderlay(k *checker, vms []tvm, x *Host) {
	bp, c := k.bp, k.c
	var keys []uint32
	for _, p := range bp.VPCs {
		for _, t := range p.Tiers {
			keys = append(keys, t.VNI)
		}
	}
	keys = append(keys, 16777215) // a key no tier has
	innerFor := func(key uint32) Packet {
		p := UDPPacket("", MAC{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}, BroadcastMAC, mustAddr("10.1.0.200"), mustAddr("10.1.0.255"), 5000, 5000)
		p.TunID = uint64(key)
		return p
	}
	carry := map[uint32]map[string]bool{}
	for _, key := range keys {
		carry[key] = carriers(vms, key)
	}

	for _, key := range keys {
		inner := innerFor(key)
		what := fmt.Sprintf("underlay to %s key %d", x.Name, key)
		// A rogue underlay node (inside and outside the management CIDR).
		for _, rogue := range []netip.Addr{mustAddr("192.0.2.66"), mustAddr("203.0.113.66")} {
			srcMACs := []MAC{{0x0e, 0x66, 0, 0, 0, 0x66}}
			for i := range bp.Hosts {
				if h := &bp.Hosts[i]; h.Name != x.Name {
					srcMACs = append(srcMACs, underlayMAC(h, h.Addr)) // a peer's MAC, spoofed
				}
			}
			for _, m := range srcMACs {
				o := roguePacket(bp, rogue, x)
				o.EthSrc = m
				rw := fmt.Sprintf("%s from rogue %s (MAC %s)", what, rogue, m)
				j := c.TraceOuter(x.Name, o, inner)
				k.journeyDefects(rw, j)
				k.compare(rw, j, nil)
				k.dropBy(rw, j, 0, CatTunnelDrop)
			}
		}
		// Real hosts: key K only from a host carrying K, only if x carries K.
		for i := range bp.Hosts {
			h := &bp.Hosts[i]
			if h.Name == x.Name {
				continue
			}
			outer := c.OuterPacket(h, x.Addr, uint64(key))
			hw := fmt.Sprintf("%s from host %s", what, h.Name)
			j := c.TraceOuter(x.Name, outer, inner)
			k.journeyDefects(hw, j)
			if carry[key][x.Name] && carry[key][h.Name] {
				k.compare(hw+" (both carry the tier)", j, localOf(vms, key, x.Name))
			} else {
				k.compare(hw+" (key not carried by both)", j, nil)
				k.dropInTable(hw, j, 1, TTunnelIn)
			}
			// The other encapsulation is never accepted.
			j = c.TraceOuter(x.Name, otherEncap(bp, outer), inner)
			k.compare(hw+" other encapsulation", j, nil)
			k.dropBy(hw+" other encapsulation", j, 0, CatTunnelDrop)
			// A pinned tunnel_mac must match.
			if h.HasMAC {
				bad := outer
				bad.EthSrc = MAC{0x02, 0xde, 0xad, 0xbe, 0xef, 0x01}
				j = c.TraceOuter(x.Name, bad, inner)
				k.compare(hw+" wrong source MAC", j, nil)
				k.dropBy(hw+" wrong source MAC", j, 0, CatTunnelDrop)
			}
		}
		// Trusted peers: any key of a tier present on x, nothing else.
		for _, peer := range bp.PeerAddrs {
			pw := fmt.Sprintf("%s from trusted peer %s", what, peer)
			j := c.TraceOuter(x.Name, roguePacket(bp, peer, x), inner)
			k.journeyDefects(pw, j)
			if carry[key][x.Name] {
				k.compare(pw, j, localOf(vms, key, x.Name))
			} else {
				k.compare(pw, j, nil)
				k.dropInTable(pw, j, 1, TTunnelIn)
			}
		}
	}
	// Unicast from the tunnel goes only to a local VM of the key's tier.
	for _, v := range vms {
		if v.host != x.Name {
			continue
		}
		for _, key := range keys {
			inner := UDPPacket("", MAC{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcd}, v.mac, mustAddr("10.1.0.200"), v.ip, 5000, 5000)
			inner.TunID = uint64(key)
			var srcs []netip.Addr
			for i := range bp.Hosts {
				if bp.Hosts[i].Name != x.Name && carry[key][bp.Hosts[i].Name] {
					srcs = append(srcs, bp.Hosts[i].Addr)
				}
			}
			srcs = append(srcs, bp.PeerAddrs...)
			for _, src := range srcs {
				var outer Packet
				if h := c.hostByAddr[src]; h != nil {
					outer = c.OuterPacket(h, x.Addr, uint64(key))
				} else {
					outer = roguePacket(bp, src, x)
				}
				var want []string
				if key == v.vni {
					want = []string{v.at()}
				}
				j := c.TraceOuter(x.Name, outer, inner)
				k.journeyDefects("tunnel unicast", j)
				k.compare(fmt.Sprintf("tunnel unicast key %d from %s to %s", key, src, v.name), j, want)
			}
		}
	}

	// Management traffic: uplink -> LOCAL, LOCAL -> uplink, and nothing from
	// the uplink ever reaches a VM port.
	// A bonded uplink: from every member, out of a live one (the
	// evaluator's choice is the first).
	mgmtSrc := mustAddr("192.0.2.250")
	for _, up := range x.UplinkPorts() {
		k.expect("uplink ssh to "+x.Name+" via "+up, x.Name,
			TCPPacket(up, MAC{0x0e, 0, 0, 0, 0, 0xfa}, underlayMAC(x, x.Addr), mgmtSrc, x.Addr, 40000, 22), x.Name+":"+PortLocal)
	}
	k.expect("LOCAL to the controller from "+x.Name, x.Name,
		TCPPacket(PortLocal, underlayMAC(x, x.Addr), MAC{0x0e, 0, 0, 0, 0, 0xfa}, x.Addr, mgmtSrc, 40000, 6653), x.Name+":"+x.UplinkPorts()[0])
	for _, v := range vms {
		up := x.UplinkPorts()[len(x.UplinkPorts())-1]
		for _, p := range []Packet{
			ICMPPacket(up, MAC{0x0e, 0, 0, 0, 0, 0xfa}, v.mac, mgmtSrc, v.ip),
			ARPRequest(up, MAC{0x0e, 0, 0, 0, 0, 0xfa}, mgmtSrc, v.ip),
			UDPPacket(up, MAC{0x0e, 0, 0, 0, 0, 0xfa}, BroadcastMAC, mgmtSrc, mustAddr("255.255.255.255"), 68, 67),
		} {
			for _, ar := range c.Send(x.Name, p) {
				if ar.Port != PortLocal {
					k.fail("uplink packet %s reached %s", p, ar)
				}
			}
		}
	}
	// ARP claiming a peer's tunnel IP from another MAC is dropped.
	for i := range bp.Hosts {
		h := &bp.Hosts[i]
		if h.Name == x.Name || !h.HasMAC {
			continue
		}
		k.expectDropBy("ARP spoofing host "+h.Name+" on "+x.Name, x.Name,
			ARPRequest(x.UplinkPorts()[0], MAC{0x0e, 0x66, 0, 0, 0, 1}, h.Addr, x.Addr), 0, CatPeerARPGuard)
		k.expect("ARP from host "+h.Name+" on "+x.Name, x.Name,
			ARPRequest(x.UplinkPorts()[0], h.MAC, h.Addr, x.Addr), x.Name+":"+PortLocal)
	}
}

func TestIsolationDemo(t *testing.T) {
	checkIsolation(t, newCloud(t, loadDemo(t)), isolationOptions{})
}

func TestIsolationGenerated(t *testing.T) {
	n := genCount()
	for i := 0; i < n; i++ {
		i := i
		t.Run(fmt.Sprintf("topology-%03d", i), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewSource(int64(1000 + i)))
			bp := genBlueprint(t, r, i)
			checkIsolation(t, newCloud(t, bp), isolationOptions{maxPairs: 600, seed: int64(i)})
		})
	}
}

// ---- scenario tests on the demo blueprint (readable examples) ----

func demoVM(t *testing.T, bp *Blueprint, name string) tvm {
	t.Helper()
	for _, v := range vmsOf(bp) {
		if v.name == name {
			return v
		}
	}
	t.Fatalf("demo has no VM %s", name)
	return tvm{}
}

func TestDemoScenarios(t *testing.T) {
	bp := loadDemo(t)
	c, err := NewCloud(bp)
	if err != nil {
		t.Fatal(err)
	}
	k := &checker{t: t, c: c, bp: bp}
	bw1, bw2 := demoVM(t, bp, "blue-web-1"), demoVM(t, bp, "blue-web-2")
	rw1, rw2 := demoVM(t, bp, "red-web-1"), demoVM(t, bp, "red-web-2")

	// blue-web-1 (kvm1) -> blue-web-2 (kvm2) crosses the vxlan tunnel.
	j := k.expect("blue-web-1 -> blue-web-2", "kvm1", ICMPPacket(bw1.port, bw1.mac, bw2.mac, bw1.ip, bw2.ip), "kvm2:vnet0")
	var stages []string
	for _, h := range j.Hops {
		stages = append(stages, h.Host+"/"+h.Stage)
	}
	if got := strings.Join(stages, " "); got != "kvm1/sent kvm1/encapsulated kvm2/underlay kvm2/decapsulated" {
		t.Errorf("hops = %s", got)
	}
	if len(j.Hops) > 0 {
		out := j.Hops[0].Trace.Outputs
		if len(out) != 1 || out[0].Port != TunnelPortVXLAN || out[0].Packet.TunID != 5001 || out[0].Packet.TunDst != mustAddr("192.0.2.12") {
			t.Errorf("tunnel output = %+v", out)
		}
	}
	if len(j.Arrivals) == 1 && j.Arrivals[0].Packet.TunSrc != mustAddr("192.0.2.11") {
		t.Errorf("decapsulated tun_src = %s", j.Arrivals[0].Packet.TunSrc)
	}

	// red-web-1 has the same IP as blue-web-1 and red-web-2 the same as
	// blue-web-2: blue never reaches red, even with red's MAC.
	k.expect("blue-web-1 -> red-web-2 (same IP as blue-web-2)", "kvm1", ICMPPacket(bw1.port, bw1.mac, rw2.mac, bw1.ip, rw2.ip))
	k.expect("blue-web-1 -> red-web-1 (same host, same IP)", "kvm1", ICMPPacket(bw1.port, bw1.mac, rw1.mac, bw1.ip, rw1.ip))
	// ARP from red-web-1 for 10.10.1.12 is answered with red-web-2's MAC.
	tr := Evaluate(c.Flows["kvm1"], ARPRequest(rw1.port, rw1.mac, rw1.ip, rw2.ip))
	if len(tr.Outputs) != 1 || tr.Outputs[0].Packet.ARPSha != rw2.mac || tr.Outputs[0].Port != rw1.port {
		t.Errorf("ARP for red-web-2:\n%s", tr)
	}
	if !strings.Contains(tr.String(), "arp_responder") || !strings.Contains(tr.String(), "verdict: output to vnet2") {
		t.Errorf("trace text:\n%s", tr)
	}
	// Spoofing blue-web-1's identity from red-web-1's port: dropped.
	tr = Evaluate(c.Flows["kvm1"], ICMPPacket(rw1.port, bw1.mac, bw2.mac, bw1.ip, bw2.ip))
	if !tr.Dropped || tr.DropBy == nil || tr.DropBy.Cookie.Category() != CatSpoofDrop {
		t.Errorf("spoof:\n%s", tr)
	}
	// Unknown port.
	tr = Evaluate(c.Flows["kvm1"], ICMPPacket("vnet9", bw1.mac, bw2.mac, bw1.ip, bw2.ip))
	if !tr.Dropped || tr.DropBy == nil || tr.DropBy.Table != TClassify {
		t.Errorf("unknown port:\n%s", tr)
	}
}

// ---- evaluator unit tests (semantics independent of the compiler) ----

func TestEvaluatorSemantics(t *testing.T) {
	ck := MakeCookie(CatUnknown, 0, 0)
	a, b := MAC{2, 0, 0, 0, 0, 1}, MAC{2, 0, 0, 0, 0, 2}
	src, dst := mustAddr("10.0.0.1"), mustAddr("10.0.0.2")
	fs := []Flow{
		{Table: TClassify, Priority: 10, Cookie: ck, Match: match(inPort("p1")), Goto: TVMEgress},
		// tp_dst on a TCP match must never match UDP or ARP.
		{Table: TVMEgress, Priority: 300, Cookie: ck, Match: ipMatch(exact(FIPProto, ProtoTCP), exact(FTCPDst, 22)),
			Actions: []Action{Output{Port: "ssh"}}},
		// conjunction: (ip_dst=10.0.0.2) AND (udp_dst=53) at priority 200
		{Table: TVMEgress, Priority: 200, Cookie: ck, Match: ipMatch(exact(FIPv4Dst, IPValue(dst))),
			Actions: []Action{Conjunction{7, 1, 2}}},
		{Table: TVMEgress, Priority: 200, Cookie: ck, Match: ipMatch(exact(FIPProto, ProtoUDP), exact(FUDPDst, 53)),
			Actions: []Action{Conjunction{7, 2, 2}}},
		{Table: TVMEgress, Priority: 200, Cookie: ck, Match: match(exact(FConjID, 7)),
			Actions: []Action{Move{Src: FIPv4Dst, Dst: FReg2, NBits: 8, SrcOfs: 0, DstOfs: 4}, Output{Port: "dns"}, Output{Port: "p1"}, Output{Port: PortInPort}}},
		{Table: TVMEgress, Priority: 100, Cookie: ck, Match: ipMatch(),
			Actions: []Action{SetField{FTunID, 9}, SetField{FTunDst, IPValue(dst)}, Output{Port: "tun"}, SetField{FTunDst, IPValue(src)}, Output{Port: "tun"}}},
		{Table: TVMEgress, Priority: 0, Cookie: ck},
	}
	ev := NewFlowTable(fs)

	tr := ev.Evaluate(TCPPacket("p1", a, b, src, dst, 1, 22))
	if len(tr.Outputs) != 1 || tr.Outputs[0].Port != "ssh" {
		t.Errorf("tcp/22:\n%s", tr)
	}
	// UDP/22 and ARP must not match the tcp_dst flow.
	tr = ev.Evaluate(UDPPacket("p1", a, b, src, mustAddr("10.0.0.3"), 1, 22))
	if len(tr.Outputs) != 2 || tr.Outputs[0].Packet.TunDst != dst || tr.Outputs[1].Packet.TunDst != src || tr.Outputs[0].Packet.TunID != 9 {
		t.Errorf("udp/22 (tunnel outputs must capture tun_dst per output):\n%s", tr)
	}
	tr = ev.Evaluate(ARPRequest("p1", a, src, dst))
	if !tr.Dropped || tr.DropBy == nil || tr.DropBy.Priority != 0 {
		t.Errorf("arp:\n%s", tr)
	}
	// Both clauses: conj_id flow; output to the ingress port by name is
	// suppressed, IN_PORT is not; move with offsets.
	tr = ev.Evaluate(UDPPacket("p1", a, b, src, dst, 1, 53))
	if len(tr.Outputs) != 2 || tr.Outputs[0].Port != "dns" || tr.Outputs[1].Port != "p1" || !tr.Outputs[1].ViaInPort ||
		len(tr.Suppressed) != 1 || len(tr.Steps[1].Clauses) != 2 {
		t.Errorf("conjunction:\n%s", tr)
	}
	if got := tr.Outputs[0].Packet.Regs[2]; got != 2<<4 {
		t.Errorf("move into reg2[4..11] = %#x, want %#x", got, 2<<4)
	}
	// Only one clause: the conjunction does not match; lower flow wins.
	tr = ev.Evaluate(UDPPacket("p1", a, b, src, dst, 1, 54))
	if len(tr.Outputs) != 2 || tr.Outputs[0].Port != "tun" {
		t.Errorf("one clause:\n%s", tr)
	}
	// Table miss without a flow.
	tr = ev.Evaluate(TCPPacket("p2", a, b, src, dst, 1, 22))
	if !tr.Dropped || !tr.Missed || tr.MissTable != TClassify || tr.DropBy != nil {
		t.Errorf("miss:\n%s", tr)
	}
	// Registers start at zero whatever the caller passes.
	p := TCPPacket("p1", a, b, src, dst, 1, 22)
	p.Regs[0] = 5
	if tr = ev.Evaluate(p); tr.Outputs[0].Packet.Regs[0] != 0 {
		t.Errorf("regs not cleared")
	}
	// A higher-priority ordinary flow beats a conjunction.
	fs2 := append([]Flow(nil), fs...)
	fs2 = append(fs2, Flow{Table: TVMEgress, Priority: 250, Cookie: ck, Match: ipMatch(exact(FIPProto, ProtoUDP)), Actions: []Action{Output{Port: "hi"}}})
	tr = Evaluate(fs2, UDPPacket("p1", a, b, src, dst, 1, 53))
	if len(tr.Outputs) != 1 || tr.Outputs[0].Port != "hi" {
		t.Errorf("hard above soft:\n%s", tr)
	}
	// Same-priority overlap with different actions is reported.
	fs3 := append([]Flow(nil), fs...)
	fs3 = append(fs3, Flow{Table: TVMEgress, Priority: 300, Cookie: ck, Match: ipMatch(exact(FIPv4Src, IPValue(src))), Actions: []Action{Output{Port: "x"}}})
	tr = Evaluate(fs3, TCPPacket("p1", a, b, src, dst, 1, 22))
	if len(tr.Steps) < 2 || len(tr.Steps[1].Ambiguous) != 1 {
		t.Errorf("ambiguity not reported:\n%s", tr)
	}
}

// TestEvaluatorCatchesLeaks proves the isolation checks can fail: a pipeline
// with one rogue flow (uplink -> a VM port) is caught.
func TestEvaluatorCatchesLeaks(t *testing.T) {
	bp := loadDemo(t)
	c, err := NewCloud(bp)
	if err != nil {
		t.Fatal(err)
	}
	rogue := Flow{Table: TUnderlayIn, Priority: 500, Cookie: MakeCookie(CatUnknown, 0, 0),
		Match: ipMatch(exact(FIPv4Dst, IPValue(mustAddr("10.10.1.11")))), Actions: []Action{Output{Port: "vnet0"}}}
	c.Flows["kvm1"] = append(c.Flows["kvm1"], rogue)
	c.tables["kvm1"] = NewFlowTable(c.Flows["kvm1"])
	as := c.Send("kvm1", ICMPPacket("eth0", MAC{0x0e, 0, 0, 0, 0, 1}, MAC{0x52, 0x54, 0, 0xb1, 1, 0x0b}, mustAddr("192.0.2.250"), mustAddr("10.10.1.11")))
	if len(as) != 1 || as[0].VM != "blue-web-1" || as[0].Where(bp) != "vm" {
		t.Fatalf("leak not observed: %v", as)
	}
}

// countingReporter counts failures instead of failing the test.
type countingReporter struct{ n int }

func (r *countingReporter) Errorf(string, ...any) { r.n++ }

// mutate rewrites every host's flows with fn (nil result: flow removed).
func mutate(c *Cloud, fn func(f Flow) *Flow) {
	for h, fs := range c.Flows {
		var out []Flow
		for _, f := range fs {
			if g := fn(f.Clone()); g != nil {
				out = append(out, *g)
			}
		}
		c.Flows[h] = out
		c.tables[h] = NewFlowTable(out)
	}
}

func without(m Match, f Field) Match {
	var out Match
	for _, x := range m {
		if x.Field != f {
			out = append(out, x)
		}
	}
	return out
}

// TestIsolationChecksCatchMutations proves the isolation checks can fail:
// each mutation of the demo's compiled flows breaks one property, and the
// checks must notice.
func TestIsolationChecksCatchMutations(t *testing.T) {
	mutations := map[string]func(f Flow) *Flow{
		"no mgmt guard": func(f Flow) *Flow {
			if f.Cookie.Category() == CatMgmtGuard {
				return nil
			}
			return &f
		},
		"no arp-drop for own IP": func(f Flow) *Flow {
			if f.Cookie.Category() == CatARPDrop {
				return nil
			}
			return &f
		},
		"tunnel_in ignores tun_src": func(f Flow) *Flow {
			if f.Cookie.Category() == CatTunnelIn {
				f.Match = without(f.Match, FTunSrc)
			}
			return &f
		},
		"allowlist ignores nw_src": func(f Flow) *Flow {
			if f.Cookie.Category() == CatTunnelAllow {
				f.Match = without(f.Match, FIPv4Src)
			}
			return &f
		},
		"port security ignores nw_src": func(f Flow) *Flow {
			if f.Cookie.Category() == CatPortSecurity {
				f.Match = without(f.Match, FIPv4Src)
			}
			return &f
		},
		"flood ignores tier": func(f Flow) *Flow {
			if f.Cookie.Category() == CatFlood {
				f.Match = without(f.Match, RegTier)
			}
			return &f
		},
		"no split horizon": func(f Flow) *Flow {
			if f.Cookie.Category() == CatFlood || f.Cookie.Category() == CatVPCForward {
				f.Match = without(f.Match, RegOrigin)
			}
			return &f
		},
		"uplink to LOCAL ignores tunnels": func(f Flow) *Flow {
			if f.Cookie.Category() == CatTunnelDrop {
				return nil
			}
			return &f
		},
	}
	for name, fn := range mutations {
		c := newCloud(t, loadDemo(t))
		mutate(c, fn)
		var r countingReporter
		checkIsolation(&r, c, isolationOptions{})
		if r.n == 0 {
			t.Errorf("mutation %q was not detected by the isolation checks", name)
		}
	}
}
