package flows

import (
	"fmt"
	"hash/fnv"
	"net/netip"
)

// Object ids of classify flows that are not VMs.
const (
	objUplink uint32 = iota
	objLocal
	objTunnel
)

// conjTrustedPeers is the conjunction id of the trusted_peers tunnel match.
const conjTrustedPeers = 1

// VMObject is the cookie object id of a VM: a 32-bit FNV-1a hash of its name
// (the validator rejects blueprints where two VM names collide), so a flow's
// cookie maps back to exactly one VM.
func VMObject(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := h.Sum32()
	if v <= objTunnel {
		v += 3
	}
	return v
}

// VPCObject is a VPC's distributed-routing id (RegVPC): a 32-bit FNV-1a
// hash of "vpc:" + its name (the validator rejects distributed VPCs whose
// names collide).
func VPCObject(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte("vpc:"))
	h.Write([]byte(name))
	return h.Sum32()
}

// TierRef is a tier with its VPC.
type TierRef struct {
	VPC  *VPC
	Tier *Tier
}

// VMRef is a VM with its tier and VPC.
type VMRef struct {
	VPC  *VPC
	Tier *Tier
	VM   *VM
}

// hostView is what one host carries: its VMs, the tiers present, and for
// each such tier the VMs and hosts elsewhere. It is a window on an Index.
type hostView struct {
	bp    *Blueprint
	host  *Host
	ix    *Index
	local []VMRef
	tiers []TierRef // tiers with at least one local VM, blueprint order
	vpcs  []*VPC    // distributed-routing VPCs with a local tier, blueprint order
}

// tierVMs is every VM of tier vni (blueprint order).
func (v *hostView) tierVMs(vni uint32) []VMRef { return v.ix.tierVMs[vni] }

// tierPeers is the other hosts carrying tier vni, sorted by name.
func (v *hostView) tierPeers(vni uint32) []*Host {
	all := v.ix.tierHosts[vni]
	out := make([]*Host, 0, len(all))
	for _, h := range all {
		if h.Name != v.host.Name {
			out = append(out, h)
		}
	}
	return out
}

// CompileOptions change what Compile emits.
type CompileOptions struct {
	// DropLog sends packets dropped by the security rules (spoof-drop,
	// mgmt-guard, tunnel-allowlist-drop) and by the policy (ACL deny
	// rules, an ACL list's ingress no-match verdict, a security-group VM's
	// no-match drop, ct-invalid) to the controller too, through OpenFlow
	// meter DropLogMeter (rate-limited on the switch), so the controller
	// can log them. Allowed traffic is never metered.
	DropLog bool
	// NoNotes leaves Flow.Note empty: the reconcile path never reads notes,
	// and formatting them is a third of a compile. Audit and compile output
	// keep them.
	NoNotes bool
}

// DropLogMeter is the OpenFlow meter id of drop logging; DropLogMaxLen the
// bytes of each dropped packet sent to the controller.
const (
	DropLogMeter  = 1
	DropLogMaxLen = 128
)

// DropLogged reports whether drop logging applies to a category. Only the
// category's drop flows (no action, no goto) are logged: an ACL allow rule,
// an egress no-match verdict (allowed) and conjunction clause flows keep
// their actions and never touch the meter.
func DropLogged(c Category) bool {
	switch c {
	case CatSpoofDrop, CatMgmtGuard, CatTunnelDrop, CatACLRule, CatACLDefault, CatSGDefault, CatCtInvalid, CatIPv6Guard:
		return true
	}
	return false
}

// builder accumulates flows and contract violations.
type builder struct {
	rev   uint32
	opts  CompileOptions
	flows []Flow
	errs  []error
}

func (b *builder) add(f Flow) {
	f.Cookie = f.Cookie.WithRevision(b.rev)
	if b.opts.DropLog && DropLogged(f.Cookie.Category()) && len(f.Actions) == 0 && f.Goto == NoGoto {
		f.Meter = DropLogMeter
		f.Actions = []Action{Output{Port: PortController, MaxLen: DropLogMaxLen}}
	}
	if err := CheckContract(&f); err != nil {
		b.errs = append(b.errs, err)
		return
	}
	b.flows = append(b.flows, f)
}

// notef formats a flow's note, or returns "" with NoNotes.
func (b *builder) notef(format string, a ...any) string {
	if b.opts.NoNotes {
		return ""
	}
	return fmt.Sprintf(format, a...)
}

func inPort(p string) MatchField         { return MatchField{Field: FInPort, Port: p} }
func exact(f Field, v uint64) MatchField { return MatchField{Field: f, Value: v} }
func masked(f Field, v, m uint64) MatchField {
	return MatchField{Field: f, Value: v, Mask: m, Masked: true}
}

func match(fields ...MatchField) Match { return matchOf(fields) }

func ipMatch(fields ...MatchField) Match {
	return match(append([]MatchField{exact(FEthType, EthIPv4)}, fields...)...)
}

func ipv4(a netip.Addr) uint64 { return IPValue(a) }

