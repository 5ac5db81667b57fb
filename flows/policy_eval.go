package flows

// The policy model: what network ACLs and security groups decide for one
// packet, written from the semantics in docs/policy.md and independent of
// the flows (the property tests compare the two). Pure Go, no I/O.

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// ConnState is the connection-tracking state a packet arrives with.
type ConnState uint8

const (
	// ConnNew is the first packet of a connection: the rules judge it.
	ConnNew ConnState = iota
	// ConnEstablished is a later packet, in the original direction, of a
	// connection: it passes while the rules still allow the connection
	// (a revoked rule cuts it, see docs/policy.md).
	ConnEstablished
	// ConnReply is a packet in the reply direction of a connection opened
	// the other way: it passes while the rules allow the original
	// direction; without such a connection it is judged as new.
	ConnReply
	// ConnInvalid is a packet conntrack cannot place (e.g. a TCP segment
	// outside any window): always dropped.
	ConnInvalid
)

func (s ConnState) String() string {
	switch s {
	case ConnNew:
		return "new"
	case ConnEstablished:
		return "established"
	case ConnReply:
		return "reply"
	case ConnInvalid:
		return "invalid"
	}
	return "state-" + strconv.Itoa(int(s))
}

// Conn is an IPv4 packet as the policy sees it.
type Conn struct {
	Proto              uint8
	Src, Dst           netip.Addr
	SrcPort, DstPort   uint16 // tcp and udp
	ICMPType, ICMPCode uint8  // icmp
}

// Reverse is the packet in the other direction (ICMP type/code kept).
func (c Conn) Reverse() Conn {
	r := c
	r.Src, r.Dst = c.Dst, c.Src
	r.SrcPort, r.DstPort = c.DstPort, c.SrcPort
	return r
}

func (c Conn) String() string {
	switch c.Proto {
	case ProtoTCP, ProtoUDP:
		name := "tcp"
		if c.Proto == ProtoUDP {
			name = "udp"
		}
		return fmt.Sprintf("%s %s:%d -> %s:%d", name, c.Src, c.SrcPort, c.Dst, c.DstPort)
	case ProtoICMP:
		return fmt.Sprintf("icmp %s -> %s type %d code %d", c.Src, c.Dst, c.ICMPType, c.ICMPCode)
	}
	return fmt.Sprintf("proto %d %s -> %s", c.Proto, c.Src, c.Dst)
}

// PolicyCheck is one judgement on a packet's path: a security group or an
// ACL list, in one direction.
type PolicyCheck struct {
	Where   string // e.g. "egress of VM web-1 (security groups web-sg)", "ingress of tier blue/db (acl default_deny)"
	Rule    string // the deciding rule, e.g. "acl blue/web-acl #20", "sg db-sg ingress[0]", "acl blue/web-acl: no ingress rule matched (denied by default)"
	Allowed bool
}

// PolicyVerdict is the model's decision on one packet.
type PolicyVerdict struct {
	Allowed bool
	State   ConnState
	// Rule names what decided: the first check that denied, or the last
	// that allowed; for an established or reply packet it says so. Empty
	// when no ACL or security group applies (today's behaviour).
	Rule   string
	Checks []PolicyCheck // the checks of the connection's original direction, in path order
}

func (v PolicyVerdict) String() string {
	verdict := "denied"
	if v.Allowed {
		verdict = "allowed"
	}
	if v.Rule == "" {
		return verdict + " (no ACL or security group applies)"
	}
	return verdict + " by " + v.Rule
}

// PolicyModel judges packets under a validated blueprint's ACLs and
// security groups.
type PolicyModel struct {
	bp *Blueprint
	// members[vpc][group]: the addresses of the group's guest members in
	// that VPC (a groups: reference resolves within the judged VPC).
	members map[*VPC]map[int][]netip.Addr
	vmByIP  map[*VPC]map[netip.Addr]VMRef
}

// NewPolicyModel indexes bp (validated).
func NewPolicyModel(bp *Blueprint) *PolicyModel {
	m := &PolicyModel{bp: bp, members: map[*VPC]map[int][]netip.Addr{}, vmByIP: map[*VPC]map[netip.Addr]VMRef{}}
	idx := map[string]int{}
	for i := range bp.SecurityGroups {
		idx[bp.SecurityGroups[i].Name] = i
	}
	for i := range bp.VPCs {
		p := &bp.VPCs[i]
		m.members[p] = map[int][]netip.Addr{}
		m.vmByIP[p] = map[netip.Addr]VMRef{}
		for j := range p.Tiers {
			t := &p.Tiers[j]
			for k := range t.VMs {
				vm := &t.VMs[k]
				m.vmByIP[p][vm.Addr] = VMRef{VPC: p, Tier: t, VM: vm}
				for _, g := range vm.SecurityGroups {
					m.members[p][idx[g]] = append(m.members[p][idx[g]], vm.Addr)
				}
			}
		}
	}
	return m
}

