package controller

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// The shipped Grafana dashboard and Prometheus alert rules
// (packaging/grafana/vpcflow.json, packaging/prometheus/vpcflow-alerts.yaml)
// are checked against the controller: every expression parses (promtool)
// and names only metrics the controller exports; the rules pass their
// unit tests (promtool test rules).

const (
	dashboardPath  = "../packaging/grafana/vpcflow.json"
	alertsPath     = "../packaging/prometheus/vpcflow-alerts.yaml"
	alertsTestPath = "../packaging/prometheus/vpcflow-alerts_test.yaml"
)

var metricNameRe = regexp.MustCompile(`\b(vpcflow|process|go)_[a-zA-Z0-9_]+\b`)

var descNameRe = regexp.MustCompile(`fqName: "([^"]+)"`)

// exportedNames is every sample name the controller can export: a live
// scrape (histogram _bucket/_sum/_count included) and the descriptions of
// the collectors whose series depend on the mode (cluster metrics).
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	ctl, body := scrapeLive(t)
	names := map[string]bool{}
	for _, l := range strings.Split(body, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		n := l
		if i := strings.IndexAny(l, "{ "); i >= 0 {
			n = l[:i]
		}
		names[n] = true
	}
	ch := make(chan *prometheus.Desc, 256)
	(&statusCollector{ctl.c}).Describe(ch)
	ctl.c.metrics.policy.Describe(ch)
	(&tlsCollector{ctl.c}).Describe(ch)
	close(ch)
	for d := range ch {
		if m := descNameRe.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	return names
}

// dashboardExprs returns every "expr" (and template query) in the
// dashboard, by panel title.
func dashboardExprs(t *testing.T) (map[string][]string, map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	out := map[string][]string{}
	panels, _ := d["panels"].([]any)
	for _, p := range panels {
		pm, _ := p.(map[string]any)
		title, _ := pm["title"].(string)
		if pm["type"] == "row" {
			continue
		}
		targets, _ := pm["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("dashboard panel %q has no targets", title)
		}
		for _, tg := range targets {
			tm, _ := tg.(map[string]any)
			e, _ := tm["expr"].(string)
			if e == "" {
				t.Errorf("dashboard panel %q: a target without expr", title)
				continue
			}
			out[title] = append(out[title], e)
		}
	}
	return out, d
}

// grafanaVars replaces the dashboard's variables with PromQL that parses.
func grafanaVars(e string) string {
	return strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*").Replace(e)
}

// promtoolParse checks that every expression parses, as recording rules.
func promtoolParse(t *testing.T, pt string, exprs []string) {
	t.Helper()
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, e := range exprs {
		rules = append(rules, rule{fmt.Sprintf("vpcflow:dashboard_expr_%d", i), grafanaVars(e)})
	}
	doc, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-exprs.yaml")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(pt, "check", "rules", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules (the dashboard's expressions): %v\n%s", err, out)
	}
}

func TestGrafanaDashboard(t *testing.T) {
	pt := promtoolPath(t)
	byPanel, d := dashboardExprs(t)
	for _, k := range []string{"title", "uid", "panels", "templating"} {
		if _, ok := d[k]; !ok {
			t.Errorf("dashboard: no %q", k)
		}
	}
	names := exportedNames(t)
	var all []string
	used := map[string]bool{}
	for title, exprs := range byPanel {
		for _, e := range exprs {
			all = append(all, e)
			for _, n := range metricNameRe.FindAllString(e, -1) {
				used[n] = true
				if !names[n] {
					t.Errorf("dashboard panel %q: %s is not a metric the controller exports (expr %s)", title, n, e)
				}
			}
		}
	}
	sort.Strings(all)
	promtoolParse(t, pt, all)
	// What the dashboard must show (docs/metrics.md, "Dashboard").
	for _, n := range []string{"vpcflow_switches_connected", "vpcflow_bridge_converged", "vpcflow_drift_detected_total",
		"vpcflow_flow_mods_total", "vpcflow_flow_mod_errors_total", "vpcflow_blueprint_apply_duration_seconds_bucket",
		"vpcflow_policy_rule_packets_total", "vpcflow_rule_packets_total", "vpcflow_cluster_members", "vpcflow_cluster_quorum",
		"vpcflow_tls_certificate_expiry_timestamp_seconds"} {
		if !used[n] {
			t.Errorf("dashboard: no panel uses %s", n)
		}
	}
}

func TestAlertRules(t *testing.T) {
	pt := promtoolPath(t)
	if out, err := exec.Command(pt, "check", "rules", alertsPath).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", alertsPath, err, out)
	}
	cmd := exec.Command(pt, "test", "rules", filepath.Base(alertsTestPath))
	cmd.Dir = filepath.Dir(alertsTestPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool test rules %s: %v\n%s", alertsTestPath, err, out.String())
	}
	// Every alert has a test, and every name in the rules is exported.
	raw, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(alertsTestPath)
	if err != nil {
		t.Fatal(err)
	}
	names := exportedNames(t)
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
				t.Errorf("alert %s has no test in %s", r.Alert, alertsTestPath)
			}
			for _, n := range metricNameRe.FindAllString(r.Expr, -1) {
				if !names[n] {
					t.Errorf("alert %s: %s is not a metric the controller exports", r.Alert, n)
				}
			}
		}
	}
	for _, a := range []string{"VpcflowDriftDetected", "VpcflowBridgeNotConverged", "VpcflowNoQuorum", "VpcflowAllowlistDropsRising",
		"VpcflowFlowModErrors", "VpcflowCertificateExpiringSoon"} {
		if !strings.Contains(string(raw), "alert: "+a+"\n") {
			t.Errorf("%s: no alert %s", alertsPath, a)
		}
	}
}
