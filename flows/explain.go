package flows

// This file implements the model side of `vpcflow explain`: it builds the
// packet a VM (or an underlay node) would send, runs it through the Cloud
// evaluator (eval.go) and reports the verdict and every hop, table by table,
// in blueprint terms. The comparison with Open vSwitch's ofproto/trace lives
// in ovstrace.go. Pure Go, no I/O. The JSON form (Explanation) is a stable,
// documented schema (docs/explain.md): fields are only ever added.

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ExplainSchema names the JSON schema of Explanation (docs/explain.md).
const ExplainSchema = "vpcflow.explain/v1"

// Verdicts of an explanation.
const (
	VerdictDelivered = "delivered" // arrived at a VM (or the host stack / underlay)
	VerdictDropped   = "dropped"   // arrived nowhere
	VerdictForwarded = "forwarded" // --host on the sender: left that host by the tunnel
)

// UnderlayPrefix marks an underlay source in ExplainQuery.From ("underlay:192.0.2.66").
const UnderlayPrefix = "underlay:"

// ExplainQuery is what to explain (the flags of `vpcflow explain`).
type ExplainQuery struct {
	// From is a VM name, or "underlay:IPv4" for a packet sent by a node on
	// the underlay to a host's uplink (needs Host or a VM in To).
	From string `json:"from"`
	// To is a VM name or an IPv4 address. An address is resolved inside the
	// source VM's VPC (DESIGN §7).
	To string `json:"to"`
	// Proto is icmp (default), tcp or udp. Ignored with ARP.
	Proto string `json:"proto"`
	SPort uint16 `json:"sport,omitempty"`
	DPort uint16 `json:"dport,omitempty"`
	// ARP explains an ARP request who-has To's address instead.
	ARP bool `json:"arp,omitempty"`
	// Host restricts the evaluation to one host (see Explain).
	Host string `json:"host,omitempty"`
	// SpoofMAC / SpoofIP replace the source VM's MAC / IP (ARP sha/spa too).
	// For an underlay source, SpoofMAC is the outer source MAC and SpoofIP
	// the inner source address.
	SpoofMAC string `json:"spoof_mac,omitempty"`
	SpoofIP  string `json:"spoof_ip,omitempty"`
	// VNI is the tunnel key of an underlay source's packet (default: the
	// destination VM's tier).
	VNI uint32 `json:"vni,omitempty"`
	// State is the packet's conntrack state: new (default), established,
	// reply or invalid (Packet.Conn; explain_policy.go).
	State string `json:"state,omitempty"`
}

// ExplainEndpoint is the source or destination in blueprint terms.
type ExplainEndpoint struct {
	// Kind: vm, underlay (an underlay node), host (a host's tunnel IP),
	// management (a management CIDR address), ip (any other address).
	Kind string `json:"kind"`
	VM   string `json:"vm,omitempty"`
	VPC  string `json:"vpc,omitempty"`
	Tier string `json:"tier,omitempty"`
	Host string `json:"host,omitempty"`
	Port string `json:"port,omitempty"`
	MAC  string `json:"mac"`
	IP   string `json:"ip"`
	// MACSource says where the MAC comes from: vm (the blueprint),
	// spoofed (--spoof-mac), tunnel_mac (a host's blueprint tunnel_mac),
	// placeholder (unknown to the blueprint: a locally administered MAC
	// 0e:00:<IPv4 bytes>; the switch never answers ARP for such addresses).
	MACSource string `json:"mac_source"`
}

// ExplainStep is one table visit: the flow that matched, in flows and in
// blueprint terms.
type ExplainStep struct {
	Table     uint8  `json:"table"`
	TableName string `json:"table_name"`
	Priority  uint16 `json:"priority"`
	Cookie    string `json:"cookie"`   // 0x%016x
	Category  string `json:"category"` // the cookie's rule category
	Object    string `json:"object"`   // the cookie's object in blueprint terms
	Note      string `json:"note"`     // the flow's annotation
	Flow      string `json:"flow"`     // ovs-ofctl syntax
	// Clauses are the conjunction clause flows behind a conj_id match.
	Clauses []string `json:"clauses,omitempty"`
}

// ExplainOutput is one output of a hop.
type ExplainOutput struct {
	Port string `json:"port"`
	// Kind: vm, tunnel (encapsulated to another host), host-stack (LOCAL),
	// underlay (the uplink), decapsulate (a tunnel packet handed to LOCAL
	// for decapsulation), port (a port the blueprint does not know).
	Kind      string `json:"kind"`
	VM        string `json:"vm,omitempty"`
	TunnelDst string `json:"tunnel_dst,omitempty"`
	TunnelKey uint64 `json:"tunnel_key,omitempty"`
	ToHost    string `json:"to_host,omitempty"` // tunnel: the host owning tunnel_dst
	InPort    bool   `json:"in_port,omitempty"` // sent back out of the ingress port (output:IN_PORT)
	Packet    string `json:"packet"`            // the packet as it left
}

// ExplainHop is one traversal of one host's cloudbr0.
type ExplainHop struct {
	Host string `json:"host"`
	// Stage: sent (entered from a VM port), encapsulated (the outer packet
	// of a tunnel output, from LOCAL), underlay (entered from the uplink),
	// decapsulated (entered from the tunnel port).
	Stage  string `json:"stage"`
	Packet string `json:"packet"` // the packet as it entered
	// TraceFlow is the ofproto/trace flow for this hop (empty for
	// encapsulated hops: Open vSwitch traces them inside the hop that
	// tunnelled, as native tunnelling re-enters the bridge from LOCAL).
	TraceFlow  string          `json:"trace_flow,omitempty"`
	Steps      []ExplainStep   `json:"steps"`
	Outputs    []ExplainOutput `json:"outputs"`
	Suppressed []string        `json:"suppressed,omitempty"` // outputs to the ingress port by name (dropped by OpenFlow)
	Dropped    bool            `json:"dropped"`
	Result     string          `json:"result"`

	trace Trace
}

// ExplainDrop is the flow that dropped the packet.
type ExplainDrop struct {
	Host      string `json:"host"`
	Stage     string `json:"stage"`
	Table     uint8  `json:"table"`
	TableName string `json:"table_name"`
	// Priority and Cookie are absent (-1 / "") for a table miss without
	// any flow (never in a compiled pipeline: every table has a counted
	// priority-0 drop).
	Priority int    `json:"priority"`
	Cookie   string `json:"cookie"`
	Category string `json:"category"`
	Object   string `json:"object"`
	Note     string `json:"note"`
	Flow     string `json:"flow"`
}

