package cloudstack

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/vpcflow/vpcflow/flows"
)

// emitACLs writes vpcs[i].acls: one line per rule, each with its
// CloudStack item id.
func (b *builder) emitACLs(w *bytes.Buffer, i int, v *flows.VPC) {
	if len(v.ACLs) == 0 {
		return
	}
	w.WriteString("    acls:\n")
	for j, l := range v.ACLs {
		path := fmt.Sprintf("vpcs[%d].acls[%d]", i, j)
		fmt.Fprintf(w, "      - name: %s%s\n", q(l.Name), b.note(path))
		listKey(w, "        ", "rules", len(l.Rules))
		for k, r := range l.Rules {
			fmt.Fprintf(w, "          - {number: %d, action: %s, direction: %s, %s}%s\n", r.Number, q(r.Action), q(r.Direction),
				ruleFields(r.Protocol, r.Ports, r.ICMP, r.CIDRs, nil), b.note(fmt.Sprintf("%s.rules[%d]", path, k)))
		}
	}
}

// emitSecurityGroups writes the top-level security_groups.
func (b *builder) emitSecurityGroups(w *bytes.Buffer, bp *flows.Blueprint) {
	if len(bp.SecurityGroups) == 0 {
		return
	}
	w.WriteString("security_groups:\n")
	for i, g := range bp.SecurityGroups {
		path := fmt.Sprintf("security_groups[%d]", i)
		fmt.Fprintf(w, "  - name: %s%s\n", q(g.Name), b.note(path))
		for _, d := range []struct {
			name  string
			rules []flows.SGRule
		}{{flows.DirIngress, g.Ingress}, {flows.DirEgress, g.Egress}} {
			listKey(w, "    ", d.name, len(d.rules))
			for k, r := range d.rules {
				fmt.Fprintf(w, "      - {%s}%s\n", ruleFields(r.Protocol, r.Ports, r.ICMP, r.CIDRs, r.Groups), b.note(fmt.Sprintf("%s.%s[%d]", path, d.name, k)))
			}
		}
	}
}

// ruleFields renders a rule's match as flow-mapping fields.
func ruleFields(proto, ports string, icmp *flows.ICMPSpec, cidrs, groups []string) string {
	f := []string{"protocol: " + q(proto)}
	if ports != "" {
		f = append(f, "ports: "+q(ports))
	}
	if icmp != nil {
		var parts []string
		if icmp.Type != nil {
			parts = append(parts, "type: "+strconv.Itoa(*icmp.Type))
		}
		if icmp.Code != nil {
			parts = append(parts, "code: "+strconv.Itoa(*icmp.Code))
		}
		f = append(f, "icmp: {"+strings.Join(parts, ", ")+"}")
	}
	if len(cidrs) > 0 {
		f = append(f, "cidrs: "+qlist(cidrs))
	}
	if len(groups) > 0 {
		f = append(f, "groups: "+qlist(groups))
	}
	return strings.Join(f, ", ")
}
