package flows

import (
	"bytes"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const policyExample = "testdata/policy/example.yaml"

func TestPolicyExampleParses(t *testing.T) {
	bp, err := Load(policyExample)
	if err != nil {
		t.Fatal(err)
	}
	blue := &bp.VPCs[0]
	web := blue.ACLByName("web-acl")
	if web == nil || len(web.Rules) != 4 {
		t.Fatalf("web-acl: %+v", web)
	}
	r := web.Rules
	if m := r[0].Match; m.AnyProto || m.Proto != ProtoTCP || m.Ports != (PortRange{80, 80}) || len(m.Prefixes) != 1 || m.Prefixes[0] != netip.MustParsePrefix("0.0.0.0/0") {
		t.Errorf("rule 10: %+v", m)
	}
	if m := r[1].Match; m.Ports != (PortRange{1, 1023}) || r[1].Action != ActionDeny {
		t.Errorf("rule 20: %+v", m)
	}
	if m := r[2].Match; m.Proto != ProtoICMP || m.ICMPType != 8 || m.ICMPCode != -1 || m.String() != "icmp type 8" {
		t.Errorf("rule 30: %+v %q", m, m.String())
	}
	if m := r[3].Match; !m.AnyProto || m.String() != "all" || r[3].Direction != DirEgress {
		t.Errorf("rule 40: %+v", m)
	}
	if bp.VPCs[0].Tiers[0].ACL != "web-acl" || bp.VPCs[0].Tiers[1].ACL != ACLDefaultDeny {
		t.Errorf("tier acls: %q %q", bp.VPCs[0].Tiers[0].ACL, bp.VPCs[0].Tiers[1].ACL)
	}
	db := bp.SecurityGroupByName("db-sg")
	if db == nil || len(db.Ingress) != 2 || len(db.Egress) != 0 {
		t.Fatalf("db-sg: %+v", db)
	}
	if g := db.Ingress[0]; len(g.GroupRefs) != 1 || bp.SecurityGroups[g.GroupRefs[0]].Name != "web-sg" || len(g.Match.Prefixes) != 0 || g.Match.Ports != (PortRange{5432, 5432}) {
		t.Errorf("db-sg ingress[0]: %+v", g)
	}
	if g := db.Ingress[1]; g.Match.Ports != (PortRange{7000, 7010}) || g.Match.String() != "tcp 7000-7010" {
		t.Errorf("db-sg ingress[1]: %+v", g)
	}
	ops := bp.SecurityGroupByName("ops-sg")
	if m := ops.Ingress[0].Match; m.ICMPType != 8 || m.ICMPCode != -1 {
		t.Errorf("ops-sg ingress[0] (icmp type 8, code absent = any): %+v", m)
	}
	if m := ops.Egress[1].Match; m.AnyProto || m.Proto != 47 || m.Ports != AllPorts || m.String() != "47" {
		t.Errorf("ops-sg egress[1] (protocol 47): %+v", m)
	}
	if m := ops.Egress[0].Match; m.Proto != ProtoUDP || m.String() != "udp 53" {
		t.Errorf("ops-sg egress[0]: %+v", m)
	}
	if got := bp.VPCs[0].Tiers[1].VMs[0].SecurityGroups; strings.Join(got, ",") != "db-sg,ops-sg" {
		t.Errorf("db-1 groups: %v", got)
	}

	// The YAML library's strict decoder reads the same content.
	data, _ := os.ReadFile(policyExample)
	var strict Blueprint
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&strict); err != nil {
		t.Fatalf("strict decode: %v", err)
	}
	strict.SetDefaults()
	if strict.Hash() != bp.Hash() {
		t.Errorf("Parse and yaml.Decoder disagree on the policy content")
	}
	// A marshalled blueprint parses back to the same content.
	out, err := yaml.Marshal(bp)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("marshalled.yaml", out)
	if err != nil {
		t.Fatalf("parse marshalled: %v\n%s", err, out)
	}
	// (Hash differs: empty lists marshal as [] where the file had none.)
	if !reflect.DeepEqual(canonSGs(back.SecurityGroups), canonSGs(bp.SecurityGroups)) || !reflect.DeepEqual(canonACLs(back.VPCs[0].ACLs), canonACLs(bp.VPCs[0].ACLs)) ||
		back.VPCs[0].Tiers[1].ACL != ACLDefaultDeny || len(back.VPCs[0].Tiers[1].VMs[0].SecurityGroups) != 2 {
		t.Errorf("marshal round trip changed the policy:\n%s", out)
	}
}

