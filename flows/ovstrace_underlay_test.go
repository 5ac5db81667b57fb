package flows

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestParseTnlPorts(t *testing.T) {
	ls, err := ParseTnlPorts(ovsFixture(t, "tnl-ports-kvm2.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Port != "vxlan_sys_4789" || ls[0].MAC.String() != "3a:5c:0e:9d:41:07" || ls[0].IP.String() != "192.0.2.12" || ls[0].Proto != ProtoUDP || ls[0].UDPDst != 4789 {
		t.Fatalf("vxlan: %+v", ls)
	}
	ls, err = ParseTnlPorts(ovsFixture(t, "tnl-ports-gre.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Port != "gre_sys" || ls[0].Proto != ProtoGRE || ls[0].UDPDst != 0 {
		t.Fatalf("gre: %+v", ls)
	}
	if _, ok := tnlListenerFor(ls, mustAddr("192.0.2.12"), EncapVXLAN); ok {
		t.Fatal("a GRE listener taken for VXLAN")
	}
	if l, ok := tnlListenerFor(ls, mustAddr("192.0.2.12"), EncapGRE); !ok || l.MAC.String() != "fa:44:01:90:32:4c" {
		t.Fatalf("gre listener %+v %v", l, ok)
	}
	if ls, err := ParseTnlPorts(ovsFixture(t, "tnl-ports-empty.txt")); err != nil || len(ls) != 0 {
		t.Fatalf("empty: %v %v", ls, err)
	}
	if _, err := ParseTnlPorts("\"tnl/ports/show\" is not a valid command\novs-appctl: ovs-vswitchd: server returned an error\n"); err == nil || !strings.Contains(err.Error(), "not a valid command") {
		t.Fatalf("error %v", err)
	}
}

// noTunnelMACCloud is the demo cloud without the optional tunnel_mac.
func noTunnelMACCloud(t *testing.T) *Cloud {
	t.Helper()
	b, err := os.ReadFile(demoBlueprint)
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`(?m)^\s*tunnel_mac:.*\n`).ReplaceAll(b, nil)
	bp, err := Parse("no-tunnel-mac.yaml", text)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range bp.Hosts {
		if h.HasMAC {
			t.Fatalf("host %s has a tunnel_mac", h.Name)
		}
	}
	c, err := NewCloud(bp)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// decapOVS behaves like Open vSwitch's native tunnelling on kvm2's uplink:
// the underlay trace ends in tnl_pop only when dl_dst is the MAC of a
// listener (from the tnl/ports/show fixture), else the packet goes to
// LOCAL undecapsulated.
type decapOVS struct {
	fakeOVS
	tnlPorts string // fixture of kvm2's tnl/ports/show -v ("" = the command fails)
	decapMAC string // kvm2's real MAC
	traced   []string
}

func (f *decapOVS) run(t *testing.T) TraceRunner {
	inner := f.fakeOVS.run(t)
	return func(ctx context.Context, host string, args ...string) (string, error) {
		if args[0] == "tnl/ports/show" {
			f.calls = append(f.calls, host+" "+strings.Join(args, " "))
			if len(args) != 2 || args[1] != "-v" || host != "kvm2" {
				return "", fmt.Errorf("unexpected ovs-appctl %s %v", host, args)
			}
			if f.tnlPorts == "" {
				return "", fmt.Errorf("ovs-appctl: cannot connect")
			}
			return ovsFixture(t, f.tnlPorts), nil
		}
		if args[0] == "ofproto/trace" && host == "kvm2" && strings.Contains(args[2], "in_port=eth0,") {
			f.traced = append(f.traced, args[2])
			if strings.Contains(args[2], "dl_dst="+f.decapMAC+",") {
				return ovsFixture(t, "underlay-allowed.txt"), nil
			}
			return ovsFixture(t, "underlay-not-decapsulated.txt"), nil
		}
		return inner(ctx, host, args...)
	}
}

func newDecapOVS(tnl, mac string) *decapOVS {
	return &decapOVS{fakeOVS: fakeOVS{traces: map[string]string{"kvm1 vnet0": "sent-remote-vm", "kvm2 vpcflow-vxlan": "decap-delivered"}},
		tnlPorts: tnl, decapMAC: mac}
}

// TestCheckTraceUnderlayNoTunnelMAC: without tunnel_mac the underlay hop
// is traced with the MAC Open vSwitch decapsulates on, so a delivered
// packet agrees (issue 13, defect 11: it used to be traced with the
// placeholder MAC and reported "model delivers [decapsulate], Open vSwitch
// delivers [port LOCAL]").
func TestCheckTraceUnderlayNoTunnelMAC(t *testing.T) {
	c := noTunnelMACCloud(t)
	for _, q := range []ExplainQuery{
		{From: "blue-web-1", To: "blue-web-2"},
		{From: "blue-web-1", To: "blue-web-2", Host: "kvm2"},
		{From: "underlay:192.0.2.11", To: "blue-web-2"},
	} {
		e := mustExplain(t, c, q)
		f := newDecapOVS("tnl-ports-kvm2.txt", "3a:5c:0e:9d:41:07")
		rep, err := e.CheckTrace(context.Background(), "cloudbr0", f.run(t))
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Agree || e.ExitCode() != 0 {
			t.Fatalf("%+v: disagrees:\n%s", q, rep.Text())
		}
		if len(f.traced) != 1 || !strings.Contains(f.traced[0], "dl_dst=3a:5c:0e:9d:41:07,") {
			t.Fatalf("%+v: underlay traced as %v", q, f.traced)
		}
		var ck *TraceCheck
		for i := range rep.Checks {
			if rep.Checks[i].Host == "kvm2" && len(rep.Checks[i].Adjusted) > 0 {
				ck = &rep.Checks[i]
			}
		}
		if ck == nil || !strings.Contains(ck.Command, "dl_dst=3a:5c:0e:9d:41:07") ||
			!strings.Contains(ck.Adjusted[0], "instead of the model's placeholder 0e:00:c0:00:02:0c: host kvm2 has no tunnel_mac") ||
			!strings.Contains(rep.Text(), "traced with dl_dst=3a:5c:0e:9d:41:07") {
			t.Fatalf("%+v: adjustment not reported:\n%s", q, rep.Text())
		}
		// the model's own trace_flow is unchanged (it is the model's packet)
		for _, h := range e.Hops {
			if h.Stage == "underlay" && !strings.Contains(h.TraceFlow, "dl_dst=0e:00:c0:00:02:0c") {
				t.Fatalf("hop trace_flow changed: %s", h.TraceFlow)
			}
		}
		n := 0
		for _, call := range f.calls {
			if strings.HasPrefix(call, "kvm2 tnl/ports/show") {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%+v: tnl/ports/show called %d times: %v", q, n, f.calls)
		}
	}
}

// A real disagreement on the underlay hop is still reported.
func TestCheckTraceUnderlayNoTunnelMACDisagrees(t *testing.T) {
	c := noTunnelMACCloud(t)
	q := ExplainQuery{From: "blue-web-1", To: "blue-web-2"}

	// No listener for the host's tunnel IP: Open vSwitch decapsulates
	// nothing to it (tunnel port missing, IP not on cloudbr0).
	e := mustExplain(t, c, q)
	rep, err := e.CheckTrace(context.Background(), "cloudbr0", newDecapOVS("tnl-ports-empty.txt", "3a:5c:0e:9d:41:07").run(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Agree || e.ExitCode() != 1 {
		t.Fatalf("agrees without a listener:\n%s", rep.Text())
	}
	d := strings.Join(rep.Checks[1].Diff, "\n")
	for _, want := range []string{"outcome: model delivers [decapsulate], Open vSwitch delivers [port LOCAL]", "hint: Open vSwitch on kvm2 has no VXLAN tunnel listener for 192.0.2.12"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}

	// Open vSwitch really does not decapsulate (a flow rewrote the
	// destination MAC, ...): the real MAC is traced and still disagrees.
	e = mustExplain(t, c, q)
	rep, err = e.CheckTrace(context.Background(), "cloudbr0", newDecapOVS("tnl-ports-kvm2.txt", "02:00:00:00:00:99").run(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Agree || !strings.Contains(strings.Join(rep.Checks[1].Diff, "\n"), "Open vSwitch delivers [port LOCAL]") {
		t.Fatalf("not reported:\n%s", rep.Text())
	}

	// tnl/ports/show cannot run: an error, never a verdict.
	e = mustExplain(t, c, q)
	if _, err := e.CheckTrace(context.Background(), "cloudbr0", newDecapOVS("", "").run(t)); err == nil || !strings.Contains(err.Error(), "host kvm2: ovs-appctl tnl/ports/show -v: ovs-appctl: cannot connect") {
		t.Fatalf("error %v", err)
	}
}

// With tunnel_mac the model's MAC is traced as is; when cloudbr0 listens on
// another MAC (other-config:hwaddr not set to it) the disagreement says so.
func TestCheckTraceTunnelMACMismatch(t *testing.T) {
	c := explainDemoCloud(t)
	e := mustExplain(t, c, ExplainQuery{From: "blue-web-1", To: "blue-web-2"})
	f := newDecapOVS("tnl-ports-kvm2.txt", "3a:5c:0e:9d:41:07")
	rep, err := e.CheckTrace(context.Background(), "cloudbr0", f.run(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Agree || len(f.traced) != 1 || !strings.Contains(f.traced[0], "dl_dst=02:00:c0:00:02:0c,") {
		t.Fatalf("traced %v:\n%s", f.traced, rep.Text())
	}
	if d := strings.Join(rep.Checks[1].Diff, "\n"); !strings.Contains(d, "hint: Open vSwitch on kvm2 decapsulates tunnel packets to 192.0.2.12 only on MAC 3a:5c:0e:9d:41:07, not on the blueprint's tunnel_mac 02:00:c0:00:02:0c") {
		t.Fatalf("diff:\n%s", d)
	}
	// and when it matches, no tnl/ports/show call at all
	e = mustExplain(t, c, ExplainQuery{From: "blue-web-1", To: "blue-web-2"})
	f = newDecapOVS("tnl-ports-kvm2.txt", "02:00:c0:00:02:0c")
	if rep := runCheckTraceWith(t, e, f.run(t)); !rep.Agree {
		t.Fatalf("disagrees:\n%s", rep.Text())
	}
	for _, call := range f.calls {
		if strings.Contains(call, "tnl/ports/show") {
			t.Fatalf("tnl/ports/show called with tunnel_mac set: %v", f.calls)
		}
	}
}

func runCheckTraceWith(t *testing.T, e *Explanation, run TraceRunner) *TraceReport {
	t.Helper()
	rep, err := e.CheckTrace(context.Background(), "cloudbr0", run)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}
