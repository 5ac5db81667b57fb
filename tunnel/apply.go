package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// Defaults of ApplyOptions.
const (
	// DefaultBridge is the CloudStack KVM bridge vpcflow manages.
	DefaultBridge = "cloudbr0"
	// DefaultMaxBackoffMS caps OVS's reconnect backoff to a controller
	// (OVS's own default is 8 s) so a restarted or failed-over controller
	// is reached again within ~2 s.
	DefaultMaxBackoffMS = 2000
	// DefaultInactivityProbeMS is how long the switch waits on an idle
	// controller connection before it sends an echo request, and again for
	// an answer before it reconnects: a dead controller is noticed within
	// ~10 s, while a controller busy installing a large bundle is not
	// disconnected spuriously. (OVS's own default is 5 s as well; it is set
	// explicitly so the behaviour does not depend on the OVS version.)
	DefaultInactivityProbeMS = 5000
	// DefaultDatapathType is the datapath of a bridge Apply creates.
	DefaultDatapathType = "system"
	// OpenFlowVersion is the only protocol vpcflow enables on the bridge.
	OpenFlowVersion = "OpenFlow13"
)

// Tunnel port options every vpcflow tunnel port carries (plus local_ip).
const (
	optRemoteIP = "remote_ip"
	optKey      = "key"
	optLocalIP  = "local_ip"
	flowValue   = "flow"
)

// maxAttempts bounds how often one logical change is re-read and retried
// after losing a race against a concurrent writer.
const maxAttempts = 16

// ApplyOptions says what Apply provisions and where.
type ApplyOptions struct {
	// Endpoint is the host's ovsdb-server: unix:/path, tcp:IP:PORT or
	// ssl:IP:PORT (ssl needs TLS).
	Endpoint string
	// TLS is the client configuration for ssl: endpoints.
	TLS *tls.Config
	// Bridge is the bridge to provision (default "cloudbr0").
	Bridge string
	// Host is the blueprint's host: DPID, Addr (tunnel_ip), MAC/HasMAC
	// (tunnel_mac) and Uplink are used. Unparsed hosts (DatapathID,
	// TunnelIP, TunnelMAC strings only) are parsed here.
	Host *flows.Host
	// Encapsulation selects the tunnel port (vxlan by default).
	Encapsulation flows.Encapsulation
	// Controllers are the OpenFlow targets (tcp:IP:PORT, ssl:IP:PORT or
	// unix:PATH), one Controller row each; at least one is required.
	Controllers []string
	// DatapathType is used only when the bridge must be created: "system"
	// (default) or "netdev". An existing bridge's datapath is never changed.
	DatapathType string
	// CreateBridge allows Apply to create a missing bridge (with the
	// uplink as a system port); otherwise a missing bridge is an error.
	CreateBridge bool
	// MaxBackoffMS is the Controller rows' max_backoff (default 2000, at
	// least 1000).
	MaxBackoffMS int
	// InactivityProbeMS is the Controller rows' inactivity_probe (default
	// DefaultInactivityProbeMS, 5000).
	InactivityProbeMS int
	// Logger receives one line per change (default: logrus standard logger).
	Logger logrus.FieldLogger
}

// Result lists the changes Apply made, one human-readable line each.
type Result struct {
	Endpoint string
	Bridge   string
	Changes  []string
}

// Changed reports whether Apply changed anything.
func (r *Result) Changed() bool { return r != nil && len(r.Changes) > 0 }

// DefaultEndpoint is the local ovsdb-server socket: unix:$OVS_RUNDIR/db.sock
// with OVS_RUNDIR defaulting to /var/run/openvswitch.
func DefaultEndpoint() string {
	dir := os.Getenv("OVS_RUNDIR")
	if dir == "" {
		dir = "/var/run/openvswitch"
	}
	return "unix:" + filepath.Join(dir, "db.sock")
}