// ExplainDelivery is one place the packet arrived.
type ExplainDelivery struct {
	Host string `json:"host"`
	Port string `json:"port"`
	// Kind: vm, host-stack, underlay, port (see Arrival.Where).
	Kind   string `json:"kind"`
	VM     string `json:"vm,omitempty"`
	Packet string `json:"packet"`
}

// ExplainForward is a tunnel output leaving the host of a --host view.
type ExplainForward struct {
	Host      string `json:"host"` // the host it leaves
	ToHost    string `json:"to_host"`
	TunnelDst string `json:"tunnel_dst"`
	TunnelKey uint64 `json:"tunnel_key"`
}

// Explanation is the result of Explain. Its JSON form is the stable
// `vpcflow explain --format json` schema (docs/explain.md).
type Explanation struct {
	Schema      string            `json:"schema"`
	Blueprint   string            `json:"blueprint"`
	Revision    uint32            `json:"revision"`
	Query       ExplainQuery      `json:"query"`
	Source      ExplainEndpoint   `json:"source"`
	Destination ExplainEndpoint   `json:"destination"`
	Packet      string            `json:"packet"` // the packet as injected
	Verdict     string            `json:"verdict"`
	Summary     string            `json:"summary"`
	DeliveredTo []ExplainDelivery `json:"delivered_to"`
	DroppedBy   *ExplainDrop      `json:"dropped_by"`
	ForwardedTo []ExplainForward  `json:"forwarded_to,omitempty"`
	Notes       []string          `json:"notes"`
	Hops        []ExplainHop      `json:"hops"`
	Lost        []string          `json:"lost,omitempty"`
	// Trace is the ofproto/trace comparison (CheckTrace), when run.
	Trace *TraceReport `json:"trace,omitempty"`
	// Policy is the model's and the flows' policy verdict (ACLs and
	// security groups), when the blueprint has a policy and the packet
	// meets it (explain_policy.go).
	Policy *ExplainPolicy `json:"policy,omitempty"`

	cloud   *Cloud
	state   ConnState
	subject *policySubject
}

// ExitCode is the `vpcflow explain` exit code, by the CLI's convention (0
// ok, 1 finding, 2 usage or cannot tell; docs/cli.md): 0 delivered or
// forwarded; 1 a finding: dropped, or a trace comparison disagreed, or the
// flows disagree with the policy model (the output says which).
func (e *Explanation) ExitCode() int {
	if e.Trace != nil && !e.Trace.Agree {
		return 1
	}
	if e.Policy != nil && !e.Policy.Agree {
		return 1
	}
	if e.Verdict == VerdictDropped {
		return 1
	}
	return 0
}

// placeholderMAC is the MAC explain uses for an address the blueprint
// gives no MAC: locally administered, 0e:00 + the IPv4 bytes (the same
// derivation the evaluator uses for a host without tunnel_mac).
func placeholderMAC(a netip.Addr) MAC {
	b := a.As4()
	return MAC{0x0e, 0x00, b[0], b[1], b[2], b[3]}
}

// explainHostMAC is a host's underlay MAC: its tunnel_mac or the placeholder.
func explainHostMAC(h *Host) (MAC, string) {
	if h.HasMAC {
		return h.MAC, "tunnel_mac"
	}
	return placeholderMAC(h.Addr), "placeholder"
}

// explainFindVM returns the VM called name with its tier and VPC.
func (b *Blueprint) explainFindVM(name string) (VMRef, bool) {
	for pi := range b.VPCs {
		p := &b.VPCs[pi]
		for ti := range p.Tiers {
			t := &p.Tiers[ti]
			for mi := range t.VMs {
				if t.VMs[mi].Name == name {
					return VMRef{p, t, &t.VMs[mi]}, true
				}
			}
		}
	}
	return VMRef{}, false
}

func (b *Blueprint) explainVMNames() []string {
	var names []string
	for _, p := range b.VPCs {
		for _, t := range p.Tiers {
			for _, m := range t.VMs {
				names = append(names, m.Name)
			}
		}
	}
	return names
}

func (b *Blueprint) explainHostByAddr(a netip.Addr) *Host {
	for i := range b.Hosts {
		if b.Hosts[i].Addr == a {
			return &b.Hosts[i]
		}
	}
	return nil
}

func (b *Blueprint) explainUnknownVM(name string) error {
	msg := fmt.Sprintf("no VM %q in blueprint %s", name, b.Source)
	if c := closest(name, b.explainVMNames()); c != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", c)
	}
	return fmt.Errorf("%s: name a VM of the blueprint (vpcs[].tiers[].vms[].name) or, for --to, an IPv4 address", msg)
}

// crossTier is the endpoint of a VM in another tier of the source's VPC:
// a guest sends to its tier's gateway MAC (routed by the switch in a
// distributed-routing VPC, by the router NIC otherwise); without a gateway
// it has no route, and the packet is modelled as sent to the VM's MAC.
func (e *Explanation) crossTier(src, r VMRef) ExplainEndpoint {
	ep := vmEndpoint(r)
	t := src.Tier
	switch {
	case t.HasGateway && src.VPC.IsDistributed():
		ep.MAC, ep.MACSource = t.GatewayHW.String(), "gateway"
		e.note("%s is in another tier of VPC %s (%s): %s sends to its gateway %s (%s); VPC %s routes between its tiers in the switch (routing: distributed)", r.VM.Name, r.VPC.Name, r.Tier.Prefix, src.VM.Name, t.GatewayAddr, t.GatewayHW, r.VPC.Name)
	case t.HasGateway:
		ep.MAC, ep.MACSource = t.GatewayHW.String(), "gateway"
		e.note("%s is in another tier of VPC %s (%s): %s sends to its gateway, the router NIC %s (%s), which forwards it (this explains the first leg, to the router)", r.VM.Name, r.VPC.Name, r.Tier.Prefix, src.VM.Name, t.GatewayAddr, t.GatewayHW)
	default:
		e.note("%s is in another tier of VPC %s (%s, not %s): tier %s has no gateway (no router NIC, no routing: distributed), so a real guest has no route to %s; modelled as if %s sent straight to its MAC %s", r.VM.Name, r.VPC.Name, r.Tier.Prefix, src.Tier.Prefix, src.Tier.Name, r.VM.Addr, src.VM.Name, r.VM.HW)
	}
	return ep
}

