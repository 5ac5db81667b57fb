package flows

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// checkPolicy validates the ACL lists, the tiers' acl, the security groups
// and the VMs' security_groups. With errors elsewhere it still runs, so one
// pass reports everything.
func (v *validator) checkPolicy() {
	b := v.b
	listOwner := map[string][]string{} // ACL list name -> VPCs declaring it
	for i := range b.VPCs {
		vpc := &b.VPCs[i]
		fv := fmt.Sprintf("vpcs[%d]", i)
		names := map[string]int{}
		for j := range vpc.ACLs {
			l := &vpc.ACLs[j]
			fl := fmt.Sprintf("%s.acls[%d]", fv, j)
			switch {
			case l.Name == ACLDefaultAllow || l.Name == ACLDefaultDeny:
				v.errorf(fl+".name", "ACL list name %q is reserved for the built-in list: pick another name (a tier uses the built-in one with acl: %s)", l.Name, l.Name)
			case checkName(l.Name) != "":
				v.errorf(fl+".name", "ACL list %s", checkName(l.Name))
			default:
				if k, dup := names[l.Name]; dup {
					v.errorf(fl+".name", "ACL list name %q is already used by %s.acls[%d]: list names must be unique within a VPC", l.Name, fv, k)
				} else {
					names[l.Name] = j
					listOwner[l.Name] = append(listOwner[l.Name], vpc.Name)
				}
			}
			numbers := map[int]int{}
			for k := range l.Rules {
				r := &l.Rules[k]
				fr := fmt.Sprintf("%s.rules[%d]", fl, k)
				switch {
				case r.Number == 0:
					v.errorf(fr+".number", "number is missing or 0: number the rule 1..%d (rules are judged from the lowest number up)", MaxACLRuleNumber)
				case r.Number < 0 || r.Number > MaxACLRuleNumber:
					v.errorf(fr+".number", "number %d is outside 1..%d: renumber the rule (the number sets its flow priority)", r.Number, MaxACLRuleNumber)
				default:
					if o, dup := numbers[r.Number]; dup {
						v.errorf(fr+".number", "rule number %d is already used by %s.rules[%d]: numbers are unique within a list (the lowest matching number wins)", r.Number, fl, o)
					} else {
						numbers[r.Number] = k
					}
				}
				switch r.Action {
				case ActionAllow, ActionDeny:
				case "":
					v.errorf(fr+".action", "action is missing: use allow or deny")
				default:
					v.errorf(fr+".action", "action %q is not known: use allow or deny", r.Action)
				}
				switch r.Direction {
				case DirIngress, DirEgress:
				case "":
					v.errorf(fr+".direction", "direction is missing: use ingress (traffic entering the tier) or egress (traffic leaving it)")
				default:
					v.errorf(fr+".direction", "direction %q is not known: use ingress (traffic entering the tier) or egress (traffic leaving it)", r.Direction)
				}
				v.ruleMatch(fr, r.Protocol, r.Ports, r.ICMP, r.CIDRs, true, "")
			}
		}
	}

	sgIdx := map[string]int{}
	for i := range b.SecurityGroups {
		g := &b.SecurityGroups[i]
		fg := fmt.Sprintf("security_groups[%d]", i)
		if msg := checkName(g.Name); msg != "" {
			v.errorf(fg+".name", "security group %s", msg)
		} else if j, dup := sgIdx[g.Name]; dup {
			v.errorf(fg+".name", "security group name %q is already used by security_groups[%d]: names must be unique", g.Name, j)
		} else {
			sgIdx[g.Name] = i
		}
	}
	for i := range b.SecurityGroups {
		g := &b.SecurityGroups[i]
		for _, dir := range []struct {
			name  string
			rules []SGRule
		}{{DirIngress, g.Ingress}, {DirEgress, g.Egress}} {
			for k := range dir.rules {
				r := &dir.rules[k]
				fr := fmt.Sprintf("security_groups[%d].%s[%d]", i, dir.name, k)
				v.ruleMatch(fr, r.Protocol, r.Ports, r.ICMP, r.CIDRs, len(r.Groups) == 0, sgOrGroups)
				seen := map[string]int{}
				for n, ref := range r.Groups {
					fgr := fmt.Sprintf("%s.groups[%d]", fr, n)
					if _, ok := sgIdx[ref]; !ok {
						v.errorf(fgr, "security group %q is not defined under security_groups: (known: %s): fix the name or add the group", ref, sgNames(b))
					} else if o, dup := seen[ref]; dup {
						v.errorf(fgr, "group %q is already listed as groups[%d]: list each group once", ref, o)
					}
					seen[ref] = n
				}
			}
		}
	}

	for i := range b.VPCs {
		vpc := &b.VPCs[i]
		for j := range vpc.Tiers {
			t := &vpc.Tiers[j]
			ft := fmt.Sprintf("vpcs[%d].tiers[%d]", i, j)
			switch {
			case t.ACL == "", t.ACL == ACLDefaultAllow, t.ACL == ACLDefaultDeny:
			case vpc.ACLByName(t.ACL) != nil:
			case len(listOwner[t.ACL]) > 0:
				v.errorf(ft+".acl", "acl %q is a list of VPC %s, not of %s: a tier uses its own VPC's lists (%s) or %s / %s", t.ACL, strings.Join(listOwner[t.ACL], ", "), vpc.Name, aclNames(vpc), ACLDefaultAllow, ACLDefaultDeny)
			default:
				v.errorf(ft+".acl", "acl %q is not an ACL list of VPC %s (its lists: %s): fix the name, declare it under vpcs[%d].acls, or use %s / %s", t.ACL, vpc.Name, aclNames(vpc), i, ACLDefaultAllow, ACLDefaultDeny)
			}
			for k := range t.VMs {
				m := &t.VMs[k]
				fm := fmt.Sprintf("%s.vms[%d].security_groups", ft, k)
				if len(m.SecurityGroups) > 0 && m.IsRouter() {
					v.errorf(fm, "security groups apply to guest NICs, and %s is the router NIC (role: router): remove security_groups (the tier's acl judges routed traffic)", m.Name)
					continue
				}
				seen := map[string]int{}
				for n, ref := range m.SecurityGroups {
					f := fmt.Sprintf("%s[%d]", fm, n)
					if _, ok := sgIdx[ref]; !ok {
						v.errorf(f, "security group %q is not defined under security_groups: (known: %s): fix the name or add the group", ref, sgNames(b))
					} else if o, dup := seen[ref]; dup {
						v.errorf(f, "security group %q is already listed as security_groups[%d]: list each group once", ref, o)
					}
					seen[ref] = n
				}
			}
		}
	}
}