// GroupMembers returns the addresses of the members of security group g
// (an index into Blueprint.SecurityGroups) inside VPC p.
func (m *PolicyModel) GroupMembers(p *VPC, g int) []netip.Addr { return m.members[p][g] }

// policyEnd is one end of a packet inside a VPC.
type policyEnd struct {
	addr   netip.Addr
	tier   *Tier // nil: outside the VPC's tiers
	vm     *VM   // nil: no VM has the address
	router bool  // the address is a router NIC of the VPC (the VR itself)
}

func (m *PolicyModel) end(p *VPC, a netip.Addr) policyEnd {
	e := policyEnd{addr: a}
	if r, ok := m.vmByIP[p][a]; ok {
		e.tier, e.vm, e.router = r.Tier, r.VM, r.VM.IsRouter()
		return e
	}
	for j := range p.Tiers {
		if p.Tiers[j].Prefix.Contains(a) {
			e.tier = &p.Tiers[j]
			if p.Tiers[j].HasGateway && p.Tiers[j].GatewayAddr == a {
				e.router = true // a distributed-routing gateway answered by the switch
			}
			break
		}
	}
	return e
}

// Judge decides a packet of VPC p in state st.
func (m *PolicyModel) Judge(p *VPC, c Conn, st ConnState) PolicyVerdict {
	if st == ConnInvalid {
		return PolicyVerdict{State: st, Rule: "conntrack: invalid packet (dropped whatever the rules say)"}
	}
	if st == ConnReply {
		orig := m.judgeNew(p, c.Reverse())
		if orig.Allowed {
			orig.State = ConnReply
			if orig.Rule != "" {
				orig.Rule = "established: reply of a connection allowed by " + orig.Rule
			}
			return orig
		}
		// No connection the other way: the packet opens its own.
		v := m.judgeNew(p, c)
		return v
	}
	v := m.judgeNew(p, c)
	if st == ConnEstablished && v.Allowed {
		v.State = ConnEstablished
		if v.Rule != "" {
			v.Rule = "established: connection allowed by " + v.Rule
		}
	}
	return v
}

// Applies reports whether any ACL or security group judges traffic between
// src and dst in VPC p (either direction).
func (m *PolicyModel) Applies(p *VPC, src, dst netip.Addr) bool {
	return len(m.judgeNew(p, Conn{Proto: ProtoUDP, Src: src, Dst: dst, SrcPort: 1, DstPort: 1}).Checks) > 0 ||
		len(m.judgeNew(p, Conn{Proto: ProtoUDP, Src: dst, Dst: src, SrcPort: 1, DstPort: 1}).Checks) > 0
}

// judgeNew runs the checks of a new connection in path order: the source
// VM's security groups (egress), the source tier's ACL (egress), the
// destination tier's ACL (ingress), the destination VM's security groups
// (ingress). The first denial decides.
func (m *PolicyModel) judgeNew(p *VPC, c Conn) PolicyVerdict {
	src, dst := m.end(p, c.Src), m.end(p, c.Dst)
	v := PolicyVerdict{Allowed: true, State: ConnNew}
	add := func(ch PolicyCheck) {
		v.Checks = append(v.Checks, ch)
		if v.Allowed {
			v.Rule = ch.Rule
			v.Allowed = ch.Allowed
		}
	}
	if src.vm != nil && !src.router && len(src.vm.SecurityGroups) > 0 {
		if ch, ok := m.sgCheck(p, src.vm, DirEgress, c, c.Dst); ok {
			add(ch)
		}
	}
	crossing := src.tier != dst.tier
	// The VR's own addresses are not behind an ACL: traffic it originates
	// or receives meets no ACL chain (CloudStack's INPUT/OUTPUT, not FORWARD).
	if crossing && src.tier != nil && src.tier.ACL != "" && !src.router && !dst.router {
		add(m.aclCheck(p, src.tier, DirEgress, c, c.Dst))
	}
	if crossing && dst.tier != nil && dst.tier.ACL != "" && !dst.router && !src.router {
		add(m.aclCheck(p, dst.tier, DirIngress, c, c.Src))
	}
	if dst.vm != nil && !dst.router && len(dst.vm.SecurityGroups) > 0 {
		ch, _ := m.sgCheck(p, dst.vm, DirIngress, c, c.Src)
		add(ch)
	}
	return v
}

