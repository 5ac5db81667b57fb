// Package flows is vpcflow's pure core: the blueprint model (parse, defaults,
// validate), the pipeline (every table declared once) and the compiler that
// turns a blueprint into the flows one host's cloudbr0 must carry. It does no
// I/O beyond reading a blueprint file in Load.
package flows

import "net/netip"

// Encapsulation is the overlay tunnel protocol of a blueprint.
type Encapsulation string

const (
	// EncapVXLAN is VXLAN over UDP port 4789 (the default).
	EncapVXLAN Encapsulation = "vxlan"
	// EncapGRE is GRE, IP protocol 47, with the tier's VNI as GRE key.
	EncapGRE Encapsulation = "gre"
)

// DefaultHostPorts are the host service ports guests never reach:
// ssh, the CloudStack agent, libvirt (tcp/tls), OVSDB and OpenFlow.
var DefaultHostPorts = []uint16{22, 8250, 16509, 16514, 6640, 6653}

// MaxRevision is the largest blueprint revision: it is carried in the 24
// revision bits of every flow cookie.
const MaxRevision = 1<<24 - 1

// Blueprint is the declarative description of the whole cloud (DESIGN §2).
// Field comments name the YAML keys.
type Blueprint struct {
	Version       int           `yaml:"version"`       // schema version, must be 1
	Revision      uint32        `yaml:"revision"`      // orders blueprints; 0..MaxRevision
	Encapsulation Encapsulation `yaml:"encapsulation"` // vxlan (default) or gre
	Management    Management    `yaml:"management"`
	TrustedPeers  []string      `yaml:"trusted_peers"` // extra tunnel sources (IPv4)
	Controllers   []string      `yaml:"controllers"`   // OpenFlow targets, e.g. tcp:192.0.2.250:6653
	Hosts         []Host        `yaml:"hosts"`
	VPCs          []VPC         `yaml:"vpcs"`
	// SecurityGroups are the blueprint's security groups (docs/policy.md);
	// VMs join them with vms[].security_groups.
	SecurityGroups []SecurityGroup `yaml:"security_groups,omitempty"`

	// Filled by Load/Parse (not YAML).
	Source string `yaml:"-"` // file name the blueprint came from
	// Parsed forms, filled by Validate.
	MgmtPrefixes []netip.Prefix `yaml:"-"`
	PeerAddrs    []netip.Addr   `yaml:"-"`

	// lintPos: the source positions of the policy keys, kept by
	// ParseForLint only (policy_lint.go) for the lint's findings.
	lintPos map[string]position
}

// Management describes what guests must never reach.
type Management struct {
	CIDRs     []string `yaml:"cidrs"`
	HostPorts []uint16 `yaml:"host_ports"` // nil = DefaultHostPorts
}

// Host is one hypervisor with its cloudbr0.
type Host struct {
	Name       string `yaml:"name"`
	DatapathID string `yaml:"datapath_id"` // 16 hex digits, non-zero
	TunnelIP   string `yaml:"tunnel_ip"`
	TunnelMAC  string `yaml:"tunnel_mac"` // optional
	// Uplink is the name of the uplink port of cloudbr0: the physical NIC,
	// or the bond port when UplinkSpec is a bond. Parse and SetDefaults
	// fill it from UplinkSpec (Go callers may set either).
	Uplink     string     `yaml:"-"`
	UplinkSpec UplinkSpec `yaml:"uplink"` // `uplink: eth0`, or the mapping form for a bond
	OVSDB      string     `yaml:"ovsdb"`  // optional: unix:/path, tcp:host:port, ssl:host:port

	// Parsed forms, filled by Validate.
	DPID   uint64     `yaml:"-"`
	Addr   netip.Addr `yaml:"-"`
	MAC    MAC        `yaml:"-"`
	HasMAC bool       `yaml:"-"`
}

// Bond LACP settings and modes (the values of uplink.lacp and uplink.mode;
// the modes are Open vSwitch's bond_mode values).
const (
	LACPOff          = "off"
	LACPActive       = "active"
	BondActiveBackup = "active-backup"
	BondBalanceSLB   = "balance-slb"
	BondBalanceTCP   = "balance-tcp"
)

// DefaultBondName is the port name of a bond whose uplink mapping has no name.
const DefaultBondName = "bond0"

