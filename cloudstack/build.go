package cloudstack

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"go.yaml.in/yaml/v3"

	"github.com/vpcflow/vpcflow/flows"
)

// Base is what CloudStack does not know: the blueprint's top-level policy
// and per-host datapath settings. It is a YAML file with the blueprint's
// top-level keys (without vpcs:) plus host_defaults, and hosts: entries
// that override what is derived from CloudStack, keyed by CloudStack host
// name.
type Base struct {
	Version       int                 `yaml:"version"`
	Revision      uint32              `yaml:"revision"`
	Encapsulation flows.Encapsulation `yaml:"encapsulation"`
	Management    flows.Management    `yaml:"management"`
	TrustedPeers  []string            `yaml:"trusted_peers"`
	Controllers   []string            `yaml:"controllers"`
	// HostDefaults applies to every CloudStack host without its own value
	// (uplink, ovsdb; name, datapath_id, tunnel_ip and tunnel_mac are per
	// host only).
	HostDefaults HostOverride   `yaml:"host_defaults"`
	Hosts        []HostOverride `yaml:"hosts"`

	Source string `yaml:"-"` // file name
}

// HostOverride sets a host's blueprint fields instead of the derived
// ones. Name is the CloudStack host name.
type HostOverride struct {
	Name       string `yaml:"name"`
	DatapathID string `yaml:"datapath_id"`
	TunnelIP   string `yaml:"tunnel_ip"`
	TunnelMAC  string `yaml:"tunnel_mac"`
	// Uplink is `uplink: eth0` or the bond mapping
	// (`{name: bond0, bond: [eth0, eth1], lacp: active}`), as in a blueprint.
	Uplink flows.UplinkSpec `yaml:"uplink"`
	OVSDB  string           `yaml:"ovsdb"`
}

// LoadBase reads and checks a base file (strict: unknown keys are errors).
func LoadBase(path string) (*Base, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cloudstack base file: %w", err)
	}
	return ParseBase(path, data)
}

// ParseBase decodes a base file; name is used in errors.
func ParseBase(name string, data []byte) (*Base, error) {
	var b Base
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("%s: %v (the base file holds version, encapsulation, management, trusted_peers, controllers, host_defaults and hosts; VPCs come from CloudStack)", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	b.Source = name
	var errs []string
	if b.Revision != 0 {
		errs = append(errs, fmt.Sprintf("%s: revision: %d: a blueprint built from CloudStack has no revision of its own (every valid change is applied, see docs/cloudstack.md#revisions): remove revision or set it to 0", name, b.Revision))
	}
	if b.HostDefaults.Name != "" || b.HostDefaults.DatapathID != "" || b.HostDefaults.TunnelIP != "" || b.HostDefaults.TunnelMAC != "" {
		errs = append(errs, fmt.Sprintf("%s: host_defaults: only uplink and ovsdb may have defaults: name, datapath_id, tunnel_ip and tunnel_mac are per host (under hosts:)", name))
	}
	seen := map[string]int{}
	for i, h := range b.Hosts {
		switch j, dup := seen[h.Name]; {
		case h.Name == "":
			errs = append(errs, fmt.Sprintf("%s: hosts[%d].name: name is missing: give the CloudStack host name this entry overrides", name, i))
		case dup:
			errs = append(errs, fmt.Sprintf("%s: hosts[%d].name: host %q is already listed as hosts[%d]: keep one entry per host", name, i, h.Name, j))
		default:
			seen[h.Name] = i
		}
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return &b, nil
}

// DefaultPortTemplate names a NIC's port "vm" + its MAC's 12 hex digits
// (14 characters, within Linux's 15, unique because MACs are, and the same
// on every host, so a live-migrated VM keeps its port name).
const DefaultPortTemplate = "vm{{.MACHex}}"

// PortFields are what a port template may use.
type PortFields struct {
	VM           string // CloudStack VM name
	InstanceName string // libvirt domain name, e.g. i-2-15-VM
	VMID         string
	NICID        string
	DeviceID     int    // CloudStack's deviceid (0 = first NIC), -1 when the API did not report it
	Tier         string // the blueprint tier name
	MAC          string // 52:54:00:0a:01:01
	MACHex       string // 5254000a0101
	Router       bool
}

// ParsePortTemplate parses a text/template for port names.
func ParsePortTemplate(s string) (*template.Template, error) {
	if s == "" {
		s = DefaultPortTemplate
	}
	t, err := template.New("port").Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--port-template %q: %v (fields: .VM .InstanceName .VMID .NICID .DeviceID .Tier .MAC .MACHex .Router)", s, err)
	}
	if _, err := execPort(t, PortFields{MAC: "52:54:00:00:00:01", MACHex: "525400000001"}); err != nil {
		return nil, fmt.Errorf("--port-template %q: %v (fields: .VM .InstanceName .VMID .NICID .DeviceID .Tier .MAC .MACHex .Router)", s, err)
	}
	return t, nil
}

func execPort(t *template.Template, f PortFields) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, f); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Skip is a CloudStack object left out of the blueprint, and why.
type Skip struct {
	Object string
	Reason string
}

