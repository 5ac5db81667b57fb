// Package gen builds realistic, valid vpcflow blueprints for the benchmarks:
// H hosts with V VMs each spread over T tiers (grouped into VPCs), optional
// trusted peers, and "one big host" blueprints whose compiled flow set for
// one host has a chosen size. Only test addresses are used: tiers and tunnel
// IPs in 10.0.0.0/8 (inside the benchmark's private network namespace),
// management 192.0.2.0/24, trusted peers 203.0.113.0/24 and 198.51.100.0/24.
//
// Names are unique per ovs-vswitchd (interface names are global in one OVS
// database): host i is "h<i>", its uplink "h<i>up", its VM k and that VM's
// port "h<i>v<k>".
package gen

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vpcflow/vpcflow/flows"
)

// Spec describes a generated blueprint.
type Spec struct {
	Hosts       int // number of hosts (each a bridge)
	VMsPerHost  int // VMs on every host (see LocalVMs for host 0)
	Tiers       int // tiers in total; VM k of host i is in tier (i*VMsPerHost+k) % Tiers
	TiersPerVPC int // tiers per VPC (default 5)
	// TrustedPeers adds this many trusted_peers (extra tunnel sources).
	TrustedPeers int
	// LocalVMs, when > 0, overrides VMsPerHost for host 0 (the "big host").
	LocalVMs int
	Revision uint32
	// Controllers are the OpenFlow targets written into the blueprint
	// (informational for the benchmarks; default tcp:127.0.0.1:6653).
	Controllers []string
	// NoTunnelMAC leaves tunnel_mac unset (no per-peer ARP guard flows).
	NoTunnelMAC bool
}

func (s *Spec) defaults() {
	if s.TiersPerVPC <= 0 {
		s.TiersPerVPC = 5
	}
	if s.Tiers <= 0 {
		s.Tiers = 1
	}
	if s.Revision == 0 {
		s.Revision = 1
	}
	if len(s.Controllers) == 0 {
		s.Controllers = []string{"tcp:127.0.0.1:6653"}
	}
}

// HostName is the name of host i.
func HostName(i int) string { return fmt.Sprintf("h%d", i) }

// Uplink is the uplink port name of host i.
func Uplink(i int) string { return fmt.Sprintf("h%dup", i) }

// VMPort is the port (and VM) name of VM k on host i.
func VMPort(i, k int) string { return fmt.Sprintf("h%dv%d", i, k) }

// DPID is the datapath id of host i.
func DPID(i int) uint64 { return 0xb0000000 + uint64(i) + 1 }

// TunnelIP is host i's underlay address (10.250.0.0/15, inside the namespace).
func TunnelIP(i int) netip.Addr {
	n := i + 1
	return netip.AddrFrom4([4]byte{10, byte(250 + n>>16), byte(n >> 8), byte(n)})
}

func tierPrefix(t int) netip.Prefix {
	// /20 per tier: 10.0.0.0 + t*4096, for t < 4000 (stays below 10.250/15).
	base := uint32(10)<<24 | uint32(t)<<12
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(base >> 24), byte(base >> 16), byte(base >> 8), 0}), 20)
}

