package flows

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Port names with a fixed OpenFlow number.
const (
	PortLocal      = "LOCAL"
	PortInPort     = "IN_PORT"
	PortController = "CONTROLLER"
)

// Tunnel port names created by `vpcflow host apply`.
const (
	TunnelPortVXLAN = "vpcflow-vxlan"
	TunnelPortGRE   = "vpcflow-gre"
)

// TunnelPort is the name of the flow-based tunnel port for an encapsulation.
func TunnelPort(e Encapsulation) string {
	if e == EncapGRE {
		return TunnelPortGRE
	}
	return TunnelPortVXLAN
}

// MatchField is one field of a match: Value (and Mask when Masked) hold the
// field's bits right-aligned; Port holds the name for FInPort.
type MatchField struct {
	Field  Field
	Value  uint64
	Mask   uint64
	Masked bool
	Port   string
	// Hi and MaskHi are the high 64 bits of a 128-bit field (IPv6
	// addresses, nd_target); Value and Mask hold its low 64 bits.
	Hi, MaskHi uint64
}

// Match is a set of match fields, at most one per Field, kept sorted.
type Match []MatchField

// Action is one OpenFlow action.
type Action interface {
	String() string // ovs-ofctl syntax
}

// Output sends the packet to a port (by name; LOCAL, IN_PORT and CONTROLLER
// are special). MaxLen is the bytes sent to the controller (CONTROLLER only).
type Output struct {
	Port   string
	MaxLen uint16
}

// SetField writes a whole field.
type SetField struct {
	Field Field
	Value uint64
}

// Move copies NBits bits from Src[SrcOfs..] to Dst[DstOfs..] (NXAST_REG_MOVE).
type Move struct {
	Src, Dst       Field
	NBits          uint16
	SrcOfs, DstOfs uint16
}

// Conjunction is one clause of a conjunctive match (Clause is 1-based).
type Conjunction struct {
	ID       uint32
	Clause   uint8
	NClauses uint8
}

// PushVLAN pushes an 802.1Q header (OFPAT_PUSH_VLAN); a SetField of
// FVLANVID after it sets the id.
type PushVLAN struct{ EthType uint16 }

// PopVLAN removes the outer 802.1Q header (OFPAT_POP_VLAN).
type PopVLAN struct{}

// DecTTL decrements the IPv4 TTL (OFPAT_DEC_NW_TTL); a packet whose TTL
// would reach zero is dropped by the switch.
type DecTTL struct{}

func (p PushVLAN) String() string { return fmt.Sprintf("push_vlan:0x%04x", p.EthType) }
func (PopVLAN) String() string    { return "pop_vlan" }
func (DecTTL) String() string     { return "dec_ttl" }

// Bundle outputs to one live member of a list of ports (NXAST_BUNDLE):
// Open vSwitch skips members that are down (no carrier, or not negotiated by
// LACP) and picks among the rest with Algorithm, hashing Fields. It sends a
// bonded uplink's traffic (see Host.UplinkAction). Members are port names.
type Bundle struct {
	Fields    HashFields
	Basis     uint16
	Algorithm BundleAlgorithm
	Members   []string
}

// BundleAlgorithm is NXAST_BUNDLE's member choice (nx_bd_algorithm).
type BundleAlgorithm uint16

// Bundle algorithms.
const (
	BundleActiveBackup BundleAlgorithm = 0 // the first live member, in list order
	BundleHRW          BundleAlgorithm = 1 // highest random weight over the hash of Fields
)

// HashFields selects what a bundle hashes (nx_hash_fields).
type HashFields uint16

// Hash field sets used or decoded by vpcflow.
const (
	HashEthSrc      HashFields = 0 // the Ethernet source
	HashSymmetricL4 HashFields = 1 // addresses, protocol and ports, direction-independent
)

var hashFieldNames = []string{"eth_src", "symmetric_l4", "symmetric_l3l4", "symmetric_l3l4+udp", "nw_src", "nw_dst", "symmetric_l3"}

func (h HashFields) String() string {
	if int(h) < len(hashFieldNames) {
		return hashFieldNames[h]
	}
	return "fields" + strconv.Itoa(int(h))
}