func (s Skip) String() string { return s.Object + ": " + s.Reason }

// Result is a built blueprint.
type Result struct {
	Blueprint *flows.Blueprint // validated by flows.Parse
	YAML      []byte           // what was parsed (with comments naming the CloudStack objects)
	Skipped   []Skip
}

// BuildOptions tune Build.
type BuildOptions struct {
	// PortTemplate names VM ports (nil = DefaultPortTemplate), unless
	// Ports is set.
	PortTemplate *template.Template
	// Ports, when not nil, names VM ports from each host's OVSDB instead:
	// per blueprint host, the port whose external_ids:attached-mac is the
	// NIC's MAC (what libvirt records). A NIC whose host has no entry, or
	// whose MAC no port carries, is skipped; on a host whose OVSDB could
	// not be read it keeps its port from Previous, else it is skipped.
	Ports map[string]HostPorts
	// Previous is the blueprint of the last successful build (for Ports).
	Previous *flows.Blueprint
	// Endpoint names the CloudStack API in the YAML header.
	Endpoint string
}

// HostPorts is one host's ports by guest MAC, or why they are unknown.
type HostPorts struct {
	ByMAC map[string]string
	Err   error
}

// SourceName is the file name of errors in a CloudStack-built blueprint.
const SourceName = "cloudstack"

// Build turns CloudStack objects and a base file into a blueprint: it
// writes the blueprint as YAML and runs it through flows.Parse, so it is
// validated exactly like a file. Validation errors name the CloudStack
// object they come from. Objects vpcflow cannot represent are returned in
// Result.Skipped (and written as comments), never dropped silently.
func Build(o *Objects, base *Base, opts BuildOptions) (*Result, error) {
	if opts.PortTemplate == nil {
		opts.PortTemplate, _ = ParsePortTemplate("")
	}
	b := &builder{o: o, base: base, opts: opts, prov: map[string]string{}}
	bp := b.build()
	if len(b.errs) > 0 {
		return nil, errors.New(strings.Join(b.errs, "\n"))
	}
	data := b.emit(bp)
	parsed, err := flows.Parse(SourceName, data)
	if err != nil {
		var ve *flows.ValidationError
		if errors.As(err, &ve) {
			return nil, b.attribute(ve)
		}
		return nil, err
	}
	return &Result{Blueprint: parsed, YAML: data, Skipped: b.skipped}, nil
}

type builder struct {
	o       *Objects
	base    *Base
	opts    BuildOptions
	skipped []Skip
	// prov maps blueprint field paths (hosts[1], vpcs[0].tiers[2].vms[0])
	// to the CloudStack object they came from.
	prov map[string]string
	// comments per path, written at the end of the object's line.
	notes map[string]string
	// errs are CloudStack answers that cannot be built from at all.
	errs []string
	// pol is the policy part of the build (policy_build.go).
	pol *policyState
}