func tierIP(t, k int) netip.Addr {
	// k-th address of the tier, skipping the network address.
	v := uint32(10)<<24 | uint32(t)<<12 | uint32(k+1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Build returns the blueprint for s (defaults applied by Parse/Validate
// later; Build itself only fills the YAML fields).
func Build(s Spec) (*flows.Blueprint, error) {
	s.defaults()
	if s.Hosts < 1 || s.Hosts > 60000 {
		return nil, fmt.Errorf("gen: hosts %d: want 1..60000", s.Hosts)
	}
	if s.Tiers > 3900 {
		return nil, fmt.Errorf("gen: tiers %d: want at most 3900", s.Tiers)
	}
	bp := &flows.Blueprint{Version: 1, Revision: s.Revision, Encapsulation: flows.EncapVXLAN,
		Management:  flows.Management{CIDRs: []string{"192.0.2.0/24"}},
		Controllers: append([]string(nil), s.Controllers...)}
	for p := 0; p < s.TrustedPeers; p++ {
		if p >= 500 {
			return nil, fmt.Errorf("gen: at most 500 trusted peers")
		}
		net := [3]byte{203, 0, 113}
		if p >= 250 {
			net = [3]byte{198, 51, 100}
		}
		bp.TrustedPeers = append(bp.TrustedPeers, netip.AddrFrom4([4]byte{net[0], net[1], net[2], byte(p%250 + 1)}).String())
	}
	for i := 0; i < s.Hosts; i++ {
		h := flows.Host{Name: HostName(i), DatapathID: fmt.Sprintf("%016x", DPID(i)), TunnelIP: TunnelIP(i).String(), Uplink: Uplink(i)}
		if !s.NoTunnelMAC {
			n := i + 1
			h.TunnelMAC = fmt.Sprintf("02:00:0a:%02x:%02x:%02x", byte(n>>16), byte(n>>8), byte(n))
		}
		bp.Hosts = append(bp.Hosts, h)
	}
	tiers := make([]*flows.Tier, s.Tiers)
	for t := 0; t < s.Tiers; t++ {
		if t%s.TiersPerVPC == 0 {
			bp.VPCs = append(bp.VPCs, flows.VPC{Name: fmt.Sprintf("vpc%d", t/s.TiersPerVPC)})
		}
		vpc := &bp.VPCs[len(bp.VPCs)-1]
		vpc.Tiers = append(vpc.Tiers, flows.Tier{Name: fmt.Sprintf("t%d", t), VNI: uint32(1000 + t), CIDR: tierPrefix(t).String()})
	}
	// Pointers only after all appends.
	for t, vi := 0, 0; vi < len(bp.VPCs); vi++ {
		for ti := range bp.VPCs[vi].Tiers {
			tiers[t] = &bp.VPCs[vi].Tiers[ti]
			t++
		}
	}
	objs := map[uint32]bool{}
	g := 0 // global VM index (MAC)
	slot := 0
	for i := 0; i < s.Hosts; i++ {
		n := s.VMsPerHost
		if i == 0 && s.LocalVMs > 0 {
			n = s.LocalVMs
		}
		for k := 0; k < n; k++ {
			t := slot % s.Tiers
			slot++
			tier := tiers[t]
			if len(tier.VMs) >= 4000 {
				return nil, fmt.Errorf("gen: tier %d would get more than 4000 VMs: raise tiers", t)
			}
			name := VMPort(i, k)
			for objs[flows.VMObject(name)] {
				name += "x" // cookie object collision: rename the VM, keep its port
			}
			objs[flows.VMObject(name)] = true
			g++
			tier.VMs = append(tier.VMs, flows.VM{Name: name, Host: HostName(i), Port: VMPort(i, k),
				MAC: fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", byte(g>>24), byte(g>>16), byte(g>>8), byte(g)),
				IP:  tierIP(t, len(tier.VMs)).String()})
		}
	}
	return bp, nil
}

// YAML renders a blueprint as compact YAML (one flow-style line per VM).
func YAML(bp *flows.Blueprint) []byte {
	var b strings.Builder
	b.Grow(200 + 150*len(bp.Hosts) + 120*countVMs(bp))
	fmt.Fprintf(&b, "# generated by vpcflow bench/gen\nversion: 1\nrevision: %d\nencapsulation: %s\n", bp.Revision, orDefault(string(bp.Encapsulation), "vxlan"))
	fmt.Fprintf(&b, "management:\n  cidrs: [%s]\n", strings.Join(bp.Management.CIDRs, ", "))
	fmt.Fprintf(&b, "trusted_peers: [%s]\n", strings.Join(bp.TrustedPeers, ", "))
	fmt.Fprintf(&b, "controllers: [%s]\n", strings.Join(bp.Controllers, ", "))
	b.WriteString("hosts:\n")
	for _, h := range bp.Hosts {
		fmt.Fprintf(&b, "  - {name: %s, datapath_id: \"%s\", tunnel_ip: %s, uplink: %s", h.Name, h.DatapathID, h.TunnelIP, h.Uplink)
		if h.TunnelMAC != "" {
			fmt.Fprintf(&b, ", tunnel_mac: \"%s\"", h.TunnelMAC)
		}
		b.WriteString("}\n")
	}
	b.WriteString("vpcs:\n")
	for _, p := range bp.VPCs {
		fmt.Fprintf(&b, "  - name: %s\n", p.Name)
		aclYAML(&b, &p)
		b.WriteString("    tiers:\n")
		for _, t := range p.Tiers {
			fmt.Fprintf(&b, "      - name: %s\n        vni: %d\n        cidr: %s\n", t.Name, t.VNI, t.CIDR)
			if t.ACL != "" {
				fmt.Fprintf(&b, "        acl: %s\n", t.ACL)
			}
			if len(t.VMs) == 0 {
				b.WriteString("        vms: []\n")
				continue
			}
			b.WriteString("        vms:\n")
			for _, m := range t.VMs {
				fmt.Fprintf(&b, "          - {name: %s, host: %s, port: %s, mac: \"%s\", ip: %s", m.Name, m.Host, m.Port, m.MAC, m.IP)
				if len(m.SecurityGroups) > 0 {
					fmt.Fprintf(&b, ", security_groups: [%s]", strings.Join(m.SecurityGroups, ", "))
				}
				b.WriteString("}\n")
			}
		}
	}
	sgYAML(&b, bp.SecurityGroups)
	return []byte(b.String())
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func countVMs(bp *flows.Blueprint) int {
	n := 0
	for _, p := range bp.VPCs {
		for _, t := range p.Tiers {
			n += len(t.VMs)
		}
	}
	return n
}

// Parse renders bp and parses it back through vpcflow's own loader, so the
// result is validated with defaults applied, exactly as the controller sees it.
func Parse(bp *flows.Blueprint) (*flows.Blueprint, []byte, error) {
	y := YAML(bp)
	v, err := flows.Parse("generated.yaml", y)
	if err != nil {
		return nil, nil, fmt.Errorf("gen: generated blueprint does not validate: %w", err)
	}
	return v, y, nil
}

// Realistic is the many-bridges blueprint of the issue: hosts hosts with 20
// VMs each, 50 tiers, every host a tunnel peer of every other.
func Realistic(hosts int) Spec {
	return Spec{Hosts: hosts, VMsPerHost: 20, Tiers: 50}
}

// BigHost returns a spec whose host h0 compiles to about target flows: 100
// local VMs (ports) in 20 tiers, and 99 other hosts whose VMs sit in the same
// tiers (each remote VM costs h0 two flows: ARP responder and L2 forward).
// It compiles h0 to calibrate and returns the spec and the flow count.
func BigHost(target int) (Spec, int, error) {
	s := Spec{Hosts: 100, LocalVMs: 100, Tiers: 20}
	count := func(s Spec) (int, error) {
		bp, err := Build(s)
		if err != nil {
			return 0, err
		}
		v, _, err := Parse(bp)
		if err != nil {
			return 0, err
		}
		fs, err := flows.Compile(v, HostName(0))
		return len(fs), err
	}
	// Secant steps on VMsPerHost (flows grow about linearly with it).
	x0, x1 := 10, 20
	s.VMsPerHost = x0
	c0, err := count(s)
	if err != nil {
		return s, 0, err
	}
	if target <= c0 {
		return s, c0, nil
	}
	s.VMsPerHost = x1
	c1, err := count(s)
	for step := 0; step < 3 && err == nil && c1 != target && c1 != c0; step++ {
		x2 := x1 + int(float64(target-c1)*float64(x1-x0)/float64(c1-c0)+0.5)
		if x2 < 1 {
			x2 = 1
		}
		if x2 == x1 {
			break
		}
		s.VMsPerHost = x2
		if s.VMsPerHost*(s.Hosts-1) > 3900*s.Tiers {
			s.Tiers = s.VMsPerHost*(s.Hosts-1)/3900 + 1
		}
		x0, c0 = x1, c1
		x1 = x2
		c1, err = count(s)
	}
	return s, c1, err
}