// Compile returns the flows host hostName's cloudbr0 must carry. bp must be
// validated. Flows name ports; the controller maps names to ofports.
func Compile(bp *Blueprint, hostName string) ([]Flow, error) {
	return CompileWith(bp, hostName, CompileOptions{})
}

// CompileWith is Compile with options.
func CompileWith(bp *Blueprint, hostName string, opts CompileOptions) ([]Flow, error) {
	c, err := CompileHost(NewIndex(bp), hostName, opts)
	if err != nil {
		return nil, err
	}
	return c.Flows()
}

// CompileManagement returns only the flows that keep a host reachable
// (LOCAL<->uplink and the tunnel allowlist). Used for a host removed from the
// blueprint (DESIGN §5).
func CompileManagement(bp *Blueprint, h *Host) []Flow {
	return CompileManagementWith(bp, h, CompileOptions{})
}

// CompileManagementWith is CompileManagement with options.
func CompileManagementWith(bp *Blueprint, h *Host, opts CompileOptions) []Flow {
	v := &hostView{bp: bp, host: h}
	b := &builder{rev: bp.Revision, opts: opts}
	b.defaultDrops(false)
	b.classifyMgmt(v)
	b.underlayIn(v)
	b.hostOut(v)
	return b.flows
}

// defaultDrops: every table ends in a counted priority-0 drop (the route
// table only on hosts that route: elsewhere it is never reached).
func (b *builder) defaultDrops(routes bool, policy ...bool) {
	pol := len(policy) > 0 && policy[0]
	for _, t := range Pipeline {
		if t.ID == TRoute && !routes {
			continue
		}
		if IsPolicyTable(t.ID) && !pol {
			continue
		}
		if t.ID == TNDResponder || t.ID == TNDAnswer { // dual-stack hosts only: ipv6HostFlows
			continue
		}
		b.add(Flow{Table: t.ID, Priority: 0, Cookie: MakeCookie(CatDefaultDrop, uint32(t.ID), 0),
			Note: b.notef("%s miss: %s", t.Name, t.Miss)})
	}
}

func (b *builder) classifyMgmt(v *hostView) {
	for _, p := range v.host.UplinkPorts() { // a bond: every member
		b.add(Flow{Table: TClassify, Priority: 100, Cookie: MakeCookie(CatClassify, objUplink, 0),
			Match: match(inPort(p)), Goto: TUnderlayIn,
			Note: uplinkNote("from the uplink ", v.host, p)})
	}
	b.add(Flow{Table: TClassify, Priority: 100, Cookie: MakeCookie(CatClassify, objLocal, 0),
		Match: match(inPort(PortLocal)), Goto: THostOut,
		Note: "from the host stack (LOCAL)"})
}

// hostSegment: the flows every host carries whatever its VMs are: the
// default drops, classification of the uplink, LOCAL and the tunnel port,
// the underlay allowlist, host-out, and the guest guards that do not depend
// on a VM or tier.
func (b *builder) hostSegment(v *hostView) {
	hasPolicy := len(v.ix.pol.hostVPCs[v.host.Name]) > 0
	b.defaultDrops(len(v.vpcs) > 0, hasPolicy)
	if hasPolicy {
		b.policyHostSegment()
	}
	b.classifyMgmt(v)
	b.add(Flow{Table: TClassify, Priority: 100, Cookie: MakeCookie(CatClassify, objTunnel, 0),
		Match: match(inPort(TunnelPort(v.bp.Encapsulation))), Goto: TTunnelIn,
		Note: "decapsulated from the tunnel port"})
	b.underlayIn(v)
	b.hostOut(v)
	b.vmEgressGuards()
	b.mgmtGuard(v)
	b.add(Flow{Table: TARPResponder, Priority: 100, Cookie: MakeCookie(CatARPResponder, 0, 0),
		Match: match(exact(FEthType, EthARP), exact(FARPOp, 2)), Goto: TL2Forward,
		Note: "ARP replies: forwarded by destination MAC within the tier"})
	b.trustedPeers(v)
	if v.dualStack() {
		b.ipv6HostFlows()
	}
	if v.ix.hasVLAN {
		b.add(Flow{Table: TUnderlayIn, Priority: 240, Cookie: MakeCookie(CatVLANDrop, 0, 0),
			Match: match(masked(FVLANVID, VIDPresent, VIDPresent)),
			Note:  "802.1Q-tagged frames of a VLAN this host carries no tier of: dropped and counted"})
	}
}

