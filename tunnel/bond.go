package tunnel

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/vpcflow/vpcflow/flows"
)

// Bond settings Apply writes on a bonded uplink's Port row.
const (
	// bondLACPTime is other_config:lacp-time with LACP: fast (a PDU every
	// second, a partner timed out after 3 s) instead of slow (30 s / 90 s),
	// so a member whose partner stops answering (without losing carrier) is
	// taken out within seconds. Carrier loss is seen at once either way
	// (bond-detect-mode defaults to carrier and is left alone).
	bondLACPTime = "fast"
)

// bondSnapshot is what the bond step plans from: the bridge, every Port
// row (to find which port holds a member's interface) and the members'
// Interface rows.
type bondSnapshot struct {
	bridge *bridgeRow
	ports  []*portRow
	ifaces map[string]*interfaceRow // member name -> row, when it exists
}

func (s *bondSnapshot) portNamed(name string) *portRow {
	for _, p := range s.ports {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func (s *bondSnapshot) portHolding(ifaceUUID string) *portRow {
	for _, p := range s.ports {
		if slices.Contains(p.Interfaces, ifaceUUID) {
			return p
		}
	}
	return nil
}

func (c *Client) readBond(ctx context.Context, o *options) (*bondSnapshot, error) {
	members := o.Host.UplinkSpec.Members
	ops := []ovsdb.Operation{selectOp(tableBridge, nameIs(o.Bridge)), selectOp(tablePort)}
	for _, m := range members {
		ops = append(ops, selectOp(tableInterface, nameIs(m)))
	}
	rows, err := c.read(ctx, ops)
	if err != nil {
		return nil, err
	}
	s := &bondSnapshot{ifaces: map[string]*interfaceRow{}}
	brs, err := decodeRows[bridgeRow](c, tableBridge, rows[0])
	if err != nil {
		return nil, err
	}
	if len(brs) != 1 {
		return nil, fmt.Errorf("bridge %s not found on %s", o.Bridge, c.endpoint)
	}
	s.bridge = brs[0]
	if s.ports, err = decodeRows[portRow](c, tablePort, rows[1]); err != nil {
		return nil, err
	}
	for i, m := range members {
		is, err := decodeRows[interfaceRow](c, tableInterface, rows[2+i])
		if err != nil {
			return nil, err
		}
		if len(is) == 1 {
			s.ifaces[m] = is[0]
		}
	}
	return s, nil
}

// bondWant is the Port row a bonded uplink must have.
type bondWant struct {
	mode, lacp string
	lacpTime   string // "" = leave other_config:lacp-time alone
}

func wantBond(h *flows.Host) bondWant {
	w := bondWant{mode: h.UplinkSpec.Mode, lacp: h.UplinkSpec.LACP}
	if w.lacp == flows.LACPActive {
		w.lacpTime = bondLACPTime
	}
	return w
}

// planBond makes the host's bonded uplink a Port of the bridge named after
// the bond, holding exactly the member interfaces, with bond_mode, lacp and
// (with LACP) other_config:lacp-time. It is one transaction:
//
//   - a member that already is its own single-interface port of this bridge
//     (the field guides' `add-port cloudbr0 eth0`) is adopted: that Port row
//     is deleted and its Interface row moves into the bond, so the interface
//     keeps its ofport and datapath port, and the controller's flows for it
//     stay valid throughout;
//   - a member with no Interface row gets a new one;
//   - a member held by any other port (another bridge, another bond) is an
//     error naming the fix: Apply never takes a NIC from somewhere else;
//   - interfaces of the bond port that are no longer members are removed.
func (c *Client) planBond(o *options) func(*bondSnapshot) (*plan, error) {
	h := o.Host
	want := wantBond(h)
	return func(s *bondSnapshot) (*plan, error) {
		b := s.bridge
		bond := s.portNamed(h.Uplink)
		if bond != nil && !slices.Contains(b.Ports, bond.UUID) {
			return nil, fmt.Errorf("bond port %s exists on %s but is not a port of bridge %s (port names are unique per ovsdb-server): remove it (ovs-vsctl del-port %s) or rename the bond (hosts[%s].uplink.name)",
				h.Uplink, c.endpoint, o.Bridge, h.Uplink, h.Name)
		}
		var ops []ovsdb.Operation
		var lines []string
		var ifaces []string    // the bond's interface uuids (named uuids for new rows)
		var adopted []*portRow // single-NIC ports whose interface moves into the bond
		var created []string   // members without an Interface row
		for i, m := range h.UplinkSpec.Members {
			ifc := s.ifaces[m]
			if ifc == nil {
				id := fmt.Sprintf("vpcflow_bond_if%d", i)
				ins, err := c.ovs.Create(&interfaceRow{UUID: id, Name: m})
				if err != nil {
					return nil, err
				}
				ops = append(ops, ins...)
				ifaces = append(ifaces, id)
				created = append(created, m)
				continue
			}
			ifaces = append(ifaces, ifc.UUID)
			owner := s.portHolding(ifc.UUID)
			switch {
			case owner == nil || bond != nil && owner.UUID == bond.UUID:
			case owner.Name == m && len(owner.Interfaces) == 1 && slices.Contains(b.Ports, owner.UUID):
				adopted = append(adopted, owner)
			default:
				where := "another bridge"
				if slices.Contains(b.Ports, owner.UUID) {
					where = "bridge " + o.Bridge
				}
				return nil, fmt.Errorf("bond member %s of host %s is an interface of port %s on %s: free it (ovs-vsctl del-port %s) or fix hosts[%s].uplink.bond in the blueprint",
					m, h.Name, owner.Name, where, owner.Name, h.Name)
			}
		}
		var removePorts, insertPorts []string
		for _, p := range adopted {
			removePorts = append(removePorts, p.UUID)
			g, err := c.guard(p, &p.Interfaces)
			if err != nil {
				return nil, err
			}
			del, err := c.ovs.Where(&portRow{UUID: p.UUID}).Delete()
			if err != nil {
				return nil, err
			}
			ops = append(append(ops, g...), del...)
		}
		other := map[string]string{}
		if want.lacpTime != "" {
			other["lacp-time"] = want.lacpTime
		}
		settings := fmt.Sprintf("bond_mode=%s, lacp=%s", want.mode, want.lacp)
		if want.lacpTime != "" {
			settings += ", other_config:lacp-time=" + want.lacpTime
		}
		if bond == nil {
			mode, lacp := want.mode, want.lacp
			ins, err := c.ovs.Create(&portRow{UUID: "vpcflow_bond", Name: h.Uplink, Interfaces: ifaces, BondMode: &mode, LACP: &lacp, OtherConfig: other})
			if err != nil {
				return nil, err
			}
			ops = append(ops, ins...)
			insertPorts = append(insertPorts, "vpcflow_bond")
			lines = append(lines, fmt.Sprintf("%s: bond %s added with members %s (%s)", o.Bridge, h.Uplink, strings.Join(h.UplinkSpec.Members, ","), settings))
		} else {
			upd := &portRow{UUID: bond.UUID}
			var fields []any
			var what []string
			if !sameSet(bond.Interfaces, ifaces) {
				upd.Interfaces = ifaces
				fields = append(fields, &upd.Interfaces)
				what = append(what, "members -> "+strings.Join(h.UplinkSpec.Members, ","))
			}
			if strOr(bond.BondMode, "active-backup") != want.mode || bond.BondMode == nil {
				mode := want.mode
				upd.BondMode = &mode
				fields = append(fields, &upd.BondMode)
				what = append(what, fmt.Sprintf("bond_mode %s -> %s", strOr(bond.BondMode, "unset"), want.mode))
			}
			if strOr(bond.LACP, flows.LACPOff) != want.lacp {
				lacp := want.lacp
				upd.LACP = &lacp
				fields = append(fields, &upd.LACP)
				what = append(what, fmt.Sprintf("lacp %s -> %s", strOr(bond.LACP, "unset (off)"), want.lacp))
			}
			mm := &portRow{UUID: bond.UUID}
			var muts []model.Mutation
			if cur, ok := bond.OtherConfig["lacp-time"]; want.lacpTime != "" && cur != want.lacpTime {
				muts = append(muts,
					model.Mutation{Field: &mm.OtherConfig, Mutator: ovsdb.MutateOperationDelete, Value: []string{"lacp-time"}},
					model.Mutation{Field: &mm.OtherConfig, Mutator: ovsdb.MutateOperationInsert, Value: other})
				if !ok {
					cur = "unset"
				}
				what = append(what, fmt.Sprintf("other_config:lacp-time %s -> %s", cur, want.lacpTime))
			}
			if len(what) > 0 {
				read := *bond
				g, err := c.guard(&read, &read.Interfaces, &read.BondMode, &read.LACP, &read.OtherConfig)
				if err != nil {
					return nil, err
				}
				u, err := c.updateOps(&portRow{UUID: bond.UUID}, upd, fields, mm, muts)
				if err != nil {
					return nil, err
				}
				ops = append(append(ops, g...), u...)
				lines = append(lines, fmt.Sprintf("%s: bond %s: %s", o.Bridge, h.Uplink, strings.Join(what, ", ")))
			}
		}
		for _, p := range adopted {
			lines = append(lines, fmt.Sprintf("%s: port %s converted into a member of bond %s (its interface, ofport and datapath port are kept)", o.Bridge, p.Name, h.Uplink))
		}
		if len(created) > 0 && bond != nil {
			lines = append(lines, fmt.Sprintf("%s: bond %s: interfaces %s created", o.Bridge, h.Uplink, strings.Join(created, ",")))
		}
		if len(ops) == 0 {
			return nil, nil
		}
		if len(removePorts) > 0 || len(insertPorts) > 0 {
			g, mu, err := c.bridgePortsOps(b, removePorts, insertPorts)
			if err != nil {
				return nil, err
			}
			ops = append(append(g, ops...), mu...)
		}
		return &plan{ops: ops, lines: lines}, nil
	}
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
