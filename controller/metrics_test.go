package controller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

// metricSample returns the value of the series of name whose labels
// include want (a gauge's or a counter's value), and whether it exists.
func metricSample(t *testing.T, c *Controller, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := c.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			switch mf.GetType().String() {
			case "COUNTER":
				return m.GetCounter().GetValue(), true
			case "GAUGE":
				return m.GetGauge().GetValue(), true
			default:
				t.Fatalf("%s: type %s not handled", name, mf.GetType())
			}
		}
	}
	return 0, false
}

// compiledCount is the number of flows the policy in force compiles for
// host (no port binding).
func compiledCount(t *testing.T, c *Controller, host string) int {
	t.Helper()
	plan, err := c.policy().plan(host)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := plan.Flows()
	if err != nil {
		t.Fatal(err)
	}
	return len(fs)
}

// TestMetricsFlowsIntendedDisconnected: vpcflow_flows_intended is the
// compiled count of the bridge's host under the blueprint in force: for a
// host that never connected, for a connected one (bound to its ports, as
// the reconcile's count), after the switch disconnects, and after a reload
// while it is disconnected (neither 0 nor the last reconcile's count).
func TestMetricsFlowsIntendedDisconnected(t *testing.T) {
	dir := t.TempDir()
	table := &ofFenceTable{}
	ctl := ofStartFenceCtl(t, dir, "bp.yaml", ofFenceBlueprint(t, 2, false, ""), nil)
	a1, a2 := map[string]string{"bridge": "00000000000000a1"}, map[string]string{"bridge": "00000000000000a2"}

	// kvm2 never connects: its compiled count, not 0.
	want2 := compiledCount(t, ctl.c, "kvm2")
	if v, ok := metricSample(t, ctl.c, "vpcflow_flows_intended", a2); !ok || int(v) != want2 || want2 == 0 {
		t.Fatalf("kvm2 (never connected): vpcflow_flows_intended = %v (present %v), want the compiled count %d", v, ok, want2)
	}
	if v, ok := metricSample(t, ctl.c, "vpcflow_bridge_info", map[string]string{"bridge": "00000000000000a2", "host": "kvm2"}); !ok || v != 1 {
		t.Fatalf("vpcflow_bridge_info{bridge=a2,host=kvm2} = %v (present %v), want 1", v, ok)
	}

	fs := ctl.connect(table, nil)
	st := ctl.waitKvm1("kvm1 converged", func(s BridgeStatus) bool { return s.Converged && s.Revision == 2 })
	if v, _ := metricSample(t, ctl.c, "vpcflow_flows_intended", a1); int(v) != st.FlowsIntended || v == 0 {
		t.Fatalf("kvm1 connected: vpcflow_flows_intended = %v, want the reconcile's %d", v, st.FlowsIntended)
	}
	if v, _ := metricSample(t, ctl.c, "vpcflow_bridge_connected", a1); v != 1 {
		t.Fatalf("kvm1 connected: vpcflow_bridge_connected = %v", v)
	}

	// The switch goes away: the count stays the host's compiled count.
	_ = fs.nc.Close()
	ctl.waitKvm1("kvm1 disconnected", func(s BridgeStatus) bool { return !s.Connected })
	want1 := compiledCount(t, ctl.c, "kvm1")
	if v, ok := metricSample(t, ctl.c, "vpcflow_flows_intended", a1); !ok || int(v) != want1 || want1 == 0 {
		t.Fatalf("kvm1 disconnected: vpcflow_flows_intended = %v (present %v), want the compiled count %d", v, ok, want1)
	}
	if v, _ := metricSample(t, ctl.c, "vpcflow_bridge_connected", a1); v != 0 {
		t.Fatalf("kvm1 disconnected: vpcflow_bridge_connected = %v", v)
	}

	// A reload while disconnected (blue-web-3 on kvm2): the new count at
	// once, with no reconcile in between.
	ctl.reload(ofFenceBlueprint(t, 3, true, ""))
	ofWaitFor(t, 5*time.Second, "revision 3 in force", func() bool { return ctl.c.policy().bp.Revision == 3 })
	want2b := compiledCount(t, ctl.c, "kvm2")
	if want2b <= want2 {
		t.Fatalf("test blueprint: blue-web-3 adds no flow to kvm2 (%d -> %d)", want2, want2b)
	}
	if v, _ := metricSample(t, ctl.c, "vpcflow_flows_intended", a2); int(v) != want2b {
		t.Fatalf("after a reload: kvm2 vpcflow_flows_intended = %v, want %d", v, want2b)
	}
}

