package flows

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Policy model: network ACL lists (per VPC, chosen by a tier's acl:) and
// security groups (top level, joined by vms[].security_groups). The YAML
// names are fixed by the blueprint contract; docs/policy.md gives the
// semantics side by side with CloudStack's.

// Rule actions and directions.
const (
	ActionAllow = "allow"
	ActionDeny  = "deny"

	DirIngress = "ingress" // traffic entering the tier (ACL) or the NIC (security group)
	DirEgress  = "egress"  // traffic leaving it
)

// The built-in ACL lists of CloudStack, which a tier may name in acl:
// without declaring them (their names are reserved).
const (
	ACLDefaultAllow = "default_allow" // everything allowed both ways
	ACLDefaultDeny  = "default_deny"  // everything denied both ways
)

// Protocol names of policy rules; any other protocol is written as its IP
// protocol number (1..255).
const (
	ProtoNameAll  = "all"
	ProtoNameTCP  = "tcp"
	ProtoNameUDP  = "udp"
	ProtoNameICMP = "icmp"
)

// MaxACLRuleNumber is the largest ACL rule number: the number sets the
// rule's flow priority (lower number, higher priority), so it must fit
// below the stage's fixed priorities.
const MaxACLRuleNumber = 30000

// maxRuleCIDRs bounds the prefixes of one rule (work before compile).
const maxRuleCIDRs = 4096

// ACLList is a network ACL list of a VPC (CloudStack's
// listNetworkACLLists). Its rules are judged from the lowest number up;
// the first that matches decides.
type ACLList struct {
	Name  string    `yaml:"name"`
	Rules []ACLRule `yaml:"rules"`
}

// ACLRule is one numbered rule of an ACL list (CloudStack's
// listNetworkACLs item).
type ACLRule struct {
	Number    int       `yaml:"number"`    // 1..MaxACLRuleNumber, unique in the list; lowest matching wins
	Action    string    `yaml:"action"`    // allow | deny
	Direction string    `yaml:"direction"` // ingress | egress
	Protocol  string    `yaml:"protocol"`  // tcp, udp, icmp, all, or an IP protocol number
	Ports     string    `yaml:"ports,omitempty"`
	ICMP      *ICMPSpec `yaml:"icmp,omitempty"`
	CIDRs     []string  `yaml:"cidrs"` // the remote side: source (ingress) or destination (egress)

	// Match is the parsed rule, filled by Validate.
	Match TrafficMatch `yaml:"-"`
}

// ICMPSpec selects ICMP messages; an absent type or code, or -1, is any.
type ICMPSpec struct {
	Type *int `yaml:"type"`
	Code *int `yaml:"code"`
}

// SecurityGroup is a set of allow rules applied to the NICs that join it.
type SecurityGroup struct {
	Name    string   `yaml:"name"`
	Ingress []SGRule `yaml:"ingress"`
	Egress  []SGRule `yaml:"egress"` // none: all egress allowed
}

// SGRule is one allow rule of a security group. Its remote side is the
// union of cidrs and the addresses of the members of groups.
type SGRule struct {
	Protocol string    `yaml:"protocol"`
	Ports    string    `yaml:"ports,omitempty"`
	ICMP     *ICMPSpec `yaml:"icmp,omitempty"`
	CIDRs    []string  `yaml:"cidrs,omitempty"`
	Groups   []string  `yaml:"groups,omitempty"`

	// Filled by Validate: the parsed rule and the indexes of Groups in
	// Blueprint.SecurityGroups.
	Match     TrafficMatch `yaml:"-"`
	GroupRefs []int        `yaml:"-"`
}

// PortRange is an inclusive range of transport ports; {1, 65535} is every
// port.
type PortRange struct{ Lo, Hi uint16 }

// AllPorts is the range a tcp/udp rule without ports: matches.
var AllPorts = PortRange{1, 65535}

// Contains reports whether p is in the range.
func (r PortRange) Contains(p uint16) bool { return p >= r.Lo && p <= r.Hi }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// TrafficMatch is the parsed match of a policy rule. Prefixes are
// netip.Prefix so IPv6 fits later; today validation admits IPv4 only.
type TrafficMatch struct {
	AnyProto bool  // protocol all
	Proto    uint8 // the IP protocol, when !AnyProto
	// Ports is the destination port range of tcp and udp rules (the port
	// the connection is opened to), AllPorts when not given.
	Ports PortRange
	// ICMPType and ICMPCode select ICMP messages (-1 = any).
	ICMPType, ICMPCode int16
	// Prefixes are the remote addresses written in cidrs.
	Prefixes []netip.Prefix
}

// HasPorts reports whether the match's protocol has ports (tcp, udp).
func (m *TrafficMatch) HasPorts() bool {
	return !m.AnyProto && (m.Proto == ProtoTCP || m.Proto == ProtoUDP)
}

// ProtoString names the protocol as the blueprint writes it.
func (m *TrafficMatch) ProtoString() string {
	if m.AnyProto {
		return ProtoNameAll
	}
	switch m.Proto {
	case ProtoTCP:
		return ProtoNameTCP
	case ProtoUDP:
		return ProtoNameUDP
	case ProtoICMP:
		return ProtoNameICMP
	}
	return strconv.Itoa(int(m.Proto))
}

// String renders the match without its prefixes, e.g. "tcp 1-1023",
// "icmp type 8 code any", "all".
func (m *TrafficMatch) String() string {
	s := m.ProtoString()
	switch {
	case m.HasPorts():
		if m.Ports != AllPorts {
			s += " " + m.Ports.String()
		}
	case !m.AnyProto && m.Proto == ProtoICMP:
		if m.ICMPType >= 0 {
			s += " type " + strconv.Itoa(int(m.ICMPType))
			if m.ICMPCode >= 0 {
				s += " code " + strconv.Itoa(int(m.ICMPCode))
			}
		}
	}
	return s
}

// UsesPolicy reports whether the blueprint uses any policy key: ACL lists,
// a tier's acl, security groups, or a VM's security_groups.
func (b *Blueprint) UsesPolicy() bool { return b.firstPolicyKey() != "" }

// firstPolicyKey is the field path of the first policy key, or "".
func (b *Blueprint) firstPolicyKey() string {
	for i := range b.VPCs {
		p := &b.VPCs[i]
		if len(p.ACLs) > 0 {
			return fmt.Sprintf("vpcs[%d].acls", i)
		}
		for j := range p.Tiers {
			t := &p.Tiers[j]
			if t.ACL != "" {
				return fmt.Sprintf("vpcs[%d].tiers[%d].acl", i, j)
			}
			for k := range t.VMs {
				if len(t.VMs[k].SecurityGroups) > 0 {
					return fmt.Sprintf("vpcs[%d].tiers[%d].vms[%d].security_groups", i, j, k)
				}
			}
		}
	}
	if len(b.SecurityGroups) > 0 {
		return "security_groups"
	}
	return ""
}

// ACLByName returns the VPC's ACL list called name, or nil (also for the
// built-in lists, which are not declared).
func (p *VPC) ACLByName(name string) *ACLList {
	for i := range p.ACLs {
		if p.ACLs[i].Name == name {
			return &p.ACLs[i]
		}
	}
	return nil
}

// SecurityGroupByName returns the security group called name, or nil.
func (b *Blueprint) SecurityGroupByName(name string) *SecurityGroup {
	for i := range b.SecurityGroups {
		if b.SecurityGroups[i].Name == name {
			return &b.SecurityGroups[i]
		}
	}
	return nil
}

// parseProtocol parses a rule's protocol: a name or an IP protocol number
// (1, 6 and 17 are icmp, tcp and udp). The message is "" or the problem.
func parseProtocol(s string) (m TrafficMatch, msg string) {
	switch s {
	case ProtoNameAll:
		m.AnyProto = true
		return m, ""
	case ProtoNameTCP:
		m.Proto = ProtoTCP
		return m, ""
	case ProtoNameUDP:
		m.Proto = ProtoUDP
		return m, ""
	case ProtoNameICMP:
		m.Proto = ProtoICMP
		return m, ""
	case "":
		return m, "protocol is missing: use tcp, udp, icmp, all, or an IP protocol number 1..255"
	}
	switch strings.ToLower(s) {
	case ProtoNameAll, ProtoNameTCP, ProtoNameUDP, ProtoNameICMP:
		return m, fmt.Sprintf("protocol %q must be lower case: write protocol: %s", s, strings.ToLower(s))
	case "icmpv6", "ipv6-icmp":
		return m, fmt.Sprintf("protocol %q: IPv6 is not supported yet (vpcflow drops guest IPv6); remove the rule", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return m, fmt.Sprintf("protocol %q is not known: use tcp, udp, icmp, all, or an IP protocol number 1..255", s)
	}
	if n < 1 || n > 255 {
		return m, fmt.Sprintf("protocol number %d is outside 1..255: use an IP protocol number, or all", n)
	}
	if n == 58 {
		return m, "protocol 58 is ICMPv6: IPv6 is not supported yet (vpcflow drops guest IPv6); remove the rule"
	}
	m.Proto = uint8(n)
	return m, ""
}

// parsePorts parses "N" or "N-M" (1..65535, N <= M).
func parsePorts(s string) (PortRange, string) {
	bad := fmt.Sprintf("ports %q is not a port or a range: write one port (80) or a range (1024-65535)", s)
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(strings.TrimSpace(lo))
	if err != nil {
		return PortRange{}, bad
	}
	b := a
	if isRange {
		if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil {
			return PortRange{}, bad
		}
	}
	for _, p := range []int{a, b} {
		if p < 1 || p > 65535 {
			return PortRange{}, fmt.Sprintf("port %d in ports %q is outside 1..65535: ports are 1..65535 (omit ports for every port)", p, s)
		}
	}
	if a > b {
		return PortRange{}, fmt.Sprintf("port range %q is out of order: write %d-%d", s, b, a)
	}
	return PortRange{uint16(a), uint16(b)}, ""
}

// parsePolicyPrefix parses one prefix of a rule's cidrs: canonical IPv4
// (IPv6 is refused with its own message: the model holds it, the flows do
// not yet).
func parsePolicyPrefix(s string) (netip.Prefix, string) {
	if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is6() && !p.Addr().Is4In6() {
		return p, fmt.Sprintf("cidr %s is IPv6: IPv6 is not supported yet (vpcflow drops guest IPv6); remove it", s)
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
		return netip.Prefix{}, fmt.Sprintf("cidr %s is IPv6: IPv6 is not supported yet (vpcflow drops guest IPv6); remove it", s)
	}
	p, msg := parsePrefix4(s)
	if msg != "" && strings.Contains(msg, "no prefix length") {
		msg = fmt.Sprintf("cidr %q has no prefix length: write %s/32 for one address", s, s)
	}
	return p, msg
}

// The canonical (hashed) forms of the policy keys: the values as written,
// in order. Blueprint.Hash leaves them out when empty, so a policy-free
// blueprint hashes as before the policy model existed.
type canonRule struct {
	Number             int    `json:",omitempty"`
	Action, Direction  string `json:",omitempty"`
	Protocol, Ports    string
	ICMPType, ICMPCode *int `json:",omitempty"`
	ICMPSet            bool `json:",omitempty"`
	CIDRs              []string
	Groups             []string `json:",omitempty"`
}

type canonACL struct {
	Name  string
	Rules []canonRule
}

type canonSG struct {
	Name            string
	Ingress, Egress []canonRule
}

func canonMatch(r *canonRule, icmp *ICMPSpec) {
	if icmp != nil {
		r.ICMPSet, r.ICMPType, r.ICMPCode = true, icmp.Type, icmp.Code
	}
}

func canonACLs(ls []ACLList) []canonACL {
	var out []canonACL
	for _, l := range ls {
		c := canonACL{Name: l.Name, Rules: []canonRule{}}
		for _, r := range l.Rules {
			cr := canonRule{Number: r.Number, Action: r.Action, Direction: r.Direction, Protocol: r.Protocol, Ports: r.Ports, CIDRs: r.CIDRs}
			canonMatch(&cr, r.ICMP)
			c.Rules = append(c.Rules, cr)
		}
		out = append(out, c)
	}
	return out
}

func canonSGs(gs []SecurityGroup) []canonSG {
	var out []canonSG
	conv := func(rs []SGRule) []canonRule {
		out := []canonRule{}
		for _, r := range rs {
			cr := canonRule{Protocol: r.Protocol, Ports: r.Ports, CIDRs: r.CIDRs, Groups: r.Groups}
			canonMatch(&cr, r.ICMP)
			out = append(out, cr)
		}
		return out
	}
	for _, g := range gs {
		out = append(out, canonSG{Name: g.Name, Ingress: conv(g.Ingress), Egress: conv(g.Egress)})
	}
	return out
}

// PortMask is one value/mask match on a 16-bit transport port
// (tp_dst=Value/Mask): the ports p with p&Mask == Value.
type PortMask struct{ Value, Mask uint16 }

func (m PortMask) String() string {
	if m.Mask == 0xffff {
		return strconv.Itoa(int(m.Value))
	}
	return fmt.Sprintf("0x%04x/0x%04x", m.Value, m.Mask)
}

// Contains reports whether port p matches.
func (m PortMask) Contains(p uint16) bool { return p&m.Mask == m.Value }

// Prefixes covers the range with the fewest value/mask matches, each an
// aligned power-of-two block (a bit prefix), disjoint, in ascending order:
// a range compiles to at most 2*16-2 matches (1-65535 to 16), never one
// flow per port.
func (r PortRange) Prefixes() []PortMask {
	var out []PortMask
	lo, hi := uint32(r.Lo), uint32(r.Hi)
	for lo <= hi {
		// The largest aligned block starting at lo that stays inside.
		size := uint32(1)
		for lo%(size*2) == 0 && lo+size*2-1 <= hi && size < 1<<16 {
			size *= 2
		}
		out = append(out, PortMask{Value: uint16(lo), Mask: uint16(^(size - 1))})
		lo += size
	}
	return out
}
