package cloudstack

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/vpcflow/vpcflow/flows"
)

// The policy part of Build: network ACL lists onto vpcs[].acls and
// tiers[].acl, security groups onto security_groups and the default NIC's
// vms[].security_groups. What cannot be expressed is left out and listed,
// never widened: an allow rule is dropped, a deny that cannot be written
// replaces its whole list by default_deny (docs/cloudstack.md "Network
// ACLs and security groups").

// policyState indexes the fetched policy objects for one build.
type policyState struct {
	lists  map[string]*ACLList
	items  map[string][]*ACLItem // by list id, sorted by number then id
	mapped map[string]*mappedList
	groups map[string]*SecurityGroup
	byName map[string][]*SecurityGroup
	nets   map[string]*Network
	placed []placedNIC // guest and router NICs in the blueprint
}

// placedNIC is a NIC written at vpcs[vpc].tiers[tier].vms[vm].
type placedNIC struct {
	vpc, tier, vm int
	src           *VM
	nic           *NIC
}

// mappedList is a CloudStack list in blueprint form.
type mappedList struct {
	list  *ACLList
	rules []flows.ACLRule
	items []*ACLItem // the item of each rule
	// fail: why the list cannot be written without widening access; its
	// tiers get default_deny instead.
	fail string
}

func aclListObj(l *ACLList) string { return fmt.Sprintf("network ACL list %q (id %s)", l.Name, l.ID) }

func sgObj(g *SecurityGroup) string {
	return fmt.Sprintf("security group %q (id %s, %s)", g.Name, g.ID, sgOwner(g))
}

func sgOwner(g *SecurityGroup) string {
	if g.ProjectID != "" {
		return "project " + g.ProjectID
	}
	return "account " + orDash(g.Account)
}

// claimsBuiltin reports whether l names itself CloudStack's built-in
// default_allow or default_deny (vpc id 0 and that name; CloudStack
// refuses to edit them: "Default ACL cannot be modified").
func claimsBuiltin(l *ACLList) bool {
	return l.VPCID == "" && (l.Name == flows.ACLDefaultAllow || l.Name == flows.ACLDefaultDeny)
}

// builtinConfirmed reports whether a list that claims to be a built-in has
// exactly the built-in's items: #1 ingress and #2 egress, protocol all,
// from and to anywhere, allow for default_allow and deny for
// default_deny. Only then is it written as the reserved name: a global
// list that only borrows the name is not taken for the built-in.
func (b *builder) builtinConfirmed(l *ACLList) bool {
	action := "Allow"
	if l.Name == flows.ACLDefaultDeny {
		action = "Deny"
	}
	items := b.pol.items[l.ID]
	dirs := map[string]bool{}
	for _, it := range items {
		v4, _, bad := mapCIDRs(splitCIDRList(it.CIDRList))
		if !strings.EqualFold(it.Action, action) || !strings.EqualFold(strings.TrimSpace(it.Protocol), "all") || bad != "" || len(v4) != 1 || v4[0] != "0.0.0.0/0" {
			return false
		}
		dirs[strings.ToLower(it.TrafficType)] = true
	}
	return len(items) == 2 && dirs["ingress"] && dirs["egress"]
}

func (b *builder) preparePolicy() {
	p := &policyState{lists: map[string]*ACLList{}, items: map[string][]*ACLItem{},
		mapped: map[string]*mappedList{}, groups: map[string]*SecurityGroup{}, byName: map[string][]*SecurityGroup{}, nets: map[string]*Network{}}
	for i := range b.o.ACLLists {
		p.lists[b.o.ACLLists[i].ID] = &b.o.ACLLists[i]
	}
	for i := range b.o.ACLItems {
		it := &b.o.ACLItems[i]
		p.items[it.ACLID] = append(p.items[it.ACLID], it)
	}
	for _, its := range p.items {
		sort.Slice(its, func(i, j int) bool {
			if its[i].Number.v != its[j].Number.v {
				return its[i].Number.v < its[j].Number.v
			}
			return its[i].ID < its[j].ID
		})
	}
	for i := range b.o.SecurityGroups {
		g := &b.o.SecurityGroups[i]
		p.groups[g.ID] = g
		p.byName[g.Name] = append(p.byName[g.Name], g)
	}
	for i := range b.o.Networks {
		p.nets[b.o.Networks[i].ID] = &b.o.Networks[i]
	}
	b.pol = p
}

