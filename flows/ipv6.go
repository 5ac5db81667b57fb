package flows

// IPv6 in the blueprint (issue 15, first slice; docs/ipv6.md): a tier is
// dual-stack when it has cidr6, a NIC when it has ip6. This file validates
// and parses both; compile_ipv6.go compiles them.

import (
	"fmt"
	"net/netip"
)

// reservedPrefixes6 are IPv6 ranges a tier's cidr6 may not touch.
var reservedPrefixes6 = []struct {
	p    netip.Prefix
	what string
}{
	{netip.MustParsePrefix("::/8"), "reserved range ::/8 (unspecified, loopback, IPv4-mapped)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local range fe80::/10 (every NIC has its own there)"},
	{netip.MustParsePrefix("fec0::/10"), "deprecated site-local range fec0::/10"},
	{netip.MustParsePrefix("ff00::/8"), "multicast range ff00::/8"},
}

// LinkLocal returns the EUI-64 link-local address a NIC with MAC m forms
// (RFC 4291 appendix A): fe80::, the MAC with ff:fe in the middle and the
// universal/local bit flipped.
func LinkLocal(m MAC) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfe, 0x80, 8: m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]})
}

// SolicitedNode returns the solicited-node multicast address of a
// (ff02::1:ffXX:XXXX, RFC 4291 2.7.1) and its Ethernet group MAC.
func SolicitedNode(a netip.Addr) (netip.Addr, MAC) {
	b := a.As16()
	s := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 0x01, 0xff, b[13], b[14], b[15]})
	return s, MAC{0x33, 0x33, 0xff, b[13], b[14], b[15]}
}

// reservedAnycast reports whether a's interface identifier is one of the
// reserved subnet anycast identifiers of RFC 2526 (the last 128 of a /64).
func reservedAnycast(a netip.Addr) bool {
	b := a.As16()
	if b[8] != 0xfd || b[9] != 0xff || b[10] != 0xff || b[11] != 0xff || b[12] != 0xff || b[13] != 0xff || b[14] != 0xff {
		return false
	}
	return b[15] >= 0x80
}

// parsePrefix6 parses a tier's cidr6: an IPv6 prefix in canonical form.
func parsePrefix6(s string) (netip.Prefix, string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil && a.Is6() {
			return p, fmt.Sprintf("cidr6 %q has no prefix length: write it like %s/64", s, a)
		}
		return p, fmt.Sprintf("cidr6 %q is not an IPv6 prefix: write it like 2001:db8:1:1::/64", s)
	}
	if !p.Addr().Is6() || p.Addr().Is4In6() {
		return p, fmt.Sprintf("cidr6 %s is not IPv6: write an IPv6 prefix like 2001:db8:1:1::/64 (the IPv4 prefix goes in cidr)", s)
	}
	if m := p.Masked(); m != p {
		return p, fmt.Sprintf("cidr6 %s has host bits set: did you mean %s?", s, m)
	}
	if p.String() != s {
		return p, fmt.Sprintf("cidr6 %s is not in canonical form: write %s", s, p)
	}
	return p, ""
}

