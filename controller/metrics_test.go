package controller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// TestFlowTrackerDeltas: reads of a table become increases per flow: a
// growing counter adds its growth; a re-added flow (counter fell, created
// later) adds all of its new counter; an older read recorded late (counter
// fell, same flow) adds nothing; one flow of a category re-added does not
// count the category's other flows again (the per-category sum fell, yet
// only the re-added flow is new). The per-category counter is their sum.
func TestFlowTrackerDeltas(t *testing.T) {
	ft := newFlowTracker()
	t0 := time.Unix(1_000_000, 0)
	flow := func(match string, pk, ageMs uint64) flows.Flow {
		return flows.Flow{Table: 30, Priority: 100, Cookie: flows.MakeCookie(flows.CatSpoofDrop, 0, 1), RawMatch: []byte(match),
			Packets: pk, Bytes: 100 * pk, DurationMs: ageMs}
	}
	sum := func(fs []flows.Flow) (pk, by uint64) {
		for _, f := range fs {
			pk, by = pk+f.Packets, by+f.Bytes
		}
		return
	}
	r := newRuleCounters()
	var total uint64
	step := func(what string, at time.Time, want uint64, fs ...flows.Flow) {
		t.Helper()
		d := ft.deltas(0xa1, fs, at)
		pk, by := sum(d)
		if pk != want || by != 100*want {
			t.Fatalf("%s: increase %d packets, %d bytes; want %d, %d", what, pk, by, want, 100*want)
		}
		r.add(0xa1, map[flows.Category]uint64{flows.CatSpoofDrop: pk})
		total += want
		if got := r.m[0xa1][flows.CatSpoofDrop]; got != total {
			t.Fatalf("%s: category counter %d, want %d", what, got, total)
		}
	}
	// Two VMs' spoof-drop flows, an hour old at the first read.
	step("first read", t0, 150, flow("vm1", 100, 3600_000), flow("vm2", 50, 3600_000))
	step("growth", t0.Add(30*time.Second), 15, flow("vm1", 110, 3630_000), flow("vm2", 55, 3630_000))
	// vm2's flow re-added 10 s ago (drift repair): its 3 packets are new,
	// vm1 grew by 1; the category's sum fell from 165 to 114.
	step("one flow re-added", t0.Add(60*time.Second), 4, flow("vm1", 111, 3660_000), flow("vm2", 3, 10_000))
	// An audit's read from 2 s earlier, recorded now: nothing.
	step("older read recorded late", t0.Add(61*time.Second), 0, flow("vm1", 110, 3658_000), flow("vm2", 2, 8_000))
	step("growth after the late read", t0.Add(90*time.Second), 2, flow("vm1", 112, 3690_000), flow("vm2", 4, 40_000))
	// ovs-vswitchd restarted: every flow re-added 1 s ago.
	step("switch restarted", t0.Add(120*time.Second), 3, flow("vm1", 2, 1_000), flow("vm2", 1, 1_000))
	// A flow removed and a new one (another match) added.
	step("flow replaced", t0.Add(150*time.Second), 9, flow("vm1", 2, 31_000), flow("vm3", 9, 5_000))
	// Flows without counts are not kept (state grows with the traffic's
	// flows, not the table's 18,000): 1,000 idle flows add no state.
	idle := []flows.Flow{flow("vm1", 2, 61_000), flow("vm3", 9, 35_000)}
	for i := 0; i < 1000; i++ {
		idle = append(idle, flow(fmt.Sprintf("idle%d", i), 0, 61_000))
	}
	step("idle flows", t0.Add(180*time.Second), 0, idle...)
	if n := len(ft.m[0xa1]); n != 2 {
		t.Fatalf("%d flows kept, want the 2 with counts", n)
	}
	// vm3 re-added and idle so far (0 packets, 2 s old): nothing; its next
	// packets are all new.
	step("re-added, no packets yet", t0.Add(210*time.Second), 0, flow("vm1", 2, 91_000), flow("vm3", 0, 2_000))
	step("re-added flow's first packets", t0.Add(240*time.Second), 4, flow("vm1", 2, 121_000), flow("vm3", 4, 32_000))
	// An older read in which vm3 had no packets yet, recorded late: nothing,
	// and vm3's later growth counts only the growth.
	step("older zero read recorded late", t0.Add(241*time.Second), 0, flow("vm1", 2, 120_000), flow("vm3", 0, 31_000))
	step("growth after the late zero read", t0.Add(270*time.Second), 1, flow("vm1", 2, 151_000), flow("vm3", 5, 62_000))
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
// the same blueprint, are none.
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

	// The rules alone: once per bridge and blueprint, none for a blueprint
	// older than the connection.
	a := newAppliedLatency()
	t0 := time.Now()
	old, p2, p3 := &policy{loaded: t0.Add(-time.Minute)}, &policy{loaded: t0.Add(time.Second)}, &policy{loaded: t0.Add(2 * time.Second)}
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.h)
	count := func() uint64 {
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 {
			t.Fatalf("gather: %v (%d families)", err, len(mfs))
		}
		return mfs[0].GetMetric()[0].GetHistogram().GetSampleCount()
	}
	for i, s := range []struct {
		dpid uint64
		p    *policy
		want uint64
	}{{0xa1, old, 0}, {0xa1, p2, 1}, {0xa1, p2, 1}, {0xa2, p2, 2}, {0xa1, p3, 3}, {0xa1, p3, 3}} {
		a.observe(s.dpid, s.p, t0, t0.Add(5*time.Second))
		if got := count(); got != s.want {
			t.Fatalf("step %d: %d observations, want %d", i, got, s.want)
		}
	}
}

