package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

// checkMatrix pings every ordered VM pair: same tier reaches (across hosts
// through the tunnel), everything else is blocked — including VPCs with
// identical CIDRs and VM addresses.
func checkMatrix(t *testing.T, e *env) {
	res := e.lab.Matrix(e.ctx)
	t.Logf("reachability:\n%s", lab.FormatMatrix(res))
	if v := lab.MatrixViolations(res); len(v) > 0 {
		t.Fatalf("policy violations:\n  %s", strings.Join(v, "\n  "))
	}
	reached, blocked := 0, 0
	for _, r := range res {
		if r.How == "same-ip" {
			continue
		}
		if r.Reached {
			reached++
		} else {
			blocked++
		}
	}
	if reached == 0 || blocked == 0 {
		t.Fatalf("degenerate matrix: %d reached, %d blocked", reached, blocked)
	}
}

func TestVXLANIsolation(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, nil))
	for _, b := range e.status().Bridges {
		t.Logf("host %s: %d flows installed", b.Host, b.FlowsInstalled)
	}
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second) // warm the tunnel neighbour cache

	t.Run("matrix", func(t *testing.T) { checkMatrix(t, e) })

	t.Run("tcp-same-tier-across-hosts", func(t *testing.T) {
		// blue-web-1 (kvm1) -> blue-web-2 (kvm2) over VXLAN; port 22 too:
		// VM-to-VM traffic on host service ports is not affected.
		for _, port := range []int{8080, 22} {
			ln, err := e.lab.Listen("blue-web-2", "tcp", port)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.lab.TCPConnect(e.ctx, "blue-web-1", "10.10.1.12", port, 3*time.Second); err != nil {
				t.Errorf("tcp/%d blue-web-1 -> blue-web-2: %v", port, err)
			}
			ln.Stop()
		}
	})

	t.Run("overlapping-ips-resolve-inside-the-vpc", func(t *testing.T) {
		// red-web-2 and blue-web-2 are both 10.10.1.12. A listener only on
		// blue-web-2: red-web-1 connecting to 10.10.1.12 must not get it.
		ln, err := e.lab.Listen("blue-web-2", "tcp", 9000)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Stop()
		if err := e.lab.TCPConnect(e.ctx, "red-web-1", "10.10.1.12", 9000, time.Second); err == nil {
			t.Fatal("red-web-1 reached blue-web-2's listener on the overlapping address")
		}
		lr, err := e.lab.Listen("red-web-2", "tcp", 9000)
		if err != nil {
			t.Fatal(err)
		}
		defer lr.Stop()
		if err := e.lab.TCPConnect(e.ctx, "red-web-1", "10.10.1.12", 9000, 3*time.Second); err != nil {
			t.Fatalf("red-web-1 -> red-web-2 (its own tier) on 10.10.1.12: %v", err)
		}
		if strings.Contains(ln.Log(), "accepted") {
			t.Fatalf("blue-web-2's listener saw a connection: %s", ln.Log())
		}
	})

	t.Run("management-separation", func(t *testing.T) {
		vm := "blue-web-1"
		if err := e.lab.GuestRouteToUnderlay(e.ctx, vm); err != nil {
			t.Fatal(err)
		}
		before := e.counter("kvm1", flows.CatMgmtGuard)
		for _, h := range e.bp.Hosts {
			for _, port := range []int{22, 8250, 16509, 6640} {
				ln, err := e.lab.Listen(h.Name, "tcp", port)
				if err != nil {
					t.Fatal(err)
				}
				// The management network still reaches the host ...
				if err := e.lab.TCPConnect(e.ctx, "mgmt", h.TunnelIP, port, 3*time.Second); err != nil {
					t.Errorf("management -> %s:%d: %v", h.Name, port, err)
				}
				// ... a guest never does.
				if err := e.lab.TCPConnect(e.ctx, vm, h.TunnelIP, port, time.Second); err == nil {
					t.Errorf("guest %s reached host %s (%s) port %d", vm, h.Name, h.TunnelIP, port)
				}
				ln.Stop()
			}
		}
		// Nor the controller (in-band control must be closed) or the management node.
		if e.lab.TCPOpen(e.ctx, vm, e.lab.MgmtAddr(), 6653, time.Second) {
			t.Errorf("guest %s reached the controller %s:6653", vm, e.lab.MgmtAddr())
		}
		e.pingBlocked(vm, e.lab.MgmtAddr())
		e.pingBlocked(vm, "192.0.2.12")
		if after := e.counter("kvm1", flows.CatMgmtGuard); after <= before {
			t.Errorf("mgmt-guard drop counters did not rise (%d -> %d)", before, after)
		}
		for _, h := range e.bp.Hosts {
			modes, err := e.lab.OVS(e.ctx, h.Name, "ovs-vsctl", "--columns=connection_mode", "list", "controller")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(modes, "out-of-band") {
				t.Errorf("%s: in-band control still open: %s", h.Name, modes)
			}
		}
	})

	t.Run("spoofing", func(t *testing.T) {
		vm, peer := e.vm("blue-web-1"), e.vm("blue-web-2")
		ns := e.lab.VMNS(vm.Name)
		// Spoofed source IP, with the peer's MAC known so ARP is not needed.
		if _, err := e.lab.Exec(e.ctx, ns, "ip", "neigh", "replace", peer.IP, "lladdr", peer.MAC, "dev", lab.VMIface, "nud", "permanent"); err != nil {
			t.Fatal(err)
		}
		if err := e.lab.SetVMAddr(e.ctx, vm.Name, "", "10.10.1.99"); err != nil {
			t.Fatal(err)
		}
		capt, err := e.lab.Capture(e.ctx, peer.Name, lab.VMIface, "icmp and src host 10.10.1.99")
		if err != nil {
			t.Fatal(err)
		}
		before := e.counter("kvm1", flows.CatSpoofDrop)
		out, _ := e.lab.Exec(e.ctx, ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "10.10.1.99", peer.IP)
		time.Sleep(300 * time.Millisecond) // bounded observation window (negative check)
		txt, _ := capt.Stop()
		if strings.Contains(out, "bytes from") || strings.Contains(txt, "10.10.1.99") {
			t.Fatalf("spoofed source IP got through:\n%s\n%s", out, txt)
		}
		if after := e.counter("kvm1", flows.CatSpoofDrop); after < before+3 {
			t.Errorf("spoof-drop counter rose %d -> %d, want +3", before, after)
		}
		if _, err := e.lab.Exec(e.ctx, ns, "ip", "addr", "del", "10.10.1.99/32", "dev", lab.VMIface); err != nil {
			t.Fatal(err)
		}
		// Spoofed MAC (the other VPC's VM MAC).
		if err := e.lab.SetVMAddr(e.ctx, vm.Name, "52:54:00:d1:01:0b", ""); err != nil {
			t.Fatal(err)
		}
		e.pingBlocked(vm.Name, peer.IP)
		if err := e.lab.SetVMAddr(e.ctx, vm.Name, vm.MAC, ""); err != nil {
			t.Fatal(err)
		}
		e.pingOK(vm.Name, peer.IP, 10*time.Second)
	})

	t.Run("rogue-underlay", func(t *testing.T) {
		vm := e.vm("blue-web-1")
		for _, tc := range []struct {
			name string
			pkt  lab.RoguePacket
		}{
			{"rogue source", lab.RoguePacket{Encap: "vxlan", DstHost: "kvm1", Key: 5001, InnerDstMAC: vm.MAC, InnerDstIP: vm.IP, Count: 5}},
			{"rogue spoofing kvm2's tunnel IP", lab.RoguePacket{Encap: "vxlan", DstHost: "kvm1", Key: 5001, InnerDstMAC: vm.MAC, InnerDstIP: vm.IP, Count: 5, OuterSrcIP: "192.0.2.12"}},
			{"rogue GRE", lab.RoguePacket{Encap: "gre", DstHost: "kvm1", Key: 5001, InnerDstMAC: vm.MAC, InnerDstIP: vm.IP, Count: 5}},
		} {
			capt, err := e.lab.Capture(e.ctx, vm.Name, lab.VMIface, "icmp and src host 10.66.66.66")
			if err != nil {
				t.Fatal(err)
			}
			before := e.counter("kvm1", flows.CatTunnelDrop)
			if err := e.lab.SendRogue(e.ctx, tc.pkt); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, tc.name+": allowlist drop counter rises", func() (bool, string) {
				n := e.counter("kvm1", flows.CatTunnelDrop)
				return n >= before+5, ""
			})
			time.Sleep(300 * time.Millisecond) // bounded observation window (negative check)
			txt, _ := capt.Stop()
			if strings.Contains(txt, "10.66.66.66") {
				t.Errorf("%s: crafted packet reached the VM:\n%s", tc.name, txt)
			}
		}
	})

	t.Run("foreign-flows-removed", func(t *testing.T) {
		// A flow someone added behind the controller's back that blackholes
		// tier blue/web on kvm2: drift repair must remove it.
		if _, err := e.lab.OVS(e.ctx, "kvm2", "ovs-ofctl", "add-flow", lab.Bridge, "table=70,priority=500,reg0=0x1389,actions=drop"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "foreign flow removed by drift repair", func() (bool, string) {
			out, _ := e.lab.OVS(e.ctx, "kvm2", "ovs-ofctl", "dump-flows", lab.Bridge, "table=70")
			return !strings.Contains(out, "priority=500"), out
		})
		e.pingOK("blue-web-2", "10.10.1.11", 10*time.Second)
	})
}

