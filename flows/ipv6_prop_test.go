package flows

import (
	"fmt"
	"math/rand"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// genDualStack is genBlueprint (same stream, so the IPv4 topology is the
// one the IPv4 property tests see) made dual-stack from a second random
// stream: tier i of every VPC gets the same cidr6 2001:db8:i::/64 (2 in 3
// tiers), and its VMs the same ip6 ::10+k (3 in 4), so identical IPv6
// prefixes and addresses in several VPCs are the norm.
func genDualStack(t testing.TB, n int) *Blueprint {
	t.Helper()
	bp := genBlueprint(t, rand.New(rand.NewSource(int64(n))), n)
	r := rand.New(rand.NewSource(int64(n) + 7919))
	for pi := range bp.VPCs {
		for ti := range bp.VPCs[pi].Tiers {
			tr := &bp.VPCs[pi].Tiers[ti]
			if r.Intn(3) == 0 {
				continue
			}
			tr.CIDR6 = fmt.Sprintf("2001:db8:%x::/64", ti+1)
			for k := range tr.VMs {
				if r.Intn(4) != 0 {
					tr.VMs[k].IP6 = fmt.Sprintf("2001:db8:%x::%x", ti+1, 0x10+k)
				}
			}
		}
	}
	data, err := yaml.Marshal(bp)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(fmt.Sprintf("dualstack-%d.yaml", n), data)
	if err != nil {
		t.Fatalf("dual-stack blueprint %d does not validate: %v\n%s", n, err, data)
	}
	return parsed
}

// hostDualStack: host carries a dual-stack VM (the IPv6 flows are there).
func hostDualStack(bp *Blueprint, host string) bool {
	for pi := range bp.VPCs {
		p := &bp.VPCs[pi]
		for ti := range p.Tiers {
			for mi := range p.Tiers[ti].VMs {
				r := VMRef{p, &p.Tiers[ti], &p.Tiers[ti].VMs[mi]}
				if r.VM.Host == host && IsDualStack(r) {
					return true
				}
			}
		}
	}
	return false
}

// addIPv6Counts adds the IPv6 flows to expectedCounts (docs/pipeline.md,
// flow count): on a host with a dual-stack VM, 5 guards in vm_egress, the
// IPv6 pass of mgmt_guard, nd_responder's 2 pass flows and miss, and
// nd_answer's flow and miss; per
// local dual-stack VM 13 port-security flows and its own-address drop; per
// tier with a local dual-stack VM one answer per dual-stack VM of the tier.
func addIPv6Counts(bp *Blueprint, host string, c map[TableID]int) {
	c[TNDResponder], c[TNDAnswer] = 0, 0
	if !hostDualStack(bp, host) {
		return
	}
	c[TVMEgress] += 5
	c[TMgmtGuard]++
	c[TNDResponder] += 3
	c[TNDAnswer] += 2
	for pi := range bp.VPCs {
		p := &bp.VPCs[pi]
		for ti := range p.Tiers {
			t := &p.Tiers[ti]
			localDS, tierDS := 0, 0
			for mi := range t.VMs {
				r := VMRef{p, t, &t.VMs[mi]}
				if !IsDualStack(r) {
					continue
				}
				tierDS++
				if r.VM.Host == host {
					localDS++
				}
			}
			c[TVMEgress] += 13 * localDS
			c[TNDResponder] += localDS
			if localDS > 0 {
				c[TNDResponder] += tierDS
			}
		}
	}
}

func TestIPv6FlowCountFormula(t *testing.T) {
	n := 40
	if testing.Short() {
		n = 10
	}
	for i := 0; i < n; i++ {
		bp := genDualStack(t, i)
		for _, h := range bp.Hosts {
			got, want := countByTable(compileHost(t, bp, h.Name)), expectedCounts(bp, h.Name)
			for _, tb := range Pipeline {
				if got[tb.ID] != want[tb.ID] {
					t.Errorf("%s/%s table %s: %d flows, want %d", bp.Source, h.Name, tb.Name, got[tb.ID], want[tb.ID])
				}
			}
		}
	}
}

// ---- the IPv6 model: what the first slice promises, written from the
// spec (docs/ipv6.md), not from the flows ----

type v6vm struct {
	r    VMRef
	mac  MAC
	a    netip.Addr // ip6 (invalid: none)
	ll   netip.Addr
	dual bool
}

func v6vms(bp *Blueprint) []v6vm {
	var out []v6vm
	for pi := range bp.VPCs {
		p := &bp.VPCs[pi]
		for ti := range p.Tiers {
			t := &p.Tiers[ti]
			for mi := range t.VMs {
				r := VMRef{p, t, &t.VMs[mi]}
				out = append(out, v6vm{r, r.VM.HW, r.VM.Addr6, LinkLocal(r.VM.HW), IsDualStack(r)})
			}
		}
	}
	return out
}

// v6Expect is the model's verdict for packet p sent by VM s: the names of
// the VMs it reaches, and the answer (a switch-made NA back to s) if any.
func v6Expect(vms []v6vm, s v6vm, p Packet) (reach []string, answer *Packet) {
	if !s.dual || p.EthSrc != s.mac {
		return nil, nil
	}
	own := func(a netip.Addr) bool { return a == s.a || a == s.ll }
	icmp := p.IPProto == ProtoICMPv6
	switch {
	case icmp && (p.ICMPType == ICMPv6RA || p.ICMPType == ICMPv6Redirect):
		return nil, nil // RA guard
	case p.IPProto == ProtoUDP && p.L4Src == DHCPv6ServerPort:
		return nil, nil
	case icmp && p.ICMPType == ICMPv6NS:
		okOpt := p.NDSll == s.mac || p.NDSll == (MAC{})
		dad := p.IPSrc == netip.IPv6Unspecified() && own(p.NDTarget) && p.NDSll == (MAC{})
		if !(own(p.IPSrc) && okOpt) && !dad {
			return nil, nil
		}
		if p.NDSll != (MAC{}) {
			if p.NDTarget == s.a {
				return nil, nil // never answered its own address
			}
			for _, x := range vms {
				if x.dual && x.r.Tier == s.r.Tier && x.a == p.NDTarget {
					na := p
					na.EthDst, na.EthSrc = p.EthSrc, x.mac
					na.IPDst, na.IPSrc = p.IPSrc, p.NDTarget
					na.ICMPType, na.NDReserved, na.NDOptType = ICMPv6NA, NDFlagsSolOverride, NDOptTargetLLAddr
					na.NDTll, na.NDSll = x.mac, MAC{}
					return []string{s.r.VM.Name}, &na
				}
			}
		}
	case icmp && p.ICMPType == ICMPv6NA:
		if !(own(p.IPSrc) && p.NDTarget == p.IPSrc && (p.NDTll == s.mac || p.NDTll == (MAC{}))) {
			return nil, nil
		}
	case icmp && p.ICMPType == ICMPv6MLDv2Report && p.IPSrc == netip.IPv6Unspecified():
	default:
		if !own(p.IPSrc) {
			return nil, nil
		}
	}
	// Forwarded within the tier by destination MAC.
	for _, x := range vms {
		if x.r.Tier != s.r.Tier || x.r.VM == s.r.VM {
			continue
		}
		if p.EthDst[0]&1 == 1 || p.EthDst == x.mac {
			reach = append(reach, x.r.VM.Name)
		}
	}
	return reach, nil
}

// randV6Packet draws an IPv6 packet VM s might send: mostly well-formed,
// often spoofed (source, MAC, ND target or option), sometimes forbidden
// (RA, redirect, DHCPv6 server), to neighbours, to identical addresses in
// other VPCs, and to multicast.
func randV6Packet(r *rand.Rand, vms []v6vm, s v6vm) Packet {
	pick := func() v6vm { return vms[r.Intn(len(vms))] }
	tierMate := func() v6vm {
		var ms []v6vm
		for _, x := range vms {
			if x.r.Tier == s.r.Tier && x.r.VM != s.r.VM {
				ms = append(ms, x)
			}
		}
		if len(ms) == 0 {
			return s
		}
		return ms[r.Intn(len(ms))]
	}
	addr := func() netip.Addr {
		switch r.Intn(7) {
		case 0, 1:
			if s.a.IsValid() {
				return s.a
			}
			return s.ll
		case 2:
			return s.ll
		case 3:
			if a := tierMate().a; a.IsValid() {
				return a
			}
			return tierMate().ll
		case 4:
			if a := pick().a; a.IsValid() {
				return a // often the same address in another VPC
			}
			return netip.MustParseAddr("2001:db8:1::99")
		case 5:
			return pick().ll
		}
		return netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::%x", 1+r.Intn(3), 0x10+r.Intn(6)))
	}
	mac := s.mac
	if r.Intn(10) == 0 {
		mac = tierMate().mac
	}
	src := addr()
	if r.Intn(6) == 0 {
		src = netip.IPv6Unspecified()
	}
	opt := func() MAC {
		switch r.Intn(4) {
		case 0:
			return MAC{}
		case 1:
			return tierMate().mac
		}
		return s.mac
	}
	dstMAC := func() MAC {
		switch r.Intn(4) {
		case 0:
			return MAC{0x33, 0x33, 0, 0, 0, 1}
		case 1:
			return pick().mac
		}
		return tierMate().mac
	}
	switch r.Intn(9) {
	case 0, 1:
		if r.Intn(2) == 0 { // a neighbour's address, asked properly: answered
			return NSPacket(s.r.VM.Port, s.mac, s.a, tierMate().a, s.mac)
		}
		return NSPacket(s.r.VM.Port, mac, src, addr(), opt())
	case 2:
		p := NAPacket(s.r.VM.Port, mac, dstMAC(), src, addr(), src, opt())
		if r.Intn(3) == 0 {
			p.NDTarget = addr()
		}
		return p
	case 3:
		p := ICMPv6Packet(s.r.VM.Port, mac, MAC{0x33, 0x33, 0, 0, 0, 1}, src, netip.MustParseAddr("ff02::1"), ICMPv6RA)
		if r.Intn(2) == 0 {
			p.ICMPType = ICMPv6Redirect
		}
		return p
	case 4:
		p := IPv6Packet(s.r.VM.Port, mac, dstMAC(), src, addr(), ProtoUDP)
		p.L4Src, p.L4Dst = DHCPv6ServerPort, DHCPv6ClientPort
		return p
	case 5:
		return ICMPv6Packet(s.r.VM.Port, mac, MAC{0x33, 0x33, 0, 0, 0, 0x16}, src, netip.MustParseAddr("ff02::16"), ICMPv6MLDv2Report)
	case 6:
		p := IPv6Packet(s.r.VM.Port, mac, dstMAC(), src, addr(), ProtoTCP)
		p.L4Src, p.L4Dst = 40000, uint16(1+r.Intn(65535))
		return p
	}
	return ICMPv6Packet(s.r.VM.Port, mac, dstMAC(), src, addr(), ICMPv6EchoRequest)
}

// TestIPv6FlowsAgreeWithModel: random dual-stack blueprints; random IPv6
// packets from random VMs; the compiled flows of every host, run by the
// evaluator across the simulated underlay, deliver exactly where the model
// says (and the switch's answers are the NAs the model expects).
func TestIPv6FlowsAgreeWithModel(t *testing.T) {
	runs, per := 60, 40
	if testing.Short() {
		runs = 15
	}
	checked, delivered, answered := 0, 0, 0
	for n := 0; n < runs; n++ {
		bp := genDualStack(t, n)
		c, err := NewCloud(bp)
		if err != nil {
			t.Fatal(err)
		}
		vms := v6vms(bp)
		r := rand.New(rand.NewSource(int64(n) * 31))
		for i := 0; i < per; i++ {
			s := vms[r.Intn(len(vms))]
			for k := 0; k < 3 && !s.dual; k++ { // mostly dual-stack senders
				s = vms[r.Intn(len(vms))]
			}
			p := randV6Packet(r, vms, s)
			want, ans := v6Expect(vms, s, p)
			j := c.Trace(s.r.VM.Host, p)
			var got []string
			var gotAns *Packet
			for _, a := range j.Arrivals {
				if a.VM == "" {
					t.Errorf("blueprint %d: %s from %s left the tiers: %s\n%s", n, p, s.r.VM.Name, a, j)
					continue
				}
				got = append(got, a.VM)
				if a.VM == s.r.VM.Name {
					ap := a.Packet
					gotAns = &ap
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			checked++
			if !slices.Equal(got, want) {
				t.Errorf("blueprint %d: %s from %s: flows deliver to %v, model %v\n%s", n, p, s.r.VM.Name, got, want, j)
				continue
			}
			if len(want) > 0 {
				delivered++
			}
			if ans != nil {
				answered++
				if gotAns == nil || !sameNA(*gotAns, *ans) {
					t.Errorf("blueprint %d: %s from %s: answer %v, model %v", n, p, s.r.VM.Name, gotAns, ans)
				}
			}
		}
	}
	t.Logf("%d packets checked, %d delivered, %d answered by the switch", checked, delivered, answered)
	if delivered < checked/10 || answered == 0 {
		t.Errorf("generator too weak: %d/%d delivered, %d answered", delivered, checked, answered)
	}
}

func sameNA(a, b Packet) bool {
	return a.EthSrc == b.EthSrc && a.EthDst == b.EthDst && a.IPSrc == b.IPSrc && a.IPDst == b.IPDst &&
		a.ICMPType == b.ICMPType && a.NDTarget == b.NDTarget && a.NDTll == b.NDTll && a.NDSll == b.NDSll &&
		a.NDReserved == b.NDReserved && a.NDOptType == b.NDOptType
}

// Without the IPv6 keys nothing changes: an IPv6 packet from a VM of an
// IPv4-only blueprint is dropped by the ipv6-drop flow as before.
func TestIPv6OnlyWithKeys(t *testing.T) {
	bp := genBlueprint(t, rand.New(rand.NewSource(3)), 3)
	c, err := NewCloud(bp)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range v6vms(bp) {
		p := ICMPv6Packet(s.r.VM.Port, s.mac, MAC{0x33, 0x33, 0, 0, 0, 1}, s.ll, netip.MustParseAddr("ff02::1"), ICMPv6EchoRequest)
		j := c.Trace(s.r.VM.Host, p)
		if len(j.Arrivals) != 0 || !strings.Contains(j.String(), "ipv6-drop") {
			t.Fatalf("%s: %s", s.r.VM.Name, j)
		}
	}
}

// mutateIPv6 changes one IPv6 key of a copy of bp (or, one time in three,
// makes a generic edit from mutateBlueprint).
func mutateIPv6(t *testing.T, r *rand.Rand, bp *Blueprint, n int) (*Blueprint, string) {
	t.Helper()
	if r.Intn(3) == 0 {
		return mutateBlueprint(t, r, bp, n)
	}
	data, _ := yaml.Marshal(bp)
	var m Blueprint
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m.Revision++
	p := &m.VPCs[r.Intn(len(m.VPCs))]
	ti := r.Intn(len(p.Tiers))
	tr := &p.Tiers[ti]
	v := &tr.VMs[r.Intn(len(tr.VMs))]
	what := ""
	switch {
	case tr.CIDR6 == "":
		tr.CIDR6 = fmt.Sprintf("2001:db8:%x::/64", ti+1)
		v.IP6 = fmt.Sprintf("2001:db8:%x::abc", ti+1)
		what = "make " + p.Name + "/" + tr.Name + " dual-stack with " + v.Name
	case r.Intn(3) == 0:
		tr.CIDR6 = ""
		for k := range tr.VMs {
			tr.VMs[k].IP6 = ""
		}
		what = "make " + p.Name + "/" + tr.Name + " IPv4-only"
	case v.IP6 == "":
		v.IP6 = fmt.Sprintf("2001:db8:%x::abc", ti+1)
		what = "give " + v.Name + " an ip6"
	case r.Intn(2) == 0:
		v.IP6 = ""
		what = "remove " + v.Name + "'s ip6"
	default:
		v.IP6 = fmt.Sprintf("2001:db8:%x::abd", ti+1)
		what = "new ip6 for " + v.Name
	}
	return reparse(t, &m, n), what
}

// TestIncrementalDualStack: the incremental compile (segments and their
// fingerprints) sees every IPv6 change: it equals a fresh compile.
func TestIncrementalDualStack(t *testing.T) {
	r := rand.New(rand.NewSource(15))
	runs, count := 0, 60
	if testing.Short() {
		count = 20
	}
	for n := 0; n < count; n++ {
		old := genDualStack(t, n)
		cur, what := mutateIPv6(t, r, old, n)
		runs += checkIncremental(t, old, cur, n, what)
	}
	if runs == 0 {
		t.Fatal("no incremental compile was checked")
	}
}