// Apply provisions the bridge on one host idempotently, one OVSDB
// transaction per logical change, in this order:
//
//  1. create the bridge with its uplink (only with CreateBridge; it is
//     created already fail_mode=secure, so it never runs NORMAL);
//  2. bridge settings: protocols=[OpenFlow13], fail_mode=secure,
//     other_config:datapath-id and other_config:hwaddr (single keys,
//     mutated; the rest of other_config is left alone);
//  3. Controller rows: one per target with max_backoff and
//     inactivity_probe (connection_mode of new rows unset = in-band;
//     existing rows' connection_mode is never changed);
//  4. a bonded uplink (hosts[].uplink with bond:): the bond port with its
//     members, bond_mode and lacp, adopting a member that is a single-NIC
//     port of the bridge (see planBond in bond.go);
//  5. the flow-based tunnel port (vpcflow-vxlan or vpcflow-gre), replacing
//     the other encapsulation's port in the same transaction.
//
// fail_mode=secure and the controllers are thus committed before any
// tunnel port exists. Every transaction is guarded by `wait` operations on
// the columns it was planned from; when a concurrent writer (another
// replica, an operator) changed them, Apply re-reads and re-plans, so
// concurrent Applys never duplicate ports or Controller rows. A second run
// changes nothing.
func Apply(ctx context.Context, opts ApplyOptions) (*Result, error) {
	o, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	c, err := DialTLS(ctx, o.Endpoint, o.TLS)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.apply(ctx, o)
}

// Apply is Apply over an existing session; opts.Endpoint and opts.TLS are
// ignored.
func (c *Client) Apply(ctx context.Context, opts ApplyOptions) (*Result, error) {
	opts.Endpoint = c.endpoint
	o, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	return c.apply(ctx, o)
}

// options is ApplyOptions with defaults applied and the host parsed.
type options struct {
	ApplyOptions
	dpid       string // 16 lower-case hex digits
	addr       netip.Addr
	mac        string // lower-case, "" when none
	tunnelPort string
	otherPort  string
	tunnelType string
}

