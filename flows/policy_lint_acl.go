package flows

// The ACL part of the policy lint: shadowed rules (exact, by box
// subtraction), wide administrative ports, host service ports that
// mgmt_guard drops, unused lists, tiers that accept nothing.

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// aclRule is one rule of a list in judging order, with its index in the
// list and its boxes.
type aclRule struct {
	k     int
	r     *ACLRule
	boxes []mbox
	hull  mbox // bounding box of boxes
}

// Shadow states of a rule.
const (
	ruleLive     = iota // decides some packet
	ruleShadowed        // earlier rules decide all of its packets
	ruleComplex         // not checked: the work bound was reached
)

// shadowResult is the shadow analysis of one rule.
type shadowResult struct {
	state int
	// deciders are the earlier rules (indexes into the ordered rules) that
	// decide part of this rule's packets, in order.
	deciders []int
	// residual is the set of packets the rule decides (state live).
	residual region
	// outOfBudget: complex because the lint's work budget ran out (not
	// because of this rule's own overlap).
	outOfBudget bool
}

// orderedRules returns list l's rules of direction dir in judging order
// (lowest number first).
func orderedRules(l *ACLList, dir string) []aclRule {
	var out []aclRule
	for k := range l.Rules {
		r := &l.Rules[k]
		if r.Direction != dir {
			continue
		}
		a := aclRule{k: k, r: r, boxes: matchBoxes(&r.Match, nil)}
		a.hull = hullOf(a.boxes)
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].r.Number < out[j].r.Number })
	return out
}

// hullOf is the bounding box of bs (an empty box, lo > hi, for none).
func hullOf(bs []mbox) mbox {
	var h mbox
	for d := 0; d < nDims; d++ {
		h[d] = ival{1, 0}
	}
	for i, b := range bs {
		for d := 0; d < nDims; d++ {
			if i == 0 || b[d].lo < h[d].lo {
				h[d].lo = b[d].lo
			}
			if i == 0 || b[d].hi > h[d].hi {
				h[d].hi = b[d].hi
			}
		}
	}
	return h
}

// shadow analyses ordered rules: for each, the packets it decides (its
// match minus the matches of every earlier rule).
func shadow(rules []aclRule, bud *budget) []shadowResult {
	res := make([]shadowResult, len(rules))
	for i := range rules {
		reg, ok := disjoint(rules[i].boxes, bud)
		for e := 0; ok && e < i && len(reg) > 0; e++ {
			if !bud.spend(1) {
				ok = false
				break
			}
			if !rules[e].hull.intersects(&rules[i].hull) {
				continue
			}
			var hit bool
			if reg, hit, ok = reg.minusAll(rules[e].boxes, bud); ok && hit {
				res[i].deciders = append(res[i].deciders, e)
			}
		}
		switch {
		case !ok:
			res[i] = shadowResult{state: ruleComplex, outOfBudget: bud.left < 0}
		case len(reg) == 0:
			res[i].state = ruleShadowed
		default:
			res[i].state, res[i].residual = ruleLive, reg
		}
	}
	return res
}

func aclPath(vi, li, k int) string { return fmt.Sprintf("vpcs[%d].acls[%d].rules[%d]", vi, li, k) }

// describeACLRule renders "#30 (deny tcp 22 from 10.2.0.0/16)".
func (l *linter) describeACLRule(r *ACLRule) string {
	way := "from"
	if r.Direction == DirEgress {
		way = "to"
	}
	return fmt.Sprintf("#%d (%s %s %s %s)", r.Number, r.Action, r.Match.String(), way, l.remoteString(&r.Match, nil))
}

func numbers(rules []aclRule, idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, fmt.Sprintf("#%d", rules[i].r.Number))
	}
	return out
}

