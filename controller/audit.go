package controller

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

// AuditReport is the GET /audit document: for every bridge, what is intended
// (compiled from the blueprint) against what is installed (read back from
// the switch now), and per-rule counters. Its JSON shape is stable and
// documented in docs/audit.md; fields are only ever added.
type AuditReport struct {
	GeneratedAt   time.Time     `json:"generated_at"`
	Replica       string        `json:"replica,omitempty"`
	Revision      uint32        `json:"revision"`
	BlueprintHash string        `json:"blueprint_hash"`
	InSync        bool          `json:"in_sync"`
	Complete      bool          `json:"complete"`
	Bridges       []BridgeAudit `json:"bridges"`
	// PolicyRules sums the bridges' policy_rules per rule (blueprints with
	// ACLs or security groups only; docs/audit.md).
	PolicyRules []flows.PolicyRuleCount `json:"policy_rules,omitempty"`
	// RepairRequested is set by POST /audit?repair=1: the bridges with
	// drift were asked to reconcile. The report shows the state before
	// the repair. GET /audit never repairs.
	RepairRequested bool `json:"repair_requested,omitempty"`
}

// BridgeAudit is one bridge's audit.
type BridgeAudit struct {
	Host       string `json:"host,omitempty"`
	DatapathID string `json:"datapath_id"`
	Known      bool   `json:"known"`
	Connected  bool   `json:"connected"`
	Role       string `json:"role,omitempty"`
	Revision   uint32 `json:"revision"`
	// Audited is false when the flows could not be read (not connected,
	// unknown datapath, error): the bridge's state cannot be told.
	Audited   bool           `json:"audited"`
	Error     string         `json:"error,omitempty"`
	Intended  int            `json:"flows_intended"`
	Installed int            `json:"flows_installed"`
	InSync    int            `json:"flows_in_sync"`
	Drift     bool           `json:"drift"`
	Missing   []AuditFlow    `json:"missing"`
	Extra     []AuditFlow    `json:"extra"`
	Modified  []AuditFlow    `json:"modified"`
	Rules     []RuleCounters `json:"rules"`
	// PolicyRules are the network ACL and security group rules on this
	// bridge, one per rule name, counted on the flows that decide
	// (policy_observe.go; blueprints with a policy only).
	PolicyRules []flows.PolicyRuleCount `json:"policy_rules,omitempty"`
}

// AuditFlow is one flow in a drift list.
type AuditFlow struct {
	Flow      string `json:"flow"`                // intended (missing, modified) or installed (extra), ovs-ofctl syntax
	Installed string `json:"installed,omitempty"` // modified: what the switch holds instead
	Cookie    string `json:"cookie"`
	Rule      string `json:"rule"`              // cookie category
	Describe  string `json:"describe"`          // the rule in blueprint terms
	Foreign   bool   `json:"foreign,omitempty"` // extra flow with a cookie vpcflow does not use
}

// RuleCounters aggregates the installed flows of one rule (cookie category +
// object, revision ignored).
type RuleCounters struct {
	Rule     string `json:"rule"`
	Cookie   string `json:"cookie"` // rule bits, revision zeroed
	Object   uint32 `json:"object"`
	Describe string `json:"describe"`
	Drop     bool   `json:"drop"`
	Flows    int    `json:"flows"`
	Packets  uint64 `json:"packets"`
	Bytes    uint64 `json:"bytes"`
}

// Audit reads every bridge's flows now (host "" = all) and compares them
// with the intended flows. It only reads: drift is reported, not repaired
// (the drift check repairs it, or AuditRepair).
func (c *Controller) Audit(ctx context.Context, host string) AuditReport {
	return c.audit(ctx, host, false)
}

// AuditRepair is Audit, then asks every bridge with drift to reconcile
// (POST /audit?repair=1). The report shows the state before the repair.
func (c *Controller) AuditRepair(ctx context.Context, host string) AuditReport {
	return c.audit(ctx, host, true)
}

func (c *Controller) audit(ctx context.Context, host string, repair bool) AuditReport {
	st := c.Status()
	p := c.policy()
	r := AuditReport{GeneratedAt: time.Now().UTC(), Revision: p.bp.Revision, BlueprintHash: p.hash, InSync: true, Complete: true, RepairRequested: repair}
	if cl := c.opts.Cluster; cl != nil {
		r.Replica = cl.Name()
	}
	c.mu.Lock()
	brs := make(map[string]*bridge, len(c.bridges))
	for d, b := range c.bridges {
		brs[fmt.Sprintf("%016x", d)] = b
	}
	c.mu.Unlock()
	for _, bs := range st.Bridges {
		if host != "" && bs.Host != host {
			continue
		}
		a := BridgeAudit{Host: bs.Host, DatapathID: bs.DatapathID, Known: bs.Known, Connected: bs.Connected, Role: bs.Role,
			Revision: bs.Revision, Missing: []AuditFlow{}, Extra: []AuditFlow{}, Modified: []AuditFlow{}, Rules: []RuleCounters{}}
		b := brs[bs.DatapathID]
		switch {
		case b == nil || !bs.Connected:
			a.Error = "not connected to this controller: cannot read its flows"
		case !bs.Known:
			a.Error = "datapath id not in the blueprint"
		default:
			if err := b.audit(ctx, p, &a, repair); err != nil {
				a.Error = err.Error()
			} else {
				a.Audited = true
			}
		}
		if !a.Audited {
			r.Complete = false
		}
		if a.Drift {
			r.InSync = false
		}
		r.Bridges = append(r.Bridges, a)
	}
	if !r.Complete {
		r.InSync = false
	}
	var per [][]flows.PolicyRuleCount
	for _, a := range r.Bridges {
		per = append(per, a.PolicyRules)
	}
	r.PolicyRules = flows.SumPolicyRuleCounts(per...)
	return r
}