// vmSegment: the flows of one local VM: classify its port, port security,
// and the ARP self-query drop.
func (b *builder) vmSegment(r VMRef) {
	obj := VMObject(r.VM.Name)
	port, mac, ip := r.VM.Port, MACValue(r.VM.HW), ipv4(r.VM.Addr)
	who := b.notef("VM %s (vpc %s, tier %s)", r.VM.Name, r.VPC.Name, r.Tier.Name)
	b.add(Flow{Table: TClassify, Priority: 100, Cookie: MakeCookie(CatClassify, obj, 0),
		Match:   match(inPort(port)),
		Actions: []Action{SetField{RegTier, uint64(r.Tier.Key)}, SetField{RegOrigin, OriginVM}},
		Goto:    TVMEgress,
		Note:    b.notef("VM %s (vpc %s, tier %s) port %s", r.VM.Name, r.VPC.Name, r.Tier.Name, port)})
	if r.VM.IsRouter() {
		// The VPC's router forwards for every tier of its VPC: any source
		// inside the VPC's tier CIDRs, from its own MAC only.
		for ti := range r.VPC.Tiers {
			ot := &r.VPC.Tiers[ti]
			val, m := PrefixMask(ot.Prefix)
			b.add(Flow{Table: TVMEgress, Priority: 200, Cookie: MakeCookie(CatPortSecurity, obj, 0),
				Match: ipMatch(inPort(port), exact(FEthSrc, mac), masked(FIPv4Src, val, m)), Goto: TMgmtGuard,
				Note: b.notef("router %s sends IPv4 as %s from tier %s/%s (%s)", who, r.VM.HW, r.VPC.Name, ot.Name, ot.Prefix)})
		}
		b.add(Flow{Table: TVMEgress, Priority: 310, Cookie: MakeCookie(CatPortSecurity, obj, 0),
			Match: ipMatch(inPort(port), exact(FEthSrc, mac), exact(FIPProto, ProtoUDP), exact(FUDPSrc, 67), exact(FUDPDst, 68)),
			Goto:  TL2Forward,
			Note:  b.notef("router %s DHCP server replies (within its tier)", who)})
	} else if IsPolicyVM(r.Tier, r.VM) {
		b.add(Flow{Table: TVMEgress, Priority: 200, Cookie: MakeCookie(CatPortSecurity, obj, 0),
			Match: ipMatch(inPort(port), exact(FEthSrc, mac), exact(FIPv4Src, ip)), Goto: TPolOut,
			Note: b.notef("%s sends IPv4 as %s %s: judged by its policy", who, r.VM.HW, r.VM.Addr)})
		b.policyVMFlows(r)
	} else {
		b.add(Flow{Table: TVMEgress, Priority: 200, Cookie: MakeCookie(CatPortSecurity, obj, 0),
			Match: ipMatch(inPort(port), exact(FEthSrc, mac), exact(FIPv4Src, ip)), Goto: TMgmtGuard,
			Note: b.notef("%s sends IPv4 as %s %s", who, r.VM.HW, r.VM.Addr)})
	}
	b.add(Flow{Table: TVMEgress, Priority: 200, Cookie: MakeCookie(CatPortSecurity, obj, 0),
		Match: match(inPort(port), exact(FEthSrc, mac), exact(FEthType, EthARP), exact(FARPSpa, ip), exact(FARPSha, mac)),
		Goto:  TARPResponder,
		Note:  b.notef("%s sends ARP as %s %s", who, r.VM.HW, r.VM.Addr)})
	b.add(Flow{Table: TVMEgress, Priority: 200, Cookie: MakeCookie(CatPortSecurity, obj, 0),
		Match: ipMatch(inPort(port), exact(FEthSrc, mac), exact(FIPProto, ProtoUDP), exact(FIPv4Src, 0),
			exact(FIPv4Dst, 0xffffffff), exact(FUDPSrc, 68), exact(FUDPDst, 67)),
		Goto: TL2Forward,
		Note: b.notef("%s DHCP discover/request (broadcast within its tier)", who)})
	b.add(Flow{Table: TVMEgress, Priority: 100, Cookie: MakeCookie(CatSpoofDrop, obj, 0),
		Match: match(inPort(port)),
		Note:  b.notef("%s: anything else (spoofed MAC/IP, other ethertypes) dropped and counted", who)})
	b.add(Flow{Table: TARPResponder, Priority: 300, Cookie: MakeCookie(CatARPDrop, obj, 0),
		Match: match(inPort(port), exact(FEthType, EthARP), exact(FARPOp, 1), exact(FARPTpa, ip)),
		Note:  b.notef("VM %s asking for its own IP %s: not answered (duplicate address detection)", r.VM.Name, r.VM.Addr)})
	if IsDualStack(r) {
		b.ipv6VMFlows(r)
	}
}

// tierSegment: the flows of one tier present on the host: the management
// pass for its CIDR, the ARP responder for its VMs, the tunnel keys accepted
// from the hosts carrying it, and L2 forwarding and flooding.
func (b *builder) tierSegment(v *hostView, t TierRef) {
	val, m := PrefixMask(t.Tier.Prefix)
	b.add(Flow{Table: TMgmtGuard, Priority: 200, Cookie: MakeCookie(CatMgmtPass, t.Tier.Key, 0),
		Match: ipMatch(exact(RegTier, uint64(t.Tier.Key)), masked(FIPv4Dst, val, m)), Goto: TL2Forward,
		Note: b.notef("tier %s/%s traffic inside %s: on to L2 (service ports between VMs allowed)", t.VPC.Name, t.Tier.Name, t.Tier.Prefix)})
	if v.ix.pol.tierPolicy[t.Tier.Key] && v.hasLocalPolicyVM(t) {
		b.policyTierFlows(t)
	}
	sh := v.ix.tierFlows(t, b.opts)
	b.errs = append(b.errs, sh.errs...)
	b.flows = append(b.flows, sh.arp...)
	if t.Tier.IsVLAN() {
		b.vlanTier(v, t)
		return
	}
	b.ndAnswers(v, t)
	peers := v.tierPeers(t.Tier.Key)
	b.tunnelIn(v, t, sh)
	b.l2Forward(v, t, peers, sh)
}

