package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/buildinfo"
)

// TestBuildVersionReported: the build's version is in /status, in the
// cluster member list of every replica (gossiped), in vpcflow_build_info
// and in the "controller started" log line. (The test binary has no
// -ldflags: the version is buildinfo's fallback; cmd/vpcflow's
// TestPackage/controller_ExecStart checks a `make build` binary end to end,
// examples/e2e's TestClusterMemberVersions three replicas of it.)
func TestBuildVersionReported(t *testing.T) {
	want := buildinfo.Get()
	if want.Version == "" {
		t.Fatal("buildinfo.Get().Version is empty: it must fall back to unknown")
	}
	rs := startReplicas(t, variant(t, 1), variant(t, 1))
	for _, r := range rs {
		ofWaitFor(t, 10*time.Second, r.name+" lists every member's version", func() bool {
			st := r.c.Status()
			if st.Version != want.Version || st.Cluster == nil || len(st.Cluster.Members) != len(rs) {
				return false
			}
			for _, m := range st.Cluster.Members {
				if m.Version != want.Version {
					return false
				}
			}
			return true
		})
	}
	mfs, err := rs[0].c.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "vpcflow_build_info" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if m.GetGauge().GetValue() == 1 && labels["version"] == want.Version && labels["commit"] == want.Commit && labels["goversion"] == want.GoVersion {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no vpcflow_build_info{version=%q,commit=%q,goversion=%q} 1", want.Version, want.Commit, want.GoVersion)
	}
	ofWaitFor(t, 5*time.Second, "the start line with the version", func() bool {
		for _, line := range strings.Split(rs[0].log.String(), "\n") {
			if strings.Contains(line, "controller started") && strings.Contains(line, "version="+want.Version) && strings.Contains(line, "commit="+want.Commit) {
				return true
			}
		}
		return false
	})
}