func (a BundleAlgorithm) String() string {
	switch a {
	case BundleActiveBackup:
		return "active_backup"
	case BundleHRW:
		return "hrw"
	}
	return "algorithm" + strconv.Itoa(int(a))
}

// Equal reports whether two bundle actions are the same (Bundle is the one
// action type == cannot compare: its member list is a slice).
func (b Bundle) Equal(o Bundle) bool {
	return b.Fields == o.Fields && b.Basis == o.Basis && b.Algorithm == o.Algorithm && slices.Equal(b.Members, o.Members)
}

// String renders the action as ovs-ofctl dumps it.
func (b Bundle) String() string {
	ms := make([]string, len(b.Members))
	for i, m := range b.Members {
		ms[i] = quotePort(m)
	}
	return fmt.Sprintf("bundle(%s,%d,%s,ofport,members:%s)", b.Fields, b.Basis, b.Algorithm, strings.Join(ms, ","))
}

func (o Output) String() string {
	switch o.Port {
	case PortLocal:
		return "LOCAL"
	case PortInPort:
		return "IN_PORT"
	case PortController:
		return "CONTROLLER:" + strconv.Itoa(int(o.MaxLen))
	}
	return "output:" + quotePort(o.Port)
}

func (s SetField) String() string {
	return fmt.Sprintf("set_field:%s->%s", formatValue(s.Field, s.Value), s.Field)
}

func (m Move) String() string {
	return fmt.Sprintf("move:%s->%s", fieldRange(m.Src, m.SrcOfs, m.NBits), fieldRange(m.Dst, m.DstOfs, m.NBits))
}

func fieldRange(f Field, ofs, n uint16) string {
	name := nxmName(f)
	if int(n) == f.Bits() && ofs == 0 {
		return name + "[]"
	}
	return fmt.Sprintf("%s[%d..%d]", name, ofs, ofs+n-1)
}

// nxmName is the NXM_* name ovs-ofctl uses in move actions.
func nxmName(f Field) string {
	switch f {
	case FEthSrc:
		return "NXM_OF_ETH_SRC"
	case FEthDst:
		return "NXM_OF_ETH_DST"
	case FARPSpa:
		return "NXM_OF_ARP_SPA"
	case FARPTpa:
		return "NXM_OF_ARP_TPA"
	case FARPSha:
		return "NXM_NX_ARP_SHA"
	case FARPTha:
		return "NXM_NX_ARP_THA"
	case FTunID:
		return "NXM_NX_TUN_ID"
	case FReg0, FReg1, FReg2, FReg3, FReg4, FReg5, FReg6, FReg7:
		return fmt.Sprintf("NXM_NX_REG%d", regIndex(f))
	case FIPv4Src:
		return "NXM_OF_IP_SRC"
	case FIPv4Dst:
		return "NXM_OF_IP_DST"
	case FTCPSrc:
		return "NXM_OF_TCP_SRC"
	case FTCPDst:
		return "NXM_OF_TCP_DST"
	case FUDPSrc:
		return "NXM_OF_UDP_SRC"
	case FUDPDst:
		return "NXM_OF_UDP_DST"
	case FICMPType:
		return "NXM_OF_ICMP_TYPE"
	case FICMPCode:
		return "NXM_OF_ICMP_CODE"
	case FIPv6Src:
		return "NXM_NX_IPV6_SRC"
	case FIPv6Dst:
		return "NXM_NX_IPV6_DST"
	case FNDTarget:
		return "NXM_NX_ND_TARGET"
	case FNDSll:
		return "NXM_NX_ND_SLL"
	case FNDTll:
		return "NXM_NX_ND_TLL"
	}
	return strings.ToUpper(f.String())
}

func (c Conjunction) String() string {
	return fmt.Sprintf("conjunction(%d,%d/%d)", c.ID, c.Clause, c.NClauses)
}

