package flows

// IPv6 on dual-stack tiers (docs/ipv6.md, first slice): port security for a
// guest with ip6 (its address, its EUI-64 link-local address, DAD and MLD
// from the unspecified address, neighbour discovery with its own MAC only),
// RA guard, DHCPv6 server guard, the ND responder (nd_responder, table 52)
// and same-tier delivery (l2_forward already forwards by MAC within the
// tier). Nothing here is emitted for a host without a dual-stack VM, so an
// IPv4-only blueprint compiles to exactly the flows it did before.

import "net/netip"

// unspecified6 is ::, the source of DAD probes and early MLD reports.
var unspecified6 = netip.IPv6Unspecified()

// dualStack reports whether the host has a local dual-stack VM.
func (v *hostView) dualStack() bool {
	for _, r := range v.local {
		if IsDualStack(r) {
			return true
		}
	}
	return false
}

func ip6Match(fields ...MatchField) Match {
	return match(append([]MatchField{exact(FEthType, EthIPv6)}, fields...)...)
}

func icmp6Match(typ uint8, fields ...MatchField) Match {
	return ip6Match(append([]MatchField{exact(FIPProto, ProtoICMPv6), exact(FICMPv6Type, uint64(typ))}, fields...)...)
}

// ipv6HostFlows: the IPv6 flows of a host with a dual-stack VM that do not
// depend on a VM: the guards every guest is held to, the IPv6 pass of
// mgmt_guard and the nd_responder table's pass flows and miss.
func (b *builder) ipv6HostFlows() {
	guard := MakeCookie(CatIPv6Guard, 0, 0)
	b.add(Flow{Table: TVMEgress, Priority: 300, Cookie: guard, Match: icmp6Match(ICMPv6RA),
		Note: "router advertisements from guests: dropped and counted (RA guard)"})
	b.add(Flow{Table: TVMEgress, Priority: 300, Cookie: guard, Match: icmp6Match(ICMPv6Redirect),
		Note: "ICMPv6 redirects from guests: dropped and counted"})
	b.add(Flow{Table: TVMEgress, Priority: 300, Cookie: guard,
		Match: ip6Match(exact(FIPProto, ProtoUDP), exact(FUDPSrc, DHCPv6ServerPort)),
		Note:  "DHCPv6 server messages from guests: dropped and counted"})
	b.add(Flow{Table: TVMEgress, Priority: 270, Cookie: guard, Match: icmp6Match(ICMPv6NS),
		Note: "neighbour solicitations a guest may not send (another source, another MAC in the option): dropped and counted"})
	b.add(Flow{Table: TVMEgress, Priority: 270, Cookie: guard, Match: icmp6Match(ICMPv6NA),
		Note: "neighbour advertisements a guest may not send (another target or source, another MAC in the option): dropped and counted"})
	b.add(Flow{Table: TMgmtGuard, Priority: 1, Cookie: MakeCookie(CatMgmtPass, 0, 0),
		Match: ip6Match(), Goto: TL2Forward,
		Note: "guest IPv6 (dual-stack VMs only): on to L2, delivered only to a known MAC of the tier or flooded within it"})
	nd := MakeCookie(CatNDResponder, 0, 0)
	b.add(Flow{Table: TNDResponder, Priority: 310, Cookie: nd,
		Match: icmp6Match(ICMPv6NS, exact(FNDSll, 0)), Goto: TL2Forward,
		Note: "neighbour solicitations without a source link-layer address (DAD from ::, or a probe): never answered, forwarded within the tier"})
	b.add(Flow{Table: TNDResponder, Priority: 100, Cookie: nd,
		Match: ip6Match(exact(FIPProto, ProtoICMPv6)), Goto: TL2Forward,
		Note: "other neighbour discovery (solicitations for unknown or link-local targets, advertisements): forwarded within the tier"})
	b.add(Flow{Table: TNDResponder, Priority: 0, Cookie: MakeCookie(CatDefaultDrop, uint32(TNDResponder), 0),
		Note: b.notef("%s miss: drop", TableName(TNDResponder))})
	b.add(Flow{Table: TNDAnswer, Priority: 100, Cookie: nd,
		Match:   icmp6Match(ICMPv6NA),
		Actions: []Action{Move{Src: FEthSrc, Dst: FNDTll, NBits: 48}, Output{Port: PortInPort}},
		Note:    "the switch's neighbour advertisement: target link-layer address = the answered VM's MAC, back to the asker"})
	b.add(Flow{Table: TNDAnswer, Priority: 0, Cookie: MakeCookie(CatDefaultDrop, uint32(TNDAnswer), 0),
		Note: b.notef("%s miss: drop", TableName(TNDAnswer))})
}

