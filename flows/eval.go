package flows

// This file is an in-memory OpenFlow 1.3 pipeline evaluator (in the spirit
// of Faucet's fakeoftable): it runs a packet through compiled flows the way
// Open vSwitch would and records every table, flow and output. Cloud links
// the evaluators of every host of a blueprint through a simulated underlay
// (tunnel encapsulation, the receiving host's underlay_in, decapsulation), so
// isolation can be tested as behaviour and `vpcflow explain` can show why a
// packet is delivered or dropped. Pure Go, no I/O.

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// BroadcastMAC is ff:ff:ff:ff:ff:ff.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Packet is the header state of one packet as the pipeline sees it. Fields
// that do not apply to the packet's EthType/IPProto are ignored by matching
// (OpenFlow prerequisites): e.g. L4Dst is tcp_dst only when EthType is IPv4
// and IPProto is TCP, and ARP fields exist only for EthType ARP.
type Packet struct {
	InPort  string // ingress port name (LOCAL for the host stack)
	EthSrc  MAC
	EthDst  MAC
	EthType uint16
	VLAN    uint16 // 802.1Q VLAN_VID as OpenFlow 1.3 sees it: 0 untagged, else VIDPresent|id
	TTL     uint8  // IPv4 TTL; 0 means the default 64
	IPProto uint8
	IPSrc   netip.Addr
	IPDst   netip.Addr
	L4Src   uint16 // TCP/UDP source port
	L4Dst   uint16 // TCP/UDP destination port
	ARPOp   uint16
	ARPSpa  netip.Addr
	ARPTpa  netip.Addr
	ARPSha  MAC
	ARPTha  MAC
	TunID   uint64     // tunnel key (decapsulated packets; set before a tunnel output)
	TunSrc  netip.Addr // outer source of a decapsulated packet
	TunDst  netip.Addr // outer destination (set before a tunnel output)
	Regs    [8]uint32  // reg0..reg7; zero when a packet enters a switch
	// ICMP type and code (IPProto ICMP).
	ICMPType, ICMPCode uint8
	// Conntrack state after a ct action (zero: not tracked, -trk).
	CtState uint32
	CtZone  uint16
	CtMark  uint32
	// Conn is the connection state the packet is in when its switch has no
	// connection tracker (FlowTable.CT nil): new, established, reply.
	Conn ConnState
	// IPv6 neighbour discovery (EthType IPv6, IPProto ICMPv6, ICMPType
	// 135 or 136): the target, the source/target link-layer address
	// options (zero: absent), the flags word and the first option's type.
	NDTarget   netip.Addr
	NDSll      MAC
	NDTll      MAC
	NDReserved uint32
	NDOptType  uint8
}

// IPv4Packet builds an IPv4 packet with the given protocol (ports zero).
func IPv4Packet(inPort string, srcMAC, dstMAC MAC, src, dst netip.Addr, proto uint8) Packet {
	return Packet{InPort: inPort, EthSrc: srcMAC, EthDst: dstMAC, EthType: EthIPv4, IPProto: proto, IPSrc: src, IPDst: dst}
}

// ICMPPacket builds an ICMP (echo) packet.
func ICMPPacket(inPort string, srcMAC, dstMAC MAC, src, dst netip.Addr) Packet {
	return IPv4Packet(inPort, srcMAC, dstMAC, src, dst, ProtoICMP)
}

// TCPPacket builds a TCP packet.
func TCPPacket(inPort string, srcMAC, dstMAC MAC, src, dst netip.Addr, sport, dport uint16) Packet {
	p := IPv4Packet(inPort, srcMAC, dstMAC, src, dst, ProtoTCP)
	p.L4Src, p.L4Dst = sport, dport
	return p
}

// UDPPacket builds a UDP packet.
func UDPPacket(inPort string, srcMAC, dstMAC MAC, src, dst netip.Addr, sport, dport uint16) Packet {
	p := IPv4Packet(inPort, srcMAC, dstMAC, src, dst, ProtoUDP)
	p.L4Src, p.L4Dst = sport, dport
	return p
}

// ARPRequest builds a broadcast ARP who-has tpa from sha/spa.
func ARPRequest(inPort string, sha MAC, spa, tpa netip.Addr) Packet {
	return Packet{InPort: inPort, EthSrc: sha, EthDst: BroadcastMAC, EthType: EthARP, ARPOp: 1,
		ARPSha: sha, ARPSpa: spa, ARPTpa: tpa}
}

// ARPReply builds a unicast ARP reply "spa is-at sha" to tha/tpa.
func ARPReply(inPort string, sha MAC, spa netip.Addr, tha MAC, tpa netip.Addr) Packet {
	return Packet{InPort: inPort, EthSrc: sha, EthDst: tha, EthType: EthARP, ARPOp: 2,
		ARPSha: sha, ARPSpa: spa, ARPTha: tha, ARPTpa: tpa}
}

