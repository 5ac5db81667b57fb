package controller

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// manyRulesBlueprint is the demo blueprint with an ACL list of n rules on
// tier blue/db (revision rev).
func manyRulesBlueprint(t *testing.T, n, rev int) string {
	t.Helper()
	demo, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("  - name: blue\n    acls:\n      - name: big\n        rules:\n")
	for i := 1; i <= n; i++ {
		action := "allow"
		if i%3 == 0 {
			action = "deny"
		}
		fmt.Fprintf(&b, "          - {number: %d, action: %s, direction: ingress, protocol: tcp, ports: %d, cidrs: [0.0.0.0/0]}\n", i, action, 1000+i)
	}
	b.WriteString("    tiers:\n")
	s := strings.Replace(string(demo), "revision: 1", fmt.Sprintf("revision: %d", rev), 1)
	s = strings.Replace(s, "  - name: blue\n    tiers:\n", b.String(), 1)
	s = strings.Replace(s, "        vni: 5002\n        cidr: 10.10.2.0/24\n", "        vni: 5002\n        cidr: 10.10.2.0/24\n        acl: big\n", 1)
	return s
}

func gatherPolicy(t *testing.T, m *metrics) (packets map[string]float64, bytes map[string]float64, other float64) {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	packets, bytes = map[string]float64{}, map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var rule, verdict string
			for _, l := range mt.GetLabel() {
				switch l.GetName() {
				case "rule":
					rule = l.GetValue()
				case "verdict":
					verdict = l.GetValue()
				}
			}
			label := rule + "|" + verdict
			switch mf.GetName() {
			case "vpcflow_policy_rule_packets_total":
				packets[label] = mt.GetCounter().GetValue()
			case "vpcflow_policy_rule_bytes_total":
				bytes[label] = mt.GetCounter().GetValue()
			case "vpcflow_policy_rules_in_other":
				other = mt.GetGauge().GetValue()
			}
		}
	}
	return packets, bytes, other
}