// Flow is one OpenFlow flow entry in vpcflow's own typed form.
type Flow struct {
	Table    TableID
	Priority uint16
	Cookie   Cookie
	Match    Match
	Actions  []Action
	Goto     TableID // next table, or NoGoto
	Meter    uint32  // OpenFlow meter applied first (0 = none)
	// Note annotates the rule in blueprint terms (compile output, audit). Not
	// sent to the switch.
	Note string

	// Set only for flows decoded from a switch.
	RawMatch   []byte // the ofp_match as the switch reported it (for delete)
	Unknown    string // non-empty: something in the entry we cannot represent
	Packets    uint64
	Bytes      uint64
	DurationMs uint64
}

// NoGoto marks a flow without goto_table (table 0 can never be a goto target).
const NoGoto TableID = 0

// Clone returns a deep copy of f.
func (f Flow) Clone() Flow {
	g := f
	g.Match = append(Match(nil), f.Match...)
	g.Actions = append([]Action(nil), f.Actions...)
	g.RawMatch = append([]byte(nil), f.RawMatch...)
	return g
}

// Key identifies a flow on the switch: table, priority and canonical match.
// Two flows with the same key are the same OpenFlow entry.
func (f *Flow) Key() string {
	return "table=" + strconv.Itoa(int(f.Table)) + ",priority=" + strconv.Itoa(int(f.Priority)) + "," + f.Match.String()
}

// ActionsString renders the instructions in ovs-ofctl syntax.
func (f *Flow) ActionsString() string {
	if f.Unknown != "" {
		return "unknown(" + f.Unknown + ")"
	}
	parts := make([]string, 0, len(f.Actions)+2)
	if f.Meter != 0 {
		parts = append(parts, "meter:"+strconv.Itoa(int(f.Meter)))
	}
	for _, a := range f.Actions {
		parts = append(parts, a.String())
	}
	if f.Goto != NoGoto {
		parts = append(parts, "goto_table:"+strconv.Itoa(int(f.Goto)))
	}
	if len(parts) == 0 {
		return "drop"
	}
	return strings.Join(parts, ",")
}

// String renders the flow in ovs-ofctl add-flow syntax.
func (f *Flow) String() string {
	var b strings.Builder
	b.WriteString("cookie=")
	b.WriteString(f.Cookie.String())
	b.WriteString(",table=")
	b.WriteString(strconv.Itoa(int(f.Table)))
	b.WriteString(",priority=")
	b.WriteString(strconv.Itoa(int(f.Priority)))
	if m := f.Match.String(); m != "" {
		b.WriteByte(',')
		b.WriteString(m)
	}
	b.WriteString(" actions=")
	b.WriteString(f.ActionsString())
	return b.String()
}

