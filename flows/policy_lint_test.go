package flows

import (
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

const lintFixture = "testdata/lint/findings.yaml"

// lintYAML lints blueprint text parsed with ParseForLint (positions kept).
func lintYAML(t *testing.T, name, src string) []LintFinding {
	t.Helper()
	bp, err := ParseForLint(name, []byte(src))
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	return LintPolicy(bp)
}

// codesAt renders findings as "field code" lines for comparison.
func codesAt(fs []LintFinding) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Field+" "+f.Code)
	}
	return strings.Join(out, "\n")
}

func wantCodes(t *testing.T, fs []LintFinding, want ...string) {
	t.Helper()
	if got := codesAt(fs); got != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s\nall:\n%s", got, strings.Join(want, "\n"), renderFindings(fs))
	}
}

func renderFindings(fs []LintFinding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

// TestLintFixture: every finding of the fixture, in file order, with its
// position, severity, code, field, the rules it names and the fix.
func TestLintFixture(t *testing.T) {
	data, err := os.ReadFile(lintFixture)
	if err != nil {
		t.Fatal(err)
	}
	fs := lintYAML(t, lintFixture, string(data))
	want := []struct {
		loc, sev, code, field, msg string
		related                    []string
	}{
		{"14:99", "warning", LintWideAdminPort, "vpcs[0].acls[0].rules[0].cidrs[0]", "rule #10 allows administrative ports from 0.0.0.0/0 (any address): ssh tcp/22; telnet tcp/23", nil},
		{"15:13", "error", LintACLShadowedDeny, "vpcs[0].acls[0].rules[1]", "rule #20 (deny tcp 22 from 203.0.113.0/24) can never match: rule #10, numbered before it, takes all of its traffic first, and #10 allows what #20 would deny", []string{"vpcs[0].acls[0].rules[0]"}},
		{"16:13", "warning", LintACLRedundant, "vpcs[0].acls[0].rules[2]", "with the same verdict (allow)", []string{"vpcs[0].acls[0].rules[0]"}},
		{"19:13", "warning", LintACLShadowedAllow, "vpcs[0].acls[0].rules[5]", "rules #40 and #50, numbered before it, take all of its traffic first, and #40 and #50 deny what #60 would allow", []string{"vpcs[0].acls[0].rules[3]", "vpcs[0].acls[0].rules[4]"}},
		{"20:13", "warning", LintHostPortDropped, "vpcs[0].acls[0].rules[6]", "rule #70 allows tcp/22 (a host service port, management.host_ports) out of the tier: never effective: mgmt_guard drops", nil},
		{"21:9", "warning", LintACLUnused, "vpcs[0].acls[1]", "ACL list spare-acl of VPC blue is used by no tier", nil},
		{"37:14", "info", LintACLEgressOnly, "vpcs[0].tiers[1].acl", "tier blue/db: acl out-acl has egress rules only", nil},
		{"44:46", "warning", LintWideAdminPort, "security_groups[0].ingress[1].cidrs[0]", "rdp tcp/3389, udp/3389", nil},
		{"49:9", "warning", LintSGRedundant, "security_groups[1].ingress[2]", "sg db-sg ingress[2] (tcp 5432-5433 from 10.2.1.0/24) allows nothing new: sg db-sg ingress[1] allows all of it already", []string{"security_groups[1].ingress[1]"}},
		{"50:47", "warning", LintSGEmptyRef, "security_groups[1].ingress[3].groups[0]", "group batch-sg has no member in VPC blue (members of db-sg there: db-1)", nil},
		{"53:9", "info", LintSGRedundantMember, "security_groups[2].ingress[0]", "every member of ops-sg (db-1) also carries other groups, and sg db-sg ingress[1] allows all of it already", []string{"security_groups[1].ingress[1]"}},
		{"55:9", "warning", LintHostPortDropped, "security_groups[2].egress[0]", "sg ops-sg egress[0] allows tcp/22 (a host service port, management.host_ports) to addresses outside every member's tier: never effective", nil},
		{"58:5", "warning", LintSGUnused, "security_groups[4]", "security group old-sg is used by no VM and referenced by no rule", nil},
	}
	if len(fs) != len(want) {
		t.Fatalf("%d findings, want %d:\n%s", len(fs), len(want), renderFindings(fs))
	}
	for i, w := range want {
		f := fs[i]
		loc := lintFixture + ":" + w.loc + ": " + w.sev + "[" + w.code + "]: " + w.field + ": "
		if !strings.HasPrefix(f.String(), loc) || !strings.Contains(f.Message, w.msg) || f.Fix == "" || !strings.HasSuffix(f.String(), " (fix: "+f.Fix+")") {
			t.Errorf("finding %d:\n got %s\nwant %s...%s...", i, f, loc, w.msg)
		}
		if strings.Join(f.Related, " ") != strings.Join(w.related, " ") {
			t.Errorf("finding %d related %v, want %v", i, f.Related, w.related)
		}
	}
}

// TestLintParseForLint: ParseForLint keeps positions and validates like
// Parse; LintPolicy on a blueprint from Parse finds the same things,
// without positions.
func TestLintParseForLint(t *testing.T) {
	data, err := os.ReadFile(lintFixture)
	if err != nil {
		t.Fatal(err)
	}
	bp, err := ParseForLint(lintFixture, data)
	if err != nil {
		t.Fatalf("ParseForLint: %v", err)
	}
	withPos := LintPolicy(bp)
	for _, f := range withPos {
		if f.Line == 0 || f.Column == 0 || f.File != lintFixture {
			t.Errorf("no position: %s", f)
		}
	}
	// Invalid input is still refused, with positions.
	bad := strings.Replace(string(data), "ports: 443", "ports: 443-80", 1)
	if _, err := ParseForLint(lintFixture, []byte(bad)); err == nil || !strings.Contains(err.Error(), lintFixture+":16:") || !strings.Contains(err.Error(), "write 80-443") {
		t.Errorf("ParseForLint on an invalid range: %v", err)
	}
	plain, err := Parse(lintFixture, data)
	if err != nil {
		t.Fatal(err)
	}
	noPos := LintPolicy(plain)
	sorted := func(fs []LintFinding) string {
		lines := strings.Split(codesAt(fs), "\n")
		sort.Strings(lines)
		return strings.Join(lines, "\n")
	}
	if sorted(noPos) != sorted(withPos) {
		t.Errorf("Parse vs ParseForLint:\n%s\n--\n%s", codesAt(noPos), codesAt(withPos))
	}
	for _, f := range noPos {
		if f.Line != 0 || !strings.HasPrefix(f.String(), lintFixture+": ") {
			t.Errorf("position without ParseForLint: %s", f)
		}
	}
	// A blueprint without policy keys has no findings.
	demo, err := Load("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if fs := LintPolicy(demo); len(fs) != 0 {
		t.Errorf("policy-free blueprint: %s", renderFindings(fs))
	}
}

// lintBase is a blueprint head for the table tests: VPC blue with tiers
// web (10.2.1.0/24) and db (10.2.2.0/24) and one VM each; each case
// appends acls, tier acls and groups by replacing the markers.
const lintBase = `version: 1
hosts:
  - {name: kvm1, datapath_id: "00000000000000a1", tunnel_ip: 198.51.100.11, uplink: eth0}
vpcs:
  - name: blue
    routing: ROUTING
    acls:
      - name: l
        rules:
RULES
    tiers:
      - {name: web, vni: 9101, cidr: 10.2.1.0/24, gateway: 10.2.1.1, acl: WEBACL, vms: [{name: web-1, host: kvm1, port: vnet0, mac: "52:54:00:02:01:0b", ip: 10.2.1.11, security_groups: [WEBSG]}]}
      - {name: db, vni: 9102, cidr: 10.2.2.0/24, gateway: 10.2.2.1, vms: [{name: db-1, host: kvm1, port: vnet1, mac: "52:54:00:02:02:0b", ip: 10.2.2.11, security_groups: [DBSG]}]}
GROUPS`

func lintCase(routing, rules, webACL, webSG, dbSG, groups string) string {
	r := strings.NewReplacer("ROUTING", routing, "RULES", rules, "WEBACL", webACL, "WEBSG", webSG, "DBSG", dbSG, "GROUPS", groups)
	return r.Replace(lintBase)
}

func rules(rs ...string) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString("          - {" + r + "}\n")
	}
	return b.String()
}

