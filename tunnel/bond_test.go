package tunnel

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

func bondHost(name string, members []string, lacp, mode string) *flows.Host {
	h := testHost(name)
	h.UplinkSpec = flows.UplinkSpec{Name: name, Members: members, LACP: lacp, Mode: mode}
	return h
}

// TestApplyBondConvertsUplink: a hand-made bridge with a single-NIC uplink
// port becomes a bond in one transaction: the NIC's interface moves into the
// bond (same ofport), the new member is created, bond_mode and lacp are
// set; a second apply changes nothing; LACP and a member change are
// applied in place.
func TestApplyBondConvertsUplink(t *testing.T) {
	t.Parallel()
	l := startOVS(t, true)
	br, up, up2, up3, bond := randName("vft"), randName("vfu"), randName("vfu"), randName("vfu"), randName("vfb")
	l.addBridge(br, up)
	ctx := ctxT(t)
	var ofport string
	waitFor(t, "uplink ofport", 10*time.Second, func() (bool, string) {
		ofport = l.vsctl("get", "interface", up, "ofport")
		return ofport != "[]" && ofport != "-1", ofport
	})
	h := bondHost(bond, []string{up, up2}, flows.LACPOff, flows.BondActiveBackup)
	res, err := Apply(ctx, applyOpts(l, br, h))
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Logf("changes:\n%s", strings.Join(res.Changes, "\n"))
	for _, want := range []string{"bond " + bond + " added with members " + up + "," + up2, "port " + up + " converted into a member of bond " + bond} {
		if !slices.ContainsFunc(res.Changes, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("changes lack %q", want)
		}
	}
	if got := l.portNames(br); !slices.Equal(got, sortedOf(bond, "vpcflow-vxlan")) {
		t.Errorf("ports = %q, want the bond and the tunnel port", got)
	}
	if got := l.vsctl("get", "port", bond, "bond_mode"); got != "active-backup" {
		t.Errorf("bond_mode = %s", got)
	}
	if got := l.vsctl("get", "port", bond, "lacp"); got != "off" {
		t.Errorf("lacp = %s", got)
	}
	l.vsctl("init") // a write: returns once ovs-vswitchd has reconfigured
	if got := l.vsctl("get", "interface", up, "ofport"); got != ofport {
		t.Errorf("the adopted member's ofport changed: %s -> %s", ofport, got)
	}
	if got := l.vsctl("get", "interface", up, "type"); got != "internal" {
		t.Errorf("the adopted member's interface was recreated: type %s", got)
	}
	if res, err := Apply(ctx, applyOpts(l, br, h)); err != nil || res.Changed() {
		t.Fatalf("second apply: %v, changes %q", err, res.Changes)
	}

	h = bondHost(bond, []string{up, up2, up3}, flows.LACPActive, flows.BondBalanceTCP)
	res, err = Apply(ctx, applyOpts(l, br, h))
	if err != nil {
		t.Fatalf("apply with LACP: %v", err)
	}
	t.Logf("changes:\n%s", strings.Join(res.Changes, "\n"))
	if len(res.Changes) != 2 || !strings.Contains(res.Changes[0], "members -> "+up+","+up2+","+up3) ||
		!strings.Contains(res.Changes[0], "bond_mode active-backup -> balance-tcp") || !strings.Contains(res.Changes[0], "lacp off -> active") ||
		!strings.Contains(res.Changes[0], "other_config:lacp-time unset -> fast") || !strings.Contains(res.Changes[1], "interfaces "+up3+" created") {
		t.Errorf("changes %q", res.Changes)
	}
	for col, want := range map[string]string{"bond_mode": "balance-tcp", "lacp": "active", "other_config:lacp-time": `fast`} {
		if got := unquote(l.vsctl("get", "port", bond, col)); got != want {
			t.Errorf("%s = %s, want %s", col, got, want)
		}
	}
	if got := len(splitSet(l.vsctl("get", "port", bond, "interfaces"))); got != 3 {
		t.Errorf("bond has %d interfaces, want 3", got)
	}
	if res, err := Apply(ctx, applyOpts(l, br, h)); err != nil || res.Changed() {
		t.Fatalf("apply again: %v, changes %q", err, res.Changes)
	}
	// Back to two members: the third interface leaves the bond.
	h = bondHost(bond, []string{up, up2}, flows.LACPActive, flows.BondBalanceTCP)
	if res, err = Apply(ctx, applyOpts(l, br, h)); err != nil || len(res.Changes) != 1 {
		t.Fatalf("apply without %s: %v, changes %q", up3, err, res.Changes)
	}
	if _, err := l.try("ovs-vsctl", "--timeout=5", "get", "interface", up3, "name"); err == nil {
		t.Errorf("interface %s still exists after leaving the bond", up3)
	}
	// Back to a single NIC is not automatic: the error names the one command.
	_, err = Apply(ctx, applyOpts(l, br, testHost(up)))
	if err == nil || !strings.Contains(err.Error(), "member of another port (a bond?)") || !strings.Contains(err.Error(), "del-port "+br+" <bond> -- add-port "+br+" "+up) {
		t.Errorf("single-NIC apply on a bond: err = %v", err)
	}
}

// TestApplyBondMemberTaken: a member that is a port of another bridge (or
// of another bond) is never taken: the error names the port and the fix.
func TestApplyBondMemberTaken(t *testing.T) {
	t.Parallel()
	l := startOVS(t, false)
	br, other, up, up2, bond := randName("vft"), randName("vft"), randName("vfu"), randName("vfu"), randName("vfb")
	l.addBridge(br, up)
	l.addBridge(other, up2)
	_, err := Apply(ctxT(t), applyOpts(l, br, bondHost(bond, []string{up, up2}, flows.LACPOff, flows.BondActiveBackup)))
	if err == nil || !strings.Contains(err.Error(), "bond member "+up2) || !strings.Contains(err.Error(), "ovs-vsctl del-port "+up2) {
		t.Fatalf("err = %v, want the taken member named with its fix", err)
	}
	if got := l.portNames(br); !slices.Equal(got, []string{up}) {
		t.Errorf("ports of %s changed after the error: %q", br, got)
	}
	// With --create-bridge on a fresh bridge the bond is created with it.
	br2, m1, m2 := randName("vft"), randName("vfu"), randName("vfu")
	o := applyOpts(l, br2, bondHost(bond, []string{m1, m2}, flows.LACPOff, flows.BondBalanceSLB))
	o.CreateBridge, o.DatapathType = true, "netdev"
	if _, err := Apply(ctxT(t), o); err != nil {
		t.Fatalf("create bridge with a bond: %v", err)
	}
	if got := l.portNames(br2); !slices.Equal(got, sortedOf(bond, "vpcflow-vxlan")) {
		t.Errorf("ports = %q", got)
	}
	if got := l.vsctl("get", "port", bond, "bond_mode"); got != "balance-slb" {
		t.Errorf("bond_mode = %s", got)
	}
}