// TestRulePacketsCounter: vpcflow_rule_packets_total is a counter that
// only grows: a fall of a category's sum (its flows re-added) adds the
// new sum; the state survives a reconnect (same datapath id).
func TestRulePacketsCounter(t *testing.T) {
	r := newRuleCounters()
	seq := []struct{ now, total uint64 }{{10, 10}, {15, 15}, {15, 15}, {3, 18}, {5, 20}}
	for i, s := range seq {
		r.observe(0xa1, map[flows.Category]uint64{flows.CatSpoofDrop: s.now})
		if got := r.m[0xa1][flows.CatSpoofDrop].total; got != s.total {
			t.Fatalf("read %d (switch sum %d): total %d, want %d", i, s.now, got, s.total)
		}
	}
	// The category disappears (its flows removed), then comes back at 4.
	r.observe(0xa1, map[flows.Category]uint64{})
	r.observe(0xa1, map[flows.Category]uint64{flows.CatSpoofDrop: 4})
	if got := r.m[0xa1][flows.CatSpoofDrop].total; got != 24 {
		t.Fatalf("after the category's flows came back: total %d, want 24", got)
	}
}

// testCert is a self-signed certificate valid until notAfter.
func testCert(t *testing.T, cn string, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestMetricsConventions: the registry holds go_* and process_*, every
// vpcflow counter ends in _total, vpcflow_rule_packets_total is a counter,
// the certificate expiry is exported, and no per-bridge series carries a
// label other than the documented ones.
func TestMetricsConventions(t *testing.T) {
	notAfter := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	ctl := ofStartFenceCtl(t, t.TempDir(), "bp.yaml", ofFenceBlueprint(t, 2, false, ""), func(o *Options) {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{testCert(t, "ctl1", notAfter)}}
	})
	ctl.connect(&ofFenceTable{}, nil)
	ctl.waitKvm1("kvm1 converged", func(s BridgeStatus) bool { return s.Converged })
	mfs, err := ctl.c.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType().String()
		if !strings.HasPrefix(mf.GetName(), "vpcflow_") {
			continue
		}
		if (mf.GetType().String() == "COUNTER") != strings.HasSuffix(mf.GetName(), "_total") {
			t.Errorf("%s: type %s; counters (and only counters) end in _total", mf.GetName(), mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "host" && mf.GetName() != "vpcflow_bridge_info" {
					t.Errorf("%s has a host label: only vpcflow_bridge_info maps bridge to host", mf.GetName())
				}
				if lp.GetName() == "dpid" || lp.GetName() == "datapath_id" {
					t.Errorf("%s: label %s; the datapath id label is bridge", mf.GetName(), lp.GetName())
				}
			}
		}
	}
	for _, n := range []string{"go_goroutines", "process_start_time_seconds", "vpcflow_build_info", "vpcflow_rule_packets_total"} {
		if _, ok := types[n]; !ok {
			t.Errorf("%s not exported", n)
		}
	}
	if types["vpcflow_rule_packets_total"] != "COUNTER" {
		t.Errorf("vpcflow_rule_packets_total is a %s, want a counter", types["vpcflow_rule_packets_total"])
	}
	if _, ok := types["vpcflow_rule_packets"]; ok {
		t.Errorf("the old gauge vpcflow_rule_packets is still exported")
	}
	v, ok := metricSample(t, ctl.c, "vpcflow_tls_certificate_expiry_timestamp_seconds", map[string]string{"cert": "controller", "subject": "ctl1"})
	if !ok || int64(v) != notAfter.Unix() {
		t.Errorf("vpcflow_tls_certificate_expiry_timestamp_seconds = %v (present %v), want %d", v, ok, notAfter.Unix())
	}
}

// histogramCount is the sample count of an unlabelled histogram.
func histogramCount(t *testing.T, c *Controller, name string) uint64 {
	t.Helper()
	mfs, err := c.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("%s not exported", name)
	return 0
}

// TestBlueprintApplyDuration: a reload converged on a connected bridge is
// one observation of vpcflow_blueprint_apply_duration_seconds; the
// blueprint in force when the bridge connected, and later reconciles under
// the same blueprint (a drift check), are none.
func TestBlueprintApplyDuration(t *testing.T) {
	ctl := ofStartFenceCtl(t, t.TempDir(), "bp.yaml", ofFenceBlueprint(t, 2, false, ""), nil)
	const name = "vpcflow_blueprint_apply_duration_seconds"
	ctl.connect(&ofFenceTable{}, nil)
	ctl.waitKvm1("kvm1 converged at revision 2", func(s BridgeStatus) bool { return s.Converged && s.Revision == 2 })
	if n := histogramCount(t, ctl.c, name); n != 0 {
		t.Fatalf("%s: %d observations for the blueprint loaded before the switch connected, want 0", name, n)
	}
	ctl.reload(ofFenceBlueprint(t, 3, true, ""))
	ofWaitFor(t, 15*time.Second, "one observation after the reload", func() bool { return histogramCount(t, ctl.c, name) == 1 })
	r := ctl.kvm1().Reconciles
	ctl.c.kickAll("drift check")
	ctl.waitKvm1("a drift check ran", func(s BridgeStatus) bool { return s.Reconciles > r })
	if n := histogramCount(t, ctl.c, name); n != 1 {
		t.Fatalf("%s: %d observations after a drift check under the same blueprint, want 1", name, n)
	}
}