const allSG = "security_groups:\n  - {name: a, ingress: [{protocol: all, cidrs: [10.9.0.0/16]}]}\n"

// TestLintACLShadowing: union cover, dimensions (ports, ICMP type/code,
// protocol all), partial cover (not reported), direction separation,
// number order rather than file order.
func TestLintACLShadowing(t *testing.T) {
	cases := []struct {
		name  string
		rules []string
		want  []string
	}{
		{"port range edges: 1-79 and 81-1023 do not cover 80",
			[]string{"number: 10, action: deny, direction: ingress, protocol: tcp, ports: 1-79, cidrs: [10.0.0.0/8]",
				"number: 20, action: deny, direction: ingress, protocol: tcp, ports: 81-1023, cidrs: [10.0.0.0/8]",
				"number: 30, action: allow, direction: ingress, protocol: tcp, ports: 79-81, cidrs: [10.0.0.0/8]"},
			nil},
		{"port ranges 1-80 and 81-1023 together cover 79-81",
			[]string{"number: 10, action: deny, direction: ingress, protocol: tcp, ports: 1-80, cidrs: [10.0.0.0/8]",
				"number: 20, action: deny, direction: ingress, protocol: tcp, ports: 81-1023, cidrs: [10.0.0.0/8]",
				"number: 30, action: allow, direction: ingress, protocol: tcp, ports: 79-81, cidrs: [10.0.0.0/8]"},
			[]string{"vpcs[0].acls[0].rules[2] acl-shadowed-allow"}},
		{"cidr halves cover the whole",
			[]string{"number: 10, action: allow, direction: ingress, protocol: all, cidrs: [0.0.0.0/1]",
				"number: 20, action: allow, direction: ingress, protocol: all, cidrs: [128.0.0.0/1]",
				"number: 30, action: deny, direction: ingress, protocol: tcp, ports: 22, cidrs: [0.0.0.0/0]"},
			[]string{"vpcs[0].acls[0].rules[2] acl-shadowed-deny"}},
		{"one address missing from the cover",
			[]string{"number: 10, action: allow, direction: ingress, protocol: tcp, cidrs: [10.0.0.0/9]",
				"number: 20, action: allow, direction: ingress, protocol: tcp, cidrs: [10.128.0.0/10, 10.192.0.0/11, 10.224.0.0/12, 10.240.0.0/13, 10.248.0.0/14, 10.252.0.0/15, 10.254.0.0/16, 10.255.0.0/17, 10.255.128.0/18, 10.255.192.0/19, 10.255.224.0/20, 10.255.240.0/21, 10.255.248.0/22, 10.255.252.0/23, 10.255.254.0/24, 10.255.255.0/25, 10.255.255.128/26, 10.255.255.192/27, 10.255.255.224/28, 10.255.255.240/29, 10.255.255.248/30, 10.255.255.252/31, 10.255.255.254/32]",
				"number: 30, action: deny, direction: ingress, protocol: tcp, ports: 22, cidrs: [10.0.0.0/8]"},
			nil},
		{"icmp: type 8 with any code is not covered by type 8 code 0",
			[]string{"number: 10, action: allow, direction: ingress, protocol: icmp, icmp: {type: 8, code: 0}, cidrs: [0.0.0.0/0]",
				"number: 20, action: deny, direction: ingress, protocol: icmp, icmp: {type: 8}, cidrs: [10.0.0.0/8]"},
			nil},
		{"icmp: any type covers type 8 code 0",
			[]string{"number: 10, action: allow, direction: ingress, protocol: icmp, cidrs: [0.0.0.0/0]",
				"number: 20, action: deny, direction: ingress, protocol: icmp, icmp: {type: 8, code: 0}, cidrs: [10.0.0.0/8]"},
			[]string{"vpcs[0].acls[0].rules[1] acl-shadowed-deny"}},
		{"protocol all covers protocol 47, tcp does not cover all",
			[]string{"number: 10, action: deny, direction: egress, protocol: all, cidrs: [203.0.113.0/24]",
				"number: 20, action: deny, direction: egress, protocol: 47, cidrs: [203.0.113.0/25]",
				"number: 30, action: deny, direction: ingress, protocol: tcp, cidrs: [0.0.0.0/0]",
				"number: 40, action: deny, direction: ingress, protocol: all, cidrs: [0.0.0.0/0]"},
			[]string{"vpcs[0].acls[0].rules[1] acl-redundant"}},
		{"directions are separate lists",
			[]string{"number: 10, action: allow, direction: egress, protocol: all, cidrs: [0.0.0.0/0]",
				"number: 20, action: deny, direction: ingress, protocol: tcp, ports: 80, cidrs: [0.0.0.0/0]"},
			nil},
		{"judging order is the number, not the file order",
			[]string{"number: 30, action: deny, direction: ingress, protocol: tcp, ports: 80, cidrs: [10.0.0.0/8]",
				"number: 10, action: allow, direction: ingress, protocol: tcp, ports: 80, cidrs: [0.0.0.0/0]"},
			[]string{"vpcs[0].acls[0].rules[0] acl-shadowed-deny"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := lintYAML(t, "t.yaml", lintCase("router", rules(tc.rules...), "l", "a", "a", allSG))
			var shadow []LintFinding
			for _, f := range fs {
				switch f.Code {
				case LintACLShadowedDeny, LintACLShadowedAllow, LintACLRedundant, LintTooComplex:
					shadow = append(shadow, f)
				}
			}
			wantCodes(t, shadow, tc.want...)
		})
	}
}

