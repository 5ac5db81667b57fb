package cloudstack

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vpcflow/vpcflow/flows"
)

// A reference judge of one CloudStack ACL list, written from CloudStack's
// documented semantics, independently of the mapping: first match by
// number, ingress denied and egress allowed when nothing matches. It reads
// the items two ways: as the API states them (literal) and as the VPC
// router applies them (router: ports of a protocol number ignored,
// protocol 0 is every protocol, items being deleted gone). Anything it
// cannot read matches every packet if it is a deny and none if it is an
// allow: a rule that could mean anything.

type csReading int

const (
	readLiteral csReading = iota
	readRouter
)

type csPacket struct {
	proto              uint8
	dport              uint16
	icmpType, icmpCode uint8
	remote             netip.Addr
}

func csJudge(items []*ACLItem, dir string, p csPacket, rd csReading) bool {
	var rules []*ACLItem
	for _, it := range items {
		if !strings.EqualFold(it.TrafficType, dir) {
			continue
		}
		if rd == readRouter && strings.EqualFold(it.State, "Deleting") {
			continue
		}
		rules = append(rules, it)
	}
	sort.SliceStable(rules, func(i, j int) bool {
		if rules[i].Number.v != rules[j].Number.v {
			return rules[i].Number.v < rules[j].Number.v
		}
		return rules[i].ID < rules[j].ID
	})
	for _, it := range rules {
		allow := strings.EqualFold(it.Action, "Allow")
		m, known := csMatches(it, p, rd)
		if !known {
			m = !allow
		}
		if m {
			return allow
		}
	}
	return strings.EqualFold(dir, "Egress")
}

// csMatches: does item it match p under reading rd (known: it could read it).
func csMatches(it *ACLItem, p csPacket, rd csReading) (match, known bool) {
	if !strings.EqualFold(it.Action, "Allow") && !strings.EqualFold(it.Action, "Deny") {
		return false, false
	}
	// Remote side.
	inCIDRs, any4 := false, false
	for _, s := range strings.Split(it.CIDRList, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			s += "/32"
			if strings.Contains(s, ":") {
				s = strings.TrimSuffix(s, "/32") + "/128"
			}
		}
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			return false, false
		}
		any4 = true
		if pf.Addr().Is4() && pf.Masked().Contains(p.remote) {
			inCIDRs = true
		}
	}
	if !any4 {
		inCIDRs = true // empty cidrlist: any
	}
	if !inCIDRs {
		return false, true
	}
	portsOK := func() (bool, bool) {
		if !it.StartPort.set && !it.EndPort.set {
			return true, true
		}
		if !it.StartPort.set {
			return false, false
		}
		lo, hi := it.StartPort.v, it.StartPort.v
		if it.EndPort.set {
			hi = it.EndPort.v
		}
		if lo < 0 || hi > 65535 || lo > hi {
			return false, false
		}
		return int(p.dport) >= lo && int(p.dport) <= hi, true
	}
	icmpOK := func() (bool, bool) {
		t, c := -1, -1
		if it.ICMPType.set {
			t = it.ICMPType.v
		}
		if it.ICMPCode.set {
			c = it.ICMPCode.v
		}
		if t < -1 || t > 255 || c < -1 || c > 255 || t == -1 && c != -1 {
			return false, false
		}
		return (t == -1 || int(p.icmpType) == t) && (c == -1 || int(p.icmpCode) == c), true
	}
	proto := strings.ToLower(strings.TrimSpace(it.Protocol))
	switch proto {
	case "tcp", "udp":
		want := uint8(6)
		if proto == "udp" {
			want = 17
		}
		if p.proto != want {
			return false, true
		}
		return portsOK()
	case "icmp":
		if p.proto != 1 {
			return false, true
		}
		return icmpOK()
	case "all":
		return true, true
	}
	n, err := strconv.Atoi(proto)
	if err != nil || n < 0 || n > 255 {
		return false, false
	}
	if n == 0 {
		return rd == readRouter, true // iptables -p 0: every protocol; literally protocol 0
	}
	if int(p.proto) != n {
		return false, true
	}
	if rd == readRouter {
		return true, true // the router applies a numbered protocol without ports or ICMP type
	}
	switch n {
	case 6, 17:
		return portsOK()
	case 1:
		return icmpOK()
	}
	return true, true
}

