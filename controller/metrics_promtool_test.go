package controller

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// promtoolPath returns promtool (Debian's prometheus package, installed by
// scripts/install-deps.sh). Missing, the test fails loudly, as the tests
// that need Open vSwitch do, unless VPCFLOW_E2E=0 skips it.
func promtoolPath(t *testing.T) string {
	t.Helper()
	if os.Getenv("VPCFLOW_E2E") == "0" {
		t.Skip("VPCFLOW_E2E=0")
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (apt-get install prometheus, or run scripts/install-deps.sh; VPCFLOW_E2E=0 skips this test): %v", err)
	}
	return p
}

// scrapeLive starts a controller with the HTTP listener, TLS certificate
// and one converged fake switch (with drop logging and a drift counted, so
// the labelled counters have series), and returns GET /metrics.
func scrapeLive(t *testing.T) (*ofFenceCtl, string) {
	t.Helper()
	ctl := ofStartFenceCtl(t, t.TempDir(), "bp.yaml", ofFenceBlueprint(t, 2, false, ""), func(o *Options) {
		o.HTTP = "127.0.0.1:0"
		o.TLS = &tls.Config{Certificates: []tls.Certificate{testCert(t, "ctl1", time.Now().Add(90*24*time.Hour))}}
	})
	ctl.connect(&ofFenceTable{}, nil)
	ctl.waitKvm1("kvm1 converged", func(s BridgeStatus) bool { return s.Converged })
	// Series of the labelled counters that exist only after an event.
	m := ctl.c.metrics
	m.drift.WithLabelValues("00000000000000a1").Inc()
	m.modErrors.WithLabelValues("00000000000000a1").Inc()
	m.dropEvents.WithLabelValues("00000000000000a1", "spoof-drop").Inc()
	m.dropSuppressed.WithLabelValues("00000000000000a1").Inc()
	m.peerFetches.WithLabelValues("ok").Inc()
	m.applied.h.Observe(0.1)
	var addr string
	ofWaitFor(t, 5*time.Second, "HTTP listener", func() bool {
		_, h := ctl.c.Addrs()
		if h != nil {
			addr = h.String()
		}
		return h != nil
	})
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return ctl, string(body)
}

// TestMetricsPromtoolCheck: `promtool check metrics` finds nothing in a
// live controller's /metrics.
func TestMetricsPromtoolCheck(t *testing.T) {
	pt := promtoolPath(t)
	_, body := scrapeLive(t)
	for _, want := range []string{"vpcflow_rule_packets_total{", "vpcflow_tls_certificate_expiry_timestamp_seconds{", "go_goroutines ", "process_start_time_seconds "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cmd := exec.Command(pt, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil || strings.TrimSpace(out.String()) != "" {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
}
