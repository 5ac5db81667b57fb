package flows

// Observing policy (docs/policy.md, "Observing policy"): the names under
// which audit, the per-rule metric, the drop log and explain report the
// rules of network ACLs and security groups, and which installed flows
// count for a rule. Pure Go, no I/O.
//
// A rule's name is the model's (PolicyModel.Judge) own wording, so the
// flow that decides a packet and the model's verdict name the same rule:
//
//	acl blue/web-acl #20                                   an ACL rule (its number)
//	acl default_deny #1                                    a built-in list's rule
//	acl blue/web-acl: no ingress rule matched (...)        a list's no-match verdict
//	sg db-sg ingress[0]                                    a security-group rule
//	sg of VM db-1: no ingress rule of db-sg allows it (...) a VM's no-match drop
//	conntrack: invalid packet (...)                        the ct-invalid drop
//
// The flows that decide are counted, never the conjunction clause flows:
// a rule with a conjunction is counted on its conj_id flow (the only flow
// that acts), a plain rule on all its flows.

import (
	"fmt"
	"sort"
	"strings"
)

// Policy verdicts of a rule.
const (
	PolicyAllow = "allow"
	PolicyDeny  = "deny"
)

// PolicyInvalidRule is the name of the ct-invalid drop (the model's).
const PolicyInvalidRule = "conntrack: invalid packet (dropped whatever the rules say)"

// PolicyRule is one policy rule as observed.
type PolicyRule struct {
	Name    string   // the model's name of the rule
	Verdict string   // PolicyAllow or PolicyDeny
	Kind    Category // CatACLRule, CatSGRule, CatACLDefault, CatSGDefault or CatCtInvalid
	Order   int      // position in the blueprint (listing order)
}

// policyRuleKey identifies a rule from a flow: its cookie's rule bits and,
// for a VM's no-match drop (one cookie for both directions), the table.
type policyRuleKey struct {
	rule  Cookie
	table TableID
}

// PolicyRules names the policy rules of one blueprint. Build it once per
// blueprint (NewPolicyRules); lookups are read-only and safe for
// concurrent use.
type PolicyRules struct {
	byKey map[policyRuleKey]*PolicyRule
	names map[string]*PolicyRule
	list  []*PolicyRule
}

// NewPolicyRules indexes the policy rules of a validated blueprint (empty
// for a blueprint without ACLs or security groups).
func NewPolicyRules(bp *Blueprint) *PolicyRules {
	r := &PolicyRules{byKey: map[policyRuleKey]*PolicyRule{}, names: map[string]*PolicyRule{}}
	if bp == nil || !bp.UsesPolicy() {
		return r
	}
	add := func(c Cookie, table TableID, name, verdict string) {
		k := policyRuleKey{c.Rule(), table}
		if _, dup := r.byKey[k]; dup {
			return
		}
		pr := r.names[name]
		if pr == nil {
			pr = &PolicyRule{Name: name, Verdict: verdict, Kind: c.Category(), Order: len(r.list)}
			r.names[name] = pr
			r.list = append(r.list, pr)
		}
		r.byKey[k] = pr
	}
	verdict := func(allow bool) string {
		if allow {
			return PolicyAllow
		}
		return PolicyDeny
	}
	for i := range bp.VPCs {
		p := &bp.VPCs[i]
		for _, l := range []string{ACLDefaultAllow, ACLDefaultDeny} {
			for n := 1; n <= 2; n++ {
				add(MakeCookie(CatACLRule, ACLRuleObject(p.Name, l, n), 0), 0, ACLRuleName(p, l, n), verdict(l == ACLDefaultAllow))
			}
		}
		for j := range p.ACLs {
			l := &p.ACLs[j]
			for _, dir := range []string{DirIngress, DirEgress} {
				for _, rl := range sortedRules(l, dir) {
					add(MakeCookie(CatACLRule, ACLRuleObject(p.Name, l.Name, rl.Number), 0), 0, ACLRuleName(p, l.Name, rl.Number), verdict(rl.Action == ActionAllow))
				}
				add(MakeCookie(CatACLDefault, ACLDefaultObject(p.Name, l.Name, dir), 0), 0, ACLDefaultRuleName(p, l.Name, dir), verdict(dir == DirEgress))
			}
		}
	}
	for i := range bp.SecurityGroups {
		g := &bp.SecurityGroups[i]
		for k := range g.Ingress {
			add(MakeCookie(CatSGRule, SGRuleObject(g.Name, DirIngress, k), 0), 0, SGRuleName(g.Name, DirIngress, k), PolicyAllow)
		}
		for k := range g.Egress {
			add(MakeCookie(CatSGRule, SGRuleObject(g.Name, DirEgress, k), 0), 0, SGRuleName(g.Name, DirEgress, k), PolicyAllow)
		}
	}
	for i := range bp.VPCs {
		for j := range bp.VPCs[i].Tiers {
			t := &bp.VPCs[i].Tiers[j]
			for k := range t.VMs {
				vm := &t.VMs[k]
				if vm.IsRouter() || len(vm.SecurityGroups) == 0 {
					continue
				}
				c := MakeCookie(CatSGDefault, VMObject(vm.Name), 0)
				add(c, TSGIn, SGDefaultRuleName(vm, DirIngress), PolicyDeny)
				add(c, TSGOut, SGDefaultRuleName(vm, DirEgress), PolicyDeny)
			}
		}
	}
	add(MakeCookie(CatCtInvalid, 0, 0), 0, PolicyInvalidRule, PolicyDeny)
	return r
}