func (b *builder) skip(object, format string, args ...any) {
	b.skipped = append(b.skipped, Skip{Object: object, Reason: fmt.Sprintf(format, args...)})
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func hostObj(h *Host) string { return fmt.Sprintf("host %q (id %s)", h.Name, h.ID) }
func vpcObj(v *VPC) string   { return fmt.Sprintf("vpc %q (id %s)", v.Name, v.ID) }
func netObj(n *Network) string {
	return fmt.Sprintf("network %q (id %s)", n.Name, n.ID)
}
func vmObj(v *VM) string {
	kind := "vm"
	if v.Router {
		kind = "router"
	}
	return fmt.Sprintf("%s %q (id %s)", kind, v.Name, v.ID)
}

// excludedHostStates are host states whose VMs no longer run there. Hosts
// in every other state stay in the blueprint: a Disconnected or Alert host
// has lost its CloudStack agent, not its VMs, and removing it would remove
// its guests' flows.
var excludedHostStates = map[string]bool{"Down": true, "Removed": true, "Error": true}

// runningVMStates are the VM states whose NICs are on a host: a Migrating
// VM still runs on its source host (CloudStack's hostid) until the
// migration completes.
var runningVMStates = map[string]bool{"Running": true, "Migrating": true}

// DatapathIDFromUUID derives a host's datapath id when the base file does
// not give one: the first 16 hex digits of the CloudStack host uuid
// (dashes removed), or of its SHA-256 when the id is not hex.
func DatapathIDFromUUID(id string) string {
	h := strings.ToLower(strings.ReplaceAll(id, "-", ""))
	if len(h) >= 16 {
		if _, err := strconv.ParseUint(h[:16], 16, 64); err == nil {
			return h[:16]
		}
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:8])
}

// sanitize maps a CloudStack name to a blueprint name (letters, digits,
// '-', '_', '.'; at most 63; starting with a letter or digit).
func sanitize(s string) string {
	var r strings.Builder
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if ok {
			r.WriteRune(c)
		} else {
			r.WriteByte('-')
		}
	}
	out := strings.TrimLeft(r.String(), "-_.")
	if len(out) > 54 {
		out = out[:54]
	}
	return out
}

// unique makes names unique: a name several objects share gets "-" and
// the first 8 characters of the object id appended (deterministically, for
// every holder, so a name never depends on listing order).
func unique(names []string, ids []string) []string {
	n := map[string]int{}
	for _, s := range names {
		n[s]++
	}
	out := make([]string, len(names))
	for i, s := range names {
		if n[s] > 1 || s == "" {
			if s == "" {
				s = "id"
			}
			s += "-" + short(ids[i])
		}
		out[i] = s
	}
	return out
}

type tierRef struct {
	vpc, tier int
	obj       string
}

