package cloudstack

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vpcflow/vpcflow/flows"
)

// The field mapping of CloudStack's ACL items and security group rules to
// blueprint rules (docs/cloudstack.md "Network ACLs and security groups").
// Where CloudStack's API and what its virtual router enforces disagree, or
// a value cannot be written in a blueprint, an allow rule takes the
// narrower reading (or is left out) and a deny rule the wider one, so the
// blueprint never allows what CloudStack denies. What is left out or
// widened is returned as a note and listed as skipped.

// maxPolicyCIDRs is the most prefixes one blueprint rule may list
// (flows' bound).
const maxPolicyCIDRs = 4096

// ruleMatch is the blueprint form of one CloudStack rule's match.
type ruleMatch struct {
	Protocol string // tcp, udp, icmp, all, or an IP protocol number
	Ports    string // "" = every port
	ICMP     *flows.ICMPSpec
	CIDRs    []string // canonical IPv4 prefixes
	// Notes say what was left out or widened.
	Notes []string
	// Drop says why the rule cannot be written at all ("" = it can).
	Drop string
	// IPv6Only: the rule matches IPv6 traffic only, which vpcflow drops
	// from guests, so leaving it out never widens access, whatever its
	// action.
	IPv6Only bool
}

// mapMatch maps a CloudStack rule's protocol, ports, ICMP type and code
// and remote prefixes. deny selects how to resolve what cannot be written
// exactly: an allow is narrowed or dropped, a deny is widened. numbered:
// protocol numbers are applied without ports (CloudStack's router
// programs a numbered protocol as "-p N" whatever startport/endport say).
func mapMatch(proto string, start, end, itype, icode optInt, cidrs []string, deny bool) ruleMatch {
	var m ruleMatch
	// The remote side first: a rule that matches IPv6 only is left out
	// whatever else it says.
	var v6 []string
	var bad string
	m.CIDRs, v6, bad = mapCIDRs(cidrs)
	switch {
	case bad != "":
		m.Drop = bad
		return m
	case len(m.CIDRs) == 0 && len(v6) > 0:
		m.Drop = fmt.Sprintf("cidrs %s are IPv6 only: vpcflow drops guest IPv6, so the rule never applies", strings.Join(v6, ","))
		m.IPv6Only = true
		return m
	case len(m.CIDRs) > maxPolicyCIDRs:
		m.Drop = fmt.Sprintf("%d cidrs, more than a blueprint rule holds (%d)", len(m.CIDRs), maxPolicyCIDRs)
		return m
	case len(v6) > 0:
		m.Notes = append(m.Notes, fmt.Sprintf("IPv6 cidrs %s left out (vpcflow drops guest IPv6)", strings.Join(v6, ",")))
	}

	p := strings.ToLower(strings.TrimSpace(proto))
	numbered := false
	if n, err := strconv.Atoi(p); err == nil {
		numbered = true
		switch {
		case n == 6:
			p = flows.ProtoNameTCP
		case n == 17:
			p = flows.ProtoNameUDP
		case n == 1:
			p = flows.ProtoNameICMP
		case n == 0:
			// iptables reads -p 0 as every protocol.
			if !deny {
				m.Drop = "protocol 0: CloudStack's router applies it to every protocol, the API names no protocol; an allow is left out (the narrower reading)"
				return m
			}
			m.Notes = append(m.Notes, "protocol 0 is every protocol on CloudStack's router (iptables -p 0): the deny covers all")
			p = flows.ProtoNameAll
		case n == 58:
			m.Drop = "protocol 58 is ICMPv6, which a blueprint cannot express (IPv6 is not supported yet)"
			return m
		case n < 0 || n > 255:
			m.Drop = fmt.Sprintf("protocol number %d is outside 0..255", n)
			return m
		default:
			m.Protocol = strconv.Itoa(n)
			return m // ports and ICMP fields mean nothing for it
		}
	}
	m.Protocol = p
	switch p {
	case flows.ProtoNameTCP, flows.ProtoNameUDP:
		ports, why := mapPorts(start, end)
		switch {
		case numbered && ports != "" && deny:
			m.Notes = append(m.Notes, fmt.Sprintf("ports %s of protocol %s ignored, as CloudStack's router ignores the ports of a protocol number: the deny covers every port", ports, strings.TrimSpace(proto)))
		case numbered && ports != "":
			m.Notes = append(m.Notes, fmt.Sprintf("CloudStack's router ignores the ports of protocol number %s and allows every port: the allow keeps ports %s (the narrower reading)", strings.TrimSpace(proto), ports))
			m.Ports = ports
		case numbered && why != "" && deny:
			m.Notes = append(m.Notes, fmt.Sprintf("ports %s-%s ignored (%s): the deny covers every port", start, end, why))
		case why != "" && deny:
			m.Notes = append(m.Notes, fmt.Sprintf("ports %s-%s cannot be written (%s): the deny covers every port", start, end, why))
		case why != "":
			m.Drop = fmt.Sprintf("ports %s-%s: %s", start, end, why)
		default:
			m.Ports = ports
		}
	case flows.ProtoNameICMP:
		spec, why := mapICMP(itype, icode)
		switch {
		case numbered && deny && spec != nil:
			m.Notes = append(m.Notes, fmt.Sprintf("icmp type %s code %s ignored, as CloudStack's router applies protocol number 1 to every ICMP message: the deny covers all", itype, icode))
		case why != "" && deny:
			m.Notes = append(m.Notes, fmt.Sprintf("icmp type %s code %s cannot be written (%s): the deny covers every ICMP message", itype, icode, why))
		case why != "":
			m.Drop = fmt.Sprintf("icmp type %s code %s: %s", itype, icode, why)
		default:
			m.ICMP = spec
		}
	case flows.ProtoNameAll:
	case "":
		m.Drop = "no protocol (CloudStack's router skips such a rule)"
	default:
		m.Drop = fmt.Sprintf("protocol %q is not tcp, udp, icmp, all or a protocol number", strings.TrimSpace(proto))
	}
	return m
}