// TestLintTooComplex: a rule whose overlap needs more boxes than the bound,
// and a list beyond the work budget, are reported unchecked, quickly.
func TestLintTooComplex(t *testing.T) {
	var cidrs []string
	for i := 0; i < 4096; i++ {
		cidrs = append(cidrs, addrOf(IPValue(netip.MustParseAddr("10.0.0.0"))+uint64(i)*2+1).String()+"/32")
	}
	src := lintCase("router", rules(
		"number: 10, action: deny, direction: ingress, protocol: tcp, cidrs: ["+strings.Join(cidrs, ", ")+"]",
		"number: 20, action: deny, direction: ingress, protocol: tcp, ports: 22, cidrs: [10.0.0.0/8]",
		"number: 30, action: deny, direction: ingress, protocol: tcp, ports: 22, cidrs: [203.0.113.0/24]"), "l", "a", "a", allSG)
	start := time.Now()
	fs := lintYAML(t, "t.yaml", src)
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("lint took %v", d)
	}
	var got []LintFinding
	for _, f := range fs {
		switch f.Code {
		case LintTooComplex, LintACLShadowedDeny, LintACLShadowedAllow, LintACLRedundant:
			got = append(got, f)
		}
	}
	wantCodes(t, got, "vpcs[0].acls[0].rules[1] too-complex")
	if len(got) == 1 && !strings.Contains(got[0].Message, "more than 4096 boxes") {
		t.Errorf("message: %s", got[0])
	}

	// The work budget: a lowered bound leaves later rules unchecked, said
	// once for the list.
	old := maxLintWork
	maxLintWork = 40
	t.Cleanup(func() { maxLintWork = old })
	var many []string
	for i := 1; i <= 30; i++ {
		many = append(many, "number: "+strconv.Itoa(i)+", action: deny, direction: ingress, protocol: tcp, ports: "+strconv.Itoa(i)+", cidrs: [10.0.0.0/8]")
	}
	fs = lintYAML(t, "t.yaml", lintCase("router", rules(many...), "l", "a", "a", allSG))
	got = nil
	for _, f := range fs {
		if f.Code == LintTooComplex {
			got = append(got, f)
		}
	}
	if len(got) != 1 || got[0].Field != "vpcs[0].acls[0]" || !strings.Contains(got[0].Message, "rules of ACL list l were not checked for shadowing: the lint's work bound (40 box operations) was reached") {
		t.Errorf("budget: %s", renderFindings(got))
	}
}

