package tunnel

import (
	"strings"
	"testing"

	"github.com/vpcflow/vpcflow/flows"
)

func boolp(b bool) *bool { return &b }

// bondCase is newCase with kvm1's uplink a bond of eth0 and eth1 (in the
// blueprint and on the bridge), both members up.
func bondCase(t *testing.T, lacp string) *doctorCase {
	t.Helper()
	uplink := "uplink: {name: bond0, bond: [eth0, eth1]}"
	mode := flows.BondActiveBackup
	if lacp == flows.LACPActive {
		uplink = "uplink: {name: bond0, bond: [eth0, eth1], lacp: active}"
		mode = flows.BondBalanceTCP
	}
	bp, err := flows.Parse("bp.yaml", []byte(strings.Replace(testBlueprint, "uplink: eth0", uplink, 1)))
	if err != nil {
		t.Fatal(err)
	}
	c := newCase(t)
	c.opts.Blueprint, c.opts.Host = bp, bp.HostByName("kvm1")
	c.env.files["/sys/class/net/eth1/mtu"] = "1600\n"
	br := c.br()
	for i, p := range br.Ports {
		if p.Name == "eth0" {
			var cur *bool
			if lacp == flows.LACPActive {
				cur = boolp(true)
			}
			br.Ports[i] = PortState{Name: "bond0", BondMode: mode, LACP: lacp, Interfaces: []InterfaceState{
				{Name: "eth0", Ofport: intp(1), LinkState: "up", LACPCurrent: cur},
				{Name: "eth1", Ofport: intp(4), LinkState: "up", LACPCurrent: cur},
			}}
		}
	}
	return c
}

func TestDoctorBond(t *testing.T) {
	c := bondCase(t, flows.LACPOff)
	res := c.run(t)
	expect(t, res, CheckBond, StatusPass, "bond bond0 (active-backup, lacp off): eth0 up; eth1 up")
	expect(t, res, CheckMTU, StatusPass, "bond bond0 members MTU eth0 1600, eth1 1600 >= 1550")
	expect(t, res, CheckBridge, StatusPass, "")

	c = bondCase(t, flows.LACPOff)
	c.br().Ports[1].Interfaces[1].LinkState = "down"
	expect(t, c.run(t), CheckBond, StatusWarn, "eth1 down")

	c = bondCase(t, flows.LACPOff)
	c.br().Ports[1].Interfaces[0].LinkState = "down"
	c.br().Ports[1].Interfaces[1].LinkState = "down"
	expect(t, c.run(t), CheckBond, StatusFail, "no member is usable")

	c = bondCase(t, flows.LACPOff)
	c.br().Ports[1].BondMode = flows.BondBalanceSLB
	c.br().Ports[1].Interfaces = c.br().Ports[1].Interfaces[:1]
	expect(t, c.run(t), CheckBond, StatusFail, "members eth0, blueprint eth0,eth1; bond_mode balance-slb, blueprint active-backup")

	c = bondCase(t, flows.LACPOff)
	c.env.files["/sys/class/net/eth1/mtu"] = "1500\n"
	expect(t, c.run(t), CheckMTU, StatusFail, "member eth1 MTU 1500 < 1550")

	c = bondCase(t, flows.LACPActive)
	expect(t, c.run(t), CheckBond, StatusPass, "eth0 up, LACP current")
	c.br().Ports[1].Interfaces[0].LACPCurrent = boolp(false)
	c.br().Ports[1].Interfaces[1].LACPCurrent = nil
	expect(t, c.run(t), CheckBond, StatusFail, "LACP partner not current")

	// Without a blueprint the bond is recognised on the bridge.
	c = bondCase(t, flows.LACPOff)
	c.opts.Blueprint, c.opts.Host, c.opts.Uplink = nil, nil, "bond0"
	expect(t, c.run(t), CheckBond, StatusPass, "eth0 up; eth1 up")
}
