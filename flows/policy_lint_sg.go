package flows

// The security group part of the policy lint: redundant rules (within a
// group, and across each member's groups), wide administrative ports, host
// service ports that mgmt_guard drops, unused groups, references to groups
// with no member in the judged VPC.

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

func sgPath(gi int, dir string, k int) string {
	return fmt.Sprintf("security_groups[%d].%s[%d]", gi, dir, k)
}

func sgRules(g *SecurityGroup, dir string) []SGRule {
	if dir == DirEgress {
		return g.Egress
	}
	return g.Ingress
}

// describeSGRule renders "sg db-sg ingress[1] (tcp 7000-7010 from 10.2.1.0/24)".
func (l *linter) describeSGRule(g *SecurityGroup, dir string, k int) string {
	r := &sgRules(g, dir)[k]
	way := "from"
	if dir == DirEgress {
		way = "to"
	}
	return fmt.Sprintf("%s (%s %s %s)", SGRuleName(g.Name, dir, k), r.Match.String(), way, l.remoteString(&r.Match, r.Groups))
}

func (l *linter) lintSGs() {
	referenced := map[int]bool{}
	for gi := range l.bp.SecurityGroups {
		g := &l.bp.SecurityGroups[gi]
		for _, dir := range []string{DirIngress, DirEgress} {
			for _, r := range sgRules(g, dir) {
				for _, ref := range r.GroupRefs {
					referenced[ref] = true
				}
			}
		}
	}
	for gi := range l.bp.SecurityGroups {
		g := &l.bp.SecurityGroups[gi]
		if len(l.members[gi]) == 0 && !referenced[gi] {
			l.add(LintWarning, LintSGUnused, fmt.Sprintf("security_groups[%d]", gi),
				fmt.Sprintf("add it to a VM (vms[].security_groups: [%s]), or remove the group", g.Name), nil,
				"security group %s is used by no VM and referenced by no rule: it has no effect", g.Name)
		}
		for _, dir := range []string{DirIngress, DirEgress} {
			removed := l.sgRedundant(gi, dir)
			l.sgRedundantMembers(gi, dir, removed)
			for k := range sgRules(g, dir) {
				if removed[k] {
					continue
				}
				l.sgEmptyRefs(gi, dir, k)
				if dir == DirIngress {
					l.wideAdminSG(gi, k)
				}
				l.hostPortSG(gi, dir, k)
			}
		}
	}
}

// sgRedundant reports the rules of group gi (direction dir) that allow
// nothing the group's other rules do not. From the last rule up, so of two
// equal rules the later is reported and the earlier kept; a reported rule
// no longer counts as cover, so the rules left allow what all did.
func (l *linter) sgRedundant(gi int, dir string) []bool {
	g := &l.bp.SecurityGroups[gi]
	rules := sgRules(g, dir)
	boxes := make([][]mbox, len(rules))
	for k := range rules {
		boxes[k] = matchBoxes(&rules[k].Match, rules[k].GroupRefs)
	}
	removed := make([]bool, len(rules))
	for k := len(rules) - 1; k >= 0; k-- {
		reg, ok := disjoint(boxes[k], &l.bud)
		var cover []int
		for j := 0; ok && j < len(rules) && len(reg) > 0; j++ {
			if j == k || removed[j] {
				continue
			}
			var hit bool
			if reg, hit, ok = reg.minusAll(boxes[j], &l.bud); ok && hit {
				cover = append(cover, j)
			}
		}
		path := sgPath(gi, dir, k)
		switch {
		case !ok && l.bud.left < 0:
			l.budgetSpent()
		case !ok:
			l.add(LintWarning, LintTooComplex, path, "split the rule's cidrs over fewer rules, or summarise them into wider prefixes", nil,
				"%s was not checked for redundancy: its overlap with the group's other rules needs more than %d boxes", l.describeSGRule(g, dir, k), maxRegionBoxes)
		case len(reg) == 0:
			removed[k] = true
			var names, related []string
			for _, j := range cover {
				names = append(names, SGRuleName(g.Name, dir, j))
				related = append(related, sgPath(gi, dir, j))
			}
			l.add(LintWarning, LintSGRedundant, path, "remove it: nothing changes", related,
				"%s allows nothing new: %s all of it already", l.describeSGRule(g, dir, k), plural(names, "allows", "allow"))
		}
	}
	return removed
}