// vmEgressGuards: the port-security drops that apply to every guest.
func (b *builder) vmEgressGuards() {
	b.add(Flow{Table: TVMEgress, Priority: 300, Cookie: MakeCookie(CatDHCPGuard, 0, 0),
		Match: ipMatch(exact(FIPProto, ProtoUDP), exact(FUDPSrc, 67), exact(FUDPDst, 68)),
		Note:  "DHCP server replies from guests: dropped (router NICs have their own allow above)"})
	b.add(Flow{Table: TVMEgress, Priority: 250, Cookie: MakeCookie(CatIPv6Drop, 0, 0),
		Match: match(exact(FEthType, EthIPv6)),
		Note:  "IPv6 from guests: dropped and counted until IPv6 is specified"})
}

// peers returns every trusted tunnel source: the other hosts, then trusted_peers.
type peer struct {
	name   string
	addr   netip.Addr
	mac    MAC
	hasMAC bool
}

func (v *hostView) peers() []peer {
	var ps []peer
	for i := range v.bp.Hosts {
		o := &v.bp.Hosts[i]
		if o.Name == v.host.Name {
			continue
		}
		ps = append(ps, peer{o.Name, o.Addr, o.MAC, o.HasMAC})
	}
	for _, a := range v.bp.PeerAddrs {
		ps = append(ps, peer{"trusted peer " + a.String(), a, MAC{}, false})
	}
	return ps
}

// underlayIn: the host stack gets uplink traffic; tunnel packets only from
// trusted peers; peers' tunnel IPs guarded against ARP spoofing.
func (b *builder) underlayIn(v *hostView) {
	tunnelMatch := func(extra ...MatchField) Match {
		if v.bp.Encapsulation == EncapGRE {
			return ipMatch(append(extra, exact(FIPProto, ProtoGRE))...)
		}
		return ipMatch(append(extra, exact(FIPProto, ProtoUDP), exact(FUDPDst, VXLANPort))...)
	}
	for _, p := range v.peers() {
		fs := []MatchField{exact(FIPv4Src, ipv4(p.addr)), exact(FIPv4Dst, ipv4(v.host.Addr))}
		note := b.notef("%s tunnel from %s (%s) to this host: to LOCAL for decapsulation", v.bp.Encapsulation, p.name, p.addr)
		if p.hasMAC {
			fs = append(fs, exact(FEthSrc, MACValue(p.mac)))
			if note != "" {
				note += ", source MAC " + p.mac.String()
			}
			b.add(Flow{Table: TUnderlayIn, Priority: 180, Cookie: MakeCookie(CatPeerARPGuard, uint32(ipv4(p.addr)), 0),
				Match:   match(exact(FEthType, EthARP), exact(FARPSpa, ipv4(p.addr)), exact(FEthSrc, MACValue(p.mac))),
				Actions: []Action{Output{Port: PortLocal}},
				Note:    b.notef("ARP from %s's tunnel IP %s with its MAC %s", p.name, p.addr, p.mac)})
			b.add(Flow{Table: TUnderlayIn, Priority: 170, Cookie: MakeCookie(CatPeerARPGuard, uint32(ipv4(p.addr)), 0),
				Match: match(exact(FEthType, EthARP), exact(FARPSpa, ipv4(p.addr))),
				Note:  b.notef("ARP claiming %s's tunnel IP %s from another MAC: dropped (anti-spoofing)", p.name, p.addr)})
		}
		b.add(Flow{Table: TUnderlayIn, Priority: 200, Cookie: MakeCookie(CatTunnelAllow, uint32(ipv4(p.addr)), 0),
			Match: tunnelMatch(fs...), Actions: []Action{Output{Port: PortLocal}}, Note: note})
	}
	b.add(Flow{Table: TUnderlayIn, Priority: 190, Cookie: MakeCookie(CatTunnelDrop, ProtoUDP, 0),
		Match: ipMatch(exact(FIPProto, ProtoUDP), exact(FUDPDst, VXLANPort)),
		Note:  "VXLAN from an untrusted source: dropped and counted"})
	b.add(Flow{Table: TUnderlayIn, Priority: 190, Cookie: MakeCookie(CatTunnelDrop, ProtoGRE, 0),
		Match: ipMatch(exact(FIPProto, ProtoGRE)),
		Note:  "GRE from an untrusted source: dropped and counted"})
	b.add(Flow{Table: TUnderlayIn, Priority: 100, Cookie: MakeCookie(CatUnderlayMgmt, 0, 0),
		Actions: []Action{Output{Port: PortLocal}},
		Note:    "other uplink traffic (management, storage, ARP) to the host stack; never to a VM port"})
}