// only keeps the findings with one of the codes.
func only(fs []LintFinding, codes ...string) []LintFinding {
	var out []LintFinding
	for _, f := range fs {
		for _, c := range codes {
			if f.Code == c {
				out = append(out, f)
			}
		}
	}
	return out
}

// TestLintSG: redundancy inside a group (a union of two rules; of two equal
// rules only the later), groups: references are symbolic (not covered by
// a cidr that holds today's members), cover across a member's groups
// (info, naming the rules), empty references per judged VPC, unused
// groups.
func TestLintSG(t *testing.T) {
	groups := `security_groups:
  - name: a
    ingress:
      - {protocol: tcp, ports: 1000-1999, cidrs: [10.0.0.0/8]}
      - {protocol: tcp, ports: 2000-2999, cidrs: [10.0.0.0/8]}
      - {protocol: tcp, ports: 1500-2500, cidrs: [10.1.0.0/16]}
      - {protocol: tcp, ports: 80, groups: [b]}
      - {protocol: tcp, ports: 80, cidrs: [10.0.0.0/8]}
      - {protocol: udp, ports: 53, cidrs: [10.0.0.0/8]}
      - {protocol: udp, ports: 53, cidrs: [10.0.0.0/8]}
  - name: b
    ingress:
      - {protocol: icmp, cidrs: [10.2.0.0/16]}
    egress:
      - {protocol: tcp, ports: 443, groups: [d]}
  - name: c
    ingress:
      - {protocol: icmp, icmp: {type: 8}, cidrs: [10.2.1.0/24]}
  - name: d
    ingress: []
  - name: unused
    ingress:
      - {protocol: tcp, ports: 9, cidrs: [10.0.0.0/8]}
`
	fs := lintYAML(t, "t.yaml", lintCase("router", rules("number: 10, action: allow, direction: ingress, protocol: all, cidrs: [0.0.0.0/0]"), "l", "a", "b, c", groups))
	got := only(fs, LintSGRedundant, LintSGRedundantMember, LintSGEmptyRef, LintSGUnused)
	wantCodes(t, got,
		"security_groups[0].ingress[2] sg-redundant",
		"security_groups[0].ingress[6] sg-redundant",
		"security_groups[1].egress[0].groups[0] sg-empty-ref",
		"security_groups[2].ingress[0] sg-redundant-members",
		"security_groups[4] sg-unused")
	for _, f := range got {
		switch f.Field {
		case "security_groups[0].ingress[2]":
			if strings.Join(f.Related, " ") != "security_groups[0].ingress[0] security_groups[0].ingress[1]" || !strings.Contains(f.Message, "sg a ingress[0] and sg a ingress[1] allow all of it already") {
				t.Errorf("union cover: %s %v", f, f.Related)
			}
		case "security_groups[0].ingress[6]":
			if strings.Join(f.Related, " ") != "security_groups[0].ingress[5]" {
				t.Errorf("duplicate: %s %v", f, f.Related)
			}
		case "security_groups[1].egress[0].groups[0]":
			if !strings.Contains(f.Message, "group d has no member in VPC blue (members of b there: db-1)") {
				t.Errorf("empty ref: %s", f)
			}
		case "security_groups[2].ingress[0]":
			if strings.Join(f.Related, " ") != "security_groups[1].ingress[0]" || !strings.Contains(f.Message, "every member of c (db-1) also carries other groups, and sg b ingress[0] allows all of it already") || f.Severity != LintInfo {
				t.Errorf("cross-group: %s %v", f, f.Related)
			}
		}
	}

	// A reference is judged in the VPC of the group's members: d has a
	// member in VPC red only, so b's reference is empty in blue.
	withRed := strings.Replace(lintCase("router", rules("number: 10, action: allow, direction: ingress, protocol: all, cidrs: [0.0.0.0/0]"), "l", "a", "b, c", groups), "security_groups:\n",
		`  - name: red
    tiers:
      - {name: web, vni: 9201, cidr: 10.2.1.0/24, vms: [{name: red-1, host: kvm1, port: vnet9, mac: "52:54:00:09:01:0b", ip: 10.2.1.11, security_groups: [d, b]}]}
security_groups:
`, 1)
	got = only(lintYAML(t, "t.yaml", withRed), LintSGEmptyRef)
	if len(got) != 1 || got[0].Field != "security_groups[1].egress[0].groups[0]" || !strings.Contains(got[0].Message, "no member in VPC blue (members of b there: db-1)") || strings.Contains(got[0].Message, "red") {
		t.Errorf("empty ref in blue only: %s", renderFindings(got))
	}
}

