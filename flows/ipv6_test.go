package flows

import (
	"net/netip"
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