func (b *builder) hostOut(v *hostView) {
	b.add(Flow{Table: THostOut, Priority: 100, Cookie: MakeCookie(CatHostOut, 0, 0),
		Actions: v.uplinkOut(),
		Note:    uplinkNote("host stack and encapsulated tunnel traffic out of the uplink ", v.host, "")})
}

// uplinkNote names the uplink in a note: the NIC, or the bond (and member).
func uplinkNote(prefix string, h *Host, member string) string {
	if !h.IsBond() {
		return prefix + h.Uplink
	}
	if member != "" {
		return prefix + "bond " + h.Uplink + " member " + member
	}
	return prefix + "bond " + h.Uplink + " (a live member, mode " + h.UplinkSpec.Mode + ")"
}

// mgmtGuard: management separation (the per-tier pass is in tierSegment).
func (b *builder) mgmtGuard(v *hostView) {
	for _, p := range v.bp.MgmtPrefixes {
		val, m := PrefixMask(p)
		b.add(Flow{Table: TMgmtGuard, Priority: 300, Cookie: MakeCookie(CatMgmtGuard, uint32(val), 0),
			Match: ipMatch(masked(FIPv4Dst, val, m)),
			Note:  "guest traffic to management network " + p.String() + ": dropped"})
	}
	for i := range v.bp.Hosts {
		o := &v.bp.Hosts[i]
		covered := false
		for _, p := range v.bp.MgmtPrefixes {
			if p.Contains(o.Addr) {
				covered = true
			}
		}
		if covered {
			continue
		}
		b.add(Flow{Table: TMgmtGuard, Priority: 300, Cookie: MakeCookie(CatMgmtGuard, uint32(ipv4(o.Addr)), 0),
			Match: ipMatch(exact(FIPv4Dst, ipv4(o.Addr))),
			Note:  b.notef("guest traffic to host %s's tunnel IP %s: dropped", o.Name, o.Addr)})
	}
	for _, port := range v.bp.Management.HostPorts {
		b.add(Flow{Table: TMgmtGuard, Priority: 100, Cookie: MakeCookie(CatMgmtGuard, uint32(port), 0),
			Match: ipMatch(exact(FIPProto, ProtoTCP), exact(FTCPDst, uint64(port))),
			Note:  b.notef("guest traffic to host service port tcp/%d outside its tier: dropped", port)})
		b.add(Flow{Table: TMgmtGuard, Priority: 100, Cookie: MakeCookie(CatMgmtGuard, uint32(port), 0),
			Match: ipMatch(exact(FIPProto, ProtoUDP), exact(FUDPDst, uint64(port))),
			Note:  b.notef("guest traffic to host service port udp/%d outside its tier: dropped", port)})
	}
	b.add(Flow{Table: TMgmtGuard, Priority: 1, Cookie: MakeCookie(CatMgmtPass, 0, 0),
		Match: ipMatch(), Goto: TL2Forward,
		Note: "other guest IPv4: on to L2 (delivered only to a known MAC of the tier)"})
}

// arpReply turns an ARP request into the reply "ip is-at mac", sent back
// out of the asker's port.
func arpReply(mac, ip uint64) []Action {
	return []Action{
		Move{Src: FEthSrc, Dst: FEthDst, NBits: 48},
		SetField{FEthSrc, mac},
		SetField{FARPOp, 2},
		Move{Src: FARPSha, Dst: FARPTha, NBits: 48},
		SetField{FARPSha, mac},
		Move{Src: FARPSpa, Dst: FARPTpa, NBits: 32},
		SetField{FARPSpa, ip},
		Output{Port: PortInPort},
	}
}

// arpAnswer answers ARP for VM r's IP in tier t, in the switch.
func (b *builder) arpAnswer(t TierRef, r VMRef) {
	mac, ip := MACValue(r.VM.HW), ipv4(r.VM.Addr)
	b.add(Flow{Table: TARPResponder, Priority: 200, Cookie: MakeCookie(CatARPResponder, VMObject(r.VM.Name), 0),
		Match:   match(exact(FEthType, EthARP), exact(FARPOp, 1), exact(RegTier, uint64(t.Tier.Key)), exact(FARPTpa, ip)),
		Actions: arpReply(mac, ip),
		Note:    b.notef("ARP who-has %s in tier %s/%s: answered %s (VM %s)", r.VM.Addr, t.VPC.Name, t.Tier.Name, r.VM.HW, r.VM.Name)})
}

