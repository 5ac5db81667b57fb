package controller

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vpcflow/vpcflow/flows"
)

// metrics are the controller's Prometheus metrics (served on /metrics;
// the reference is docs/metrics.md).
//
// Conventions (docs/metrics.md, "Conventions"): counters are counters and
// end in _total; units are base units named in the metric (_seconds,
// _bytes, _timestamp_seconds); every per-bridge series has exactly one
// identifying label, bridge (the datapath id, 16 hex digits), and the
// blueprint host name is joined from vpcflow_bridge_info{bridge,host}.
// Label cardinality is bounded: bridges × rule categories, never per flow,
// VM or packet.
type metrics struct {
	reg       *prometheus.Registry
	reconcile *prometheus.HistogramVec
	flowMods  *prometheus.CounterVec
	modErrors *prometheus.CounterVec
	drift     *prometheus.CounterVec
	roles     *prometheus.CounterVec
	rejected  prometheus.Counter
	// peerFetches counts blueprints fetched from replicas (distribute.go).
	peerFetches *prometheus.CounterVec
	hsRefused   prometheus.Counter

	dropEvents     *prometheus.CounterVec
	dropSuppressed *prometheus.CounterVec
	// policy is the per-rule policy metric (policy_observe.go).
	policy *policyMetrics
	// rules is the per-category packet counter and flows the per-flow
	// state it and the policy metric count increases with (metrics_bridge.go).
	rules *ruleCounters
	flows *flowTracker
	// applied is the blueprint-to-bridge latency (metrics_bridge.go).
	applied *appliedLatency
	// intended caches vpcflow_flows_intended per bridge (metrics_bridge.go).
	intended *intendedCache
	// lastPrune is when maybePrune last ran (Unix ns).
	lastPrune atomic.Int64
}

func newMetrics(c *Controller) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		reconcile: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vpcflow_reconcile_duration_seconds",
			Help:    "Time of one reconcile (read, diff, bundle, read-back) per bridge.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"bridge"}),
		flowMods: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcflow_flow_mods_total",
			Help: "Flow-mods applied, by bridge and action (add, modify, delete)."}, []string{"bridge", "action"}),
		modErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcflow_flow_mod_errors_total",
			Help: "Bundles the switch rejected (nothing of them was committed)."}, []string{"bridge"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcflow_drift_detected_total",
			Help: "Times the installed flows were found to differ from the intended flows outside a blueprint or port change."}, []string{"bridge"}),
		roles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcflow_role_changes_total",
			Help: "OpenFlow role changes of this replica on a bridge (granted MASTER, demoted by the switch, stood by as SLAVE)."}, []string{"bridge", "role"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "vpcflow_rejected_connections_total",
			Help: "Switch connections refused (TLS failure, certificate not matching the datapath's host, datapath id already connected elsewhere)."}),
		hsRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "vpcflow_handshakes_refused_total",
			Help: "Switch connections closed at accept because --max-handshakes handshakes were already in progress."}),
		rules:    newRuleCounters(),
		flows:    newFlowTracker(),
		applied:  newAppliedLatency(),
		intended: &intendedCache{m: map[uint64]intendedEntry{}},
	}
	m.reg.MustRegister(newBuildInfoMetric()) // version.go
	// The conventional runtime metrics: go_* and process_* (CPU, memory,
	// open file descriptors, start time).
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(&protocolCollector{c}) // upgrade.go
	m.dropEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcflow_drop_log_events_total",
		Help: "Dropped packets logged (drop logging), by bridge and rule category."}, []string{"bridge", "category"})
	m.dropSuppressed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcflow_drop_log_suppressed_total",
		Help: "Drop-log events discarded by the controller because it could not keep up (the switch's meter drops more, see ovs-ofctl meter-stats)."}, []string{"bridge"})
	m.peerFetches = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcflow_blueprint_peer_fetches_total",
		Help: "Blueprints fetched from another replica because it enforced a newer policy, by result (ok: verified and applied; error: transfer failed, refused, invalid or hash mismatch)."}, []string{"result"})
	m.policy = newPolicyMetrics(c.opts.PolicyMetricRules)
	m.reg.MustRegister(m.peerFetches, m.dropEvents, m.dropSuppressed, m.rejected, m.hsRefused, m.reconcile, m.flowMods, m.modErrors, m.drift, m.roles,
		&statusCollector{c}, m.policy, m.applied.h, &tlsCollector{c})
	return m
}

func (b *bridge) label() string { return dpidLabel(b.dpid) }

// recordCounters feeds the per-category packet counters
// (vpcflow_rule_packets_total) and the per-rule policy metric from a read
// of the installed flows (reconcile and audit both read them): only the
// increases since the previous read count (flowTracker).
func (b *bridge) recordCounters(installed []flows.Flow) {
	deltas := b.c.metrics.flows.deltas(b.dpid, installed, time.Now())
	pk := map[flows.Category]uint64{}
	for i := range installed { // every installed category has a series
		pk[metricCategory(installed[i].Cookie)] += 0
	}
	for i := range deltas {
		pk[metricCategory(deltas[i].Cookie)] += deltas[i].Packets
	}
	b.c.metrics.rules.add(b.dpid, pk)
	b.recordPolicyCounters(deltas)
	b.c.metrics.maybePrune(b.c)
}

// pruneEvery bounds how long per-bridge metric state of a datapath that
// left (disconnected and not in the blueprint) is kept without a scrape.
const pruneEvery = time.Minute

// maybePrune drops the per-bridge state of datapaths that are neither in
// the blueprint nor connected, at most every pruneEvery (each scrape
// prunes too), so the state stays bounded even if nobody scrapes.
func (m *metrics) maybePrune(c *Controller) {
	now := time.Now().UnixNano()
	last := m.lastPrune.Load()
	if now-last < int64(pruneEvery) || !m.lastPrune.CompareAndSwap(last, now) {
		return
	}
	_, keep := c.metricBridges(c.policy())
	m.prune(keep)
}

// prune drops the per-bridge state of the datapaths keep rejects.
func (m *metrics) prune(keep func(uint64) bool) {
	m.rules.prune(keep)
	m.flows.prune(keep)
	m.applied.prune(keep)
	m.intended.prune(keep)
}

// metricCategory is the category label of a cookie: a foreign cookie's top
// byte is "unknown" (one series, not up to 256).
func metricCategory(c flows.Cookie) flows.Category {
	cat := c.Category()
	if strings.HasPrefix(cat.String(), "category-") {
		return flows.CatUnknown
	}
	return cat
}

// observeApplied is called after a reconcile that converged under policy
// p (the bridge loop): the first time a bridge converges under a blueprint
// loaded while it was connected, the time since the blueprint was accepted
// is observed in vpcflow_blueprint_apply_duration_seconds.
func (b *bridge) observeApplied(p *policy, removed bool) {
	if removed {
		return
	}
	b.mu.Lock()
	since := b.st.ConnectedSince
	b.mu.Unlock()
	b.c.metrics.applied.observe(b.dpid, p, since, time.Now())
}
