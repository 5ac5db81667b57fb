package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

// explainCase is one `vpcflow explain` question with the expected verdict
// and, for drops, the rule category that decides it.
type explainCase struct {
	q       flows.ExplainQuery
	verdict string
	dropCat flows.Category
}

func (c explainCase) String() string {
	s := c.q.From + "->" + c.q.To
	if c.q.ARP {
		s += " arp"
	} else if c.q.Proto != "" && c.q.Proto != "icmp" {
		s += fmt.Sprintf(" %s/%d", c.q.Proto, c.q.DPort)
	}
	if c.q.SpoofMAC != "" {
		s += " spoof-mac " + c.q.SpoofMAC
	}
	if c.q.SpoofIP != "" {
		s += " spoof-ip " + c.q.SpoofIP
	}
	if c.q.Host != "" {
		s += " @" + c.q.Host
	}
	return s
}

// TestExplainAgreesWithOVS runs `vpcflow explain --trace` logic for a
// matrix of VM pairs, management probes, spoofed packets, ARP and rogue
// underlay tunnels against the demo lab: the model's verdict and flows must
// match ofproto/trace on the real bridges hop by hop, and the VM-pair
// verdicts must match real pings. A flow added behind the controller's
// back must be reported as a disagreement.
func TestExplainAgreesWithOVS(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, nil))
	check := explainChecker(t, e)
	cloud, run := check.cloud, check.run

	// Real packets first: the ping matrix (it also resolves every tunnel
	// neighbour, so ofproto/trace follows native tunnelling to the uplink).
	matrix := e.lab.Matrix(e.ctx)
	if v := lab.MatrixViolations(matrix); len(v) > 0 {
		t.Fatalf("policy violations in the ping matrix:\n  %s", strings.Join(v, "\n  "))
	}

	t.Run("vm-pairs", func(t *testing.T) {
		n := 0
		for _, r := range matrix {
			want := flows.VerdictDropped
			if r.Expected {
				want = flows.VerdictDelivered
			}
			x := check.do(t, explainCase{q: flows.ExplainQuery{From: r.From, To: r.To}, verdict: want, dropCat: flows.CatDefaultDrop})
			if r.How != "same-ip" && (x.Verdict == flows.VerdictDelivered) != r.Reached {
				t.Errorf("%s -> %s: explain says %s, real ping reached=%v", r.From, r.To, x.Verdict, r.Reached)
			}
			n++
		}
		t.Logf("%d VM pairs: explain = ofproto/trace = ping", n)
	})

	t.Run("overlapping-ips", func(t *testing.T) {
		// --to IP resolves inside the source's VPC: 10.10.1.12 is
		// blue-web-2 (kvm2) for blue and red-web-2 (kvm3) for red.
		x := check.do(t, explainCase{q: flows.ExplainQuery{From: "red-web-1", To: "10.10.1.12"}, verdict: flows.VerdictDelivered})
		if len(x.DeliveredTo) != 1 || x.DeliveredTo[0].VM != "red-web-2" {
			t.Errorf("red-web-1 -> 10.10.1.12 delivered to %+v", x.DeliveredTo)
		}
		x = check.do(t, explainCase{q: flows.ExplainQuery{From: "blue-web-1", To: "10.10.1.12", Proto: "tcp", DPort: 22}, verdict: flows.VerdictDelivered})
		if len(x.DeliveredTo) != 1 || x.DeliveredTo[0].VM != "blue-web-2" {
			t.Errorf("blue-web-1 -> 10.10.1.12 delivered to %+v", x.DeliveredTo)
		}
	})

	t.Run("management-probes", func(t *testing.T) {
		for _, vm := range []string{"blue-web-1", "red-app-1", "red-web-2"} {
			for _, h := range e.bp.Hosts {
				check.do(t, explainCase{q: flows.ExplainQuery{From: vm, To: h.TunnelIP, Proto: "tcp", DPort: 22}, verdict: flows.VerdictDropped, dropCat: flows.CatMgmtGuard})
			}
			check.do(t, explainCase{q: flows.ExplainQuery{From: vm, To: e.lab.MgmtAddr(), Proto: "tcp", DPort: 6653}, verdict: flows.VerdictDropped, dropCat: flows.CatMgmtGuard})
			check.do(t, explainCase{q: flows.ExplainQuery{From: vm, To: e.lab.MgmtAddr()}, verdict: flows.VerdictDropped, dropCat: flows.CatMgmtGuard})
			check.do(t, explainCase{q: flows.ExplainQuery{From: vm, To: "203.0.113.7", Proto: "udp", DPort: 6640}, verdict: flows.VerdictDropped, dropCat: flows.CatMgmtGuard})
		}
		// the management node still reaches a host (underlay -> host stack)
		for _, h := range e.bp.Hosts {
			check.do(t, explainCase{q: flows.ExplainQuery{From: "underlay:" + e.lab.MgmtAddr(), To: h.TunnelIP, Proto: "tcp", DPort: 22}, verdict: flows.VerdictDelivered})
		}
	})

	t.Run("spoofing", func(t *testing.T) {
		for _, c := range []explainCase{
			{q: flows.ExplainQuery{From: "blue-web-1", To: "blue-web-2", SpoofIP: "10.10.1.99"}},
			{q: flows.ExplainQuery{From: "blue-web-1", To: "blue-web-2", SpoofMAC: "52:54:00:66:66:66"}},
			{q: flows.ExplainQuery{From: "red-web-2", To: "red-web-1", SpoofMAC: "52:54:00:b1:01:0c", SpoofIP: "10.10.1.12"}},
			{q: flows.ExplainQuery{From: "red-app-1", To: "red-app-2", ARP: true, SpoofIP: "10.20.2.99"}},
		} {
			c.verdict, c.dropCat = flows.VerdictDropped, flows.CatSpoofDrop
			check.do(t, c)
		}
	})

	t.Run("arp", func(t *testing.T) {
		x := check.do(t, explainCase{q: flows.ExplainQuery{From: "blue-web-1", To: "blue-web-2", ARP: true}, verdict: flows.VerdictDelivered})
		if !strings.Contains(x.Summary, "10.10.1.12 is-at 52:54:00:b1:01:0c") {
			t.Errorf("ARP summary %q", x.Summary)
		}
		// another VPC's VM with an overlapping address: the switch answers
		// with the asker's own tier's VM, never the other VPC's MAC
		x = check.do(t, explainCase{q: flows.ExplainQuery{From: "blue-web-1", To: "red-web-2", ARP: true}, verdict: flows.VerdictDelivered})
		if !strings.Contains(x.Summary, "is-at 52:54:00:b1:01:0c") {
			t.Errorf("ARP for red-web-2's address from blue: %q", x.Summary)
		}
		check.do(t, explainCase{q: flows.ExplainQuery{From: "blue-web-1", To: "red-app-1", ARP: true}, verdict: flows.VerdictDropped, dropCat: flows.CatDefaultDrop})
		check.do(t, explainCase{q: flows.ExplainQuery{From: "red-web-1", To: "10.10.2.11", ARP: true}, verdict: flows.VerdictDropped, dropCat: flows.CatDefaultDrop})
		check.do(t, explainCase{q: flows.ExplainQuery{From: "blue-db-2", To: "10.10.2.12", ARP: true}, verdict: flows.VerdictDropped, dropCat: flows.CatARPDrop})
	})

	t.Run("underlay", func(t *testing.T) {
		check.do(t, explainCase{q: flows.ExplainQuery{From: "underlay:" + lab.RogueAddr, To: "blue-web-1", SpoofMAC: lab.RogueMAC}, verdict: flows.VerdictDropped, dropCat: flows.CatTunnelDrop})
		check.do(t, explainCase{q: flows.ExplainQuery{From: "underlay:" + lab.RogueAddr, To: "red-web-2", Host: "kvm3"}, verdict: flows.VerdictDropped, dropCat: flows.CatTunnelDrop})
		// a host's tunnel IP from another MAC (ARP-spoofed underlay)
		check.do(t, explainCase{q: flows.ExplainQuery{From: "underlay:192.0.2.12", To: "blue-web-1", SpoofMAC: lab.RogueMAC}, verdict: flows.VerdictDropped, dropCat: flows.CatTunnelDrop})
		// a real peer, right key: delivered; a key the peer does not carry: refused
		check.do(t, explainCase{q: flows.ExplainQuery{From: "underlay:192.0.2.12", To: "blue-web-1"}, verdict: flows.VerdictDelivered})
		check.do(t, explainCase{q: flows.ExplainQuery{From: "underlay:192.0.2.12", To: "red-web-1"}, verdict: flows.VerdictDropped, dropCat: flows.CatDefaultDrop})
	})

	t.Run("host-restricted", func(t *testing.T) {
		check.do(t, explainCase{q: flows.ExplainQuery{From: "blue-web-1", To: "blue-web-2", Host: "kvm1"}, verdict: flows.VerdictForwarded})
		check.do(t, explainCase{q: flows.ExplainQuery{From: "blue-web-1", To: "blue-web-2", Host: "kvm2"}, verdict: flows.VerdictDelivered})
		check.do(t, explainCase{q: flows.ExplainQuery{From: "blue-web-1", To: "blue-web-2", Host: "kvm3"}, verdict: flows.VerdictDropped, dropCat: flows.CatDefaultDrop})
	})

	t.Run("tampered-bridge-disagrees", func(t *testing.T) {
		// A higher-priority drop added behind the controller's back on
		// kvm1 for blue-web-1 -> blue-web-2. The controller repairs drift
		// (every 2 s here), so add it and trace at once, retrying if the
		// repair was faster.
		tamper := "table=40,priority=400,ip,nw_dst=10.10.1.12"
		x, err := flows.Explain(cloud, flows.ExplainQuery{From: "blue-web-1", To: "blue-web-2"})
		if err != nil {
			t.Fatal(err)
		}
		var rep *flows.TraceReport
		for attempt := 0; attempt < 5; attempt++ {
			if _, err := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "add-flow", lab.Bridge, tamper+",actions=drop"); err != nil {
				t.Fatal(err)
			}
			if rep, err = x.CheckTrace(e.ctx, lab.Bridge, run); err != nil {
				t.Fatal(err)
			}
			if !rep.Agree {
				break
			}
		}
		if _, err := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "del-flows", "--strict", lab.Bridge, tamper); err != nil {
			t.Fatal(err)
		}
		if rep.Agree || x.ExitCode() != 1 {
			t.Fatalf("explain did not report the tampered bridge:\n%s", x.Text())
		}
		diff := strings.Join(rep.Checks[0].Diff, "\n")
		for _, want := range []string{"Open vSwitch takes table 40 (mgmt_guard) priority 400 cookie 0x0000000000000000 [unknown]", "not a vpcflow flow", "Open vSwitch drops"} {
			if !strings.Contains(diff, want) {
				t.Errorf("diff lacks %q:\n%s", want, diff)
			}
		}
		t.Logf("reported disagreement:\n%s", rep.Text())
		// Without the tampered flow they agree again.
		check.do(t, explainCase{q: flows.ExplainQuery{From: "blue-web-1", To: "blue-web-2"}, verdict: flows.VerdictDelivered})
	})

	t.Run("cli", func(t *testing.T) {
		// The real binary, with --rundir per host (ovs-appctl talks to the
		// unix control socket, no namespace needed) ...
		args := []string{"explain", "--blueprint", e.bpPath, "--from", "blue-web-1", "--to", "blue-web-2", "--proto", "tcp", "--dport", "22", "--trace", "--format", "json"}
		for _, h := range e.bp.Hosts {
			args = append(args, "--rundir", h.Name+"="+filepath.Join(e.lab.Dir(), h.Name))
		}
		out, code := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		var x struct {
			Schema  string `json:"schema"`
			Verdict string `json:"verdict"`
			Trace   struct {
				Agree  bool              `json:"agree"`
				Checks []json.RawMessage `json:"checks"`
			} `json:"trace"`
		}
		if err := json.Unmarshal([]byte(out), &x); err != nil {
			t.Fatalf("json: %v\n%s", err, out)
		}
		if x.Schema != flows.ExplainSchema || x.Verdict != "delivered" || !x.Trace.Agree || len(x.Trace.Checks) != 3 {
			t.Fatalf("unexpected result: %+v\n%s", x, out)
		}
		// ... and with a command prefix that enters the host namespace.
		out, code = runCLI(t, "explain", "--blueprint", e.bpPath, "--from", "blue-web-1", "--to", "192.0.2.12", "--proto", "tcp", "--dport", "22", "--trace",
			"--trace-cmd", "ip netns exec "+e.lab.Prefix()+"{host} env OVS_RUNDIR="+e.lab.Dir()+"/{host}")
		if code != 1 || !strings.Contains(out, "verdict: dropped on host kvm1 by rule mgmt-guard (table mgmt_guard, priority 300") ||
			!strings.Contains(out, "Open vSwitch AGREES") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if out, code = runCLI(t, "explain", "--blueprint", e.bpPath, "--from", "blue-web-9", "--to", "blue-web-2"); code != 2 || !strings.Contains(out, `no VM "blue-web-9"`) {
			t.Fatalf("unknown VM: exit %d:\n%s", code, out)
		}
		if _, code = runCLI(t, "explain", "--blueprint", e.bpPath, "--from", "blue-web-1"); code != 2 {
			t.Fatalf("usage: exit %d", code)
		}
	})
}

