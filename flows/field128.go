package flows

// 128-bit fields (IPv6 addresses, nd_target): MatchField.Hi/MaskHi carry
// the high 64 bits, Value/Mask the low 64.

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// Is128 reports whether the field is 128 bits wide.
func (f Field) Is128() bool { return f.info().size == 16 }

// normalizeMask normalises a match field's mask: a full mask becomes an
// exact match (keeping the value), an empty mask drops the field (false),
// and the value is masked.
func normalizeMask(mf *MatchField) bool {
	if !mf.Masked {
		return true
	}
	full := mf.Field.fullMask()
	mf.Mask &= full
	if mf.Field.Is128() {
		switch {
		case mf.Mask == full && mf.MaskHi == ^uint64(0):
			mf.Masked, mf.Mask, mf.MaskHi = false, 0, 0
		case mf.Mask == 0 && mf.MaskHi == 0:
			return false
		default:
			mf.Value &= mf.Mask
			mf.Hi &= mf.MaskHi
		}
		return true
	}
	if mf.Mask == full {
		// A full mask is an exact match of the value (a /32 prefix):
		// keep the value.
		mf.Masked, mf.Mask = false, 0
		mf.Value &= full
	} else if mf.Mask == 0 {
		return false
	} else {
		mf.Value &= mf.Mask | ^full
	}
	return true
}

// Addr6Value splits an IPv6 address into its high and low 64 bits.
func Addr6Value(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// valueAddr6 joins high and low 64 bits into an IPv6 address.
func valueAddr6(hi, lo uint64) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

// exact6 matches a 128-bit field exactly.
func exact6(f Field, a netip.Addr) MatchField {
	hi, lo := Addr6Value(a)
	return MatchField{Field: f, Hi: hi, Value: lo}
}

// masked6 matches a 128-bit field against an IPv6 prefix.
func masked6(f Field, p netip.Prefix) MatchField {
	hi, lo := Addr6Value(p.Masked().Addr())
	mhi, mlo := prefixMask6(p.Bits())
	return MatchField{Field: f, Hi: hi, Value: lo, MaskHi: mhi, Mask: mlo, Masked: true}
}

func prefixMask6(bits int) (hi, lo uint64) {
	switch {
	case bits <= 0:
		return 0, 0
	case bits < 64:
		return ^uint64(0) << uint(64-bits), 0
	case bits == 64:
		return ^uint64(0), 0
	case bits < 128:
		return ^uint64(0), ^uint64(0) << uint(128-bits)
	}
	return ^uint64(0), ^uint64(0)
}

// string128 renders a 128-bit match field's value (and mask) in ovs-ofctl
// syntax: an address, address/len, or address/mask.
func (x MatchField) string128() string {
	a := valueAddr6(x.Hi, x.Value)
	if !x.Masked {
		return a.String()
	}
	for bits := 0; bits <= 128; bits++ {
		if hi, lo := prefixMask6(bits); hi == x.MaskHi && lo == x.Mask {
			return a.String() + "/" + strconv.Itoa(bits)
		}
	}
	return a.String() + "/" + valueAddr6(x.MaskHi, x.Mask).String()
}

// put128 writes a 128-bit value big-endian.
func put128(b []byte, hi, lo uint64) {
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:16], lo)
}