// checkIPv6 validates the IPv6 keys: tiers[].cidr6 and vms[].ip6. It runs
// after checkVPCs (names, MACs and roles are checked there).
func (v *validator) checkIPv6() {
	b := v.b
	v.tiers6 = make([][]netip.Prefix, len(b.VPCs))
	v.vms6 = make([][][]netip.Addr, len(b.VPCs))
	for i := range b.VPCs {
		vpc := &b.VPCs[i]
		fv := fmt.Sprintf("vpcs[%d]", i)
		v.tiers6[i] = make([]netip.Prefix, len(vpc.Tiers))
		v.vms6[i] = make([][]netip.Addr, len(vpc.Tiers))
		vpcIPs := map[netip.Addr]vmRef{}
		for j := range vpc.Tiers {
			t := &vpc.Tiers[j]
			ft := fmt.Sprintf("%s.tiers[%d]", fv, j)
			v.vms6[i][j] = make([]netip.Addr, len(t.VMs))
			var tp netip.Prefix
			if t.CIDR6 != "" {
				p, msg := parsePrefix6(t.CIDR6)
				switch {
				case msg != "":
					v.errorf(ft+".cidr6", "%s", msg)
				case p.Bits() > 64:
					v.errorf(ft+".cidr6", "tier cidr6 %s is too small: a tier needs a /64 or shorter prefix (SLAAC and EUI-64 interface identifiers take 64 bits)", p)
				case t.IsVLAN():
					v.errorf(ft+".cidr6", "cidr6 on vlan tier %s/%s is not supported yet (IPv6 covers overlay tiers in this release, docs/ipv6.md): remove cidr6 or make the tier an overlay tier", vpc.Name, t.Name)
				case t.ACL != "":
					v.errorf(ft+".cidr6", "cidr6 on tier %s/%s with acl %q is not supported yet (IPv6 is not judged by ACLs in this release, docs/ipv6.md): remove cidr6 or the tier's acl", vpc.Name, t.Name, t.ACL)
				default:
					bad := false
					for _, r := range reservedPrefixes6 {
						if p.Overlaps(r.p) {
							v.errorf(ft+".cidr6", "tier cidr6 %s overlaps the %s: pick a global unicast or unique local prefix such as fd00:10:1:1::/64", p, r.what)
							bad = true
							break
						}
					}
					for k := 0; k < j && !bad; k++ {
						if q := v.tiers6[i][k]; q.IsValid() && p.Overlaps(q) {
							v.errorf(ft+".cidr6", "tier cidr6 %s overlaps %s.tiers[%d] (%s, %s): tiers of one VPC need disjoint prefixes", p, fv, k, vpc.Tiers[k].Name, q)
							break
						}
					}
					tp = p
					v.tiers6[i][j] = p
				}
				if tp.IsValid() {
					for k := range t.VMs {
						if len(t.VMs[k].SecurityGroups) > 0 {
							v.errorf(fmt.Sprintf("%s.vms[%d].security_groups", ft, k), "VM %s has security groups on dual-stack tier %s/%s: not supported yet (IPv6 is not judged by security groups in this release, docs/ipv6.md): remove the tier's cidr6 or the VM's security_groups", t.VMs[k].Name, vpc.Name, t.Name)
						}
					}
				}
			}
			for k := range t.VMs {
				vm := &t.VMs[k]
				if vm.IP6 == "" {
					continue
				}
				fm := fmt.Sprintf("%s.vms[%d].ip6", ft, k)
				if t.CIDR6 == "" {
					v.errorf(fm, "ip6 is set but tier %s/%s has no cidr6: add cidr6 to the tier (e.g. 2001:db8:1:1::/64) or remove ip6", vpc.Name, t.Name)
					continue
				}
				a, err := netip.ParseAddr(vm.IP6)
				if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
					v.errorf(fm, "ip6 %q is not an IPv6 address: write it like 2001:db8:1:1::11", vm.IP6)
					continue
				}
				if a.String() != vm.IP6 {
					v.errorf(fm, "ip6 %s is not in canonical form: write %s", vm.IP6, a)
					continue
				}
				if !tp.IsValid() {
					continue // the tier's cidr6 has its own error
				}
				switch {
				case !tp.Contains(a):
					v.errorf(fm, "ip6 %s is outside tier cidr6 %s: pick an address inside the tier", a, tp)
				case a == tp.Addr():
					v.errorf(fm, "ip6 %s is the subnet-router anycast address of tier cidr6 %s: pick a host address such as %s", a, tp, tp.Addr().Next())
				case reservedAnycast(a):
					v.errorf(fm, "ip6 %s is a reserved subnet anycast address (RFC 2526, the last 128 interface identifiers of a /64): pick another host address", a)
				default:
					if other, dup := vpcIPs[a]; dup {
						v.errorf(fm, "ip6 %s is already used by %s (%s) in the same VPC: IPv6 addresses must be unique within a VPC", a, other.path, other.name)
						continue
					}
					vpcIPs[a] = vmRef{path: fmt.Sprintf("%s.vms[%d]", ft, k), name: vm.Name}
					v.vms6[i][j][k] = a
				}
			}
		}
	}
}

// commitIPv6 fills Tier.Prefix6 and VM.Addr6 (the blueprint is valid).
func (v *validator) commitIPv6() {
	b := v.b
	for i := range b.VPCs {
		for j := range b.VPCs[i].Tiers {
			t := &b.VPCs[i].Tiers[j]
			t.Prefix6 = v.tiers6[i][j]
			for k := range t.VMs {
				t.VMs[k].Addr6 = v.vms6[i][j][k]
			}
		}
	}
}

// IsDualStack reports whether VM r sends and receives IPv6 in this release:
// a guest (not a router NIC) with ip6 on a tier with cidr6.
func IsDualStack(r VMRef) bool {
	return r.VM.Addr6.IsValid() && r.Tier.Prefix6.IsValid() && !r.VM.IsRouter()
}
