package flows

import (
	"net/netip"
	"slices"
	"testing"
)

func loadDualStack(t testing.TB) *Blueprint {
	t.Helper()
	bp, err := Load("testdata/ipv6/dual-stack.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return bp
}

func TestLinkLocalAndSolicitedNode(t *testing.T) {
	m := MAC{0x52, 0x54, 0x00, 0x0a, 0x01, 0x01}
	if got, want := LinkLocal(m), netip.MustParseAddr("fe80::5054:ff:fe0a:101"); got != want {
		t.Errorf("LinkLocal(%s) = %s, want %s", m, got, want)
	}
	a, mac := SolicitedNode(netip.MustParseAddr("2001:db8:1:1::abcd:1234"))
	if a != netip.MustParseAddr("ff02::1:ffcd:1234") || mac != (MAC{0x33, 0x33, 0xff, 0xcd, 0x12, 0x34}) {
		t.Errorf("SolicitedNode = %s %s", a, mac)
	}
}

func TestValidateFillsIPv6(t *testing.T) {
	bp := loadDualStack(t)
	web := &bp.VPCs[0].Tiers[0]
	if web.Prefix6 != netip.MustParsePrefix("2001:db8:1:1::/64") || web.VMs[0].Addr6 != netip.MustParseAddr("2001:db8:1:1::11") {
		t.Errorf("parsed %v %v", web.Prefix6, web.VMs[0].Addr6)
	}
	if web.VMs[2].Addr6.IsValid() || bp.VPCs[0].Tiers[1].Prefix6.IsValid() {
		t.Errorf("IPv4-only VM/tier got IPv6: %v %v", web.VMs[2].Addr6, bp.VPCs[0].Tiers[1].Prefix6)
	}
	if !IsDualStack(VMRef{&bp.VPCs[0], web, &web.VMs[0]}) || IsDualStack(VMRef{&bp.VPCs[0], web, &web.VMs[2]}) || IsDualStack(VMRef{&bp.VPCs[0], web, &web.VMs[3]}) {
		t.Error("IsDualStack: want guests with ip6 only (not the router NIC, not a VM without ip6)")
	}
	// The same prefix and address in two VPCs is fine.
	if red := bp.VPCs[1].Tiers[0]; red.VMs[0].Addr6 != web.VMs[0].Addr6 {
		t.Errorf("red-web-1 %v", red.VMs[0].Addr6)
	}
}

// The IPv6 keys are part of the blueprint hash (replicas must see a change),
// and absent keys leave it as before (TestPolicyFreeBlueprintsUnchanged pins
// the hashes of every IPv4 fixture).
func TestIPv6KeysChangeHash(t *testing.T) {
	a := loadDualStack(t)
	b := loadDualStack(t)
	b.VPCs[0].Tiers[0].VMs[0].IP6 = "2001:db8:1:1::99"
	if a.Hash() == b.Hash() {
		t.Error("changing ip6 left the hash unchanged")
	}
	c := loadDualStack(t)
	c.VPCs[0].Tiers[0].CIDR6 = "2001:db8:1:2::/64"
	if a.Hash() == c.Hash() {
		t.Error("changing cidr6 left the hash unchanged")
	}
}

// The IPv6 flows survive the OpenFlow codec (128-bit values, the Ericsson
// OXMs nd_reserved/nd_options_type, moves of 128-bit fields): what the
// controller reads back from a switch is what it sent, so it converges.
func TestIPv6CodecRoundTrip(t *testing.T) {
	bps := []*Blueprint{loadDualStack(t)}
	for i := 0; i < 10; i++ {
		bps = append(bps, genDualStack(t, i))
	}
	n := 0
	for _, bp := range bps {
		for _, h := range bp.Hosts {
			fs := compileHost(t, bp, h.Name)
			pm := portMapFor(fs)
			names := pm.Names()
			for i := range fs {
				f := &fs[i]
				msg, err := AppendFlowMod(nil, f, CmdAdd, pm)
				if err != nil {
					t.Fatalf("%s/%s: AppendFlowMod(%s): %v", bp.Source, h.Name, f, err)
				}
				e, err := flowModToStats(msg)
				if err != nil {
					t.Fatal(err)
				}
				g, err := DecodeFlowStats(e, names)
				if err != nil {
					t.Fatalf("%s/%s: DecodeFlowStats(%s): %v", bp.Source, h.Name, f, err)
				}
				if g.Key() != f.Key() || g.ActionsString() != f.ActionsString() || g.Unknown != "" || !slices.Equal(g.Match, f.Match) {
					t.Errorf("%s/%s round trip:\n sent %s\n got  %s (unknown %q)", bp.Source, h.Name, f, &g, g.Unknown)
				}
				if f.Table == TNDResponder || f.Table == TNDAnswer {
					n++
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no IPv6 flows compiled")
	}
}

func TestMatch128(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8:1:1::11"), netip.MustParseAddr("2001:db9:1:1::11") // same low 64 bits
	ma, mb := match(exact6(FIPv6Src, a)), match(exact6(FIPv6Src, b))
	if ma.String() == mb.String() || ma.String() != "ipv6_src=2001:db8:1:1::11" {
		t.Errorf("%s vs %s", ma, mb)
	}
	p := match(masked6(FIPv6Dst, netip.MustParsePrefix("2001:db8:1:1::/64")))
	if got := p.String(); got != "ipv6_dst=2001:db8:1:1::/64" {
		t.Errorf("prefix match renders %q", got)
	}
	if full := match(masked6(FIPv6Dst, netip.MustParsePrefix("2001:db8:1:1::5/128"))); full[0].Masked {
		t.Errorf("a /128 should normalise to an exact match: %+v", full[0])
	}
	if all := match(masked6(FIPv6Dst, netip.MustParsePrefix("::/0"))); len(all) != 0 {
		t.Errorf("::/0 should drop the field: %v", all)
	}
	pk := IPv6Packet("p", MAC{}, MAC{}, netip.MustParseAddr("2001:db8:1:1::abcd"), netip.MustParseAddr("2001:db8:1:1::abcd"), ProtoTCP)
	if !p.matches(&pk, 0) {
		t.Error("2001:db8:1:1::abcd not matched by 2001:db8:1:1::/64")
	}
	pk.IPDst = netip.MustParseAddr("2001:db8:1:2::abcd")
	if p.matches(&pk, 0) {
		t.Error("2001:db8:1:2::abcd matched by 2001:db8:1:1::/64")
	}
}