// DHCPDiscover builds a DHCP discover: 0.0.0.0:68 -> 255.255.255.255:67, broadcast.
func DHCPDiscover(inPort string, mac MAC) Packet {
	return UDPPacket(inPort, mac, BroadcastMAC, netip.IPv4Unspecified(),
		netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67)
}

func addrValue(a netip.Addr) uint64 {
	if !a.Is4() {
		return 0
	}
	return IPValue(a)
}

func valueAddr(v uint64) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func valueMAC(v uint64) MAC {
	var m MAC
	for i := 0; i < 6; i++ {
		m[i] = byte(v >> uint(8*(5-i)))
	}
	return m
}

// field returns the value of f in p and whether the field exists for this
// packet (OpenFlow prerequisites). conjID is the conj_id of the lookup.
func (p *Packet) field(f Field, conjID uint32) (uint64, bool) {
	ip := p.EthType == EthIPv4
	arp := p.EthType == EthARP
	if f >= FIPv6Src {
		return p.field6(f)
	}
	l3 := ip || p.EthType == EthIPv6
	switch f {
	case FEthSrc:
		return MACValue(p.EthSrc), true
	case FEthDst:
		return MACValue(p.EthDst), true
	case FEthType:
		return uint64(p.EthType), true
	case FVLANVID:
		return uint64(p.VLAN), true
	case FIPProto:
		return uint64(p.IPProto), l3
	case FIPv4Src:
		return addrValue(p.IPSrc), ip
	case FIPv4Dst:
		return addrValue(p.IPDst), ip
	case FTCPSrc:
		return uint64(p.L4Src), l3 && p.IPProto == ProtoTCP
	case FTCPDst:
		return uint64(p.L4Dst), l3 && p.IPProto == ProtoTCP
	case FUDPSrc:
		return uint64(p.L4Src), l3 && p.IPProto == ProtoUDP
	case FUDPDst:
		return uint64(p.L4Dst), l3 && p.IPProto == ProtoUDP
	case FARPOp:
		return uint64(p.ARPOp), arp
	case FARPSpa:
		return addrValue(p.ARPSpa), arp
	case FARPTpa:
		return addrValue(p.ARPTpa), arp
	case FARPSha:
		return MACValue(p.ARPSha), arp
	case FARPTha:
		return MACValue(p.ARPTha), arp
	case FTunID:
		return p.TunID, true
	case FTunSrc:
		return addrValue(p.TunSrc), true
	case FTunDst:
		return addrValue(p.TunDst), true
	case FReg0, FReg1, FReg2, FReg3, FReg4, FReg5, FReg6, FReg7:
		return uint64(p.Regs[regIndex(f)]), true
	case FConjID:
		return uint64(conjID), true
	case FICMPType:
		return uint64(p.ICMPType), ip && p.IPProto == ProtoICMP
	case FICMPCode:
		return uint64(p.ICMPCode), ip && p.IPProto == ProtoICMP
	case FCtState:
		return uint64(p.CtState), true
	case FCtZone:
		return uint64(p.CtZone), true
	case FCtMark:
		return uint64(p.CtMark), true
	}
	return 0, false
}

// setField writes v (right-aligned, field width) into f.
func (p *Packet) setField(f Field, v uint64) {
	v &= f.fullMask()
	switch f {
	case FEthSrc:
		p.EthSrc = valueMAC(v)
	case FEthDst:
		p.EthDst = valueMAC(v)
	case FEthType:
		p.EthType = uint16(v)
	case FVLANVID:
		p.VLAN = uint16(v)
	case FIPProto:
		p.IPProto = uint8(v)
	case FIPv4Src:
		p.IPSrc = valueAddr(v)
	case FIPv4Dst:
		p.IPDst = valueAddr(v)
	case FTCPSrc, FUDPSrc:
		p.L4Src = uint16(v)
	case FTCPDst, FUDPDst:
		p.L4Dst = uint16(v)
	case FARPOp:
		p.ARPOp = uint16(v)
	case FARPSpa:
		p.ARPSpa = valueAddr(v)
	case FARPTpa:
		p.ARPTpa = valueAddr(v)
	case FARPSha:
		p.ARPSha = valueMAC(v)
	case FARPTha:
		p.ARPTha = valueMAC(v)
	case FTunID:
		p.TunID = v
	case FTunSrc:
		p.TunSrc = valueAddr(v)
	case FTunDst:
		p.TunDst = valueAddr(v)
	case FReg0, FReg1, FReg2, FReg3, FReg4, FReg5, FReg6, FReg7:
		p.Regs[regIndex(f)] = uint32(v)
	default:
		p.setField6(f, v)
	}
}

func bitMask(n uint16) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}