// TestLintWideAdmin: the /8 threshold, every administrative service, what
// earlier rules already decide, protocol all, egress and deny rules.
func TestLintWideAdmin(t *testing.T) {
	cases := []struct {
		name  string
		rules []string
		want  string // message substring, "" = no finding
	}{
		{"0.0.0.0/0 ssh", []string{"number: 10, action: allow, direction: ingress, protocol: tcp, ports: 22, cidrs: [0.0.0.0/0]"}, "rule #10 allows administrative ports from 0.0.0.0/0 (any address): ssh tcp/22"},
		{"a /7 is wide", []string{"number: 10, action: allow, direction: ingress, protocol: tcp, ports: 5432, cidrs: [10.0.0.0/7]"}, "from 10.0.0.0/7 (a /7, 33554432 addresses): postgres tcp/5432"},
		{"a /8 is not", []string{"number: 10, action: allow, direction: ingress, protocol: tcp, ports: 22, cidrs: [10.0.0.0/8]"}, ""},
		{"one port of a range", []string{"number: 10, action: allow, direction: ingress, protocol: tcp, ports: 5999-6000, cidrs: [0.0.0.0/0]"}, "vnc tcp/5900-5999"},
		{"udp only where the service has udp", []string{"number: 10, action: allow, direction: ingress, protocol: udp, cidrs: [0.0.0.0/0]"}, "rdp tcp/3389, udp/3389; memcached tcp/11211, udp/11211"},
		{"protocol all: every service", []string{"number: 10, action: allow, direction: ingress, protocol: all, cidrs: [0.0.0.0/0]"},
			"ssh tcp/22; telnet tcp/23; rdp tcp/3389, udp/3389; vnc tcp/5900-5999; mysql tcp/3306; postgres tcp/5432; mongodb tcp/27017; redis tcp/6379; elasticsearch tcp/9200; memcached tcp/11211, udp/11211; docker tcp/2375-2376; etcd tcp/2379-2380; kubelet tcp/10250"},
		{"no admin port", []string{"number: 10, action: allow, direction: ingress, protocol: tcp, ports: 80-443, cidrs: [0.0.0.0/0]"}, ""},
		{"an earlier deny takes ssh", []string{"number: 10, action: deny, direction: ingress, protocol: tcp, ports: 22, cidrs: [0.0.0.0/0]",
			"number: 20, action: allow, direction: ingress, protocol: tcp, ports: 20-23, cidrs: [0.0.0.0/0]"}, "rule #20 allows administrative ports from 0.0.0.0/0 (any address): telnet tcp/23"},
		{"earlier denies leave a /8", []string{"number: 10, action: deny, direction: ingress, protocol: tcp, ports: 22, cidrs: [0.0.0.0/1, 128.0.0.0/2, 192.0.0.0/3, 224.0.0.0/4, 240.0.0.0/5, 248.0.0.0/6, 252.0.0.0/7]",
			"number: 15, action: deny, direction: ingress, protocol: tcp, ports: 1-100, cidrs: [254.0.0.0/8]",
			"number: 20, action: allow, direction: ingress, protocol: tcp, ports: 22, cidrs: [0.0.0.0/0]"}, ""},
		{"an earlier deny leaves a /7", []string{"number: 10, action: deny, direction: ingress, protocol: tcp, ports: 22, cidrs: [0.0.0.0/1, 128.0.0.0/2, 192.0.0.0/3, 224.0.0.0/4, 240.0.0.0/5, 248.0.0.0/6, 252.0.0.0/7]",
			"number: 20, action: allow, direction: ingress, protocol: tcp, ports: 22, cidrs: [0.0.0.0/0]"}, "rule #20 allows administrative ports from 0.0.0.0/0 (any address): ssh tcp/22"},
		{"egress is not opening", []string{"number: 10, action: allow, direction: egress, protocol: tcp, ports: 3306, cidrs: [0.0.0.0/0]"}, ""},
		{"deny is not opening", []string{"number: 10, action: deny, direction: ingress, protocol: tcp, ports: 22, cidrs: [0.0.0.0/0]"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := only(lintYAML(t, "t.yaml", lintCase("router", rules(tc.rules...), "l", "a", "a", allSG)), LintWideAdminPort)
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("unexpected: %s", renderFindings(got))
			case tc.want != "" && (len(got) != 1 || !strings.HasSuffix(got[0].Message, tc.want) || got[0].Severity != LintWarning):
				t.Errorf("got %s\nwant ...%s", renderFindings(got), tc.want)
			}
		})
	}
	// Security groups: ingress only.
	sg := "security_groups:\n  - name: a\n    ingress: [{protocol: tcp, ports: 6379, cidrs: [10.0.0.0/8, 0.0.0.0/0]}]\n    egress: [{protocol: tcp, ports: 22, cidrs: [0.0.0.0/0]}]\n"
	got := only(lintYAML(t, "t.yaml", lintCase("router", rules("number: 10, action: allow, direction: ingress, protocol: tcp, ports: 80, cidrs: [10.0.0.0/8]"), "l", "a", "a", sg)), LintWideAdminPort)
	wantCodes(t, got, "security_groups[0].ingress[0].cidrs[1] wide-admin-port")
}

