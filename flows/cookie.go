package flows

import "fmt"

// Cookie identifies the rule a flow implements (DESIGN §4):
//
//	bits 63..56  Category   (what kind of rule: classify, port-security, ...)
//	bits 55..24  Object     (which tier/VM/peer/port, see Category docs)
//	bits 23..0   Revision   (the blueprint revision that last changed the flow)
//
// The revision is never a process, connection or election counter: a
// restarted controller, a reconnect or a failover finds installed flows
// identical. Diffs compare cookies with RuleMask (category + object) and keep
// the installed revision when nothing else changed.
type Cookie uint64

// RuleMask covers the category and object bits of a cookie.
const RuleMask Cookie = ^Cookie(MaxRevision)

// Category is the kind of rule a flow implements.
type Category uint8

// Categories. The object of each is given in brackets.
const (
	CatUnknown       Category = iota
	CatClassify               // [port object: 0 uplink, 1 LOCAL, 2 tunnel, else VM id] entry point by in_port
	CatUnderlayMgmt           // [0] uplink traffic for the host stack -> LOCAL
	CatHostOut                // [0] LOCAL -> uplink (host traffic, encapsulated tunnel traffic)
	CatTunnelAllow            // [peer IPv4] tunnel packets from a trusted peer -> LOCAL for decap
	CatTunnelDrop             // [IP proto] tunnel packets from anyone else: dropped, counted
	CatPeerARPGuard           // [peer IPv4] ARP claiming a peer's tunnel IP from another MAC
	CatPortSecurity           // [VM id] what a VM may send (its MAC and IP)
	CatSpoofDrop              // [VM id] everything else from that VM
	CatIPv6Drop               // [0] IPv6 from guests (unspecified yet): dropped, counted
	CatDHCPGuard              // [0] DHCP server replies from guests
	CatMgmtGuard              // [IPv4 / port] guest traffic to management, host IPs, host ports
	CatMgmtPass               // [VNI] guest traffic allowed on to L2 forwarding
	CatARPResponder           // [VM id] ARP request for a tier IP answered in the switch
	CatARPDrop                // [VM id] ARP a VM must not get answered (its own IP)
	CatTunnelIn               // [VNI] tunnel key accepted from a host carrying the tier
	CatVPCForward             // [VM id] delivery to a VM's MAC (local port or tunnel)
	CatFlood                  // [VNI] broadcast/multicast within a tier
	CatDefaultDrop            // [table] a table's miss
	CatTrustedPeerIn          // [VNI: clause 1/2, peer IPv4: clause 2/2, 0: the conj_id flow] tunnel keys accepted from trusted_peers
	CatVLANIn                 // [tier key] a VLAN tier's tagged frames from the uplink: untagged, to the tier's local ports
	CatVLANDrop               // [0] tagged frames of a VLAN this host does not carry: dropped, counted
	CatVLANOut                // [tier key] a VLAN tier's frames for other hosts / the physical VLAN: tagged, to the uplink
	CatGatewayARP             // [tier key] ARP for a tier's virtual gateway answered in the switch (distributed routing)
	CatRouteEntry             // [tier key] guest traffic to its gateway MAC for another tier of its VPC: to routing
	CatRoute                  // [VM id] distributed routing to a VM: MAC rewrite, TTL decrement, delivery
	CatACLRule                // [ACLRuleObject] one rule of a network ACL list (docs/policy.md)
	CatSGRule                 // [SGRuleObject] one rule of a security group (docs/policy.md)
	CatACLDefault             // [ACLDefaultObject] an ACL list's no-match verdict (ingress denied, egress allowed)
	CatSGDefault              // [VM id] a security-group VM's no-match verdict: denied
	CatPolicyPass             // [tier key, VPC id or 0] policy plumbing: conntrack entry, state, not-judged exemptions, commit
	CatCtInvalid              // [0] packets conntrack calls invalid: dropped, counted
	CatIPv6Guard              // [VM id, or 0] IPv6 a guest must not send (RA, redirect, DHCPv6 server, spoofed ND): dropped, counted
	CatNDResponder            // [VM id, or 0 for the pass flows] IPv6 neighbour solicitation answered in the switch
	numCategories
)

var categoryNames = [numCategories]string{
	CatUnknown:       "unknown",
	CatClassify:      "classify",
	CatUnderlayMgmt:  "underlay-mgmt",
	CatHostOut:       "host-out",
	CatTunnelAllow:   "tunnel-allowlist",
	CatTunnelDrop:    "tunnel-allowlist-drop",
	CatPeerARPGuard:  "peer-arp-guard",
	CatPortSecurity:  "port-security",
	CatSpoofDrop:     "spoof-drop",
	CatIPv6Drop:      "ipv6-drop",
	CatDHCPGuard:     "dhcp-guard",
	CatMgmtGuard:     "mgmt-guard",
	CatMgmtPass:      "mgmt-pass",
	CatARPResponder:  "arp-responder",
	CatARPDrop:       "arp-drop",
	CatTunnelIn:      "tunnel-in",
	CatVPCForward:    "vpc-forward",
	CatFlood:         "flood",
	CatDefaultDrop:   "default-drop",
	CatTrustedPeerIn: "trusted-peer-in",
	CatVLANIn:        "vlan-in",
	CatVLANDrop:      "vlan-drop",
	CatVLANOut:       "vlan-out",
	CatGatewayARP:    "gateway-arp",
	CatRouteEntry:    "route-entry",
	CatRoute:         "route",
	CatACLRule:       "acl",
	CatSGRule:        "sg",
	CatACLDefault:    "acl-default",
	CatSGDefault:     "sg-default",
	CatPolicyPass:    "policy-pass",
	CatCtInvalid:     "ct-invalid",
	CatIPv6Guard:     "ipv6-guard",
	CatNDResponder:   "nd-responder",
}

func (c Category) String() string {
	if c >= numCategories {
		return fmt.Sprintf("category-%d", uint8(c))
	}
	return categoryNames[c]
}

// IsDrop reports whether flows of this category drop packets (security
// counters in audit).
func (c Category) IsDrop() bool {
	switch c {
	case CatTunnelDrop, CatSpoofDrop, CatIPv6Drop, CatDHCPGuard, CatMgmtGuard, CatARPDrop, CatDefaultDrop, CatVLANDrop, CatSGDefault, CatCtInvalid, CatIPv6Guard:
		return true
	}
	return false
}

// CategoryByName maps a category name back (for audit filters).
func CategoryByName(s string) (Category, bool) {
	for i, n := range categoryNames {
		if n == s {
			return Category(i), true
		}
	}
	return 0, false
}

// MakeCookie builds a cookie.
func MakeCookie(c Category, object uint32, revision uint32) Cookie {
	return Cookie(uint64(c)<<56 | uint64(object)<<24 | uint64(revision&MaxRevision))
}

// Category of the cookie.
func (c Cookie) Category() Category { return Category(c >> 56) }

// Object of the cookie.
func (c Cookie) Object() uint32 { return uint32(c >> 24) }

// Revision of the cookie.
func (c Cookie) Revision() uint32 { return uint32(c) & MaxRevision }

// Rule is the cookie without its revision.
func (c Cookie) Rule() Cookie { return c & RuleMask }

// WithRevision returns the cookie with another revision.
func (c Cookie) WithRevision(r uint32) Cookie { return c.Rule() | Cookie(r&MaxRevision) }

func (c Cookie) String() string { return fmt.Sprintf("0x%016x", uint64(c)) }

// Known reports whether c is a category vpcflow installs.
func (c Category) Known() bool { return c > CatUnknown && c < numCategories }
