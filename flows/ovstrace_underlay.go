package flows

// This file makes the underlay hop of an ofproto/trace comparison look the
// way Open vSwitch really sees it. Native tunnelling decapsulates (tnl_pop)
// a packet that the flows output to the bridge's LOCAL port only when it
// matches one of OVS's tunnel listeners: Ethernet destination = the MAC of
// the interface that owns the tunnel IP (cloudbr0's internal port), IP
// destination = that IP, and the tunnel's protocol/port. A host without the
// optional tunnel_mac gives the model no MAC for cloudbr0, so the model's
// packet carries a placeholder destination MAC that OVS would never
// decapsulate: traced as is, OVS reports "port LOCAL" where the real packet
// (sent to the MAC ARP resolved) is decapsulated. The trace of such a hop
// therefore uses the MAC Open vSwitch listens on, read from
// `ovs-appctl tnl/ports/show -v` on that host.

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// TunnelListener is one IPv4 entry of `ovs-appctl tnl/ports/show -v`:
// a packet output to LOCAL that matches it is decapsulated by Port.
type TunnelListener struct {
	Port   string     // OVS's tunnel port name, e.g. vxlan_sys_4789
	MAC    MAC        // Ethernet destination
	IP     netip.Addr // IPv4 destination
	Proto  uint8      // 17 (VXLAN, Geneve) or 47 (GRE)
	UDPDst uint16     // UDP destination port (0 for GRE)
}

// tnlListenerRE matches "vxlan_sys_4789 (1) : eth(dst=32:e5:c4:be:db:43),
// eth_type(0x0800),ipv4(dst=198.51.100.5,proto=17,frag=no),udp(dst=4789)".
var tnlListenerRE = regexp.MustCompile(`^\s*(\S+) \(\d+\) : eth\(dst=([0-9a-fA-F:]{17})\),eth_type\(0x0800\),ipv4\(dst=([0-9.]+),proto=(\d+)[^)]*\)(?:,udp\(dst=(\d+)\))?`)

// ParseTnlPorts parses `ovs-appctl tnl/ports/show -v` (Open vSwitch 2.x/3.x)
// into its IPv4 listeners; IPv6 and unknown lines are skipped. It fails only
// when the output is not a listener list (no "Listening ports:" line).
func ParseTnlPorts(out string) ([]TunnelListener, error) {
	if !strings.Contains(out, "Listening ports:") {
		msg := strings.TrimSpace(out)
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return nil, fmt.Errorf("not a tnl/ports/show result (no \"Listening ports:\" line): %s", msg)
	}
	var ls []TunnelListener
	for _, line := range strings.Split(out, "\n") {
		m := tnlListenerRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		mac, err := ParseMAC(m[2])
		if err != nil {
			continue
		}
		ip, err := netip.ParseAddr(m[3])
		if err != nil || !ip.Is4() {
			continue
		}
		proto, _ := strconv.Atoi(m[4])
		port, _ := strconv.Atoi(m[5])
		ls = append(ls, TunnelListener{Port: m[1], MAC: mac, IP: ip, Proto: uint8(proto), UDPDst: uint16(port)})
	}
	return ls, nil
}

// tnlListenerFor returns the listener for tunnel packets to ip of the
// blueprint's encapsulation, or false.
func tnlListenerFor(ls []TunnelListener, ip netip.Addr, encap Encapsulation) (TunnelListener, bool) {
	for _, l := range ls {
		if l.IP != ip {
			continue
		}
		if encap == EncapGRE && l.Proto == ProtoGRE || encap != EncapGRE && l.Proto == ProtoUDP && l.UDPDst == VXLANPort {
			return l, true
		}
	}
	return TunnelListener{}, false
}

// underlayTrace prepares the ofproto/trace of an underlay hop: the flow to
// trace and notes on what was adjusted (empty when nothing was), plus
// hints explaining a disagreement about decapsulation, if one follows.
type underlayTrace struct {
	flow     string
	adjusted []string
	hints    []string
}

// tnlPorts reads and caches a host's tunnel listeners.
type tnlPorts struct {
	run   TraceRunner
	cache map[string][]TunnelListener
}

