package flows

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestFullMaskKeepsValue: a masked match whose mask covers the whole field
// (a /32 prefix, ct_mark=V/0xffffffff) is the exact match of V. It used to
// lose the value: a /32 management CIDR compiled to nw_dst=0.0.0.0, so
// guests reached the management address it was meant to guard.
func TestFullMaskKeepsValue(t *testing.T) {
	m := match(masked(FIPv4Dst, 0xcb00714d, 0xffffffff), masked(FReg2, 0x1234, 0xffffffff))
	if got := m.String(); got != "nw_dst=203.0.113.77,reg2=0x1234" {
		t.Errorf("match = %s", got)
	}

	data, err := os.ReadFile(demoBlueprint)
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(data), "cidrs: [192.0.2.0/24]", "cidrs: [192.0.2.0/24, 203.0.113.77/32]", 1)
	if src == string(data) {
		t.Fatal("demo blueprint has no management cidrs line to extend")
	}
	bp, err := Parse("demo-mgmt32.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := Compile(bp, "kvm1")
	if err != nil {
		t.Fatal(err)
	}
	out := Render(fs, false)
	if !strings.Contains(out, "nw_dst=203.0.113.77 actions=drop") || strings.Contains(out, "nw_dst=0.0.0.0") {
		t.Errorf("a /32 management cidr is not guarded:\n%s", out)
	}
	// Behaviour: every guest's packets to the /32 are dropped by the guard.
	c := newCloud(t, bp)
	k := &checker{t: t, c: c, bp: bp}
	dst := mustAddr("203.0.113.77")
	for _, a := range vmsOf(bp) {
		k.expectDropBy(fmt.Sprintf("%s to /32 management address", a.name), a.host,
			TCPPacket(a.port, a.mac, BroadcastMAC, a.ip, dst, 40000, 443), 0, CatMgmtGuard)
	}
}