// tunnelKeyFrom accepts tier t's tunnel key from host p.
func (b *builder) tunnelKeyFrom(t TierRef, p *Host) {
	b.add(Flow{Table: TTunnelIn, Priority: 200, Cookie: MakeCookie(CatTunnelIn, t.Tier.VNI, 0),
		Match:   match(exact(FTunID, uint64(t.Tier.VNI)), exact(FTunSrc, ipv4(p.Addr))),
		Actions: []Action{SetField{RegTier, uint64(t.Tier.VNI)}, SetField{RegOrigin, OriginTunnel}},
		Goto:    TL2Forward,
		Note:    b.notef("key %d (tier %s/%s) from host %s (%s)", t.Tier.VNI, t.VPC.Name, t.Tier.Name, p.Name, p.Addr)})
}

// l2Local delivers frames for local VM r to its port and returns that
// output (for the tier's flood flows).
func (b *builder) l2Local(r VMRef) Action {
	out := Output{Port: r.VM.Port}
	b.add(Flow{Table: TL2Forward, Priority: 200, Cookie: MakeCookie(CatVPCForward, VMObject(r.VM.Name), 0),
		Match: match(exact(RegTier, uint64(r.Tier.Key)), exact(FEthDst, MACValue(r.VM.HW))), Actions: []Action{out},
		Note: b.notef("to VM %s (%s) on local port %s", r.VM.Name, r.VM.HW, r.VM.Port)})
	return out
}

// l2Remote sends frames for VM r (on host ph) through the tunnel.
func (b *builder) l2Remote(t TierRef, r VMRef, ph *Host, tunnel string) {
	vni := uint64(t.Tier.VNI)
	b.add(Flow{Table: TL2Forward, Priority: 200, Cookie: MakeCookie(CatVPCForward, VMObject(r.VM.Name), 0),
		Match:   match(exact(RegTier, vni), exact(RegOrigin, OriginVM), exact(FEthDst, MACValue(r.VM.HW))),
		Actions: []Action{SetField{FTunID, vni}, SetField{FTunDst, ipv4(ph.Addr)}, Output{Port: tunnel}},
		Note:    b.notef("to VM %s (%s) on host %s: tunnel key %d to %s", r.VM.Name, r.VM.HW, ph.Name, vni, ph.Addr)})
}

// tunnelIn accepts tunnel key K only from hosts that carry tier K (and,
// through the trusted-peer conjunction, from trusted_peers).
func (b *builder) tunnelIn(v *hostView, t TierRef, sh *tierShared) {
	for _, p := range v.ix.acceptHosts[t.Tier.Key] {
		if p.Name == v.host.Name {
			continue
		}
		if f, ok := sh.tunnelIn[p.Name]; ok {
			b.flows = append(b.flows, f)
		}
	}
	if len(v.bp.PeerAddrs) == 0 {
		return
	}
	// trusted_peers x tiers would be a cross product: a conjunction keeps it additive.
	b.add(Flow{Table: TTunnelIn, Priority: 190, Cookie: MakeCookie(CatTrustedPeerIn, t.Tier.VNI, 0),
		Match:   match(exact(FTunID, uint64(t.Tier.VNI))),
		Actions: []Action{Conjunction{conjTrustedPeers, 1, 2}},
		Note:    b.notef("key %d (tier %s/%s) from a trusted peer (clause 1/2)", t.Tier.VNI, t.VPC.Name, t.Tier.Name)})
}

// trustedPeers: clause 2 of the trusted-peer conjunction (one flow per
// trusted peer, shared by every tier) and the conjunction's action.
func (b *builder) trustedPeers(v *hostView) {
	if len(v.bp.PeerAddrs) == 0 || len(v.tiers) == 0 {
		return
	}
	for _, a := range v.bp.PeerAddrs {
		b.add(Flow{Table: TTunnelIn, Priority: 190, Cookie: MakeCookie(CatTrustedPeerIn, uint32(ipv4(a)), 0),
			Match:   match(exact(FTunSrc, ipv4(a))),
			Actions: []Action{Conjunction{conjTrustedPeers, 2, 2}},
			Note:    b.notef("trusted peer %s (clause 2/2)", a)})
	}
	b.add(Flow{Table: TTunnelIn, Priority: 190, Cookie: MakeCookie(CatTrustedPeerIn, 0, 0),
		Match:   match(exact(FConjID, conjTrustedPeers)),
		Actions: []Action{Move{Src: FTunID, Dst: RegTier, NBits: 32}, SetField{RegOrigin, OriginTunnel}},
		Goto:    TL2Forward,
		Note:    "a tier key present here from a trusted peer: tier = tunnel key"})
}