// sgRedundantMembers reports (info) a rule of group gi that every member's
// other groups already cover: it changes nothing today, but would for a VM
// that joins gi alone.
func (l *linter) sgRedundantMembers(gi int, dir string, removed []bool) {
	g := &l.bp.SecurityGroups[gi]
	rules := sgRules(g, dir)
	ms := l.members[gi]
	if len(ms) == 0 {
		return
	}
	for k := range rules {
		if removed[k] {
			continue
		}
		own := matchBoxes(&rules[k].Match, rules[k].GroupRefs)
		coveredAll, ok := true, true
		relatedSet := map[string]bool{}
		checked := map[string]bool{} // members with the same groups cover the same (references are symbolic)
		for _, m := range ms {
			key := strings.Join(m.VM.SecurityGroups, ",")
			if checked[key] {
				continue
			}
			checked[key] = true
			reg, rok := disjoint(own, &l.bud)
			ok = rok
			for j := 0; ok && j < len(rules) && len(reg) > 0; j++ {
				if j == k || removed[j] {
					continue
				}
				var hit bool
				if reg, hit, ok = reg.minusAll(matchBoxes(&rules[j].Match, rules[j].GroupRefs), &l.bud); ok && hit {
					relatedSet[sgPath(gi, dir, j)] = true
				}
			}
			for _, name := range m.VM.SecurityGroups {
				hi := l.sgIdx[name]
				if hi == gi {
					continue
				}
				h := &l.bp.SecurityGroups[hi]
				hr := sgRules(h, dir)
				for j := 0; ok && j < len(hr) && len(reg) > 0; j++ {
					var hit bool
					if reg, hit, ok = reg.minusAll(matchBoxes(&hr[j].Match, hr[j].GroupRefs), &l.bud); ok && hit {
						relatedSet[sgPath(hi, dir, j)] = true
					}
				}
			}
			if !ok || len(reg) > 0 {
				coveredAll = false
				break
			}
		}
		if !ok || !coveredAll {
			continue
		}
		var related, names, vms []string
		for p := range relatedSet {
			related = append(related, p)
		}
		sort.Strings(related)
		for _, p := range related {
			names = append(names, l.sgPathName(p))
		}
		for _, m := range ms {
			vms = append(vms, m.VM.Name)
		}
		l.add(LintInfo, LintSGRedundantMember, sgPath(gi, dir, k),
			fmt.Sprintf("keep it if a VM may carry %s without those groups; otherwise remove it", g.Name), related,
			"%s changes nothing today: every member of %s (%s) also carries other groups, and %s all of it already", l.describeSGRule(g, dir, k), g.Name, strings.Join(vms, ", "), plural(names, "allows", "allow"))
	}
}

// sgPathName turns "security_groups[2].ingress[0]" into "sg ops-sg ingress[0]".
func (l *linter) sgPathName(path string) string {
	var gi, k int
	var rest string
	if _, err := fmt.Sscanf(path, "security_groups[%d].%s", &gi, &rest); err != nil || gi < 0 || gi >= len(l.bp.SecurityGroups) {
		return path
	}
	dir, idx, _ := strings.Cut(rest, "[")
	if _, err := fmt.Sscanf(idx, "%d]", &k); err != nil {
		return path
	}
	return SGRuleName(l.bp.SecurityGroups[gi].Name, dir, k)
}

// judgedVPCs are the VPCs where group gi applies (its members' VPCs), in
// blueprint order, with the member names in each.
func (l *linter) judgedVPCs(gi int) ([]*VPC, map[*VPC][]string) {
	var vpcs []*VPC
	names := map[*VPC][]string{}
	for _, m := range l.members[gi] {
		if _, seen := names[m.VPC]; !seen {
			vpcs = append(vpcs, m.VPC)
		}
		names[m.VPC] = append(names[m.VPC], m.VM.Name)
	}
	return vpcs, names
}

