package flows

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// FieldError is one problem in a blueprint, located by file position (when
// known) and field path, e.g. "vpcs[0].tiers[1].vms[2].ip".
type FieldError struct {
	File   string
	Line   int // 1-based; 0 = unknown
	Column int // 1-based; 0 = unknown
	Field  string
	Msg    string
}

// Error renders "FILE:LINE:COL: FIELD: MSG", omitting unknown parts.
func (e FieldError) Error() string {
	var b strings.Builder
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
		if e.Column > 0 {
			loc += ":" + strconv.Itoa(e.Column)
		}
	}
	if loc != "" {
		b.WriteString(loc)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ValidationError carries every problem found in a blueprint.
type ValidationError struct {
	Errors []FieldError
}

// Error joins all problems, one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// maxVNI is the largest tunnel key a tier may use (24-bit VXLAN VNI).
const maxVNI = 1<<24 - 1

// bridgeName is the integration bridge vpcflow programs on every host.
const bridgeName = "cloudbr0"

// tunnelPortPrefix starts the names of the tunnel ports vpcflow creates.
const tunnelPortPrefix = "vpcflow-"

// Validate applies defaults (SetDefaults) and checks every rule of the
// blueprint contract (DESIGN §2), collecting all problems. On success it
// fills the parsed fields (Host.DPID/Addr/MAC/HasMAC, Tier.Prefix,
// VM.HW/Addr, MgmtPrefixes, PeerAddrs) and returns nil; otherwise it returns
// a *ValidationError whose entries carry field paths (positions are only
// known when the blueprint came from Parse or Load) and leaves the parsed
// fields untouched.
func (b *Blueprint) Validate() error {
	b.SetDefaults()
	if errs := b.validate(); len(errs) > 0 {
		for i := range errs {
			errs[i].File = b.Source
		}
		return &ValidationError{Errors: errs}
	}
	return nil
}

// validator collects errors and the parsed forms, committed only when the
// whole blueprint is valid.
type validator struct {
	b    *Blueprint
	errs []FieldError

	mgmt  []netip.Prefix
	peers []netip.Addr
	hosts []parsedHost
	tiers [][]netip.Prefix
	vms   [][][]parsedVM
	// IPv6 (ipv6.go): tiers' cidr6 and VMs' ip6, parsed.
	tiers6 [][]netip.Prefix
	vms6   [][][]netip.Addr
}

type parsedHost struct {
	dpid   uint64
	addr   netip.Addr
	mac    MAC
	hasMAC bool
}

type parsedVM struct {
	hw   MAC
	addr netip.Addr
}

func (v *validator) errorf(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// validate checks b (defaults already applied) and returns every problem
// with its field path; on success it fills the parsed fields.
func (b *Blueprint) validate() []FieldError {
	v := &validator{b: b}
	v.top()
	v.management()
	v.controllers()
	v.checkHosts()
	v.trustedPeers()
	v.checkVPCs()
	v.checkIPv6()
	v.checkPolicy()
	if len(v.errs) == 0 {
		v.checkPolicyObjects()
		v.checkPolicyZones()
	}
	if len(v.errs) > 0 {
		return v.errs
	}
	v.commit()
	v.commitIPv6()
	v.commitPolicy()
	return nil
}

func (v *validator) commit() {
	b := v.b
	b.MgmtPrefixes = v.mgmt
	b.PeerAddrs = v.peers
	for i := range b.Hosts {
		h, p := &b.Hosts[i], v.hosts[i]
		h.DPID, h.Addr, h.MAC, h.HasMAC = p.dpid, p.addr, p.mac, p.hasMAC
	}
	for i := range b.VPCs {
		for j := range b.VPCs[i].Tiers {
			t := &b.VPCs[i].Tiers[j]
			t.Prefix = v.tiers[i][j]
			for k := range t.VMs {
				t.VMs[k].HW = v.vms[i][j][k].hw
				t.VMs[k].Addr = v.vms[i][j][k].addr
			}
			t.Key = t.VNI
			if t.IsVLAN() {
				t.Key = VLANKeyBase + uint32(t.VLAN)
			}
			t.HasGateway, t.VirtualGateway = false, false
			for k := range t.VMs {
				if m := &t.VMs[k]; m.IsRouter() {
					t.GatewayAddr, t.GatewayHW, t.HasGateway = m.Addr, m.HW, true
				}
			}
			if !t.HasGateway && t.Gateway != "" {
				t.GatewayAddr = netip.MustParseAddr(t.Gateway)
				t.GatewayHW, t.HasGateway, t.VirtualGateway = GatewayMAC(t.Key), true, true
			}
		}
		b.VPCs[i].ID = VPCObject(b.VPCs[i].Name)
	}
}

func (v *validator) top() {
	b := v.b
	switch b.Version {
	case 1:
	case 0:
		v.errorf("version", "version is missing or 0: add \"version: 1\" at the top of the file")
	default:
		v.errorf("version", "unsupported schema version %d: this vpcflow reads version 1", b.Version)
	}
	if b.Revision > MaxRevision {
		v.errorf("revision", "revision %d is too large: the maximum is %d (it is carried in 24 cookie bits)", b.Revision, MaxRevision)
	}
	switch b.Encapsulation {
	case EncapVXLAN, EncapGRE:
	default:
		v.errorf("encapsulation", "unknown encapsulation %q: use vxlan or gre", string(b.Encapsulation))
	}
}

func (v *validator) management() {
	m := v.b.Management
	seen := map[netip.Prefix]int{}
	for i, s := range m.CIDRs {
		f := fmt.Sprintf("management.cidrs[%d]", i)
		p, msg := parsePrefix4(s)
		if msg != "" {
			v.errorf(f, "%s", msg)
			continue
		}
		if j, dup := seen[p]; dup {
			v.errorf(f, "management cidr %s is already listed as management.cidrs[%d]: remove the duplicate", p, j)
			continue
		}
		seen[p] = i
		v.mgmt = append(v.mgmt, p)
	}
	ports := map[uint16]int{}
	for i, port := range m.HostPorts {
		f := fmt.Sprintf("management.host_ports[%d]", i)
		if port == 0 {
			v.errorf(f, "port 0 is not a valid port: host ports are 1..65535")
			continue
		}
		if j, dup := ports[port]; dup {
			v.errorf(f, "port %d is already listed as management.host_ports[%d]: remove the duplicate", port, j)
			continue
		}
		ports[port] = i
	}
}

func (v *validator) controllers() {
	seen := map[netip.AddrPort]int{}
	for i, s := range v.b.Controllers {
		f := fmt.Sprintf("controllers[%d]", i)
		ap, msg := parseTarget(s, false)
		if msg != "" {
			v.errorf(f, "controller %s", msg)
			continue
		}
		if j, dup := seen[ap]; dup {
			v.errorf(f, "controller %q reaches the same address and port as controllers[%d]: list each controller replica once", s, j)
			continue
		}
		seen[ap] = i
	}
}

func (v *validator) checkHosts() {
	b := v.b
	if len(b.Hosts) == 0 {
		v.errorf("hosts", "no hosts: a blueprint needs at least one host under hosts:")
	}
	v.hosts = make([]parsedHost, len(b.Hosts))
	names := map[string]int{}
	dpids := map[uint64]int{}
	addrs := map[netip.Addr]int{}
	macs := map[MAC]int{}
	for i := range b.Hosts {
		h := &b.Hosts[i]
		p := &v.hosts[i]
		f := fmt.Sprintf("hosts[%d]", i)

		if msg := checkName(h.Name); msg != "" {
			v.errorf(f+".name", "host %s", msg)
		} else if j, dup := names[h.Name]; dup {
			v.errorf(f+".name", "host name %q is already used by hosts[%d]: host names must be unique", h.Name, j)
		} else {
			names[h.Name] = i
		}

		if id, msg := parseDPID(h.DatapathID); msg != "" {
			v.errorf(f+".datapath_id", "%s", msg)
		} else if j, dup := dpids[id]; dup {
			v.errorf(f+".datapath_id", "datapath_id %s is already used by hosts[%d] (%s): every bridge needs its own datapath id", h.DatapathID, j, b.Hosts[j].Name)
		} else {
			dpids[id] = i
			p.dpid = id
		}

		if h.TunnelIP == "" {
			v.errorf(f+".tunnel_ip", "tunnel_ip is missing: set the host's underlay IPv4 address (the address on cloudbr0)")
		} else if a, msg := parseUnicast4(h.TunnelIP); msg != "" {
			v.errorf(f+".tunnel_ip", "tunnel_ip %s", msg)
		} else if j, dup := addrs[a]; dup {
			v.errorf(f+".tunnel_ip", "tunnel_ip %s is already used by hosts[%d] (%s): every host needs its own underlay address", a, j, b.Hosts[j].Name)
		} else {
			addrs[a] = i
			p.addr = a
		}

		if h.TunnelMAC != "" {
			if m, msg := parseUnicastMAC(h.TunnelMAC); msg != "" {
				v.errorf(f+".tunnel_mac", "tunnel_mac %s", msg)
			} else if j, dup := macs[m]; dup {
				v.errorf(f+".tunnel_mac", "tunnel_mac %s is already used by hosts[%d] (%s): MACs must be unique", m, j, b.Hosts[j].Name)
			} else {
				macs[m] = i
				p.mac, p.hasMAC = m, true
			}
		}

		v.uplink(f, h)

		if h.OVSDB != "" {
			if _, msg := parseTarget(h.OVSDB, true); msg != "" {
				v.errorf(f+".ovsdb", "ovsdb %s", msg)
			}
		}
	}
}

// maxBondMembers bounds a bond (LACP aggregates up to 8 active links; OVS
// has no smaller limit, this only catches typos and runaway lists).
const maxBondMembers = 16

// uplink checks a host's uplink key: a NIC, or a bond with its members,
// LACP setting and mode (defaults already applied).
func (v *validator) uplink(f string, h *Host) {
	u := &h.UplinkSpec
	if !u.IsBond() && (u.Members != nil || u.mapping && h.Uplink == "") {
		// The mapping form with an empty (or undecodable) bond list.
		v.errorf(f+".uplink.bond", "bond lists no members: list at least two NICs (bond: [eth0, eth1]), or name the one NIC (uplink: eth0)")
		return
	}
	if !u.IsBond() {
		where := f + ".uplink"
		if u.LACP != "" || u.Mode != "" || u.Name != "" && h.Uplink == "" {
			where += ".name"
		}
		switch {
		case h.Uplink == "":
			v.errorf(where, "uplink is missing: name the physical NIC that is a port of %s (e.g. uplink: eth0), or a bond (uplink: {name: bond0, bond: [eth0, eth1]})", bridgeName)
		default:
			if msg := checkPortName(h.Uplink); msg != "" {
				v.errorf(where, "uplink %s", msg)
			}
		}
		if u.LACP != "" {
			v.errorf(f+".uplink.lacp", "lacp applies to a bond, and uplink %s is one NIC: list the members (bond: [eth0, eth1]) or remove lacp", h.Uplink)
		}
		if u.Mode != "" {
			v.errorf(f+".uplink.mode", "mode applies to a bond, and uplink %s is one NIC: list the members (bond: [eth0, eth1]) or remove mode", h.Uplink)
		}
		return
	}
	if msg := checkPortName(u.Name); msg != "" {
		v.errorf(f+".uplink.name", "bond name %s", msg)
	}
	if len(u.Members) < 2 {
		v.errorf(f+".uplink.bond", "a bond needs at least two members, got %d: list them (bond: [eth0, eth1]), or write the one NIC as uplink: %s", len(u.Members), u.Members[0])
	} else if len(u.Members) > maxBondMembers {
		v.errorf(f+".uplink.bond", "a bond has at most %d members, got %d: remove some", maxBondMembers, len(u.Members))
	}
	seen := map[string]int{}
	for i, m := range u.Members {
		fm := fmt.Sprintf("%s.uplink.bond[%d]", f, i)
		switch {
		case m == "":
			v.errorf(fm, "bond member is empty: name a physical NIC (e.g. eth1)")
		case checkPortName(m) != "":
			v.errorf(fm, "bond member %s", checkPortName(m))
		case m == u.Name:
			v.errorf(fm, "bond member %q has the bond's own name: the bond port (name:) and its member NICs need distinct names", m)
		default:
			if j, dup := seen[m]; dup {
				v.errorf(fm, "bond member %q is listed twice (also bond[%d]): list each NIC once", m, j)
			}
			seen[m] = i
		}
	}
	switch u.LACP {
	case LACPOff, LACPActive:
	default:
		v.errorf(f+".uplink.lacp", "lacp %q is not valid: use active (the partner switch runs LACP) or off", u.LACP)
	}
	switch u.Mode {
	case BondActiveBackup, BondBalanceSLB:
	case BondBalanceTCP:
		if u.LACP != LACPActive {
			v.errorf(f+".uplink.mode", "mode balance-tcp needs LACP (the partner must aggregate the links): set lacp: active, or use mode: active-backup or balance-slb")
		}
	default:
		v.errorf(f+".uplink.mode", "mode %q is not valid: use active-backup, balance-slb or balance-tcp (balance-tcp needs lacp: active)", u.Mode)
	}
}

func (v *validator) trustedPeers() {
	hostAddr := map[netip.Addr]int{}
	for i, p := range v.hosts {
		if p.addr.IsValid() {
			hostAddr[p.addr] = i
		}
	}
	seen := map[netip.Addr]int{}
	for i, s := range v.b.TrustedPeers {
		f := fmt.Sprintf("trusted_peers[%d]", i)
		a, msg := parseUnicast4(s)
		if msg != "" {
			v.errorf(f, "trusted peer %s", msg)
			continue
		}
		if j, dup := seen[a]; dup {
			v.errorf(f, "trusted peer %s is already listed as trusted_peers[%d]: remove the duplicate", a, j)
			continue
		}
		if j, isHost := hostAddr[a]; isHost {
			v.errorf(f, "trusted peer %s is the tunnel_ip of hosts[%d] (%s): hosts are trusted already, remove it", a, j, v.b.Hosts[j].Name)
			continue
		}
		seen[a] = i
		v.peers = append(v.peers, a)
	}
}

// reservedPrefixes are IPv4 ranges a tier may not use.
var reservedPrefixes = []struct {
	p    netip.Prefix
	what string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" range 0.0.0.0/8"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback range 127.0.0.0/8"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast range 224.0.0.0/4"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved range 240.0.0.0/4"},
}

// vmRef names where a VM sits, for messages.
type vmRef struct {
	path string
	name string
}

func (v *validator) checkVPCs() {
	b := v.b
	hostIdx := map[string]int{}
	for i, h := range b.Hosts {
		if _, dup := hostIdx[h.Name]; !dup && h.Name != "" {
			hostIdx[h.Name] = i
		}
	}
	hostAddr := map[netip.Addr]int{}
	hostMAC := map[MAC]int{}
	for i, p := range v.hosts {
		if p.addr.IsValid() {
			hostAddr[p.addr] = i
		}
		if p.hasMAC {
			hostMAC[p.mac] = i
		}
	}

	vpcNames := map[string]int{}
	vnis := map[uint32]string{}
	vlans := map[uint16]string{}
	vpcIDs := map[uint32]string{}
	vmNames := map[string]string{}
	vmObjects := map[uint32]string{}
	routerOf := map[*Tier]string{} // tier -> its router NIC
	vmMACs := map[MAC]vmRef{}
	ports := map[string]vmRef{} // host + "\x00" + port

	v.tiers = make([][]netip.Prefix, len(b.VPCs))
	v.vms = make([][][]parsedVM, len(b.VPCs))
	for i := range b.VPCs {
		vpc := &b.VPCs[i]
		fv := fmt.Sprintf("vpcs[%d]", i)
		if msg := checkName(vpc.Name); msg != "" {
			v.errorf(fv+".name", "VPC %s", msg)
		} else if j, dup := vpcNames[vpc.Name]; dup {
			v.errorf(fv+".name", "VPC name %q is already used by vpcs[%d]: VPC names must be unique", vpc.Name, j)
		} else {
			vpcNames[vpc.Name] = i
		}

		switch vpc.Routing {
		case "", RoutingRouter:
		case RoutingDistributed:
			if o, clash := vpcIDs[VPCObject(vpc.Name)]; clash {
				v.errorf(fv+".name", "VPC name %q hashes to the same routing id (0x%08x) as distributed VPC %q: rename one of them", vpc.Name, VPCObject(vpc.Name), o)
			} else {
				vpcIDs[VPCObject(vpc.Name)] = vpc.Name
			}
		default:
			v.errorf(fv+".routing", "routing %q is not known: use router (the default: inter-tier traffic through the tier's router NIC) or distributed (the switch routes between the VPC's tiers)", vpc.Routing)
		}

		tierNames := map[string]int{}
		vpcIPs := map[netip.Addr]vmRef{}
		v.tiers[i] = make([]netip.Prefix, len(vpc.Tiers))
		v.vms[i] = make([][]parsedVM, len(vpc.Tiers))
		for j := range vpc.Tiers {
			t := &vpc.Tiers[j]
			ft := fmt.Sprintf("%s.tiers[%d]", fv, j)
			if msg := checkName(t.Name); msg != "" {
				v.errorf(ft+".name", "tier %s", msg)
			} else if k, dup := tierNames[t.Name]; dup {
				v.errorf(ft+".name", "tier name %q is already used by %s.tiers[%d]: tier names must be unique within a VPC", t.Name, fv, k)
			} else {
				tierNames[t.Name] = j
			}

			switch t.Type {
			case "", TierOverlay:
				switch {
				case t.VLAN != 0:
					v.errorf(ft+".vlan", "vlan %d is set on an overlay tier: add \"type: vlan\" to carry the tier tagged on the uplink, or remove vlan", t.VLAN)
				case t.VNI == 0:
					v.errorf(ft+".vni", "vni is missing or 0: give the tier a tunnel key 1..%d, unique across the blueprint", maxVNI)
				case t.VNI > maxVNI:
					v.errorf(ft+".vni", "vni %d is too large: VNIs are 1..%d (24 bits)", t.VNI, maxVNI)
				default:
					if other, dup := vnis[t.VNI]; dup {
						v.errorf(ft+".vni", "vni %d is already used by %s: VNIs must be unique across the blueprint", t.VNI, other)
					} else {
						vnis[t.VNI] = ft
					}
				}
			case TierVLAN:
				switch {
				case t.VNI != 0:
					v.errorf(ft+".vni", "vni %d is set on a vlan tier: a VLAN tier is carried tagged on the uplink, not in tunnels; remove vni", t.VNI)
				case t.VLAN == 0 || t.VLAN > 4094:
					v.errorf(ft+".vlan", "vlan %d is missing or out of range: give the tier an 802.1Q id 1..4094, unique across the blueprint", t.VLAN)
				default:
					if other, dup := vlans[t.VLAN]; dup {
						v.errorf(ft+".vlan", "vlan %d is already used by %s: VLAN ids must be unique across the blueprint (one VLAN is one L2 segment)", t.VLAN, other)
					} else {
						vlans[t.VLAN] = ft
					}
				}
			default:
				v.errorf(ft+".type", "type %q is not known: use overlay (the default: tunnels under vni) or vlan (802.1Q-tagged on the uplink under vlan)", t.Type)
			}

			if t.CIDR == "" {
				v.errorf(ft+".cidr", "cidr is missing: give the tier an IPv4 prefix such as 10.10.1.0/24")
			} else if p, msg := parsePrefix4(t.CIDR); msg != "" {
				v.errorf(ft+".cidr", "%s", msg)
			} else if p.Bits() > 30 {
				v.errorf(ft+".cidr", "tier cidr %s is too small: a tier needs at least a /30 (network, broadcast and two guests)", p)
			} else {
				for _, r := range reservedPrefixes {
					if p.Overlaps(r.p) {
						v.errorf(ft+".cidr", "tier cidr %s overlaps the %s: pick a private range such as 10.0.0.0/8", p, r.what)
						break
					}
				}
				for k := 0; k < j; k++ {
					if q := v.tiers[i][k]; q.IsValid() && p.Overlaps(q) {
						v.errorf(ft+".cidr", "tier cidr %s overlaps %s.tiers[%d] (%s, %s): tiers of one VPC need disjoint CIDRs", p, fv, k, vpc.Tiers[k].Name, q)
						break
					}
				}
				for k, m := range v.b.Management.CIDRs {
					if q, msg := parsePrefix4(m); msg == "" && p.Overlaps(q) {
						v.errorf(ft+".cidr", "tier cidr %s overlaps management cidr %s (management.cidrs[%d]): guests must never share addresses with the management network, pick another range", p, q, k)
					}
				}
				// Keep the prefix for the VM checks even if it overlaps
				// something: their errors are still meaningful.
				v.tiers[i][j] = p
			}

			v.vms[i][j] = make([]parsedVM, len(t.VMs))
			for k := range t.VMs {
				vm := &t.VMs[k]
				pv := &v.vms[i][j][k]
				fm := fmt.Sprintf("%s.vms[%d]", ft, k)
				ref := vmRef{path: fm, name: vm.Name}

				if msg := checkName(vm.Name); msg != "" {
					v.errorf(fm+".name", "VM %s", msg)
				} else if other, dup := vmNames[vm.Name]; dup {
					v.errorf(fm+".name", "VM name %q is already used by %s: VM names must be unique across the blueprint", vm.Name, other)
				} else if o, clash := vmObjects[VMObject(vm.Name)]; clash {
					v.errorf(fm+".name", "VM name %q hashes to the same flow cookie object (0x%08x) as VM %q: rename one of them (cookies must map back to exactly one VM)", vm.Name, VMObject(vm.Name), o)
				} else {
					vmNames[vm.Name] = fm
					vmObjects[VMObject(vm.Name)] = vm.Name
				}

				switch vm.Role {
				case "", RoleGuest:
				case RoleRouter:
					if other, dup := routerOf[t]; dup {
						v.errorf(fm+".role", "tier %s/%s already has a router NIC (%s): one router NIC per tier", vpc.Name, t.Name, other)
					} else {
						routerOf[t] = fm + " (" + vm.Name + ")"
					}
				default:
					v.errorf(fm+".role", "role %q is not known: use guest (the default) or router (the VPC's virtual router NIC in this tier)", vm.Role)
				}

				hi, hostKnown := hostIdx[vm.Host]
				switch {
				case vm.Host == "":
					v.errorf(fm+".host", "host is missing: name the host (from hosts:) that runs this VM")
				case !hostKnown:
					v.errorf(fm+".host", "host %q is not defined under hosts: (known: %s): fix the name or add the host", vm.Host, hostList(b.Hosts))
				}

				switch {
				case vm.Port == "":
					v.errorf(fm+".port", "port is missing: name the VM's port on %s (e.g. vnet0)", bridgeName)
				default:
					if msg := checkPortName(vm.Port); msg != "" {
						v.errorf(fm+".port", "port %s", msg)
					} else if hostKnown && vm.Port == b.Hosts[hi].Uplink {
						v.errorf(fm+".port", "port %q is the uplink of host %s: a VM needs its own port", vm.Port, vm.Host)
					} else if hostKnown && b.Hosts[hi].IsBond() && b.Hosts[hi].IsUplinkPort(vm.Port) {
						v.errorf(fm+".port", "port %q is a member of host %s's uplink bond %s: a VM needs its own port", vm.Port, vm.Host, b.Hosts[hi].Uplink)
					} else if vm.Host != "" {
						key := vm.Host + "\x00" + vm.Port
						if other, dup := ports[key]; dup {
							v.errorf(fm+".port", "port %q on host %s is already used by %s (%s): ports must be unique per host", vm.Port, vm.Host, other.path, other.name)
						} else {
							ports[key] = ref
						}
					}
				}

				if vm.MAC == "" {
					v.errorf(fm+".mac", "mac is missing: give the VM NIC's MAC address, e.g. \"52:54:00:0a:01:01\"")
				} else if m, msg := parseUnicastMAC(vm.MAC); msg != "" {
					v.errorf(fm+".mac", "mac %s", msg)
				} else if other, dup := vmMACs[m]; dup {
					v.errorf(fm+".mac", "mac %s is already used by %s (%s): MACs must be unique across the blueprint", m, other.path, other.name)
				} else if m[0] == 0x0a && m[1] == 0x00 && m[2] <= 0x02 {
					v.errorf(fm+".mac", "mac %s is in 0a:00:00:00:00:00-0a:00:02:ff:ff:ff, reserved for vpcflow's virtual gateways and routed frames: pick another MAC (e.g. 52:54:00:...)", m)
				} else if h, isHost := hostMAC[m]; isHost {
					v.errorf(fm+".mac", "mac %s is the tunnel_mac of hosts[%d] (%s): pick another MAC", m, h, b.Hosts[h].Name)
				} else {
					vmMACs[m] = ref
					pv.hw = m
				}

				if vm.IP == "" {
					v.errorf(fm+".ip", "ip is missing: give the VM an IPv4 address inside tier cidr %s", t.CIDR)
					continue
				}
				a, err := netip.ParseAddr(vm.IP)
				if err != nil || !a.Is4() || a.Zone() != "" {
					v.errorf(fm+".ip", "ip %q is not an IPv4 address: write it like 10.10.1.11", vm.IP)
					continue
				}
				if tp := v.tiers[i][j]; tp.IsValid() {
					if !tp.Contains(a) {
						v.errorf(fm+".ip", "ip %s is outside tier cidr %s: pick an address inside the tier", a, tp)
						continue
					}
					if a == tp.Addr() {
						v.errorf(fm+".ip", "ip %s is the network address of tier cidr %s: pick a host address", a, tp)
						continue
					}
					if a == lastAddr(tp) {
						v.errorf(fm+".ip", "ip %s is the broadcast address of tier cidr %s: pick a host address", a, tp)
						continue
					}
				}
				if h, isHost := hostAddr[a]; isHost {
					v.errorf(fm+".ip", "ip %s is the tunnel_ip of hosts[%d] (%s): guests must not use host addresses", a, h, b.Hosts[h].Name)
					continue
				}
				if other, dup := vpcIPs[a]; dup {
					v.errorf(fm+".ip", "ip %s is already used by %s (%s) in the same VPC: IPs must be unique within a VPC", a, other.path, other.name)
					continue
				}
				vpcIPs[a] = ref
				pv.addr = a
			}
			v.checkGateway(vpc, t, ft, routerOf[t] != "", vpcIPs, v.tiers[i][j], v.vms[i][j])
		}
	}
}

// checkGateway checks a tier's gateway: `gateway:` inside the tier, not a
// VM's address, equal to the router NIC's IP when the tier has one; and a
// distributed-routing VPC's tiers each need a gateway.
func (v *validator) checkGateway(vpc *VPC, t *Tier, ft string, hasRouter bool, vpcIPs map[netip.Addr]vmRef, tp netip.Prefix, pvs []parsedVM) {
	var routerIP netip.Addr
	for k := range t.VMs {
		if t.VMs[k].IsRouter() {
			routerIP = pvs[k].addr
		}
	}
	if t.Gateway == "" {
		if vpc.IsDistributed() && !hasRouter {
			v.errorf(ft+".gateway", "tier %s/%s has no gateway: VPC %s uses routing: distributed, so give the tier a gateway address (e.g. the first address of %s) or a router NIC (role: router)", vpc.Name, t.Name, vpc.Name, t.CIDR)
		}
		return
	}
	a, err := netip.ParseAddr(t.Gateway)
	if err != nil || !a.Is4() || a.Zone() != "" {
		v.errorf(ft+".gateway", "gateway %q is not an IPv4 address: write it like 10.10.1.1", t.Gateway)
		return
	}
	if !tp.IsValid() {
		return
	}
	switch {
	case !tp.Contains(a) || a == tp.Addr() || a == lastAddr(tp):
		v.errorf(ft+".gateway", "gateway %s is not a host address of tier cidr %s: pick an address inside the tier", a, tp)
	case hasRouter && routerIP.IsValid() && a != routerIP:
		v.errorf(ft+".gateway", "gateway %s differs from the tier's router NIC address %s: the router NIC is the gateway; remove gateway or set it to %s", a, routerIP, routerIP)
	case !hasRouter:
		if other, dup := vpcIPs[a]; dup {
			v.errorf(ft+".gateway", "gateway %s is the address of %s (%s): the gateway needs an address of its own", a, other.path, other.name)
		}
	}
}

func hostList(hosts []Host) string {
	names := make([]string, 0, len(hosts))
	seen := map[string]bool{}
	for _, h := range hosts {
		if h.Name != "" && !seen[h.Name] {
			seen[h.Name] = true
			names = append(names, h.Name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// lastAddr returns the broadcast (all-ones host part) address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	bits := p.Bits()
	for i := 0; i < 4; i++ {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	return netip.AddrFrom4(b)
}

// checkName checks a host, VPC, tier or VM name. It returns "" or the
// problem (to be prefixed with the object kind).
func checkName(s string) string {
	if s == "" {
		return "name is missing: every object needs a name"
	}
	if len(s) > 63 {
		return fmt.Sprintf("name %q is too long (%d characters): use at most 63", s, len(s))
	}
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Sprintf("name %q must start with a letter or digit", s)
		}
		if !alnum && c != '-' && c != '_' && c != '.' {
			return fmt.Sprintf("name %q contains %q: use letters, digits, '-', '_' and '.'", s, c)
		}
	}
	return ""
}

// reservedPortNames are OpenFlow reserved port keywords of ovs-ofctl.
var reservedPortNames = []string{"LOCAL", "IN_PORT", "TABLE", "NORMAL", "FLOOD", "ALL", "CONTROLLER", "ANY", "NONE", "UNSET"}

// checkPortName checks an OVS port (Linux interface) name, returning "" or
// the problem.
func checkPortName(s string) string {
	for _, r := range reservedPortNames {
		if strings.EqualFold(s, r) {
			return fmt.Sprintf("%q is a reserved OpenFlow port name: name the real interface", s)
		}
	}
	if s == bridgeName {
		return fmt.Sprintf("%q is the bridge itself: name a port of the bridge", s)
	}
	if strings.HasPrefix(s, tunnelPortPrefix) {
		return fmt.Sprintf("%q starts with %q, which is reserved for vpcflow's tunnel ports: rename it", s, tunnelPortPrefix)
	}
	if len(s) > 15 {
		return fmt.Sprintf("%q is too long for an interface name (%d bytes): Linux allows at most 15", s, len(s))
	}
	if s == "." || s == ".." {
		return fmt.Sprintf("%q is not a valid interface name", s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Sprintf("%q contains %q: interface names here use letters, digits, '-', '_' and '.'", s, c)
		}
	}
	return ""
}

// parseDPID parses a datapath id of exactly 16 hex digits, non-zero.
func parseDPID(s string) (uint64, string) {
	if s == "" {
		return 0, "datapath_id is missing: give 16 hex digits in quotes, e.g. \"00000000000000a1\""
	}
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		return 0, fmt.Sprintf("datapath_id %q must be exactly 16 hex digits without 0x: write \"%016s\"", s, strings.ToLower(s[2:]))
	}
	if len(s) != 16 {
		return 0, fmt.Sprintf("datapath_id %q has %d characters: it must be exactly 16 hex digits (pad with leading zeros, e.g. \"00000000000000a1\")", s, len(s))
	}
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Sprintf("datapath_id %q is not hexadecimal: use only 0-9 and a-f", s)
	}
	if id == 0 {
		return 0, "datapath_id 0000000000000000 is not allowed: pick a non-zero datapath id"
	}
	return id, ""
}

// parseUnicast4 parses a unicast IPv4 address; the message (on error) is
// to be prefixed with the field's name.
func parseUnicast4(s string) (netip.Addr, string) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return a, fmt.Sprintf("%q is not an IPv4 address: write it like 198.51.100.11", s)
	case a.Zone() != "":
		return a, fmt.Sprintf("%q has an IPv6 zone: write a plain IPv4 address", s)
	case a.Is4In6():
		return a, fmt.Sprintf("%q is an IPv4-mapped IPv6 address: write it as plain IPv4 (%s)", s, a.Unmap())
	case !a.Is4():
		return a, fmt.Sprintf("%s is IPv6: only IPv4 is supported", s)
	case a.IsUnspecified():
		return a, "0.0.0.0 is not a host address: give a unicast IPv4 address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return a, "255.255.255.255 is the broadcast address: give a unicast IPv4 address"
	case a.IsMulticast():
		return a, fmt.Sprintf("%s is a multicast address: give a unicast IPv4 address", a)
	case a.IsLoopback():
		return a, fmt.Sprintf("%s is a loopback address: give an address reachable from other hosts", a)
	}
	return a, ""
}