func vmEndpoint(r VMRef) ExplainEndpoint {
	return ExplainEndpoint{Kind: "vm", VM: r.VM.Name, VPC: r.VPC.Name, Tier: r.Tier.Name, Host: r.VM.Host,
		Port: r.VM.Port, MAC: r.VM.HW.String(), IP: r.VM.Addr.String(), MACSource: "vm"}
}

func (ep ExplainEndpoint) String() string {
	switch ep.Kind {
	case "vm":
		return fmt.Sprintf("VM %s (vpc %s, tier %s) on host %s port %s, %s %s", ep.VM, ep.VPC, ep.Tier, ep.Host, ep.Port, ep.MAC, ep.IP)
	case "host":
		return fmt.Sprintf("host %s's tunnel IP %s, MAC %s (%s)", ep.Host, ep.IP, ep.MAC, ep.MACSource)
	case "underlay":
		return fmt.Sprintf("underlay node %s, MAC %s (%s)", ep.IP, ep.MAC, ep.MACSource)
	}
	return fmt.Sprintf("%s address %s, MAC %s (%s)", ep.Kind, ep.IP, ep.MAC, ep.MACSource)
}

// Explain evaluates q on the cloud c and explains the verdict.
//
// A VM source sends from its port with its MAC and IP (or the spoofed
// ones). The destination MAC of a VM is the VM's own MAC (what the ARP
// responder answers); an address that is not a VM of the source's VPC gets
// the owning host's tunnel_mac, else a placeholder MAC, and a note says
// what a real guest would do (without a gateway it has no route off its
// tier). The packet is followed through every host (tunnel, underlay,
// decapsulation).
//
// Host restricts the evaluation to one host: the source VM's own host (the
// journey is cut where the packet leaves it: verdict forwarded), or another
// host (the packet is injected as it would arrive there through the tunnel
// from the source's host, whatever the source's host does with it). An
// underlay source ("underlay:IPv4") always arrives on one host: Host, or
// the host of a VM given as To; with a VM as To it carries the packet
// encapsulated (key VNI, default the VM's tier), with an address as To it
// is a plain packet to that address.
func Explain(c *Cloud, q ExplainQuery) (*Explanation, error) {
	bp := c.Blueprint
	if q.Proto == "" {
		q.Proto = "icmp"
	}
	switch q.Proto {
	case "icmp", "tcp", "udp":
	default:
		return nil, fmt.Errorf("protocol %q: use icmp, tcp or udp", q.Proto)
	}
	if q.ARP {
		q.Proto, q.SPort, q.DPort = "", 0, 0
	} else if q.Proto == "icmp" {
		if q.SPort != 0 || q.DPort != 0 {
			return nil, fmt.Errorf("--sport/--dport need --proto tcp or udp")
		}
	} else {
		if q.DPort == 0 {
			return nil, fmt.Errorf("--proto %s needs --dport (the destination port)", q.Proto)
		}
		if q.SPort == 0 {
			q.SPort = 40000
		}
	}
	if q.Host != "" && bp.HostByName(q.Host) == nil {
		return nil, fmt.Errorf("--host %q is not a host of blueprint %s (hosts: %s)", q.Host, bp.Source, hostList(bp.Hosts))
	}
	if q.From == "" || q.To == "" {
		return nil, fmt.Errorf("--from and --to are required")
	}
	state, err := ParseConnState(q.State)
	if err != nil {
		return nil, err
	}
	if q.ARP && state != ConnNew {
		return nil, fmt.Errorf("--state applies to IPv4 packets, not to --arp")
	}
	e := &Explanation{Schema: ExplainSchema, Blueprint: bp.Source, Revision: bp.Revision, cloud: c,
		DeliveredTo: []ExplainDelivery{}, Notes: []string{}, Hops: []ExplainHop{}, state: state}
	var spoofMAC MAC
	var spoofIP netip.Addr
	if q.SpoofMAC != "" {
		m, err := ParseMAC(q.SpoofMAC)
		if err != nil {
			return nil, fmt.Errorf("--spoof-mac: %v", err)
		}
		spoofMAC = m
	}
	if q.SpoofIP != "" {
		a, err := netip.ParseAddr(q.SpoofIP)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("--spoof-ip %q is not an IPv4 address", q.SpoofIP)
		}
		spoofIP = a
	}
	var j Journey
	if strings.HasPrefix(q.From, UnderlayPrefix) {
		var err error
		if j, err = e.fromUnderlay(q, spoofMAC, spoofIP); err != nil {
			return nil, err
		}
	} else {
		var err error
		if j, err = e.fromVM(q, spoofMAC, spoofIP); err != nil {
			return nil, err
		}
	}
	e.Query = q
	e.build(j, q.Host)
	e.judgePolicy()
	return e, nil
}

