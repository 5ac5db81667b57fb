package gen

import (
	"fmt"
	"strings"

	"github.com/vpcflow/vpcflow/flows"
)

// The policy benchmark's blueprint (issue 12, docs/performance.md): a
// blueprint from Build (the realistic one: 200 hosts, 4,000 VMs, 50 tiers in
// 10 VPCs) plus, per VPC, one network ACL list of PolicyRulesPerList rules
// that every tier of the VPC names (1,000 rules in all), and security groups
// on every VM (web/app/db roles by tier position; the db and app rules
// reference other groups, so their members' addresses are in the flows).

// PolicyRulesPerList is the number of rules in each VPC's ACL list.
const PolicyRulesPerList = 100

// PolicyACL is the name of every VPC's ACL list.
const PolicyACL = "tiers"

// AddPolicy adds the ACL lists, the tiers' acl: and the security groups to
// bp (in place).
func AddPolicy(bp *flows.Blueprint) {
	for vi := range bp.VPCs {
		p := &bp.VPCs[vi]
		l := flows.ACLList{Name: PolicyACL}
		for n := 1; n <= PolicyRulesPerList; n++ {
			r := flows.ACLRule{Number: n * 10, Action: flows.ActionAllow, Direction: flows.DirIngress, Protocol: "tcp",
				Ports: fmt.Sprint(1000 + n), CIDRs: []string{fmt.Sprintf("10.%d.0.0/16", 64+n%64), "192.0.2.0/24"}}
			switch n % 4 {
			case 1:
				r.Action = flows.ActionDeny
				r.Ports = fmt.Sprintf("%d-%d", 2000+n*10, 2009+n*10)
			case 2:
				r.Direction = flows.DirEgress
				r.Protocol = "udp"
			case 3:
				r.Protocol, r.Ports = "icmp", ""
				t := 8
				r.ICMP = &flows.ICMPSpec{Type: &t}
			}
			l.Rules = append(l.Rules, r)
		}
		p.ACLs = []flows.ACLList{l}
		for ti := range p.Tiers {
			t := &p.Tiers[ti]
			t.ACL = PolicyACL
			role := []string{"web-sg", "web-sg", "app-sg", "app-sg", "db-sg"}[ti%5]
			for k := range t.VMs {
				t.VMs[k].SecurityGroups = []string{role}
			}
		}
	}
	bp.SecurityGroups = []flows.SecurityGroup{
		{Name: "web-sg", Ingress: []flows.SGRule{{Protocol: "tcp", Ports: "80", CIDRs: []string{"0.0.0.0/0"}}, {Protocol: "tcp", Ports: "443", CIDRs: []string{"0.0.0.0/0"}}}},
		{Name: "app-sg", Ingress: []flows.SGRule{{Protocol: "tcp", Ports: "8080-8089", Groups: []string{"web-sg"}}},
			Egress: []flows.SGRule{{Protocol: "tcp", Ports: "5432", Groups: []string{"db-sg"}}, {Protocol: "udp", Ports: "53", CIDRs: []string{"10.0.0.0/8"}}}},
		{Name: "db-sg", Ingress: []flows.SGRule{{Protocol: "tcp", Ports: "5432", Groups: []string{"app-sg"}}, {Protocol: "tcp", Ports: "7000-7010", Groups: []string{"web-sg", "app-sg"}}}},
	}
}

// EditACLRule makes rule n (1..PolicyRulesPerList) of VPC vpc's list match
// tcp port (same number, action, direction and CIDRs): one rule's change.
func EditACLRule(bp *flows.Blueprint, vpc, n, port int) error {
	if vpc < 0 || vpc >= len(bp.VPCs) || len(bp.VPCs[vpc].ACLs) == 0 {
		return fmt.Errorf("gen: VPC %d has no ACL list (AddPolicy first)", vpc)
	}
	rules := bp.VPCs[vpc].ACLs[0].Rules
	if n < 1 || n > len(rules) {
		return fmt.Errorf("gen: rule %d: want 1..%d", n, len(rules))
	}
	r := &rules[n-1]
	r.Protocol, r.Ports, r.ICMP = "tcp", fmt.Sprint(port), nil
	return nil
}

// aclYAML renders the VPC's ACL lists (flow style, one line per rule).
func aclYAML(b *strings.Builder, p *flows.VPC) {
	if len(p.ACLs) == 0 {
		return
	}
	b.WriteString("    acls:\n")
	for _, l := range p.ACLs {
		fmt.Fprintf(b, "      - name: %s\n        rules:\n", l.Name)
		for _, r := range l.Rules {
			fmt.Fprintf(b, "          - {number: %d, action: %s, direction: %s, protocol: %s", r.Number, r.Action, r.Direction, r.Protocol)
			if r.Ports != "" {
				fmt.Fprintf(b, ", ports: \"%s\"", r.Ports)
			}
			icmpYAML(b, r.ICMP)
			fmt.Fprintf(b, ", cidrs: [%s]}\n", strings.Join(r.CIDRs, ", "))
		}
	}
}

func icmpYAML(b *strings.Builder, s *flows.ICMPSpec) {
	if s == nil {
		return
	}
	b.WriteString(", icmp: {")
	sep := ""
	if s.Type != nil {
		fmt.Fprintf(b, "type: %d", *s.Type)
		sep = ", "
	}
	if s.Code != nil {
		fmt.Fprintf(b, "%scode: %d", sep, *s.Code)
	}
	b.WriteString("}")
}

// sgYAML renders the security groups (flow style, one line per rule).
func sgYAML(b *strings.Builder, sgs []flows.SecurityGroup) {
	if len(sgs) == 0 {
		return
	}
	b.WriteString("security_groups:\n")
	for _, g := range sgs {
		fmt.Fprintf(b, "  - name: %s\n", g.Name)
		for _, d := range []struct {
			k  string
			rs []flows.SGRule
		}{{"ingress", g.Ingress}, {"egress", g.Egress}} {
			if len(d.rs) == 0 {
				fmt.Fprintf(b, "    %s: []\n", d.k)
				continue
			}
			fmt.Fprintf(b, "    %s:\n", d.k)
			for _, r := range d.rs {
				fmt.Fprintf(b, "      - {protocol: %s", r.Protocol)
				if r.Ports != "" {
					fmt.Fprintf(b, ", ports: \"%s\"", r.Ports)
				}
				icmpYAML(b, r.ICMP)
				if len(r.CIDRs) > 0 {
					fmt.Fprintf(b, ", cidrs: [%s]", strings.Join(r.CIDRs, ", "))
				}
				if len(r.Groups) > 0 {
					fmt.Fprintf(b, ", groups: [%s]", strings.Join(r.Groups, ", "))
				}
				b.WriteString("}\n")
			}
		}
	}
}