// mapPorts maps startport/endport to blueprint ports: "" is every port.
// An absent endport is the startport (CloudStack's default). Port 0
// carries no connection: a range from 0 starts at 1.
func mapPorts(start, end optInt) (ports, why string) {
	if !start.set && !end.set {
		return "", ""
	}
	if !start.set {
		return "", fmt.Sprintf("endport %d without a startport", end.v)
	}
	lo, hi := start.v, start.v
	if end.set {
		hi = end.v
	}
	switch {
	case lo < 0 || hi > 65535:
		return "", fmt.Sprintf("port range %d-%d is outside 0..65535", lo, hi)
	case lo > hi:
		return "", fmt.Sprintf("port range %d-%d is out of order", lo, hi)
	case hi == 0:
		return "", "port 0 only, which no connection uses"
	}
	if lo == 0 {
		lo = 1
	}
	switch {
	case lo == 1 && hi == 65535:
		return "", ""
	case lo == hi:
		return strconv.Itoa(lo), ""
	}
	return fmt.Sprintf("%d-%d", lo, hi), ""
}

// mapICMP maps icmptype/icmpcode (-1 or absent: any) to the blueprint's
// icmp (nil: every message).
func mapICMP(typ, code optInt) (*flows.ICMPSpec, string) {
	t, c := -1, -1
	if typ.set {
		t = typ.v
	}
	if code.set {
		c = code.v
	}
	switch {
	case t < -1 || t > 255:
		return nil, fmt.Sprintf("icmp type %d is outside 0..255", t)
	case c < -1 || c > 255:
		return nil, fmt.Sprintf("icmp code %d is outside 0..255", c)
	case t == -1 && c != -1:
		return nil, fmt.Sprintf("icmp code %d with any type", c)
	case t == -1:
		return nil, ""
	}
	spec := &flows.ICMPSpec{Type: &t}
	if c != -1 {
		spec.Code = &c
	}
	return spec, ""
}

// mapCIDRs parses remote prefixes (each trimmed; empty entries ignored):
// IPv4 prefixes canonical (host bits cleared, as iptables does), a bare
// address as /32, duplicates once; IPv6 ones apart. An empty list is any
// address (CloudStack's default, 0.0.0.0/0 and ::/0). bad names an entry
// that is neither.
func mapCIDRs(list []string) (v4, v6 []string, bad string) {
	seen := map[netip.Prefix]bool{}
	given := false
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		given = true
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, nil, fmt.Sprintf("cidr %q is not an address or prefix", s)
		}
		if !p.Addr().Is4() {
			v6 = append(v6, s)
			continue
		}
		p = p.Masked()
		if !seen[p] {
			seen[p] = true
			v4 = append(v4, p.String())
		}
	}
	if !given {
		v4 = []string{"0.0.0.0/0"}
	}
	return v4, v6, ""
}

// splitCIDRList splits CloudStack's comma-separated cidrlist.
func splitCIDRList(s string) []string { return strings.Split(s, ",") }