func TestPolicyHash(t *testing.T) {
	data, err := os.ReadFile(policyExample)
	if err != nil {
		t.Fatal(err)
	}
	base, err := Parse("a.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range [][2]string{
		{"number: 20", "number: 25"},
		{"action: deny,  direction: ingress", "action: allow,  direction: ingress"},
		{"direction: egress,", "direction: ingress,"},
		{"ports: 1-1023", "ports: 1-1024"},
		{"icmp: {type: 8, code: -1}", "icmp: {type: 8, code: 0}"},
		{"icmp: {type: 8}", "icmp: {type: 8, code: -1}"},
		{"cidrs: [203.0.113.0/24]", "cidrs: [203.0.113.0/25]"},
		{"acl: default_deny", "acl: default_allow"},
		{"security_groups: [db-sg, ops-sg]", "security_groups: [ops-sg, db-sg]"},
		{"groups: [web-sg]", "groups: [db-sg]"},
		{"- name: empty-acl", "- name: empty-acl2"},
	} {
		mod := strings.Replace(string(data), ch[0], ch[1], 1)
		if mod == string(data) {
			t.Fatalf("%q not in the example", ch[0])
		}
		if ch[0] == "- name: empty-acl" {
			mod = strings.Replace(mod, "acl: empty-acl", "acl: empty-acl2", 1)
		}
		bp, err := Parse("a.yaml", []byte(mod))
		if err != nil {
			t.Fatalf("%q: %v", ch[1], err)
		}
		if bp.Hash() == base.Hash() {
			t.Errorf("hash unchanged after %q -> %q", ch[0], ch[1])
		}
	}
}

