package cloudstack

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/vpcflow/vpcflow/flows"
)

var unset optInt

func fmtMatch(m ruleMatch) string {
	if m.Drop != "" {
		s := "drop: " + m.Drop
		if m.IPv6Only {
			s = "drop6: " + m.Drop
		}
		return s
	}
	s := m.Protocol
	if m.Ports != "" {
		s += " " + m.Ports
	}
	if m.ICMP != nil {
		t, c := "any", "any"
		if m.ICMP.Type != nil {
			t = strconv.Itoa(*m.ICMP.Type)
		}
		if m.ICMP.Code != nil {
			c = strconv.Itoa(*m.ICMP.Code)
		}
		s += " icmp " + t + "/" + c
	}
	return s + " [" + strings.Join(m.CIDRs, " ") + "]"
}

// Every protocol form, port form, ICMP form and cidrlist form, as an allow
// and as a deny: an allow takes the narrower reading or is dropped, a deny
// the wider one; dropped parts are noted.
func TestMapMatch(t *testing.T) {
	any4 := []string{"0.0.0.0/0"}
	for _, tc := range []struct {
		proto               string
		start, end, ty, cod optInt
		cidrs               []string
		allow, deny         string // want; "drop: x" = dropped saying x, "drop6: x" = dropped as IPv6-only
		note                string // a note of the deny (or of the allow when the deny has none)
	}{
		// Protocol names, any case.
		{proto: "tcp", start: some(80), end: some(80), cidrs: any4, allow: "tcp 80 [0.0.0.0/0]", deny: "tcp 80 [0.0.0.0/0]"},
		{proto: "TCP", start: some(22), cidrs: any4, allow: "tcp 22 [0.0.0.0/0]", deny: "tcp 22 [0.0.0.0/0]"}, // endport defaults to startport
		{proto: " Udp ", start: some(1024), end: some(65535), cidrs: any4, allow: "udp 1024-65535 [0.0.0.0/0]", deny: "udp 1024-65535 [0.0.0.0/0]"},
		{proto: "icmp", ty: some(8), cod: some(-1), cidrs: any4, allow: "icmp icmp 8/any [0.0.0.0/0]", deny: "icmp icmp 8/any [0.0.0.0/0]"},
		{proto: "icmp", ty: some(3), cod: some(4), cidrs: any4, allow: "icmp icmp 3/4 [0.0.0.0/0]", deny: "icmp icmp 3/4 [0.0.0.0/0]"},
		{proto: "icmp", ty: some(-1), cod: some(-1), cidrs: any4, allow: "icmp [0.0.0.0/0]", deny: "icmp [0.0.0.0/0]"},
		{proto: "icmp", cidrs: any4, allow: "icmp [0.0.0.0/0]", deny: "icmp [0.0.0.0/0]"},
		{proto: "ALL", cidrs: any4, allow: "all [0.0.0.0/0]", deny: "all [0.0.0.0/0]"},
		{proto: "all", start: some(1), end: some(5), cidrs: any4, allow: "all [0.0.0.0/0]", deny: "all [0.0.0.0/0]"}, // CloudStack refuses ports on all; its router ignores them
		// Protocol numbers as CloudStack stores them.
		{proto: "6", cidrs: any4, allow: "tcp [0.0.0.0/0]", deny: "tcp [0.0.0.0/0]"},
		{proto: "6", start: some(80), end: some(81), cidrs: any4, allow: "tcp 80-81 [0.0.0.0/0]", deny: "tcp [0.0.0.0/0]", note: "the deny covers every port"},
		{proto: "17", start: some(53), cidrs: any4, allow: "udp 53 [0.0.0.0/0]", deny: "udp [0.0.0.0/0]", note: "ports 53 of protocol 17 ignored"},
		{proto: "1", cidrs: any4, allow: "icmp [0.0.0.0/0]", deny: "icmp [0.0.0.0/0]"},
		{proto: "1", ty: some(8), cod: some(0), cidrs: any4, allow: "icmp icmp 8/0 [0.0.0.0/0]", deny: "icmp [0.0.0.0/0]", note: "applies protocol number 1 to every ICMP message"},
		{proto: "47", cidrs: any4, allow: "47 [0.0.0.0/0]", deny: "47 [0.0.0.0/0]"},
		{proto: "47", start: some(1), end: some(2), cidrs: any4, allow: "47 [0.0.0.0/0]", deny: "47 [0.0.0.0/0]"},
		{proto: "255", cidrs: any4, allow: "255 [0.0.0.0/0]", deny: "255 [0.0.0.0/0]"},
		{proto: "0", cidrs: any4, allow: "drop: protocol 0", deny: "all [0.0.0.0/0]", note: "every protocol on CloudStack's router"},
		{proto: "58", cidrs: any4, allow: "drop: protocol 58 is ICMPv6", deny: "drop: protocol 58 is ICMPv6"},
		{proto: "256", cidrs: any4, allow: "drop: outside 0..255", deny: "drop: outside 0..255"},
		{proto: "-1", cidrs: any4, allow: "drop: outside 0..255", deny: "drop: outside 0..255"},
		{proto: "gre", cidrs: any4, allow: `drop: protocol "gre" is not`, deny: `drop: protocol "gre" is not`},
		{proto: "", cidrs: any4, allow: "drop: no protocol", deny: "drop: no protocol"},
		// Port forms.
		{proto: "tcp", start: some(0), end: some(65535), cidrs: any4, allow: "tcp [0.0.0.0/0]", deny: "tcp [0.0.0.0/0]"},
		{proto: "tcp", start: some(1), end: some(65535), cidrs: any4, allow: "tcp [0.0.0.0/0]", deny: "tcp [0.0.0.0/0]"},
		{proto: "tcp", start: some(0), end: some(1023), cidrs: any4, allow: "tcp 1-1023 [0.0.0.0/0]", deny: "tcp 1-1023 [0.0.0.0/0]"},
		{proto: "tcp", start: some(0), end: some(0), cidrs: any4, allow: "drop: port 0 only", deny: "tcp [0.0.0.0/0]", note: "the deny covers every port"},
		{proto: "tcp", start: some(1023), end: some(1), cidrs: any4, allow: "drop: out of order", deny: "tcp [0.0.0.0/0]", note: "out of order"},
		{proto: "udp", start: some(1), end: some(65536), cidrs: any4, allow: "drop: outside 0..65535", deny: "udp [0.0.0.0/0]", note: "outside 0..65535"},
		{proto: "udp", end: some(53), cidrs: any4, allow: "drop: endport 53 without a startport", deny: "udp [0.0.0.0/0]", note: "without a startport"},
		{proto: "6", start: some(9), end: some(1), cidrs: any4, allow: "drop: out of order", deny: "tcp [0.0.0.0/0]", note: "ignored"},
		// ICMP forms.
		{proto: "icmp", ty: some(-1), cod: some(3), cidrs: any4, allow: "drop: icmp code 3 with any type", deny: "icmp [0.0.0.0/0]", note: "the deny covers every ICMP message"},
		{proto: "icmp", ty: some(256), cidrs: any4, allow: "drop: icmp type 256 is outside", deny: "icmp [0.0.0.0/0]", note: "cannot be written"},
		{proto: "icmp", ty: some(3), cod: some(-2), cidrs: any4, allow: "drop: icmp code -2 is outside", deny: "icmp [0.0.0.0/0]"},
		{proto: "icmp", cod: some(1), cidrs: any4, allow: "drop: icmp code 1 with any type", deny: "icmp [0.0.0.0/0]"},
		// cidrlist forms.
		{proto: "all", cidrs: []string{""}, allow: "all [0.0.0.0/0]", deny: "all [0.0.0.0/0]"},  // empty: any
		{proto: "all", cidrs: []string{" "}, allow: "all [0.0.0.0/0]", deny: "all [0.0.0.0/0]"}, // blank: any
		{proto: "all", cidrs: nil, allow: "all [0.0.0.0/0]", deny: "all [0.0.0.0/0]"},           // none: any
		{proto: "all", cidrs: splitCIDRList("10.1.0.0/16, 10.2.0.0/16 ,10.1.0.0/16"), allow: "all [10.1.0.0/16 10.2.0.0/16]", deny: "all [10.1.0.0/16 10.2.0.0/16]"},
		{proto: "all", cidrs: splitCIDRList("10.1.2.3/16,192.0.2.7"), allow: "all [10.1.0.0/16 192.0.2.7/32]", deny: "all [10.1.0.0/16 192.0.2.7/32]"},
		{proto: "all", cidrs: splitCIDRList("0.0.0.0/0,::/0"), allow: "all [0.0.0.0/0]", deny: "all [0.0.0.0/0]", note: "IPv6 cidrs ::/0 left out"},
		{proto: "all", cidrs: splitCIDRList("fd00::/8,2001:db8::1"), allow: "drop6: cidrs fd00::/8,2001:db8::1 are IPv6 only", deny: "drop6: cidrs fd00::/8,2001:db8::1 are IPv6 only"},
		{proto: "58", cidrs: splitCIDRList("::/0"), allow: "drop6: are IPv6 only", deny: "drop6: are IPv6 only"},
		{proto: "all", cidrs: splitCIDRList("10.0.0.0/8,bogus"), allow: `drop: cidr "bogus" is not`, deny: `drop: cidr "bogus" is not`},
		{proto: "all", cidrs: splitCIDRList("10.0.0.0/33"), allow: `drop: cidr "10.0.0.0/33" is not`, deny: `drop: cidr "10.0.0.0/33" is not`},
	} {
		for _, deny := range []bool{false, true} {
			want := tc.allow
			if deny {
				want = tc.deny
			}
			m := mapMatch(tc.proto, tc.start, tc.end, tc.ty, tc.cod, tc.cidrs, deny)
			got := fmtMatch(m)
			name := fmt.Sprintf("%q ports %s-%s icmp %s/%s cidrs %q deny %v", tc.proto, tc.start, tc.end, tc.ty, tc.cod, tc.cidrs, deny)
			if strings.HasPrefix(want, "drop") {
				prefix, sub, _ := strings.Cut(want, ": ")
				if !strings.HasPrefix(got, prefix+":") || !strings.Contains(got, sub) {
					t.Errorf("%s: got %q, want %q", name, got, want)
				}
				continue
			}
			if got != want {
				t.Errorf("%s: got %q, want %q", name, got, want)
			}
			if tc.note != "" && (deny || tc.deny == tc.allow) && !strings.Contains(strings.Join(m.Notes, "; "), tc.note) {
				t.Errorf("%s: notes %q, want %q", name, m.Notes, tc.note)
			}
			// What is written always validates (flows' own parser).
			if _, errs := flowsRuleCheck(m); errs != "" {
				t.Errorf("%s: the written rule does not validate: %s", name, errs)
			}
		}
	}
}