// move applies NXAST_REG_MOVE semantics: Dst[DstOfs..] = Src[SrcOfs..].
func (p *Packet) move(m Move) {
	if m.Src.Is128() || m.Dst.Is128() {
		p.move128(m)
		return
	}
	sv, _ := p.field(m.Src, 0)
	dv, _ := p.field(m.Dst, 0)
	bits := (sv >> m.SrcOfs) & bitMask(m.NBits)
	mask := bitMask(m.NBits) << m.DstOfs
	p.setField(m.Dst, dv&^mask|bits<<m.DstOfs&mask)
}

// String renders the packet's relevant headers compactly.
func (p Packet) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "in_port=%s %s->%s", p.InPort, p.EthSrc, p.EthDst)
	if p.VLAN != 0 {
		fmt.Fprintf(&b, " vlan %d", p.VLAN&0xfff)
	}
	switch p.EthType {
	case EthIPv4:
		proto := fmt.Sprintf("proto %d", p.IPProto)
		switch p.IPProto {
		case ProtoICMP:
			proto = "icmp"
		case ProtoTCP:
			proto = fmt.Sprintf("tcp %d->%d", p.L4Src, p.L4Dst)
		case ProtoUDP:
			proto = fmt.Sprintf("udp %d->%d", p.L4Src, p.L4Dst)
		case ProtoGRE:
			proto = "gre"
		}
		fmt.Fprintf(&b, " ip %s->%s %s", p.IPSrc, p.IPDst, proto)
		if p.TTL != 0 {
			fmt.Fprintf(&b, " ttl %d", p.TTL)
		}
	case EthARP:
		op := fmt.Sprintf("op %d", p.ARPOp)
		switch p.ARPOp {
		case 1:
			op = "who-has"
		case 2:
			op = "is-at"
		}
		fmt.Fprintf(&b, " arp %s sha=%s spa=%s tha=%s tpa=%s", op, p.ARPSha, p.ARPSpa, p.ARPTha, p.ARPTpa)
	case EthIPv6:
		p.string6(&b)
	default:
		fmt.Fprintf(&b, " dl_type=0x%04x", p.EthType)
	}
	if p.TunID != 0 || p.TunSrc.IsValid() || p.TunDst.IsValid() {
		fmt.Fprintf(&b, " tun_id=%#x", p.TunID)
		if p.TunSrc.IsValid() {
			fmt.Fprintf(&b, " tun_src=%s", p.TunSrc)
		}
		if p.TunDst.IsValid() {
			fmt.Fprintf(&b, " tun_dst=%s", p.TunDst)
		}
	}
	for i, r := range p.Regs {
		if r != 0 {
			fmt.Fprintf(&b, " reg%d=%#x", i, r)
		}
	}
	return b.String()
}

// matches reports whether p (with conj_id conjID) matches m.
func (m Match) matches(p *Packet, conjID uint32) bool {
	for i := range m {
		x := &m[i]
		if x.Field == FInPort {
			if p.InPort != x.Port {
				return false
			}
			continue
		}
		if x.Field.Is128() {
			if !p.matches128(x) {
				return false
			}
			continue
		}
		v, ok := p.field(x.Field, conjID)
		if !ok {
			return false
		}
		if x.Masked {
			if v&x.Mask != x.Value&x.Mask {
				return false
			}
		} else if v != x.Value {
			return false
		}
	}
	return true
}

// conjunctions returns the conjunction actions of f (a "soft" flow).
func conjunctions(f *Flow) []Conjunction {
	var cs []Conjunction
	for _, a := range f.Actions {
		if c, ok := a.(Conjunction); ok {
			cs = append(cs, c)
		}
	}
	return cs
}

// Step is one table visit of a trace.
type Step struct {
	Table  TableID
	Flow   Flow   // the flow that matched (a copy sharing Match/Actions: do not modify them)
	Cookie Cookie // Flow.Cookie
	// Clauses are the conjunction clause flows that made a conj_id flow
	// match (empty for ordinary matches).
	Clauses []Flow
	// Ambiguous lists other flows of the same priority that also matched
	// with different instructions: OpenFlow leaves the choice undefined, so
	// a compiled pipeline must never produce any.
	Ambiguous []Flow
}

// Delivery is one output: the port (IN_PORT resolved to the ingress port)
// and the packet as it was when the output action ran.
type Delivery struct {
	Port      string
	ViaInPort bool // the action was output:IN_PORT
	Table     TableID
	Cookie    Cookie
	Packet    Packet
}

// Trace is what a switch did with one packet.
type Trace struct {
	Input Packet
	Steps []Step
	// Outputs are the packets that left the switch.
	Outputs []Delivery
	// Suppressed are outputs to the ingress port by name, which OpenFlow
	// switches drop (only output:IN_PORT may send a packet back).
	Suppressed []Delivery
	// Dropped is true when the packet left by no port; DropBy is then the
	// flow that ended the pipeline (nil on a table miss without a flow).
	Dropped bool
	DropBy  *Flow
	// MissTable is the table where no flow matched (only when DropBy is nil).
	MissTable TableID
	Missed    bool
	// TTLExpired: a dec_ttl met a TTL of 1 (routed packets only).
	TTLExpired bool
	// Err describes a pipeline defect met during evaluation (a goto
	// backwards), if any.
	Err string
}

