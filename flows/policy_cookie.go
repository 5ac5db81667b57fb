package flows

import (
	"fmt"
	"hash/fnv"
	"strconv"
)

// Cookie objects of policy rules: a 32-bit FNV-1a hash of the rule's name,
// so every flow a rule compiles to maps back to "acl blue/web-acl #20" or
// "sg db-sg ingress[0]" (DescribeRule). The validator refuses blueprints
// where two rules collide, as it does for VM names.

// ACLRuleObject is the cookie object of rule number n of ACL list l in VPC
// vpc (the built-in lists too: their rules are #1 ingress and #2 egress).
func ACLRuleObject(vpc, l string, n int) uint32 {
	h := fnv.New32a()
	h.Write([]byte("acl:" + vpc + "/" + l + "#" + strconv.Itoa(n)))
	return h.Sum32()
}

// ACLDefaultObject is the cookie object of list l's no-match verdict in
// direction dir (its flows say "no ingress rule matched").
func ACLDefaultObject(vpc, l, dir string) uint32 {
	h := fnv.New32a()
	h.Write([]byte("acl:" + vpc + "/" + l + " default " + dir))
	return h.Sum32()
}

// SGRuleObject is the cookie object of rule i of direction dir of security
// group g.
func SGRuleObject(g, dir string, i int) uint32 {
	h := fnv.New32a()
	h.Write([]byte("sg:" + g + " " + dir + "[" + strconv.Itoa(i) + "]"))
	return h.Sum32()
}

// policyObjects visits every policy rule of b with its cookie object and
// field path (the built-in lists of each VPC included, path "").
func (b *Blueprint) policyObjects(visit func(obj uint32, name, path string)) {
	for i := range b.VPCs {
		p := &b.VPCs[i]
		for _, l := range []string{ACLDefaultAllow, ACLDefaultDeny} {
			for n := 1; n <= 2; n++ {
				visit(ACLRuleObject(p.Name, l, n), ACLRuleName(p, l, n), "")
			}
		}
		for j := range p.ACLs {
			l := &p.ACLs[j]
			for k := range l.Rules {
				visit(ACLRuleObject(p.Name, l.Name, l.Rules[k].Number), ACLRuleName(p, l.Name, l.Rules[k].Number),
					fmt.Sprintf("vpcs[%d].acls[%d].rules[%d].number", i, j, k))
			}
		}
	}
	for i := range b.SecurityGroups {
		g := &b.SecurityGroups[i]
		for k := range g.Ingress {
			visit(SGRuleObject(g.Name, DirIngress, k), SGRuleName(g.Name, DirIngress, k), fmt.Sprintf("security_groups[%d].ingress[%d]", i, k))
		}
		for k := range g.Egress {
			visit(SGRuleObject(g.Name, DirEgress, k), SGRuleName(g.Name, DirEgress, k), fmt.Sprintf("security_groups[%d].egress[%d]", i, k))
		}
	}
}

// checkPolicyObjects refuses two policy rules with the same cookie object
// (run only when the rest is valid: names and numbers are then unique).
func (v *validator) checkPolicyObjects() {
	seen := map[uint32]string{}
	v.b.policyObjects(func(obj uint32, name, path string) {
		if other, clash := seen[obj]; clash {
			f := path
			if f == "" {
				f = "vpcs"
			}
			v.errorf(f, "%s hashes to the same flow cookie object (0x%08x) as %s: rename the list or group, or renumber the rule (cookies must map back to exactly one rule)", name, obj, other)
			return
		}
		seen[obj] = name
	})
}

// describePolicyRule names the rule of a policy cookie.
func describePolicyRule(bp *Blueprint, c Cookie) string {
	name := ""
	bp.policyObjects(func(obj uint32, n, _ string) {
		if obj == c.Object() && name == "" {
			name = n
		}
	})
	if name == "" {
		return fmt.Sprintf("%s rule %#x (not in this blueprint)", c.Category(), c.Object())
	}
	return name
}
