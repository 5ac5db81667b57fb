package flows

import (
	"strings"
	"testing"
)

const cloudFitBlueprint = "../examples/e2e/testdata/vlan-routing.yaml"

func loadCloudFit(t *testing.T) *Blueprint {
	t.Helper()
	bp, err := Load(cloudFitBlueprint)
	if err != nil {
		t.Fatalf("load %s: %v", cloudFitBlueprint, err)
	}
	return bp
}

// TestCloudFitValidation: every VLAN / distributed-routing rule has an
// error naming the file, line and field, and the fix.
func TestCloudFitValidation(t *testing.T) {
	base := loadCloudFit(t)
	for _, c := range []struct {
		name string
		edit func(bp *Blueprint)
		want string
	}{
		{"valid", func(*Blueprint) {}, ""},
		{"vlan on overlay", func(bp *Blueprint) { bp.VPCs[0].Tiers[0].VLAN = 7 }, `vpcs[0].tiers[0].vlan: vlan 7 is set on an overlay tier`},
		{"vni on vlan", func(bp *Blueprint) { bp.VPCs[0].Tiers[1].VNI = 9 }, `vpcs[0].tiers[1].vni: vni 9 is set on a vlan tier`},
		{"vlan missing", func(bp *Blueprint) { bp.VPCs[0].Tiers[1].VLAN = 0 }, `vpcs[0].tiers[1].vlan: vlan 0 is missing or out of range`},
		{"vlan too big", func(bp *Blueprint) { bp.VPCs[0].Tiers[1].VLAN = 4095 }, `vlan 4095 is missing or out of range`},
		{"vlan dup", func(bp *Blueprint) { bp.VPCs[1].Tiers[1].VLAN = 100 }, `vpcs[1].tiers[1].vlan: vlan 100 is already used by vpcs[0].tiers[1]`},
		{"type unknown", func(bp *Blueprint) { bp.VPCs[0].Tiers[1].Type = "vxlan" }, `vpcs[0].tiers[1].type: type "vxlan" is not known`},
		{"routing unknown", func(bp *Blueprint) { bp.VPCs[2].Routing = "dvr" }, `vpcs[2].routing: routing "dvr" is not known`},
		{"no gateway", func(bp *Blueprint) { bp.VPCs[2].Tiers[1].Gateway = "" }, `vpcs[2].tiers[1].gateway: tier green/b has no gateway`},
		{"gateway outside", func(bp *Blueprint) { bp.VPCs[2].Tiers[1].Gateway = "10.40.1.1" }, `gateway 10.40.1.1 is not a host address of tier cidr 10.40.2.0/24`},
		{"gateway is a VM", func(bp *Blueprint) { bp.VPCs[2].Tiers[1].Gateway = "10.40.2.11" }, `gateway 10.40.2.11 is the address of vpcs[2].tiers[1].vms[0] (green-b-1)`},
		{"gateway not an IP", func(bp *Blueprint) { bp.VPCs[2].Tiers[1].Gateway = "gw" }, `gateway "gw" is not an IPv4 address`},
		{"gateway not the router", func(bp *Blueprint) {
			tr := &bp.VPCs[2].Tiers[1]
			tr.VMs = append(tr.VMs, VM{Name: "green-vr-b", Host: "kvm2", Port: "vnet9", MAC: "52:54:00:e1:ff:02", IP: "10.40.2.254", Role: RoleRouter})
		}, `gateway 10.40.2.1 differs from the tier's router NIC address 10.40.2.254`},
		{"reserved MAC", func(bp *Blueprint) { bp.VPCs[0].Tiers[0].VMs[0].MAC = "0a:00:00:00:13:89" }, `reserved for vpcflow's virtual gateways`},
		{"reserved routing MAC", func(bp *Blueprint) { bp.VPCs[0].Tiers[0].VMs[0].MAC = "0a:00:02:00:02:0b" }, `reserved for vpcflow's virtual gateways and routed frames`},
	} {
		m := editable(t, base)
		c.edit(m)
		err := parseEdited(m, "fit.yaml")
		switch {
		case c.want == "" && err != nil:
			t.Fatalf("%s: valid blueprint rejected: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "fit.yaml:")):
			t.Errorf("%s: want an error naming fit.yaml:LINE and %q, got %v", c.name, c.want, err)
		}
	}
	// Type, VLAN, gateway and routing are part of the hash.
	for _, edit := range []func(bp *Blueprint){
		func(bp *Blueprint) { bp.VPCs[0].Tiers[1].VLAN = 300 },
		func(bp *Blueprint) { bp.VPCs[2].Routing = "" },
		func(bp *Blueprint) { bp.VPCs[2].Tiers[0].Gateway = "10.40.1.254" },
	} {
		m := editable(t, base)
		edit(m)
		if reparse(t, m, 0).Hash() == base.Hash() {
			t.Error("an edit of type/vlan/gateway/routing left the blueprint hash unchanged")
		}
	}
}

// TestVLANTier: a VLAN tier's frames leave tagged by the uplink (never a
// tunnel), arrive untagged at the tier's VMs on other hosts, and never
// reach another tier, VLAN or VPC, even with the same CIDR and addresses.
func TestVLANTier(t *testing.T) {
	bp := loadCloudFit(t)
	c := newCloud(t, bp)
	k := &checker{t: t, c: c, bp: bp}
	bp1, bp2 := demoVM(t, bp, "blue-pub-1"), demoVM(t, bp, "blue-pub-2")
	rp1, rp2 := demoVM(t, bp, "red-pub-1"), demoVM(t, bp, "red-pub-2")
	bw2 := demoVM(t, bp, "blue-web-2")

	j := k.expect("blue-pub-1 -> blue-pub-2", "kvm1", ICMPPacket(bp1.port, bp1.mac, bp2.mac, bp1.ip, bp2.ip), "kvm1:eth0", bp2.at())
	for _, h := range j.Hops {
		if h.Stage == "encapsulated" {
			t.Errorf("a VLAN tier's packet was tunnelled:\n%s", j)
		}
	}
	for _, a := range j.Arrivals {
		if a.Port == "eth0" && a.Packet.VLAN != VIDPresent|100 {
			t.Errorf("frame on the underlay has VLAN_VID 0x%x, want 0x%x (tag 100)", a.Packet.VLAN, VIDPresent|100)
		}
		if a.VM != "" && a.Packet.VLAN != 0 {
			t.Errorf("frame delivered to %s still tagged (0x%x)", a.VM, a.Packet.VLAN)
		}
	}
	// Same CIDR and addresses, other VPC and VLAN: red-pub-2 gets nothing.
	k.expect("red-pub-1 -> red-pub-2", "kvm1", ICMPPacket(rp1.port, rp1.mac, rp2.mac, rp1.ip, rp2.ip), "kvm1:eth0", rp2.at())
	k.expect("red-pub-1 -> blue-pub-2's MAC", "kvm1", ICMPPacket(rp1.port, rp1.mac, bp2.mac, rp1.ip, bp2.ip), "kvm1:eth0")
	// Broadcast: the tier's local ports and the VLAN only.
	k.expect("blue-pub-1 ARP for an unknown address", "kvm1", ARPRequest(bp1.port, bp1.mac, bp1.ip, mustAddr("10.30.0.1")), "kvm1:eth0", bp2.at())
	// Known addresses are still answered in the switch.
	tr := Evaluate(c.Flows["kvm1"], ARPRequest(bp1.port, bp1.mac, bp1.ip, bp2.ip))
	if len(tr.Outputs) != 1 || tr.Outputs[0].Packet.ARPSha != bp2.mac {
		t.Errorf("ARP for blue-pub-2 not answered in the switch:\n%s", tr)
	}
	// Management separation holds on VLAN tiers.
	k.expectDropBy("blue-pub-1 -> management", "kvm1", ICMPPacket(bp1.port, bp1.mac, MAC{2, 0, 0, 0, 0, 1}, bp1.ip, mustAddr("192.0.2.250")), 0, CatMgmtGuard)
	k.expectDropBy("blue-pub-1 -> host ssh", "kvm1", TCPPacket(bp1.port, bp1.mac, MAC{2, 0, 0, 0, 0, 1}, bp1.ip, mustAddr("198.51.100.7"), 4000, 22), 0, CatMgmtGuard)

	// From the physical VLAN (a node on the underlay): tag 100 reaches
	// blue-pub-2 only; tag 101 red-pub-2 only; an unknown tag nothing; an
	// untagged frame never a VM; tag 100 never an overlay VM's MAC.
	ext := MAC{0x02, 0, 0, 0, 0x99, 1}
	from := func(vlan uint16, dst tvm) Packet {
		p := ICMPPacket("eth0", ext, dst.mac, mustAddr("10.30.0.1"), dst.ip)
		p.VLAN = vlan
		return p
	}
	k.expect("VLAN 100 frame -> blue-pub-2", "kvm2", from(VIDPresent|100, bp2), bp2.at())
	k.expect("VLAN 101 frame -> red-pub-2", "kvm2", from(VIDPresent|101, rp2), rp2.at())
	k.expect("VLAN 100 frame to red-pub-2's MAC", "kvm2", from(VIDPresent|100, rp2))
	k.expectDropBy("VLAN 999 frame", "kvm2", from(VIDPresent|999, bp2), 0, CatVLANDrop)
	k.expectDropBy("VLAN 200 (carried by kvm3 only) at kvm2", "kvm2", from(VIDPresent|200, bp2), 0, CatVLANDrop)
	k.expect("untagged frame to blue-pub-2's MAC", "kvm2", from(0, bp2), "kvm2:LOCAL")
	k.expect("VLAN 100 frame to blue-web-2 (overlay)", "kvm2", from(VIDPresent|100, bw2))
	// A broadcast from the VLAN stays on this host (split horizon).
	bc := from(VIDPresent|100, bp2)
	bc.EthDst = BroadcastMAC
	k.expect("VLAN 100 broadcast", "kvm2", bc, bp2.at())
}

// TestDistributedRouting: green's tiers reach each other routed by the
// source host's switch (no router NIC exists): the gateway ARP is answered
// by the switch, the packet leaves with the gateway's MAC as source, the
// VM's MAC as destination and TTL-1, under the destination tier's key (or
// VLAN); other VPCs never reach green, management stays blocked, and the
// same packet in a router-mode VPC is dropped.
func TestDistributedRouting(t *testing.T) {
	bp := loadCloudFit(t)
	c := newCloud(t, bp)
	k := &checker{t: t, c: c, bp: bp}
	a1, a2, b1, c1 := demoVM(t, bp, "green-a-1"), demoVM(t, bp, "green-a-2"), demoVM(t, bp, "green-b-1"), demoVM(t, bp, "green-c-1")
	ta, tb, tc := &bp.VPCs[2].Tiers[0], &bp.VPCs[2].Tiers[1], &bp.VPCs[2].Tiers[2]
	gwA, gwB, gwC := GatewayMAC(ta.Key), GatewayMAC(tb.Key), GatewayMAC(tc.Key)

	tr := Evaluate(c.Flows["kvm1"], ARPRequest(a1.port, a1.mac, a1.ip, mustAddr("10.40.1.1")))
	if len(tr.Outputs) != 1 || tr.Outputs[0].Packet.ARPSha != gwA || tr.Outputs[0].Port != a1.port {
		t.Fatalf("gateway ARP not answered by the switch with %s:\n%s", gwA, tr)
	}

	check := func(what, host string, src tvm, gw MAC, dst tvm, gwDst MAC, viaVLAN bool) {
		p := ICMPPacket(src.port, src.mac, gw, src.ip, dst.ip)
		p.TTL = 64
		want := []string{dst.at()}
		if viaVLAN {
			want = append(want, host+":eth0")
		}
		j := k.expect(what, host, p, want...)
		routed := false
		for _, s := range j.Hops[0].Trace.Steps {
			if s.Table == TRoute {
				routed = true
			}
		}
		if !routed {
			t.Errorf("%s: not routed by %s's route table:\n%s", what, host, j)
		}
		for _, a := range j.Arrivals {
			if a.VM == "" {
				continue
			}
			if a.Packet.EthSrc != gwDst || a.Packet.EthDst != dst.mac || a.Packet.TTL != 63 || a.Packet.VLAN != 0 {
				t.Errorf("%s: arrived as %s (ttl %d, vlan 0x%x), want from %s to %s with ttl 63 untagged", what, a.Packet, a.Packet.TTL, a.Packet.VLAN, gwDst, dst.mac)
			}
		}
	}
	check("green-a-1 -> green-b-1 (kvm1 -> kvm2)", "kvm1", a1, gwA, b1, gwB, false)
	check("green-b-1 -> green-a-1 (reply)", "kvm2", b1, gwB, a1, gwA, false)
	check("green-b-1 -> green-a-2 (kvm2 -> kvm3)", "kvm2", b1, gwB, a2, gwA, false)
	// Onto the VLAN the routed frame carries kvm1's own routing MAC, not the
	// gateway's (physical switches would see that move between hosts).
	check("green-a-1 -> green-c-1 (overlay -> VLAN tier)", "kvm1", a1, gwA, c1, HostRouteMAC(bp.HostByName("kvm1")), true)
	if HostRouteMAC(bp.HostByName("kvm1")) == HostRouteMAC(bp.HostByName("kvm2")) || HostRouteMAC(bp.HostByName("kvm1")) == gwC {
		t.Error("host routing MACs are not distinct")
	}
	check("green-c-1 -> green-a-1 (VLAN -> overlay tier)", "kvm3", c1, gwC, a1, gwA, false)

	// TTL 1 is not forwarded.
	p := ICMPPacket(a1.port, a1.mac, gwA, a1.ip, b1.ip)
	p.TTL = 1
	if tr := Evaluate(c.Flows["kvm1"], p); !tr.Dropped || !tr.TTLExpired {
		t.Errorf("TTL 1 routed: %s", tr.Verdict())
	}
	// No VM has the address: dropped in the route table.
	j := k.expect("green-a-1 -> 10.40.2.99", "kvm1", ICMPPacket(a1.port, a1.mac, gwA, a1.ip, mustAddr("10.40.2.99")))
	k.dropInTable("green-a-1 -> 10.40.2.99", j, 0, TRoute)
	// Management and host service ports stay blocked for green.
	k.expectDropBy("green-a-1 -> management via the gateway", "kvm1", ICMPPacket(a1.port, a1.mac, gwA, a1.ip, mustAddr("192.0.2.250")), 0, CatMgmtGuard)
	k.expectDropBy("green-a-1 -> host ssh via the gateway", "kvm1", TCPPacket(a1.port, a1.mac, gwA, a1.ip, mustAddr("192.0.2.12"), 4000, 22), 0, CatMgmtGuard)
	// Other VPCs: blue-web-1 (kvm1) cannot use green's gateway, and the
	// same CIDR trick does not route into green.
	bw1 := demoVM(t, bp, "blue-web-1")
	k.expect("blue-web-1 -> green's gateway MAC for green-b-1", "kvm1", ICMPPacket(bw1.port, bw1.mac, gwA, bw1.ip, b1.ip))
	k.expect("blue-web-1 -> green-b-1's MAC", "kvm1", ICMPPacket(bw1.port, bw1.mac, b1.mac, bw1.ip, b1.ip))
	// A tunnel packet under green/b's key from a host carrying no green
	// tier would be refused; kvm1 carries green/a, so it is accepted on
	// kvm2 (the routed path) -- and a router-mode VPC does not route.
	m := editable(t, bp)
	m.VPCs[2].Routing = ""
	rbp := reparse(t, m, 0)
	rk := &checker{t: t, c: newCloud(t, rbp), bp: rbp}
	rk.expect("router-mode green-a-1 -> gateway MAC for green-b-1", "kvm1", ICMPPacket(a1.port, a1.mac, gwA, a1.ip, b1.ip))

	// Flow cost on kvm1 (one local green tier; green has 3 tiers, 4 VMs):
	// gateway ARP 1 + route entries 2 + routes 4 + the route table's drop 1.
	n := 0
	for _, f := range c.Flows["kvm1"] {
		switch f.Cookie.Category() {
		case CatGatewayARP, CatRouteEntry, CatRoute:
			n++
		}
	}
	if n != 7 {
		t.Errorf("distributed routing costs kvm1 %d flows, want 7 (1 gateway ARP + 2 route entries + 4 routes)", n)
	}
}

// TestExplainCloudFit: explain follows a routed packet across an overlay
// and a VLAN tier and names the new rules.
func TestExplainCloudFit(t *testing.T) {
	c := newCloud(t, loadCloudFit(t))
	e := mustExplain(t, c, ExplainQuery{From: "green-a-1", To: "green-c-1"})
	wantDeliveredVLAN(t, e, "kvm3", "green-c-1")
	out := e.Text()
	for _, want := range []string{"[route-entry] tier green/a to its gateway for tier c", "[route] routed to VM green-c-1", "dec_ttl", "vlan 200", "[vlan-in] VLAN tier green/c (vlan 200)", "sends to its gateway 10.40.1.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	e = mustExplain(t, c, ExplainQuery{From: "blue-pub-1", To: "10.30.0.12"})
	wantDeliveredVLAN(t, e, "kvm2", "blue-pub-2")
	if out := e.Text(); !strings.Contains(out, "tier blue/pub (vlan 100)") {
		t.Errorf("explain does not name the VLAN tier:\n%s", out)
	}
}

// wantDeliveredVLAN: delivered to vm on host (and, the VLAN being a
// physical segment, to the underlay).
func wantDeliveredVLAN(t *testing.T, e *Explanation, host, vm string) {
	t.Helper()
	if e.Verdict != VerdictDelivered || e.DroppedBy != nil {
		t.Fatalf("%s -> %s: verdict %s, want delivered:\n%s", e.Query.From, e.Query.To, e.Verdict, e.Text())
	}
	for _, d := range e.DeliveredTo {
		if d.VM == vm && d.Host == host {
			return
		}
	}
	t.Fatalf("%s -> %s: delivered to %+v, want VM %s on %s", e.Query.From, e.Query.To, e.DeliveredTo, vm, host)
}

// TestVLANTierOnBond: a VLAN tier's tagged output on a bonded host goes
// through the bond's bundle action, and tagged frames from either member
// reach the tier.
func TestVLANTierOnBond(t *testing.T) {
	m := editable(t, loadCloudFit(t))
	m.Hosts[0].Uplink, m.Hosts[0].UplinkSpec = "", UplinkSpec{Name: "bond0", Members: []string{"eth0", "eth1"}}
	bp := reparse(t, m, 0)
	c := newCloud(t, bp)
	k := &checker{t: t, c: c, bp: bp}
	bp1, bp2 := demoVM(t, bp, "blue-pub-1"), demoVM(t, bp, "blue-pub-2")
	j := k.expect("blue-pub-1 (bonded kvm1) -> blue-pub-2", "kvm1", ICMPPacket(bp1.port, bp1.mac, bp2.mac, bp1.ip, bp2.ip), "kvm1:eth0", bp2.at())
	if s := j.Hops[0].Trace.Steps; len(s) == 0 || !strings.Contains(s[len(s)-1].Flow.String(), "bundle(") {
		t.Errorf("VLAN output on a bond host does not use the bundle action:\n%s", j)
	}
	for _, member := range []string{"eth0", "eth1"} {
		p := ICMPPacket(member, MAC{2, 0, 0, 0, 0x99, 1}, bp1.mac, mustAddr("10.30.0.1"), bp1.ip)
		p.VLAN = VIDPresent | 100
		k.expect("VLAN 100 frame from bond member "+member, "kvm1", p, bp1.at())
	}
}