func (b *builder) build() *flows.Blueprint {
	base := b.base
	bp := &flows.Blueprint{Version: base.Version, Revision: base.Revision, Encapsulation: base.Encapsulation,
		Management: base.Management, TrustedPeers: base.TrustedPeers, Controllers: base.Controllers}
	b.notes = map[string]string{}
	b.preparePolicy()

	// Hosts.
	over := map[string]HostOverride{}
	for _, h := range base.Hosts {
		over[h.Name] = h
	}
	var hosts []*Host
	for i := range b.o.Hosts {
		h := &b.o.Hosts[i]
		switch {
		case h.Type != "" && h.Type != "Routing":
			b.skip(hostObj(h), "type %s: only hypervisor (Routing) hosts carry a cloudbr0", h.Type)
		case !strings.EqualFold(h.Hypervisor, "KVM") && h.Hypervisor != "":
			b.skip(hostObj(h), "hypervisor %s: vpcflow programs Open vSwitch on KVM hosts only", h.Hypervisor)
		case excludedHostStates[h.State]:
			b.skip(hostObj(h), "state %s: its VMs do not run there", h.State)
		default:
			hosts = append(hosts, h)
		}
	}
	sort.Slice(hosts, func(i, j int) bool {
		return hosts[i].Name < hosts[j].Name || hosts[i].Name == hosts[j].Name && hosts[i].ID < hosts[j].ID
	})
	hostName := map[string]string{} // CloudStack id -> blueprint name
	used := map[string]bool{}
	for i, h := range hosts {
		ov, has := over[h.Name]
		used[h.Name] = has
		bh := flows.Host{Name: h.Name, DatapathID: DatapathIDFromUUID(h.ID), TunnelIP: h.IPAddress,
			UplinkSpec: base.HostDefaults.Uplink, OVSDB: base.HostDefaults.OVSDB}
		src := "datapath_id from the host uuid"
		if ov.DatapathID != "" {
			bh.DatapathID, src = ov.DatapathID, "datapath_id from the base file"
		}
		if ov.TunnelIP != "" {
			bh.TunnelIP = ov.TunnelIP
		}
		if ov.TunnelMAC != "" {
			bh.TunnelMAC = ov.TunnelMAC
		}
		if ov.Uplink.Name != "" || ov.Uplink.IsBond() {
			bh.UplinkSpec = ov.Uplink
		}
		if ov.OVSDB != "" {
			bh.OVSDB = ov.OVSDB
		}
		bp.Hosts = append(bp.Hosts, bh)
		path := fmt.Sprintf("hosts[%d]", i)
		b.prov[path] = hostObj(h)
		b.notes[path] = fmt.Sprintf("cloudstack host %s, state %s; %s", h.ID, h.State, src)
		hostName[h.ID] = h.Name
	}
	for _, ov := range base.Hosts {
		if !used[ov.Name] {
			b.skip(fmt.Sprintf("base file host %q", ov.Name), "no KVM host of that name in CloudStack (or it was skipped): its overrides are unused")
		}
	}

	// VPCs.
	vpcs := make([]*VPC, 0, len(b.o.VPCs))
	for i := range b.o.VPCs {
		vpcs = append(vpcs, &b.o.VPCs[i])
	}
	sort.Slice(vpcs, func(i, j int) bool {
		return vpcs[i].Name < vpcs[j].Name || vpcs[i].Name == vpcs[j].Name && vpcs[i].ID < vpcs[j].ID
	})
	{
		names, ids := make([]string, len(vpcs)), make([]string, len(vpcs))
		for i, v := range vpcs {
			names[i], ids[i] = sanitize(v.Name), v.ID
		}
		for i, n := range unique(names, ids) {
			vpc := flows.VPC{Name: n}
			if vpcs[i].DistributedVPCRouter {
				vpc.Routing = flows.RoutingDistributed
			}
			bp.VPCs = append(bp.VPCs, vpc)
			path := fmt.Sprintf("vpcs[%d]", i)
			b.prov[path] = vpcObj(vpcs[i])
			b.notes[path] = "cloudstack vpc " + vpcs[i].ID
		}
	}
	vpcIdx := map[string]int{}
	for i, v := range vpcs {
		vpcIdx[v.ID] = i
	}

	// Tiers: VPC guest networks with an IPv4 CIDR and a vxlan/vlan
	// broadcast URI.
	type tierSrc struct {
		n    *Network
		vni  uint32
		vlan uint16
	}
	perVPC := make([][]tierSrc, len(vpcs))
	for i := range b.o.Networks {
		n := &b.o.Networks[i]
		vi, ok := vpcIdx[n.VPCID]
		switch {
		case n.VPCID == "":
			b.skip(netObj(n), "not a VPC tier (type %s): vpcflow enforces VPC tiers only", orDash(n.Type))
			continue
		case !ok:
			b.skip(netObj(n), "its VPC %s is not in listVPCs", n.VPCID)
			continue
		case n.CIDR == "":
			if n.IP6CIDR != "" {
				b.skip(netObj(n), "IPv6-only (ip6cidr %s): vpcflow drops IPv6 from VMs until IPv6 is specified", n.IP6CIDR)
			} else {
				b.skip(netObj(n), "no IPv4 cidr")
			}
			continue
		}
		vni, vlan, why := parseBroadcastURI(n.BroadcastURI)
		if why != "" {
			b.skip(netObj(n), "%s", why)
			continue
		}
		if n.IP6CIDR != "" {
			b.skip(netObj(n)+" ip6cidr "+n.IP6CIDR, "IPv6 is not represented (IPv6 from VMs is dropped): the tier is kept with its IPv4 cidr")
		}
		perVPC[vi] = append(perVPC[vi], tierSrc{n, vni, vlan})
	}
	tiers := map[string]tierRef{} // network id -> tier
	for vi := range perVPC {
		ts := perVPC[vi]
		sort.Slice(ts, func(i, j int) bool {
			return ts[i].n.Name < ts[j].n.Name || ts[i].n.Name == ts[j].n.Name && ts[i].n.ID < ts[j].n.ID
		})
		names, ids := make([]string, len(ts)), make([]string, len(ts))
		for i, t := range ts {
			names[i], ids[i] = sanitize(t.n.Name), t.n.ID
		}
		for i, name := range unique(names, ids) {
			t := ts[i]
			tier := flows.Tier{Name: name, VNI: t.vni, CIDR: t.n.CIDR}
			if t.vlan != 0 {
				tier.Type, tier.VLAN = flows.TierVLAN, t.vlan
			}
			if bp.VPCs[vi].IsDistributed() {
				tier.Gateway = t.n.Gateway // routed by the switch: its gateway answered there
			}
			bp.VPCs[vi].Tiers = append(bp.VPCs[vi].Tiers, tier)
			path := fmt.Sprintf("vpcs[%d].tiers[%d]", vi, i)
			obj := netObj(t.n) + " of " + vpcObj(vpcs[vi])
			b.prov[path] = obj
			b.notes[path] = fmt.Sprintf("cloudstack network %s, %s", t.n.ID, t.n.BroadcastURI)
			tiers[t.n.ID] = tierRef{vi, i, obj}
		}
	}

	// VM and router NICs.
	type nicSrc struct {
		vm   *VM
		nic  *NIC
		name string
		tier tierRef
	}
	var nics []nicSrc
	skippedNet := map[string]bool{}
	for i := range b.o.Networks {
		if _, ok := tiers[b.o.Networks[i].ID]; !ok {
			skippedNet[b.o.Networks[i].ID] = true
		}
	}
	for i := range b.o.VMs {
		vm := &b.o.VMs[i]
		if runningVMStates[vm.State] && vm.HostID == "" {
			// ResponseView Full (root admin) carries hostid; without it
			// every VM would be skipped and the policy would shrink.
			b.errs = append(b.errs, fmt.Sprintf("cloudstack: %s is %s but CloudStack did not say on which host (no hostid): the API key must be a root admin's, whose answers carry hostid, hostname and instancename", vmObj(vm), vm.State))
			continue
		}
		if vm.Router && vm.IsRedundantRouter && vm.RedundantState != "PRIMARY" && vm.RedundantState != "MASTER" {
			b.skip(vmObj(vm), "redundant router in state %s: a tier has one router NIC, the PRIMARY's (after a failover the next fetch moves it)", orDash(vm.RedundantState))
			continue
		}
		if !runningVMStates[vm.State] {
			b.skip(vmObj(vm), "state %s: only Running (and Migrating) VMs have NICs on a host", vm.State)
			continue
		}
		if _, ok := hostName[vm.HostID]; !ok {
			b.skip(vmObj(vm), "its host %q (id %s) is not a KVM host in the blueprint", vm.HostName, orDash(vm.HostID))
			continue
		}
		for j := range vm.NICs {
			nic := &vm.NICs[j]
			obj := vmObj(vm) + " " + nic.Label()
			t, ok := tiers[nic.NetworkID]
			switch {
			case !ok && skippedNet[nic.NetworkID]:
				b.skip(obj, "its network %q (id %s) is not represented (see the network's entry)", nic.NetworkName, nic.NetworkID)
				continue
			case !ok:
				b.skip(obj, "its network %q (id %s) is not a VPC tier in listNetworks (e.g. a public or control NIC)", orDash(nic.NetworkName), orDash(nic.NetworkID))
				continue
			case nic.IPAddress == "":
				b.skip(obj, "no IPv4 address (ip6address %s): vpcflow drops IPv6 from VMs", orDash(nic.IP6Address))
				continue
			}
			if why := b.sgNICSkip(vm, nic); why != "" {
				b.skip(obj, "%s", why)
				continue
			}
			if nic.IP6Address != "" {
				b.skip(obj+" ip6address "+nic.IP6Address, "IPv6 is not represented: the NIC is kept with its IPv4 address")
			}
			// The default NIC carries the VM's name, any other NAME-TIER
			// (CloudStack gives a VM at most one NIC per network; routers
			// have no default tier NIC). deviceid is not used: the API
			// often leaves it out of listVirtualMachines.
			name := vm.Name
			if !nic.IsDefault {
				name = vm.Name + "-" + bp.VPCs[t.vpc].Tiers[t.tier].Name
			}
			nics = append(nics, nicSrc{vm: vm, nic: nic, name: sanitize(name), tier: t})
		}
	}
	sort.Slice(nics, func(i, j int) bool {
		if nics[i].name != nics[j].name {
			return nics[i].name < nics[j].name
		}
		return nics[i].nic.ID < nics[j].nic.ID
	})
	{
		names, ids := make([]string, len(nics)), make([]string, len(nics))
		for i, n := range nics {
			names[i], ids[i] = n.name, n.nic.ID
		}
		for i, name := range unique(names, ids) {
			nics[i].name = name
		}
	}
	for _, n := range nics {
		mac := strings.ToLower(n.nic.MACAddress)
		host := hostName[n.vm.HostID]
		var port, portNote string
		var err error
		if b.opts.Ports != nil {
			var why string
			port, portNote, why = b.ovsdbPort(host, mac)
			if why != "" {
				b.skip(vmObj(n.vm)+" "+n.nic.Label(), "%s", why)
				continue
			}
		} else {
			port, err = execPort(b.opts.PortTemplate, PortFields{VM: n.vm.Name, InstanceName: n.vm.InstanceName, VMID: n.vm.ID,
				NICID: n.nic.ID, DeviceID: n.nic.Device(), Tier: bp.VPCs[n.tier.vpc].Tiers[n.tier.tier].Name, MAC: mac, MACHex: strings.ReplaceAll(mac, ":", ""), Router: n.vm.Router})
			if err != nil {
				port = "" // reported by validation as a missing port, attributed to the NIC
			}
		}
		vm := flows.VM{Name: n.name, Host: host, Port: port, MAC: mac, IP: n.nic.IPAddress}
		if n.vm.Router {
			vm.Role = flows.RoleRouter
		}
		t := &bp.VPCs[n.tier.vpc].Tiers[n.tier.tier]
		path := fmt.Sprintf("vpcs[%d].tiers[%d].vms[%d]", n.tier.vpc, n.tier.tier, len(t.VMs))
		b.pol.placed = append(b.pol.placed, placedNIC{n.tier.vpc, n.tier.tier, len(t.VMs), n.vm, n.nic})
		t.VMs = append(t.VMs, vm)
		b.prov[path] = vmObj(n.vm) + " " + n.nic.Label()
		label := n.nic.Label()
		if n.nic.DeviceID != nil {
			label += " (nic id " + n.nic.ID + ")"
		}
		note := fmt.Sprintf("cloudstack %s %s, vm id %s, state %s", strings.SplitN(vmObj(n.vm), " (", 2)[0], label, n.vm.ID, n.vm.State)
		if err != nil {
			note += "; port template failed: " + err.Error()
		}
		b.notes[path] = note + portNote
	}
	b.buildPolicy(bp, vpcs, tiers)
	return bp
}

