package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

// Observing the policy on real Open vSwitch (docs/policy.md, "Observing
// policy"): the blueprint of policy_test.go (web-sg allows tcp 8080 into
// blue-web-2; db-acl #10 denies tcp 5432 from web before #20 allows it; no
// match on db-acl is denied), with drop logging on and a metric cap of 3
// rules. Real TCP connections and pings; then audit, /metrics, the drop
// log and explain --trace must all name the rules that decided.

const observeMetricCap = 3

// policyRows indexes an audit's summed policy rules by name.
func policyRows(rep *controller.AuditReport) map[string]flows.PolicyRuleCount {
	m := map[string]flows.PolicyRuleCount{}
	for _, r := range rep.PolicyRules {
		m[r.Rule] = r
	}
	return m
}

// policyMetricSeries reads vpcflow_policy_rule_packets_total from the
// controller's /metrics: series label text -> value.
func (e *env) policyMetricSeries() map[string]float64 {
	e.t.Helper()
	out, err := e.lab.Exec(e.ctx, e.lab.MgmtNS(), "python3", "-c", "import urllib.request;print(urllib.request.urlopen('"+lab.ControllerURL+"/metrics').read().decode())")
	if err != nil {
		e.t.Fatal(err)
	}
	series := map[string]float64{}
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "vpcflow_policy_rule_packets_total{") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			e.t.Fatalf("metric line %q: %v", l, err)
		}
		series[l[len("vpcflow_policy_rule_packets_total"):i]] = v
	}
	return series
}