func (t *tnlPorts) get(ctx context.Context, host string) ([]TunnelListener, error) {
	if ls, ok := t.cache[host]; ok {
		return ls, nil
	}
	out, err := t.run(ctx, host, "tnl/ports/show", "-v")
	if err != nil {
		return nil, fmt.Errorf("host %s: ovs-appctl tnl/ports/show -v: %w", host, err)
	}
	ls, err := ParseTnlPorts(out)
	if err != nil {
		return nil, fmt.Errorf("host %s: ovs-appctl tnl/ports/show -v: %w", host, err)
	}
	if t.cache == nil {
		t.cache = map[string][]TunnelListener{}
	}
	t.cache[host] = ls
	return ls, nil
}

// underlayFlow returns the trace flow of hop h (stage underlay). When the
// receiving host has no tunnel_mac and the packet is addressed to the
// placeholder MAC of its tunnel IP, the destination MAC becomes the one
// Open vSwitch listens on for that IP (what a real peer sends to after
// ARP); everything else is traced as the model built it, so a real
// difference (no listener, a flow that does not pass the packet to LOCAL)
// still shows.
func (e *Explanation) underlayFlow(ctx context.Context, h *ExplainHop, tp *tnlPorts) (underlayTrace, error) {
	ut := underlayTrace{flow: h.TraceFlow}
	bh := e.cloud.Blueprint.HostByName(h.Host)
	in := h.trace.Input
	if bh == nil || bh.HasMAC || in.EthDst != placeholderMAC(bh.Addr) || in.IPDst != bh.Addr {
		return ut, nil
	}
	ls, err := tp.get(ctx, h.Host)
	if err != nil {
		return ut, err
	}
	l, ok := tnlListenerFor(ls, bh.Addr, e.cloud.Blueprint.Encapsulation)
	if !ok {
		ut.hints = append(ut.hints, fmt.Sprintf("Open vSwitch on %s has no %s tunnel listener for %s (ovs-appctl tnl/ports/show -v): it decapsulates no tunnel packet to this address; check that %s is on the bridge's internal port and the tunnel port %s exists (vpcflow host apply)",
			h.Host, encapName(e.cloud.Blueprint.Encapsulation), bh.Addr, bh.Addr, e.cloud.tunnelPort()))
		return ut, nil
	}
	p := in
	p.EthDst = l.MAC
	ut.flow = OFProtoTraceFlow(p, e.cloud.tunnelPort())
	ut.adjusted = append(ut.adjusted, fmt.Sprintf("dl_dst=%s: the MAC Open vSwitch on %s decapsulates %s tunnel packets to %s on (ovs-appctl tnl/ports/show -v, port %s), instead of the model's placeholder %s: host %s has no tunnel_mac in the blueprint",
		l.MAC, h.Host, encapName(e.cloud.Blueprint.Encapsulation), bh.Addr, l.Port, in.EthDst, h.Host))
	return ut, nil
}

// decapHints explains a disagreement on an underlay hop of a host with a
// tunnel_mac: when the bridge listens on another MAC, a packet to the
// tunnel_mac is not decapsulated (other-config:hwaddr differs from the
// blueprint's tunnel_mac).
func (e *Explanation) decapHints(ctx context.Context, h *ExplainHop, tp *tnlPorts) []string {
	bh := e.cloud.Blueprint.HostByName(h.Host)
	if bh == nil || !bh.HasMAC || h.trace.Input.EthDst != bh.MAC {
		return nil
	}
	ls, err := tp.get(ctx, h.Host)
	if err != nil {
		return []string{fmt.Sprintf("could not read the MAC Open vSwitch decapsulates on: %v", err)}
	}
	l, ok := tnlListenerFor(ls, bh.Addr, e.cloud.Blueprint.Encapsulation)
	switch {
	case !ok:
		return []string{fmt.Sprintf("Open vSwitch on %s has no %s tunnel listener for %s (ovs-appctl tnl/ports/show -v): it decapsulates no tunnel packet to this address", h.Host, encapName(e.cloud.Blueprint.Encapsulation), bh.Addr)}
	case l.MAC != bh.MAC:
		return []string{fmt.Sprintf("Open vSwitch on %s decapsulates tunnel packets to %s only on MAC %s, not on the blueprint's tunnel_mac %s: set the bridge's other-config:hwaddr to the tunnel_mac (vpcflow host apply does) or correct tunnel_mac", h.Host, bh.Addr, l.MAC, bh.MAC)}
	}
	return nil
}

func encapName(encap Encapsulation) string {
	if encap == EncapGRE {
		return "GRE"
	}
	return "VXLAN"
}