// ovsdbPort names a NIC's port from its host's OVSDB (BuildOptions.Ports):
// the port, a note for the YAML comment, or why the NIC is skipped.
func (b *builder) ovsdbPort(host, mac string) (port, note, why string) {
	hp, ok := b.opts.Ports[host]
	if !ok {
		return "", "", fmt.Sprintf("host %s has no ovsdb endpoint (set ovsdb under host_defaults or the host in the base file): its port names cannot be read", host)
	}
	if hp.Err == nil {
		if p, ok := hp.ByMAC[mac]; ok {
			return p, "; port from OVSDB", ""
		}
		return "", "", fmt.Sprintf("no port of cloudbr0 on %s has external_ids:attached-mac=%s (not plugged in yet?)", host, mac)
	}
	if prev := b.opts.Previous; prev != nil {
		for _, v := range prev.VPCs {
			for _, t := range v.Tiers {
				for _, m := range t.VMs {
					if m.Host == host && strings.EqualFold(m.MAC, mac) {
						return m.Port, "; port from the previous fetch (OVSDB of " + host + " unreadable)", ""
					}
				}
			}
		}
	}
	return "", "", fmt.Sprintf("host %s's OVSDB could not be read (%v) and no earlier fetch named this NIC's port", host, hp.Err)
}

