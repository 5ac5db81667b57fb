package tunnel

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// Connection modes of a Controller row.
const (
	// ModeInBand lets OVS install hidden flows that keep the controller
	// reachable through the bridge itself. It is also what an unset
	// connection_mode means.
	ModeInBand = "in-band"
	// ModeOutOfBand removes those hidden flows: the controller must then be
	// reachable through the flows vpcflow installs (LOCAL <-> uplink).
	ModeOutOfBand = "out-of-band"
)

// bridgeControllers is a bridge and its Controller rows, read in one
// transaction.
type bridgeControllers struct {
	bridge *bridgeRow
	rows   []*controllerRow
}

func (c *Client) readBridgeControllers(ctx context.Context, bridge string) (*bridgeControllers, error) {
	rows, err := c.read(ctx, []ovsdb.Operation{selectOp(tableBridge, nameIs(bridge)), selectOp(tableController)})
	if err != nil {
		return nil, err
	}
	bs, err := decodeRows[bridgeRow](c, tableBridge, rows[0])
	if err != nil {
		return nil, err
	}
	if len(bs) != 1 {
		return nil, fmt.Errorf("bridge %s not found on %s: provision it first (vpcflow host apply)", bridge, c.endpoint)
	}
	ctrls, err := decodeRows[controllerRow](c, tableController, rows[1])
	if err != nil {
		return nil, err
	}
	bc := &bridgeControllers{bridge: bs[0]}
	for _, r := range ctrls {
		if slices.Contains(bs[0].Controller, r.UUID) {
			bc.rows = append(bc.rows, r)
		}
	}
	sort.Slice(bc.rows, func(i, j int) bool { return bc.rows[i].Target < bc.rows[j].Target })
	return bc, nil
}

// effectiveMode is a row's connection mode, unset meaning in-band.
func effectiveMode(r *controllerRow) string {
	if r.ConnectionMode == nil || *r.ConnectionMode == "" {
		return ModeInBand
	}
	return *r.ConnectionMode
}

// ConnectionModes returns the effective connection mode (ModeInBand or
// ModeOutOfBand; unset reads as ModeInBand) of each Controller row of the
// bridge, by target.
func (c *Client) ConnectionModes(ctx context.Context, bridge string) (map[string]string, error) {
	bc, err := c.readBridgeControllers(ctx, bridge)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(bc.rows))
	for _, r := range bc.rows {
		out[r.Target] = effectiveMode(r)
	}
	return out, nil
}

// SetConnectionMode sets connection_mode to mode on every Controller row of
// the bridge whose effective mode differs, in one transaction guarded by
// the bridge's controller column and each changed row's connection_mode.
// It reports whether anything changed.
func (c *Client) SetConnectionMode(ctx context.Context, bridge, mode string) (bool, error) {
	if mode != ModeInBand && mode != ModeOutOfBand {
		return false, fmt.Errorf("connection mode %q is not valid: use %s or %s", mode, ModeInBand, ModeOutOfBand)
	}
	read := func() (*bridgeControllers, error) { return c.readBridgeControllers(ctx, bridge) }
	lines, err := converge(ctx, c, "set connection_mode="+mode+" on "+bridge, read, func(bc *bridgeControllers) (*plan, error) {
		var ops []ovsdb.Operation
		var targets []string
		for _, r := range bc.rows {
			if effectiveMode(r) == mode {
				continue
			}
			g, err := c.guard(r, &r.ConnectionMode)
			if err != nil {
				return nil, err
			}
			upd := &controllerRow{UUID: r.UUID, ConnectionMode: &mode}
			u, err := c.ovs.Where(&controllerRow{UUID: r.UUID}).Update(upd, &upd.ConnectionMode)
			if err != nil {
				return nil, err
			}
			ops = append(ops, g...)
			ops = append(ops, u...)
			targets = append(targets, r.Target)
		}
		if len(ops) == 0 {
			return nil, nil
		}
		b := &bridgeRow{UUID: bc.bridge.UUID, Controller: bc.bridge.Controller}
		g, err := c.guard(b, &b.Controller)
		if err != nil {
			return nil, err
		}
		return &plan{ops: append(g, ops...), lines: []string{fmt.Sprintf("%s: connection_mode=%s on %s", bridge, mode, strings.Join(targets, ", "))}}, nil
	})
	return len(lines) > 0, err
}

// ConnectionModes dials endpoint and returns the bridge's Controller rows'
// effective connection modes by target (see Client.ConnectionModes).
func ConnectionModes(ctx context.Context, endpoint, bridge string) (map[string]string, error) {
	c, err := Dial(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionModes(ctx, bridge)
}

// SetConnectionMode dials endpoint and sets mode ("in-band" or
// "out-of-band") on all Controller rows of the bridge in one transaction
// (see Client.SetConnectionMode).
func SetConnectionMode(ctx context.Context, endpoint, bridge, mode string) (bool, error) {
	c, err := Dial(ctx, endpoint)
	if err != nil {
		return false, err
	}
	defer c.Close()
	return c.SetConnectionMode(ctx, bridge, mode)
}

// ControllerConnected reports whether any Controller row of the bridge says
// is_connected (ovs-vswitchd refreshes the column every few seconds: fine
// for recovery decisions, never for fencing).
func (c *Client) ControllerConnected(ctx context.Context, bridge string) (bool, error) {
	bc, err := c.readBridgeControllers(ctx, bridge)
	if err != nil {
		return false, err
	}
	for _, r := range bc.rows {
		if r.IsConnected {
			return true, nil
		}
	}
	return false, nil
}