// ruleMatch checks the match of one ACL or security group rule (field path
// f): protocol, ports, icmp and cidrs. needCIDRs: an empty cidrs is an
// error (an ACL rule, or a group rule without groups).
func (v *validator) ruleMatch(f, proto, ports string, icmp *ICMPSpec, cidrs []string, needCIDRs bool, orGroups string) {
	_, errs := parseRuleMatch(proto, ports, icmp, cidrs, needCIDRs, orGroups)
	for _, e := range errs {
		v.errorf(joinPath(f, e.Field), "%s", e.Msg)
	}
}

// parseRuleMatch parses a rule's match; errors name the field relative to
// the rule.
func parseRuleMatch(proto, ports string, icmp *ICMPSpec, cidrs []string, needCIDRs bool, orGroups string) (TrafficMatch, []FieldError) {
	var errs []FieldError
	fail := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	m, msg := parseProtocol(proto)
	if msg != "" {
		fail("protocol", "%s", msg)
	}
	m.Ports, m.ICMPType, m.ICMPCode = AllPorts, -1, -1
	if ports != "" {
		switch {
		case msg != "":
		case !m.HasPorts():
			fail("ports", "ports apply to tcp and udp only, and this rule's protocol is %s: remove ports%s", proto, icmpHint(&m))
		default:
			r, pmsg := parsePorts(ports)
			if pmsg != "" {
				fail("ports", "%s", pmsg)
			} else {
				m.Ports = r
			}
		}
	}
	if icmp != nil {
		isICMP := msg == "" && !m.AnyProto && m.Proto == ProtoICMP
		if msg == "" && !isICMP {
			fail("icmp", "icmp applies to protocol icmp only, and this rule's protocol is %s: remove icmp or set protocol: icmp", proto)
		}
		if icmp.Type != nil {
			if t := *icmp.Type; t < -1 || t > 255 {
				fail("icmp.type", "icmp type %d is outside 0..255: use an ICMP type 0..255, or -1 for any", t)
			} else {
				m.ICMPType = int16(t)
			}
		}
		if icmp.Code != nil {
			if c := *icmp.Code; c < -1 || c > 255 {
				fail("icmp.code", "icmp code %d is outside 0..255: use an ICMP code 0..255, or -1 for any", c)
			} else if c >= 0 && (icmp.Type == nil || *icmp.Type == -1) {
				fail("icmp.code", "icmp code %d needs a type: set icmp.type (a code means nothing without its type), or use code: -1", c)
			} else {
				m.ICMPCode = int16(c)
			}
		}
		if !isICMP {
			m.ICMPType, m.ICMPCode = -1, -1
		}
	}
	if len(cidrs) == 0 && needCIDRs {
		fail("cidrs", "cidrs is missing: list the remote prefixes the rule applies to, e.g. [10.2.0.0/16], or [0.0.0.0/0] for any address%s", orGroups)
	}
	if len(cidrs) > maxRuleCIDRs {
		fail("cidrs", "a rule lists %d cidrs, more than %d: split it into several rules, or summarise the prefixes", len(cidrs), maxRuleCIDRs)
		return m, errs
	}
	seen := map[netip.Prefix]int{}
	for i, s := range cidrs {
		fc := fmt.Sprintf("cidrs[%d]", i)
		p, pmsg := parsePolicyPrefix(s)
		if pmsg != "" {
			fail(fc, "%s", pmsg)
			continue
		}
		if j, dup := seen[p]; dup {
			fail(fc, "cidr %s is already listed as cidrs[%d]: remove the duplicate", p, j)
			continue
		}
		seen[p] = i
		m.Prefixes = append(m.Prefixes, p)
	}
	return m, errs
}

