package controller

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// Observing policy (docs/policy.md, "Observing policy"): per-rule counters
// of network ACLs and security groups in audit, the per-rule metric with
// bounded cardinality, and the rule a drop-log line names. Rules are named
// by flows.PolicyRules (the model's names), counted on the flows that
// decide (a conjunction's conj_id flow, never its clause flows).

// DefaultPolicyMetricRules is the default cap on rules with their own
// vpcflow_policy_rule_* series (Options.PolicyMetricRules).
const DefaultPolicyMetricRules = 256

// MaxPolicyMetricRules bounds Options.PolicyMetricRules.
const MaxPolicyMetricRules = 10000

// PolicyOtherRule is the rule label of every rule beyond the cap.
const PolicyOtherRule = "other"

// policyRules returns the names of the policy's rules (built once).
func (p *policy) policyRules() *flows.PolicyRules {
	p.rulesOnce.Do(func() { p.rules = flows.NewPolicyRules(p.bp) })
	return p.rules
}

// policyRuleCounts is the audit's per-rule part: deciding flows intended
// and installed, counters, and which rules have drift.
func policyRuleCounts(p *policy, intended, installed []flows.Flow, d *FlowDiff) []flows.PolicyRuleCount {
	r := p.policyRules()
	if r.Len() == 0 {
		return nil
	}
	return r.Count(intended, installed, d.Missing, d.Extra, d.Modified, d.Was)
}

// policyDropFields adds the policy rule a dropped packet hit to its
// drop-log line: the rule's name (as audit, the metric and explain name
// it) and its verdict.
func policyDropFields(r *flows.PolicyRules, pi *packetIn, lf logrus.Fields) {
	if pr, ok := r.Lookup(pi.cookie, flows.TableID(pi.table)); ok {
		lf["policy_rule"] = pr.Name
		lf["verdict"] = pr.Verdict
	}
}

// policyMetrics exports vpcflow_policy_rule_packets_total and
// vpcflow_policy_rule_bytes_total {rule, verdict}: the packets and bytes
// the rules' deciding flows matched on the bridges this controller reads,
// summed over bridges. OpenFlow counters restart when a flow is re-added;
// each read adds the flows' increase since the previous read (the per-flow
// deltas of flowTracker, metrics_bridge.go), so the series only grow.
//
// Cardinality is bounded: at most max rules get a series of their own,
// given in the order they first match packets (a rule keeps its series
// while it is in the blueprint); every other rule is counted under
// rule="other" (one series per verdict). So each metric has at most
// max + 2 series. A strict "top N" would move rules between series as
// their counts change, and a counter must not move.
type policyMetrics struct {
	max int

	mu     sync.Mutex
	rules  *flows.PolicyRules           // the index of the last observation
	series map[policySeries]*ruleSample // totals
	named  map[string]bool              // rules with their own series
	other  map[string]bool              // rules counted under "other" (in the current blueprint)
	vdict  map[string]string            // rule -> verdict of the current blueprint
}

type policySeries struct{ rule, verdict string }

type ruleSample struct{ packets, bytes uint64 }

func newPolicyMetrics(max int) *policyMetrics {
	return &policyMetrics{max: max, series: map[policySeries]*ruleSample{},
		named: map[string]bool{}, other: map[string]bool{}, vdict: map[string]string{}}
}

var (
	descPolicyPackets = prometheus.NewDesc("vpcflow_policy_rule_packets_total",
		"Packets matched by the deciding flows of a network ACL or security group rule (the rules beyond --policy-metric-rules as rule=\"other\"), summed over the bridges this controller reads.",
		[]string{"rule", "verdict"}, nil)
	descPolicyBytes = prometheus.NewDesc("vpcflow_policy_rule_bytes_total",
		"Bytes matched by the deciding flows of a network ACL or security group rule (the rules beyond --policy-metric-rules as rule=\"other\"), summed over the bridges this controller reads.",
		[]string{"rule", "verdict"}, nil)
	descPolicyOther = prometheus.NewDesc("vpcflow_policy_rules_in_other",
		"Rules of the blueprint in force counted under rule=\"other\" because --policy-metric-rules rules already have a series of their own (0: every rule that matched has its own).",
		nil, nil)
)

// observe adds the per-rule increases of a read of a bridge (counts over
// the flows' deltas since the previous read).
func (m *policyMetrics) observe(r *flows.PolicyRules, deltas []flows.PolicyRuleCount) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r != m.rules {
		m.reindex(r)
	}
	for _, c := range deltas {
		if c.Packets == 0 && c.Bytes == 0 {
			continue
		}
		label := c.Rule
		if !m.named[label] {
			if len(m.named) < m.max {
				m.named[label] = true
			} else {
				label = PolicyOtherRule
				m.other[c.Rule] = true
			}
		}
		k := policySeries{label, c.Verdict}
		s := m.series[k]
		if s == nil {
			s = &ruleSample{}
			m.series[k] = s
		}
		s.packets += c.Packets
		s.bytes += c.Bytes
	}
}

// reindex follows a new blueprint: series of rules it no longer has (or
// whose verdict changed) are dropped, so the bound holds across reloads;
// "other" keeps what it counted.
func (m *policyMetrics) reindex(r *flows.PolicyRules) {
	m.rules = r
	m.vdict = map[string]string{}
	for _, pr := range r.Rules() {
		m.vdict[pr.Name] = pr.Verdict
	}
	for name := range m.named {
		if _, ok := m.vdict[name]; !ok {
			delete(m.named, name)
		}
	}
	for name := range m.other {
		if _, ok := m.vdict[name]; !ok {
			delete(m.other, name)
		}
	}
	for k := range m.series {
		if k.rule != PolicyOtherRule && m.vdict[k.rule] != k.verdict {
			delete(m.series, k)
		}
	}
}

func (m *policyMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPolicyPackets
	ch <- descPolicyBytes
	ch <- descPolicyOther
}

func (m *policyMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, s := range m.series {
		ch <- prometheus.MustNewConstMetric(descPolicyPackets, prometheus.CounterValue, float64(s.packets), k.rule, k.verdict)
		ch <- prometheus.MustNewConstMetric(descPolicyBytes, prometheus.CounterValue, float64(s.bytes), k.rule, k.verdict)
	}
	ch <- prometheus.MustNewConstMetric(descPolicyOther, prometheus.GaugeValue, float64(len(m.other)))
}

// recordPolicyCounters feeds the per-rule metric from a read of the
// bridge's installed flows (reconcile, drift tick, audit): deltas are the
// flows whose counters grew since the previous read, with the increase as
// their counters (flowTracker).
func (b *bridge) recordPolicyCounters(deltas []flows.Flow) {
	r := b.c.policy().policyRules()
	if r.Len() == 0 || b.c.metrics.policy == nil {
		return
	}
	b.c.metrics.policy.observe(r, r.Count(nil, deltas))
}

// checkPolicyMetricRules validates Options.PolicyMetricRules.
func checkPolicyMetricRules(n int) error {
	if n < 0 || n > MaxPolicyMetricRules {
		return fmt.Errorf("policy metric rules %d: want 0..%d rules with a series of their own (--policy-metric-rules; 0 counts every rule under rule=\"other\")", n, MaxPolicyMetricRules)
	}
	return nil
}