// ACLRuleName names rule r of list l of VPC p: "acl blue/web-acl #20".
func ACLRuleName(p *VPC, l string, number int) string {
	if l == ACLDefaultAllow || l == ACLDefaultDeny {
		return fmt.Sprintf("acl %s #%d", l, number)
	}
	return fmt.Sprintf("acl %s/%s #%d", p.Name, l, number)
}

// SGRuleName names a security group rule: "sg db-sg ingress[0]".
func SGRuleName(group, dir string, i int) string {
	return fmt.Sprintf("sg %s %s[%d]", group, dir, i)
}

// aclCheck judges c by tier t's ACL list in direction dir; remote is the
// other end's address.
func (m *PolicyModel) aclCheck(p *VPC, t *Tier, dir string, c Conn, remote netip.Addr) PolicyCheck {
	ch := PolicyCheck{Where: fmt.Sprintf("%s of tier %s/%s (acl %s)", dir, p.Name, t.Name, t.ACL)}
	switch t.ACL {
	case ACLDefaultAllow, ACLDefaultDeny:
		// CloudStack's built-ins: #1 all ingress, #2 all egress.
		n := 1
		if dir == DirEgress {
			n = 2
		}
		ch.Rule, ch.Allowed = ACLRuleName(p, t.ACL, n), t.ACL == ACLDefaultAllow
		return ch
	}
	l := p.ACLByName(t.ACL)
	for _, r := range sortedRules(l, dir) {
		if ruleMatches(&r.Match, c, remote, nil) {
			ch.Rule, ch.Allowed = ACLRuleName(p, l.Name, r.Number), r.Action == ActionAllow
			return ch
		}
	}
	if dir == DirIngress {
		ch.Rule = fmt.Sprintf("acl %s/%s: no ingress rule matched (ingress is denied by default)", p.Name, l.Name)
		return ch
	}
	ch.Rule, ch.Allowed = fmt.Sprintf("acl %s/%s: no egress rule matched (egress is allowed by default)", p.Name, l.Name), true
	return ch
}

// sortedRules returns l's rules of direction dir, lowest number first.
func sortedRules(l *ACLList, dir string) []*ACLRule {
	var out []*ACLRule
	for i := range l.Rules {
		if l.Rules[i].Direction == dir {
			out = append(out, &l.Rules[i])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out
}

// sgCheck judges c by vm's security groups in direction dir. ok is false
// for egress when none of its groups has egress rules (all egress allowed:
// no check).
func (m *PolicyModel) sgCheck(p *VPC, vm *VM, dir string, c Conn, remote netip.Addr) (PolicyCheck, bool) {
	ch := PolicyCheck{Where: fmt.Sprintf("%s of VM %s (security groups %s)", dir, vm.Name, strings.Join(vm.SecurityGroups, ", "))}
	any := false
	for _, name := range vm.SecurityGroups {
		gi := -1
		for i := range m.bp.SecurityGroups {
			if m.bp.SecurityGroups[i].Name == name {
				gi = i
			}
		}
		g := &m.bp.SecurityGroups[gi]
		rules := g.Ingress
		if dir == DirEgress {
			rules = g.Egress
		}
		for i := range rules {
			any = true
			r := &rules[i]
			if ruleMatches(&r.Match, c, remote, func(a netip.Addr) bool {
				for _, ref := range r.GroupRefs {
					for _, x := range m.members[p][ref] {
						if x == a {
							return true
						}
					}
				}
				return false
			}) {
				ch.Rule, ch.Allowed = SGRuleName(g.Name, dir, i), true
				return ch, true
			}
		}
	}
	if dir == DirEgress && !any {
		return ch, false
	}
	ch.Rule = fmt.Sprintf("sg of VM %s: no %s rule of %s allows it (%s is denied unless allowed)", vm.Name, dir, strings.Join(vm.SecurityGroups, ", "), dir)
	return ch, true
}

// ruleMatches reports whether connection c matches a rule's match with the
// remote end at remote; inGroups (security group rules) also accepts a
// remote address of a referenced group's member.
func ruleMatches(m *TrafficMatch, c Conn, remote netip.Addr, inGroups func(netip.Addr) bool) bool {
	if !m.AnyProto && m.Proto != c.Proto {
		return false
	}
	if m.HasPorts() && !m.Ports.Contains(c.DstPort) {
		return false
	}
	if !m.AnyProto && m.Proto == ProtoICMP {
		if m.ICMPType >= 0 && uint8(m.ICMPType) != c.ICMPType {
			return false
		}
		if m.ICMPCode >= 0 && uint8(m.ICMPCode) != c.ICMPCode {
			return false
		}
	}
	for _, pf := range m.Prefixes {
		if pf.Contains(remote) {
			return true
		}
	}
	return inGroups != nil && inGroups(remote)
}
