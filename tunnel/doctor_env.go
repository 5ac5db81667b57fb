package tunnel

// SystemEnv, the doctor's real host, and its read-only OVSDB snapshot.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/digitalocean/go-openvswitch/ovsnl"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// SystemEnv is the real host: the local file system, commands from PATH,
// the kernel's interfaces, generic netlink (go-openvswitch ovsnl), HTTP and
// a read-only OVSDB session.
type SystemEnv struct {
	// TLS is the OVSDB client configuration for ssl: endpoints.
	TLS *tls.Config
}

// ReadFile implements DoctorEnv.
func (SystemEnv) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

// ReadDir implements DoctorEnv.
func (SystemEnv) ReadDir(path string) ([]string, error) {
	es, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name()
	}
	return out, nil
}

// Readlink implements DoctorEnv.
func (SystemEnv) Readlink(path string) (string, error) { return os.Readlink(path) }

// Run implements DoctorEnv.
func (SystemEnv) Run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return string(out), fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		return string(out), fmt.Errorf("%s: %w", name, err)
	}
	return string(out), nil
}

// InterfaceAddrs implements DoctorEnv.
func (SystemEnv) InterfaceAddrs(name string) ([]netip.Prefix, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	as, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				ones, _ := n.Mask.Size()
				out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
			}
		}
	}
	return out, nil
}

// KernelDatapaths implements DoctorEnv with go-openvswitch's ovsnl.
func (SystemEnv) KernelDatapaths() ([]string, error) {
	c, err := ovsnl.New()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if c.Datapath == nil {
		return nil, os.ErrNotExist
	}
	dps, err := c.Datapath.List()
	if err != nil {
		return nil, fmt.Errorf("list kernel datapaths: %w", err)
	}
	var names []string
	for _, dp := range dps {
		names = append(names, dp.Name)
	}
	sort.Strings(names)
	return names, nil
}

// HTTPGet implements DoctorEnv.
func (SystemEnv) HTTPGet(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return body, nil
}

// ReadOVSDB implements DoctorEnv: one session, one read-only transaction.
func (e SystemEnv) ReadOVSDB(ctx context.Context, endpoint, bridge string) (*OVSDBState, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := dialDoctor(ctx, endpoint, e.TLS)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.readDoctorState(ctx, bridge)
}

// The doctor's own read-only models: more columns than provisioning needs.
type docRootRow struct {
	UUID           string   `ovsdb:"_uuid"`
	OVSVersion     *string  `ovsdb:"ovs_version"`
	CurCfg         int      `ovsdb:"cur_cfg"`
	NextCfg        int      `ovsdb:"next_cfg"`
	ManagerOptions []string `ovsdb:"manager_options"`
	SSL            *string  `ovsdb:"ssl"`
	Bridges        []string `ovsdb:"bridges"`
}

type docBridgeRow struct {
	UUID         string            `ovsdb:"_uuid"`
	Name         string            `ovsdb:"name"`
	DatapathType string            `ovsdb:"datapath_type"`
	DatapathID   *string           `ovsdb:"datapath_id"`
	FailMode     *string           `ovsdb:"fail_mode"`
	Protocols    []string          `ovsdb:"protocols"`
	OtherConfig  map[string]string `ovsdb:"other_config"`
	Ports        []string          `ovsdb:"ports"`
	Controller   []string          `ovsdb:"controller"`
}

type docPortRow struct {
	UUID            string   `ovsdb:"_uuid"`
	Name            string   `ovsdb:"name"`
	Tag             *int     `ovsdb:"tag"`
	Interfaces      []string `ovsdb:"interfaces"`
	BondMode        *string  `ovsdb:"bond_mode"`
	LACP            *string  `ovsdb:"lacp"`
	BondActiveSlave *string  `ovsdb:"bond_active_slave"`
}

type docInterfaceRow struct {
	UUID        string            `ovsdb:"_uuid"`
	Name        string            `ovsdb:"name"`
	Type        string            `ovsdb:"type"`
	Options     map[string]string `ovsdb:"options"`
	Ofport      *int              `ovsdb:"ofport"`
	Error       *string           `ovsdb:"error"`
	LinkState   *string           `ovsdb:"link_state"`
	LACPCurrent *bool             `ovsdb:"lacp_current"`
}

type docControllerRow struct {
	UUID           string  `ovsdb:"_uuid"`
	Target         string  `ovsdb:"target"`
	ConnectionMode *string `ovsdb:"connection_mode"`
	IsConnected    bool    `ovsdb:"is_connected"`
	Role           *string `ovsdb:"role"`
}

type docManagerRow struct {
	UUID        string `ovsdb:"_uuid"`
	Target      string `ovsdb:"target"`
	IsConnected bool   `ovsdb:"is_connected"`
}

type docSSLRow struct {
	UUID        string `ovsdb:"_uuid"`
	PrivateKey  string `ovsdb:"private_key"`
	Certificate string `ovsdb:"certificate"`
	CACert      string `ovsdb:"ca_cert"`
}

const (
	tableManager = "Manager"
	tableSSL     = "SSL"
)

