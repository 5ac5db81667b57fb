package flows

import (
	"fmt"
	"math/rand"
	"net/netip"
	"sort"
	"strings"
	"testing"
)

// The shadowing lint is exact: on random small ACL lists, a rule reported
// shadowed decides no packet under the model (PolicyModel.Judge), and a
// rule not reported shadowed decides at least one. The packets are a
// grid: every boundary value of every rule in every dimension (protocol,
// port, ICMP type and code, remote address), so each cell of the rules'
// arrangement holds one grid packet and the check is exhaustive, not a
// sample. The rules that decide a shadowed rule's packets must be the
// ones the finding names, and the severity must follow their verdicts.

// propTier is the tier judged by the random list: its prefix is outside
// every random cidr but 0.0.0.0/0 and 128.0.0.0/1, and no cidr boundary
// falls inside it, so a grid address is never inside the tier (traffic
// inside a tier never meets its ACL).
const propTier, propVM = "172.31.0.0/24", "172.31.0.11"

var propCIDRs = []string{"0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/1", "10.0.0.0/8", "10.0.0.0/9", "10.128.0.0/9",
	"10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25", "203.0.113.0/24"}

var propPorts = []int{1, 21, 22, 23, 80, 443, 1023, 1024, 65535}

// randomACL writes a list of n random rules as blueprint YAML lines.
func randomACL(rng *rand.Rand, n int) string {
	var b strings.Builder
	nums := rng.Perm(n)
	for i := 0; i < n; i++ {
		action := []string{ActionAllow, ActionDeny}[rng.Intn(2)]
		dir := DirIngress
		if rng.Intn(5) < 2 {
			dir = DirEgress
		}
		proto := []string{"tcp", "tcp", "udp", "icmp", "icmp", "all", "47"}[rng.Intn(7)]
		extra := ""
		switch proto {
		case "tcp", "udp":
			if rng.Intn(10) >= 3 {
				lo, hi := propPorts[rng.Intn(len(propPorts))], propPorts[rng.Intn(len(propPorts))]
				if lo > hi {
					lo, hi = hi, lo
				}
				extra = fmt.Sprintf(", ports: %d-%d", lo, hi)
			}
		case "icmp":
			if rng.Intn(10) >= 3 {
				t := []int{-1, 0, 8}[rng.Intn(3)]
				c := -1
				if t >= 0 {
					c = []int{-1, 0, 3}[rng.Intn(3)]
				}
				extra = fmt.Sprintf(", icmp: {type: %d, code: %d}", t, c)
			}
		}
		cidrs := []string{propCIDRs[rng.Intn(len(propCIDRs))]}
		if rng.Intn(3) == 0 {
			if c := propCIDRs[rng.Intn(len(propCIDRs))]; c != cidrs[0] {
				cidrs = append(cidrs, c)
			}
		}
		fmt.Fprintf(&b, "          - {number: %d, action: %s, direction: %s, protocol: %s%s, cidrs: [%s]}\n",
			(nums[i]+1)*10, action, dir, proto, extra, strings.Join(cidrs, ", "))
	}
	return b.String()
}

func propBlueprint(rules string) string {
	return `version: 1
hosts:
  - {name: kvm1, datapath_id: "00000000000000a1", tunnel_ip: 198.51.100.11, uplink: eth0}
vpcs:
  - name: blue
    acls:
      - name: l
        rules:
` + rules + `    tiers:
      - name: t
        vni: 9101
        cidr: ` + propTier + `
        acl: l
        vms:
          - {name: vm1, host: kvm1, port: vnet0, mac: "52:54:00:00:00:01", ip: ` + propVM + `}
`
}