// TestMetricsStateBounded: per-bridge metric state is kept for the
// blueprint's hosts and the connected datapaths only: a datapath that is
// neither loses it at the next scrape, or at the next read of any bridge
// once pruneEvery has passed (nobody scraping).
func TestMetricsStateBounded(t *testing.T) {
	ctl := ofStartFenceCtl(t, t.TempDir(), "bp.yaml", ofFenceBlueprint(t, 2, false, ""), nil)
	m := ctl.c.metrics
	seed := func() {
		for _, dpid := range []uint64{0xa2, 0xdead} {
			m.flows.deltas(dpid, []flows.Flow{{Table: 0, Priority: 1, Cookie: flows.MakeCookie(flows.CatSpoofDrop, 0, 1), Packets: 1}}, time.Now())
			m.rules.add(dpid, map[flows.Category]uint64{flows.CatSpoofDrop: 1})
		}
	}
	has := func(dpid uint64) (bool, bool) {
		m.flows.mu.Lock()
		_, f := m.flows.m[dpid]
		m.flows.mu.Unlock()
		m.rules.mu.Lock()
		_, r := m.rules.m[dpid]
		m.rules.mu.Unlock()
		return f, r
	}
	seed()
	if _, err := m.reg.Gather(); err != nil { // a scrape
		t.Fatal(err)
	}
	if f, r := has(0xdead); f || r {
		t.Errorf("after a scrape: state of a datapath neither in the blueprint nor connected kept (flows %v, rules %v)", f, r)
	}
	if f, r := has(0xa2); !f || !r {
		t.Errorf("after a scrape: state of blueprint host kvm2 dropped (flows %v, rules %v)", f, r)
	}
	seed()
	m.lastPrune.Store(0) // pruneEvery has passed
	m.maybePrune(ctl.c)
	if f, r := has(0xdead); f || r {
		t.Errorf("after maybePrune: state of a departed datapath kept (flows %v, rules %v)", f, r)
	}
	seed()
	m.maybePrune(ctl.c) // within pruneEvery: nothing
	if f, _ := has(0xdead); !f {
		t.Errorf("maybePrune ran again within %s", pruneEvery)
	}
}
