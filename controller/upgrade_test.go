package controller

import (
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/cluster"
)

// Every HTTP response carries the API version header, and /status carries
// api_version; replica mode adds this replica's protocol and each member's.
func TestAPIVersionAndProtocolReported(t *testing.T) {
	rs := startReplicas(t, variant(t, 1), variant(t, 1))
	h := rs[0].c.httpServer().Handler
	for _, path := range []string{"/status", "/healthz", "/metrics", "/reload", "/nothing"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if got := w.Header().Get(APIVersionHeader); got != strconv.Itoa(APIVersion) {
			t.Errorf("GET %s: %s header %q, want %d", path, APIVersionHeader, got, APIVersion)
		}
	}
	ofWaitFor(t, 10*time.Second, "/status lists both members' protocol", func() bool {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/status", nil))
		var st Status
		if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.APIVersion != APIVersion || st.Cluster == nil {
			return false
		}
		cs := st.Cluster
		if cs.Protocol != cluster.ProtocolMax || cs.ProtocolReadsFrom != cluster.ProtocolMin || len(cs.Members) != 2 {
			return false
		}
		for _, m := range cs.Members {
			if m.Protocol != cluster.ProtocolMax {
				return false
			}
		}
		return true
	})
	mfs, err := rs[0].c.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "vpcflow_cluster_protocol_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetCounter() != nil && m.GetCounter().GetValue() == 0 {
				kinds[m.GetLabel()[0].GetValue()] = true
			}
		}
	}
	if !kinds["message"] || !kinds["member"] {
		t.Fatalf("vpcflow_cluster_protocol_refused_total{kind=message|member} 0 missing: %v", kinds)
	}
}