// runCLI runs the vpcflow binary and returns its combined output and exit code.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vpcflowBin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("vpcflow %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

// explainCheck runs explain + ofproto/trace comparisons on a lab.
type explainCheck struct {
	e     *env
	cloud *flows.Cloud
	run   flows.TraceRunner
}

func explainChecker(t *testing.T, e *env) *explainCheck {
	cloud, err := flows.NewCloud(e.bp)
	if err != nil {
		t.Fatal(err)
	}
	return &explainCheck{e: e, cloud: cloud, run: func(ctx context.Context, host string, args ...string) (string, error) {
		return e.lab.OVS(ctx, host, "ovs-appctl", args...)
	}}
}

// do explains c, compares it with ofproto/trace on every hop and checks
// the verdict (and, for drops, the deciding rule category).
func (k *explainCheck) do(t *testing.T, c explainCase) *flows.Explanation {
	t.Helper()
	x, err := flows.Explain(k.cloud, c.q)
	if err != nil {
		t.Fatalf("%s: %v", c, err)
	}
	rep, err := x.CheckTrace(k.e.ctx, lab.Bridge, k.run)
	if err != nil {
		t.Fatalf("%s: trace: %v", c, err)
	}
	if !rep.Agree {
		t.Errorf("%s: Open vSwitch disagrees with the model:\n%s", c, x.Text())
		return x
	}
	for _, ck := range rep.Checks {
		for _, w := range ck.Warnings {
			t.Errorf("%s: comparison incomplete: %s", c, w)
		}
	}
	if x.Verdict != c.verdict {
		t.Errorf("%s: verdict %s (%s), want %s", c, x.Verdict, x.Summary, c.verdict)
	}
	if c.verdict == flows.VerdictDropped && (x.DroppedBy == nil || x.DroppedBy.Category != c.dropCat.String()) {
		t.Errorf("%s: %s, want a drop by %s", c, x.Summary, c.dropCat)
	}
	return x
}