// sgEmptyRefs reports the groups: references of a rule to a group with no
// member in a VPC where the rule's group applies: there the reference
// matches no address (references resolve inside the judged VPC).
func (l *linter) sgEmptyRefs(gi int, dir string, k int) {
	g := &l.bp.SecurityGroups[gi]
	r := &sgRules(g, dir)[k]
	vpcs, names := l.judgedVPCs(gi)
	for n, ref := range r.GroupRefs {
		var empty []string
		for _, p := range vpcs {
			if len(l.model.GroupMembers(p, ref)) == 0 {
				empty = append(empty, fmt.Sprintf("%s (members of %s there: %s)", p.Name, g.Name, strings.Join(names[p], ", ")))
			}
		}
		if len(empty) == 0 {
			continue
		}
		h := l.bp.SecurityGroups[ref].Name
		l.add(LintWarning, LintSGEmptyRef, fmt.Sprintf("%s.groups[%d]", sgPath(gi, dir, k), n),
			fmt.Sprintf("add %s to a VM of that VPC, or remove the reference (groups: resolve inside the judged VPC; VPCs may reuse addresses)", h), nil,
			"group %s has no member in VPC %s: this reference matches no address there", h, strings.Join(empty, "; VPC "))
	}
}

// wideAdminSG reports the administrative ports an ingress rule of group gi
// opens from a cidr shorter than /WideAdminBits.
func (l *linter) wideAdminSG(gi, k int) {
	r := &l.bp.SecurityGroups[gi].Ingress[k]
	for n, pf := range r.Match.Prefixes {
		if !pf.Addr().Is4() || pf.Bits() >= WideAdminBits {
			continue
		}
		iv, _ := prefixIval(pf)
		b := matchFrame(&r.Match)
		b[dimRemote] = iv
		var open []string
		for _, s := range AdminServices {
			if serviceWide(s, region{b}, iv) {
				open = append(open, s.String())
			}
		}
		if len(open) > 0 {
			l.add(LintWarning, LintWideAdminPort, fmt.Sprintf("%s.cidrs[%d]", sgPath(gi, DirIngress, k), n), adminFix, nil,
				"%s allows administrative ports from %s (%s): %s", SGRuleName(l.bp.SecurityGroups[gi].Name, DirIngress, k), pf, wideWords(pf), strings.Join(open, "; "))
		}
	}
}

// hostPortSG reports a group rule allowing host service ports only where
// the management guard drops that traffic for every member: egress to
// addresses outside the member's tier (unless routing: distributed takes
// it to another tier), ingress from guests of other tiers of a routing:
// router VPC.
func (l *linter) hostPortSG(gi int, dir string, k int) {
	g := &l.bp.SecurityGroups[gi]
	r := &sgRules(g, dir)[k]
	ports, ok := l.hostPorts(&r.Match)
	ms := l.members[gi]
	if !ok || len(ms) == 0 {
		return
	}
	for _, m := range ms {
		var remote []ival
		for _, pf := range r.Match.Prefixes {
			if iv, ok := prefixIval(pf); ok {
				remote = append(remote, iv)
			}
		}
		for _, ref := range r.GroupRefs {
			for _, a := range l.model.GroupMembers(m.VPC, ref) {
				remote = append(remote, addrIval(a))
			}
		}
		if len(remote) == 0 {
			return // matches nothing there: sg-empty-ref says so
		}
		own, _ := prefixIval(m.Tier.Prefix)
		others := tierIvals(m.VPC, m.Tier)
		if dir == DirEgress {
			reach := []ival{own}
			if m.VPC.IsDistributed() {
				reach = append(reach, others...)
			}
			if ivalsMeet(remote, reach) {
				return
			}
			continue
		}
		if m.VPC.IsDistributed() || !ivalsCover(remote, others) {
			return
		}
	}
	why := "to addresses outside every member's tier"
	if dir == DirIngress {
		why = "from guests of other tiers of the members' VPCs, which reach them through the router (routing: router)"
	}
	l.add(LintWarning, LintHostPortDropped, sgPath(gi, dir, k), hostPortFix, nil,
		"%s allows %s (a host service port, management.host_ports) %s: never effective: %s", SGRuleName(g.Name, dir, k), ports, why, mgmtGuardWords)
}

func addrIval(a netip.Addr) ival {
	v := IPValue(a)
	return ival{v, v}
}

// budgetSpent reports, once, that security group rules were left
// unchecked because the lint's work budget ran out.
func (l *linter) budgetSpent() {
	if l.sgBudgetNoted {
		return
	}
	l.sgBudgetNoted = true
	l.add(LintWarning, LintTooComplex, "security_groups", "split large groups, or summarise their cidrs into fewer, wider prefixes", nil,
		"security group rules were not all checked for redundancy: the lint's work bound (%d box operations) was reached", maxLintWork)
}