func (l *linter) lintACLs() {
	for vi := range l.bp.VPCs {
		p := &l.bp.VPCs[vi]
		users := map[string][]*Tier{}
		for j := range p.Tiers {
			if a := p.Tiers[j].ACL; a != "" {
				users[a] = append(users[a], &p.Tiers[j])
			}
		}
		ingressAllow := map[string]bool{} // list -> an ingress allow rule can match
		for li := range p.ACLs {
			al := &p.ACLs[li]
			if len(users[al.Name]) == 0 {
				l.add(LintWarning, LintACLUnused, fmt.Sprintf("vpcs[%d].acls[%d]", vi, li),
					fmt.Sprintf("name it in a tier's acl: (vpcs[%d].tiers[].acl: %s), or remove the list", vi, al.Name), nil,
					"ACL list %s of VPC %s is used by no tier: its rules judge nothing", al.Name, p.Name)
			}
			for _, dir := range []string{DirIngress, DirEgress} {
				rules := orderedRules(al, dir)
				res := shadow(rules, &l.bud)
				l.shadowFindings(vi, li, rules, res)
				for i := range rules {
					if rules[i].r.Action != ActionAllow || res[i].state == ruleShadowed {
						continue
					}
					if dir == DirIngress {
						ingressAllow[al.Name] = true
						l.wideAdminACL(vi, li, &rules[i], &res[i])
					}
					l.hostPortACL(vi, li, &rules[i], users[al.Name])
				}
			}
		}
		for j := range p.Tiers {
			t := &p.Tiers[j]
			al := p.ACLByName(t.ACL)
			if al == nil || ingressAllow[al.Name] {
				continue
			}
			in, eg := 0, 0
			for k := range al.Rules {
				if al.Rules[k].Direction == DirIngress {
					in++
				} else {
					eg++
				}
			}
			field := fmt.Sprintf("vpcs[%d].tiers[%d].acl", vi, j)
			fix := "add an ingress allow rule for what the tier serves; if it serves nothing, ignore this note"
			switch {
			case in == 0 && eg > 0:
				l.add(LintInfo, LintACLEgressOnly, field, fix, nil,
					"tier %s/%s: acl %s has egress rules only, and ingress is denied when no rule matches: the tier accepts no new connection from other tiers or outside the VPC: intended?", p.Name, t.Name, al.Name)
			case in == 0:
				l.add(LintInfo, LintACLNoIngressAllow, field, fix, nil,
					"tier %s/%s: acl %s has no rules, and ingress is denied when no rule matches: the tier accepts no new connection from other tiers or outside the VPC: intended?", p.Name, t.Name, al.Name)
			default:
				l.add(LintInfo, LintACLNoIngressAllow, field, fix, nil,
					"tier %s/%s: acl %s has no ingress allow rule that can match, and ingress is denied when no rule matches: the tier accepts no new connection from other tiers or outside the VPC: intended?", p.Name, t.Name, al.Name)
			}
		}
	}
}

// shadowFindings reports the shadowed and unchecked rules of one list
// direction.
func (l *linter) shadowFindings(vi, li int, rules []aclRule, res []shadowResult) {
	unchecked := 0
	for i := range rules {
		r := rules[i].r
		path := aclPath(vi, li, rules[i].k)
		switch res[i].state {
		case ruleComplex:
			if res[i].outOfBudget {
				unchecked++
				continue
			}
			l.add(LintWarning, LintTooComplex, path, "split the rule's cidrs over fewer rules, or summarise them into wider prefixes", nil,
				"rule %s was not checked for shadowing: its overlap with the rules above it needs more than %d boxes", l.describeACLRule(r), maxRegionBoxes)
			continue
		case ruleLive:
			continue
		}
		if len(res[i].deciders) == 0 {
			continue // matches nothing at all (not after validation: IPv4 cidrs are required)
		}
		var related []string
		var differ []string
		for _, e := range res[i].deciders {
			related = append(related, aclPath(vi, li, rules[e].k))
			if rules[e].r.Action != r.Action {
				differ = append(differ, fmt.Sprintf("#%d", rules[e].r.Number))
			}
		}
		by := andList(numbers(rules, res[i].deciders))
		who := fmt.Sprintf("rule %s, numbered before it, takes", by)
		if len(res[i].deciders) > 1 {
			who = fmt.Sprintf("rules %s, numbered before it, take", by)
		}
		first := fmt.Sprintf("#%d", rules[res[i].deciders[0]].r.Number)
		switch {
		case r.Action == ActionDeny && len(differ) > 0:
			l.add(LintError, LintACLShadowedDeny, path,
				fmt.Sprintf("give #%d a number below %s if it must apply, or remove it", r.Number, first), related,
				"rule %s can never match: %s all of its traffic first, and %s what #%d would deny", l.describeACLRule(r), who, plural(differ, "allows", "allow"), r.Number)
		case len(differ) > 0:
			l.add(LintWarning, LintACLShadowedAllow, path,
				fmt.Sprintf("remove it, or give it a number below %s if that traffic should be allowed", first), related,
				"rule %s can never match (dead config): %s all of its traffic first, and %s what #%d would allow", l.describeACLRule(r), who, plural(differ, "denies", "deny"), r.Number)
		default:
			l.add(LintWarning, LintACLRedundant, path, "remove it: nothing changes", related,
				"rule %s can never match: %s all of its traffic first, with the same verdict (%s)", l.describeACLRule(r), who, r.Action)
		}
	}
	if unchecked > 0 {
		l.add(LintWarning, LintTooComplex, fmt.Sprintf("vpcs[%d].acls[%d]", vi, li), "split the blueprint's ACL lists, or summarise their cidrs into fewer, wider prefixes", nil,
			"%d rules of ACL list %s were not checked for shadowing: the lint's work bound (%d box operations) was reached", unchecked, l.bp.VPCs[vi].ACLs[li].Name, maxLintWork)
	}
}