// sgNICSkip says why a NIC is left out for its security groups: CloudStack
// applies a VM's groups to its default NIC, and when one of them is not in
// listSecurityGroups its rules are unknown. Leaving the NIC out drops its
// traffic until a fetch sees the group (fail closed).
func (b *builder) sgNICSkip(vm *VM, nic *NIC) string {
	if vm.Router || !nic.IsDefault {
		return ""
	}
	for _, r := range vm.SecurityGroups {
		if b.pol.groups[r.ID] == nil {
			return fmt.Sprintf("its security group %q (id %s) is not in listSecurityGroups, so its rules are unknown: the NIC is left out and its traffic dropped (fail closed)", r.Name, r.ID)
		}
	}
	return ""
}

// buildPolicy writes the policy into bp (vpcs as sorted by build; tiers
// maps network ids to the tiers written).
func (b *builder) buildPolicy(bp *flows.Blueprint, vpcs []*VPC, tiers map[string]tierRef) {
	netOf := map[[2]int]*Network{}
	for id, t := range tiers {
		netOf[[2]int{t.vpc, t.tier}] = b.pol.nets[id]
	}
	b.buildACLs(bp, vpcs, netOf)
	b.buildSecurityGroups(bp)
}

// mapList maps a list's items once per build (a global list may serve
// tiers of several VPCs). Dropped allow items and notes are listed; a
// deny that cannot be written fails the whole list.
func (b *builder) mapList(l *ACLList) *mappedList {
	if ml := b.pol.mapped[l.ID]; ml != nil {
		return ml
	}
	ml := &mappedList{list: l}
	b.pol.mapped[l.ID] = ml
	var skips []Skip
	for _, it := range b.pol.items[l.ID] {
		r := mapACLItem(it)
		obj := fmt.Sprintf("network ACL item #%s (id %s) of list %q", it.Number, it.ID, l.Name)
		switch {
		case r.Drop != "" && r.FailClosed:
			if ml.fail == "" {
				ml.fail = fmt.Sprintf("item #%s (id %s) cannot be written: %s", it.Number, it.ID, r.Drop)
			}
			continue
		case r.Drop != "" && r.Deny:
			// Only a deny that matches IPv6 alone is dropped without
			// failing its list: vpcflow drops guest IPv6 anyway.
			skips = append(skips, Skip{obj, "left out: " + strings.Join(append([]string{r.Drop}, r.Notes...), "; ") + " (leaving out this deny widens nothing)"})
			continue
		case r.Drop != "":
			skips = append(skips, Skip{obj, "left out (an allow: leaving it out only narrows access): " + strings.Join(append([]string{r.Drop}, r.Notes...), "; ")})
			continue
		case len(r.Notes) > 0:
			skips = append(skips, Skip{obj, strings.Join(r.Notes, "; ")})
		}
		ml.rules = append(ml.rules, r.Rule)
		ml.items = append(ml.items, it)
	}
	if ml.fail == "" {
		for i := 1; i < len(ml.rules); i++ {
			if ml.rules[i].Number == ml.rules[i-1].Number {
				ml.fail = fmt.Sprintf("items %s and %s share number %d, so their order on CloudStack's router is undefined", ml.items[i-1].ID, ml.items[i].ID, ml.rules[i].Number)
				break
			}
		}
	}
	if ml.fail == "" && len(ml.rules) > 0 && ml.rules[len(ml.rules)-1].Number > flows.MaxACLRuleNumber {
		if len(ml.rules) > flows.MaxACLRuleNumber {
			ml.fail = fmt.Sprintf("%d rules, more than a blueprint list holds (%d)", len(ml.rules), flows.MaxACLRuleNumber)
		} else {
			var ren []string
			for i := range ml.rules {
				if ml.rules[i].Number != i+1 {
					ren = append(ren, fmt.Sprintf("#%d is #%d", ml.rules[i].Number, i+1))
				}
				ml.rules[i].Number = i + 1
			}
			skips = append(skips, Skip{aclListObj(l), fmt.Sprintf("rule numbers above %d are renumbered 1..%d in CloudStack's order (%s)", flows.MaxACLRuleNumber, len(ml.rules), strings.Join(ren, ", "))})
		}
	}
	if ml.fail != "" {
		ml.rules, ml.items = nil, nil
		return ml
	}
	b.skipped = append(b.skipped, skips...)
	return ml
}