// parsePrefix4 parses a canonical IPv4 prefix.
func parsePrefix4(s string) (netip.Prefix, string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil && a.Is4() {
			return p, fmt.Sprintf("cidr %q has no prefix length: write it like %s/24", s, a)
		}
		return p, fmt.Sprintf("cidr %q is not an IPv4 prefix: write it like 10.10.1.0/24", s)
	}
	if !p.Addr().Is4() {
		return p, fmt.Sprintf("cidr %s is not IPv4: only IPv4 prefixes are supported", s)
	}
	if m := p.Masked(); m != p {
		return p, fmt.Sprintf("cidr %s has host bits set: did you mean %s?", s, m)
	}
	return p, ""
}

// parseUnicastMAC parses a unicast, non-zero MAC; the message is to be
// prefixed with the field's name.
func parseUnicastMAC(s string) (MAC, string) {
	m, err := ParseMAC(s)
	if err != nil {
		return m, fmt.Sprintf("%q is not a MAC address: write six hex pairs, e.g. \"52:54:00:0a:01:01\"", s)
	}
	if m == (MAC{}) {
		return m, "00:00:00:00:00:00 is not a valid MAC: pick a real unicast MAC"
	}
	if m.IsMulticast() {
		return m, fmt.Sprintf("%s is a multicast/broadcast MAC (lowest bit of the first byte set): use a unicast MAC (even first byte, e.g. 52:54:00:...)", m)
	}
	return m, ""
}