// dialDoctor opens a session with the doctor's models; tlsConfig is
// required for ssl: endpoints.
func dialDoctor(ctx context.Context, endpoint string, tlsConfig *tls.Config) (*Client, error) {
	if err := CheckEndpoint(endpoint); err != nil {
		return nil, err
	}
	if strings.HasPrefix(endpoint, "ssl:") && tlsConfig == nil {
		return nil, fmt.Errorf("OVSDB endpoint %s needs a client certificate (--tls-cert, --tls-key, --tls-ca); on the host itself use the local socket unix:$OVS_RUNDIR/db.sock", endpoint)
	}
	dbm, err := model.NewClientDBModel("Open_vSwitch", map[string]model.Model{
		tableRoot:       &docRootRow{},
		tableBridge:     &docBridgeRow{},
		tablePort:       &docPortRow{},
		tableInterface:  &docInterfaceRow{},
		tableController: &docControllerRow{},
		tableManager:    &docManagerRow{},
		tableSSL:        &docSSLRow{},
	})
	if err != nil {
		return nil, fmt.Errorf("OVSDB model: %w", err)
	}
	opts := []client.Option{client.WithEndpoint(endpoint)}
	if tlsConfig != nil && strings.HasPrefix(endpoint, "ssl:") {
		opts = append(opts, client.WithTLSConfig(tlsConfig))
	}
	ovs, err := client.NewOVSDBClient(dbm, opts...)
	if err != nil {
		return nil, fmt.Errorf("OVSDB client for %s: %w", endpoint, err)
	}
	if err := ovs.Connect(ctx); err != nil {
		return nil, fmt.Errorf("cannot connect to ovsdb-server at %s: %w", endpoint, err)
	}
	return &Client{endpoint: endpoint, ovs: ovs}, nil
}

func (c *Client) readDoctorState(ctx context.Context, bridge string) (*OVSDBState, error) {
	tables := []string{tableRoot, tableBridge, tablePort, tableInterface, tableController, tableManager, tableSSL}
	ops := make([]ovsdb.Operation, len(tables))
	for i, t := range tables {
		ops[i] = selectOp(t)
	}
	rows, err := c.read(ctx, ops)
	if err != nil {
		return nil, err
	}
	roots, err := decodeRows[docRootRow](c, tableRoot, rows[0])
	if err != nil {
		return nil, err
	}
	if len(roots) != 1 {
		return nil, errors.New("the Open_vSwitch table has no row: initialise the database (ovs-vsctl --no-wait init)")
	}
	brs, err := decodeRows[docBridgeRow](c, tableBridge, rows[1])
	if err != nil {
		return nil, err
	}
	ports, err := decodeRows[docPortRow](c, tablePort, rows[2])
	if err != nil {
		return nil, err
	}
	ifaces, err := decodeRows[docInterfaceRow](c, tableInterface, rows[3])
	if err != nil {
		return nil, err
	}
	ctrls, err := decodeRows[docControllerRow](c, tableController, rows[4])
	if err != nil {
		return nil, err
	}
	mgrs, err := decodeRows[docManagerRow](c, tableManager, rows[5])
	if err != nil {
		return nil, err
	}
	ssls, err := decodeRows[docSSLRow](c, tableSSL, rows[6])
	if err != nil {
		return nil, err
	}
	root := roots[0]
	st := &OVSDBState{OVSVersion: deref(root.OVSVersion), CurCfg: root.CurCfg, NextCfg: root.NextCfg}
	for _, m := range mgrs {
		if slices.Contains(root.ManagerOptions, m.UUID) {
			st.Managers = append(st.Managers, ManagerState{Target: m.Target, IsConnected: m.IsConnected})
		}
	}
	sort.Slice(st.Managers, func(i, j int) bool { return st.Managers[i].Target < st.Managers[j].Target })
	for _, s := range ssls {
		if root.SSL != nil && *root.SSL == s.UUID {
			st.SSL = &SSLState{PrivateKey: s.PrivateKey, Certificate: s.Certificate, CACert: s.CACert}
		}
	}
	ifByUUID := map[string]*docInterfaceRow{}
	for _, i := range ifaces {
		ifByUUID[i.UUID] = i
	}
	portByUUID := map[string]*docPortRow{}
	for _, p := range ports {
		portByUUID[p.UUID] = p
	}
	ctrlByUUID := map[string]*docControllerRow{}
	for _, r := range ctrls {
		ctrlByUUID[r.UUID] = r
	}
	for _, b := range brs {
		st.Bridges = append(st.Bridges, b.Name)
		if b.Name != bridge {
			continue
		}
		bs := &BridgeState{Name: b.Name, DatapathType: b.DatapathType, DatapathID: deref(b.DatapathID), FailMode: deref(b.FailMode),
			Protocols: slices.Sorted(slices.Values(b.Protocols)), OtherConfig: b.OtherConfig}
		for _, pu := range b.Ports {
			p, ok := portByUUID[pu]
			if !ok {
				continue
			}
			ps := PortState{Name: p.Name, Tag: p.Tag, BondMode: deref(p.BondMode), LACP: deref(p.LACP), BondActive: deref(p.BondActiveSlave)}
			for _, iu := range p.Interfaces {
				if i, ok := ifByUUID[iu]; ok {
					ps.Interfaces = append(ps.Interfaces, InterfaceState{Name: i.Name, Type: i.Type, Options: i.Options, Ofport: i.Ofport,
						Error: deref(i.Error), LinkState: deref(i.LinkState), LACPCurrent: i.LACPCurrent})
				}
			}
			bs.Ports = append(bs.Ports, ps)
		}
		sort.Slice(bs.Ports, func(i, j int) bool { return bs.Ports[i].Name < bs.Ports[j].Name })
		for _, cu := range b.Controller {
			if r, ok := ctrlByUUID[cu]; ok {
				bs.Controllers = append(bs.Controllers, ControllerState{Target: r.Target, ConnectionMode: deref(r.ConnectionMode), IsConnected: r.IsConnected, Role: deref(r.Role)})
			}
		}
		sort.Slice(bs.Controllers, func(i, j int) bool { return bs.Controllers[i].Target < bs.Controllers[j].Target })
		st.Bridge = bs
	}
	sort.Strings(st.Bridges)
	return st, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