// OVSDBEndpoint is the ovsdb endpoint Build gives the CloudStack host
// called name ("" = none).
func (b *Base) OVSDBEndpoint(name string) string {
	for _, h := range b.Hosts {
		if h.Name == name && h.OVSDB != "" {
			return h.OVSDB
		}
	}
	return b.HostDefaults.OVSDB
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseBroadcastURI maps a tier's isolation: vxlan://N is an overlay tier
// with VNI N; vlan://N a VLAN tier (type: vlan) with 802.1Q id N.
func parseBroadcastURI(s string) (vni uint32, vlan uint16, why string) {
	if s == "" {
		return 0, 0, "no broadcasturi yet (CloudStack assigns it when the network is implemented, i.e. when its first VM starts)"
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "vxlan" && scheme != "vlan") {
		return 0, 0, fmt.Sprintf("broadcasturi %q: only vxlan://N (overlay tier) and vlan://N (VLAN tier) isolation are mapped", s)
	}
	n, err := strconv.ParseUint(rest, 10, 32)
	if scheme == "vlan" {
		if err != nil || n == 0 || n > 4094 {
			return 0, 0, fmt.Sprintf("broadcasturi %q: want vlan://N with N in 1..4094", s)
		}
		return 0, uint16(n), ""
	}
	if err != nil || n == 0 || n > 1<<24-1 {
		return 0, 0, fmt.Sprintf("broadcasturi %q: want vxlan://N with N in 1..16777215", s)
	}
	return uint32(n), 0, ""
}

// attribute rewrites validation errors of the generated YAML so each names
// the CloudStack object (or the base file) it comes from.
func (b *builder) attribute(ve *flows.ValidationError) error {
	paths := make([]string, 0, len(b.prov))
	for p := range b.prov {
		paths = append(paths, p)
	}
	// Longest first: vms[0] before tiers[0] before vpcs[0].
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	out := &flows.ValidationError{}
	for _, fe := range ve.Errors {
		obj := ""
		for _, p := range paths {
			if fe.Field == p || strings.HasPrefix(fe.Field, p+".") || strings.HasPrefix(fe.Field, p+"[") {
				obj = b.prov[p]
				break
			}
		}
		if obj == "" {
			obj = "base file " + b.base.Source
		}
		field := obj
		if fe.Field != "" {
			field += " (" + fe.Field + ")"
		}
		out.Errors = append(out.Errors, flows.FieldError{File: SourceName, Field: field, Msg: fe.Msg})
	}
	return out
}
