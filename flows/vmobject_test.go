package flows

import (
	"fmt"
	"strings"
	"testing"
)

// TestVMObjectCollisionRejected finds two VM names whose cookie objects
// collide and checks the validator refuses them (a cookie must map back to
// exactly one VM).
func TestVMObjectCollisionRejected(t *testing.T) {
	seen := map[uint32]string{}
	var a, b string
	for i := 0; a == ""; i++ {
		n := fmt.Sprintf("vm-%d", i)
		o := VMObject(n)
		if prev, ok := seen[o]; ok {
			a, b = prev, n
		}
		seen[o] = n
	}
	bp := fmt.Sprintf(`version: 1
management: {cidrs: [192.0.2.0/24]}
hosts:
  - {name: kvm1, datapath_id: "00000000000000a1", tunnel_ip: 192.0.2.11, uplink: eth0}
vpcs:
  - name: blue
    tiers:
      - name: web
        vni: 5001
        cidr: 10.10.1.0/24
        vms:
          - {name: %s, host: kvm1, port: vnet0, mac: "52:54:00:00:00:01", ip: 10.10.1.11}
          - {name: %s, host: kvm1, port: vnet1, mac: "52:54:00:00:00:02", ip: 10.10.1.12}
`, a, b)
	_, err := Parse("collide.yaml", []byte(bp))
	if err == nil || !strings.Contains(err.Error(), "same flow cookie object") {
		t.Fatalf("names %q and %q collide (0x%08x): want a cookie-object error, got %v", a, b, VMObject(a), err)
	}
	if !strings.Contains(err.Error(), "collide.yaml:13:") {
		t.Errorf("error does not name file:line: %v", err)
	}
}