// Verdict summarises the trace in one line.
func (t *Trace) Verdict() string {
	switch {
	case t.Err != "":
		return "error: " + t.Err
	case !t.Dropped:
		ports := make([]string, 0, len(t.Outputs))
		for _, o := range t.Outputs {
			ports = append(ports, o.Port)
		}
		return "output to " + strings.Join(ports, ", ")
	case t.TTLExpired:
		return fmt.Sprintf("dropped in table %s: TTL expired at dec_ttl of [%s] %s", TableName(t.DropBy.Table), t.DropBy.Cookie.Category(), describeFlow(t.DropBy))
	case t.DropBy != nil:
		return fmt.Sprintf("dropped in table %s by [%s] %s", TableName(t.DropBy.Table), t.DropBy.Cookie.Category(), describeFlow(t.DropBy))
	case t.Missed:
		return fmt.Sprintf("dropped: no flow matched in table %s", TableName(t.MissTable))
	}
	return "dropped"
}

func describeFlow(f *Flow) string {
	if f.Note != "" {
		return f.Note
	}
	return f.String()
}

// String renders the trace for `vpcflow explain`: each table, the flow that
// decided, its rule, and the outputs.
func (t Trace) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "packet %s\n", t.Input)
	for i := range t.Steps {
		s := &t.Steps[i]
		fmt.Fprintf(&b, "  table %d %s: [%s] %s\n", s.Table, TableName(s.Table), s.Cookie.Category(), s.Flow.Note)
		fmt.Fprintf(&b, "      %s\n", s.Flow.String())
		for j := range s.Clauses {
			fmt.Fprintf(&b, "      via clause %s\n", s.Clauses[j].String())
		}
		for j := range s.Ambiguous {
			fmt.Fprintf(&b, "      AMBIGUOUS with %s\n", s.Ambiguous[j].String())
		}
	}
	for _, o := range t.Outputs {
		via := ""
		if o.ViaInPort {
			via = " (IN_PORT)"
		}
		fmt.Fprintf(&b, "  -> output %s%s: %s\n", o.Port, via, o.Packet)
	}
	for _, o := range t.Suppressed {
		fmt.Fprintf(&b, "  -> output %s suppressed (ingress port)\n", o.Port)
	}
	fmt.Fprintf(&b, "  verdict: %s\n", t.Verdict())
	return b.String()
}

// FlowTable is a set of flows indexed for evaluation: by table, highest
// priority first. Build it once per flow set and evaluate many packets.
type FlowTable struct {
	tables map[TableID][]entry
	// Down lists ports without link (e.g. a failed bond member): a bundle
	// action skips them, as the switch does.
	Down map[string]bool
	// CT is the switch's connection tracker; nil: a ct lookup returns the
	// state the packet says it is in (Packet.Conn).
	CT *ConnTracker
}

// bundleMember is the member a bundle action sends to: the first live one.
// For active_backup that is the switch's choice; for hrw the switch hashes
// the packet over the live members, and any live member is a correct model
// of it. "" when no member is live (the switch drops).
func (ft *FlowTable) bundleMember(b Bundle) string {
	for _, m := range b.Members {
		if !ft.Down[m] {
			return m
		}
	}
	return ""
}

// entry is an indexed flow: soft (conjunction clause) flows keep their
// conjunction actions at hand.
type entry struct {
	*Flow
	conj []Conjunction
}

// NewFlowTable indexes fs (the flows are copied; traces share the copies'
// match and action slices, which are never modified).
func NewFlowTable(fs []Flow) *FlowTable {
	ft := &FlowTable{tables: map[TableID][]entry{}}
	for i := range fs {
		f := fs[i].Clone()
		ft.tables[f.Table] = append(ft.tables[f.Table], entry{&f, conjunctions(&f)})
	}
	for _, l := range ft.tables {
		sort.SliceStable(l, func(i, j int) bool { return l[i].Priority > l[j].Priority })
	}
	return ft
}

// Evaluate runs p through fs; see FlowTable.Evaluate.
func Evaluate(fs []Flow, p Packet) Trace { return NewFlowTable(fs).Evaluate(p) }

func sameInstructions(a, b *Flow) bool {
	return a.Goto == b.Goto && a.ActionsString() == b.ActionsString()
}

// hardLookup returns the highest-priority matching flow without
// conjunction actions, and the same-priority flows that also match with
// different instructions.
func hardLookup(flows []entry, p *Packet, conjID uint32) (*Flow, []*Flow) {
	var hard *Flow
	var amb []*Flow
	for _, e := range flows {
		if hard != nil && e.Priority < hard.Priority {
			break
		}
		if len(e.conj) > 0 || !e.Match.matches(p, conjID) {
			continue
		}
		if hard == nil {
			hard = e.Flow
		} else if !sameInstructions(hard, e.Flow) {
			amb = append(amb, e.Flow)
		}
	}
	return hard, amb
}

