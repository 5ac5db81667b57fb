package controller

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vpcflow/vpcflow/flows"
)

// metrics are the controller's Prometheus metrics (served on /metrics).
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
	}
	m.reg.MustRegister(newBuildInfoMetric())  // version.go
	m.reg.MustRegister(&protocolCollector{c}) // upgrade.go
	m.dropEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcflow_drop_log_events_total",
		Help: "Dropped packets logged (drop logging), by bridge and rule category."}, []string{"bridge", "rule"})
	m.dropSuppressed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcflow_drop_log_suppressed_total",
		Help: "Drop-log events discarded by the controller because it could not keep up (the switch's meter drops more, see ovs-ofctl meter-stats)."}, []string{"bridge"})
	m.peerFetches = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vpcflow_blueprint_peer_fetches_total",
		Help: "Blueprints fetched from another replica because it enforced a newer policy, by result (ok: verified and applied; error: transfer failed, refused, invalid or hash mismatch)."}, []string{"result"})
	m.policy = newPolicyMetrics(c.opts.PolicyMetricRules)
	m.reg.MustRegister(m.peerFetches, m.dropEvents, m.dropSuppressed, m.rejected, m.hsRefused, m.reconcile, m.flowMods, m.modErrors, m.drift, m.roles, &statusCollector{c}, m.policy)
	return m
}

func (b *bridge) label() string { return fmt.Sprintf("%016x", b.dpid) }

// recordCounters keeps per-category packet counters from the last read of
// the installed flows (reconcile and audit both read them).
func (b *bridge) recordCounters(installed []flows.Flow) {
	pk := map[flows.Category]uint64{}
	for i := range installed {
		pk[installed[i].Cookie.Category()] += installed[i].Packets
	}
	b.mu.Lock()
	b.catPackets = pk
	b.mu.Unlock()
	b.recordPolicyCounters(installed)
}

// statusCollector exports gauges computed from the controller's status.
type statusCollector struct{ c *Controller }

var (
	descConnected = prometheus.NewDesc("vpcflow_switches_connected", "Switches connected to this controller.", nil, nil)
	descConverged = prometheus.NewDesc("vpcflow_bridge_converged", "1 when the bridge is converged (MASTER, bundle acked, read-back equal).", []string{"bridge", "host"}, nil)
	descIntended  = prometheus.NewDesc("vpcflow_flows_intended", "Flows compiled for the bridge.", []string{"bridge", "host"}, nil)
	descInstalled = prometheus.NewDesc("vpcflow_flows_installed", "Flows read back from the bridge.", []string{"bridge", "host"}, nil)
	descRulePkts  = prometheus.NewDesc("vpcflow_rule_packets", "Packets matched by the bridge's flows of one rule category (at the last read); drop categories are the security counters.", []string{"bridge", "host", "category", "drop"}, nil)
	descRevision  = prometheus.NewDesc("vpcflow_blueprint_revision", "Revision of the blueprint in force.", nil, nil)
	descReloadErr = prometheus.NewDesc("vpcflow_blueprint_reload_rejected", "1 when the last blueprint reload was rejected (the last good policy is in force).", nil, nil)
	descMembers   = prometheus.NewDesc("vpcflow_cluster_members", "Live replicas seen by this replica (cluster mode).", nil, nil)
	descQuorum    = prometheus.NewDesc("vpcflow_cluster_quorum", "1 when this replica sees a quorum (cluster mode).", nil, nil)
	descOwned     = prometheus.NewDesc("vpcflow_bridges_owned", "Bridges this replica owns (cluster mode).", nil, nil)
	descRefused   = prometheus.NewDesc("vpcflow_cluster_refused", "Cluster members refused because their name is not in the blueprint's controllers: (cluster mode; at most 64 names are tracked).", nil, nil)
	descUnknown   = prometheus.NewDesc("vpcflow_unknown_datapaths", "Connected datapaths not in the blueprint (given no flows).", nil, nil)
	descFenced    = prometheus.NewDesc("vpcflow_bridge_fenced", "1 when the bridge holds flows of a newer blueprint revision than the one in force: this controller writes nothing to it (revision fence).", []string{"bridge", "host"}, nil)
	descInstRev   = prometheus.NewDesc("vpcflow_bridge_installed_revision", "Highest blueprint revision carried by the bridge's flow cookies at this controller's last read.", []string{"bridge", "host"}, nil)
)

func (s *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descConverged, descIntended, descInstalled, descRulePkts, descRevision,
		descReloadErr, descMembers, descQuorum, descOwned, descUnknown, descFenced, descInstRev, descRefused} {
		ch <- d
	}
}

func (s *statusCollector) Collect(ch chan<- prometheus.Metric) {
	c := s.c
	st := c.Status()
	connected, unknown := 0, 0
	for _, b := range st.Bridges {
		if b.Connected {
			connected++
			if !b.Known {
				unknown++
			}
		}
		if !b.Known {
			continue
		}
		conv := 0.0
		if b.Converged {
			conv = 1
		}
		ch <- prometheus.MustNewConstMetric(descConverged, prometheus.GaugeValue, conv, b.DatapathID, b.Host)
		ch <- prometheus.MustNewConstMetric(descIntended, prometheus.GaugeValue, float64(b.FlowsIntended), b.DatapathID, b.Host)
		ch <- prometheus.MustNewConstMetric(descInstalled, prometheus.GaugeValue, float64(b.FlowsInstalled), b.DatapathID, b.Host)
	}
	for _, b := range st.Bridges { // unknown datapaths too: the orphan path is fenced as well
		if !b.Connected {
			continue
		}
		fenced := 0.0
		if b.Fenced {
			fenced = 1
		}
		ch <- prometheus.MustNewConstMetric(descFenced, prometheus.GaugeValue, fenced, b.DatapathID, b.Host)
		ch <- prometheus.MustNewConstMetric(descInstRev, prometheus.GaugeValue, float64(b.InstalledRevision), b.DatapathID, b.Host)
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, float64(connected))
	ch <- prometheus.MustNewConstMetric(descUnknown, prometheus.GaugeValue, float64(unknown))
	ch <- prometheus.MustNewConstMetric(descRevision, prometheus.GaugeValue, float64(st.Revision))
	rej := 0.0
	if st.LastReloadError != "" {
		rej = 1
	}
	ch <- prometheus.MustNewConstMetric(descReloadErr, prometheus.GaugeValue, rej)
	c.mu.Lock()
	brs := make([]*bridge, 0, len(c.bridges))
	for _, b := range c.bridges {
		brs = append(brs, b)
	}
	c.mu.Unlock()
	for _, b := range brs {
		b.mu.Lock()
		host := b.st.Host
		pk := b.catPackets
		b.mu.Unlock()
		for cat, n := range pk {
			drop := "false"
			if cat.IsDrop() {
				drop = "true"
			}
			ch <- prometheus.MustNewConstMetric(descRulePkts, prometheus.GaugeValue, float64(n), b.label(), host, cat.String(), drop)
		}
	}
	if cs := st.Cluster; cs != nil {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(len(cs.Members)))
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.GaugeValue, float64(len(cs.Refused)))
		q := 0.0
		if cs.Quorum {
			q = 1
		}
		ch <- prometheus.MustNewConstMetric(descQuorum, prometheus.GaugeValue, q)
		owned := 0
		for _, m := range cs.Members {
			if m.Self {
				owned = len(m.Owned)
			}
		}
		ch <- prometheus.MustNewConstMetric(descOwned, prometheus.GaugeValue, float64(owned))
	}
}
