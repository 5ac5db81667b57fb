package flows

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadObserveBlueprint is the demo blueprint with a policy on VPC blue
// (testdata/ovstrace/policy-blueprint.yaml, the blueprint the policy
// ofproto/trace fixtures were captured with), with optional text edits.
//
//	blue  routing: distributed; web: blue-web-1 (kvm1, client-sg: nothing in),
//	      blue-web-2 (kvm2, web-sg: tcp 8080, icmp echo); db: db-acl
//	db-acl #10 deny tcp 5432 from web, #20 allow tcp 5432, #40 allow tcp
//	       7000 from web, #50 deny tcp 7000, #100 allow icmp
func loadObserveBlueprint(t testing.TB, edits ...string) *Blueprint {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "ovstrace", "policy-blueprint.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("test bug: %q not in the blueprint", edits[i])
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	bp, err := Parse("policy-blueprint.yaml", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return bp
}

// A web-sg rule with a conjunction: 2 remote prefixes x 3 port masks.
var conjRuleEdit = []string{
	"      - {protocol: icmp, icmp: {type: 8}, cidrs: [10.10.0.0/16]}\n",
	"      - {protocol: icmp, icmp: {type: 8}, cidrs: [10.10.0.0/16]}\n      - {protocol: tcp, ports: 8000-8010, cidrs: [10.10.1.0/24, 10.10.2.0/24]}\n",
}

// TestPolicyRulesNames: every policy rule of the blueprint has one name,
// the model's, and a verdict; a VM's no-match drop is told apart by table.
func TestPolicyRulesNames(t *testing.T) {
	bp := loadObserveBlueprint(t)
	r := NewPolicyRules(bp)
	for _, c := range []struct {
		cookie  Cookie
		table   TableID
		name    string
		verdict string
	}{
		{MakeCookie(CatACLRule, ACLRuleObject("blue", "db-acl", 10), 7), TACLIn, "acl blue/db-acl #10", PolicyDeny},
		{MakeCookie(CatACLRule, ACLRuleObject("blue", "db-acl", 40), 0), TACLIn, "acl blue/db-acl #40", PolicyAllow},
		{MakeCookie(CatACLRule, ACLRuleObject("blue", ACLDefaultDeny, 1), 0), TACLIn, "acl default_deny #1", PolicyDeny},
		{MakeCookie(CatACLDefault, ACLDefaultObject("blue", "db-acl", DirIngress), 0), TACLIn, "acl blue/db-acl: no ingress rule matched (ingress is denied by default)", PolicyDeny},
		{MakeCookie(CatACLDefault, ACLDefaultObject("blue", "db-acl", DirEgress), 0), TACLOut, "acl blue/db-acl: no egress rule matched (egress is allowed by default)", PolicyAllow},
		{MakeCookie(CatSGRule, SGRuleObject("web-sg", DirIngress, 1), 0), TSGIn, "sg web-sg ingress[1]", PolicyAllow},
		{MakeCookie(CatSGDefault, VMObject("blue-web-2"), 0), TSGIn, "sg of VM blue-web-2: no ingress rule of web-sg allows it (ingress is denied unless allowed)", PolicyDeny},
		{MakeCookie(CatCtInvalid, 0, 3), TPolState, PolicyInvalidRule, PolicyDeny},
	} {
		pr, ok := r.Lookup(c.cookie, c.table)
		if !ok || pr.Name != c.name || pr.Verdict != c.verdict {
			t.Errorf("%s table %d: got %+v (%v), want %q %s", c.cookie, c.table, pr, ok, c.name, c.verdict)
		}
	}
	for _, c := range []struct {
		cookie Cookie
		table  TableID
	}{
		{MakeCookie(CatSGDefault, VMObject("blue-web-2"), 0), TACLIn},    // a VM drop is in an sg table
		{MakeCookie(CatPolicyPass, 0, 0), TPolState},                     // plumbing is no rule
		{MakeCookie(CatACLRule, ACLRuleObject("blue", "gone", 1), 0), 0}, // a stale rule
		{MakeCookie(CatSpoofDrop, VMObject("blue-web-2"), 0), 0},
	} {
		if pr, ok := r.Lookup(c.cookie, c.table); ok {
			t.Errorf("%s table %d named %+v", c.cookie, c.table, pr)
		}
	}
	if r := NewPolicyRules(loadDemo(t)); r.Len() != 0 {
		t.Errorf("a blueprint without policy has %d policy rules", r.Len())
	}
}

// TestPolicyRulesCount: per rule, only the flows that decide count (a
// conjunction's conj_id flow, never its clause flows), summed per rule
// name; any difference of a rule's flows marks it out of sync.
func TestPolicyRulesCount(t *testing.T) {
	bp := loadObserveBlueprint(t, conjRuleEdit...)
	fs, err := Compile(bp, "kvm2")
	if err != nil {
		t.Fatal(err)
	}
	rules := NewPolicyRules(bp)
	installed := make([]Flow, len(fs))
	copy(installed, fs)
	clauses, conj := 0, 0
	conjRule := MakeCookie(CatSGRule, SGRuleObject("web-sg", DirIngress, 2), 0)
	for i := range installed {
		installed[i].Packets, installed[i].Bytes = 1000, 100000 // a clause flow counted would show
		if installed[i].Cookie.Rule() == conjRule {
			if IsConjunctionClause(&installed[i]) {
				clauses++
			} else {
				conj++
				installed[i].Packets, installed[i].Bytes = 7, 700
			}
		}
	}
	if clauses != 5 || conj != 1 {
		t.Fatalf("test premise: sg web-sg ingress[2] compiles to %d clause flows and %d conj_id flows, want 5 and 1", clauses, conj)
	}
	counts := rules.Count(fs, installed)
	byName := map[string]PolicyRuleCount{}
	for _, c := range counts {
		byName[c.Rule] = c
	}
	if c := byName["sg web-sg ingress[2]"]; c.Packets != 7 || c.Bytes != 700 || c.FlowsIntended != 1 || c.FlowsInstalled != 1 || !c.InSync || c.Verdict != PolicyAllow {
		t.Errorf("conjunctive rule: %+v, want its conj_id flow only (7 packets, 1 flow)", c)
	}
	if c := byName["sg web-sg ingress[0]"]; c.Packets != 1000*uint64(c.FlowsInstalled) || c.FlowsInstalled == 0 {
		t.Errorf("plain rule: %+v, want all its flows", c)
	}
	for _, want := range []string{"acl blue/db-acl #10", "acl blue/db-acl: no ingress rule matched (ingress is denied by default)",
		"sg of VM blue-web-2: no ingress rule of web-sg allows it (ingress is denied unless allowed)", PolicyInvalidRule} {
		if c, ok := byName[want]; !ok || c.FlowsIntended == 0 || !c.InSync {
			t.Errorf("rule %q: %+v (present %v)", want, c, ok)
		}
	}
	for _, c := range counts {
		if c.Category == CatPolicyPass.String() {
			t.Errorf("plumbing counted as a rule: %+v", c)
		}
	}
	// Order: blueprint order (ACL rules by number, then defaults, groups, VMs, ct-invalid).
	if counts[len(counts)-1].Rule != PolicyInvalidRule || !strings.HasPrefix(counts[0].Rule, "acl ") {
		t.Errorf("order: first %q, last %q", counts[0].Rule, counts[len(counts)-1].Rule)
	}
	// A clause flow missing: the rule is out of sync, the others are not.
	var missing []Flow
	var short []Flow
	for i := range installed {
		if installed[i].Cookie.Rule() == conjRule && IsConjunctionClause(&installed[i]) && missing == nil {
			missing = append(missing, installed[i])
			continue
		}
		short = append(short, installed[i])
	}
	for _, c := range rules.Count(fs, short, missing) {
		if (c.Rule == "sg web-sg ingress[2]") == c.InSync {
			t.Errorf("after removing a clause flow: %+v", c)
		}
	}
	// A deciding flow missing: intended 1, installed 0, out of sync even
	// without the drift list.
	var noConj []Flow
	for i := range installed {
		if installed[i].Cookie.Rule() != conjRule || IsConjunctionClause(&installed[i]) {
			noConj = append(noConj, installed[i])
		}
	}
	for _, c := range rules.Count(fs, noConj) {
		if c.Rule == "sg web-sg ingress[2]" && (c.InSync || c.FlowsInstalled != 0 || c.FlowsIntended != 1) {
			t.Errorf("without its conj_id flow: %+v", c)
		}
	}
	sum := SumPolicyRuleCounts(counts, counts)
	for i := range sum {
		if sum[i].Rule != counts[i].Rule || sum[i].Packets != 2*counts[i].Packets || sum[i].FlowsIntended != 2*counts[i].FlowsIntended {
			t.Errorf("sum %+v of %+v", sum[i], counts[i])
		}
	}
}

// TestDropLogPolicyFlows: with drop logging, exactly the policy flows
// that drop (ACL deny rules and built-in denies, an ACL list's ingress
// no-match, a VM's no-match drop, ct-invalid) go to the controller through
// the meter; allow rules, egress no-match verdicts, conjunction clauses
// and the plumbing keep their actions; the flow count does not change.
func TestDropLogPolicyFlows(t *testing.T) {
	bp := loadObserveBlueprint(t, append(conjRuleEdit,
		"          - {number: 100, action: allow, direction: ingress, protocol: icmp, cidrs: [0.0.0.0/0]}\n",
		"          - {number: 100, action: allow, direction: ingress, protocol: icmp, cidrs: [0.0.0.0/0]}\n          - {number: 110, action: deny, direction: ingress, protocol: udp, ports: 1000-2000, cidrs: [10.10.1.0/24, 10.10.3.0/24]}\n")...)
	for _, host := range []string{"kvm1", "kvm2", "kvm3"} {
		plain, err := CompileWith(bp, host, CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		logged, err := CompileWith(bp, host, CompileOptions{DropLog: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(plain) != len(logged) {
			t.Fatalf("%s: %d flows without drop logging, %d with", host, len(plain), len(logged))
		}
		key := func(f *Flow) string { return fmt.Sprintf("%d|%d|%s", f.Table, f.Priority, f.Match) }
		byKey := map[string]*Flow{}
		for i := range logged {
			byKey[key(&logged[i])] = &logged[i]
		}
		seen := map[Category]int{}
		for i := range plain {
			f := &plain[i]
			g := byKey[key(f)]
			if g == nil {
				t.Fatalf("%s: %s missing with drop logging", host, f)
			}
			drop := len(f.Actions) == 0 && f.Goto == NoGoto && f.Priority > 0
			want := drop && DropLogged(f.Cookie.Category())
			metered := g.Meter == DropLogMeter
			if metered != want {
				t.Errorf("%s: %s: metered %v, want %v (%s)", host, f, metered, want, g)
			}
			if metered {
				seen[f.Cookie.Category()]++
				if len(g.Actions) != 1 || g.Actions[0] != (Output{Port: PortController, MaxLen: DropLogMaxLen}) || g.Goto != NoGoto {
					t.Errorf("%s: metered flow %s does more than log", host, g)
				}
			} else if g.String() != f.String() {
				t.Errorf("%s: %s changed to %s", host, f, g)
			}
			if IsPolicyCategory(f.Cookie.Category()) && drop && !metered {
				t.Errorf("%s: a policy drop not logged: %s", host, f)
			}
		}
		if host == "kvm3" { // blue-db-1: db-acl's tier
			for _, c := range []Category{CatACLRule, CatACLDefault, CatSGDefault, CatCtInvalid} {
				if seen[c] == 0 {
					t.Errorf("%s: no %s drop is logged", host, c)
				}
			}
		}
	}
}

// TestExplainPolicyStates: explain prints the model's verdict next to the
// flows' for each conntrack state, and they agree (the blueprint of the
// real-OVS fixtures).
func TestExplainPolicyStates(t *testing.T) {
	c, err := NewCloud(loadObserveBlueprint(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		q     ExplainQuery
		model string
		flows string
		exit  int
	}{
		{ExplainQuery{From: "blue-web-1", To: "blue-db-1", Proto: "tcp", DPort: 5432}, "denied by acl blue/db-acl #10", "denied by acl blue/db-acl #10 (host kvm1, table acl_ingress", 1},
		{ExplainQuery{From: "blue-web-1", To: "blue-db-1", Proto: "tcp", DPort: 5432, State: "established"}, "denied by acl blue/db-acl #10", "denied by acl blue/db-acl #10", 1},
		{ExplainQuery{From: "blue-web-1", To: "blue-db-2", Proto: "tcp", DPort: 7000}, "allowed by acl blue/db-acl #40", "allowed (judged on host kvm1)", 0},
		{ExplainQuery{From: "blue-web-1", To: "blue-db-2", Proto: "tcp", DPort: 7000, State: "established"}, "allowed by established: connection allowed by acl blue/db-acl #40", "allowed", 0},
		{ExplainQuery{From: "blue-db-2", To: "blue-web-1", Proto: "tcp", SPort: 7000, DPort: 40000, State: "reply"}, "allowed by established: reply of a connection allowed by acl blue/db-acl #40", "allowed", 0},
		{ExplainQuery{From: "blue-db-2", To: "blue-web-1", Proto: "tcp", SPort: 7000, DPort: 40000}, "denied by sg of VM blue-web-1: no ingress rule of client-sg allows it", "denied by sg of VM blue-web-1", 1},
		// a reply of a connection the rules deny: a tracked one is cut
		{ExplainQuery{From: "blue-db-1", To: "blue-web-1", Proto: "tcp", SPort: 5432, DPort: 40000, State: "reply"}, "denied by acl blue/db-acl #10", "denied by acl blue/db-acl #10 (host kvm3", 1},
		{ExplainQuery{From: "blue-web-1", To: "blue-web-2", Proto: "tcp", DPort: 8080, State: "invalid"}, "denied by " + PolicyInvalidRule, "denied by " + PolicyInvalidRule + " (host kvm1, table policy_state", 1},
		{ExplainQuery{From: "blue-web-1", To: "blue-web-2", Proto: "tcp", DPort: 8080}, "allowed by sg web-sg ingress[0]", "allowed (judged on hosts kvm1 and kvm2)", 0},
		{ExplainQuery{From: "blue-web-1", To: "blue-web-2"}, "allowed by sg web-sg ingress[1]", "allowed", 0},                                                               // icmp echo request
		{ExplainQuery{From: "blue-web-2", To: "blue-web-1", State: "reply"}, "allowed by established: reply of a connection allowed by sg web-sg ingress[1]", "allowed", 0}, // its echo reply
		{ExplainQuery{From: "blue-web-1", To: "blue-web-2", Host: "kvm1"}, "allowed by sg web-sg ingress[1]", "allowed (judged on host kvm1)", 0},
	} {
		e, err := Explain(c, x.q)
		if err != nil {
			t.Fatalf("%+v: %v", x.q, err)
		}
		p := e.Policy
		switch {
		case p == nil:
			t.Errorf("%+v: no policy verdict:\n%s", x.q, e.Text())
		case !strings.HasPrefix(p.Model, x.model) || !strings.HasPrefix(p.Flows, x.flows) || !p.Agree || e.ExitCode() != x.exit:
			t.Errorf("%+v: model %q, flows %q, agree %v, exit %d; want %q, %q, exit %d\n%s", x.q, p.Model, p.Flows, p.Agree, e.ExitCode(), x.model, x.flows, x.exit, e.Text())
		case !strings.Contains(e.Text(), "  model: "+p.Model) || !strings.Contains(e.Text(), "the flows AGREE with the model"):
			t.Errorf("%+v: text lacks the policy lines:\n%s", x.q, e.Text())
		}
	}
	// The JSON carries it; a blueprint without policy does not.
	e := mustExplain(t, c, ExplainQuery{From: "blue-web-1", To: "blue-db-1", Proto: "tcp", DPort: 5432, State: "established"})
	b, _ := json.Marshal(e)
	var doc map[string]any
	_ = json.Unmarshal(b, &doc)
	pol, _ := doc["policy"].(map[string]any)
	if pol["model_rule"] != "acl blue/db-acl #10" || pol["flows_rule"] != "acl blue/db-acl #10" || pol["agree"] != true || pol["state"] != "established" ||
		doc["query"].(map[string]any)["state"] != "established" {
		t.Errorf("json policy: %v, query %v", pol, doc["query"])
	}
	e = mustExplain(t, explainDemoCloud(t), ExplainQuery{From: "blue-web-1", To: "blue-web-2"})
	if b, _ := json.Marshal(e); strings.Contains(string(b), `"policy"`) || strings.Contains(e.Text(), "policy (") {
		t.Errorf("a blueprint without policy shows a policy verdict: %s", b)
	}
	// Bad states.
	for _, q := range []ExplainQuery{{From: "blue-web-1", To: "blue-web-2", State: "related"}, {From: "blue-web-1", To: "blue-web-2", ARP: true, State: "reply"}} {
		if _, err := Explain(c, q); err == nil || !strings.Contains(err.Error(), "--state") {
			t.Errorf("%+v: error %v, want one naming --state", q, err)
		}
	}
}

// TestExplainPolicyDisagreement: flows that do not implement the model
// (an ACL deny compiled as an allow, or named as another rule) make the
// policy verdicts disagree and explain exit 1.
func TestExplainPolicyDisagreement(t *testing.T) {
	bp := loadObserveBlueprint(t)
	deny10 := MakeCookie(CatACLRule, ACLRuleObject("blue", "db-acl", 10), 0)
	for _, tamper := range []struct {
		name string
		edit func(f *Flow)
		diff string
	}{
		{"deny compiled as allow", func(f *Flow) { f.Goto = TSGIn }, "the model denies the packet"},
		{"deny under another rule's cookie", func(f *Flow) {
			f.Cookie = MakeCookie(CatACLRule, ACLRuleObject("blue", "db-acl", 50), f.Cookie.Revision())
		}, `both deny, but the model names "acl blue/db-acl #10" and the flows "acl blue/db-acl #50"`},
	} {
		c, err := NewCloud(bp)
		if err != nil {
			t.Fatal(err)
		}
		fs := append([]Flow(nil), c.Flows["kvm1"]...)
		n := 0
		for i := range fs {
			if fs[i].Cookie.Rule() == deny10 {
				tamper.edit(&fs[i])
				n++
			}
		}
		if n == 0 {
			t.Fatal("test premise: no flow of acl blue/db-acl #10 on kvm1")
		}
		c.tables["kvm1"] = NewFlowTable(fs)
		e := mustExplain(t, c, ExplainQuery{From: "blue-web-1", To: "blue-db-1", Proto: "tcp", DPort: 5432, Host: "kvm1"})
		if e.Policy == nil || e.Policy.Agree || e.ExitCode() != 1 || !strings.Contains(e.Policy.Diff, tamper.diff) ||
			!strings.Contains(e.Text(), "the flows DISAGREE with the model") {
			t.Errorf("%s: not reported (exit %d):\n%s", tamper.name, e.ExitCode(), e.Text())
		}
	}
}

// TestExplainPolicyAgreesRandom: on random ACL/security-group blueprints,
// for random packets in every state, the flow that decides (by the names
// audit, the metric and the drop log use) and the model agree: same
// verdict, and a denial names the same rule.
func TestExplainPolicyAgreesRandom(t *testing.T) {
	runs := 60
	if testing.Short() {
		runs = 15
	}
	states := []string{"new", "established", "reply", "invalid"}
	denied := map[Category]int{}
	checked := 0
	for n := 0; n < runs; n++ {
		r := rand.New(rand.NewSource(int64(1000 + n)))
		bp := genPolicyBlueprint(t, r, n)
		c, err := NewCloud(bp)
		if err != nil {
			t.Fatal(err)
		}
		rules := NewPolicyRules(bp)
		ends := policyEnds(bp)
		for i := 0; i < 15; i++ {
			p := &bp.VPCs[r.Intn(len(bp.VPCs))]
			es := ends[p]
			a, b := es[r.Intn(len(es))], es[r.Intn(len(es))]
			if a.vm == b.vm || a.vm.IsRouter() {
				continue
			}
			q := ExplainQuery{From: a.vm.Name, To: b.vm.Name, State: states[r.Intn(len(states))]}
			if r.Intn(3) == 0 {
				q.To = b.vm.IP
			}
			switch r.Intn(3) {
			case 0:
				q.Proto, q.DPort = "tcp", testPorts[r.Intn(len(testPorts))]
			case 1:
				q.Proto, q.DPort = "udp", testPorts[r.Intn(len(testPorts))]
			}
			e, err := Explain(c, q)
			if err != nil {
				t.Fatalf("blueprint %d, %+v: %v", n, q, err)
			}
			if e.Policy == nil {
				continue
			}
			checked++
			if !e.Policy.Agree {
				t.Errorf("blueprint %d, %+v: %s\n%s", n, q, e.Policy.Diff, e.Text())
				continue
			}
			if e.Policy.FlowsVerdict == PolicyFlowsDenied {
				d := e.DroppedBy
				if pr, ok := rules.ByName(e.Policy.FlowsRule); ok {
					denied[pr.Kind]++
				} else if d != nil {
					t.Errorf("blueprint %d, %+v: the deciding drop %s is not a named rule", n, q, d)
				}
			}
		}
	}
	t.Logf("%d packets: flows and model agree; denials by kind: %v", checked, denied)
	for _, k := range []Category{CatACLRule, CatACLDefault, CatSGDefault, CatCtInvalid} {
		if denied[k] == 0 {
			t.Errorf("no denial by %s exercised", k)
		}
	}
}

// TestCheckTracePolicyCtNext: --trace passes the packet's conntrack state
// to ofproto/trace, one --ct-next per conntrack lookup, so a reply of an
// allowed connection traced on real Open vSwitch agrees with the model
// (the fixtures are real ofproto/trace output for the fixture blueprint:
// with the reply state the packet is delivered, without it, as ofproto/
// trace's default trk,new, blue-web-1's group drops it).
func TestCheckTracePolicyCtNext(t *testing.T) {
	c, err := NewCloud(loadObserveBlueprint(t))
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	run := func(_ context.Context, host string, args ...string) (string, error) {
		calls = append(calls, strings.Join(args, " "))
		if args[0] == "dpif/show" {
			return ovsFixture(t, "policy-dpif-show-kvm1.txt"), nil
		}
		if strings.Count(strings.Join(args, " "), "--ct-next trk,est,rpl") == 2 {
			return ovsFixture(t, "policy-reply-delivered.txt"), nil
		}
		return ovsFixture(t, "policy-reply-as-new.txt"), nil
	}
	q := ExplainQuery{From: "blue-db-2", To: "blue-web-1", Proto: "tcp", SPort: 7000, DPort: 40000, Host: "kvm1", State: "reply"}
	e := mustExplain(t, c, q)
	rep, err := e.CheckTrace(context.Background(), "cloudbr0", run)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Agree || e.ExitCode() != 0 || len(rep.Checks) != 1 ||
		!strings.Contains(rep.Checks[0].Command, "ofproto/trace --ct-next trk,est,rpl --ct-next trk,est,rpl cloudbr0 'tcp,in_port=vnet1,") {
		t.Fatalf("reply traced: agree %v, calls %q\n%s", rep.Agree, calls, e.Text())
	}
	// The same packet as new: dropped by blue-web-1's group on both sides.
	q.State = ""
	e = mustExplain(t, c, q)
	if rep, err = e.CheckTrace(context.Background(), "cloudbr0", run); err != nil || !rep.Agree || e.ExitCode() != 1 ||
		!strings.Contains(rep.Checks[0].Command, "--ct-next trk,new cloudbr0") {
		t.Fatalf("new traced: %v %+v\n%s", err, rep, e.Text())
	}
	// A model expecting delivery against a trace of the default state
	// disagrees: the state matters.
	e = mustExplain(t, c, ExplainQuery{From: "blue-db-2", To: "blue-web-1", Proto: "tcp", SPort: 7000, DPort: 40000, Host: "kvm1", State: "reply"})
	if rep, err = e.CheckTrace(context.Background(), "cloudbr0", func(ctx context.Context, host string, args ...string) (string, error) {
		if args[0] == "ofproto/trace" {
			return ovsFixture(t, "policy-reply-as-new.txt"), nil
		}
		return run(ctx, host, args...)
	}); err != nil || rep.Agree || e.ExitCode() != 1 {
		t.Fatalf("a trace in the wrong state agreed: %v\n%s", err, e.Text())
	}
}