// mappedACLRule is one ACL item in blueprint form.
type mappedACLRule struct {
	Rule  flows.ACLRule
	Deny  bool
	Notes []string
	// Drop says why the item is left out ("" = it is not); FailClosed:
	// leaving it out would widen access (a deny, or an item whose action
	// is unknown), so its whole list must be replaced by default_deny.
	Drop       string
	FailClosed bool
}

// mapACLItem maps one listNetworkACLs item.
func mapACLItem(it *ACLItem) mappedACLRule {
	var r mappedACLRule
	switch {
	case strings.EqualFold(it.Action, "Allow"):
		r.Rule.Action = flows.ActionAllow
	case strings.EqualFold(it.Action, "Deny"):
		r.Rule.Action, r.Deny = flows.ActionDeny, true
	default:
		r.Drop, r.FailClosed = fmt.Sprintf("action %q is neither Allow nor Deny (read as a deny)", it.Action), true
		return r
	}
	switch {
	case strings.EqualFold(it.TrafficType, "Ingress"):
		r.Rule.Direction = flows.DirIngress
	case strings.EqualFold(it.TrafficType, "Egress"):
		r.Rule.Direction = flows.DirEgress
	default:
		r.Drop, r.FailClosed = fmt.Sprintf("traffictype %q is neither Ingress nor Egress", it.TrafficType), r.Deny
		return r
	}
	if !it.Number.set || it.Number.v < 1 {
		r.Drop, r.FailClosed = fmt.Sprintf("number %s is not 1 or more", it.Number), r.Deny
		return r
	}
	r.Rule.Number = it.Number.v
	deleting := false
	if st := strings.ToLower(it.State); st == "deleting" || st == "revoke" {
		if !r.Deny {
			r.Drop = fmt.Sprintf("state %s: the rule is being deleted", it.State)
			return r
		}
		deleting = true
	}
	m := mapMatch(it.Protocol, it.StartPort, it.EndPort, it.ICMPType, it.ICMPCode, splitCIDRList(it.CIDRList), r.Deny)
	r.Notes = append(r.Notes, m.Notes...)
	if m.Drop != "" {
		r.Drop, r.FailClosed = m.Drop, r.Deny && !m.IPv6Only
		return r
	}
	if deleting {
		// Until CloudStack has removed it, its router still applies it.
		r.Notes = append(r.Notes, fmt.Sprintf("state %s: the deny is kept until CloudStack has removed it", it.State))
	}
	r.Rule.Protocol, r.Rule.Ports, r.Rule.ICMP, r.Rule.CIDRs = m.Protocol, m.Ports, m.ICMP, m.CIDRs
	return r
}

// mappedSGRule is one security group rule in blueprint form; Group is the
// referenced group (nil: the rule names a cidr).
type mappedSGRule struct {
	Rule  flows.SGRule
	Group *SecurityGroup
	Notes []string
	Drop  string // why the rule is left out ("" = it is not); rules only allow, so leaving one out never widens
}

// mapSGRule maps one security group rule of owner. resolve finds the
// group a rule names (account and name, in the owner's domain).
func mapSGRule(owner *SecurityGroup, r *SGRule, resolve func(owner *SecurityGroup, account, name string) (*SecurityGroup, string)) mappedSGRule {
	var out mappedSGRule
	start, end := r.StartPort, r.EndPort
	if start.set && end.set && start.v == 0 && end.v == 0 {
		// CloudStack stores 0/0 for every port (tcp/udp 0-65535, all,
		// protocol numbers).
		start, end = optInt{}, optInt{}
	}
	var cidrs []string
	switch {
	case r.SecurityGroupName != "":
		g, why := resolve(owner, r.Account, r.SecurityGroupName)
		if g == nil {
			out.Drop = why
			return out
		}
		out.Group = g
		cidrs = []string{"0.0.0.0/0"} // placeholder for mapMatch; the group is the remote side
	case strings.TrimSpace(r.CIDR) == "":
		out.Drop = "no cidr and no security group"
		return out
	default:
		cidrs = []string{r.CIDR}
	}
	m := mapMatch(r.Protocol, start, end, r.ICMPType, r.ICMPCode, cidrs, false)
	out.Notes = m.Notes
	if m.Drop != "" {
		out.Drop = m.Drop
		return out
	}
	out.Rule.Protocol, out.Rule.Ports, out.Rule.ICMP = m.Protocol, m.Ports, m.ICMP
	if out.Group == nil {
		out.Rule.CIDRs = m.CIDRs
	}
	return out
}
