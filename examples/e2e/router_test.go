package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestRouterNIC: blue's virtual router (one NIC in blue/web, one in
// blue/db, both on kvm3, one namespace with ip_forward on) routes between
// the two tiers across hosts; red, whose web tier has the same CIDR and the
// same addresses, cannot use it; the router itself cannot reach management.
func TestRouterNIC(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, func(s string) string {
		s = strings.Replace(s, `ip: 10.10.1.12}`, `ip: 10.10.1.12}
          - {name: blue-vr-web, host: kvm3, port: vnet5, mac: "52:54:00:b1:ff:01", ip: 10.10.1.1, role: router}`, 1)
		return strings.Replace(s, `ip: 10.10.2.12}`, `ip: 10.10.2.12}
          - {name: blue-vr-db, host: kvm3, port: vnet6, mac: "52:54:00:b1:ff:02", ip: 10.10.2.1, role: router}`, 1)
	}))
	if e.vm("blue-vr-web").Role != "router" || e.vm("blue-vr-db").Role != "router" {
		t.Fatal("router NICs missing from the test blueprint")
	}
	// The lab gives every NIC its own namespace: move the db NIC into the
	// web NIC's namespace, which becomes the router.
	l, ctx := e.lab, e.ctx
	vr, dbNS := l.VMNS("blue-vr-web"), l.VMNS("blue-vr-db")
	for _, c := range []struct {
		ns   string
		argv []string
	}{
		{dbNS, []string{"ip", "link", "set", "eth0", "down"}},
		{dbNS, []string{"ip", "link", "set", "eth0", "name", "vrdb"}},
		{dbNS, []string{"ip", "link", "set", "vrdb", "netns", vr}},
		{vr, []string{"ip", "addr", "add", "10.10.2.1/24", "dev", "vrdb"}},
		{vr, []string{"ip", "link", "set", "vrdb", "up"}},
		{vr, []string{"sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.arp_announce=2"}},
		{l.VMNS("blue-web-1"), []string{"ip", "route", "add", "default", "via", "10.10.1.1"}},
		{l.VMNS("blue-web-2"), []string{"ip", "route", "add", "default", "via", "10.10.1.1"}},
		{l.VMNS("blue-db-1"), []string{"ip", "route", "add", "default", "via", "10.10.2.1"}},
		{l.VMNS("blue-db-2"), []string{"ip", "route", "add", "default", "via", "10.10.2.1"}},
		// red/web has blue/web's CIDR: point it at blue's router too.
		{l.VMNS("red-web-1"), []string{"ip", "route", "add", "default", "via", "10.10.1.1"}},
	} {
		if out, err := l.Exec(ctx, c.ns, c.argv...); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(c.argv, " "), err, out)
		}
	}

	// Through the router: blue-web-1 (kvm1) <-> blue-db-1 (kvm3), and
	// blue-db-2 (kvm1) <-> blue-web-2 (kvm2): both cross tunnels twice.
	e.pingOK("blue-web-1", "10.10.2.11", 15*time.Second)
	e.pingOK("blue-db-2", "10.10.1.12", 15*time.Second)
	// Red cannot use blue's router, even with the same CIDR and addresses.
	e.pingBlocked("red-web-1", "10.10.2.11")
	e.pingBlocked("red-web-1", "10.10.1.1")
	// The router is a guest for management purposes.
	e.pingBlocked("blue-vr-web", l.MgmtAddr())
	e.pingBlocked("blue-vr-web", "192.0.2.11")
}