// The blueprint never allows what CloudStack denies, under either reading:
// random lists mixing every protocol, port, ICMP, cidrlist, action, state
// and number form, judged by flows' own policy model on random packets.
func TestPolicyNeverWidens(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 34))
	pick := func(ss []string) string { return ss[rng.IntN(len(ss))] }
	protos := []string{"tcp", "TCP", "udp", "icmp", "all", "6", "17", "1", "0", "47", "58", "gre", ""}
	type pr struct{ a, b optInt }
	ports := []pr{{}, {some(80), unset}, {some(80), some(80)}, {some(1), some(1023)}, {some(0), some(65535)}, {some(0), some(0)},
		{some(1023), some(1)}, {some(8080), some(8081)}, {some(0), some(1023)}, {unset, some(53)}, {some(5000), some(70000)}}
	icmps := []pr{{}, {some(-1), some(-1)}, {some(8), some(-1)}, {some(8), some(0)}, {some(-1), some(3)}, {some(3), some(1)}, {some(300), unset}}
	cidrs := []string{"10.2.0.0/16", "10.2.1.0/24", "198.51.100.7", "203.0.113.0/24", "0.0.0.0/0", "::/0", "fd00::/8", "10.2.1.5/16", " 10.2.0.0/16", "bogus"}
	remotes := []netip.Addr{netip.MustParseAddr("10.2.0.5"), netip.MustParseAddr("10.2.1.5"), netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("172.16.0.1")}
	dports := []uint16{22, 53, 80, 81, 443, 1023, 1024, 5000, 8080, 8081, 65535}
	icmpTC := [][2]uint8{{8, 0}, {3, 1}, {3, 3}, {0, 0}}

	packets, allowedSeen, deniedSeen := 0, 0, 0
	for round := 0; round < 400; round++ {
		var items []*ACLItem
		for k := rng.IntN(8) + 1; k > 0; k-- {
			it := &ACLItem{ID: fmt.Sprintf("i%02d", k), ACLID: "L", Number: some(rng.IntN(40) + 1), Action: pick([]string{"Allow", "Deny", "Allow", "Deny", "deny", "Reject"}),
				TrafficType: pick([]string{"Ingress", "Egress", "ingress"}), Protocol: pick(protos), State: pick([]string{"Active", "Active", "Add", "Deleting"})}
			if rng.IntN(20) == 0 {
				it.Number = some(40000 + rng.IntN(10))
			}
			pp := ports[rng.IntN(len(ports))]
			it.StartPort, it.EndPort = pp.a, pp.b
			ic := icmps[rng.IntN(len(icmps))]
			it.ICMPType, it.ICMPCode = ic.a, ic.b
			var cs []string
			for n := rng.IntN(3); n > 0; n-- {
				cs = append(cs, pick(cidrs))
			}
			it.CIDRList = strings.Join(cs, ",")
			items = append(items, it)
		}
		o := propObjects(items)
		res, err := Build(o, &Base{Version: 1, Management: flows.Management{CIDRs: []string{"192.0.2.0/24"}}, HostDefaults: HostOverride{Uplink: flows.UplinkSpec{Name: "eth0"}}}, BuildOptions{})
		if err != nil {
			t.Fatalf("round %d: %v\nitems: %s", round, err, dumpItems(items))
		}
		bp := res.Blueprint
		model := flows.NewPolicyModel(bp)
		vm := netip.MustParseAddr("10.1.1.10")
		for n := 0; n < 60; n++ {
			p := csPacket{proto: []uint8{6, 17, 1, 47, 58}[rng.IntN(5)], dport: dports[rng.IntN(len(dports))], remote: remotes[rng.IntN(len(remotes))]}
			tc := icmpTC[rng.IntN(len(icmpTC))]
			p.icmpType, p.icmpCode = tc[0], tc[1]
			for _, dir := range []string{"Ingress", "Egress"} {
				c := flows.Conn{Proto: p.proto, Src: p.remote, Dst: vm, SrcPort: 40000, DstPort: p.dport, ICMPType: p.icmpType, ICMPCode: p.icmpCode}
				if p.proto != 6 && p.proto != 17 {
					c.SrcPort, c.DstPort = 0, 0
				}
				if dir == "Egress" {
					c.Src, c.Dst = vm, p.remote
				}
				got := model.Judge(&bp.VPCs[0], c, flows.ConnNew)
				lit, rt := csJudge(items, dir, p, readLiteral), csJudge(items, dir, p, readRouter)
				packets++
				if got.Allowed {
					allowedSeen++
				} else {
					deniedSeen++
				}
				if got.Allowed && (!lit || !rt) {
					t.Fatalf("round %d: %s %s allowed by the blueprint (%s), CloudStack: literal allows %v, router allows %v\nitems:\n%s\nblueprint:\n%s",
						round, dir, c, got.Rule, lit, rt, dumpItems(items), res.YAML)
				}
			}
		}
	}
	// The property is not vacuous: both verdicts occur.
	if allowedSeen < packets/10 || deniedSeen < packets/10 {
		t.Errorf("%d packets: %d allowed, %d denied: the random lists do not exercise both verdicts", packets, allowedSeen, deniedSeen)
	}
}

// propObjects is one host, one VPC and one tier (10.1.1.0/24, list L)
// with one VM (10.1.1.10).
func propObjects(items []*ACLItem) *Objects {
	o := &Objects{
		Hosts:    []Host{{ID: "a1b2c3d4-0000-4000-8000-000000000001", Name: "kvm1", Type: "Routing", State: "Up", Hypervisor: "KVM", IPAddress: "192.0.2.11"}},
		VPCs:     []VPC{{ID: "vpc1", Name: "v"}},
		Networks: []Network{{ID: "net1", Name: "a", VPCID: "vpc1", CIDR: "10.1.1.0/24", BroadcastURI: "vxlan://100", ACLID: "L"}},
		VMs: []VM{{ID: "vm1", Name: "a1", State: "Running", HostID: "a1b2c3d4-0000-4000-8000-000000000001",
			NICs: []NIC{{ID: "nic1", NetworkID: "net1", MACAddress: "02:00:00:00:00:01", IPAddress: "10.1.1.10", IsDefault: true}}}},
		ACLLists: []ACLList{{ID: "L", Name: "l", VPCID: "vpc1"}},
	}
	for _, it := range items {
		o.ACLItems = append(o.ACLItems, *it)
	}
	return o
}

func dumpItems(items []*ACLItem) string {
	var b strings.Builder
	for _, it := range items {
		fmt.Fprintf(&b, "  #%s %s %s %q ports %s-%s icmp %s/%s cidrs %q state %s\n", it.Number, it.Action, it.TrafficType, it.Protocol, it.StartPort, it.EndPort, it.ICMPType, it.ICMPCode, it.CIDRList, it.State)
	}
	return b.String()
}