// UplinkSpec is a host's uplink key. The scalar form names one NIC
// (`uplink: eth0`: Name only). The mapping form may describe a bond:
//
//	uplink: {name: bond0, bond: [eth0, eth1], lacp: active, mode: balance-tcp}
//
// OpenFlow sees every member as its own port: the pipeline accepts underlay
// traffic from each member and sends to the uplink with a bundle action
// over the members, so the switch picks a live one.
type UplinkSpec struct {
	Name    string   `yaml:"name"` // the port on cloudbr0 (a NIC, or the bond port; default bond0 for a bond)
	Members []string `yaml:"bond"` // the bond's member NICs (at least two); empty: a single NIC
	LACP    string   `yaml:"lacp"` // off (default) or active
	Mode    string   `yaml:"mode"` // active-backup (default without LACP), balance-slb, balance-tcp (default with LACP; needs LACP)

	mapping bool // written in the mapping form (set by Parse; for error messages)
}

// IsBond reports whether the uplink is a bond.
func (u *UplinkSpec) IsBond() bool { return len(u.Members) > 0 }

// IsBond reports whether the host's uplink is a bond.
func (h *Host) IsBond() bool { return h.UplinkSpec.IsBond() }

// UplinkPorts returns the OpenFlow ports that make up the uplink: the bond's
// members, or the one uplink NIC. Classify accepts underlay traffic from each
// of them.
func (h *Host) UplinkPorts() []string {
	if h.IsBond() {
		return h.UplinkSpec.Members
	}
	return []string{h.Uplink}
}

// IsUplinkPort reports whether port is the uplink or one of its bond members.
func (h *Host) IsUplinkPort(port string) bool {
	for _, p := range h.UplinkPorts() {
		if p == port {
			return true
		}
	}
	return false
}

// UplinkAction is the action that sends a packet out of the uplink: an
// output to the NIC, or for a bond a bundle over its members (OVS picks a
// live member: carrier up and, with LACP, negotiated).
func (h *Host) UplinkAction() Action {
	if !h.IsBond() {
		return Output{Port: h.Uplink}
	}
	b := Bundle{Fields: HashEthSrc, Algorithm: BundleActiveBackup, Members: append([]string(nil), h.UplinkSpec.Members...)}
	switch h.UplinkSpec.Mode {
	case BondBalanceSLB:
		b.Algorithm = BundleHRW
	case BondBalanceTCP:
		b.Fields, b.Algorithm = HashSymmetricL4, BundleHRW
	}
	return b
}

// VM roles.
const (
	RoleGuest  = "guest"
	RoleRouter = "router"
)

// IsRouter reports whether the NIC is its VPC's virtual router in the tier.
func (m *VM) IsRouter() bool { return m.Role == RoleRouter }

// VPC routing modes.
const (
	RoutingRouter      = "router"      // inter-tier traffic goes through the VPC's router NIC (the default, also "")
	RoutingDistributed = "distributed" // the source host's switch routes between the VPC's tiers
)

// VPC is one tenant network; VPCs never reach each other.
type VPC struct {
	Name string `yaml:"name"`
	// Routing is "router" (the default, also ""): guests reach other tiers
	// through the tier's router NIC; or "distributed": the switch on the
	// source host routes between the VPC's tiers itself (gateway ARP
	// answered in the switch, MAC rewrite, TTL decrement), so inter-tier
	// traffic never hair-pins through the router. Every tier then needs a
	// gateway (its router NIC, or `gateway:`).
	Routing string `yaml:"routing,omitempty"`
	// ACLs are the VPC's network ACL lists; a tier names one with acl:
	// (docs/policy.md).
	ACLs  []ACLList `yaml:"acls,omitempty"`
	Tiers []Tier    `yaml:"tiers"`

	// ID is the VPC's distributed-routing id (VPCObject(Name)), filled by
	// Validate.
	ID uint32 `yaml:"-"`
}

// IsDistributed reports whether the switch routes between the VPC's tiers.
func (p *VPC) IsDistributed() bool { return p.Routing == RoutingDistributed }

// Tier types.
const (
	TierOverlay = "overlay" // carried between hosts in tunnels under its VNI (the default, also "")
	TierVLAN    = "vlan"    // 802.1Q-tagged on the uplink under its VLAN id
)

// VLANKeyBase is the first tier key of VLAN tiers: a VLAN tier's key is
// VLANKeyBase + its VLAN id, above every VNI (24 bits).
const VLANKeyBase = 1 << 24

