package tunnel

import (
	"github.com/ovn-kubernetes/libovsdb/model"
)

// The minimal Open_vSwitch schema models: only the tables and columns that
// provisioning and in-band management read or write. Columns the models do
// not name are never touched (updates and mutations name their columns).

// Table names of the Open_vSwitch database.
const (
	tableRoot       = "Open_vSwitch"
	tableBridge     = "Bridge"
	tablePort       = "Port"
	tableInterface  = "Interface"
	tableController = "Controller"
)

// ovsRow is the single row of the Open_vSwitch table.
type ovsRow struct {
	UUID    string   `ovsdb:"_uuid"`
	Bridges []string `ovsdb:"bridges"`
}

// bridgeRow is a row of the Bridge table.
type bridgeRow struct {
	UUID         string            `ovsdb:"_uuid"`
	Name         string            `ovsdb:"name"`
	Ports        []string          `ovsdb:"ports"`
	Controller   []string          `ovsdb:"controller"`
	FailMode     *string           `ovsdb:"fail_mode"`
	Protocols    []string          `ovsdb:"protocols"`
	OtherConfig  map[string]string `ovsdb:"other_config"`
	DatapathType string            `ovsdb:"datapath_type"`
	// DatapathID is the datapath id ovs-vswitchd reports (read only).
	DatapathID *string `ovsdb:"datapath_id"`
}

// portRow is a row of the Port table. The bond columns matter only for a
// bonded uplink (bond_active_slave is written by ovs-vswitchd).
type portRow struct {
	UUID            string            `ovsdb:"_uuid"`
	Name            string            `ovsdb:"name"`
	Interfaces      []string          `ovsdb:"interfaces"`
	BondMode        *string           `ovsdb:"bond_mode"`
	LACP            *string           `ovsdb:"lacp"`
	OtherConfig     map[string]string `ovsdb:"other_config"`
	BondActiveSlave *string           `ovsdb:"bond_active_slave"`
}

// interfaceRow is a row of the Interface table.
type interfaceRow struct {
	UUID    string            `ovsdb:"_uuid"`
	Name    string            `ovsdb:"name"`
	Type    string            `ovsdb:"type"`
	Options map[string]string `ovsdb:"options"`
	Ofport  *int              `ovsdb:"ofport"`
	Error   *string           `ovsdb:"error"`
}

// controllerRow is a row of the Controller table.
type controllerRow struct {
	UUID            string  `ovsdb:"_uuid"`
	Target          string  `ovsdb:"target"`
	MaxBackoff      *int    `ovsdb:"max_backoff"`
	InactivityProbe *int    `ovsdb:"inactivity_probe"`
	ConnectionMode  *string `ovsdb:"connection_mode"`
	IsConnected     bool    `ovsdb:"is_connected"`
}

// dbModel is the client database model over the tables above.
func dbModel() (model.ClientDBModel, error) {
	return model.NewClientDBModel("Open_vSwitch", map[string]model.Model{
		tableRoot:       &ovsRow{},
		tableBridge:     &bridgeRow{},
		tablePort:       &portRow{},
		tableInterface:  &interfaceRow{},
		tableController: &controllerRow{},
	})
}
