package tunnel

import (
	"fmt"
	"strings"

	"github.com/vpcflow/vpcflow/flows"
)

// bondMembers returns the member NICs of a bonded uplink: the blueprint's
// (unless --uplink overrides the uplink), else the interfaces of the uplink
// port when it has more than one. Empty for a single NIC.
func (d *doctor) bondMembers() []string {
	if h := d.o.Host; h != nil && h.IsBond() && d.o.Uplink == "" {
		return h.UplinkSpec.Members
	}
	if p := d.uplinkPort(); p != nil && len(p.Interfaces) > 1 {
		var ms []string
		for _, i := range p.Interfaces {
			ms = append(ms, i.Name)
		}
		return ms
	}
	return nil
}

func (d *doctor) uplinkPort() *PortState {
	if d.br == nil || d.uplink == "" {
		return nil
	}
	for i := range d.br.Ports {
		if d.br.Ports[i].Name == d.uplink {
			return &d.br.Ports[i]
		}
	}
	return nil
}

// checkBondMTU is the MTU check of a bond: every member must carry the
// encapsulated guest MTU (the bond itself has no device).
func (d *doctor) checkBondMTU(members []string, need int, what string) CheckResult {
	var got []string
	for _, m := range members {
		mtu, err := d.readMTU(m)
		if err != nil {
			return fail(CheckMTU, fmt.Sprintf("bond %s member %s: %v", d.uplink, m, err), "check the member names (blueprint uplink.bond:)")
		}
		if mtu < need {
			return fail(CheckMTU, fmt.Sprintf("bond %s member %s MTU %d < %d (%s): large guest packets are dropped silently after encapsulation while it carries the traffic", d.uplink, m, mtu, need, what),
				fmt.Sprintf("ip link set %s mtu %d and persist it (every member and the underlay switch ports)", m, need))
		}
		got = append(got, fmt.Sprintf("%s %d", m, mtu))
	}
	return pass(CheckMTU, fmt.Sprintf("bond %s members MTU %s >= %d (%s)", d.uplink, strings.Join(got, ", "), need, what))
}

// checkBond reports a bonded uplink's state from OVSDB: the bond port
// exists with the blueprint's members, bond_mode and lacp, and each member
// has link (and, with LACP, a current partner). A member down is a WARN
// (traffic runs on the others, without redundancy); no usable member is a
// FAIL (the host is cut off from the underlay).
func (d *doctor) checkBond() CheckResult {
	members := d.bondMembers()
	if len(members) == 0 {
		if d.uplink == "" {
			return skip(CheckBond, "uplink unknown: pass --uplink or --blueprint FILE --host NAME")
		}
		return skip(CheckBond, fmt.Sprintf("uplink %s is a single NIC, not a bond", d.uplink))
	}
	if r, ok := d.needBridge(CheckBond); !ok {
		return r
	}
	apply := "vpcflow host apply --blueprint FILE --host NAME (it creates or repairs the bond)"
	p := d.uplinkPort()
	if p == nil {
		return fail(CheckBond, fmt.Sprintf("bond %s is not a port of %s", d.uplink, d.bridge), apply)
	}
	var have []string
	for _, i := range p.Interfaces {
		have = append(have, i.Name)
	}
	lacp := p.LACP
	if lacp == "" {
		lacp = flows.LACPOff
	}
	if h := d.o.Host; h != nil && h.IsBond() && d.o.Uplink == "" {
		u := h.UplinkSpec
		var wrong []string
		if !sameSet(have, u.Members) {
			wrong = append(wrong, fmt.Sprintf("members %s, blueprint %s", strings.Join(have, ","), strings.Join(u.Members, ",")))
		}
		if p.BondMode != u.Mode {
			wrong = append(wrong, fmt.Sprintf("bond_mode %s, blueprint %s", orDash(p.BondMode), u.Mode))
		}
		if lacp != u.LACP {
			wrong = append(wrong, fmt.Sprintf("lacp %s, blueprint %s", lacp, u.LACP))
		}
		if len(wrong) > 0 {
			return fail(CheckBond, fmt.Sprintf("bond %s differs from the blueprint: %s", d.uplink, strings.Join(wrong, "; ")), apply)
		}
	}
	var states, bad []string
	for _, i := range p.Interfaces {
		st := i.LinkState
		if st == "" {
			st = "link unknown"
		}
		usable := i.LinkState == "up"
		if lacp != flows.LACPOff {
			switch {
			case i.LACPCurrent == nil || !*i.LACPCurrent:
				st += ", LACP partner not current"
				usable = false
			default:
				st += ", LACP current"
			}
		}
		states = append(states, i.Name+" "+st)
		if !usable {
			bad = append(bad, i.Name)
		}
	}
	detail := fmt.Sprintf("bond %s (%s, lacp %s): %s", d.uplink, orDash(p.BondMode), lacp, strings.Join(states, "; "))
	show := fmt.Sprintf("ovs-appctl bond/show %s", d.uplink)
	if lacp != flows.LACPOff {
		show += fmt.Sprintf("; ovs-appctl lacp/show %s (the switch ports must form an LACP aggregate)", d.uplink)
	}
	switch {
	case len(bad) == len(p.Interfaces):
		return fail(CheckBond, detail+": no member is usable, the host is cut off from the underlay",
			"check the cables and switch ports of "+strings.Join(bad, ", ")+"; "+show)
	case len(bad) > 0:
		return warn(CheckBond, detail+": traffic runs on the other members without redundancy",
			"check the cable and switch port of "+strings.Join(bad, ", ")+" (ip link show "+bad[0]+"); "+show)
	}
	return pass(CheckBond, detail)
}