func (opts ApplyOptions) normalize() (*options, error) {
	o := &options{ApplyOptions: opts}
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint()
	}
	if err := CheckEndpoint(o.Endpoint); err != nil {
		return nil, err
	}
	if o.Bridge == "" {
		o.Bridge = DefaultBridge
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	h := o.Host
	if h == nil {
		return nil, errors.New("tunnel.Apply: no host given")
	}
	dpid := h.DPID
	if dpid == 0 && h.DatapathID != "" {
		v, err := strconv.ParseUint(h.DatapathID, 16, 64)
		if err != nil || len(h.DatapathID) != 16 {
			return nil, fmt.Errorf("host %s: datapath_id %q is not 16 hex digits", h.Name, h.DatapathID)
		}
		dpid = v
	}
	if dpid == 0 {
		return nil, fmt.Errorf("host %s: datapath_id is missing or zero", h.Name)
	}
	o.dpid = fmt.Sprintf("%016x", dpid)
	o.addr = h.Addr
	if !o.addr.IsValid() {
		a, err := netip.ParseAddr(h.TunnelIP)
		if err != nil {
			return nil, fmt.Errorf("host %s: tunnel_ip %q is not an IP address", h.Name, h.TunnelIP)
		}
		o.addr = a
	}
	switch {
	case h.HasMAC:
		o.mac = h.MAC.String()
	case h.TunnelMAC != "":
		m, err := flows.ParseMAC(h.TunnelMAC)
		if err != nil {
			return nil, fmt.Errorf("host %s: tunnel_mac: %w", h.Name, err)
		}
		o.mac = m.String()
	}
	switch o.Encapsulation {
	case "", flows.EncapVXLAN:
		o.Encapsulation = flows.EncapVXLAN
		o.tunnelType, o.otherPort = "vxlan", flows.TunnelPort(flows.EncapGRE)
	case flows.EncapGRE:
		o.tunnelType, o.otherPort = "gre", flows.TunnelPort(flows.EncapVXLAN)
	default:
		return nil, fmt.Errorf("encapsulation %q is not supported: use vxlan or gre", o.Encapsulation)
	}
	if h.IsBond() && (len(h.UplinkSpec.Members) < 2 || h.UplinkSpec.Mode == "" || h.UplinkSpec.LACP == "") {
		return nil, fmt.Errorf("host %s: bond %s needs two members, a mode and an lacp setting: load the blueprint with flows.Load (it applies the defaults and validates)", h.Name, h.Uplink)
	}
	o.tunnelPort = flows.TunnelPort(o.Encapsulation)
	var targets []string
	for _, t := range o.Controllers {
		t = strings.TrimSpace(t)
		if t == "" || slices.Contains(targets, t) {
			continue
		}
		if !(strings.HasPrefix(t, "tcp:") || strings.HasPrefix(t, "ssl:") || strings.HasPrefix(t, "unix:")) || !strings.Contains(t, ":") {
			return nil, fmt.Errorf("controller target %q is not valid: use tcp:IP:PORT, ssl:IP:PORT or unix:PATH", t)
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return nil, errors.New("no controller targets: set controllers: in the blueprint or pass --controllers tcp:IP:6653,...")
	}
	o.Controllers = targets
	switch o.DatapathType {
	case "":
		o.DatapathType = DefaultDatapathType
	case "system", "netdev":
	default:
		return nil, fmt.Errorf("datapath type %q is not supported: use system (kernel) or netdev (userspace)", o.DatapathType)
	}
	if o.MaxBackoffMS == 0 {
		o.MaxBackoffMS = DefaultMaxBackoffMS
	}
	if o.MaxBackoffMS < 1000 {
		return nil, fmt.Errorf("max backoff %d ms is too small: OVS requires at least 1000", o.MaxBackoffMS)
	}
	if o.InactivityProbeMS == 0 {
		o.InactivityProbeMS = DefaultInactivityProbeMS
	}
	if o.InactivityProbeMS < 0 {
		return nil, fmt.Errorf("inactivity probe %d ms is negative", o.InactivityProbeMS)
	}
	return o, nil
}

// snapshot is what one planning step knows about the database, read in one
// transaction.
type snapshot struct {
	root        *ovsRow
	bridges     []*bridgeRow
	bridge      *bridgeRow                // the bridge being provisioned, nil if missing
	ports       map[string]*portRow       // by name: uplink and tunnel ports that exist
	ifaces      map[string]*interfaceRow  // by name: the tunnel interfaces that exist
	controllers map[string]*controllerRow // every Controller row, by uuid
}

// owner returns the bridge that holds port uuid, or nil.
func (s *snapshot) owner(portUUID string) *bridgeRow {
	for _, b := range s.bridges {
		if slices.Contains(b.Ports, portUUID) {
			return b
		}
	}
	return nil
}

// onBridge reports whether the named port exists and is a port of s.bridge.
func (s *snapshot) onBridge(name string) (*portRow, bool) {
	p := s.ports[name]
	if p == nil || s.bridge == nil {
		return p, false
	}
	return p, slices.Contains(s.bridge.Ports, p.UUID)
}

// readSnapshot reads the rows planning needs: the root row, every bridge,
// the named ports and interfaces, and every Controller row.
func (c *Client) readSnapshot(ctx context.Context, bridge string, portNames []string) (*snapshot, error) {
	ops := []ovsdb.Operation{selectOp(tableRoot), selectOp(tableBridge), selectOp(tableController)}
	for _, n := range portNames {
		ops = append(ops, selectOp(tablePort, nameIs(n)), selectOp(tableInterface, nameIs(n)))
	}
	rows, err := c.read(ctx, ops)
	if err != nil {
		return nil, err
	}
	s := &snapshot{ports: map[string]*portRow{}, ifaces: map[string]*interfaceRow{}, controllers: map[string]*controllerRow{}}
	roots, err := decodeRows[ovsRow](c, tableRoot, rows[0])
	if err != nil {
		return nil, err
	}
	if len(roots) != 1 {
		return nil, fmt.Errorf("the Open_vSwitch table on %s has %d rows, want 1: initialise the database (ovs-vsctl --no-wait init) or start ovs-vswitchd", c.endpoint, len(roots))
	}
	s.root = roots[0]
	if s.bridges, err = decodeRows[bridgeRow](c, tableBridge, rows[1]); err != nil {
		return nil, err
	}
	for _, b := range s.bridges {
		if b.Name == bridge {
			s.bridge = b
		}
	}
	ctrls, err := decodeRows[controllerRow](c, tableController, rows[2])
	if err != nil {
		return nil, err
	}
	for _, r := range ctrls {
		s.controllers[r.UUID] = r
	}
	for i, n := range portNames {
		ps, err := decodeRows[portRow](c, tablePort, rows[3+2*i])
		if err != nil {
			return nil, err
		}
		if len(ps) == 1 {
			s.ports[n] = ps[0]
		}
		is, err := decodeRows[interfaceRow](c, tableInterface, rows[4+2*i])
		if err != nil {
			return nil, err
		}
		if len(is) == 1 {
			s.ifaces[n] = is[0]
		}
	}
	return s, nil
}

// plan is one logical change: the transaction and its description.
type plan struct {
	ops   []ovsdb.Operation
	lines []string
}

// converge reads, plans and commits one logical change, re-reading and
// re-planning (bounded) when a guard shows a concurrent change. It returns
// the committed change's lines (none when nothing had to change).
func converge[S any](ctx context.Context, c *Client, what string, read func() (S, error), planner func(S) (*plan, error)) ([]string, error) {
	for attempt := 1; ; attempt++ {
		s, err := read()
		if err != nil {
			return nil, err
		}
		p, err := planner(s)
		if err != nil {
			return nil, err
		}
		if p == nil || len(p.ops) == 0 {
			return nil, nil
		}
		err = c.commit(ctx, p.ops)
		if err == nil {
			return p.lines, nil
		}
		if !errors.Is(err, errConflict) {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if attempt >= maxAttempts {
			return nil, fmt.Errorf("%s: gave up after %d attempts, the rows kept changing under concurrent writers: %w", what, attempt, err)
		}
		// Jittered pause so racing writers do not retry in lock step.
		d := time.Duration(rand.IntN(2*attempt)+1) * time.Millisecond
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
}

func (c *Client) apply(ctx context.Context, o *options) (*Result, error) {
	res := &Result{Endpoint: c.endpoint, Bridge: o.Bridge}
	log := o.Logger.WithFields(logrus.Fields{"endpoint": c.endpoint, "bridge": o.Bridge})
	names := []string{o.tunnelPort, o.otherPort}
	if o.Host.Uplink != "" {
		names = append(names, o.Host.Uplink)
	}
	read := func() (*snapshot, error) {
		s, err := c.readSnapshot(ctx, o.Bridge, names)
		if err != nil {
			return nil, err
		}
		return s, c.check(s, o)
	}
	steps := []struct {
		what string
		plan func(*snapshot) (*plan, error)
	}{
		{"create bridge " + o.Bridge, c.planCreateBridge(o)},
		{"bridge " + o.Bridge + " settings", c.planBridgeSettings(o)},
		{"bridge " + o.Bridge + " controllers", c.planControllers(o)},
		{"bridge " + o.Bridge + " tunnel port", c.planTunnelPort(o)},
	}
	for i, st := range steps {
		if i == len(steps)-1 && o.Host.IsBond() {
			// A bonded uplink: after fail_mode=secure and the
			// controllers, before the tunnel port (tunnel/bond.go).
			lines, err := converge(ctx, c, "bridge "+o.Bridge+" bond "+o.Host.Uplink,
				func() (*bondSnapshot, error) { return c.readBond(ctx, o) }, c.planBond(o))
			if err != nil {
				return res, err
			}
			for _, l := range lines {
				log.Info(l)
			}
			res.Changes = append(res.Changes, lines...)
		}
		lines, err := converge(ctx, c, st.what, read, st.plan)
		if err != nil {
			return res, err
		}
		for _, l := range lines {
			log.Info(l)
		}
		res.Changes = append(res.Changes, lines...)
	}
	return res, nil
}

// check verifies the preconditions no step may repair: the bridge exists
// (unless it may be created), the uplink is a port of it, and the tunnel
// port names are not taken by another bridge.
func (c *Client) check(s *snapshot, o *options) error {
	up := o.Host.Uplink
	if s.bridge == nil {
		if !o.CreateBridge {
			return fmt.Errorf("bridge %s not found on %s: create it (ovs-vsctl add-br %s; add-port %s %s) or pass --create-bridge",
				o.Bridge, c.endpoint, o.Bridge, o.Bridge, uplinkOr(up))
		}
		if p := s.ports[up]; p != nil && up != "" {
			return c.uplinkElsewhere(s, o, p)
		}
	} else if up != "" && !o.Host.IsBond() { // a bond is made by its own step
		p, ok := s.onBridge(up)
		if !ok {
			if p != nil {
				return c.uplinkElsewhere(s, o, p)
			}
			if s.ifaces[up] != nil {
				// The NIC is an interface of a port with another name: a bond
				// (going back from a bond to one NIC is not automatic).
				return fmt.Errorf("uplink %s is a member of another port (a bond?) on %s, not a port of its own: to go back from a bond to one NIC, run ovs-vsctl del-port %s <bond> -- add-port %s %s (one transaction), or keep the bond in hosts[%s].uplink",
					up, c.endpoint, o.Bridge, o.Bridge, up, o.Host.Name)
			}
			return fmt.Errorf("uplink %s is not a port of bridge %s on %s: add it (ovs-vsctl add-port %s %s), or fix hosts[%s].uplink in the blueprint",
				up, o.Bridge, c.endpoint, o.Bridge, up, o.Host.Name)
		}
	}
	for _, n := range []string{o.tunnelPort, o.otherPort} {
		if _, ok := s.onBridge(n); ok && s.ifaces[n] == nil {
			return fmt.Errorf("port %s on bridge %s on %s has no interface named %s: remove it (ovs-vsctl del-port %s %s) and apply again",
				n, o.Bridge, c.endpoint, n, o.Bridge, n)
		}
		if p := s.ports[n]; p != nil {
			if b := s.owner(p.UUID); b != nil && b.Name != o.Bridge {
				return fmt.Errorf("tunnel port %s already exists on bridge %s on %s (port names are unique per ovsdb-server): remove it (ovs-vsctl del-port %s %s)",
					n, b.Name, c.endpoint, b.Name, n)
			}
		}
	}
	return nil
}

func uplinkOr(up string) string {
	if up == "" {
		return "<uplink>"
	}
	return up
}

func (c *Client) uplinkElsewhere(s *snapshot, o *options, p *portRow) error {
	other := "another bridge"
	if b := s.owner(p.UUID); b != nil {
		other = "bridge " + b.Name
	}
	return fmt.Errorf("uplink %s is a port of %s, not of %s, on %s: move it (ovs-vsctl del-port %s; ovs-vsctl add-port %s %s)",
		p.Name, other, o.Bridge, c.endpoint, p.Name, o.Bridge, p.Name)
}

// zero is the timeout of every wait guard: fail at once, then re-read.
var zero = 0

// guard returns a wait op asserting that row m (selected by its _uuid)
// still has the values of the given fields (pointers into m).
func (c *Client) guard(m model.Model, fields ...any) ([]ovsdb.Operation, error) {
	return c.ovs.Where(m).Wait(ovsdb.WaitConditionEqual, &zero, m, fields...)
}

// updateOps returns the update of fields of row (named by its _uuid; upd
// holds the new values) followed by the mutations muts (their Field
// pointers point into mm, which names the same row); either may be empty.
func (c *Client) updateOps(row, upd model.Model, fields []any, mm model.Model, muts []model.Mutation) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	if len(fields) > 0 {
		u, err := c.ovs.Where(row).Update(upd, fields...)
		if err != nil {
			return nil, err
		}
		ops = append(ops, u...)
	}
	if len(muts) > 0 {
		mu, err := c.ovs.Where(mm).Mutate(mm, muts...)
		if err != nil {
			return nil, err
		}
		ops = append(ops, mu...)
	}
	return ops, nil
}

// setMutations deletes remove from and inserts insert into the set column
// field (a pointer into the model the mutations are applied with).
func setMutations(field any, remove, insert []string) []model.Mutation {
	var muts []model.Mutation
	if len(remove) > 0 {
		muts = append(muts, model.Mutation{Field: field, Mutator: ovsdb.MutateOperationDelete, Value: remove})
	}
	if len(insert) > 0 {
		muts = append(muts, model.Mutation{Field: field, Mutator: ovsdb.MutateOperationInsert, Value: insert})
	}
	return muts
}

// bridgePortsOps returns a guard on bridge b's ports column (as planned
// from) and the mutation that removes and inserts port uuids.
func (c *Client) bridgePortsOps(b *bridgeRow, remove, insert []string) (guard, mutate []ovsdb.Operation, err error) {
	read := &bridgeRow{UUID: b.UUID, Ports: b.Ports}
	if guard, err = c.guard(read, &read.Ports); err != nil {
		return nil, nil, err
	}
	m := &bridgeRow{UUID: b.UUID}
	if mutate, err = c.updateOps(nil, nil, nil, m, setMutations(&m.Ports, remove, insert)); err != nil {
		return nil, nil, err
	}
	return guard, mutate, nil
}

func (c *Client) planCreateBridge(o *options) func(*snapshot) (*plan, error) {
	return func(s *snapshot) (*plan, error) {
		if s.bridge != nil {
			return nil, nil
		}
		var ops []ovsdb.Operation
		other := map[string]string{"datapath-id": o.dpid}
		if o.mac != "" {
			other["hwaddr"] = o.mac
		}
		secure := "secure"
		br := &bridgeRow{
			UUID: "vpcflow_bridge", Name: o.Bridge, FailMode: &secure,
			Protocols: []string{OpenFlowVersion}, OtherConfig: other, DatapathType: o.DatapathType,
		}
		desc := fmt.Sprintf("created bridge %s (datapath_type=%s, fail_mode=secure, protocols=%s, other_config:datapath-id=%s", o.Bridge, o.DatapathType, OpenFlowVersion, o.dpid)
		if o.mac != "" {
			desc += ", other_config:hwaddr=" + o.mac
		}
		desc += ")"
		if up := o.Host.Uplink; up != "" && !o.Host.IsBond() { // a bond: its own step, next
			ifOps, err := c.ovs.Create(&interfaceRow{UUID: "vpcflow_uplink_if", Name: up})
			if err != nil {
				return nil, err
			}
			portOps, err := c.ovs.Create(&portRow{UUID: "vpcflow_uplink", Name: up, Interfaces: []string{"vpcflow_uplink_if"}})
			if err != nil {
				return nil, err
			}
			ops = append(ops, ifOps...)
			ops = append(ops, portOps...)
			br.Ports = []string{"vpcflow_uplink"}
			desc += " with uplink port " + up
		}
		brOps, err := c.ovs.Create(br)
		if err != nil {
			return nil, err
		}
		ops = append(ops, brOps...)
		root := &ovsRow{UUID: s.root.UUID, Bridges: s.root.Bridges}
		g, err := c.guard(root, &root.Bridges)
		if err != nil {
			return nil, err
		}
		m := &ovsRow{UUID: s.root.UUID}
		mut, err := c.ovs.Where(m).Mutate(m, model.Mutation{
			Field: &m.Bridges, Mutator: ovsdb.MutateOperationInsert, Value: []string{br.UUID},
		})
		if err != nil {
			return nil, err
		}
		ops = append(g, append(ops, mut...)...)
		return &plan{ops: ops, lines: []string{desc}}, nil
	}
}

func (c *Client) planBridgeSettings(o *options) func(*snapshot) (*plan, error) {
	return func(s *snapshot) (*plan, error) {
		b := s.bridge
		var lines []string
		upd := &bridgeRow{UUID: b.UUID}
		var fields []any
		if !slices.Equal(b.Protocols, []string{OpenFlowVersion}) {
			upd.Protocols = []string{OpenFlowVersion}
			fields = append(fields, &upd.Protocols)
			lines = append(lines, fmt.Sprintf("%s: protocols %s -> [%s]", o.Bridge, fmtSet(b.Protocols), OpenFlowVersion))
		}
		if b.FailMode == nil || *b.FailMode != "secure" {
			secure := "secure"
			upd.FailMode = &secure
			fields = append(fields, &upd.FailMode)
			lines = append(lines, fmt.Sprintf("%s: fail_mode %s -> secure", o.Bridge, strOr(b.FailMode, "unset (standalone)")))
		}
		// Mutations name their column by a pointer into the model they are
		// applied with.
		mm := &bridgeRow{UUID: b.UUID}
		var muts []model.Mutation
		setKey := func(key, want string) {
			cur, ok := b.OtherConfig[key]
			if ok && strings.EqualFold(cur, want) {
				return
			}
			was := "unset"
			if ok {
				was = cur
			}
			muts = append(muts,
				model.Mutation{Field: &mm.OtherConfig, Mutator: ovsdb.MutateOperationDelete, Value: []string{key}},
				model.Mutation{Field: &mm.OtherConfig, Mutator: ovsdb.MutateOperationInsert, Value: map[string]string{key: want}})
			lines = append(lines, fmt.Sprintf("%s: other_config:%s %s -> %s", o.Bridge, key, was, want))
		}
		setKey("datapath-id", o.dpid)
		if o.mac != "" {
			setKey("hwaddr", o.mac)
		}
		if len(lines) == 0 {
			return nil, nil
		}
		read := *b
		ops, err := c.guard(&read, &read.FailMode, &read.Protocols, &read.OtherConfig)
		if err != nil {
			return nil, err
		}
		u, err := c.updateOps(&bridgeRow{UUID: b.UUID}, upd, fields, mm, muts)
		if err != nil {
			return nil, err
		}
		return &plan{ops: append(ops, u...), lines: lines}, nil
	}
}

func (c *Client) planControllers(o *options) func(*snapshot) (*plan, error) {
	return func(s *snapshot) (*plan, error) {
		b := s.bridge
		var lines []string
		var ops []ovsdb.Operation
		var remove, insert []string
		kept := map[string]bool{}
		for _, id := range b.Controller {
			r := s.controllers[id]
			if r == nil {
				continue // referential integrity makes this impossible
			}
			switch {
			case !slices.Contains(o.Controllers, r.Target):
				remove = append(remove, id)
				lines = append(lines, fmt.Sprintf("%s: controller %s removed (not a blueprint controller)", o.Bridge, r.Target))
				continue
			case kept[r.Target]:
				remove = append(remove, id)
				lines = append(lines, fmt.Sprintf("%s: duplicate controller row for %s removed", o.Bridge, r.Target))
				continue
			}
			kept[r.Target] = true
			upd := &controllerRow{UUID: id}
			var fields []any
			var what []string
			if intOr(r.MaxBackoff, -1) != o.MaxBackoffMS {
				upd.MaxBackoff = &o.MaxBackoffMS
				fields = append(fields, &upd.MaxBackoff)
				what = append(what, fmt.Sprintf("max_backoff %s -> %d", fmtInt(r.MaxBackoff), o.MaxBackoffMS))
			}
			if intOr(r.InactivityProbe, -1) != o.InactivityProbeMS {
				upd.InactivityProbe = &o.InactivityProbeMS
				fields = append(fields, &upd.InactivityProbe)
				what = append(what, fmt.Sprintf("inactivity_probe %s -> %d", fmtInt(r.InactivityProbe), o.InactivityProbeMS))
			}
			if len(fields) == 0 {
				continue
			}
			read := *r
			g, err := c.guard(&read, &read.MaxBackoff, &read.InactivityProbe)
			if err != nil {
				return nil, err
			}
			u, err := c.ovs.Where(&controllerRow{UUID: id}).Update(upd, fields...)
			if err != nil {
				return nil, err
			}
			ops = append(ops, g...)
			ops = append(ops, u...)
			lines = append(lines, fmt.Sprintf("%s: controller %s: %s", o.Bridge, r.Target, strings.Join(what, ", ")))
		}
		for i, t := range o.Controllers {
			if kept[t] {
				continue
			}
			name := fmt.Sprintf("vpcflow_ctl%d", i)
			ins, err := c.ovs.Create(&controllerRow{UUID: name, Target: t, MaxBackoff: &o.MaxBackoffMS, InactivityProbe: &o.InactivityProbeMS})
			if err != nil {
				return nil, err
			}
			ops = append(ops, ins...)
			insert = append(insert, name)
			lines = append(lines, fmt.Sprintf("%s: controller %s added (max_backoff=%d, inactivity_probe=%d, connection_mode unset = in-band until the watcher closes it)",
				o.Bridge, t, o.MaxBackoffMS, o.InactivityProbeMS))
		}
		if len(ops) == 0 && len(remove) == 0 {
			return nil, nil
		}
		read := &bridgeRow{UUID: b.UUID, Controller: b.Controller}
		g, err := c.guard(read, &read.Controller)
		if err != nil {
			return nil, err
		}
		ops = append(g, ops...)
		m := &bridgeRow{UUID: b.UUID}
		mu, err := c.updateOps(nil, nil, nil, m, setMutations(&m.Controller, remove, insert))
		if err != nil {
			return nil, err
		}
		return &plan{ops: append(ops, mu...), lines: lines}, nil
	}
}

func (c *Client) planTunnelPort(o *options) func(*snapshot) (*plan, error) {
	return func(s *snapshot) (*plan, error) {
		b := s.bridge
		want := map[string]string{optRemoteIP: flowValue, optKey: flowValue, optLocalIP: o.addr.String()}
		var ops []ovsdb.Operation
		var lines []string
		var removePorts, insertPorts []string

		if _, ok := s.onBridge(o.tunnelPort); ok && s.ifaces[o.tunnelPort] != nil {
			// The port exists: repair its interface's type and options.
			ifc := s.ifaces[o.tunnelPort]
			var what []string
			var fields []any
			upd := &interfaceRow{UUID: ifc.UUID}
			if ifc.Type != o.tunnelType {
				upd.Type = o.tunnelType
				fields = append(fields, &upd.Type)
				what = append(what, fmt.Sprintf("type %q -> %s", ifc.Type, o.tunnelType))
			}
			m := &interfaceRow{UUID: ifc.UUID}
			var muts []model.Mutation
			for _, k := range []string{optRemoteIP, optKey, optLocalIP} {
				cur, ok := ifc.Options[k]
				if ok && cur == want[k] {
					continue
				}
				muts = append(muts,
					model.Mutation{Field: &m.Options, Mutator: ovsdb.MutateOperationDelete, Value: []string{k}},
					model.Mutation{Field: &m.Options, Mutator: ovsdb.MutateOperationInsert, Value: map[string]string{k: want[k]}})
				was := "unset"
				if ok {
					was = cur
				}
				what = append(what, fmt.Sprintf("options:%s %s -> %s", k, was, want[k]))
			}
			if len(what) > 0 {
				read := *ifc
				g, err := c.guard(&read, &read.Type, &read.Options)
				if err != nil {
					return nil, err
				}
				u, err := c.updateOps(&interfaceRow{UUID: ifc.UUID}, upd, fields, m, muts)
				if err != nil {
					return nil, err
				}
				ops = append(append(ops, g...), u...)
				lines = append(lines, fmt.Sprintf("%s: tunnel port %s: %s", o.Bridge, o.tunnelPort, strings.Join(what, ", ")))
			}
		} else {
			ifOps, err := c.ovs.Create(&interfaceRow{UUID: "vpcflow_tun_if", Name: o.tunnelPort, Type: o.tunnelType, Options: want})
			if err != nil {
				return nil, err
			}
			portOps, err := c.ovs.Create(&portRow{UUID: "vpcflow_tun", Name: o.tunnelPort, Interfaces: []string{"vpcflow_tun_if"}})
			if err != nil {
				return nil, err
			}
			ops = append(ops, ifOps...)
			ops = append(ops, portOps...)
			insertPorts = append(insertPorts, "vpcflow_tun")
			lines = append(lines, fmt.Sprintf("%s: tunnel port %s added (type=%s, options:remote_ip=flow, options:key=flow, options:local_ip=%s)",
				o.Bridge, o.tunnelPort, o.tunnelType, o.addr))
		}
		if p, ok := s.onBridge(o.otherPort); ok {
			removePorts = append(removePorts, p.UUID)
			lines = append(lines, fmt.Sprintf("%s: tunnel port %s removed (encapsulation is now %s)", o.Bridge, o.otherPort, o.Encapsulation))
		}
		if len(ops) == 0 && len(removePorts) == 0 {
			return nil, nil
		}
		g, mu, err := c.bridgePortsOps(b, removePorts, insertPorts)
		if err != nil {
			return nil, err
		}
		return &plan{ops: append(append(g, ops...), mu...), lines: lines}, nil
	}
}

func fmtSet(s []string) string {
	if len(s) == 0 {
		return "[] (all OpenFlow versions)"
	}
	return "[" + strings.Join(s, ",") + "]"
}

func strOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

func fmtInt(p *int) string {
	if p == nil {
		return "unset"
	}
	return strconv.Itoa(*p)
}