// lookup implements an OpenFlow table lookup with Open vSwitch's
// conjunctive match semantics (ovs-fields(7), "Conjunctive Match Fields"):
// flows with conjunction actions are soft matches; when, at one priority
// above the best ordinary match, every clause 1..n of conjunction id has a
// matching flow, the table is searched again with conj_id=id (ignoring soft
// flows), and that result wins; if it finds nothing, the conjunction is as
// if it had not matched.
func (ft *FlowTable) lookup(t TableID, p *Packet) (f *Flow, clauses, amb []*Flow) {
	flows := ft.tables[t]
	hard, amb := hardLookup(flows, p, 0)
	var soft []entry
	for _, e := range flows {
		if hard != nil && e.Priority <= hard.Priority {
			break
		}
		if len(e.conj) > 0 && e.Match.matches(p, 0) {
			soft = append(soft, e)
		}
	}
	for i := 0; i < len(soft); {
		j := i
		for j < len(soft) && soft[j].Priority == soft[i].Priority {
			j++
		}
		group := soft[i:j]
		i = j
		// conj id -> clause -> flows; and n per id.
		type conjState struct {
			n       uint8
			clauses map[uint8][]*Flow
		}
		states := map[uint32]*conjState{}
		var ids []uint32
		for _, g := range group {
			for _, c := range g.conj {
				s := states[c.ID]
				if s == nil {
					s = &conjState{n: c.NClauses, clauses: map[uint8][]*Flow{}}
					states[c.ID] = s
					ids = append(ids, c.ID)
				}
				s.clauses[c.Clause] = append(s.clauses[c.Clause], g.Flow)
			}
		}
		sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
		for _, id := range ids {
			s := states[id]
			complete := s.n >= 2
			var used []*Flow
			for k := uint8(1); k <= s.n && complete; k++ {
				if len(s.clauses[k]) == 0 {
					complete = false
				}
				used = append(used, s.clauses[k]...)
			}
			if !complete {
				continue
			}
			if r, ramb := hardLookup(flows, p, id); r != nil {
				return r, used, ramb
			}
		}
	}
	return hard, nil, amb
}

// maxSteps bounds a pipeline walk (goto only moves forward, so this is a
// safety net for hand-made flow sets).
const maxSteps = 64

// Evaluate runs p through the pipeline from table 0 with OpenFlow 1.3
// semantics: in each table the highest-priority matching flow (with
// prerequisites and conjunctions as Open vSwitch applies them), its
// apply-actions in order, then its goto_table. Registers start at zero, as
// on a switch. Outputs record the packet as it was at that action.
func (ft *FlowTable) Evaluate(p Packet) Trace {
	p.Regs = [8]uint32{}
	tr := Trace{Input: p, Steps: make([]Step, 0, 6)}
	ingress := p.InPort
	table := TClassify
	for n := 0; ; n++ {
		if n >= maxSteps {
			tr.Err = "pipeline did not end"
			tr.Dropped = len(tr.Outputs) == 0
			return tr
		}
		f, clauses, amb := ft.lookup(table, &p)
		if f == nil {
			tr.Missed, tr.MissTable = true, table
			tr.Dropped = len(tr.Outputs) == 0
			return tr
		}
		step := Step{Table: table, Flow: *f, Cookie: f.Cookie}
		for _, c := range clauses {
			step.Clauses = append(step.Clauses, *c)
		}
		for _, a := range amb {
			step.Ambiguous = append(step.Ambiguous, *a)
		}
		tr.Steps = append(tr.Steps, step)
		recirc := NoGoto
		for _, a := range f.Actions {
			switch x := a.(type) {
			case CT:
				if x.Commit && ft.CT != nil {
					ft.CT.commit(x.Zone, &p)
				}
				if x.Table != NoGoto {
					if ft.CT != nil {
						p.CtState = ft.CT.lookup(x.Zone, &p)
					} else {
						p.CtState = assumedState(p.Conn)
					}
					p.CtZone = x.Zone
					recirc = x.Table
				}
			case Output:
				d := Delivery{Port: x.Port, Table: table, Cookie: f.Cookie, Packet: p}
				switch {
				case x.Port == PortInPort:
					d.Port, d.ViaInPort = ingress, true
					tr.Outputs = append(tr.Outputs, d)
				case x.Port == ingress:
					tr.Suppressed = append(tr.Suppressed, d)
				default:
					tr.Outputs = append(tr.Outputs, d)
				}
			case Bundle:
				if m := ft.bundleMember(x); m != "" && m != ingress {
					tr.Outputs = append(tr.Outputs, Delivery{Port: m, Table: table, Cookie: f.Cookie, Packet: p})
				}
			case SetField:
				p.setField(x.Field, x.Value)
			case Move:
				p.move(x)
			case PushVLAN:
				p.VLAN = VIDPresent
			case PopVLAN:
				p.VLAN = 0
			case DecTTL:
				if p.EthType == EthIPv4 {
					ttl := p.TTL
					if ttl == 0 {
						ttl = 64
					}
					if ttl <= 1 {
						tr.TTLExpired = true
						tr.Dropped = len(tr.Outputs) == 0
						tr.DropBy = &tr.Steps[len(tr.Steps)-1].Flow
						return tr
					}
					p.TTL = ttl - 1
				}
			}
		}
		if recirc != NoGoto {
			// ct(table=N) recirculates (it may go back: not a goto).
			table = recirc
			continue
		}
		if f.Goto == NoGoto {
			if len(tr.Outputs) == 0 {
				tr.Dropped = true
				tr.DropBy = &tr.Steps[len(tr.Steps)-1].Flow
			}
			return tr
		}
		if f.Goto <= table {
			tr.Err = fmt.Sprintf("flow %s goes back to table %d", f, f.Goto)
			tr.Dropped = len(tr.Outputs) == 0
			return tr
		}
		table = f.Goto
	}
}