// wideAdminACL reports the administrative ports an ingress allow still
// opens (after the rules above it) from a cidr shorter than /WideAdminBits.
func (l *linter) wideAdminACL(vi, li int, a *aclRule, res *shadowResult) {
	for n, pf := range a.r.Match.Prefixes {
		if !pf.Addr().Is4() || pf.Bits() >= WideAdminBits {
			continue
		}
		iv, _ := prefixIval(pf)
		decided := res.residual
		if res.state == ruleComplex {
			// Not checked: judge the rule as written.
			b := matchFrame(&a.r.Match)
			b[dimRemote] = iv
			decided = region{b}
		}
		var open []string
		for _, s := range AdminServices {
			if serviceWide(s, decided, iv) {
				open = append(open, s.String())
			}
		}
		if len(open) > 0 {
			l.add(LintWarning, LintWideAdminPort, fmt.Sprintf("%s.cidrs[%d]", aclPath(vi, li, a.k), n), adminFix, nil,
				"rule #%d allows administrative ports from %s (%s): %s", a.r.Number, pf, wideWords(pf), strings.Join(open, "; "))
		}
	}
}

const adminFix = "narrow cidrs to the addresses that administer these VMs (a bastion or VPN prefix), or give administrative ports their own rule with a narrow cidr"

func wideWords(pf netip.Prefix) string {
	if pf.Bits() == 0 {
		return "any address"
	}
	return fmt.Sprintf("a /%d, %d addresses", pf.Bits(), uint64(1)<<(32-pf.Bits()))
}

// serviceWide reports whether region r (disjoint boxes) lets a port of s
// through from more than 2^(32-WideAdminBits) addresses of iv.
func serviceWide(s AdminService, r region, iv ival) bool {
	const limit = uint64(1) << (32 - WideAdminBits)
	for _, proto := range s.Protos {
		for port := uint64(s.Ports.Lo); port <= uint64(s.Ports.Hi); port++ {
			pt := [nDims]uint64{uint64(proto), port, 0, 0, 0}
			var n uint64
			for i := range r {
				b := &r[i]
				pt[dimRemote] = b[dimRemote].lo
				if !b.contains(&pt) {
					continue
				}
				lo, hi := max(b[dimRemote].lo, iv.lo), min(b[dimRemote].hi, iv.hi)
				if lo <= hi {
					n += hi - lo + 1
				}
			}
			if n > limit {
				return true
			}
		}
	}
	return false
}

// hostPorts reports whether every port a match opens is a host service
// port (management.host_ports), and names them.
func (l *linter) hostPorts(m *TrafficMatch) (string, bool) {
	if !m.HasPorts() || int(m.Ports.Hi)-int(m.Ports.Lo)+1 > len(l.bp.Management.HostPorts) {
		return "", false
	}
	set := map[uint16]bool{}
	for _, p := range l.bp.Management.HostPorts {
		set[p] = true
	}
	for p := int(m.Ports.Lo); p <= int(m.Ports.Hi); p++ {
		if !set[uint16(p)] {
			return "", false
		}
	}
	return m.ProtoString() + "/" + m.Ports.String(), true
}

// tierIvals are the address intervals of p's tiers other than except.
func tierIvals(p *VPC, except *Tier) []ival {
	var out []ival
	for j := range p.Tiers {
		if t := &p.Tiers[j]; t != except {
			if iv, ok := prefixIval(t.Prefix); ok {
				out = append(out, iv)
			}
		}
	}
	return out
}

const mgmtGuardWords = "mgmt_guard drops guest traffic to host service ports outside the sender's own tier"

const hostPortFix = "remove the rule (guests reach a host service port only inside their own tier, or between the tiers of a routing: distributed VPC), or remove the port from management.host_ports if guests must reach it"

// hostPortACL reports an allow of host service ports only, which the
// management guard drops for every tier that uses the list: egress leaves
// the tier (the guard drops it at the sending guest, unless routing:
// distributed takes it to another tier), ingress comes from guests of
// other tiers of a routing: router VPC (dropped at their guard) or from
// the tier itself (never judged by the ACL).
func (l *linter) hostPortACL(vi, li int, a *aclRule, users []*Tier) {
	ports, ok := l.hostPorts(&a.r.Match)
	if !ok || len(users) == 0 {
		return
	}
	p := &l.bp.VPCs[vi]
	var remote []ival
	for _, b := range a.boxes {
		remote = append(remote, b[dimRemote])
	}
	if a.r.Direction == DirIngress && p.IsDistributed() {
		return // other tiers reach the port, routed in the switch
	}
	for _, t := range users {
		others := tierIvals(p, t)
		own, _ := prefixIval(t.Prefix)
		if a.r.Direction == DirEgress {
			if p.IsDistributed() && ivalsMeet(remote, others) {
				return
			}
			continue
		}
		if !ivalsCover(remote, append(others, own)) {
			return
		}
	}
	why := "out of the tier"
	if a.r.Direction == DirIngress {
		why = fmt.Sprintf("from %s, guests of VPC %s's tiers, which reach this tier through the router (routing: router)", l.remoteString(&a.r.Match, nil), p.Name)
	}
	l.add(LintWarning, LintHostPortDropped, aclPath(vi, li, a.k), hostPortFix, nil,
		"rule #%d allows %s (a host service port, management.host_ports) %s: never effective: %s", a.r.Number, ports, why, mgmtGuardWords)
}

// plural picks the verb form for the subjects names.
func plural(names []string, one, many string) string {
	if len(names) > 1 {
		return andList(names) + " " + many
	}
	return andList(names) + " " + one
}