// ACLDefaultRuleName names list l's no-match verdict in direction dir, as
// the model does.
func ACLDefaultRuleName(p *VPC, l, dir string) string {
	if dir == DirIngress {
		return fmt.Sprintf("acl %s/%s: no ingress rule matched (ingress is denied by default)", p.Name, l)
	}
	return fmt.Sprintf("acl %s/%s: no egress rule matched (egress is allowed by default)", p.Name, l)
}

// SGDefaultRuleName names vm's no-match drop in direction dir, as the
// model does.
func SGDefaultRuleName(vm *VM, dir string) string {
	return fmt.Sprintf("sg of VM %s: no %s rule of %s allows it (%s is denied unless allowed)", vm.Name, dir, strings.Join(vm.SecurityGroups, ", "), dir)
}

// Len is the number of distinct rule names.
func (r *PolicyRules) Len() int { return len(r.list) }

// Rules lists every rule in blueprint order.
func (r *PolicyRules) Rules() []PolicyRule {
	out := make([]PolicyRule, len(r.list))
	for i, p := range r.list {
		out[i] = *p
	}
	return out
}

// ByName returns the rule called name.
func (r *PolicyRules) ByName(name string) (PolicyRule, bool) {
	if p, ok := r.names[name]; ok {
		return *p, true
	}
	return PolicyRule{}, false
}

// Lookup names the policy rule of a flow with cookie c in table t (ok
// false: not a policy rule of this blueprint, e.g. plumbing or a stale
// rule).
func (r *PolicyRules) Lookup(c Cookie, t TableID) (PolicyRule, bool) {
	if p := r.lookup(c, t); p != nil {
		return *p, true
	}
	return PolicyRule{}, false
}

func (r *PolicyRules) lookup(c Cookie, t TableID) *PolicyRule {
	k := policyRuleKey{c.Rule(), 0}
	switch c.Category() {
	case CatACLRule, CatSGRule, CatACLDefault:
	case CatCtInvalid:
		k.rule = MakeCookie(CatCtInvalid, 0, 0)
	case CatSGDefault:
		k.table = t
	default:
		return nil
	}
	return r.byKey[k]
}

// IsPolicyCategory reports whether flows of category c judge packets (the
// rules audit, metrics and explain name): acl, sg, acl-default,
// sg-default, ct-invalid.
func IsPolicyCategory(c Category) bool {
	switch c {
	case CatACLRule, CatSGRule, CatACLDefault, CatSGDefault, CatCtInvalid:
		return true
	}
	return false
}

// IsConjunctionClause reports whether f is a conjunction clause flow (its
// actions are only conjunction actions): it never acts on a packet itself.
func IsConjunctionClause(f *Flow) bool {
	return len(f.Actions) > 0 && len(conjunctions(f)) == len(f.Actions)
}

// PolicyDecides reports whether f is a flow that decides for its policy
// rule: a flow of a policy category that is not a conjunction clause (for
// a conjunction, its conj_id flow).
func PolicyDecides(f *Flow) bool {
	return IsPolicyCategory(f.Cookie.Category()) && !IsConjunctionClause(f)
}

// PolicyRuleCount is one policy rule's deciding flows and counters on a
// bridge (or summed over bridges).
type PolicyRuleCount struct {
	Rule     string `json:"rule"`     // the rule's name (PolicyRule.Name)
	Verdict  string `json:"verdict"`  // allow or deny
	Category string `json:"category"` // cookie category: acl, sg, acl-default, sg-default, ct-invalid
	// FlowsIntended and FlowsInstalled count the deciding flows (conj_id
	// flows of conjunctions, never their clause flows).
	FlowsIntended  int    `json:"flows_intended"`
	FlowsInstalled int    `json:"flows_installed"`
	Packets        uint64 `json:"packets"` // summed over the installed deciding flows
	Bytes          uint64 `json:"bytes"`
	// InSync is false when any flow of the rule (clauses included) is
	// missing, extra or modified.
	InSync bool `json:"in_sync"`
	Order  int  `json:"-"`
}