// l2Forward: known MACs of tier t to their local port or through the
// tunnel to their host; broadcast to the tier's local ports and peers.
func (b *builder) l2Forward(v *hostView, t TierRef, peers []*Host, sh *tierShared) {
	tunnel := TunnelPort(v.bp.Encapsulation)
	vni := uint64(t.Tier.VNI)
	var localOut []Action
	for _, r := range v.tierVMs(t.Tier.Key) {
		if r.VM.Host == v.host.Name {
			localOut = append(localOut, b.l2Local(r))
			continue
		}
		if f, ok := sh.remoteL2[r.VM.Name]; ok {
			b.flows = append(b.flows, f)
		}
	}
	bcast := masked(FEthDst, 0x010000000000, 0x010000000000)
	fromVM := append([]Action(nil), localOut...)
	for _, p := range peers {
		fromVM = append(fromVM, SetField{FTunID, vni}, SetField{FTunDst, ipv4(p.Addr)}, Output{Port: tunnel})
	}
	b.add(Flow{Table: TL2Forward, Priority: 100, Cookie: MakeCookie(CatFlood, t.Tier.VNI, 0),
		Match: match(exact(RegTier, vni), exact(RegOrigin, OriginVM), bcast), Actions: fromVM,
		Note: b.notef("broadcast/multicast from a VM of tier %s/%s: to the tier's local ports and hosts carrying it", t.VPC.Name, t.Tier.Name)})
	b.add(Flow{Table: TL2Forward, Priority: 100, Cookie: MakeCookie(CatFlood, t.Tier.VNI, 0),
		Match: match(exact(RegTier, vni), exact(RegOrigin, OriginTunnel), bcast), Actions: localOut,
		Note: b.notef("broadcast/multicast from the tunnel for tier %s/%s: local ports only (split horizon)", t.VPC.Name, t.Tier.Name)})
	if noSG, ok := withoutSGPorts(v, t, fromVM); ok {
		b.floodSplit(t, match(exact(RegTier, vni), exact(RegOrigin, OriginVM), bcast), fromVM, noSG, "from a VM")
		noSGLocal, _ := withoutSGPorts(v, t, localOut)
		b.floodSplit(t, match(exact(RegTier, vni), exact(RegOrigin, OriginTunnel), bcast), localOut, noSGLocal, "from the tunnel")
	}
}

// uplinkOut is the actions that send a packet out of the host's uplink.
func (v *hostView) uplinkOut() []Action { return []Action{v.host.UplinkAction()} }

// vlanOut tags a packet with tier t's VLAN and sends it out of the uplink.
func (v *hostView) vlanOut(t *Tier) []Action {
	return append([]Action{PushVLAN{EthVLAN}, SetField{FVLANVID, VIDPresent | uint64(t.VLAN)}}, v.uplinkOut()...)
}

// deliverTo is the actions that carry a packet already addressed to VM r
// from this host to it: its local port, the tunnel to its host (overlay) or
// the tagged uplink (VLAN tier).
func (v *hostView) deliverTo(r VMRef) []Action {
	if r.VM.Host == v.host.Name {
		return []Action{Output{Port: r.VM.Port}}
	}
	if r.Tier.IsVLAN() {
		return v.vlanOut(r.Tier)
	}
	ph := v.ix.hosts[r.VM.Host]
	return []Action{SetField{FTunID, uint64(r.Tier.VNI)}, SetField{FTunDst, ipv4(ph.Addr)}, Output{Port: TunnelPort(v.bp.Encapsulation)}}
}

// vlanTier: a VLAN tier's frames on the uplink (tagged) instead of tunnels:
// tagged frames of its VLAN from the uplink are untagged and delivered to
// its local ports only (split horizon); frames from its VMs for MACs not on
// this host, and broadcasts, leave tagged by the uplink; ARP requests for
// addresses vpcflow does not know are flooded on the VLAN (its gateway or
// other nodes live there).
func (b *builder) vlanTier(v *hostView, t TierRef) {
	key, vid := uint64(t.Tier.Key), uint64(t.Tier.VLAN)
	who := b.notef("VLAN tier %s/%s (vlan %d)", t.VPC.Name, t.Tier.Name, vid)
	b.add(Flow{Table: TUnderlayIn, Priority: 250, Cookie: MakeCookie(CatVLANIn, t.Tier.Key, 0),
		Match:   match(exact(FVLANVID, VIDPresent|vid)),
		Actions: []Action{PopVLAN{}, SetField{RegTier, key}, SetField{RegOrigin, OriginUplink}},
		Goto:    TL2Forward,
		Note:    b.notef("%s: tagged frames from the uplink untagged, to the tier's local ports", who)})
	var localOut []Action
	for _, r := range v.tierVMs(t.Tier.Key) {
		if r.VM.Host == v.host.Name {
			localOut = append(localOut, b.l2Local(r))
		}
	}
	b.add(Flow{Table: TARPResponder, Priority: 100, Cookie: MakeCookie(CatVLANOut, t.Tier.Key, 0),
		Match: match(exact(FEthType, EthARP), exact(FARPOp, 1), exact(RegTier, key)), Goto: TL2Forward,
		Note: b.notef("%s: other ARP requests flooded on the VLAN", who)})
	bcast := masked(FEthDst, 0x010000000000, 0x010000000000)
	b.add(Flow{Table: TL2Forward, Priority: 100, Cookie: MakeCookie(CatFlood, t.Tier.Key, 0),
		Match: match(exact(RegTier, key), exact(RegOrigin, OriginVM), bcast), Actions: append(append([]Action(nil), localOut...), v.vlanOut(t.Tier)...),
		Note: b.notef("broadcast/multicast from a VM of %s: to the tier's local ports and tagged to the uplink", who)})
	if noSG, ok := withoutSGPorts(v, t, localOut); ok {
		all := append(append([]Action(nil), localOut...), v.vlanOut(t.Tier)...)
		b.floodSplit(t, match(exact(RegTier, key), exact(RegOrigin, OriginVM), bcast), all, append(append([]Action(nil), noSG...), v.vlanOut(t.Tier)...), "from a VM")
		b.floodSplit(t, match(exact(RegTier, key), exact(RegOrigin, OriginUplink), bcast), localOut, noSG, "from the VLAN")
	}
	b.add(Flow{Table: TL2Forward, Priority: 100, Cookie: MakeCookie(CatFlood, t.Tier.Key, 0),
		Match: match(exact(RegTier, key), exact(RegOrigin, OriginUplink), bcast), Actions: localOut,
		Note: b.notef("broadcast/multicast from the VLAN for %s: local ports only (split horizon)", who)})
	b.add(Flow{Table: TL2Forward, Priority: 50, Cookie: MakeCookie(CatVLANOut, t.Tier.Key, 0),
		Match: match(exact(RegTier, key), exact(RegOrigin, OriginVM)), Actions: v.vlanOut(t.Tier),
		Note: b.notef("unicast from a VM of %s to a MAC not on this host: tagged to the uplink", who)})
}