// gridValues are 0 and, for every interval, its start and the value after
// its end (within max): the lower ends of the arrangement's cells.
func gridValues(ivs []ival, max uint64) []uint64 {
	set := map[uint64]bool{0: true}
	for _, iv := range ivs {
		set[iv.lo] = true
		if iv.hi < max {
			set[iv.hi+1] = true
		}
	}
	var out []uint64
	for v := range set {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// gridConns are the grid packets of a list's rules: every protocol
// boundary, and per protocol the port or ICMP boundaries, times every
// address boundary. Written from the rules' matches, independently of the
// lint's boxes.
func gridConns(rules []ACLRule) []Conn {
	var protos, ports, types, codes, addrs []ival
	for i := range rules {
		m := &rules[i].Match
		if m.AnyProto {
			protos = append(protos, ival{0, 255})
		} else {
			protos = append(protos, ival{uint64(m.Proto), uint64(m.Proto)})
		}
		if m.HasPorts() {
			ports = append(ports, ival{uint64(m.Ports.Lo), uint64(m.Ports.Hi)})
		}
		if m.ICMPType >= 0 {
			types = append(types, ival{uint64(m.ICMPType), uint64(m.ICMPType)})
		}
		if m.ICMPCode >= 0 {
			codes = append(codes, ival{uint64(m.ICMPCode), uint64(m.ICMPCode)})
		}
		for _, p := range m.Prefixes {
			lo := IPValue(p.Masked().Addr())
			addrs = append(addrs, ival{lo, lo + 1<<(32-p.Bits()) - 1})
		}
	}
	var out []Conn
	for _, pr := range gridValues(protos, 255) {
		for _, a := range gridValues(addrs, 1<<32-1) {
			c := Conn{Proto: uint8(pr), Src: addrOf(a), SrcPort: 40000}
			switch uint8(pr) {
			case ProtoTCP, ProtoUDP:
				for _, p := range gridValues(ports, 65535) {
					c.DstPort = uint16(p)
					out = append(out, c)
				}
			case ProtoICMP:
				for _, t := range gridValues(types, 255) {
					for _, k := range gridValues(codes, 255) {
						c.ICMPType, c.ICMPCode = uint8(t), uint8(k)
						out = append(out, c)
					}
				}
			default:
				out = append(out, c)
			}
		}
	}
	return out
}

// aclDecider returns the number of the rule of list l that decided the
// ACL check in direction dir, or 0 (no rule matched).
func aclDecider(v PolicyVerdict, dir string) int {
	for _, ch := range v.Checks {
		if !strings.HasPrefix(ch.Where, dir+" of tier") {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(ch.Rule, "acl blue/l #%d", &n); err == nil {
			return n
		}
		return 0
	}
	return -1
}

// judgeDir judges packet c (remote end c.Src) for direction dir: ingress
// from the remote to the VM, egress from the VM to the remote.
func judgeDir(m *PolicyModel, p *VPC, c Conn, dir string) int {
	vm := netip.MustParseAddr(propVM)
	if dir == DirIngress {
		c.Dst = vm
	} else {
		c.Src, c.Dst = vm, c.Src
	}
	return aclDecider(m.Judge(p, c, ConnNew), dir)
}

func TestLintShadowExactProperty(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	lists := 400
	if testing.Short() {
		lists = 100
	}
	tier := netip.MustParsePrefix(propTier)
	stats := map[string]int{}
	for iter := 0; iter < lists; iter++ {
		src := propBlueprint(randomACL(rng, 2+rng.Intn(8)))
		bp, err := Parse("prop.yaml", []byte(src))
		if err != nil {
			t.Fatalf("list %d: %v\n%s", iter, err, src)
		}
		p := &bp.VPCs[0]
		l := &p.ACLs[0]
		model := NewPolicyModel(bp)
		findings := map[string]LintFinding{}
		for _, f := range LintPolicy(bp) {
			if f.Code == LintTooComplex {
				t.Fatalf("list %d: a small list was too complex: %s", iter, f)
			}
			if strings.HasPrefix(f.Field, "vpcs[0].acls[0].rules[") && !strings.Contains(f.Field, ".cidrs") {
				switch f.Code {
				case LintACLShadowedDeny, LintACLShadowedAllow, LintACLRedundant:
					findings[f.Field] = f
				}
			}
		}
		byNumber := map[int]int{} // number -> index in l.Rules
		for k := range l.Rules {
			byNumber[l.Rules[k].Number] = k
		}
		grid := gridConns(l.Rules)
		for _, dir := range []string{DirIngress, DirEgress} {
			decided := map[int]bool{}
			shadowers := map[int]map[int]bool{} // rule -> rules deciding packets it matches
			for _, c := range grid {
				if tier.Contains(c.Src) {
					t.Fatalf("grid address %s inside the tier", c.Src)
				}
				d := judgeDir(model, p, c, dir)
				if d < 0 {
					t.Fatalf("list %d: %s %s: no ACL check", iter, dir, c)
				}
				decided[d] = true
				for k := range l.Rules {
					r := &l.Rules[k]
					if r.Direction == dir && d != r.Number && ruleMatches(&r.Match, c, c.Src, nil) {
						if shadowers[r.Number] == nil {
							shadowers[r.Number] = map[int]bool{}
						}
						shadowers[r.Number][d] = true
					}
				}
			}
			for k := range l.Rules {
				r := &l.Rules[k]
				if r.Direction != dir {
					continue
				}
				field := fmt.Sprintf("vpcs[0].acls[0].rules[%d]", k)
				f, reported := findings[field]
				if reported == decided[r.Number] {
					t.Fatalf("list %d: rule #%d decides packets: %v, reported shadowed: %v (%s)\n%s", iter, r.Number, decided[r.Number], reported, f, src)
				}
				if !reported {
					stats["live"]++
					continue
				}
				stats[f.Code]++
				// The finding names exactly the rules that take its packets.
				var want, got []string
				var allow, deny bool
				for n := range shadowers[r.Number] {
					want = append(want, fmt.Sprintf("vpcs[0].acls[0].rules[%d]", byNumber[n]))
					allow = allow || l.Rules[byNumber[n]].Action == ActionAllow
					deny = deny || l.Rules[byNumber[n]].Action == ActionDeny
				}
				got = append(got, f.Related...)
				sort.Strings(want)
				sort.Strings(got)
				if strings.Join(want, " ") != strings.Join(got, " ") {
					t.Fatalf("list %d: rule #%d: finding names %v, the packets are decided by %v\n%s\n%s", iter, r.Number, got, want, f, src)
				}
				wantCode := LintACLRedundant
				switch {
				case r.Action == ActionDeny && allow:
					wantCode = LintACLShadowedDeny
				case r.Action == ActionAllow && deny:
					wantCode = LintACLShadowedAllow
				}
				if f.Code != wantCode || (f.Severity == LintError) != (wantCode == LintACLShadowedDeny) {
					t.Fatalf("list %d: rule #%d: %s, want code %s\n%s", iter, r.Number, f, wantCode, src)
				}
			}

			// The lint's own witness: a point of every live rule's residual
			// is decided by that rule under the model.
			rules := orderedRules(l, dir)
			bud := budget{maxLintWork}
			for i, res := range shadow(rules, &bud) {
				if res.state != ruleLive {
					continue
				}
				w := res.residual[0]
				c := Conn{Proto: uint8(w[dimProto].lo), DstPort: uint16(w[dimPort].lo), ICMPType: uint8(w[dimType].lo), ICMPCode: uint8(w[dimCode].lo), Src: addrOf(w[dimRemote].lo), SrcPort: 40000}
				if d := judgeDir(model, p, c, dir); d != rules[i].r.Number {
					t.Fatalf("list %d: witness %s (%s) of rule #%d is decided by #%d\n%s", iter, c, dir, rules[i].r.Number, d, src)
				}
			}
		}
	}
	t.Logf("rules checked: %v", stats)
	if stats["live"] == 0 || stats[LintACLShadowedDeny] == 0 || stats[LintACLShadowedAllow] == 0 || stats[LintACLRedundant] == 0 {
		t.Errorf("the random lists do not exercise every outcome: %v", stats)
	}
}

func addrOf(v uint64) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