// Tier is one L2 segment of a VPC, carried between hosts under its VNI
// (overlay) or as 802.1Q-tagged frames on the uplink (type vlan).
type Tier struct {
	Name string `yaml:"name"`
	// Type is "overlay" (the default, also "") or "vlan".
	Type string `yaml:"type,omitempty"`
	VNI  uint32 `yaml:"vni,omitempty"`  // overlay tiers: the tunnel key
	VLAN uint16 `yaml:"vlan,omitempty"` // vlan tiers: the 802.1Q id, 1..4094
	CIDR string `yaml:"cidr"`
	// CIDR6 makes the tier dual-stack: its IPv6 prefix (a /64 or shorter,
	// canonical; docs/ipv6.md). Empty: IPv4 only (IPv6 from its guests is
	// dropped and counted).
	CIDR6 string `yaml:"cidr6,omitempty"`
	// Gateway is the tier's gateway address for distributed routing when
	// the tier has no router NIC (the switch answers ARP for it with
	// GatewayMAC). With a router NIC the gateway is the router's IP and MAC.
	Gateway string `yaml:"gateway,omitempty"`
	// ACL names the network ACL list that judges traffic entering and
	// leaving the tier: one of its VPC's acls, or the built-in
	// default_allow / default_deny. Empty: no ACL (today's behaviour).
	ACL string `yaml:"acl,omitempty"`
	VMs []VM   `yaml:"vms"`

	// Filled by Validate.
	Prefix netip.Prefix `yaml:"-"`
	// Prefix6 is CIDR6 parsed (invalid when the tier has none).
	Prefix6 netip.Prefix `yaml:"-"`
	// Key identifies the tier in flows (reg0, cookies): the VNI of an
	// overlay tier, VLANKeyBase+VLAN of a VLAN tier.
	Key uint32 `yaml:"-"`
	// GatewayAddr/GatewayHW are the tier's gateway (router NIC or
	// `gateway:` with a MAC derived from the key); HasGateway says whether
	// there is one.
	GatewayAddr netip.Addr `yaml:"-"`
	GatewayHW   MAC        `yaml:"-"`
	HasGateway  bool       `yaml:"-"`
	// VirtualGateway: the gateway is `gateway:` (answered by the switch),
	// not a router NIC.
	VirtualGateway bool `yaml:"-"`
}

// IsVLAN reports whether the tier is VLAN-backed.
func (t *Tier) IsVLAN() bool { return t.Type == TierVLAN }

// GatewayMAC is the MAC of a virtual (switch-answered) gateway of the tier
// with key k: locally administered and unicast, 0a:00:00 + the 24-bit VNI
// for an overlay tier, 0a:00:01:00 + the 12-bit VLAN id for a VLAN tier.
func GatewayMAC(k uint32) MAC {
	if k >= VLANKeyBase {
		v := k - VLANKeyBase
		return MAC{0x0a, 0x00, 0x01, 0x00, byte(v >> 8), byte(v)}
	}
	return MAC{0x0a, 0x00, 0x00, byte(k >> 16), byte(k >> 8), byte(k)}
}

// HostRouteMAC is the source MAC of frames host h routes onto a VLAN tier
// for distributed routing: 0a:00:02 + the low three bytes of its tunnel IP.
// Each host uses its own, so physical switches on the VLAN never see one
// gateway MAC move between host ports.
func HostRouteMAC(h *Host) MAC {
	b := h.Addr.As4()
	return MAC{0x0a, 0x00, 0x02, b[1], b[2], b[3]}
}

// VM is one guest NIC.
type VM struct {
	Name string `yaml:"name"`
	Host string `yaml:"host"`
	Port string `yaml:"port"`
	MAC  string `yaml:"mac"`
	IP   string `yaml:"ip"`
	// IP6 is the NIC's IPv6 address inside its tier's cidr6 (optional):
	// with it the VM may send IPv6 from it and from its EUI-64 link-local
	// address (docs/ipv6.md).
	IP6 string `yaml:"ip6,omitempty"`
	// Role is "guest" (the default, also "") or "router": the VPC's
	// virtual router NIC in this tier (at most one per tier; its IP is the
	// tier's gateway). A router NIC is held to its MAC but may source any
	// address inside its VPC's tier CIDRs (it forwards for them) and may
	// send DHCP server replies; it still never reaches management or
	// another VPC.
	Role string `yaml:"role,omitempty"`
	// SecurityGroups names the security groups of this NIC (top-level
	// security_groups); empty: no security group (today's behaviour).
	SecurityGroups []string `yaml:"security_groups,omitempty"`

	HW   MAC        `yaml:"-"`
	Addr netip.Addr `yaml:"-"`
	// Addr6 is IP6 parsed (invalid when the NIC has none).
	Addr6 netip.Addr `yaml:"-"`
}