// flowsRuleCheck validates a mapped match as an ACL rule of a minimal
// blueprint, through flows.Parse.
func flowsRuleCheck(m ruleMatch) (*flows.Blueprint, string) {
	var b strings.Builder
	b.WriteString("version: 1\nmanagement: {cidrs: [192.0.2.0/24]}\ncontrollers: []\nhosts: [{name: h, datapath_id: \"00000000000000a1\", tunnel_ip: 198.51.100.1, uplink: eth0}]\nvpcs:\n  - name: v\n    acls:\n      - name: l\n        rules:\n")
	fmt.Fprintf(&b, "          - {number: 1, action: deny, direction: ingress, %s}\n", ruleFields(m.Protocol, m.Ports, m.ICMP, m.CIDRs, nil))
	b.WriteString("    tiers: [{name: t, vni: 1, cidr: 10.9.0.0/24, acl: l, vms: []}]\n")
	bp, err := flows.Parse("rule.yaml", []byte(b.String()))
	if err != nil {
		return nil, err.Error()
	}
	return bp, ""
}

func TestMapACLItem(t *testing.T) {
	base := func(mod func(*ACLItem)) *ACLItem {
		it := &ACLItem{ID: "i", ACLID: "l", Number: some(10), Action: "Allow", TrafficType: "Ingress", Protocol: "tcp", StartPort: some(80), EndPort: some(80), CIDRList: "0.0.0.0/0", State: "Active"}
		mod(it)
		return it
	}
	for _, tc := range []struct {
		name string
		it   *ACLItem
		want string // "allow ingress #10" etc., or "drop"/"fail" + ": reason"
	}{
		{"allow", base(func(*ACLItem) {}), "allow ingress #10 tcp 80"},
		{"deny egress, lower case", base(func(i *ACLItem) { i.Action, i.TrafficType = "deny", "egress" }), "deny egress #10 tcp 80"},
		{"unknown action", base(func(i *ACLItem) { i.Action = "Reject" }), `fail: action "Reject"`},
		{"empty action", base(func(i *ACLItem) { i.Action = "" }), "fail: action"},
		{"unknown traffictype, allow", base(func(i *ACLItem) { i.TrafficType = "Both" }), "drop: traffictype"},
		{"unknown traffictype, deny", base(func(i *ACLItem) { i.TrafficType, i.Action = "", "Deny" }), "fail: traffictype"},
		{"no number, allow", base(func(i *ACLItem) { i.Number = unset }), "drop: number - is not 1 or more"},
		{"number 0, deny", base(func(i *ACLItem) { i.Number, i.Action = some(0), "Deny" }), "fail: number 0"},
		{"deleting allow", base(func(i *ACLItem) { i.State = "Deleting" }), "drop: state Deleting"},
		{"deleting deny kept", base(func(i *ACLItem) { i.State, i.Action = "Deleting", "Deny" }), "deny ingress #10 tcp 80"},
		{"add state", base(func(i *ACLItem) { i.State = "Add" }), "allow ingress #10 tcp 80"},
		{"ICMPv6 deny", base(func(i *ACLItem) { i.Protocol, i.Action, i.StartPort, i.EndPort = "58", "Deny", unset, unset }), "fail: protocol 58"},
		{"IPv6-only deny", base(func(i *ACLItem) { i.Action, i.CIDRList = "Deny", "::/0" }), "drop: cidrs ::/0 are IPv6 only"},
		{"bad cidr deny", base(func(i *ACLItem) { i.Action, i.CIDRList = "Deny", "10.0.0.0/8,x" }), `fail: cidr "x"`},
		{"number above 30000 kept for the list", base(func(i *ACLItem) { i.Number = some(40000) }), "allow ingress #40000 tcp 80"},
	} {
		r := mapACLItem(tc.it)
		got := ""
		switch {
		case r.Drop != "" && r.FailClosed:
			got = "fail: " + r.Drop
		case r.Drop != "":
			got = "drop: " + r.Drop
		default:
			got = fmt.Sprintf("%s %s #%d %s", r.Rule.Action, r.Rule.Direction, r.Rule.Number, r.Rule.Protocol)
			if r.Rule.Ports != "" {
				got += " " + r.Rule.Ports
			}
		}
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMapSGRule(t *testing.T) {
	acme := &SecurityGroup{ID: "g1", Name: "web", Account: "acme", DomainID: "d1"}
	groups := []*SecurityGroup{acme,
		{ID: "g2", Name: "db", Account: "acme", DomainID: "d1"},
		{ID: "g3", Name: "app", Account: "globex", DomainID: "d1"},
		{ID: "g4", Name: "app", Account: "acme", DomainID: "d2"}, // same name and account, another domain
		{ID: "g5", Name: "dup", Account: "acme", DomainID: "d1"},
		{ID: "g6", Name: "dup", Account: "acme", DomainID: "d1"},
	}
	b := &builder{pol: &policyState{byName: map[string][]*SecurityGroup{}}}
	for _, g := range groups {
		b.pol.byName[g.Name] = append(b.pol.byName[g.Name], g)
	}
	for _, tc := range []struct {
		r    SGRule
		want string
	}{
		{SGRule{Protocol: "tcp", StartPort: some(80), EndPort: some(80), CIDR: "0.0.0.0/0"}, "tcp 80 [0.0.0.0/0]"},
		{SGRule{Protocol: "tcp", StartPort: some(0), EndPort: some(0), CIDR: "10.0.0.0/8"}, "tcp [10.0.0.0/8]"}, // 0/0: every port
		{SGRule{Protocol: "udp", StartPort: some(0), EndPort: some(65535), CIDR: "10.0.0.0/8"}, "udp [10.0.0.0/8]"},
		{SGRule{Protocol: "all", StartPort: some(0), EndPort: some(0), CIDR: "10.0.0.5"}, "all [10.0.0.5/32]"},
		{SGRule{Protocol: "6", StartPort: some(0), EndPort: some(0), CIDR: "10.0.0.0/8"}, "tcp [10.0.0.0/8]"},
		{SGRule{Protocol: "47", StartPort: some(0), EndPort: some(0), CIDR: "10.0.0.0/8"}, "47 [10.0.0.0/8]"},
		{SGRule{Protocol: "icmp", ICMPType: some(-1), ICMPCode: some(-1), CIDR: "10.0.0.0/8"}, "icmp [10.0.0.0/8]"},
		{SGRule{Protocol: "icmp", ICMPType: some(0), ICMPCode: some(0), CIDR: "10.0.0.0/8"}, "icmp icmp 0/0 [10.0.0.0/8]"},
		{SGRule{Protocol: "tcp", StartPort: some(22), EndPort: some(22), CIDR: "fd00::/8"}, "drop: IPv6 only"},
		{SGRule{Protocol: "tcp", StartPort: some(22), EndPort: some(22)}, "drop: no cidr and no security group"},
		{SGRule{Protocol: "58", CIDR: "10.0.0.0/8"}, "drop: ICMPv6"},
		{SGRule{Protocol: "tcp", StartPort: some(5432), EndPort: some(5432), SecurityGroupName: "db", Account: "acme"}, "tcp 5432 group g2"},
		{SGRule{Protocol: "tcp", StartPort: some(8080), EndPort: some(8080), SecurityGroupName: "app", Account: "globex"}, "tcp 8080 group g3"}, // another account, same domain
		{SGRule{Protocol: "tcp", StartPort: some(1), EndPort: some(1), SecurityGroupName: "nope", Account: "acme"}, `drop: it names security group "nope" of account "acme", which listSecurityGroups does not show`},
		{SGRule{Protocol: "tcp", StartPort: some(1), EndPort: some(1), SecurityGroupName: "web", Account: "globex"}, "drop: it names security group"},
		{SGRule{Protocol: "tcp", StartPort: some(1), EndPort: some(1), SecurityGroupName: "dup", Account: "acme"}, "drop: which listSecurityGroups shows 2 times"},
	} {
		mr := mapSGRule(acme, &tc.r, b.resolveGroup)
		got := ""
		switch {
		case mr.Drop != "":
			got = "drop: " + mr.Drop
		case mr.Group != nil:
			got = mr.Rule.Protocol
			if mr.Rule.Ports != "" {
				got += " " + mr.Rule.Ports
			}
			got += " group " + mr.Group.ID
			if len(mr.Rule.CIDRs) > 0 {
				got += " with cidrs"
			}
		default:
			got = fmtMatch(ruleMatch{Protocol: mr.Rule.Protocol, Ports: mr.Rule.Ports, ICMP: mr.Rule.ICMP, CIDRs: mr.Rule.CIDRs})
		}
		ok := got == tc.want
		if strings.HasPrefix(tc.want, "drop: ") {
			ok = strings.HasPrefix(got, "drop: ") && strings.Contains(got, strings.TrimPrefix(tc.want, "drop: "))
		}
		if !ok {
			t.Errorf("%+v: got %q, want %q", tc.r, got, tc.want)
		}
	}
	// The domain of another group with the same name and account is not
	// the owner's: from d2, "app" of acme is g4.
	other := &SecurityGroup{ID: "g7", Name: "x", Account: "acme", DomainID: "d2"}
	if g, _ := b.resolveGroup(other, "acme", "app"); g == nil || g.ID != "g4" {
		t.Errorf("resolve from domain d2: %+v, want g4", g)
	}
}

// optInt reads CloudStack's numbers whether sent as numbers or strings;
// absent, null and "" are unset; anything else fails the answer.
func TestOptIntJSON(t *testing.T) {
	for in, want := range map[string]string{`80`: "80", `"80"`: "80", `" 22 "`: "22", `-1`: "-1", `"-1"`: "-1", `null`: "-", `""`: "-"} {
		var n optInt
		if err := json.Unmarshal([]byte(in), &n); err != nil || n.String() != want {
			t.Errorf("%s: %v, %v; want %s", in, n, err, want)
		}
	}
	var it ACLItem
	if err := json.Unmarshal([]byte(`{"id":"x"}`), &it); err != nil || it.StartPort.set || it.Number.set {
		t.Errorf("absent fields: %+v %v", it, err)
	}
	for _, in := range []string{`"eighty"`, `1.5`, `true`, `{}`} {
		var n optInt
		if err := json.Unmarshal([]byte(in), &n); err == nil {
			t.Errorf("%s: accepted as %v", in, n)
		}
	}
}

// FuzzMapACLItem: whatever CloudStack sends, the mapping never panics,
// what it writes validates as a blueprint rule, and a deny it cannot write
// fails its list closed unless it matches IPv6 only.
func FuzzMapACLItem(f *testing.F) {
	for _, s := range []struct {
		action, dir, proto, cidrs, state string
		number, start, end, ty, code     int
	}{
		{"Allow", "Ingress", "tcp", "0.0.0.0/0", "Active", 10, 80, 80, -2, -2},
		{"Deny", "Egress", "6", "10.0.0.0/8, fd00::/8", "Add", 20, 1, 1023, -2, -2},
		{"deny", "ingress", "icmp", "", "Deleting", 1, -2, -2, -1, 3},
		{"Allow", "Ingress", "0", "10.1.2.3/16,192.0.2.1", "Active", 40000, 0, 0, 8, 0},
		{"Deny", "Ingress", "58", "::/0", "Active", 5, -2, -2, -2, -2},
		{"Reject", "Both", "gre", "x", "", 0, 65536, -1, 300, 300},
	} {
		f.Add(s.action, s.dir, s.proto, s.cidrs, s.state, s.number, s.start, s.end, s.ty, s.code)
	}
	opt := func(v int) optInt {
		if v == -2 {
			return unset
		}
		return some(v)
	}
	f.Fuzz(func(t *testing.T, action, dir, proto, cidrs, state string, number, start, end, ty, code int) {
		it := &ACLItem{ID: "i", ACLID: "l", Action: action, TrafficType: dir, Protocol: proto, CIDRList: cidrs, State: state,
			Number: opt(number), StartPort: opt(start), EndPort: opt(end), ICMPType: opt(ty), ICMPCode: opt(code)}
		r := mapACLItem(it)
		deny := !strings.EqualFold(action, "Allow")
		if r.Drop != "" {
			if deny && !r.FailClosed && !strings.Contains(r.Drop, "IPv6 only") {
				t.Fatalf("%+v: a deny dropped without failing its list: %s", it, r.Drop)
			}
			return
		}
		if r.Rule.Number > flows.MaxACLRuleNumber {
			r.Rule.Number = 1 // the list renumbers
		}
		m := ruleMatch{Protocol: r.Rule.Protocol, Ports: r.Rule.Ports, ICMP: r.Rule.ICMP, CIDRs: r.Rule.CIDRs}
		if _, errs := flowsRuleCheck(m); errs != "" {
			t.Fatalf("%+v: written as %s, which does not validate: %s", it, fmtMatch(m), errs)
		}
	})
}