// describeRules maps each rule (cookie without revision) of a compiled flow
// set to its description in blueprint terms.
func describeRules(fs []flows.Flow) map[flows.Cookie]string {
	m := make(map[flows.Cookie]string, len(fs))
	for i := range fs {
		r := fs[i].Cookie.Rule()
		if _, ok := m[r]; !ok {
			m[r] = fs[i].Note
		}
	}
	return m
}

func (b *bridge) audit(ctx context.Context, p *policy, a *BridgeAudit, repair bool) error {
	ctx, cancel := context.WithTimeout(ctx, b.c.opts.OpTimeout)
	defer cancel()
	h, removed := b.hostFor(p)
	if h == nil {
		return fmt.Errorf("datapath id not in the blueprint")
	}
	var compiled []flows.Flow
	if removed {
		opts := p.opts
		opts.NoNotes = false
		compiled = flows.CompileManagementWith(p.bp, h, opts)
	} else {
		var err error
		if compiled, err = p.compile(h.Name); err != nil {
			return err
		}
	}
	ports := flows.PortMap(b.conn.Ports())
	intended, _ := flows.Bind(compiled, ports)
	installed, err := b.readFlows(ctx, ports.Names())
	if err != nil {
		return err
	}
	desc := describeRules(compiled)
	describe := func(f *flows.Flow) (string, bool) {
		if d, ok := desc[f.Cookie.Rule()]; ok {
			return d, false
		}
		if !f.Cookie.Category().Known() {
			return "foreign flow: not installed by vpcflow", true
		}
		return "stale vpcflow flow: its rule is no longer in the blueprint", false
	}
	d := DiffFlows(intended, installed)
	a.Intended, a.Installed, a.InSync = len(intended), len(installed), d.InSync
	a.Drift = !d.Empty()
	for i := range d.Missing {
		f := &d.Missing[i]
		ds, _ := describe(f)
		a.Missing = append(a.Missing, AuditFlow{Flow: f.String(), Cookie: f.Cookie.String(), Rule: f.Cookie.Category().String(), Describe: ds})
	}
	for i := range d.Extra {
		f := &d.Extra[i]
		ds, foreign := describe(f)
		a.Extra = append(a.Extra, AuditFlow{Flow: f.String(), Cookie: f.Cookie.String(), Rule: f.Cookie.Category().String(), Describe: ds, Foreign: foreign})
	}
	for i := range d.Modified {
		f := &d.Modified[i]
		ds, _ := describe(f)
		a.Modified = append(a.Modified, AuditFlow{Flow: f.String(), Installed: d.Was[i].String(), Cookie: f.Cookie.String(), Rule: f.Cookie.Category().String(), Describe: ds})
	}
	rules := map[flows.Cookie]*RuleCounters{}
	for i := range installed {
		f := &installed[i]
		r := f.Cookie.Rule()
		rc := rules[r]
		if rc == nil {
			ds, _ := describe(f)
			rc = &RuleCounters{Rule: f.Cookie.Category().String(), Cookie: r.String(), Object: f.Cookie.Object(), Describe: ds, Drop: f.Cookie.Category().IsDrop()}
			rules[r] = rc
		}
		rc.Flows++
		rc.Packets += f.Packets
		rc.Bytes += f.Bytes
	}
	for _, rc := range rules {
		a.Rules = append(a.Rules, *rc)
	}
	sort.Slice(a.Rules, func(i, j int) bool { return a.Rules[i].Cookie < a.Rules[j].Cookie })
	a.PolicyRules = policyRuleCounts(p, intended, installed, &d)
	b.recordCounters(installed)
	if a.Drift {
		b.c.metrics.drift.WithLabelValues(b.label()).Inc()
		l := b.log.WithField("missing", len(d.Missing)).WithField("extra", len(d.Extra)).WithField("modified", len(d.Modified))
		if !repair {
			// A read never writes (GET /audit): the drift check repairs
			// it within --drift-interval, or POST /audit?repair=1 now.
			l.Warn("audit: drift detected (installed flows differ from the intended flows); not repaired by a read: the drift check repairs it, or POST /audit?repair=1")
			return nil
		}
		l.Warn("audit: drift detected (installed flows differ from the intended flows); repair requested (POST /audit?repair=1)")
		b.kick("audit found drift")
	}
	return nil
}
