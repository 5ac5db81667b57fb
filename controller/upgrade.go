package controller

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Rolling upgrades (docs/upgrade.md): what a replica shows about the
// versions in its cluster. The gossip protocol rule lives in
// cluster/protocol.go, the HTTP API version in apiversion.go.

// ProtocolRefused counts what this replica refused because of its gossip
// protocol version (cluster.Cluster.Incompatible).
type ProtocolRefused struct {
	Messages uint64 `json:"messages"` // state, push/pull and blueprint transfer messages
	Members  uint64 `json:"members"`  // member (alive) announcements: replicas not admitted
}

var descProtoRefused = prometheus.NewDesc("vpcflow_cluster_protocol_refused_total",
	"Cluster gossip refused because of an incompatible protocol version, by kind (message: a state or transfer message, nothing of it applied; member: a replica not admitted). Cluster mode.",
	[]string{"kind"}, nil)

// protocolCollector exports vpcflow_cluster_protocol_refused_total.
type protocolCollector struct{ c *Controller }

func (p *protocolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descProtoRefused }

func (p *protocolCollector) Collect(ch chan<- prometheus.Metric) {
	cl := p.c.opts.Cluster
	if cl == nil {
		return
	}
	msgs, members := cl.Incompatible()
	ch <- prometheus.MustNewConstMetric(descProtoRefused, prometheus.CounterValue, float64(msgs), "message")
	ch <- prometheus.MustNewConstMetric(descProtoRefused, prometheus.CounterValue, float64(members), "member")
}

// protocolStatus fills the protocol fields of the cluster status.
func (c *Controller) protocolStatus(cs *ClusterStatus) {
	cl := c.opts.Cluster
	cs.Protocol, cs.ProtocolReadsFrom = cl.Protocol()
	cs.ProtocolRefused.Messages, cs.ProtocolRefused.Members = cl.Incompatible()
}