func (e *Explanation) fromVM(q ExplainQuery, spoofMAC MAC, spoofIP netip.Addr) (Journey, error) {
	c, bp := e.cloud, e.cloud.Blueprint
	src, ok := bp.explainFindVM(q.From)
	if !ok {
		return Journey{}, bp.explainUnknownVM(q.From)
	}
	e.Source = vmEndpoint(src)
	srcMAC, srcIP := src.VM.HW, src.VM.Addr
	if q.SpoofMAC != "" {
		srcMAC = spoofMAC
		e.Source.MAC, e.Source.MACSource = spoofMAC.String(), "spoofed"
		e.note("source MAC spoofed: %s sends as %s (its blueprint MAC is %s)", src.VM.Name, spoofMAC, src.VM.HW)
	}
	if q.SpoofIP != "" {
		srcIP = spoofIP
		e.Source.IP = spoofIP.String()
		e.note("source IP spoofed: %s sends as %s (its blueprint IP is %s)", src.VM.Name, spoofIP, src.VM.Addr)
	}
	dst, err := e.resolveDestination(src, q.To)
	if err != nil {
		return Journey{}, err
	}
	e.Destination = dst
	dstMAC, _ := ParseMAC(dst.MAC)
	dstIP, _ := netip.ParseAddr(dst.IP)
	var p Packet
	if q.ARP {
		p = ARPRequest(src.VM.Port, srcMAC, srcIP, dstIP)
		e.note("ARP request who-has %s from %s: the switch answers only for addresses of the asker's own tier (never its own), else drops the request", dstIP, src.VM.Name)
	} else {
		switch q.Proto {
		case "tcp":
			p = TCPPacket(src.VM.Port, srcMAC, dstMAC, srcIP, dstIP, q.SPort, q.DPort)
		case "udp":
			p = UDPPacket(src.VM.Port, srcMAC, dstMAC, srcIP, dstIP, q.SPort, q.DPort)
		default:
			p = ICMPPacket(src.VM.Port, srcMAC, dstMAC, srcIP, dstIP)
		}
		e.preparePolicy(&p, src.VPC)
	}
	e.Packet = p.String()
	if q.Host == "" || q.Host == src.VM.Host {
		return c.Trace(src.VM.Host, p), nil
	}
	// Another host: the packet as it arrives there through the tunnel from
	// the source VM's host, with the source tier's key.
	sh := bp.HostByName(src.VM.Host)
	h := bp.HostByName(q.Host)
	outer := c.OuterPacket(sh, h.Addr, uint64(src.Tier.VNI))
	inner := p
	inner.TunID = uint64(src.Tier.VNI)
	e.note("--host %s: evaluated only on %s, as the packet arrives there through the tunnel from %s's host %s (%s, key %d), whatever %s's own flows do with it",
		q.Host, q.Host, src.VM.Name, sh.Name, sh.Addr, src.Tier.VNI, sh.Name)
	return c.TraceOuter(q.Host, outer, inner), nil
}

// resolveDestination resolves --to for a VM source.
func (e *Explanation) resolveDestination(src VMRef, to string) (ExplainEndpoint, error) {
	bp := e.cloud.Blueprint
	addr, err := netip.ParseAddr(to)
	if err != nil {
		r, ok := bp.explainFindVM(to)
		if !ok {
			return ExplainEndpoint{}, bp.explainUnknownVM(to)
		}
		if e.Query.ARP {
			return vmEndpoint(r), nil
		}
		if r.VPC != src.VPC {
			e.note("%s is in another VPC (%s): VPCs never reach each other; modelled as if %s knew its MAC %s", r.VM.Name, r.VPC.Name, src.VM.Name, r.VM.HW)
		} else if r.Tier != src.Tier {
			return e.crossTier(src, r), nil
		}
		return vmEndpoint(r), nil
	}
	if !addr.Is4() {
		return ExplainEndpoint{}, fmt.Errorf("--to %q: only IPv4 addresses (IPv6 from guests is dropped until specified)", to)
	}
	// Inside the source's VPC first (DESIGN §7: overlapping CIDRs).
	for ti := range src.VPC.Tiers {
		t := &src.VPC.Tiers[ti]
		for mi := range t.VMs {
			if t.VMs[mi].Addr == addr {
				r := VMRef{src.VPC, t, &t.VMs[mi]}
				e.note("%s resolved inside VPC %s to VM %s", addr, src.VPC.Name, r.VM.Name)
				if r.Tier != src.Tier {
					return e.crossTier(src, r), nil
				}
				return vmEndpoint(r), nil
			}
		}
	}
	ep := ExplainEndpoint{Kind: "ip", IP: addr.String()}
	mac := placeholderMAC(addr)
	ep.MACSource = "placeholder"
	if h := bp.explainHostByAddr(addr); h != nil {
		ep.Kind, ep.Host = "host", h.Name
		mac, ep.MACSource = explainHostMAC(h)
	} else {
		for _, p := range bp.MgmtPrefixes {
			if p.Contains(addr) {
				ep.Kind = "management"
			}
		}
	}
	ep.MAC = mac.String()
	if other := otherVPCOwner(bp, src.VPC, addr); other != "" {
		e.note("%s is %s, but --to addresses resolve inside the source's VPC %s only (tenant CIDRs may overlap): use --to with the VM name to model a packet to that VM's MAC", addr, other, src.VPC.Name)
	}
	for _, ct := range bp.Controllers {
		if strings.Contains(ct, ":"+addr.String()+":") {
			e.note("%s is a controller address (%s)", addr, ct)
		}
	}
	if src.Tier.Prefix.Contains(addr) {
		e.note("no VM of tier %s/%s has %s: the guest's ARP request goes unanswered, so a real guest never sends this packet; modelled with MAC %s (%s)", src.VPC.Name, src.Tier.Name, addr, ep.MAC, ep.MACSource)
	} else {
		e.note("%s is outside %s's tier %s and vpcflow provides no gateway: a real guest has no route and would not send this packet at all; modelled as if the guest had an on-link route and sent to MAC %s (%s)", addr, src.VM.Name, src.Tier.Prefix, ep.MAC, macSourceText(ep.MACSource))
	}
	return ep, nil
}

func macSourceText(s string) string {
	switch s {
	case "tunnel_mac":
		return "the host's tunnel_mac"
	case "placeholder":
		return "a placeholder: the blueprint does not know this MAC"
	}
	return s
}

func otherVPCOwner(bp *Blueprint, not *VPC, a netip.Addr) string {
	for pi := range bp.VPCs {
		p := &bp.VPCs[pi]
		if p == not {
			continue
		}
		for _, t := range p.Tiers {
			for _, m := range t.VMs {
				if m.Addr == a {
					return fmt.Sprintf("VM %s's address in VPC %s", m.Name, p.Name)
				}
			}
		}
	}
	return ""
}

