package controller

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vpcflow/vpcflow/flows"
)

// Per-bridge metric state that outlives a connection: the per-category
// packet counters, the blueprint apply latency and the intended flow
// count. Every map here is keyed by datapath id and pruned at each scrape
// to the blueprint's hosts and the connected bridges, so its size is
// bounded by them.

func dpidLabel(dpid uint64) string { return fmt.Sprintf("%016x", dpid) }

// flowTracker turns reads of a bridge's flow table into increases.
// OpenFlow flow counters restart when a flow is re-added (drift repair, a
// changed rule, an ovs-vswitchd restart), and two reads of one table can
// be recorded out of order (an audit racing a reconcile). Per flow (table,
// priority, cookie, match) it keeps the counters and the creation time
// (the read's time minus the flow's duration) of the last read:
//
//   - counters not below the last read's: the increase;
//   - counters below it and the flow created later (by more than
//     flowRestartSlack): a re-added flow, all of its counters are new;
//   - counters below it otherwise: an older read recorded late, nothing
//     (the last read's counters are kept);
//   - a flow not seen before: all of its counters (so the first read after
//     a start counts what the switch counted before).
//
// Flows gone from a read are forgotten. Memory: one entry per installed
// flow of the bridges in the blueprint or connected (pruned at scrape).
type flowTracker struct {
	mu sync.Mutex
	m  map[uint64]map[flowKey]flowSample
}

type flowKey struct {
	table  flows.TableID
	prio   uint16
	cookie flows.Cookie
	match  string
}

type flowSample struct {
	packets, bytes uint64
	created        int64 // Unix ms
}

// flowRestartSlack bounds the error of a creation time computed from a
// read's duration and the time it is recorded.
const flowRestartSlack = 5000 // ms

func newFlowTracker() *flowTracker { return &flowTracker{m: map[uint64]map[flowKey]flowSample{}} }

// deltas records a read of dpid's flows made about now and returns the
// flows whose counters grew, with the increase as their counters (shallow
// copies: only Packets and Bytes differ).
func (ft *flowTracker) deltas(dpid uint64, installed []flows.Flow, now time.Time) []flows.Flow {
	nowMs := now.UnixMilli()
	ft.mu.Lock()
	defer ft.mu.Unlock()
	prev := ft.m[dpid]
	cur := make(map[flowKey]flowSample, len(prev)) // not len(installed): only flows with counts are kept, and the map lives until the next read
	var out []flows.Flow
	for i := range installed {
		f := &installed[i]
		if f.Packets == 0 && f.Bytes == 0 {
			// Most flows never see a packet (18,000 per bridge with a
			// large policy): only flows with counts are kept, so the state
			// grows with the traffic's flows, not the table. A flow that
			// had counts and now has none was re-added (its next counts are
			// all new), unless this read is older than the one recorded.
			if len(prev) == 0 {
				continue
			}
			k := flowKey{f.Table, f.Priority, f.Cookie, string(f.RawMatch)}
			if p, ok := prev[k]; ok && nowMs-int64(f.DurationMs) <= p.created+flowRestartSlack {
				cur[k] = p
			}
			continue
		}
		k := flowKey{f.Table, f.Priority, f.Cookie, string(f.RawMatch)}
		s := flowSample{f.Packets, f.Bytes, nowMs - int64(f.DurationMs)}
		dp, db := f.Packets, f.Bytes
		if p, ok := prev[k]; ok {
			switch {
			case f.Packets >= p.packets && f.Bytes >= p.bytes:
				dp, db = f.Packets-p.packets, f.Bytes-p.bytes
			case s.created > p.created+flowRestartSlack: // re-added: all new
			default: // an older read recorded late
				dp, db, s = 0, 0, p
			}
		}
		cur[k] = s
		if dp != 0 || db != 0 {
			g := *f
			g.Packets, g.Bytes = dp, db
			out = append(out, g)
		}
	}
	ft.m[dpid] = cur
	return out
}

func (ft *flowTracker) prune(keep func(uint64) bool) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	for dpid := range ft.m {
		if !keep(dpid) {
			delete(ft.m, dpid)
		}
	}
}

// ruleCounters is vpcflow_rule_packets_total{bridge,category,drop}: the
// per-category sums of the flows' increases (flowTracker), so the series
// only grow, across reconnects too (kept per datapath id).
type ruleCounters struct {
	mu sync.Mutex
	m  map[uint64]map[flows.Category]uint64
}

