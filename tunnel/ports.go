package tunnel

import (
	"context"
	"fmt"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// PortsByMAC returns the names of bridge's ports keyed by the guest MAC
// libvirt records on their interface (external_ids:attached-mac,
// lowercased). It reads the Bridge, Port and Interface tables in one
// transaction and writes nothing. Interfaces without attached-mac (the
// uplink, tunnel ports, LOCAL) are not listed.
func (c *Client) PortsByMAC(ctx context.Context, bridge string) (map[string]string, error) {
	res, err := c.read(ctx, []ovsdb.Operation{
		selectOp(tableBridge, nameIs(bridge)),
		selectOp(tablePort),
		{Op: ovsdb.OperationSelect, Table: tableInterface, Where: []ovsdb.Condition{}, Columns: []string{"_uuid", "name", "external_ids"}},
	})
	if err != nil {
		return nil, err
	}
	brs, err := decodeRows[bridgeRow](c, tableBridge, res[0])
	if err != nil {
		return nil, err
	}
	if len(brs) == 0 {
		return nil, fmt.Errorf("ovsdb-server at %s has no bridge %s", c.endpoint, bridge)
	}
	ports, err := decodeRows[portRow](c, tablePort, res[1])
	if err != nil {
		return nil, err
	}
	onBridge := map[string]bool{}
	for _, p := range brs[0].Ports {
		onBridge[p] = true
	}
	ifacePort := map[string]string{} // interface uuid -> port name
	for _, p := range ports {
		if onBridge[p.UUID] {
			for _, i := range p.Interfaces {
				ifacePort[i] = p.Name
			}
		}
	}
	out := map[string]string{}
	for _, row := range res[2] {
		u, _ := row["_uuid"].(ovsdb.UUID)
		port, ok := ifacePort[u.GoUUID]
		if !ok {
			continue
		}
		ids, _ := row["external_ids"].(ovsdb.OvsMap)
		mac, _ := ids.GoMap["attached-mac"].(string)
		if mac == "" {
			continue
		}
		mac = strings.ToLower(mac)
		if other, dup := out[mac]; dup {
			return nil, fmt.Errorf("ovsdb-server at %s: ports %s and %s of %s both carry attached-mac %s: remove the stale one", c.endpoint, other, port, bridge, mac)
		}
		out[mac] = port
	}
	return out, nil
}
