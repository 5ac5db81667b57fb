package flows

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// demoWithRouter is the demo blueprint plus blue's virtual router on kvm3:
// one NIC in blue/web (10.10.1.1) and one in blue/db (10.10.2.1).
func demoWithRouter(t *testing.T, extra ...VM) *Blueprint {
	t.Helper()
	data, _ := yaml.Marshal(loadDemo(t))
	var m Blueprint
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	web, db := &m.VPCs[0].Tiers[0], &m.VPCs[0].Tiers[1]
	web.VMs = append(web.VMs, VM{Name: "blue-vr-web", Host: "kvm3", Port: "vnet5", MAC: "52:54:00:b1:ff:01", IP: "10.10.1.1", Role: RoleRouter})
	db.VMs = append(db.VMs, VM{Name: "blue-vr-db", Host: "kvm3", Port: "vnet6", MAC: "52:54:00:b1:ff:02", IP: "10.10.2.1", Role: RoleRouter})
	web.VMs = append(web.VMs, extra...)
	return reparse(t, &m, 0)
}

func TestRouterNICValidation(t *testing.T) {
	base := demoWithRouter(t)
	for _, c := range []struct {
		edit func(bp *Blueprint)
		want string
	}{
		{func(*Blueprint) {}, ""},
		{func(bp *Blueprint) { bp.VPCs[0].Tiers[0].VMs[2].Role = "gateway" }, `vpcs[0].tiers[0].vms[2].role: role "gateway" is not known`},
		{func(bp *Blueprint) { bp.VPCs[0].Tiers[0].VMs[1].Role = RoleRouter }, "already has a router NIC"},
	} {
		m := editable(t, base)
		c.edit(m)
		err := parseEdited(m, "router.yaml")
		switch {
		case c.want == "" && err != nil:
			t.Fatalf("valid router blueprint rejected: %v", err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "router.yaml:")):
			t.Errorf("want an error naming the file and %q, got %v", c.want, err)
		}
	}
}

// TestRouterRoleChangesHash: a reload that only turns a NIC into a router
// is a change (the controller skips reloads with an unchanged hash); "guest"
// and no role are the same.
func TestRouterRoleChangesHash(t *testing.T) {
	bp := demoWithRouter(t)
	data, _ := yaml.Marshal(bp)
	var m Blueprint
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m.VPCs[0].Tiers[0].VMs[2].Role = ""
	if reparse(t, &m, 0).Hash() == bp.Hash() {
		t.Error("dropping a router role left the blueprint hash unchanged")
	}
	m.VPCs[0].Tiers[0].VMs[2].Role = RoleGuest
	g := reparse(t, &m, 0)
	m.VPCs[0].Tiers[0].VMs[2].Role = ""
	if g.Hash() != reparse(t, &m, 0).Hash() {
		t.Error(`role "guest" and no role hash differently`)
	}
}

// TestRouterNIC: two tiers of one VPC reach each other through the VPC's
// router NIC; the router may source any address of its VPC's tiers, a guest
// may not; the router still never reaches management or another VPC.
func TestRouterNIC(t *testing.T) {
	bp := demoWithRouter(t)
	c, err := NewCloud(bp)
	if err != nil {
		t.Fatal(err)
	}
	k := &checker{t: t, c: c, bp: bp}
	bw1, bd1 := demoVM(t, bp, "blue-web-1"), demoVM(t, bp, "blue-db-1")
	vrw, vrd := demoVM(t, bp, "blue-vr-web"), demoVM(t, bp, "blue-vr-db")
	rw2 := demoVM(t, bp, "red-web-2") // kvm3, same CIDR as blue/web

	// blue-web-1 (kvm1) -> its gateway's MAC, for blue-db-1's address: to the
	// router's web NIC on kvm3, across the tunnel.
	k.expect("blue-web-1 -> gateway (for blue-db-1)", "kvm1", ICMPPacket(bw1.port, bw1.mac, vrw.mac, bw1.ip, bd1.ip), vrw.at())
	// The router forwards it out of its db NIC, keeping blue-web-1's source.
	k.expect("router db NIC -> blue-db-1 (source blue-web-1)", "kvm3", ICMPPacket(vrd.port, vrd.mac, bd1.mac, bw1.ip, bd1.ip), bd1.at())
	// And the reply back through the router's web NIC to blue-web-1.
	k.expect("router web NIC -> blue-web-1 (source blue-db-1)", "kvm3", ICMPPacket(vrw.port, vrw.mac, bw1.mac, bd1.ip, bw1.ip), bw1.at())
	// Gateway ARP is answered in the switch.
	tr := Evaluate(c.Flows["kvm1"], ARPRequest(bw1.port, bw1.mac, bw1.ip, vrw.ip))
	if len(tr.Outputs) != 1 || tr.Outputs[0].Packet.ARPSha != vrw.mac {
		t.Errorf("gateway ARP not answered with the router's MAC:\n%s", tr)
	}

	// A guest cannot do what the router does.
	k.expectDropBy("red-web-2 sourcing blue-web-1's address", "kvm3", ICMPPacket(rw2.port, rw2.mac, bd1.mac, bw1.ip, bd1.ip), 0, CatSpoofDrop)
	k.expectDropBy("blue-db-1 sourcing blue-web-1's address", "kvm3", ICMPPacket(bd1.port, bd1.mac, bw1.mac, bw1.ip, bw1.ip), 0, CatSpoofDrop)
	// The router is held to its MAC and to its VPC's tiers.
	k.expectDropBy("router with another MAC", "kvm3", ICMPPacket(vrd.port, bw1.mac, bd1.mac, bw1.ip, bd1.ip), 0, CatSpoofDrop)
	k.expectDropBy("router sourcing red/app's CIDR", "kvm3", ICMPPacket(vrd.port, vrd.mac, bd1.mac, mustAddr("10.20.2.11"), bd1.ip), 0, CatSpoofDrop)
	// It never reaches management, a host, or another VPC.
	k.expectDropBy("router -> management", "kvm3", ICMPPacket(vrw.port, vrw.mac, MAC{2, 0, 0, 0, 0, 1}, vrw.ip, mustAddr("192.0.2.250")), 0, CatMgmtGuard)
	k.expectDropBy("router -> host ssh", "kvm3", TCPPacket(vrw.port, vrw.mac, MAC{2, 0, 0, 0, 0, 1}, vrw.ip, mustAddr("192.0.2.11"), 40000, 22), 0, CatMgmtGuard)
	k.expect("router -> red-web-2 (same CIDR, other VPC)", "kvm3", ICMPPacket(vrw.port, vrw.mac, rw2.mac, vrw.ip, rw2.ip))

	// DHCP server replies: the router's reach its tier, a guest's are dropped.
	k.expect("router DHCP offer", "kvm3", UDPPacket(vrw.port, vrw.mac, bw1.mac, vrw.ip, bw1.ip, 67, 68), bw1.at())
	k.expectDropBy("guest DHCP offer", "kvm1", UDPPacket(bw1.port, bw1.mac, vrw.mac, bw1.ip, vrw.ip, 67, 68), 0, CatDHCPGuard)

	// Flow cost: a router NIC costs one IPv4 rule per tier of its VPC and a
	// DHCP allow, instead of a guest's single IPv4 rule.
	fs, err := Compile(bp, "kvm3")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fs {
		if f.Cookie.Category() == CatPortSecurity && f.Cookie.Object() == VMObject("blue-vr-db") {
			n++
		}
	}
	if n != 5 { // 2 tiers + ARP + DHCP discover + DHCP server replies
		t.Errorf("router NIC has %d port-security flows, want 5", n)
	}
}
