package flows

import (
	"net/netip"
	"os"
	"strings"
	"testing"
)

// loadPolicy parses the policy example with edits (old -> new pairs).
func loadPolicy(t *testing.T, edits ...string) *Blueprint {
	t.Helper()
	data, err := os.ReadFile(policyExample)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("edit %q: not in the example", edits[i])
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	bp, err := Parse(policyExample, []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return bp
}

func tcp(src, dst string, dport uint16) Conn {
	return Conn{Proto: ProtoTCP, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: 40000, DstPort: dport}
}

func udp(src, dst string, dport uint16) Conn {
	c := tcp(src, dst, dport)
	c.Proto = ProtoUDP
	return c
}

func icmpEcho(src, dst string) Conn {
	return Conn{Proto: ProtoICMP, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), ICMPType: 8}
}

const (
	web1   = "10.2.1.11"
	web2   = "10.2.1.12"
	db1    = "10.2.2.11"
	app1   = "10.2.3.11"
	remote = "198.51.100.7"
)

type judgeCase struct {
	name    string
	c       Conn
	st      ConnState
	allowed bool
	rule    string // substring of the verdict's Rule ("" = must be empty)
}

func runJudge(t *testing.T, bp *Blueprint, cases []judgeCase) {
	t.Helper()
	m := NewPolicyModel(bp)
	for _, tc := range cases {
		v := m.Judge(&bp.VPCs[0], tc.c, tc.st)
		ok := v.Allowed == tc.allowed
		if tc.rule == "" {
			ok = ok && v.Rule == ""
		} else {
			ok = ok && strings.Contains(v.Rule, tc.rule)
		}
		if !ok {
			t.Errorf("%s: %s (%s) = %s, checks %+v; want allowed=%v by %q", tc.name, tc.c, tc.st, v, v.Checks, tc.allowed, tc.rule)
		}
	}
}

// TestPolicyJudgeACL: the ACL semantics of docs/policy.md on the example:
// lowest number wins, no match denies ingress and allows egress, the
// built-in lists, intra-tier traffic never meets the ACL.
func TestPolicyJudgeACL(t *testing.T) {
	bp := loadPolicy(t)
	runJudge(t, bp, []judgeCase{
		{"outside to web:80", tcp(remote, web1, 80), ConnNew, true, "sg web-sg ingress[0]"},
		{"app to web:22 (deny #20 covers 1-1023)", tcp(app1, web1, 22), ConnNew, false, "acl blue/web-acl #20"},
		{"app to web:80 (#10 allows before #20 denies)", tcp(app1, web1, 80), ConnNew, true, "sg web-sg ingress[0]"},
		{"app to web:8080 (no rule: ingress denied)", tcp(app1, web1, 8080), ConnNew, false, "acl blue/web-acl: no ingress rule matched"},
		{"db tier address to web: default_deny egress", tcp("10.2.2.50", web1, 80), ConnNew, false, "acl default_deny #2"},
		{"db-1 to web: its security groups deny first", tcp(db1, web1, 80), ConnNew, false, "sg of VM db-1: no egress rule"},
		{"outside to db: default_deny ingress", tcp(remote, db1, 5432), ConnNew, false, "acl default_deny #1"},
		{"app ping web: #30 wants 10.2.2.0/24", icmpEcho(app1, web1), ConnNew, false, "no ingress rule matched"},
		{"web to 203.0.113.5: egress deny #40", tcp(web1, "203.0.113.5", 443), ConnNew, false, "acl blue/web-acl #40"},
		{"web to elsewhere: no egress rule, allowed", tcp(web1, "198.51.100.9", 443), ConnNew, true, "no egress rule matched (egress is allowed by default)"},
		{"web to app: empty list, ingress denied", tcp(web1, app1, 80), ConnNew, false, "acl blue/empty-acl: no ingress rule matched"},
		{"app to outside: empty list egress allowed", udp(app1, remote, 53), ConnNew, true, "acl blue/empty-acl: no egress rule matched"},
		{"intra-tier web2 to web1:22: no ACL, sg denies", tcp(web2, web1, 22), ConnNew, false, "sg of VM web-1: no ingress rule of web-sg"},
		{"intra-tier web2 to web1:80: sg allows", tcp(web2, web1, 80), ConnNew, true, "sg web-sg ingress[0]"},
		{"invalid", tcp(remote, web1, 80), ConnInvalid, false, "invalid"},
	})
	// Rule order is by number, not by position: a deny numbered before an
	// allow wins even when written after it.
	bp = loadPolicy(t, "number: 20, action: deny,  direction: ingress, protocol: tcp, ports: 1-1023", "number: 5, action: deny,  direction: ingress, protocol: tcp, ports: 1-1023")
	runJudge(t, bp, []judgeCase{
		{"deny #5 before allow #10", tcp(app1, web1, 80), ConnNew, false, "acl blue/web-acl #5"},
		{"outside still allowed (deny #5 is 10.2.0.0/16 only)", tcp(remote, web1, 80), ConnNew, true, "sg web-sg ingress[0]"},
	})
	// Port-range edges: 1-1023 denied, 1024 not.
	bp = loadPolicy(t, "ports: 80, cidrs: [0.0.0.0/0]}\n          - {number: 20", "ports: 80, cidrs: [0.0.0.0/0]}\n          - {number: 50, action: allow, direction: ingress, protocol: tcp, ports: 1000-2000, cidrs: [0.0.0.0/0]}\n          - {number: 20")
	runJudge(t, bp, []judgeCase{
		{"1023 denied by #20", tcp(app1, web2, 1023), ConnNew, false, "acl blue/web-acl #20"},
		{"1024 allowed by #50 (then web-sg denies)", tcp(app1, web2, 1024), ConnNew, false, "sg of VM web-2"},
		{"999 denied by #20", tcp(app1, web2, 999), ConnNew, false, "#20"},
		{"2000 by #50", tcp(remote, web2, 2000), ConnNew, false, "sg of VM web-2"},
		{"2001 no rule", tcp(remote, web2, 2001), ConnNew, false, "no ingress rule matched"},
	})
}