// vpcSegment: distributed routing of VPC p on this host. A guest sending
// to its tier's gateway MAC for an address in another tier of its VPC is
// routed here: gateway source MAC, the VM's MAC, TTL decrement, then
// delivered to the VM's port or host. The cost is additive: one ARP answer
// per local tier with a virtual gateway, (tiers of the VPC - 1) route
// entries per local tier, one route per VM of the VPC.
func (b *builder) vpcSegment(v *hostView, p *VPC) {
	id := uint64(p.ID)
	for _, t := range v.tiers {
		if t.VPC != p {
			continue
		}
		src := t.Tier
		if src.VirtualGateway {
			gw, ip := MACValue(src.GatewayHW), ipv4(src.GatewayAddr)
			b.add(Flow{Table: TARPResponder, Priority: 200, Cookie: MakeCookie(CatGatewayARP, src.Key, 0),
				Match:   match(exact(FEthType, EthARP), exact(FARPOp, 1), exact(RegTier, uint64(src.Key)), exact(FARPTpa, ip)),
				Actions: arpReply(gw, ip),
				Note:    b.notef("ARP who-has %s (gateway of tier %s/%s): answered %s by the switch (distributed routing)", src.GatewayAddr, p.Name, src.Name, src.GatewayHW)})
		}
		for oi := range p.Tiers {
			dst := &p.Tiers[oi]
			if dst == src || !dst.Prefix.IsValid() {
				continue
			}
			val, m := PrefixMask(dst.Prefix)
			b.add(Flow{Table: TMgmtGuard, Priority: 250, Cookie: MakeCookie(CatRouteEntry, src.Key, 0),
				Match:   ipMatch(exact(RegTier, uint64(src.Key)), exact(FEthDst, MACValue(src.GatewayHW)), masked(FIPv4Dst, val, m)),
				Actions: []Action{SetField{RegVPC, id}},
				Goto:    TRoute,
				Note:    b.notef("tier %s/%s to its gateway for tier %s (%s): routed in the switch", p.Name, src.Name, dst.Name, dst.Prefix)})
		}
	}
	for ti := range p.Tiers {
		t := &p.Tiers[ti]
		for mi := range t.VMs {
			r := VMRef{p, t, &t.VMs[mi]}
			src := t.GatewayHW
			if t.IsVLAN() && r.VM.Host != v.host.Name {
				// Onto a physical VLAN: this host's own MAC, so switches there
				// never see the gateway MAC move between hosts.
				src = HostRouteMAC(v.host)
			}
			acts := []Action{SetField{FEthSrc, MACValue(src)}, SetField{FEthDst, MACValue(r.VM.HW)}, DecTTL{}}
			f := Flow{Table: TRoute, Priority: 200, Cookie: MakeCookie(CatRoute, VMObject(r.VM.Name), 0),
				Match:   ipMatch(exact(RegVPC, id), exact(FIPv4Dst, ipv4(r.VM.Addr))),
				Actions: append(acts, v.deliverTo(r)...),
				Note:    b.notef("routed to VM %s (%s, tier %s/%s) on host %s", r.VM.Name, r.VM.Addr, p.Name, t.Name, r.VM.Host)}
			if r.VM.Host == v.host.Name && IsPolicyVM(t, r.VM) {
				// Judged before its port, in its own tier's zone.
				f.Actions, f.Goto = append(acts, SetField{RegTier, uint64(t.Key)}), TPolIn
				f.Note = b.notef("routed to policy VM %s (%s, tier %s/%s) on this host: judged before its port", r.VM.Name, r.VM.Addr, p.Name, t.Name)
			}
			b.add(f)
		}
	}
}