// TestLintHostPorts: an allow of host service ports only is reported where
// mgmt_guard drops it for every tier or member (egress out of the tier;
// ingress from other tiers with routing: router), and not where traffic
// gets through (from outside the VPC; inside a member's tier; between
// tiers with routing: distributed).
func TestLintHostPorts(t *testing.T) {
	cases := []struct {
		name, routing, rule, sg string
		want                    bool
	}{
		{"acl egress anywhere, router", "router", "number: 10, action: allow, direction: egress, protocol: tcp, ports: 22, cidrs: [0.0.0.0/0]", "", true},
		{"acl egress to another tier, distributed", "distributed", "number: 10, action: allow, direction: egress, protocol: tcp, ports: 22, cidrs: [10.2.2.0/24]", "", false},
		{"acl egress outside the VPC, distributed", "distributed", "number: 10, action: allow, direction: egress, protocol: udp, ports: 6640, cidrs: [203.0.113.0/24]", "", true},
		{"acl ingress from another tier, router", "router", "number: 10, action: allow, direction: ingress, protocol: tcp, ports: 22, cidrs: [10.2.2.0/24]", "", true},
		{"acl ingress from another tier, distributed", "distributed", "number: 10, action: allow, direction: ingress, protocol: tcp, ports: 22, cidrs: [10.2.2.0/24]", "", false},
		{"acl ingress from outside the VPC", "router", "number: 10, action: allow, direction: ingress, protocol: tcp, ports: 22, cidrs: [198.51.100.0/24]", "", false},
		{"acl range beyond the host ports", "router", "number: 10, action: allow, direction: egress, protocol: tcp, ports: 22-23, cidrs: [0.0.0.0/0]", "", false},
		{"acl deny", "router", "number: 10, action: deny, direction: egress, protocol: tcp, ports: 22, cidrs: [0.0.0.0/0]", "", false},
		{"sg egress outside the tier", "router", "", "egress: [{protocol: tcp, ports: 16509, cidrs: [203.0.113.0/24]}]", true},
		{"sg egress inside the tier", "router", "", "egress: [{protocol: tcp, ports: 16509, cidrs: [10.2.0.0/16]}]", false},
		{"sg ingress from another tier, router", "router", "", "ingress: [{protocol: tcp, ports: 22, cidrs: [10.2.2.0/24]}]", true},
		{"sg ingress from another tier, distributed", "distributed", "", "ingress: [{protocol: tcp, ports: 22, cidrs: [10.2.2.0/24]}]", false},
		{"sg ingress from the member's tier", "router", "", "ingress: [{protocol: tcp, ports: 22, cidrs: [10.2.1.0/24]}]", false},
		{"sg ingress from a group in another tier, router", "router", "", "ingress: [{protocol: tcp, ports: 22, groups: [b]}]", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rule := tc.rule
			if rule == "" {
				rule = "number: 10, action: allow, direction: ingress, protocol: tcp, ports: 80, cidrs: [10.0.0.0/8]"
			}
			sg := "ingress: []"
			if tc.sg != "" {
				sg = tc.sg
			}
			groups := "security_groups:\n  - {name: a, " + sg + "}\n  - {name: b, ingress: []}\n"
			got := only(lintYAML(t, "t.yaml", lintCase(tc.routing, rules(rule), "l", "a", "b", groups)), LintHostPortDropped)
			if (len(got) == 1) != tc.want || len(got) > 1 {
				t.Errorf("want reported: %v, got %s", tc.want, renderFindings(got))
			}
			if len(got) == 1 && !strings.Contains(got[0].Message, "never effective: mgmt_guard drops guest traffic to host service ports outside the sender's own tier") {
				t.Errorf("message: %s", got[0])
			}
		})
	}
}