// TestPolicyJudgeSG: security groups judge all of a NIC's traffic, group
// references resolve to members, egress is allowed unless a group has
// egress rules, and state: replies pass, new connections the other way do
// not.
func TestPolicyJudgeSG(t *testing.T) {
	bp := loadPolicy(t, "acl: default_deny", "acl: default_allow")
	runJudge(t, bp, []judgeCase{
		{"web-1 (member of web-sg) to db:5432", tcp(web1, db1, 5432), ConnNew, true, "sg db-sg ingress[0]"},
		{"app (no group) to db:5432", tcp(app1, db1, 5432), ConnNew, false, "sg of VM db-1: no ingress rule of db-sg, ops-sg"},
		{"web to db:7005 (cidr rule)", tcp(web2, db1, 7005), ConnNew, true, "sg db-sg ingress[1]"},
		{"web to db:7011 (range edge)", tcp(web2, db1, 7011), ConnNew, false, "sg of VM db-1"},
		{"app to db:7000 (cidr is web's tier)", tcp(app1, db1, 7000), ConnNew, false, "sg of VM db-1"},
		{"management pings db (ops-sg icmp type 8)", icmpEcho("192.0.2.9", db1), ConnNew, true, "sg ops-sg ingress[0]"},
		{"db egress udp 53 allowed by ops-sg egress[0], web's acl denies", udp(db1, web1, 53), ConnNew, false, "acl blue/web-acl: no ingress rule matched"},
		{"db egress tcp 80: groups have egress rules, none allows", tcp(db1, web1, 80), ConnNew, false, "sg of VM db-1: no egress rule of db-sg, ops-sg"},
		{"db egress gre (ops-sg egress[1])", Conn{Proto: ProtoGRE, Src: netip.MustParseAddr(db1), Dst: netip.MustParseAddr(app1)}, ConnNew, false, "acl blue/empty-acl: no ingress rule"},
		{"db egress gre outside 10.2/16", Conn{Proto: ProtoGRE, Src: netip.MustParseAddr(db1), Dst: netip.MustParseAddr(remote)}, ConnNew, false, "no egress rule of db-sg, ops-sg"},
		{"web egress: web-sg has no egress rules", udp(web1, remote, 123), ConnNew, true, "no egress rule matched (egress is allowed by default)"},
	})
	// State: the reply of an allowed connection passes; a new connection
	// the other way is judged (and denied).
	m := NewPolicyModel(bp)
	blue := &bp.VPCs[0]
	open := tcp(web1, db1, 5432)
	if v := m.Judge(blue, open.Reverse(), ConnReply); !v.Allowed || v.State != ConnReply || !strings.Contains(v.Rule, "established: reply of a connection allowed by sg db-sg ingress[0]") {
		t.Errorf("reply of web->db:5432: %s", v)
	}
	if v := m.Judge(blue, open, ConnEstablished); !v.Allowed || !strings.Contains(v.Rule, "established: connection allowed by sg db-sg ingress[0]") {
		t.Errorf("established web->db:5432: %s", v)
	}
	if v := m.Judge(blue, tcp(db1, web1, 5432), ConnNew); v.Allowed {
		t.Errorf("new db->web:5432 allowed: %s", v)
	}
	// A "reply" with no allowed connection the other way is a new packet.
	if v := m.Judge(blue, tcp(app1, db1, 5432).Reverse(), ConnReply); v.Allowed || v.State != ConnNew {
		t.Errorf("reply of a denied connection: %s", v)
	}
}

// TestPolicyJudgeNoPolicy: a blueprint without policy keys: nothing
// judges, everything the pipeline delivers is allowed (today's behaviour).
func TestPolicyJudgeNoPolicy(t *testing.T) {
	b := goodBlueprint()
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewPolicyModel(b)
	v := m.Judge(&b.VPCs[0], tcp("10.10.1.11", "198.51.100.7", 22), ConnNew)
	if !v.Allowed || v.Rule != "" || len(v.Checks) != 0 || v.String() != "allowed (no ACL or security group applies)" {
		t.Errorf("no policy: %s %+v", v, v.Checks)
	}
	if m.Applies(&b.VPCs[0], netip.MustParseAddr("10.10.1.11"), netip.MustParseAddr("198.51.100.7")) {
		t.Error("Applies without policy")
	}
}
