package flows

import "net/netip"

// The evaluator's connection tracker: enough of conntrack to run the
// policy stages (docs/policy.md) on the model switch. A ct action with a
// table looks the packet up in its zone (+trk, and +new, +est, +est+rpl
// or +inv), commit records the connection in its original direction.
// Without a tracker (explain of one packet), a ct lookup returns the state
// the packet says it is in (Packet.Conn).

// ConnTracker holds the committed connections of one switch.
type ConnTracker struct {
	conns map[ctKey]bool
}

// NewConnTracker returns an empty tracker.
func NewConnTracker() *ConnTracker { return &ConnTracker{conns: map[ctKey]bool{}} }

type ctKey struct {
	zone       uint16
	proto      uint8
	src, dst   netip.Addr
	sport, dpt uint16
}

// icmpRequestOf maps the ICMP replies conntrack tracks to their requests.
var icmpRequestOf = map[uint8]uint8{0: 8, 14: 13, 16: 15, 18: 17}

// keys returns p's key as an original-direction packet and, for a packet
// that can only be a reply (an ICMP reply type), the key of the
// connection it answers; orig is false then.
func ctKeys(zone uint16, p *Packet) (k ctKey, orig bool) {
	k = ctKey{zone: zone, proto: p.IPProto, src: p.IPSrc, dst: p.IPDst}
	switch p.IPProto {
	case ProtoTCP, ProtoUDP:
		k.sport, k.dpt = p.L4Src, p.L4Dst
	case ProtoICMP:
		if req, ok := icmpRequestOf[p.ICMPType]; ok {
			return ctKey{zone: zone, proto: ProtoICMP, src: p.IPDst, dst: p.IPSrc, dpt: uint16(req)}, false
		}
		k.dpt = uint16(p.ICMPType)
	}
	return k, true
}

func (k ctKey) reverse() ctKey {
	r := k
	r.src, r.dst, r.sport, r.dpt = k.dst, k.src, k.dpt, k.sport
	return r
}

// lookup returns p's ct_state in zone.
func (t *ConnTracker) lookup(zone uint16, p *Packet) uint32 {
	if p.EthType != EthIPv4 {
		return CtTrk | CtInv
	}
	k, orig := ctKeys(zone, p)
	switch {
	case !orig:
		if t.conns[k] {
			return CtTrk | CtEst | CtRpl
		}
		return CtTrk | CtInv // a reply nobody asked for
	case t.conns[k]:
		return CtTrk | CtEst
	case k.proto != ProtoICMP && t.conns[k.reverse()]:
		return CtTrk | CtEst | CtRpl
	}
	return CtTrk | CtNew
}

// commit records p's connection (no-op for a packet of a known one).
func (t *ConnTracker) commit(zone uint16, p *Packet) {
	if p.EthType != EthIPv4 {
		return
	}
	k, orig := ctKeys(zone, p)
	if !orig || t.conns[k] || (k.proto != ProtoICMP && t.conns[k.reverse()]) {
		return
	}
	t.conns[k] = true
}

// assumedState is the ct_state of a packet without a tracker: the state
// it says it is in.
func assumedState(s ConnState) uint32 {
	switch s {
	case ConnEstablished:
		return CtTrk | CtEst
	case ConnReply:
		return CtTrk | CtEst | CtRpl
	case ConnInvalid:
		return CtTrk | CtInv
	}
	return CtTrk | CtNew
}
