package flows

// Match-space algebra for the policy lint: a rule's match is a union of
// boxes over five dimensions, and "rules with lower numbers cover this
// rule" is box subtraction. Pure, exact, with bounded work.

import (
	"net/netip"
)

// The dimensions of a match box.
const (
	dimProto  = iota // IP protocol 0..255
	dimPort          // tcp/udp destination port 0..65535 (full for other protocols)
	dimType          // ICMP type 0..255 (full for other protocols)
	dimCode          // ICMP code 0..255 (full for other protocols)
	dimRemote        // remote side: IPv4 address 0..2^32-1, or a group token
	nDims
)

// groupToken is the remote value standing for "a member of security group
// g" (symbolic: membership changes, the rule's meaning does not).
const groupToken = uint64(1) << 32

// dimMax is the largest value of each dimension.
var dimMax = [nDims]uint64{255, 65535, 255, 255, groupToken - 1}

// ival is an inclusive interval.
type ival struct{ lo, hi uint64 }

// mbox is a box: a set of packets (protocol, port, type, code, remote).
// For a packet of one protocol, every rule box is full on the dimensions
// that protocol does not have (ports for icmp, type/code for tcp), so a
// point of a box is always a real packet with the same matches.
type mbox [nDims]ival

func (a *mbox) intersects(b *mbox) bool {
	for d := 0; d < nDims; d++ {
		if a[d].hi < b[d].lo || b[d].hi < a[d].lo {
			return false
		}
	}
	return true
}

// contains reports whether the point p is in the box.
func (a *mbox) contains(p *[nDims]uint64) bool {
	for d := 0; d < nDims; d++ {
		if p[d] < a[d].lo || p[d] > a[d].hi {
			return false
		}
	}
	return true
}

// subtractBox appends a \ b to out as at most 2*nDims disjoint boxes.
func subtractBox(a, b mbox, out []mbox) []mbox {
	if !a.intersects(&b) {
		return append(out, a)
	}
	for d := 0; d < nDims; d++ {
		if a[d].lo < b[d].lo {
			piece := a
			piece[d].hi = b[d].lo - 1
			out = append(out, piece)
			a[d].lo = b[d].lo
		}
		if a[d].hi > b[d].hi {
			piece := a
			piece[d].lo = b[d].hi + 1
			out = append(out, piece)
			a[d].hi = b[d].hi
		}
	}
	return out // what is left of a lies inside b
}

// Work bounds of the lint: a region (the part of one rule not yet decided
// by earlier rules) holds at most maxRegionBoxes disjoint boxes, and one
// lint run does at most maxLintWork box operations. Beyond either, a rule
// is reported "too complex to check" instead of hanging.
const maxRegionBoxes = 4096

// maxLintWork is a variable so tests can lower it.
var maxLintWork = 1 << 26

// budget counts box operations across one lint run.
type budget struct{ left int }

// spend takes n operations; false when the budget is exhausted.
func (b *budget) spend(n int) bool {
	b.left -= n
	return b.left >= 0
}

// region is a set of packets as disjoint boxes.
type region []mbox

// minus returns r \ b; hit says whether b intersected r. ok is false when
// the result outgrows maxRegionBoxes or the budget runs out.
func (r region) minus(b mbox, bud *budget) (out region, hit, ok bool) {
	if !bud.spend(len(r)) {
		return nil, false, false
	}
	for i := range r {
		if r[i].intersects(&b) {
			hit = true
			break
		}
	}
	if !hit {
		return r, false, true
	}
	out = make(region, 0, len(r)+2*nDims)
	for _, a := range r {
		out = subtractBox(a, b, out)
		if len(out) > maxRegionBoxes {
			return nil, true, false
		}
	}
	return out, true, true
}

// minusAll returns r minus every box of bs; hit says whether any
// intersected r.
func (r region) minusAll(bs []mbox, bud *budget) (out region, hit, ok bool) {
	out = r
	for _, b := range bs {
		var h bool
		if out, h, ok = out.minus(b, bud); !ok {
			return nil, hit, false
		}
		hit = hit || h
		if len(out) == 0 {
			break
		}
	}
	return out, hit, true
}

// disjoint turns a union of possibly overlapping boxes (a rule with nested
// cidrs) into a region.
func disjoint(bs []mbox, bud *budget) (region, bool) {
	var r region
	for _, b := range bs {
		piece := region{b}
		var ok bool
		for _, x := range r {
			if piece, _, ok = piece.minus(x, bud); !ok {
				return nil, false
			}
			if len(piece) == 0 {
				break
			}
		}
		r = append(r, piece...)
		if len(r) > maxRegionBoxes {
			return nil, false
		}
	}
	return r, true
}

// prefixIval is an IPv4 prefix as an address interval (ok false for
// anything else: validation admits IPv4 only).
func prefixIval(p netip.Prefix) (ival, bool) {
	if !p.Addr().Is4() {
		return ival{}, false
	}
	lo := IPValue(p.Masked().Addr())
	return ival{lo, lo + (uint64(1) << (32 - p.Bits())) - 1}, true
}

// matchFrame is the box of a match without its remote side (full remote).
func matchFrame(m *TrafficMatch) mbox {
	var b mbox
	for d := 0; d < nDims; d++ {
		b[d] = ival{0, dimMax[d]}
	}
	if !m.AnyProto {
		b[dimProto] = ival{uint64(m.Proto), uint64(m.Proto)}
		if m.HasPorts() {
			b[dimPort] = ival{uint64(m.Ports.Lo), uint64(m.Ports.Hi)}
		}
		if m.Proto == ProtoICMP {
			if m.ICMPType >= 0 {
				b[dimType] = ival{uint64(m.ICMPType), uint64(m.ICMPType)}
			}
			if m.ICMPCode >= 0 {
				b[dimCode] = ival{uint64(m.ICMPCode), uint64(m.ICMPCode)}
			}
		}
	}
	return b
}

// matchBoxes are the boxes of a rule: one per cidr, one per group
// reference (a symbolic remote value).
func matchBoxes(m *TrafficMatch, groups []int) []mbox {
	frame := matchFrame(m)
	var out []mbox
	for _, p := range m.Prefixes {
		iv, ok := prefixIval(p)
		if !ok {
			continue
		}
		b := frame
		b[dimRemote] = iv
		out = append(out, b)
	}
	for _, g := range groups {
		b := frame
		b[dimRemote] = ival{groupToken + uint64(g), groupToken + uint64(g)}
		out = append(out, b)
	}
	return out
}

// ivalsCover reports whether the union of cover contains every interval
// of want (address intervals; small inputs).
func ivalsCover(want, cover []ival) bool {
	for _, w := range want {
		left := []ival{w}
		for _, c := range cover {
			var next []ival
			for _, x := range left {
				if c.hi < x.lo || x.hi < c.lo {
					next = append(next, x)
					continue
				}
				if x.lo < c.lo {
					next = append(next, ival{x.lo, c.lo - 1})
				}
				if x.hi > c.hi {
					next = append(next, ival{c.hi + 1, x.hi})
				}
			}
			left = next
		}
		if len(left) > 0 {
			return false
		}
	}
	return true
}

// ivalsMeet reports whether any interval of a meets one of b.
func ivalsMeet(a, b []ival) bool {
	for _, x := range a {
		for _, y := range b {
			if x.lo <= y.hi && y.lo <= x.hi {
				return true
			}
		}
	}
	return false
}