func (e *Explanation) fromUnderlay(q ExplainQuery, spoofMAC MAC, spoofIP netip.Addr) (Journey, error) {
	c, bp := e.cloud, e.cloud.Blueprint
	s := strings.TrimPrefix(q.From, UnderlayPrefix)
	srcAddr, err := netip.ParseAddr(s)
	if err != nil || !srcAddr.Is4() {
		return Journey{}, fmt.Errorf("--from %q: an underlay source is underlay:IPv4 (e.g. underlay:192.0.2.66)", q.From)
	}
	if q.ARP {
		return Journey{}, fmt.Errorf("--arp needs a VM as --from")
	}
	e.Source = ExplainEndpoint{Kind: "underlay", IP: srcAddr.String()}
	srcMAC, macSrc := placeholderMAC(srcAddr), "placeholder"
	if h := bp.explainHostByAddr(srcAddr); h != nil {
		srcMAC, macSrc = explainHostMAC(h)
		e.Source.Host = h.Name
		e.note("underlay source %s is host %s's tunnel IP", srcAddr, h.Name)
	}
	if q.SpoofMAC != "" {
		srcMAC, macSrc = spoofMAC, "spoofed"
	}
	e.Source.MAC, e.Source.MACSource = srcMAC.String(), macSrc
	encap := string(bp.Encapsulation)
	if r, ok := bp.explainFindVM(q.To); ok {
		host := q.Host
		if host == "" {
			host = r.VM.Host
		}
		h := bp.HostByName(host)
		e.Destination = vmEndpoint(r)
		key := uint64(r.Tier.VNI)
		if q.VNI != 0 {
			key = uint64(q.VNI)
		}
		dstMAC, _ := explainHostMAC(h)
		outer := Packet{InPort: c.uplinkIn(h), EthSrc: srcMAC, EthDst: dstMAC, EthType: EthIPv4, IPSrc: srcAddr, IPDst: h.Addr}
		if bp.Encapsulation == EncapGRE {
			outer.IPProto = ProtoGRE
		} else {
			outer.IPProto, outer.L4Src, outer.L4Dst = ProtoUDP, uint16(0xc000|key&0x3fff), VXLANPort
		}
		innerSrc := srcAddr
		if q.SpoofIP != "" {
			innerSrc = spoofIP
		}
		innerMAC := placeholderMAC(innerSrc)
		var inner Packet
		switch q.Proto {
		case "tcp":
			inner = TCPPacket("", innerMAC, r.VM.HW, innerSrc, r.VM.Addr, q.SPort, q.DPort)
		case "udp":
			inner = UDPPacket("", innerMAC, r.VM.HW, innerSrc, r.VM.Addr, q.SPort, q.DPort)
		default:
			inner = ICMPPacket("", innerMAC, r.VM.HW, innerSrc, r.VM.Addr)
		}
		e.preparePolicy(&inner, r.VPC)
		inner.TunID, inner.InPort = key, c.tunnelPort()
		e.Packet = fmt.Sprintf("%s carrying [%s]", outer, inner)
		e.note("%s packet from the underlay node %s to host %s (%s), key %d, inner %s -> VM %s; the outer source MAC is %s (%s)",
			encap, srcAddr, h.Name, h.Addr, key, innerSrc, r.VM.Name, srcMAC, macSourceText(macSrc))
		return c.TraceOuter(host, outer, inner), nil
	}
	dst, err := netip.ParseAddr(q.To)
	if err != nil || !dst.Is4() {
		return Journey{}, bp.explainUnknownVM(q.To)
	}
	host := q.Host
	if host == "" {
		if h := bp.explainHostByAddr(dst); h != nil {
			host = h.Name
		} else {
			return Journey{}, fmt.Errorf("--from %s --to %s: name the receiving host with --host (no host has tunnel IP %s)", q.From, q.To, dst)
		}
	}
	h := bp.HostByName(host)
	e.Destination = ExplainEndpoint{Kind: "ip", IP: dst.String(), MACSource: "placeholder"}
	dstMAC := placeholderMAC(dst)
	if dh := bp.explainHostByAddr(dst); dh != nil {
		e.Destination.Kind, e.Destination.Host = "host", dh.Name
		dstMAC, e.Destination.MACSource = explainHostMAC(dh)
	}
	e.Destination.MAC = dstMAC.String()
	var p Packet
	in := c.uplinkIn(h)
	switch q.Proto {
	case "tcp":
		p = TCPPacket(in, srcMAC, dstMAC, srcAddr, dst, q.SPort, q.DPort)
	case "udp":
		p = UDPPacket(in, srcMAC, dstMAC, srcAddr, dst, q.SPort, q.DPort)
	default:
		p = ICMPPacket(in, srcMAC, dstMAC, srcAddr, dst)
	}
	e.preparePolicy(&p, nil)
	e.Packet = p.String()
	e.note("plain (not encapsulated) packet from the underlay node %s arriving on host %s's uplink %s", srcAddr, h.Name, in)
	return c.Trace(host, p), nil
}

func (e *Explanation) note(format string, args ...any) {
	e.Notes = append(e.Notes, fmt.Sprintf(format, args...))
}

