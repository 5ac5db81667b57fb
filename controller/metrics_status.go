package controller

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// statusCollector exports the gauges computed from the controller's status
// at scrape time, and the per-bridge state kept in metrics_bridge.go.
type statusCollector struct{ c *Controller }

var (
	descConnected  = prometheus.NewDesc("vpcflow_switches_connected", "Switches connected to this controller.", nil, nil)
	descBridgeInfo = prometheus.NewDesc("vpcflow_bridge_info", "Always 1 per blueprint host: maps the bridge label (datapath id) to the blueprint host name (join with * on(bridge) group_left(host)).", []string{"bridge", "host"}, nil)
	descBrConn     = prometheus.NewDesc("vpcflow_bridge_connected", "1 when the blueprint host's switch is connected to this controller.", []string{"bridge"}, nil)
	descConverged  = prometheus.NewDesc("vpcflow_bridge_converged", "1 when the bridge is converged (MASTER, bundle acked, read-back equal).", []string{"bridge"}, nil)
	descIntended   = prometheus.NewDesc("vpcflow_flows_intended", "Flows the blueprint in force compiles for the bridge's host (bound to the bridge's ports while it is connected; all of them while it is not).", []string{"bridge"}, nil)
	descInstalled  = prometheus.NewDesc("vpcflow_flows_installed", "Flows read back from the bridge at this controller's last read (0 before the first and while disconnected).", []string{"bridge"}, nil)
	descRevision   = prometheus.NewDesc("vpcflow_blueprint_revision", "Revision of the blueprint in force.", nil, nil)
	descReloadErr  = prometheus.NewDesc("vpcflow_blueprint_reload_rejected", "1 when the last blueprint reload was rejected (the last good policy is in force).", nil, nil)
	descMembers    = prometheus.NewDesc("vpcflow_cluster_members", "Live replicas seen by this replica (cluster mode).", nil, nil)
	descQuorum     = prometheus.NewDesc("vpcflow_cluster_quorum", "1 when this replica sees a quorum (cluster mode).", nil, nil)
	descOwned      = prometheus.NewDesc("vpcflow_bridges_owned", "Bridges this replica owns (cluster mode).", nil, nil)
	descRefused    = prometheus.NewDesc("vpcflow_cluster_refused", "Cluster members refused because their name is not in the blueprint's controllers: (cluster mode; at most 64 names are tracked).", nil, nil)
	descUnknown    = prometheus.NewDesc("vpcflow_unknown_datapaths", "Connected datapaths not in the blueprint (given no flows).", nil, nil)
	descFenced     = prometheus.NewDesc("vpcflow_bridge_fenced", "1 when the bridge holds flows of a newer blueprint revision than the one in force: this controller writes nothing to it (revision fence).", []string{"bridge"}, nil)
	descInstRev    = prometheus.NewDesc("vpcflow_bridge_installed_revision", "Highest blueprint revision carried by the bridge's flow cookies at this controller's last read.", []string{"bridge"}, nil)
)

func (s *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descBridgeInfo, descBrConn, descConverged, descIntended, descInstalled, descRulePkts, descRevision,
		descReloadErr, descMembers, descQuorum, descOwned, descUnknown, descFenced, descInstRev, descRefused} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (s *statusCollector) Collect(ch chan<- prometheus.Metric) {
	c := s.c
	p := c.policy()
	st := c.Status()
	brs, keep := c.metricBridges(p)
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
		ch <- prometheus.MustNewConstMetric(descBridgeInfo, prometheus.GaugeValue, 1, b.DatapathID, b.Host)
		ch <- prometheus.MustNewConstMetric(descBrConn, prometheus.GaugeValue, b2f(b.Connected), b.DatapathID)
		ch <- prometheus.MustNewConstMetric(descConverged, prometheus.GaugeValue, b2f(b.Converged), b.DatapathID)
		ch <- prometheus.MustNewConstMetric(descInstalled, prometheus.GaugeValue, float64(b.FlowsInstalled), b.DatapathID)
		dpid, err := strconv.ParseUint(b.DatapathID, 16, 64)
		if err != nil {
			continue
		}
		if b.Connected && b.Converged && b.Revision == p.bp.Revision {
			// Reconciled under the policy in force: its count is the
			// reconcile's (compiling 18,000 flows per bridge per scrape
			// after every reload would cost seconds of CPU at 200 bridges).
			ch <- prometheus.MustNewConstMetric(descIntended, prometheus.GaugeValue, float64(b.FlowsIntended), b.DatapathID)
			continue
		}
		var ports map[string]uint32
		if br := brs[dpid]; br != nil && b.Connected {
			ports = br.conn.Ports()
		}
		if n, err := c.metrics.intended.count(p, dpid, b.Host, ports); err == nil {
			ch <- prometheus.MustNewConstMetric(descIntended, prometheus.GaugeValue, float64(n), b.DatapathID)
		}
	}
	for _, b := range st.Bridges { // unknown datapaths too: the orphan path is fenced as well
		if !b.Connected {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descFenced, prometheus.GaugeValue, b2f(b.Fenced), b.DatapathID)
		ch <- prometheus.MustNewConstMetric(descInstRev, prometheus.GaugeValue, float64(b.InstalledRevision), b.DatapathID)
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, float64(connected))
	ch <- prometheus.MustNewConstMetric(descUnknown, prometheus.GaugeValue, float64(unknown))
	ch <- prometheus.MustNewConstMetric(descRevision, prometheus.GaugeValue, float64(st.Revision))
	ch <- prometheus.MustNewConstMetric(descReloadErr, prometheus.GaugeValue, b2f(st.LastReloadError != ""))
	c.metrics.rules.collect(ch, keep)
	c.metrics.prune(keep)
	if cs := st.Cluster; cs != nil {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(len(cs.Members)))
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.GaugeValue, float64(len(cs.Refused)))
		ch <- prometheus.MustNewConstMetric(descQuorum, prometheus.GaugeValue, b2f(cs.Quorum))
		owned := 0
		for _, m := range cs.Members {
			if m.Self {
				owned = len(m.Owned)
			}
		}
		ch <- prometheus.MustNewConstMetric(descOwned, prometheus.GaugeValue, float64(owned))
	}
}

// metricBridges returns the connected bridges and which datapath ids the
// per-bridge metric state is kept for: the blueprint's hosts (under p) and
// the connected datapaths.
func (c *Controller) metricBridges(p *policy) (map[uint64]*bridge, func(uint64) bool) {
	c.mu.Lock()
	brs := make(map[uint64]*bridge, len(c.bridges))
	for k, v := range c.bridges {
		brs[k] = v
	}
	c.mu.Unlock()
	keepSet := make(map[uint64]bool, len(brs)+len(p.bp.Hosts))
	for dpid := range brs {
		keepSet[dpid] = true
	}
	for i := range p.bp.Hosts {
		keepSet[p.bp.Hosts[i].DPID] = true
	}
	return brs, func(dpid uint64) bool { return keepSet[dpid] }
}