// Count aggregates, per rule name, the deciding flows of intended and
// installed and the installed counters; drift lists the flows of the
// audit's differences (missing, extra, modified), which mark their rules
// out of sync. Rules are returned in blueprint order; flows of rules this
// blueprint does not know (stale cookies) are left out (audit lists them
// as extra).
func (r *PolicyRules) Count(intended, installed []Flow, drift ...[]Flow) []PolicyRuleCount {
	// Rows by rule position (Order indexes list): a drift check counts
	// 12,000 policy flows per bridge, so no map or name per flow.
	rows := make([]*PolicyRuleCount, len(r.list))
	var used []int
	row := func(f *Flow) *PolicyRuleCount {
		if !IsPolicyCategory(f.Cookie.Category()) {
			return nil
		}
		pr := r.lookup(f.Cookie, f.Table)
		if pr == nil {
			return nil
		}
		rc := rows[pr.Order]
		if rc == nil {
			rc = &PolicyRuleCount{Rule: pr.Name, Verdict: pr.Verdict, Category: pr.Kind.String(), InSync: true, Order: pr.Order}
			rows[pr.Order] = rc
			used = append(used, pr.Order)
		}
		return rc
	}
	for i := range intended {
		if rc := row(&intended[i]); rc != nil && !IsConjunctionClause(&intended[i]) {
			rc.FlowsIntended++
		}
	}
	for i := range installed {
		f := &installed[i]
		if rc := row(f); rc != nil && !IsConjunctionClause(f) {
			rc.FlowsInstalled++
			rc.Packets += f.Packets
			rc.Bytes += f.Bytes
		}
	}
	for _, fs := range drift {
		for i := range fs {
			if rc := row(&fs[i]); rc != nil {
				rc.InSync = false
			}
		}
	}
	sort.Ints(used)
	out := make([]PolicyRuleCount, 0, len(used))
	for _, o := range used {
		rc := rows[o]
		if rc.FlowsIntended != rc.FlowsInstalled {
			rc.InSync = false
		}
		out = append(out, *rc)
	}
	return out
}

// SumPolicyRuleCounts adds per-bridge counts up per rule name (blueprint
// order kept).
func SumPolicyRuleCounts(per ...[]PolicyRuleCount) []PolicyRuleCount {
	rows := map[string]*PolicyRuleCount{}
	for _, cs := range per {
		for _, c := range cs {
			rc := rows[c.Rule]
			if rc == nil {
				cp := c
				rows[c.Rule] = &cp
				continue
			}
			rc.FlowsIntended += c.FlowsIntended
			rc.FlowsInstalled += c.FlowsInstalled
			rc.Packets += c.Packets
			rc.Bytes += c.Bytes
			rc.InSync = rc.InSync && c.InSync
		}
	}
	out := make([]PolicyRuleCount, 0, len(rows))
	for _, rc := range rows {
		out = append(out, *rc)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Order != out[j].Order {
			return out[i].Order < out[j].Order
		}
		return out[i].Rule < out[j].Rule
	})
	return out
}

// describePolicyPlumbing says what the object of a policy flow that is not
// a rule of a list or group is about (explain's "rule:" line): a list's
// no-match verdict, a VM's no-match drop, the conntrack plumbing.
func describePolicyPlumbing(bp *Blueprint, c Cookie) string {
	obj := c.Object()
	for i := range bp.VPCs {
		p := &bp.VPCs[i]
		switch c.Category() {
		case CatACLDefault:
			for j := range p.ACLs {
				for _, dir := range []string{DirIngress, DirEgress} {
					if ACLDefaultObject(p.Name, p.ACLs[j].Name, dir) == obj {
						return ACLDefaultRuleName(p, p.ACLs[j].Name, dir)
					}
				}
			}
		case CatPolicyPass:
			if obj == p.ID {
				return fmt.Sprintf("vpc %s (its policy checks)", p.Name)
			}
		}
		for j := range p.Tiers {
			t := &p.Tiers[j]
			if c.Category() == CatPolicyPass && obj == t.Key {
				return fmt.Sprintf("tier %s/%s (conntrack zone %d)", p.Name, t.Name, PolicyZone(t))
			}
			for k := range t.VMs {
				vm := &t.VMs[k]
				if VMObject(vm.Name) != obj {
					continue
				}
				if c.Category() == CatSGDefault {
					return fmt.Sprintf("VM %s (vpc %s, tier %s): what its security groups (%s) do not allow", vm.Name, p.Name, t.Name, strings.Join(vm.SecurityGroups, ", "))
				}
				if c.Category() == CatPolicyPass {
					return fmt.Sprintf("VM %s (vpc %s, tier %s)", vm.Name, p.Name, t.Name)
				}
			}
		}
	}
	switch {
	case c.Category() == CatCtInvalid:
		return "packets conntrack calls invalid"
	case c.Category() == CatPolicyPass && obj == 0:
		return "conntrack state and commit (every policy VM of this host)"
	}
	return fmt.Sprintf("%s object %#x (not in this blueprint)", c.Category(), obj)
}