// ipv6VMFlows: port security of dual-stack VM r: IPv6 only from its ip6 and
// its EUI-64 link-local address with its MAC; neighbour discovery only about
// itself with its own MAC (or no option); DAD and MLD reports from ::; the
// switch never answers its own address back to it.
func (b *builder) ipv6VMFlows(r VMRef) {
	obj := VMObject(r.VM.Name)
	port, mac := r.VM.Port, MACValue(r.VM.HW)
	a, ll := r.VM.Addr6, LinkLocal(r.VM.HW)
	who := b.notef("VM %s (vpc %s, tier %s)", r.VM.Name, r.VPC.Name, r.Tier.Name)
	ps := MakeCookie(CatPortSecurity, obj, 0)
	from := func(typ uint8, fs ...MatchField) Match {
		return icmp6Match(typ, append([]MatchField{inPort(port), exact(FEthSrc, mac)}, fs...)...)
	}
	for _, src := range []netip.Addr{a, ll} {
		for _, opt := range []uint64{mac, 0} {
			b.add(Flow{Table: TVMEgress, Priority: 280, Cookie: ps,
				Match: from(ICMPv6NS, exact6(FIPv6Src, src), exact(FNDSll, opt)), Goto: TNDResponder,
				Note: b.notef("%s neighbour solicitation from %s, source link-layer option %s", who, src, optName(opt))})
			b.add(Flow{Table: TVMEgress, Priority: 280, Cookie: ps,
				Match: from(ICMPv6NA, exact6(FIPv6Src, src), exact6(FNDTarget, src), exact(FNDTll, opt)), Goto: TNDResponder,
				Note: b.notef("%s neighbour advertisement for its own %s, target link-layer option %s", who, src, optName(opt))})
		}
		b.add(Flow{Table: TVMEgress, Priority: 280, Cookie: ps,
			Match: from(ICMPv6NS, exact6(FIPv6Src, unspecified6), exact6(FNDTarget, src), exact(FNDSll, 0)), Goto: TNDResponder,
			Note: b.notef("%s duplicate address detection for its own %s (from ::)", who, src)})
		b.add(Flow{Table: TVMEgress, Priority: 260, Cookie: ps,
			Match: ip6Match(inPort(port), exact(FEthSrc, mac), exact6(FIPv6Src, src)), Goto: TMgmtGuard,
			Note: b.notef("%s sends IPv6 as %s %s", who, r.VM.HW, src)})
	}
	b.add(Flow{Table: TVMEgress, Priority: 260, Cookie: ps,
		Match: from(ICMPv6MLDv2Report, exact6(FIPv6Src, unspecified6)), Goto: TMgmtGuard,
		Note: b.notef("%s MLDv2 report from :: (joining its solicited-node group before its link-local address is valid)", who)})
	b.add(Flow{Table: TNDResponder, Priority: 300, Cookie: MakeCookie(CatIPv6Guard, obj, 0),
		Match: icmp6Match(ICMPv6NS, inPort(port), exact6(FNDTarget, a)),
		Note:  b.notef("VM %s asking for its own address %s: not answered", r.VM.Name, a)})
}

func optName(v uint64) string {
	if v == 0 {
		return "absent"
	}
	return valueMAC(v).String()
}

// ndAnswer turns a neighbour solicitation into the advertisement "target
// is at mac" (solicited, override): addresses swapped, the target as source,
// type 136, flags, and the solicitation's source link-layer option turned
// in place into the target link-layer option. nd_answer then writes mac
// into that option (Open vSwitch accepts nd_tll only on a flow that
// matches an NA) and sends it back out of the asker's port.
func ndAnswer(mac uint64) []Action {
	return []Action{
		Move{Src: FEthSrc, Dst: FEthDst, NBits: 48},
		SetField{FEthSrc, mac},
		Move{Src: FIPv6Src, Dst: FIPv6Dst, NBits: 128},
		Move{Src: FNDTarget, Dst: FIPv6Src, NBits: 128},
		SetField{FICMPv6Type, ICMPv6NA},
		SetField{FNDReserved, NDFlagsSolOverride},
		SetField{FNDOptionsType, NDOptTargetLLAddr},
	}
}

// ndAnswers: the ND responder for tier t's dual-stack VMs, on a host where
// some VM of t is dual-stack (only those ask through nd_responder).
func (b *builder) ndAnswers(v *hostView, t TierRef) {
	vms := v.tierVMs(t.Tier.Key)
	local := false
	for _, r := range vms {
		local = local || r.VM.Host == v.host.Name && IsDualStack(r)
	}
	if !local {
		return
	}
	for _, r := range vms {
		if !IsDualStack(r) {
			continue
		}
		b.add(Flow{Table: TNDResponder, Priority: 200, Cookie: MakeCookie(CatNDResponder, VMObject(r.VM.Name), 0),
			Match:   icmp6Match(ICMPv6NS, exact(RegTier, uint64(t.Tier.Key)), exact6(FNDTarget, r.VM.Addr6)),
			Actions: ndAnswer(MACValue(r.VM.HW)), Goto: TNDAnswer,
			Note: b.notef("neighbour solicitation for %s in tier %s/%s: answered %s (VM %s)", r.VM.Addr6, t.VPC.Name, t.Tier.Name, r.VM.HW, r.VM.Name)})
	}
}