// Cloud simulates every host of a blueprint, linked by an underlay: tunnel
// outputs are encapsulated, leave the sender through its own pipeline (from
// LOCAL, as a switch's native tunnelling does), enter the receiver by its
// uplink, and are decapsulated only if the receiver's pipeline passes them to
// LOCAL.
type Cloud struct {
	Blueprint *Blueprint
	Flows     map[string][]Flow // compiled flows per host
	// MaxHops bounds the number of switch traversals of one Send.
	MaxHops int

	tables     map[string]*FlowTable
	vmByPort   map[string]map[string]string // host -> port -> VM name
	hostByAddr map[netip.Addr]*Host
}

// NewCloud compiles every host of a validated blueprint.
func NewCloud(bp *Blueprint) (*Cloud, error) {
	c := &Cloud{Blueprint: bp, Flows: map[string][]Flow{}, MaxHops: 16,
		tables: map[string]*FlowTable{}, vmByPort: map[string]map[string]string{},
		hostByAddr: map[netip.Addr]*Host{}}
	for i := range bp.Hosts {
		h := &bp.Hosts[i]
		fs, err := Compile(bp, h.Name)
		if err != nil {
			return nil, err
		}
		c.Flows[h.Name] = fs
		c.tables[h.Name] = NewFlowTable(fs)
		c.vmByPort[h.Name] = map[string]string{}
		c.hostByAddr[h.Addr] = h
	}
	for _, p := range bp.VPCs {
		for _, t := range p.Tiers {
			for _, m := range t.VMs {
				if ports := c.vmByPort[m.Host]; ports != nil {
					ports[m.Port] = m.Name
				}
			}
		}
	}
	return c, nil
}

// EnableConntrack gives every host's switch a connection tracker, empty:
// packets sent afterwards open, continue and answer connections.
func (c *Cloud) EnableConntrack() {
	for _, ft := range c.tables {
		ft.CT = NewConnTracker()
	}
}

// ConntrackFrom gives every host the connection tracker of the same host
// in old (a blueprint change keeps the switches' connections).
func (c *Cloud) ConntrackFrom(old *Cloud) {
	for h, ft := range c.tables {
		if o := old.tables[h]; o != nil {
			ft.CT = o.CT
		}
	}
}

// SetLinkDown marks a port of host as without link (down) or back up: a
// bundle over a bond's members then skips it, and underlay packets for the
// host arrive on another member.
func (c *Cloud) SetLinkDown(host, port string, down bool) {
	ft := c.tables[host]
	if ft == nil {
		return
	}
	if ft.Down == nil {
		ft.Down = map[string]bool{}
	}
	ft.Down[port] = down
}

// uplinkIn is the port an underlay packet enters h by: its uplink, or the
// first bond member with link.
func (c *Cloud) uplinkIn(h *Host) string {
	ports := h.UplinkPorts()
	if ft := c.tables[h.Name]; ft != nil {
		for _, p := range ports {
			if !ft.Down[p] {
				return p
			}
		}
	}
	return ports[0]
}

// Evaluate runs p through one host's flows.
func (c *Cloud) Evaluate(host string, p Packet) (Trace, error) {
	ft := c.tables[host]
	if ft == nil {
		return Trace{}, fmt.Errorf("host %q is not in the blueprint", host)
	}
	return ft.Evaluate(p), nil
}

// Arrival is a packet that left a switch by a port other than the tunnel
// port: at a VM, at the host stack (LOCAL) or on the underlay (uplink).
type Arrival struct {
	Host   string
	Port   string
	VM     string // the VM on Port, if any
	Packet Packet
	Trace  Trace // the evaluation on Host that produced it
}