// sgOrGroups completes the missing-cidrs message of a security group rule.
const sgOrGroups = ", or name security groups whose members may connect (groups: [web-sg])"

func icmpHint(m *TrafficMatch) string {
	if !m.AnyProto && m.Proto == ProtoICMP {
		return " (ICMP messages are chosen with icmp: {type: 8, code: -1})"
	}
	return ""
}

// commitPolicy fills the parsed policy forms (the blueprint is valid).
func (v *validator) commitPolicy() {
	b := v.b
	for i := range b.VPCs {
		for j := range b.VPCs[i].ACLs {
			for k := range b.VPCs[i].ACLs[j].Rules {
				r := &b.VPCs[i].ACLs[j].Rules[k]
				r.Match, _ = parseRuleMatch(r.Protocol, r.Ports, r.ICMP, r.CIDRs, true, "")
			}
		}
	}
	idx := map[string]int{}
	for i := range b.SecurityGroups {
		idx[b.SecurityGroups[i].Name] = i
	}
	for i := range b.SecurityGroups {
		g := &b.SecurityGroups[i]
		for _, rules := range [][]SGRule{g.Ingress, g.Egress} {
			for k := range rules {
				r := &rules[k]
				r.Match, _ = parseRuleMatch(r.Protocol, r.Ports, r.ICMP, r.CIDRs, len(r.Groups) == 0, sgOrGroups)
				r.GroupRefs = r.GroupRefs[:0]
				for _, n := range r.Groups {
					r.GroupRefs = append(r.GroupRefs, idx[n])
				}
			}
		}
	}
}

func sgNames(b *Blueprint) string {
	var ns []string
	seen := map[string]bool{}
	for i := range b.SecurityGroups {
		if n := b.SecurityGroups[i].Name; n != "" && !seen[n] {
			seen[n] = true
			ns = append(ns, b.SecurityGroups[i].Name)
		}
	}
	if len(ns) == 0 {
		return "none"
	}
	sort.Strings(ns)
	return strings.Join(ns, ", ")
}

func aclNames(p *VPC) string {
	var ns []string
	for i := range p.ACLs {
		if p.ACLs[i].Name != "" {
			ns = append(ns, p.ACLs[i].Name)
		}
	}
	if len(ns) == 0 {
		return "none"
	}
	return strings.Join(ns, ", ")
}

// checkPolicyZones refuses policy tiers that would share a conntrack zone
// (PolicyZone: the low 16 bits of the tier key) or get zone 0, and policy
// VPCs whose ids (RegPolVPC) collide. Run when the rest is valid.
func (v *validator) checkPolicyZones() {
	zones := map[uint16]string{}
	ids := map[uint32]string{}
	for i := range v.b.VPCs {
		p := &v.b.VPCs[i]
		usesPolicy := false
		for j := range p.Tiers {
			t := &p.Tiers[j]
			policy := t.ACL != ""
			for k := range t.VMs {
				policy = policy || len(t.VMs[k].SecurityGroups) > 0
			}
			if !policy {
				continue
			}
			usesPolicy = true
			key := t.VNI
			if t.IsVLAN() {
				key = VLANKeyBase + uint32(t.VLAN)
			}
			z := uint16(key)
			f := fmt.Sprintf("vpcs[%d].tiers[%d]", i, j)
			name := p.Name + "/" + t.Name
			if z == 0 {
				v.errorf(f, "tier %s would get conntrack zone 0 (its key %d is a multiple of 65536): give it another vni (policy tiers use the low 16 bits of their key as their zone)", name, key)
			} else if o, clash := zones[z]; clash {
				v.errorf(f, "tier %s would share conntrack zone %d with tier %s (policy tiers use the low 16 bits of their key as their zone): give one of them a vni whose low 16 bits differ", name, z, o)
			} else {
				zones[z] = name
			}
		}
		if usesPolicy {
			if o, clash := ids[VPCObject(p.Name)]; clash {
				v.errorf(fmt.Sprintf("vpcs[%d].name", i), "VPC name %q hashes to the same policy id (0x%08x) as VPC %q: rename one of them", p.Name, VPCObject(p.Name), o)
			} else {
				ids[VPCObject(p.Name)] = p.Name
			}
		}
	}
}