// DescribeRule says what a cookie's rule is about, in blueprint terms.
func DescribeRule(bp *Blueprint, c Cookie) string {
	obj := c.Object()
	vm := func() string {
		for _, p := range bp.VPCs {
			for _, t := range p.Tiers {
				for _, m := range t.VMs {
					if VMObject(m.Name) == obj {
						return fmt.Sprintf("VM %s (vpc %s, tier %s)", m.Name, p.Name, t.Name)
					}
				}
			}
		}
		return fmt.Sprintf("VM id %#x (not in this blueprint)", obj)
	}
	tier := func() string {
		for _, p := range bp.VPCs {
			for _, t := range p.Tiers {
				if t.Key == obj && t.IsVLAN() {
					return fmt.Sprintf("tier %s/%s (vlan %d)", p.Name, t.Name, t.VLAN)
				}
				if t.Key == obj {
					return fmt.Sprintf("tier %s/%s (vni %d)", p.Name, t.Name, t.VNI)
				}
			}
		}
		if obj >= VLANKeyBase {
			return fmt.Sprintf("vlan %d (not in this blueprint)", obj-VLANKeyBase)
		}
		return fmt.Sprintf("vni %d (not in this blueprint)", obj)
	}
	addr := valueAddr(uint64(obj))
	peer := func() string {
		if h := bp.explainHostByAddr(addr); h != nil {
			return fmt.Sprintf("peer host %s (%s)", h.Name, addr)
		}
		for _, a := range bp.PeerAddrs {
			if a == addr {
				return "trusted peer " + addr.String()
			}
		}
		return "peer " + addr.String() + " (not in this blueprint)"
	}
	switch c.Category() {
	case CatACLRule, CatSGRule:
		return describePolicyRule(bp, c)
	case CatACLDefault, CatSGDefault, CatCtInvalid, CatPolicyPass:
		return describePolicyPlumbing(bp, c)
	case CatClassify:
		switch obj {
		case objUplink:
			return "the uplink"
		case objLocal:
			return "LOCAL (host stack)"
		case objTunnel:
			return "the tunnel port"
		}
		return vm()
	case CatUnderlayMgmt:
		return "management traffic for this host"
	case CatHostOut:
		return "this host's own and encapsulated traffic"
	case CatIPv6Drop:
		return "IPv6 from every guest"
	case CatDHCPGuard:
		return "DHCP server replies from every guest"
	case CatTunnelAllow, CatPeerARPGuard:
		return peer()
	case CatTunnelDrop:
		switch obj {
		case ProtoUDP:
			return "VXLAN (udp/4789) from untrusted sources"
		case ProtoGRE:
			return "GRE (ip proto 47) from untrusted sources"
		}
		return fmt.Sprintf("ip proto %d", obj)
	case CatPortSecurity, CatSpoofDrop, CatARPDrop, CatVPCForward:
		return vm()
	case CatARPResponder:
		if obj == 0 {
			return "ARP replies"
		}
		return vm()
	case CatMgmtGuard:
		for _, port := range bp.Management.HostPorts {
			if uint32(port) == obj {
				return fmt.Sprintf("host service port %d", port)
			}
		}
		for _, p := range bp.MgmtPrefixes {
			if p.Masked().Addr() == addr {
				return "management network " + p.String()
			}
		}
		if h := bp.explainHostByAddr(addr); h != nil {
			return fmt.Sprintf("host %s's tunnel IP %s", h.Name, addr)
		}
		return fmt.Sprintf("object %#x", obj)
	case CatMgmtPass, CatFlood, CatTunnelIn, CatVLANIn, CatVLANOut, CatGatewayARP, CatRouteEntry:
		if obj == 0 {
			return "every tier"
		}
		return tier()
	case CatVLANDrop:
		return "tagged frames of VLANs this host carries no tier of"
	case CatRoute:
		return vm()
	case CatTrustedPeerIn:
		if obj == 0 {
			return "trusted peers (conjunction)"
		}
		if t := tier(); !strings.HasSuffix(t, "(not in this blueprint)") {
			return t
		}
		return "trusted peer " + addr.String()
	case CatDefaultDrop:
		return "table " + TableName(TableID(obj))
	case CatUnknown:
		return "not a vpcflow flow (foreign cookie)"
	}
	return fmt.Sprintf("object %#x", obj)
}

func (e *Explanation) step(s *Step) ExplainStep {
	bp := e.cloud.Blueprint
	st := ExplainStep{Table: uint8(s.Table), TableName: TableName(s.Table), Priority: s.Flow.Priority,
		Cookie: s.Cookie.String(), Category: s.Cookie.Category().String(), Object: DescribeRule(bp, s.Cookie),
		Note: s.Flow.Note, Flow: s.Flow.String()}
	for i := range s.Clauses {
		st.Clauses = append(st.Clauses, s.Clauses[i].String())
	}
	return st
}

// isTunnelFor mirrors Cloud.isTunnelFor for an output of an underlay hop.
func (e *Explanation) decapsulates(host string, o *Delivery) bool {
	h := e.cloud.Blueprint.HostByName(host)
	return h != nil && o.Port == PortLocal && e.cloud.isTunnelFor(o.Packet, h)
}

func (e *Explanation) output(host string, stage string, o *Delivery) ExplainOutput {
	c := e.cloud
	out := ExplainOutput{Port: o.Port, InPort: o.ViaInPort, Packet: o.Packet.String()}
	h := c.Blueprint.HostByName(host)
	switch {
	case o.Port == c.tunnelPort():
		out.Kind = "tunnel"
		out.TunnelDst, out.TunnelKey = o.Packet.TunDst.String(), o.Packet.TunID
		if dh := c.Blueprint.explainHostByAddr(o.Packet.TunDst); dh != nil {
			out.ToHost = dh.Name
		}
	case c.vmByPort[host][o.Port] != "":
		out.Kind, out.VM = "vm", c.vmByPort[host][o.Port]
	case stage == "underlay" && e.decapsulates(host, o):
		out.Kind = "decapsulate"
	case o.Port == PortLocal:
		out.Kind = "host-stack"
	case h != nil && h.IsUplinkPort(o.Port):
		out.Kind = "underlay"
	default:
		out.Kind = "port"
	}
	return out
}

func (o ExplainOutput) String() string {
	s := "output " + o.Port
	switch o.Kind {
	case "vm":
		s += " (VM " + o.VM + ")"
	case "tunnel":
		s = fmt.Sprintf("tunnel key %d to %s", o.TunnelKey, o.TunnelDst)
		if o.ToHost != "" {
			s += " (host " + o.ToHost + ")"
		}
	case "decapsulate":
		s += " (tunnel packet to the host stack: decapsulated)"
	case "host-stack":
		s += " (host stack)"
	case "underlay":
		s += " (underlay)"
	}
	if o.InPort {
		s += " via IN_PORT"
	}
	return s
}

func (e *Explanation) drop(h *Hop) *ExplainDrop {
	t := &h.Trace
	d := &ExplainDrop{Host: h.Host, Stage: h.Stage, Priority: -1}
	switch {
	case t.DropBy != nil:
		s := e.step(&t.Steps[len(t.Steps)-1])
		d.Table, d.TableName, d.Priority, d.Cookie = s.Table, s.TableName, int(s.Priority), s.Cookie
		d.Category, d.Object, d.Note, d.Flow = s.Category, s.Object, s.Note, s.Flow
	case t.Missed:
		d.Table, d.TableName = uint8(t.MissTable), TableName(t.MissTable)
		d.Note = "no flow matched (table miss)"
	default:
		d.Note = t.Verdict()
		if len(t.Steps) > 0 {
			s := e.step(&t.Steps[len(t.Steps)-1])
			d.Table, d.TableName, d.Priority, d.Cookie = s.Table, s.TableName, int(s.Priority), s.Cookie
			d.Category, d.Object, d.Flow = s.Category, s.Object, s.Flow
		}
	}
	return d
}