// Where classifies the arrival: "vm", "host-stack", "underlay" or "port"
// (a port the blueprint does not know).
func (a Arrival) Where(bp *Blueprint) string {
	switch {
	case a.VM != "":
		return "vm"
	case a.Port == PortLocal:
		return "host-stack"
	}
	if h := bp.HostByName(a.Host); h != nil && h.IsUplinkPort(a.Port) {
		return "underlay"
	}
	return "port"
}

func (a Arrival) String() string {
	if a.VM != "" {
		return fmt.Sprintf("%s:%s (VM %s)", a.Host, a.Port, a.VM)
	}
	return a.Host + ":" + a.Port
}

// Hop is one switch traversal of a journey.
type Hop struct {
	Host  string
	Stage string // "sent", "encapsulated", "underlay", "decapsulated", "vlan" (a tagged frame received from the underlay)
	Trace Trace
}

// Journey is everything that happened to one packet across the cloud.
type Journey struct {
	Hops     []Hop
	Arrivals []Arrival
	// Lost explains packets that vanished between switches (an
	// encapsulated packet dropped, a tunnel destination no host owns).
	Lost []string
}

// String renders the journey hop by hop.
func (j Journey) String() string {
	var b strings.Builder
	for _, h := range j.Hops {
		fmt.Fprintf(&b, "== %s on %s\n%s", h.Stage, h.Host, h.Trace.String())
	}
	for _, l := range j.Lost {
		fmt.Fprintf(&b, "== lost: %s\n", l)
	}
	if len(j.Arrivals) == 0 {
		b.WriteString("== arrives nowhere\n")
	}
	for _, a := range j.Arrivals {
		fmt.Fprintf(&b, "== arrives at %s\n", a)
	}
	return b.String()
}

// Send injects p on host (p.InPort says where it enters) and returns every
// place it arrives, following tunnels.
func (c *Cloud) Send(host string, p Packet) []Arrival { return c.Trace(host, p).Arrivals }

// Trace is Send with the whole journey.
func (c *Cloud) Trace(host string, p Packet) Journey {
	var j Journey
	c.run(&j, host, p, "sent")
	return j
}

// SendOuter simulates an underlay node sending an encapsulated packet to
// host's uplink: outer is the outer packet (its InPort is set to the uplink),
// inner the encapsulated frame with inner.TunID the tunnel key.
func (c *Cloud) SendOuter(host string, outer, inner Packet) []Arrival {
	return c.TraceOuter(host, outer, inner).Arrivals
}

// TraceOuter is SendOuter with the whole journey.
func (c *Cloud) TraceOuter(host string, outer, inner Packet) Journey {
	var j Journey
	h := c.Blueprint.HostByName(host)
	if h == nil {
		j.Lost = append(j.Lost, fmt.Sprintf("host %q is not in the blueprint", host))
		return j
	}
	c.receive(&j, h, outer, inner)
	return j
}

func (c *Cloud) tunnelPort() string { return TunnelPort(c.Blueprint.Encapsulation) }

// run evaluates p on host; tunnel outputs are carried on, other outputs are
// arrivals.
func (c *Cloud) run(j *Journey, host string, p Packet, stage string) {
	if len(j.Hops) >= c.MaxHops {
		j.Lost = append(j.Lost, fmt.Sprintf("hop limit %d reached on %s (forwarding loop?)", c.MaxHops, host))
		return
	}
	ft := c.tables[host]
	if ft == nil {
		j.Lost = append(j.Lost, fmt.Sprintf("host %q is not in the blueprint", host))
		return
	}
	tr := ft.Evaluate(p)
	j.Hops = append(j.Hops, Hop{Host: host, Stage: stage, Trace: tr})
	for _, o := range tr.Outputs {
		if o.Port == c.tunnelPort() {
			c.encapsulate(j, host, o.Packet)
			continue
		}
		c.arrive(j, host, o, tr)
		if h := c.Blueprint.HostByName(host); h != nil && h.IsUplinkPort(o.Port) && o.Packet.VLAN != 0 && stage != "vlan" {
			c.vlanFlood(j, host, o.Packet)
		}
	}
}

// vlanFlood carries a tagged frame sent out of host's uplink over the
// underlay, which is one L2 segment: every other host's uplink receives it
// (the frame's VLAN tag intact; the underlay does not learn, so unicast is
// flooded too and the receivers' L2 tables decide).
func (c *Cloud) vlanFlood(j *Journey, from string, p Packet) {
	for i := range c.Blueprint.Hosts {
		h := &c.Blueprint.Hosts[i]
		if h.Name == from {
			continue
		}
		q := p
		q.InPort = c.uplinkIn(h)
		q.Regs = [8]uint32{}
		q.TunID, q.TunSrc, q.TunDst = 0, netip.Addr{}, netip.Addr{}
		c.run(j, h.Name, q, "vlan")
	}
}

