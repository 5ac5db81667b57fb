package controller

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vpcflow/vpcflow/buildinfo"
)

// The build's identity in the controller's outputs: the "controller
// started" log line, /status (version), the cluster's gossiped state
// (cluster.LocalState.BuildVersion, shown per member) and
// vpcflow_build_info.

// newBuildInfoMetric is vpcflow_build_info{version,commit,goversion} 1, the
// conventional build-info gauge (join it onto other series by instance).
func newBuildInfoMetric() prometheus.Collector {
	bi := buildinfo.Get()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vpcflow_build_info",
		Help: "Always 1; the labels name this controller's build (vpcflow version)."}, []string{"version", "commit", "goversion"})
	g.WithLabelValues(bi.Version, bi.Commit, bi.GoVersion).Set(1)
	return g
}

func buildVersion() string { return buildinfo.Get().Version }

func buildCommit() string { return buildinfo.Get().Commit }