func TestGREIsolation(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, func(s string) string {
		return strings.Replace(s, "encapsulation: vxlan", "encapsulation: gre", 1)
	}))
	for _, h := range e.bp.Hosts {
		out, err := e.lab.OVS(e.ctx, h.Name, "ovs-vsctl", "list-ports", lab.Bridge)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, flows.TunnelPortGRE) || strings.Contains(out, flows.TunnelPortVXLAN) {
			t.Fatalf("%s ports: %s", h.Name, out)
		}
	}
	e.pingOK("red-app-1", "10.20.2.12", 10*time.Second)
	checkMatrix(t, e)
	vm := e.vm("red-app-1")
	capt, err := e.lab.Capture(e.ctx, vm.Name, lab.VMIface, "icmp and src host 10.66.66.66")
	if err != nil {
		t.Fatal(err)
	}
	before := e.counter("kvm2", flows.CatTunnelDrop)
	if err := e.lab.SendRogueGRE(e.ctx, "kvm2", 6002, vm.MAC, vm.IP, 5); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "GRE allowlist drop counter rises", func() (bool, string) {
		return e.counter("kvm2", flows.CatTunnelDrop) >= before+5, ""
	})
	time.Sleep(300 * time.Millisecond) // bounded observation window (negative check)
	if txt, _ := capt.Stop(); strings.Contains(txt, "10.66.66.66") {
		t.Fatalf("crafted GRE reached the VM:\n%s", txt)
	}
}