func (c *Cloud) arrive(j *Journey, host string, o Delivery, tr Trace) {
	j.Arrivals = append(j.Arrivals, Arrival{Host: host, Port: o.Port, VM: c.vmByPort[host][o.Port],
		Packet: o.Packet, Trace: tr})
}

// underlayMAC is the MAC a host's underlay address uses: its tunnel_mac, or
// a locally administered MAC derived from the address.
func underlayMAC(h *Host, a netip.Addr) MAC {
	if h != nil && h.HasMAC {
		return h.MAC
	}
	b := a.As4()
	return MAC{0x0e, 0x00, b[0], b[1], b[2], b[3]}
}

// OuterPacket builds the encapsulated packet a switch sends from src's
// tunnel address to dst (UDP 4789 for vxlan, IP protocol 47 for gre).
func (c *Cloud) OuterPacket(src *Host, dst netip.Addr, key uint64) Packet {
	o := Packet{InPort: PortLocal, EthSrc: underlayMAC(src, src.Addr), EthDst: underlayMAC(c.hostByAddr[dst], dst),
		EthType: EthIPv4, IPSrc: src.Addr, IPDst: dst}
	if c.Blueprint.Encapsulation == EncapGRE {
		o.IPProto = ProtoGRE
	} else {
		o.IPProto, o.L4Src, o.L4Dst = ProtoUDP, uint16(0xc000|key&0x3fff), VXLANPort
	}
	return o
}

// encapsulate carries an inner packet output to the tunnel port on host.
func (c *Cloud) encapsulate(j *Journey, host string, inner Packet) {
	src := c.Blueprint.HostByName(host)
	if !inner.TunDst.IsValid() || inner.TunDst == src.Addr {
		j.Lost = append(j.Lost, fmt.Sprintf("tunnel output on %s without a usable tun_dst (%v)", host, inner.TunDst))
		return
	}
	if len(j.Hops) >= c.MaxHops {
		j.Lost = append(j.Lost, fmt.Sprintf("hop limit %d reached on %s (forwarding loop?)", c.MaxHops, host))
		return
	}
	outer := c.OuterPacket(src, inner.TunDst, inner.TunID)
	tr := c.tables[host].Evaluate(outer)
	j.Hops = append(j.Hops, Hop{Host: host, Stage: "encapsulated", Trace: tr})
	sent := false
	for _, o := range tr.Outputs {
		if src.IsUplinkPort(o.Port) {
			sent = true
			continue
		}
		c.arrive(j, host, o, tr)
	}
	if !sent {
		j.Lost = append(j.Lost, fmt.Sprintf("encapsulated packet to %s did not leave %s: %s", inner.TunDst, host, tr.Verdict()))
		return
	}
	dst := c.hostByAddr[inner.TunDst]
	if dst == nil {
		j.Lost = append(j.Lost, fmt.Sprintf("no host has tunnel_ip %s: lost in the underlay", inner.TunDst))
		return
	}
	c.receive(j, dst, outer, inner)
}

// isTunnelFor reports whether outer is a tunnel packet dst's tunnel port
// terminates.
func (c *Cloud) isTunnelFor(outer Packet, dst *Host) bool {
	if outer.EthType != EthIPv4 || outer.IPDst != dst.Addr {
		return false
	}
	if c.Blueprint.Encapsulation == EncapGRE {
		return outer.IPProto == ProtoGRE
	}
	return outer.IPProto == ProtoUDP && outer.L4Dst == VXLANPort
}

// receive runs an outer packet through dst's pipeline from its uplink and,
// if it reaches LOCAL as a tunnel packet for dst, decapsulates inner.
func (c *Cloud) receive(j *Journey, dst *Host, outer, inner Packet) {
	if len(j.Hops) >= c.MaxHops {
		j.Lost = append(j.Lost, fmt.Sprintf("hop limit %d reached on %s (forwarding loop?)", c.MaxHops, dst.Name))
		return
	}
	outer.InPort = c.uplinkIn(dst)
	tr := c.tables[dst.Name].Evaluate(outer)
	j.Hops = append(j.Hops, Hop{Host: dst.Name, Stage: "underlay", Trace: tr})
	decap := false
	for _, o := range tr.Outputs {
		if o.Port == PortLocal && c.isTunnelFor(o.Packet, dst) {
			decap = true
			continue
		}
		c.arrive(j, dst.Name, o, tr)
	}
	if !decap {
		j.Lost = append(j.Lost, fmt.Sprintf("encapsulated packet from %s not decapsulated on %s: %s", outer.IPSrc, dst.Name, tr.Verdict()))
		return
	}
	in := inner
	in.InPort = c.tunnelPort()
	in.TunSrc = outer.IPSrc
	in.TunDst = dst.Addr
	in.Regs = [8]uint32{}
	c.run(j, dst.Name, in, "decapsulated")
}