// With returns m plus one field (replacing the same field), normalised:
// values are masked, full masks become exact, empty masks drop the field.
func (m Match) With(mf MatchField) Match {
	if !normalizeMask(&mf) {
		return m
	}
	out := make(Match, 0, len(m)+1)
	for _, x := range m {
		if x.Field != mf.Field {
			out = append(out, x)
		}
	}
	out = append(out, mf)
	sort.Slice(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out
}

// Get returns the field if present.
func (m Match) Get(f Field) (MatchField, bool) {
	for _, x := range m {
		if x.Field == f {
			return x, true
		}
	}
	return MatchField{}, false
}

// String renders the match canonically in ovs-ofctl syntax, using the
// protocol shorthands (ip, arp, tcp, udp, ipv6) where they apply.
func (m Match) String() string {
	parts := make([]string, 0, len(m))
	et, hasET := m.Get(FEthType)
	pr, hasPr := m.Get(FIPProto)
	usedProto := false
	if hasET && !et.Masked {
		switch {
		case et.Value == EthIPv4 && hasPr && !pr.Masked && pr.Value == ProtoTCP:
			parts, usedProto = append(parts, "tcp"), true
		case et.Value == EthIPv4 && hasPr && !pr.Masked && pr.Value == ProtoUDP:
			parts, usedProto = append(parts, "udp"), true
		case et.Value == EthIPv4 && hasPr && !pr.Masked && pr.Value == ProtoICMP:
			parts, usedProto = append(parts, "icmp"), true
		case et.Value == EthIPv4:
			parts = append(parts, "ip")
		case et.Value == EthARP:
			parts = append(parts, "arp")
		case et.Value == EthIPv6 && hasPr && !pr.Masked && pr.Value == ProtoICMPv6:
			parts, usedProto = append(parts, "icmp6"), true
		case et.Value == EthIPv6 && hasPr && !pr.Masked && pr.Value == ProtoTCP:
			parts, usedProto = append(parts, "tcp6"), true
		case et.Value == EthIPv6 && hasPr && !pr.Masked && pr.Value == ProtoUDP:
			parts, usedProto = append(parts, "udp6"), true
		case et.Value == EthIPv6:
			parts = append(parts, "ipv6")
		default:
			parts = append(parts, "dl_type="+fmt.Sprintf("0x%04x", et.Value))
		}
	}
	for _, x := range m {
		if x.Field == FEthType && hasET {
			continue
		}
		if x.Field == FIPProto && usedProto {
			continue
		}
		parts = append(parts, x.String())
	}
	return strings.Join(parts, ",")
}

func (x MatchField) String() string {
	name := x.Field.String()
	switch x.Field {
	case FTCPSrc, FUDPSrc:
		name = "tp_src"
	case FTCPDst, FUDPDst:
		name = "tp_dst"
	}
	if x.Field == FInPort {
		return name + "=" + quotePort(x.Port)
	}
	if x.Field == FCtState {
		m := x.Mask
		if !x.Masked {
			m = 0xffffffff
		}
		return name + "=" + ctStateString(x.Value, m)
	}
	if x.Field == FVLANVID {
		switch {
		case !x.Masked && x.Value&VIDPresent != 0:
			return "dl_vlan=" + strconv.FormatUint(x.Value&0xfff, 10)
		case !x.Masked && x.Value == 0:
			return "vlan_tci=0x0000/0x1fff"
		}
		return fmt.Sprintf("vlan_tci=0x%04x/0x%04x", x.Value, x.Mask)
	}
	if x.Field.Is128() {
		return name + "=" + x.string128()
	}
	if !x.Masked {
		return name + "=" + formatValue(x.Field, x.Value)
	}
	if x.Field.info().kind == kindIPv4 {
		if ones, ok := prefixLen(uint32(x.Mask)); ok {
			return fmt.Sprintf("%s=%s/%d", name, formatValue(x.Field, x.Value), ones)
		}
	}
	return name + "=" + formatValue(x.Field, x.Value) + "/" + formatValue(x.Field, x.Mask)
}

func prefixLen(mask uint32) (int, bool) {
	n := 0
	for i := 31; i >= 0; i-- {
		if mask&(1<<uint(i)) == 0 {
			break
		}
		n++
	}
	if n < 32 && mask&(1<<uint(31-n)-1) != 0 {
		return 0, false
	}
	return n, true
}

func formatValue(f Field, v uint64) string {
	switch f.info().kind {
	case kindMAC:
		var m MAC
		for i := 0; i < 6; i++ {
			m[i] = byte(v >> uint(8*(5-i)))
		}
		return m.String()
	case kindIPv4:
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
	}
	switch f {
	case FEthType, FTunID, FReg0, FReg1, FReg2, FReg3, FReg4, FReg5, FReg6, FReg7, FCtMark, FNDReserved:
		return "0x" + strconv.FormatUint(v, 16)
	}
	return strconv.FormatUint(v, 10)
}

func quotePort(name string) string {
	if name == PortLocal || name == PortInPort || name == PortController {
		return name
	}
	for _, r := range name {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return strconv.Quote(name)
		}
	}
	return name
}

// MACValue converts a MAC to a field value.
func MACValue(m MAC) uint64 {
	var v uint64
	for _, b := range m {
		v = v<<8 | uint64(b)
	}
	return v
}

// IPValue converts an IPv4 address to a field value.
func IPValue(a netip.Addr) uint64 {
	b := a.As4()
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

// PrefixMask returns the value and mask of an IPv4 prefix.
func PrefixMask(p netip.Prefix) (uint64, uint64) {
	mask := uint64(0xffffffff) << uint(32-p.Bits()) & 0xffffffff
	return IPValue(p.Masked().Addr()), mask
}
