package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

// cloudFitBlueprint is testdata/vlan-routing.yaml: blue and red each have an
// overlay tier and a VLAN tier (VLAN 100 / 101) with the SAME CIDRs and
// addresses; green routes between its three tiers in the switch (routing:
// distributed; no router VM exists anywhere), one tier VLAN-backed.
func cloudFitBlueprint(t *testing.T) string {
	b, err := os.ReadFile("testdata/vlan-routing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var ttlRE = regexp.MustCompile(`ttl=(\d+)`)

// TestVLANAndDistributedRouting runs both on one real-OVS lab.
//
// VLAN tiers: blue/pub's frames cross the underlay 802.1Q-tagged with VLAN
// 100 (seen by tcpdump on the underlay switch), never in a tunnel; red/pub
// (VLAN 101, same addresses) never sees them; a node on the physical VLAN
// reaches blue/pub by tagging 100 and nothing with another tag; management
// stays out of reach.
//
// Distributed routing: green's VMs reach each other's tiers (overlay and
// VLAN) through their gateway addresses, which no VM owns: the switch
// answers the gateway ARP, rewrites the MACs and decrements the TTL (the
// reply shows ttl=63: one routed hop, with no router on the path); another
// VPC pointed at green's gateway MAC gets nothing; the audit stays in sync.
func TestVLANAndDistributedRouting(t *testing.T) {
	e := startEnv(t, cloudFitBlueprint(t))
	l, ctx := e.lab, e.ctx

	t.Run("vlan", func(t *testing.T) {
		ul, err := l.Capture(ctx, "underlay", "br0", "vlan 100 and icmp")
		if err != nil {
			t.Fatal(err)
		}
		vx, err := l.Capture(ctx, "underlay", "br0", "udp port 4789 and not vlan")
		if err != nil {
			t.Fatal(err)
		}
		red, err := l.Capture(ctx, "red-pub-2", "eth0", "icmp")
		if err != nil {
			t.Fatal(err)
		}
		e.pingOK("blue-pub-1", "10.30.0.12", 15*time.Second) // kvm1 -> kvm2 over VLAN 100
		eventually(t, 5*time.Second, "tagged ICMP on the underlay", func() (bool, string) {
			return ul.Count() >= 2, ul.Text()
		})
		text, _ := ul.Stop()
		if !strings.Contains(text, "vlan 100") {
			t.Fatalf("underlay frames not tagged 100:\n%s", text)
		}
		vxText, _ := vx.Stop()
		if strings.Contains(vxText, "10.30.0.") {
			t.Fatalf("a VLAN tier's packets were tunnelled:\n%s", vxText)
		}
		if n := red.Count(); n != 0 {
			t.Fatalf("red-pub-2 (VLAN 101, same address) saw blue's ping: %d packets\n%s", n, red.Text())
		}
		red.Stop()
		// red/pub works on its own VLAN with the same addresses.
		e.pingOK("red-pub-1", "10.30.0.12", 15*time.Second)
		// Management and hosts stay out of reach from a VLAN tier.
		e.pingBlocked("blue-pub-1", l.MgmtAddr())
		e.pingBlocked("blue-pub-1", "192.0.2.12")
		e.pingBlocked("blue-pub-1", "10.10.1.12") // blue/web: another tier, no gateway

		// A node on the physical VLAN (the rogue underlay node tagging
		// frames itself): VLAN 100 reaches blue-pub-2; VLAN 101 to
		// blue-pub-2's MAC does not; an unknown VLAN is dropped and counted.
		bp2, rp2 := e.vm("blue-pub-2"), e.vm("red-pub-2")
		in, err := l.Capture(ctx, "blue-pub-2", "eth0", "icmp and src 10.77.77.77")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.SendRogueVLAN(ctx, 100, bp2.MAC, bp2.IP, 3); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "VLAN 100 frame from the physical VLAN reaches blue-pub-2", func() (bool, string) {
			return in.Count() >= 3, in.Text()
		})
		drops0 := e.counter("kvm2", flows.CatVLANDrop)
		if err := l.SendRogueVLAN(ctx, 101, bp2.MAC, bp2.IP, 3); err != nil { // red's VLAN, blue's MAC
			t.Fatal(err)
		}
		if err := l.SendRogueVLAN(ctx, 999, bp2.MAC, bp2.IP, 5); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "VLAN 999 frames dropped and counted on kvm2", func() (bool, string) {
			n := e.counter("kvm2", flows.CatVLANDrop)
			return n >= drops0+5, fmt.Sprintf("vlan-drop %d -> %d", drops0, n)
		})
		time.Sleep(500 * time.Millisecond) // bounded observation window for the negative check
		if n := in.Count(); n != 3 {
			t.Fatalf("blue-pub-2 received %d frames, want only the 3 tagged VLAN 100:\n%s", n, in.Text())
		}
		in.Stop()
		_ = rp2
	})

	t.Run("distributed-routing", func(t *testing.T) {
		for vm, gw := range map[string]string{"green-a-1": "10.40.1.1", "green-a-2": "10.40.1.1", "green-b-1": "10.40.2.1", "green-c-1": "10.40.3.1"} {
			if out, err := l.Exec(ctx, l.VMNS(vm), "ip", "route", "add", "default", "via", gw); err != nil {
				t.Fatalf("%s: default route: %v: %s", vm, err, out)
			}
		}
		for _, c := range []struct{ from, to, what string }{
			{"green-a-1", "10.40.2.11", "a (kvm1) -> b (kvm2), overlay to overlay"},
			{"green-b-1", "10.40.1.12", "b (kvm2) -> a (kvm3)"},
			{"green-a-1", "10.40.3.11", "a (kvm1) -> c (kvm3), overlay to VLAN 200"},
			{"green-c-1", "10.40.1.11", "c (kvm3) -> a (kvm1), VLAN to overlay"},
		} {
			e.pingOK(c.from, c.to, 15*time.Second)
			out, _ := l.Exec(ctx, l.VMNS(c.from), "ping", "-n", "-c", "1", "-W", "2", c.to)
			m := ttlRE.FindStringSubmatch(out)
			// Linux replies with TTL 64; routed once by the reply's source
			// host: 63. No router VM exists: the switch did it.
			if m == nil || m[1] != "63" {
				t.Fatalf("%s: reply %q, want ttl=63 (routed once by the switch)", c.what, strings.TrimSpace(out))
			}
			t.Logf("%s: ok, ttl=%s", c.what, m[1])
		}
		// The gateway's MAC is the switch's virtual one.
		out, _ := l.Exec(ctx, l.VMNS("green-a-1"), "ip", "neigh", "show", "10.40.1.1")
		if gw := flows.GatewayMAC(7001).String(); !strings.Contains(out, gw) {
			t.Fatalf("green-a-1's neighbour entry for its gateway: %q, want %s", out, gw)
		}
		// Guests still never reach management or a host through the gateway.
		e.pingBlocked("green-a-1", l.MgmtAddr())
		e.pingBlocked("green-a-1", "192.0.2.12")
		// Another VPC aiming at green's gateway MAC gets nothing.
		for _, argv := range [][]string{
			{"ip", "neigh", "replace", "10.10.1.1", "lladdr", flows.GatewayMAC(7001).String(), "dev", "eth0", "nud", "permanent"},
			{"ip", "route", "add", "10.40.0.0/16", "via", "10.10.1.1"},
		} {
			if out, err := l.Exec(ctx, l.VMNS("blue-web-1"), argv...); err != nil {
				t.Fatalf("%v: %v: %s", argv, err, out)
			}
		}
		e.pingBlocked("blue-web-1", "10.40.2.11")
		e.pingBlocked("blue-web-1", "10.40.1.12")

		// Flow cost and audit.
		for _, h := range []string{"kvm1", "kvm2", "kvm3"} {
			n, err := l.FlowCount(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d flows installed", h, n)
		}
		rep, code := e.audit()
		if code != 0 || !rep.InSync || !rep.Complete {
			t.Fatalf("audit exit %d, in_sync %v, complete %v: VLAN / routing flows do not read back as compiled", code, rep.InSync, rep.Complete)
		}
	})
}