// buildACLs writes each VPC's lists (its own, and the global lists its
// tiers use) and each tier's acl.
func (b *builder) buildACLs(bp *flows.Blueprint, vpcs []*VPC, netOf map[[2]int]*Network) {
	vpcIdx := map[string]int{}
	for i, v := range vpcs {
		vpcIdx[v.ID] = i
	}
	for i := range b.o.ACLLists {
		l := &b.o.ACLLists[i]
		if _, ok := vpcIdx[l.VPCID]; l.VPCID != "" && !ok {
			b.skip(aclListObj(l), "its VPC %s is not in listVPCs", l.VPCID)
		}
	}
	for i := range b.o.ACLItems {
		if it := &b.o.ACLItems[i]; b.pol.lists[it.ACLID] == nil {
			b.skip(fmt.Sprintf("network ACL item #%s (id %s)", it.Number, it.ID), "its list %s is not in listNetworkACLLists", orDash(it.ACLID))
		}
	}
	failed := map[string][]string{} // list id -> tiers sent to default_deny
	var failOrder []string
	for vi, v := range vpcs {
		// The lists this VPC shows: its own and the global ones in use.
		var cand []*ACLList
		seen := map[string]bool{}
		for i := range b.o.ACLLists {
			if l := &b.o.ACLLists[i]; l.VPCID == v.ID {
				cand, seen[l.ID] = append(cand, l), true
			}
		}
		for ti := range bp.VPCs[vi].Tiers {
			n := netOf[[2]int{vi, ti}]
			if n == nil {
				continue
			}
			if l := b.pol.lists[n.ACLID]; l != nil && l.VPCID == "" && !claimsBuiltin(l) && !seen[l.ID] {
				cand, seen[l.ID] = append(cand, l), true
			}
		}
		sort.Slice(cand, func(i, j int) bool {
			return cand[i].Name < cand[j].Name || cand[i].Name == cand[j].Name && cand[i].ID < cand[j].ID
		})
		var ok []*mappedList
		for _, l := range cand {
			if ml := b.mapList(l); ml.fail == "" {
				ok = append(ok, ml)
			}
		}
		names, ids := make([]string, len(ok)), make([]string, len(ok))
		for i, ml := range ok {
			names[i], ids[i] = sanitize(ml.list.Name), ml.list.ID
			if names[i] == flows.ACLDefaultAllow || names[i] == flows.ACLDefaultDeny {
				names[i] += "-" + short(ml.list.ID) // a custom list may carry a built-in's name
			}
		}
		nameOf := map[string]string{}
		for k, name := range uniqueFull(names, ids) {
			ml := ok[k]
			nameOf[ml.list.ID] = name
			acl := flows.ACLList{Name: name, Rules: append([]flows.ACLRule{}, ml.rules...)}
			bp.VPCs[vi].ACLs = append(bp.VPCs[vi].ACLs, acl)
			path := fmt.Sprintf("vpcs[%d].acls[%d]", vi, k)
			b.prov[path] = aclListObj(ml.list)
			note := "cloudstack network ACL list " + ml.list.ID
			if ml.list.VPCID == "" {
				note += " (a global list)"
			}
			b.notes[path] = note
			for r, it := range ml.items {
				rp := fmt.Sprintf("%s.rules[%d]", path, r)
				b.prov[rp] = fmt.Sprintf("network ACL item #%s (id %s) of list %q", it.Number, it.ID, ml.list.Name)
				b.notes[rp] = "cloudstack network ACL item " + it.ID
			}
		}
		for ti := range bp.VPCs[vi].Tiers {
			t := &bp.VPCs[vi].Tiers[ti]
			n := netOf[[2]int{vi, ti}]
			if n == nil {
				continue
			}
			path := fmt.Sprintf("vpcs[%d].tiers[%d]", vi, ti)
			obj := netObj(n)
			l := b.pol.lists[n.ACLID]
			switch {
			case n.ACLID == "":
				t.ACL = flows.ACLDefaultDeny
				b.skip(obj, "no aclid: the tier gets default_deny (CloudStack's own choice for a VPC tier without a list; fail closed)")
			case l == nil:
				t.ACL = flows.ACLDefaultDeny
				b.skip(obj, "its aclid %s is not in listNetworkACLLists: the tier gets default_deny (fail closed)", n.ACLID)
			case claimsBuiltin(l) && b.builtinConfirmed(l):
				t.ACL = l.Name
			case claimsBuiltin(l):
				t.ACL = flows.ACLDefaultDeny
				b.skip(obj, "its list %q (id %s) has the built-in's name but not its items (#1 ingress and #2 egress, all, %s): the tier gets default_deny (fail closed)", l.Name, l.ID, strings.ToLower(strings.TrimPrefix(l.Name, "default_")))
			case l.VPCID != "" && l.VPCID != v.ID:
				t.ACL = flows.ACLDefaultDeny
				b.skip(obj, "its %s belongs to VPC %s, not to its own VPC: the tier gets default_deny (fail closed)", aclListObj(l), l.VPCID)
			case b.mapList(l).fail != "":
				t.ACL = flows.ACLDefaultDeny
				if failed[l.ID] == nil {
					failOrder = append(failOrder, l.ID)
				}
				failed[l.ID] = append(failed[l.ID], bp.VPCs[vi].Name+"/"+t.Name)
			default:
				t.ACL = nameOf[l.ID]
			}
			b.notes[path] += fmt.Sprintf("; acl %s from cloudstack list %s", t.ACL, orDash(n.ACLID))
		}
		// Own lists that failed and no tier uses are listed too.
		for _, l := range cand {
			if ml := b.pol.mapped[l.ID]; ml.fail != "" && failed[l.ID] == nil {
				failOrder, failed[l.ID] = append(failOrder, l.ID), []string{}
			}
		}
	}
	for _, id := range failOrder {
		ml := b.pol.mapped[id]
		tiers := "no tier uses it"
		if len(failed[id]) > 0 {
			tiers = "its tiers (" + strings.Join(failed[id], ", ") + ") get default_deny"
		}
		b.skip(aclListObj(ml.list), "%s; leaving out a deny would widen access, so the whole list is left out and %s (fail closed)", ml.fail, tiers)
	}
}