// parseTarget parses "tcp:IP:PORT" or "ssl:IP:PORT" (IPv4), and with
// allowUnix also "unix:/path" (returning the zero AddrPort). The message
// is to be prefixed with the field's name.
func parseTarget(s string, allowUnix bool) (netip.AddrPort, string) {
	want := "tcp:IP:PORT or ssl:IP:PORT (e.g. tcp:192.0.2.250:6653)"
	if allowUnix {
		want = "unix:/path, tcp:IP:PORT or ssl:IP:PORT (e.g. unix:/var/run/openvswitch/db.sock)"
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Sprintf("target %q has no method: write %s", s, want)
	}
	switch scheme {
	case "unix":
		if !allowUnix {
			break
		}
		if !strings.HasPrefix(rest, "/") {
			return netip.AddrPort{}, fmt.Sprintf("target %q needs an absolute socket path: write unix:/path/to/db.sock", s)
		}
		return netip.AddrPort{}, ""
	case "tcp", "ssl":
		ap, err := netip.ParseAddrPort(rest)
		if err != nil {
			if _, aerr := netip.ParseAddr(rest); aerr == nil {
				return ap, fmt.Sprintf("target %q has no port: write %s:%s:PORT", s, scheme, rest)
			}
			return ap, fmt.Sprintf("target %q is not %s:IP:PORT with an IPv4 address and a port 1..65535", s, scheme)
		}
		a := ap.Addr()
		if !a.Is4() || a.Zone() != "" {
			return ap, fmt.Sprintf("target %q must use an IPv4 address", s)
		}
		if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return ap, fmt.Sprintf("target %q needs a unicast address to connect to", s)
		}
		if ap.Port() == 0 {
			return ap, fmt.Sprintf("target %q has port 0: ports are 1..65535", s)
		}
		return ap, ""
	}
	if _, err := netip.ParseAddr(scheme); err == nil {
		return netip.AddrPort{}, fmt.Sprintf("target %q has no method: write tcp:%s", s, s)
	}
	return netip.AddrPort{}, fmt.Sprintf("target %q has unknown method %q: write %s", s, scheme, want)
}