// TestPolicyObserve: the rules that decided real connections are counted
// per rule in audit (only the deciding flows, equal to the switch's own
// counters), in the bounded per-rule metric, named in drop-log lines
// (allowed traffic never logged), and explain --trace agrees with the
// model and ofproto/trace for new, established and reply packets.
func TestPolicyObserve(t *testing.T) {
	e := startEnv(t, policyBlueprint(t, 1, webSGAllow8080),
		"--drop-log", "--drop-log-rate", "50", "--policy-metric-rules", strconv.Itoa(observeMetricCap))
	l, ctx := e.lab, e.ctx
	for vm, gw := range map[string]string{"blue-web-1": "10.10.1.1", "blue-web-2": "10.10.1.1", "blue-db-1": "10.10.2.1", "blue-db-2": "10.10.2.1"} {
		if out, err := l.Exec(ctx, l.VMNS(vm), "ip", "route", "replace", "default", "via", gw); err != nil {
			t.Fatalf("%s: default route: %v: %s", vm, err, out)
		}
	}
	web1, web2, db := e.vm("blue-web-1"), e.vm("blue-web-2"), e.vm("blue-db-1")

	// Only drops carry the drop-log meter: every metered flow is of a
	// drop-logged category; allow rules (#20, web-sg) keep their actions.
	dropLogged := map[string]bool{}
	for c := flows.Category(1); c.Known(); c++ {
		if flows.DropLogged(c) {
			dropLogged[fmt.Sprintf("%02x", uint8(c))] = true
		}
	}
	allow20 := flows.MakeCookie(flows.CatACLRule, flows.ACLRuleObject("blue", "db-acl", 20), 0).Rule()
	cookieRE := regexp.MustCompile(`cookie=0x([0-9a-f]+),`)
	policyMetered := 0
	for _, h := range allHosts {
		out, err := l.OVS(ctx, h, "ovs-ofctl", "dump-flows", lab.Bridge)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			m := cookieRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			ck, _ := strconv.ParseUint(m[1], 16, 64)
			c := flows.Cookie(ck)
			if strings.Contains(line, "meter:1") {
				if !dropLogged[fmt.Sprintf("%02x", uint8(c.Category()))] || strings.Contains(line, "goto_table") {
					t.Errorf("%s: metered flow that is not a drop: %s", h, line)
				}
				if flows.IsPolicyCategory(c.Category()) {
					policyMetered++
				}
			}
			if (c.Rule() == allow20 || c.Category() == flows.CatSGRule) && strings.Contains(line, "meter:") {
				t.Errorf("%s: an allow rule carries the meter: %s", h, line)
			}
		}
	}
	if policyMetered == 0 {
		t.Fatal("no policy drop flow carries the drop-log meter")
	}

	// Real traffic: one allowed connection, three refused ones.
	for _, x := range []struct {
		vm   string
		port int
	}{{web2.Name, polAllowedPort}, {web2.Name, polDeniedPort}, {db.Name, aclDenyFirst}, {db.Name, polDeniedPort}} {
		e.listen(x.vm, x.port)
	}
	e.pingOK(web1.Name, db.IP, 15*time.Second) // db-acl #100 (icmp); resolves kvm1<->kvm3
	e.tcpOK(web1.Name, web2.IP, polAllowedPort, 15*time.Second)
	e.tcpRefused(web1.Name, web2.IP, polDeniedPort)               // blue-web-2's groups: no rule allows it
	e.tcpRefused(web1.Name, db.IP, aclDenyFirst)                  // db-acl #10
	e.tcpRefused(web1.Name, db.IP, polDeniedPort)                 // db-acl: no ingress rule matched
	sgDefault2 := flows.SGDefaultRuleName(web2, flows.DirIngress) // "sg of VM blue-web-2: no ingress rule of web-sg allows it (...)"
	aclDefault := "acl blue/db-acl: no ingress rule matched (ingress is denied by default)"

	// Drop log: one line per refused connection, naming the rule.
	for _, w := range []struct{ rule, want string }{
		{"acl blue/db-acl #10", fmt.Sprintf("dport=%d dst=%s", aclDenyFirst, db.IP)},
		{sgDefault2, fmt.Sprintf("dport=%d dst=%s", polDeniedPort, web2.IP)},
		{aclDefault, fmt.Sprintf("dport=%d dst=%s", polDeniedPort, db.IP)},
	} {
		found := ""
		eventually(t, 10*time.Second, "drop-log line for "+w.rule, func() (bool, string) {
			for _, line := range strings.Split(readFile(filepath.Join(l.Dir(), "controller.log")), "\n") {
				if strings.Contains(line, `msg="dropped packet"`) && strings.Contains(line, fmt.Sprintf("policy_rule=%q", w.rule)) &&
					strings.Contains(line, "verdict=deny") && strings.Contains(line, w.want) && strings.Contains(line, "src="+web1.IP) {
					found = line
					return true, line
				}
			}
			return false, ""
		})
		t.Logf("drop log: %s", found)
	}
	for _, line := range strings.Split(readFile(filepath.Join(l.Dir(), "controller.log")), "\n") {
		if strings.Contains(line, `msg="dropped packet"`) && strings.Contains(line, fmt.Sprintf("dport=%d ", polAllowedPort)) {
			t.Errorf("allowed traffic logged as dropped: %s", line)
		}
	}

	// Audit: per rule, the deciding flows, equal to the switch's counters.
	var rep *controller.AuditReport
	eventually(t, 15*time.Second, "audit counts every rule that decided", func() (bool, string) {
		var code int
		rep, code = e.audit()
		rows := policyRows(rep)
		for _, name := range []string{"sg web-sg ingress[0]", "acl blue/db-acl #10", "acl blue/db-acl #100", sgDefault2, aclDefault} {
			if r := rows[name]; r.Packets == 0 || !r.InSync || r.FlowsInstalled != r.FlowsIntended {
				return false, fmt.Sprintf("exit %d, %q: %+v", code, name, r)
			}
		}
		return code == 0, fmt.Sprintf("exit %d", code)
	})
	rows := policyRows(rep)
	if r := rows["acl blue/db-acl #20"]; r.Packets != 0 || r.Verdict != "allow" {
		t.Errorf("db-acl #20 (allow, after deny #10): %+v: the lower number must decide", r)
	}
	if r := rows["acl blue/db-acl #10"]; r.Verdict != "deny" {
		t.Errorf("db-acl #10: %+v", r)
	}
	// The audit's numbers are the switch's: the deciding flows of each
	// rule (all its flows for these plain rules), read with ovs-ofctl.
	for _, c := range []struct {
		name string
		cat  flows.Category
		obj  uint32
	}{
		{"acl blue/db-acl #10", flows.CatACLRule, flows.ACLRuleObject("blue", "db-acl", 10)},
		{"sg web-sg ingress[0]", flows.CatSGRule, flows.SGRuleObject("web-sg", flows.DirIngress, 0)},
		{aclDefault, flows.CatACLDefault, flows.ACLDefaultObject("blue", "db-acl", flows.DirIngress)},
	} {
		eventually(t, 10*time.Second, "audit = ovs-ofctl for "+c.name, func() (bool, string) {
			rep, _ := e.audit()
			got, want := policyRows(rep)[c.name].Packets, e.ruleCounter(c.cat, c.obj, allHosts...)
			return got == want, fmt.Sprintf("audit %d, switch %d", got, want)
		})
	}
	tbl, err := l.Exec(ctx, l.MgmtNS(), vpcflowBin, "audit", "--controller", lab.ControllerURL)
	if err != nil {
		t.Fatalf("audit table: %v\n%s", err, tbl)
	}
	if !strings.Contains(tbl, "policy rules (the flows that decide") || !regexp.MustCompile(`acl blue/db-acl #10\s+deny\s+\d+/\d+\s+[1-9]\d*\s+\d+\s+in sync`).MatchString(tbl) {
		t.Errorf("audit table lacks the policy rules:\n%s", tbl)
	}
	t.Logf("vpcflow audit:\n%s", tbl)

	// Metric: at most cap + 2 series, the rest under "other", summing to
	// what audit counts.
	var auditSum uint64
	eventually(t, 15*time.Second, "metric sums to the audit", func() (bool, string) {
		rep, _ := e.audit()
		auditSum = 0
		for _, r := range rep.PolicyRules {
			auditSum += r.Packets
		}
		s := e.policyMetricSeries()
		var sum float64
		for _, v := range s {
			sum += v
		}
		return sum == float64(auditSum), fmt.Sprintf("metric %v, audit %d: %v", sum, auditSum, s)
	})
	s := e.policyMetricSeries()
	other := 0
	for k := range s {
		if strings.Contains(k, `rule="other"`) {
			other++
		}
	}
	if len(s) > observeMetricCap+2 || other == 0 || len(s)-other != observeMetricCap {
		t.Errorf("%d series (%d other) with --policy-metric-rules %d: %v", len(s), other, observeMetricCap, s)
	}
	matched := 0
	for _, r := range rep.PolicyRules {
		if r.Packets > 0 {
			matched++
		}
	}
	t.Logf("policy metric: %d series for the %d rules that matched (of %d): %v", len(s), matched, len(rep.PolicyRules), s)

	// explain --trace: the model's verdict, the flows' and ofproto/trace
	// agree for new, established and reply packets.
	base := []string{"explain", "--blueprint", e.bpPath, "--trace"}
	for _, h := range e.bp.Hosts {
		base = append(base, "--rundir", h.Name+"="+filepath.Join(l.Dir(), h.Name))
	}
	for _, x := range []struct {
		args  []string
		exit  int
		model string
	}{
		{[]string{"--from", web1.Name, "--to", db.Name, "--proto", "tcp", "--dport", strconv.Itoa(aclDenyFirst)}, 1, "model: denied by acl blue/db-acl #10"},
		{[]string{"--from", web1.Name, "--to", web2.Name, "--proto", "tcp", "--dport", strconv.Itoa(polAllowedPort), "--state", "established"}, 0, "model: allowed by established: connection allowed by sg web-sg ingress[0]"},
		{[]string{"--from", web2.Name, "--to", web1.Name, "--proto", "tcp", "--sport", strconv.Itoa(polAllowedPort), "--dport", "40000", "--state", "reply"}, 0, "model: allowed by established: reply of a connection allowed by sg web-sg ingress[0]"},
		{[]string{"--from", web2.Name, "--to", web1.Name, "--proto", "tcp", "--sport", strconv.Itoa(polAllowedPort), "--dport", "40000"}, 1, "model: denied by sg of VM blue-web-1"},
		{[]string{"--from", web1.Name, "--to", db.Name, "--state", "established"}, 0, "model: allowed by established: connection allowed by acl blue/db-acl #100"},
	} {
		out, code := runCLI(t, append(base, x.args...)...)
		if code != x.exit || !strings.Contains(out, x.model) || !strings.Contains(out, "the flows AGREE with the model") ||
			!strings.Contains(out, "Open vSwitch AGREES") || !strings.Contains(out, "--ct-next") {
			t.Errorf("explain %s: exit %d (want %d), want %q, policy and trace agreeing:\n%s", strings.Join(x.args, " "), code, x.exit, x.model, out)
		}
		if testing.Verbose() {
			t.Logf("vpcflow explain %s (exit %d):\n%s", strings.Join(x.args, " "), code, out)
		}
	}
}