func newRuleCounters() *ruleCounters {
	return &ruleCounters{m: map[uint64]map[flows.Category]uint64{}}
}

// add adds per-category increases (a category with 0 gets its series).
func (r *ruleCounters) add(dpid uint64, pk map[flows.Category]uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cats := r.m[dpid]
	if cats == nil {
		cats = map[flows.Category]uint64{}
		r.m[dpid] = cats
	}
	for cat, n := range pk {
		cats[cat] += n
	}
}

var descRulePkts = prometheus.NewDesc("vpcflow_rule_packets_total",
	"Packets matched by the bridge's flows of one rule category, accumulated over the reads of its flow table (reconcile, drift tick, audit); drop=\"true\" marks the security counters.",
	[]string{"bridge", "category", "drop"}, nil)

func (r *ruleCounters) prune(keep func(uint64) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for dpid := range r.m {
		if !keep(dpid) {
			delete(r.m, dpid)
		}
	}
}

func (r *ruleCounters) collect(ch chan<- prometheus.Metric, keep func(uint64) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for dpid, cats := range r.m {
		if !keep(dpid) {
			continue
		}
		for cat, n := range cats {
			ch <- prometheus.MustNewConstMetric(descRulePkts, prometheus.CounterValue, float64(n), dpidLabel(dpid), cat.String(), fmt.Sprint(cat.IsDrop()))
		}
	}
}

// appliedLatency is vpcflow_blueprint_apply_duration_seconds: from a
// blueprint being accepted (Reload, a peer's policy, a source poll) to a
// bridge converged under it, one observation per bridge and blueprint.
// A blueprint loaded before the bridge connected is not observed (that
// time is the connection's, not the reload's).
type appliedLatency struct {
	h  prometheus.Histogram
	mu sync.Mutex
	m  map[uint64]*policy // the last policy observed per bridge
}

func newAppliedLatency() *appliedLatency {
	return &appliedLatency{m: map[uint64]*policy{},
		h: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vpcflow_blueprint_apply_duration_seconds",
			Help:    "Time from a blueprint being accepted to a bridge converged under it (one observation per bridge and blueprint loaded while the bridge was connected).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 15)})}
}

func (a *appliedLatency) observe(dpid uint64, p *policy, connectedSince, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m[dpid] == p {
		return
	}
	a.m[dpid] = p
	if p.loaded.After(connectedSince) {
		a.h.Observe(now.Sub(p.loaded).Seconds())
	}
}

func (a *appliedLatency) prune(keep func(uint64) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for dpid := range a.m {
		if !keep(dpid) {
			delete(a.m, dpid)
		}
	}
}

// intendedCache is vpcflow_flows_intended per bridge: the flows the
// blueprint in force compiles for the bridge's host, bound to the bridge's
// ports when it is connected (flows of a VM whose port is not on the
// bridge are not sent, as audit's flows_intended), all of them when it is
// not. It is computed from the policy, not from the last reconcile, so it
// is right while a switch is disconnected and right after a reload before
// the bridge has reconciled. Recomputed only when the policy or the port
// set changes.
type intendedCache struct {
	mu sync.Mutex
	m  map[uint64]intendedEntry
}

type intendedEntry struct {
	p     *policy
	ports string // sorted port names; "\x00" when disconnected
	n     int
}

// count returns the intended flow count of host on dpid under p; ports is
// nil for a disconnected bridge.
func (ic *intendedCache) count(p *policy, dpid uint64, host string, ports map[string]uint32) (int, error) {
	sig := "\x00"
	if ports != nil {
		names := make([]string, 0, len(ports))
		for n := range ports {
			names = append(names, n)
		}
		sort.Strings(names)
		sig = strings.Join(names, "\n")
	}
	ic.mu.Lock()
	e, ok := ic.m[dpid]
	ic.mu.Unlock()
	if ok && e.p == p && e.ports == sig {
		return e.n, nil
	}
	plan, err := p.plan(host)
	if err != nil {
		return 0, err
	}
	fs, err := plan.Flows()
	if err != nil {
		return 0, err
	}
	n := len(fs)
	if ports != nil {
		bound, _ := flows.Bind(fs, flows.PortMap(ports))
		n = len(bound)
	}
	ic.mu.Lock()
	ic.m[dpid] = intendedEntry{p: p, ports: sig, n: n}
	ic.mu.Unlock()
	return n, nil
}

func (ic *intendedCache) prune(keep func(uint64) bool) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	for dpid := range ic.m {
		if !keep(dpid) {
			delete(ic.m, dpid)
		}
	}
}