// buildSecurityGroups writes the groups of the default guest NICs (and the
// groups their rules name), and each such NIC's security_groups.
func (b *builder) buildSecurityGroups(bp *flows.Blueprint) {
	var used []*SecurityGroup
	inUse := map[string]bool{}
	add := func(g *SecurityGroup) {
		if g != nil && !inUse[g.ID] {
			inUse[g.ID] = true
			used = append(used, g)
		}
	}
	for _, pn := range b.pol.placed {
		if pn.nic.IsDefault && !pn.src.Router {
			for _, r := range pn.src.SecurityGroups {
				add(b.pol.groups[r.ID]) // known: sgNICSkip left out NICs with unknown groups
			}
		}
	}
	for i := 0; i < len(used); i++ { // used grows with the groups rules name
		for _, rules := range [][]SGRule{used[i].Ingress, used[i].Egress} {
			for k := range rules {
				if rules[k].SecurityGroupName != "" {
					g, _ := b.resolveGroup(used[i], rules[k].Account, rules[k].SecurityGroupName)
					add(g)
				}
			}
		}
	}
	sort.Slice(used, func(i, j int) bool {
		a, c := sanitize(used[i].Name), sanitize(used[j].Name)
		return a < c || a == c && used[i].ID < used[j].ID
	})
	names, ids := make([]string, len(used)), make([]string, len(used))
	for i, g := range used {
		names[i], ids[i] = sanitize(g.Name), g.ID
	}
	nameOf := map[string]string{}
	for i, n := range uniqueFull(names, ids) {
		nameOf[used[i].ID] = n
	}
	for i, g := range used {
		sg := flows.SecurityGroup{Name: nameOf[g.ID], Ingress: []flows.SGRule{}, Egress: []flows.SGRule{}}
		path := fmt.Sprintf("security_groups[%d]", i)
		b.prov[path] = sgObj(g)
		b.notes[path] = fmt.Sprintf("cloudstack security group %s, %s", g.ID, sgOwner(g))
		for _, d := range []struct {
			name  string
			rules []SGRule
			out   *[]flows.SGRule
		}{{flows.DirIngress, g.Ingress, &sg.Ingress}, {flows.DirEgress, g.Egress, &sg.Egress}} {
			// By rule id: the same rules give the same blueprint, whatever
			// order CloudStack lists them in (a group's rules are a union).
			rules := make([]*SGRule, len(d.rules))
			for k := range d.rules {
				rules[k] = &d.rules[k]
			}
			sort.SliceStable(rules, func(a, c int) bool { return rules[a].RuleID < rules[c].RuleID })
			for _, r := range rules {
				mr := mapSGRule(g, r, b.resolveGroup)
				obj := fmt.Sprintf("%s %s rule %s", sgObj(g), d.name, orDash(r.RuleID))
				if mr.Drop != "" {
					b.skip(obj, "left out (security group rules only allow: leaving one out only narrows access): %s", strings.Join(append([]string{mr.Drop}, mr.Notes...), "; "))
					continue
				}
				if len(mr.Notes) > 0 {
					b.skip(obj, "%s", strings.Join(mr.Notes, "; "))
				}
				rule := mr.Rule
				if mr.Group != nil {
					rule.Groups = []string{nameOf[mr.Group.ID]}
				}
				rp := fmt.Sprintf("%s.%s[%d]", path, d.name, len(*d.out))
				*d.out = append(*d.out, rule)
				b.prov[rp] = obj
				b.notes[rp] = "cloudstack rule " + orDash(r.RuleID)
			}
		}
		if len(g.Egress) > 0 && len(sg.Egress) == 0 {
			// CloudStack restricts egress once a group has egress rules;
			// an empty egress list would allow all. Keep it restricted.
			sg.Egress = append(sg.Egress, flows.SGRule{Protocol: flows.ProtoNameAll, CIDRs: []string{"0.0.0.0/32"}})
			rp := fmt.Sprintf("%s.egress[0]", path)
			b.prov[rp] = sgObj(g)
			b.notes[rp] = "placeholder: matches nothing, keeps egress restricted"
			b.skip(sgObj(g), "none of its %d egress rules can be written: egress stays restricted by a rule that matches nothing (0.0.0.0/32), as an empty egress list would allow all", len(g.Egress))
		}
		bp.SecurityGroups = append(bp.SecurityGroups, sg)
	}
	for _, pn := range b.pol.placed {
		if !pn.nic.IsDefault || pn.src.Router || len(pn.src.SecurityGroups) == 0 {
			continue
		}
		var gs []string
		for _, r := range pn.src.SecurityGroups {
			gs = append(gs, nameOf[r.ID])
		}
		sort.Strings(gs)
		gs = slices.Compact(gs)
		bp.VPCs[pn.vpc].Tiers[pn.tier].VMs[pn.vm].SecurityGroups = gs
	}
}

// resolveGroup finds the group a rule names: CloudStack resolves
// usersecuritygrouplist (account, group) in the rule owner's domain.
func (b *builder) resolveGroup(owner *SecurityGroup, account, name string) (*SecurityGroup, string) {
	var found []*SecurityGroup
	for _, g := range b.pol.byName[name] {
		if g.Account == account && (owner.DomainID == "" || g.DomainID == owner.DomainID) {
			found = append(found, g)
		}
	}
	switch len(found) {
	case 1:
		return found[0], ""
	case 0:
		return nil, fmt.Sprintf("it names security group %q of account %q, which listSecurityGroups does not show in the owner's domain", name, orDash(account))
	}
	return nil, fmt.Sprintf("it names security group %q of account %q, which listSecurityGroups shows %d times", name, orDash(account), len(found))
}

// uniqueFull is unique, falling back to the whole object id where the
// first 8 characters of two ids are the same.
func uniqueFull(names, ids []string) []string {
	out := unique(names, ids)
	n := map[string]int{}
	for _, s := range out {
		n[s]++
	}
	for i, s := range out {
		if n[s] > 1 {
			out[i] = sanitize(names[i] + "-" + ids[i])
		}
	}
	return out
}