// TestLintHostPortPremise: what host-port-dropped says is what the compiled
// flows do (the policy compiled, packets evaluated flow by flow with a
// connection tracker): db-1's tcp/22 to web-1, which web's ACL and group
// allow, is dropped by mgmt_guard with routing: router (reported) and
// delivered with routing: distributed (not reported); tcp/22 out of the VPC
// is dropped by mgmt_guard either way; tcp/80 never is.
func TestLintHostPortPremise(t *testing.T) {
	const groups = "security_groups:\n  - {name: w, ingress: [{protocol: tcp, ports: 22, cidrs: [10.2.2.0/24]}, {protocol: tcp, ports: 80, cidrs: [10.2.2.0/24]}]}\n  - {name: a, ingress: []}\n"
	acl := rules("number: 10, action: allow, direction: ingress, protocol: tcp, ports: 22, cidrs: [10.2.2.0/24]",
		"number: 20, action: allow, direction: ingress, protocol: tcp, ports: 80, cidrs: [10.2.2.0/24]")
	for _, routing := range []string{"router", "distributed"} {
		bp, err := ParseForLint("t.yaml", []byte(lintCase(routing, acl, "l", "w", "a", groups)))
		if err != nil {
			t.Fatal(err)
		}
		var reported []string
		for _, f := range only(LintPolicy(bp), LintHostPortDropped) {
			reported = append(reported, f.Field)
		}
		want := ""
		if routing == "router" {
			want = "vpcs[0].acls[0].rules[0] security_groups[0].ingress[0]"
		}
		if strings.Join(reported, " ") != want {
			t.Fatalf("%s: host-port-dropped on %v, want %q", routing, reported, want)
		}
		fl, err := Compile(bp, "kvm1")
		if err != nil {
			t.Fatal(err)
		}
		ft := NewFlowTable(fl)
		ft.CT = NewConnTracker()
		db := &bp.VPCs[0].Tiers[1]
		dst := db.VMs[0].HW // routing: router sends to the router NIC's MAC; mgmt_guard matches the IP
		if routing == "distributed" {
			dst = db.GatewayHW
		}
		web, dbVM := bp.VPCs[0].Tiers[0].VMs[0], db.VMs[0]
		send := func(to netip.Addr, port uint16) Trace {
			return ft.Evaluate(TCPPacket(dbVM.Port, dbVM.HW, dst, dbVM.Addr, to, 40000, port))
		}
		mgmt := func(tr Trace) bool {
			return tr.Dropped && tr.DropBy != nil && tr.DropBy.Cookie.Category() == CatMgmtGuard
		}
		tr := send(web.Addr, 22)
		if routing == "router" && !mgmt(tr) {
			t.Errorf("router: db-1 -> web-1 tcp/22 not dropped by mgmt_guard:\n%s", tr)
		}
		if routing == "distributed" && (tr.Dropped || len(tr.Outputs) != 1 || tr.Outputs[0].Port != web.Port) {
			t.Errorf("distributed: db-1 -> web-1 tcp/22 not delivered:\n%s", tr)
		}
		if tr := send(netip.MustParseAddr("203.0.113.5"), 22); !mgmt(tr) {
			t.Errorf("%s: db-1 -> outside tcp/22 not dropped by mgmt_guard:\n%s", routing, tr)
		}
		for _, to := range []string{web.IP, "203.0.113.5"} {
			if tr := send(netip.MustParseAddr(to), 80); mgmt(tr) {
				t.Errorf("%s: tcp/80 to %s dropped by mgmt_guard:\n%s", routing, to, tr)
			}
		}
	}
}

