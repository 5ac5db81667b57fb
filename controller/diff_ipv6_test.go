package controller

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/vpcflow/vpcflow/flows"
)

// Two flows that differ only in the high 64 bits of an IPv6 address are
// different switch entries: the reconciler's key must tell them apart.
func TestAppendKeyIPv6HighBits(t *testing.T) {
	mk := func(a string) *flows.Flow {
		hi, lo := flows.Addr6Value(netip.MustParseAddr(a))
		return &flows.Flow{Table: flows.TVMEgress, Priority: 260, Match: flows.Match{
			{Field: flows.FEthType, Value: flows.EthIPv6},
			{Field: flows.FIPv6Src, Hi: hi, Value: lo},
		}}
	}
	a, b := mk("2001:db8:1:1::11"), mk("2001:db8:9:9::11")
	if bytes.Equal(appendKey(nil, a), appendKey(nil, b)) {
		t.Fatalf("same key for %s and %s", a, b)
	}
	if !bytes.Equal(appendKey(nil, a), appendKey(nil, mk("2001:db8:1:1::11"))) {
		t.Fatal("equal flows got different keys")
	}
}