// String renders the drop as the verdict line.
func (d *ExplainDrop) String() string {
	if d.Priority < 0 && d.Cookie == "" {
		return fmt.Sprintf("dropped on host %s: %s in table %s", d.Host, d.Note, d.TableName)
	}
	return fmt.Sprintf("dropped on host %s by rule %s (table %s, priority %d, cookie %s): %s", d.Host, d.Category, d.TableName, d.Priority, d.Cookie, d.Note)
}

func (e *Explanation) build(j Journey, host string) {
	c := e.cloud
	bp := c.Blueprint
	restrict := host != ""
	for i := range j.Hops {
		h := &j.Hops[i]
		if restrict && h.Host != host {
			continue
		}
		stage := h.Stage
		if stage == "sent" {
			if hh := bp.HostByName(h.Host); hh != nil && hh.IsUplinkPort(h.Trace.Input.InPort) {
				stage = "underlay" // a plain packet from an underlay node
			}
		}
		xh := ExplainHop{Host: h.Host, Stage: stage, Packet: h.Trace.Input.String(), trace: h.Trace,
			Steps: []ExplainStep{}, Outputs: []ExplainOutput{}, Dropped: h.Trace.Dropped}
		if h.Stage != "encapsulated" {
			xh.TraceFlow = OFProtoTraceFlow(h.Trace.Input, c.tunnelPort())
		}
		for k := range h.Trace.Steps {
			xh.Steps = append(xh.Steps, e.step(&h.Trace.Steps[k]))
		}
		for k := range h.Trace.Outputs {
			xh.Outputs = append(xh.Outputs, e.output(h.Host, h.Stage, &h.Trace.Outputs[k]))
		}
		for _, o := range h.Trace.Suppressed {
			xh.Suppressed = append(xh.Suppressed, o.Port)
		}
		if h.Trace.Dropped {
			xh.Result = e.drop(h).String()
		} else {
			var outs []string
			for _, o := range xh.Outputs {
				outs = append(outs, o.String())
			}
			xh.Result = strings.Join(outs, "; ")
		}
		if h.Trace.Err != "" {
			xh.Result += " (pipeline error: " + h.Trace.Err + ")"
		}
		e.Hops = append(e.Hops, xh)
		if restrict && h.Stage == "encapsulated" && !h.Trace.Dropped {
			dst := h.Trace.Input.IPDst
			f := ExplainForward{Host: h.Host, TunnelDst: dst.String()}
			if dh := bp.explainHostByAddr(dst); dh != nil {
				f.ToHost = dh.Name
			}
			// the key: the tunnel output of the hop that encapsulated
			f.TunnelKey = e.keyFor(dst)
			e.ForwardedTo = append(e.ForwardedTo, f)
		}
	}
	for _, a := range j.Arrivals {
		if restrict && a.Host != host {
			continue
		}
		e.DeliveredTo = append(e.DeliveredTo, ExplainDelivery{Host: a.Host, Port: a.Port, Kind: a.Where(bp), VM: a.VM, Packet: a.Packet.String()})
	}
	for _, l := range j.Lost {
		if restrict && !strings.Contains(l, host) {
			continue
		}
		e.Lost = append(e.Lost, l)
	}
	for i := range j.Hops {
		h := &j.Hops[i]
		if (restrict && h.Host != host) || !h.Trace.Dropped {
			continue
		}
		e.DroppedBy = e.drop(h)
		break
	}
	switch {
	case len(e.DeliveredTo) > 0:
		e.Verdict = VerdictDelivered
		var parts []string
		for _, d := range e.DeliveredTo {
			parts = append(parts, d.String())
		}
		e.Summary = "delivered to " + strings.Join(parts, ", ")
		if e.Query.ARP && len(e.DeliveredTo) == 1 && e.DeliveredTo[0].VM == e.Source.VM && e.Source.VM != "" {
			var rep Packet
			for _, a := range j.Arrivals {
				rep = a.Packet
			}
			e.Summary = fmt.Sprintf("delivered: answered by the switch: %s is-at %s (ARP reply delivered to VM %s on host %s)", rep.ARPSpa, rep.ARPSha, e.Source.VM, e.DeliveredTo[0].Host)
			if e.Destination.Kind == "vm" && rep.ARPSha.String() != e.Destination.MAC {
				owner := rep.ARPSha.String()
				for _, p := range bp.VPCs {
					for _, t := range p.Tiers {
						for _, m := range t.VMs {
							if m.HW == rep.ARPSha {
								owner = fmt.Sprintf("VM %s (vpc %s, tier %s)", m.Name, p.Name, t.Name)
							}
						}
					}
				}
				e.note("the answer is %s's MAC, not %s's (%s): ARP is answered inside the asker's tier, where %s belongs to %s", owner, e.Destination.VM, e.Destination.MAC, rep.ARPSpa, owner)
			}
		}
		if e.Destination.Kind == "vm" && !e.Query.ARP && !e.reached(e.Destination.VM) {
			e.note("WARNING: delivered, but not to the destination VM %s", e.Destination.VM)
		}
		if e.DroppedBy != nil && len(e.ForwardedTo) == 0 {
			// a flood: some branches delivered, some dropped
			e.DroppedBy = nil
		}
	case len(e.ForwardedTo) > 0:
		e.Verdict = VerdictForwarded
		var parts []string
		for _, f := range e.ForwardedTo {
			parts = append(parts, fmt.Sprintf("leaves host %s by the tunnel to %s (host %s, key %d)", f.Host, f.TunnelDst, f.ToHost, f.TunnelKey))
		}
		e.Summary = strings.Join(parts, "; ") + " (--host " + host + ": not followed further)"
		e.DroppedBy = nil
	default:
		e.Verdict = VerdictDropped
		switch {
		case e.DroppedBy != nil:
			e.Summary = e.DroppedBy.String()
		case len(e.Lost) > 0:
			e.Summary = "dropped: " + strings.Join(e.Lost, "; ")
		case restrict && len(e.Hops) == 0:
			e.Summary = "dropped: the packet never reaches host " + host
		default:
			e.Summary = "dropped: arrives nowhere"
		}
	}
}

func (e *Explanation) keyFor(dst netip.Addr) uint64 {
	for i := range e.Hops {
		for _, o := range e.Hops[i].Outputs {
			if o.Kind == "tunnel" && o.TunnelDst == dst.String() {
				return o.TunnelKey
			}
		}
	}
	return 0
}