// TestLintTierIngress: tiers whose list lets no new connection in (info).
func TestLintTierIngress(t *testing.T) {
	cases := []struct {
		name  string
		rules []string
		want  string
	}{
		{"egress only", []string{"number: 10, action: allow, direction: egress, protocol: all, cidrs: [0.0.0.0/0]"}, "acl-egress-only"},
		{"empty", nil, "acl-no-ingress-allow"},
		{"deny only", []string{"number: 10, action: deny, direction: ingress, protocol: tcp, cidrs: [0.0.0.0/0]"}, "acl-no-ingress-allow"},
		{"its only allow is shadowed", []string{"number: 10, action: deny, direction: ingress, protocol: all, cidrs: [0.0.0.0/0]",
			"number: 20, action: allow, direction: ingress, protocol: tcp, ports: 80, cidrs: [10.0.0.0/8]"}, "acl-no-ingress-allow"},
		{"an allow", []string{"number: 10, action: allow, direction: ingress, protocol: tcp, ports: 80, cidrs: [10.0.0.0/8]"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := lintCase("router", rules(tc.rules...), "l", "a", "a", allSG)
			if len(tc.rules) == 0 {
				src = strings.Replace(src, "        rules:\n", "        rules: []\n", 1)
			}
			got := only(lintYAML(t, "t.yaml", src), LintACLEgressOnly, LintACLNoIngressAllow)
			if tc.want == "" {
				wantCodes(t, got)
				return
			}
			wantCodes(t, got, "vpcs[0].tiers[0].acl "+tc.want)
			if len(got) == 1 && (got[0].Severity != LintInfo || !strings.Contains(got[0].Message, "tier blue/web: acl l")) {
				t.Errorf("%s", got[0])
			}
		})
	}
	// Built-in lists are explicit: no note.
	got := only(lintYAML(t, "t.yaml", lintCase("router", rules("number: 10, action: allow, direction: ingress, protocol: tcp, ports: 80, cidrs: [10.0.0.0/8]"), "default_deny", "a", "a", allSG)), LintACLEgressOnly, LintACLNoIngressAllow, LintACLUnused)
	wantCodes(t, got, "vpcs[0].acls[0] acl-unused")
}
