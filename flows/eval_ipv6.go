package flows

// The evaluator's IPv6 fields (eval.go): addresses, ICMPv6 and neighbour
// discovery, with the OpenFlow prerequisites Open vSwitch applies.

import (
	"fmt"
	"net/netip"
	"strings"
)

// ICMPv6 types the pipeline names (RFC 4443, RFC 4861, RFC 3810).
const (
	ICMPv6EchoRequest  = 128
	ICMPv6EchoReply    = 129
	ICMPv6RS           = 133 // router solicitation
	ICMPv6RA           = 134 // router advertisement
	ICMPv6NS           = 135 // neighbour solicitation
	ICMPv6NA           = 136 // neighbour advertisement
	ICMPv6Redirect     = 137
	ICMPv6MLDv2Report  = 143
	DHCPv6ServerPort   = 547
	DHCPv6ClientPort   = 546
	NDOptSourceLLAddr  = 1
	NDOptTargetLLAddr  = 2
	NDFlagsSolOverride = 0x60000000 // NA flags: solicited, override (not router)
)

// IPv6Packet builds an IPv6 packet with the given next header (ports zero).
func IPv6Packet(inPort string, srcMAC, dstMAC MAC, src, dst netip.Addr, proto uint8) Packet {
	return Packet{InPort: inPort, EthSrc: srcMAC, EthDst: dstMAC, EthType: EthIPv6, IPProto: proto, IPSrc: src, IPDst: dst}
}

// ICMPv6Packet builds an ICMPv6 packet of the given type.
func ICMPv6Packet(inPort string, srcMAC, dstMAC MAC, src, dst netip.Addr, typ uint8) Packet {
	p := IPv6Packet(inPort, srcMAC, dstMAC, src, dst, ProtoICMPv6)
	p.ICMPType = typ
	return p
}

// NSPacket builds a neighbour solicitation for target from src (sll: the
// source link-layer address option, zero for none) to target's
// solicited-node multicast group.
func NSPacket(inPort string, mac MAC, src, target netip.Addr, sll MAC) Packet {
	dst, dmac := SolicitedNode(target)
	p := ICMPv6Packet(inPort, mac, dmac, src, dst, ICMPv6NS)
	p.NDTarget, p.NDSll = target, sll
	if sll != (MAC{}) {
		p.NDOptType = NDOptSourceLLAddr
	}
	return p
}

// NAPacket builds a neighbour advertisement "target is at tll" from src to
// dst (dstMAC), solicited and override.
func NAPacket(inPort string, mac, dstMAC MAC, src, dst, target netip.Addr, tll MAC) Packet {
	p := ICMPv6Packet(inPort, mac, dstMAC, src, dst, ICMPv6NA)
	p.NDTarget, p.NDTll, p.NDReserved = target, tll, NDFlagsSolOverride
	if tll != (MAC{}) {
		p.NDOptType = NDOptTargetLLAddr
	}
	return p
}

func (p *Packet) isICMPv6() bool { return p.EthType == EthIPv6 && p.IPProto == ProtoICMPv6 }

func (p *Packet) isND() bool {
	return p.isICMPv6() && (p.ICMPType == ICMPv6NS || p.ICMPType == ICMPv6NA)
}

func addr6(a netip.Addr) (uint64, uint64) {
	if !a.Is6() {
		return 0, 0
	}
	return Addr6Value(a)
}

// field128 returns a 128-bit field's value and whether it exists for p.
func (p *Packet) field128(f Field) (hi, lo uint64, ok bool) {
	ip6 := p.EthType == EthIPv6
	switch f {
	case FIPv6Src:
		hi, lo = addr6(p.IPSrc)
		return hi, lo, ip6
	case FIPv6Dst:
		hi, lo = addr6(p.IPDst)
		return hi, lo, ip6
	case FNDTarget:
		hi, lo = addr6(p.NDTarget)
		return hi, lo, p.isND()
	}
	return 0, 0, false
}

// field6 returns the value of an IPv6 field of at most 64 bits (the low
// bits of a 128-bit one).
func (p *Packet) field6(f Field) (uint64, bool) {
	switch f {
	case FIPv6Src, FIPv6Dst, FNDTarget:
		_, lo, ok := p.field128(f)
		return lo, ok
	case FICMPv6Type:
		return uint64(p.ICMPType), p.isICMPv6()
	case FNDSll:
		return MACValue(p.NDSll), p.isICMPv6() && p.ICMPType == ICMPv6NS
	case FNDTll:
		return MACValue(p.NDTll), p.isICMPv6() && p.ICMPType == ICMPv6NA
	case FNDReserved:
		return uint64(p.NDReserved), p.isND()
	case FNDOptionsType:
		return uint64(p.NDOptType), p.isND()
	}
	return 0, false
}

func (p *Packet) matches128(x *MatchField) bool {
	hi, lo, ok := p.field128(x.Field)
	if !ok {
		return false
	}
	if x.Masked {
		return hi&x.MaskHi == x.Hi&x.MaskHi && lo&x.Mask == x.Value&x.Mask
	}
	return hi == x.Hi && lo == x.Value
}

// setField6 writes an IPv6 field of at most 64 bits. Changing the first
// option's type from source to target link-layer address turns the option
// (as Open vSwitch rewrites the option in place: an NS's source address
// option becomes an NA's target address option).
func (p *Packet) setField6(f Field, v uint64) {
	switch f {
	case FICMPv6Type:
		p.ICMPType = uint8(v)
	case FNDSll:
		p.NDSll = valueMAC(v)
	case FNDTll:
		p.NDTll = valueMAC(v)
	case FNDReserved:
		p.NDReserved = uint32(v)
	case FNDOptionsType:
		if p.NDOptType == NDOptSourceLLAddr && v == NDOptTargetLLAddr {
			p.NDTll, p.NDSll = p.NDSll, MAC{}
		}
		p.NDOptType = uint8(v)
	}
}

func (p *Packet) set128(f Field, a netip.Addr) {
	switch f {
	case FIPv6Src:
		p.IPSrc = a
	case FIPv6Dst:
		p.IPDst = a
	case FNDTarget:
		p.NDTarget = a
	}
}

// move128 applies a move of whole 128-bit fields (the only kind the
// pipeline writes).
func (p *Packet) move128(m Move) {
	hi, lo, _ := p.field128(m.Src)
	if m.NBits == 128 && m.SrcOfs == 0 && m.DstOfs == 0 && m.Src.Is128() && m.Dst.Is128() {
		p.set128(m.Dst, valueAddr6(hi, lo))
	}
}

func (p Packet) string6(b *strings.Builder) {
	proto := fmt.Sprintf("proto %d", p.IPProto)
	switch p.IPProto {
	case ProtoICMPv6:
		proto = fmt.Sprintf("icmp6 type %d", p.ICMPType)
		switch p.ICMPType {
		case ICMPv6NS:
			proto = fmt.Sprintf("ns who-has %s sll=%s", p.NDTarget, p.NDSll)
		case ICMPv6NA:
			proto = fmt.Sprintf("na %s is-at tll=%s flags=%#x", p.NDTarget, p.NDTll, p.NDReserved)
		}
	case ProtoTCP:
		proto = fmt.Sprintf("tcp %d->%d", p.L4Src, p.L4Dst)
	case ProtoUDP:
		proto = fmt.Sprintf("udp %d->%d", p.L4Src, p.L4Dst)
	}
	fmt.Fprintf(b, " ipv6 %s->%s %s", p.IPSrc, p.IPDst, proto)
}
