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

	// Filled by Load/Parse (not YAML).
	Source string `yaml:"-"` // file name the blueprint came from
	// Parsed forms, filled by Validate.
	MgmtPrefixes []netip.Prefix `yaml:"-"`
	PeerAddrs    []netip.Addr   `yaml:"-"`
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
	Uplink     string `yaml:"uplink"`
	OVSDB      string `yaml:"ovsdb"` // optional: unix:/path, tcp:host:port, ssl:host:port

	// Parsed forms, filled by Validate.
	DPID   uint64     `yaml:"-"`
	Addr   netip.Addr `yaml:"-"`
	MAC    MAC        `yaml:"-"`
	HasMAC bool       `yaml:"-"`
}

// VM roles.
const (
	RoleGuest  = "guest"
	RoleRouter = "router"
)

// IsRouter reports whether the NIC is its VPC's virtual router in the tier.
func (m *VM) IsRouter() bool { return m.Role == RoleRouter }

// VPC is one tenant network; VPCs never reach each other.
type VPC struct {
	Name  string `yaml:"name"`
	Tiers []Tier `yaml:"tiers"`
}

// Tier is one L2 segment of a VPC, carried between hosts under its VNI.
type Tier struct {
	Name string `yaml:"name"`
	VNI  uint32 `yaml:"vni"`
	CIDR string `yaml:"cidr"`
	VMs  []VM   `yaml:"vms"`

	Prefix netip.Prefix `yaml:"-"`
}

// VM is one guest NIC.
type VM struct {
	Name string `yaml:"name"`
	Host string `yaml:"host"`
	Port string `yaml:"port"`
	MAC  string `yaml:"mac"`
	IP   string `yaml:"ip"`
	// Role is "guest" (the default, also "") or "router": the VPC's
	// virtual router NIC in this tier (at most one per tier; its IP is the
	// tier's gateway). A router NIC is held to its MAC but may source any
	// address inside its VPC's tier CIDRs (it forwards for them) and may
	// send DHCP server replies; it still never reaches management or
	// another VPC.
	Role string `yaml:"role,omitempty"`

	HW   MAC        `yaml:"-"`
	Addr netip.Addr `yaml:"-"`
}