// TestExplainAgreesWithOVSGRE repeats the core cases with GRE tunnels
// (tnl_push with a GRE key, IP protocol 47 on the underlay).
func TestExplainAgreesWithOVSGRE(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, func(s string) string {
		return strings.Replace(s, "encapsulation: vxlan", "encapsulation: gre", 1)
	}))
	check := explainChecker(t, e)
	// resolve the tunnel neighbours of every host pair
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second) // kvm1 <-> kvm2
	e.pingOK("blue-db-1", "10.10.2.12", 10*time.Second)  // kvm3 <-> kvm1
	e.pingOK("red-app-1", "10.20.2.12", 10*time.Second)  // kvm2 <-> kvm3
	for _, c := range []explainCase{
		{q: flows.ExplainQuery{From: "blue-web-1", To: "blue-web-2"}, verdict: flows.VerdictDelivered},
		{q: flows.ExplainQuery{From: "red-app-2", To: "red-app-1", Proto: "udp", DPort: 53}, verdict: flows.VerdictDelivered},
		{q: flows.ExplainQuery{From: "blue-db-1", To: "blue-db-2", Proto: "tcp", DPort: 16509}, verdict: flows.VerdictDelivered},
		{q: flows.ExplainQuery{From: "red-web-1", To: "blue-web-2"}, verdict: flows.VerdictDropped, dropCat: flows.CatDefaultDrop},
		{q: flows.ExplainQuery{From: "red-app-1", To: "192.0.2.13", Proto: "tcp", DPort: 22}, verdict: flows.VerdictDropped, dropCat: flows.CatMgmtGuard},
		{q: flows.ExplainQuery{From: "underlay:" + lab.RogueAddr, To: "red-app-1", SpoofMAC: lab.RogueMAC}, verdict: flows.VerdictDropped, dropCat: flows.CatTunnelDrop},
		{q: flows.ExplainQuery{From: "underlay:192.0.2.13", To: "red-app-1"}, verdict: flows.VerdictDelivered},
		{q: flows.ExplainQuery{From: "blue-web-1", To: "blue-web-2", Host: "kvm2"}, verdict: flows.VerdictDelivered},
	} {
		x := check.do(t, c)
		if c.q.From == "blue-web-1" && c.q.Host == "" && (x.Trace == nil || !strings.Contains(x.Trace.Checks[0].DatapathActions, "gre(")) {
			t.Errorf("%s: not a GRE push: %+v", c, x.Trace)
		}
	}
}