// TestPolicyValidateCodeBuilt checks the rules on code-built blueprints
// (no positions): each mutation gives exactly one error on its field.
func TestPolicyValidateCodeBuilt(t *testing.T) {
	i8 := func(v int) *int { return &v }
	base := func() *Blueprint {
		b := goodBlueprint()
		b.VPCs[0].ACLs = []ACLList{{Name: "a", Rules: []ACLRule{{Number: 10, Action: ActionAllow, Direction: DirIngress, Protocol: "tcp", Ports: "22", CIDRs: []string{"10.0.0.0/8"}}}}}
		b.VPCs[0].Tiers[0].ACL = "a"
		b.SecurityGroups = []SecurityGroup{{Name: "g", Ingress: []SGRule{{Protocol: "icmp", ICMP: &ICMPSpec{Type: i8(0)}, Groups: []string{"g"}}}}}
		b.VPCs[0].Tiers[0].VMs[0].SecurityGroups = []string{"g"}
		return b
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("base: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(b *Blueprint)
		field  string
		msg    string
	}{
		{"tier acl unknown", func(b *Blueprint) { b.VPCs[1].Tiers[0].ACL = "zz" }, "vpcs[1].tiers[0].acl", `acl "zz" is not an ACL list of VPC red (its lists: none)`},
		{"acl of another vpc", func(b *Blueprint) { b.VPCs[1].Tiers[0].ACL = "a" }, "vpcs[1].tiers[0].acl", "is a list of VPC blue, not of red"},
		{"reserved", func(b *Blueprint) { b.VPCs[0].ACLs[0].Name = ACLDefaultAllow; b.VPCs[0].Tiers[0].ACL = ACLDefaultAllow }, "vpcs[0].acls[0].name", "reserved"},
		{"dup list", func(b *Blueprint) { b.VPCs[0].ACLs = append(b.VPCs[0].ACLs, ACLList{Name: "a"}) }, "vpcs[0].acls[1].name", "already used by vpcs[0].acls[0]"},
		{"ports on all", func(b *Blueprint) { b.VPCs[0].ACLs[0].Rules[0].Protocol = "all" }, "vpcs[0].acls[0].rules[0].ports", "remove ports"},
		{"ports on 47", func(b *Blueprint) { b.VPCs[0].ACLs[0].Rules[0].Protocol = "47" }, "vpcs[0].acls[0].rules[0].ports", "protocol is 47: remove ports"},
		{"range", func(b *Blueprint) { b.VPCs[0].ACLs[0].Rules[0].Ports = "100-99" }, "vpcs[0].acls[0].rules[0].ports", "write 99-100"},
		{"icmp code", func(b *Blueprint) { b.SecurityGroups[0].Ingress[0].ICMP.Code = i8(300) }, "security_groups[0].ingress[0].icmp.code", "outside 0..255"},
		{"ipv6", func(b *Blueprint) { b.VPCs[0].ACLs[0].Rules[0].CIDRs = []string{"fd00::/8"} }, "vpcs[0].acls[0].rules[0].cidrs[0]", "IPv6 is not supported yet"},
		{"icmpv6", func(b *Blueprint) { b.VPCs[0].ACLs[0].Rules[0].Protocol = "58"; b.VPCs[0].ACLs[0].Rules[0].Ports = "" }, "vpcs[0].acls[0].rules[0].protocol", "IPv6 is not supported yet"},
		{"unknown group ref", func(b *Blueprint) { b.SecurityGroups[0].Ingress[0].Groups = []string{"h"} }, "security_groups[0].ingress[0].groups[0]", `"h" is not defined`},
		{"no remote", func(b *Blueprint) { b.SecurityGroups[0].Ingress[0].Groups = nil }, "security_groups[0].ingress[0].cidrs", "or name security groups"},
		{"sg name", func(b *Blueprint) {
			b.SecurityGroups[0].Name = "-g"
			b.VPCs[0].Tiers[0].VMs[0].SecurityGroups = nil
			b.SecurityGroups[0].Ingress[0].Groups = []string{"-g"}
		}, "security_groups[0].name", "must start with a letter"},
	} {
		b := base()
		tc.mutate(b)
		err := b.Validate()
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		errs := validationErrors(t, err)
		found := false
		for _, e := range errs {
			if e.Field == tc.field && strings.Contains(e.Msg, tc.msg) {
				found = true
			}
		}
		if !found || (len(errs) != 1 && tc.name != "sg name") {
			t.Errorf("%s: got %v, want one error on %s containing %q", tc.name, err, tc.field, tc.msg)
		}
	}
}

// TestPortRangePrefixes: the value/mask matches of a range cover exactly
// its ports, are disjoint, and number at most 2*16-2 (16 for 1-65535).
func TestPortRangePrefixes(t *testing.T) {
	check := func(r PortRange) []PortMask {
		t.Helper()
		ms := r.Prefixes()
		if len(ms) > 30 {
			t.Fatalf("%v: %d matches, more than 2*16-2", r, len(ms))
		}
		for p := 0; p <= 65535; p++ {
			n := 0
			for _, m := range ms {
				if m.Contains(uint16(p)) {
					n++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[r.Contains(uint16(p))]; n != want {
				t.Fatalf("%v: port %d matched by %d of %v, want %d", r, p, n, ms, want)
			}
		}
		return ms
	}
	if ms := check(AllPorts); len(ms) != 16 {
		t.Errorf("1-65535: %d matches %v, want 16", len(ms), ms)
	}
	if ms := check(PortRange{80, 80}); len(ms) != 1 || ms[0].String() != "80" {
		t.Errorf("80: %v", ms)
	}
	if ms := check(PortRange{1024, 2047}); len(ms) != 1 || ms[0].String() != "0x0400/0xfc00" {
		t.Errorf("1024-2047: %v", ms)
	}
	if ms := check(PortRange{1, 1023}); len(ms) != 10 {
		t.Errorf("1-1023: %d matches %v, want 10", len(ms), ms)
	}
	check(PortRange{2, 65534})
	check(PortRange{65535, 65535})
	check(PortRange{7000, 7010})
	seed := uint32(12345)
	for i := 0; i < 40; i++ {
		seed = seed*1103515245 + 12345
		a := uint16(seed>>8) | 1
		seed = seed*1103515245 + 12345
		b := uint16(seed >> 8)
		if a > b {
			a, b = b, a
		}
		if a == 0 {
			a = 1
		}
		check(PortRange{a, b})
	}
}

// TestPolicyCookies: every policy rule has its own cookie object, and a
// cookie maps back to the rule's name.
func TestPolicyCookies(t *testing.T) {
	bp, err := Load(policyExample)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	bp.policyObjects(func(obj uint32, name, _ string) {
		n++
		cat := CatACLRule
		if strings.HasPrefix(name, "sg ") {
			cat = CatSGRule
		}
		if got := DescribeRule(bp, MakeCookie(cat, obj, 7)); got != name {
			t.Errorf("DescribeRule(%#x) = %q, want %q", obj, got, name)
		}
	})
	if n != 4+4+1+2+1+2 {
		t.Errorf("%d policy rules visited", n)
	}
	if got := DescribeRule(bp, MakeCookie(CatACLRule, 1, 0)); !strings.Contains(got, "not in this blueprint") {
		t.Errorf("unknown rule: %q", got)
	}
	if c, ok := CategoryByName("acl"); !ok || c != CatACLRule || CatSGRule.String() != "sg" {
		t.Errorf("category names")
	}
	if ACLRuleObject("blue", "web-acl", 20) == ACLRuleObject("blue", "web-acl", 2) || SGRuleObject("a", DirIngress, 0) == SGRuleObject("a", DirEgress, 0) {
		t.Error("objects collide")
	}
}

// TestPolicyCookieCollisionRefused finds two security group names whose
// first ingress rules hash to the same cookie object and checks the
// validator refuses them.
func TestPolicyCookieCollisionRefused(t *testing.T) {
	seen := map[uint32]string{}
	var a, b string
	x := uint64(88172645463325252)
	for i := 0; i < 1<<20 && a == ""; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		n := "g" + strconv.FormatUint(x, 36)
		o := SGRuleObject(n, DirIngress, 0)
		if other, ok := seen[o]; ok {
			a, b = other, n
		}
		seen[o] = n
	}
	if a == "" {
		t.Skip("no collision found")
	}
	bp := goodBlueprint()
	rule := []SGRule{{Protocol: "tcp", CIDRs: []string{"10.0.0.0/8"}}}
	bp.SecurityGroups = []SecurityGroup{{Name: a, Ingress: rule}, {Name: b, Ingress: rule}}
	err := bp.Validate()
	if err == nil || !strings.Contains(err.Error(), "security_groups[1].ingress[0]: sg "+b+" ingress[0] hashes to the same flow cookie object") {
		t.Errorf("colliding groups %s and %s: err = %v", a, b, err)
	}
}