func newTestController(t *testing.T, blueprint string, opts Options) *Controller {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bp.yaml")
	if err := os.WriteFile(path, []byte(blueprint), 0o644); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	opts.BlueprintPath, opts.Listen, opts.HTTP, opts.ReloadPoll, opts.DriftInterval, opts.Log = path, "tcp:127.0.0.1:0", "off", time.Hour, time.Hour, log
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPolicyMetricBounded: a blueprint of 300 rules matching on three
// bridges with --policy-metric-rules 10 gives at most 10 + 2 series per
// metric (the first 10 rules to match, then rule="other" per verdict),
// and nothing is lost: the series sum to every packet counted; counters
// only grow; a reload that removes rules drops their series.
func TestPolicyMetricBounded(t *testing.T) {
	const n, max = 300, 10
	c := newTestController(t, manyRulesBlueprint(t, n, 1), Options{PolicyMetricRules: max})
	p := c.policy()
	rules := p.policyRules()
	counts := func(scale uint64) []flows.PolicyRuleCount {
		var out []flows.PolicyRuleCount
		for i, r := range rules.Rules() {
			out = append(out, flows.PolicyRuleCount{Rule: r.Name, Verdict: r.Verdict, Packets: scale * uint64(i+1), Bytes: 100 * scale * uint64(i+1)})
		}
		return out
	}
	var total uint64
	for i := range rules.Rules() {
		total += uint64(i + 1)
	}
	for range []uint64{0xa1, 0xa2, 0xa3} { // one read of each bridge
		c.metrics.policy.observe(rules, counts(1))
	}
	pk, by, other := gatherPolicy(t, c.metrics)
	if len(pk) > max+2 || len(by) > max+2 {
		t.Fatalf("%d packet series, %d byte series for %d rules: want at most %d + 2", len(pk), len(by), rules.Len(), max)
	}
	sum := func(m map[string]float64) (s float64) {
		for _, v := range m {
			s += v
		}
		return s
	}
	if got := sum(pk); got != float64(3*total) {
		t.Errorf("series sum to %v packets, want %d (nothing lost in \"other\")", got, 3*total)
	}
	if pk["other|deny"] == 0 || pk["other|allow"] == 0 || int(other) != rules.Len()-max {
		t.Errorf("other: %v deny, %v allow, %v rules in other (want %d)", pk["other|deny"], pk["other|allow"], other, rules.Len()-max)
	}
	named := 0
	for k := range pk {
		if !strings.HasPrefix(k, "other|") {
			named++
			if r, ok := rules.ByName(strings.Split(k, "|")[0]); !ok || !strings.HasSuffix(k, "|"+r.Verdict) {
				t.Errorf("series %s: not a rule of the blueprint with its verdict", k)
			}
		}
	}
	if named != max {
		t.Errorf("%d rules with their own series, want %d", named, max)
	}
	// Growth: a1's flows doubled, one rule of a2 grew by 1/1 (the
	// increases flowTracker computes; restarts: TestFlowTrackerDeltas).
	before := pk
	c.metrics.policy.observe(rules, counts(1))
	c.metrics.policy.observe(rules, []flows.PolicyRuleCount{{Rule: rules.Rules()[0].Name, Verdict: rules.Rules()[0].Verdict, Packets: 1, Bytes: 1}})
	pk, _, _ = gatherPolicy(t, c.metrics)
	for k, v := range before {
		if pk[k] < v {
			t.Errorf("series %s went down: %v -> %v", k, v, pk[k])
		}
	}
	if got := sum(pk); got != float64(3*total+total+1) {
		t.Errorf("after growth: %v packets, want %d", got, 3*total+total+1)
	}
	// A reload to a blueprint of 20 rules: series of removed rules go.
	if err := os.WriteFile(c.opts.BlueprintPath, []byte(manyRulesBlueprint(t, 20, 2)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload("test"); err != nil {
		t.Fatal(err)
	}
	r2 := c.policy().policyRules()
	c.metrics.policy.observe(r2, nil)
	pk, _, other = gatherPolicy(t, c.metrics)
	for k := range pk {
		if name := strings.Split(k, "|")[0]; name != PolicyOtherRule {
			if _, ok := r2.ByName(name); !ok {
				t.Errorf("series of a removed rule kept: %s", k)
			}
		}
	}
	if len(pk) > max+2 || int(other) > r2.Len() {
		t.Errorf("after the reload: %d series, %v rules in other (of %d)", len(pk), other, r2.Len())
	}
}

// TestPolicyMetricCap: the cap is validated (the flag's range), 0 puts
// every rule under "other", and the default is DefaultPolicyMetricRules.
func TestPolicyMetricCap(t *testing.T) {
	bp := manyRulesBlueprint(t, 5, 1)
	path := filepath.Join(t.TempDir(), "bp.yaml")
	if err := os.WriteFile(path, []byte(bp), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{BlueprintPath: path, PolicyMetricRules: MaxPolicyMetricRules + 1, Log: logrus.New()}); err == nil || !strings.Contains(err.Error(), "--policy-metric-rules") {
		t.Errorf("a cap above %d: err %v, want one naming --policy-metric-rules", MaxPolicyMetricRules, err)
	}
	c := newTestController(t, bp, Options{})
	if c.metrics.policy.max != DefaultPolicyMetricRules {
		t.Errorf("default cap %d", c.metrics.policy.max)
	}
	c = newTestController(t, bp, Options{PolicyMetricRules: -1})
	rules := c.policy().policyRules()
	var counts []flows.PolicyRuleCount
	for _, r := range rules.Rules() {
		counts = append(counts, flows.PolicyRuleCount{Rule: r.Name, Verdict: r.Verdict, Packets: 5, Bytes: 5})
	}
	c.metrics.policy.observe(rules, counts)
	pk, _, _ := gatherPolicy(t, c.metrics)
	for k := range pk {
		if !strings.HasPrefix(k, "other|") {
			t.Errorf("cap 0: rule %s has its own series", k)
		}
	}
	if len(pk) != 2 {
		t.Errorf("cap 0: %d series, want other|allow and other|deny", len(pk))
	}
}

// TestPolicyDropFields: a drop-log line of a policy drop names the rule
// (as audit, the metric and explain do) and its verdict; other drops get
// no policy fields.
func TestPolicyDropFields(t *testing.T) {
	c := newTestController(t, manyRulesBlueprint(t, 6, 1), Options{})
	rules := c.policy().policyRules()
	for _, x := range []struct {
		pi      packetIn
		rule    string
		verdict string
	}{
		{packetIn{cookie: flows.MakeCookie(flows.CatACLRule, flows.ACLRuleObject("blue", "big", 3), 1), table: uint8(flows.TACLIn)}, "acl blue/big #3", "deny"},
		{packetIn{cookie: flows.MakeCookie(flows.CatACLDefault, flows.ACLDefaultObject("blue", "big", flows.DirIngress), 1), table: uint8(flows.TACLIn)}, "acl blue/big: no ingress rule matched (ingress is denied by default)", "deny"},
		{packetIn{cookie: flows.MakeCookie(flows.CatCtInvalid, 0, 1), table: uint8(flows.TPolState)}, flows.PolicyInvalidRule, "deny"},
		{packetIn{cookie: flows.MakeCookie(flows.CatSpoofDrop, flows.VMObject("blue-web-1"), 1), table: 30}, "", ""},
	} {
		lf := logrus.Fields{}
		policyDropFields(rules, &x.pi, lf)
		if x.rule == "" {
			if len(lf) != 0 {
				t.Errorf("%s: policy fields on a non-policy drop: %v", x.pi.cookie, lf)
			}
			continue
		}
		if lf["policy_rule"] != x.rule || lf["verdict"] != x.verdict {
			t.Errorf("%s: %v, want policy_rule=%q verdict=%s", x.pi.cookie, lf, x.rule, x.verdict)
		}
	}
}