func (e *Explanation) reached(vm string) bool {
	for _, d := range e.DeliveredTo {
		if d.VM == vm {
			return true
		}
	}
	return false
}

func (d ExplainDelivery) String() string {
	switch d.Kind {
	case "vm":
		return fmt.Sprintf("VM %s on host %s (port %s)", d.VM, d.Host, d.Port)
	case "host-stack":
		return "the host stack (LOCAL) of host " + d.Host
	case "underlay":
		return fmt.Sprintf("the underlay (uplink %s of host %s)", d.Port, d.Host)
	}
	return fmt.Sprintf("port %s of host %s (not in the blueprint)", d.Port, d.Host)
}

// Text renders the explanation for a terminal.
func (e *Explanation) Text() string {
	var b strings.Builder
	q := e.Query
	what := q.Proto
	switch {
	case q.ARP:
		what = "arp who-has"
	case q.Proto != "icmp":
		what = fmt.Sprintf("%s %d->%d", q.Proto, q.SPort, q.DPort)
	}
	if q.State != "" && q.State != "new" {
		what += ", state " + q.State
	}
	fmt.Fprintf(&b, "explain %s -> %s (%s)", q.From, q.To, what)
	if q.Host != "" {
		fmt.Fprintf(&b, " on host %s only", q.Host)
	}
	fmt.Fprintf(&b, "   [blueprint %s, revision %d]\n", e.Blueprint, e.Revision)
	fmt.Fprintf(&b, "  from  %s\n", e.Source)
	fmt.Fprintf(&b, "  to    %s\n", e.Destination)
	fmt.Fprintf(&b, "  packet %s\n\n", e.Packet)
	if strings.HasPrefix(e.Summary, e.Verdict) {
		fmt.Fprintf(&b, "verdict: %s\n", e.Summary)
	} else {
		fmt.Fprintf(&b, "verdict: %s: %s\n", e.Verdict, e.Summary)
	}
	if e.Policy != nil {
		b.WriteString(e.Policy.text())
	}
	for i, h := range e.Hops {
		fmt.Fprintf(&b, "\nhop %d: %s on %s: %s\n", i+1, h.Stage, h.Host, h.Packet)
		for _, s := range h.Steps {
			fmt.Fprintf(&b, "  table %-2d %-13s prio %-3d cookie %s [%s] %s\n", s.Table, s.TableName, s.Priority, s.Cookie, s.Category, s.Note)
			fmt.Fprintf(&b, "           rule: %s\n", s.Object)
			fmt.Fprintf(&b, "           flow: %s\n", s.Flow)
			for _, c := range s.Clauses {
				fmt.Fprintf(&b, "           via clause %s\n", c)
			}
		}
		for _, o := range h.Outputs {
			fmt.Fprintf(&b, "  -> %s\n", o)
		}
		for _, s := range h.Suppressed {
			fmt.Fprintf(&b, "  -> output %s suppressed (the ingress port)\n", s)
		}
		if h.Dropped {
			fmt.Fprintf(&b, "  -> %s\n", h.Result)
		}
	}
	if e.DroppedBy == nil {
		for _, l := range e.Lost {
			fmt.Fprintf(&b, "\nlost: %s\n", l)
		}
	}
	if len(e.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range e.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	if e.Trace != nil {
		b.WriteString("\n")
		b.WriteString(e.Trace.Text())
	}
	return b.String()
}

// OFProtoTraceFlow renders p as an `ovs-appctl ofproto/trace` flow: the
// protocol keyword first (OVS checks prerequisites in order), in_port by
// name, tunnel metadata for a packet entering from tunnelPort, then L2, L3
// and L4 fields (tcp_/udp_ names: ofproto/trace rejects tp_src before the
// protocol is known).
func OFProtoTraceFlow(p Packet, tunnelPort string) string {
	var f []string
	switch p.EthType {
	case EthIPv4:
		switch p.IPProto {
		case ProtoTCP:
			f = append(f, "tcp")
		case ProtoUDP:
			f = append(f, "udp")
		case ProtoICMP:
			f = append(f, "icmp")
		default:
			f = append(f, "ip", "nw_proto="+strconv.Itoa(int(p.IPProto)))
		}
	case EthARP:
		f = append(f, "arp")
	case EthIPv6:
		f = append(f, "ipv6")
	default:
		f = append(f, fmt.Sprintf("dl_type=0x%04x", p.EthType))
	}
	f = append(f, "in_port="+quotePort(p.InPort))
	if p.InPort == tunnelPort {
		f = append(f, fmt.Sprintf("tun_id=%#x", p.TunID))
		if p.TunSrc.IsValid() {
			f = append(f, "tun_src="+p.TunSrc.String())
		}
		if p.TunDst.IsValid() {
			f = append(f, "tun_dst="+p.TunDst.String())
		}
	}
	f = append(f, "dl_src="+p.EthSrc.String(), "dl_dst="+p.EthDst.String())
	switch p.EthType {
	case EthIPv4:
		f = append(f, "nw_src="+addrOrZero(p.IPSrc), "nw_dst="+addrOrZero(p.IPDst), "nw_ttl=64")
		switch p.IPProto {
		case ProtoTCP:
			f = append(f, fmt.Sprintf("tcp_src=%d", p.L4Src), fmt.Sprintf("tcp_dst=%d", p.L4Dst))
		case ProtoUDP:
			f = append(f, fmt.Sprintf("udp_src=%d", p.L4Src), fmt.Sprintf("udp_dst=%d", p.L4Dst))
		case ProtoICMP:
			f = append(f, fmt.Sprintf("icmp_type=%d", p.ICMPType), fmt.Sprintf("icmp_code=%d", p.ICMPCode))
		}
	case EthARP:
		f = append(f, fmt.Sprintf("arp_op=%d", p.ARPOp), "arp_spa="+addrOrZero(p.ARPSpa), "arp_tpa="+addrOrZero(p.ARPTpa),
			"arp_sha="+p.ARPSha.String(), "arp_tha="+p.ARPTha.String())
	}
	return strings.Join(f, ",")
}

func addrOrZero(a netip.Addr) string {
	if !a.IsValid() {
		return "0.0.0.0"
	}
	return a.String()
}
