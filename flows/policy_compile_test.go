package flows

import (
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The compiled policy against the model (PolicyModel.Judge): random ACL
// and security-group blueprints, random packets between VMs of a VPC
// (same tier, and across tiers of distributed-routing VPCs), run through
// every host's compiled flows with a connection tracker per switch. For
// each packet: new, then the same again (established), then the answer
// (reply); then the policy changes (rules revoked or added) and the same
// connection sends again. The flows must deliver exactly what the model
// allows, every time.

var (
	genCIDRs  = []string{"0.0.0.0/0", "10.1.0.0/24", "10.2.0.0/24", "10.0.0.0/8", "10.1.0.10/32", "10.2.0.11/32", "192.0.2.0/24"}
	genPorts  = []string{"", "80", "1-1023", "1000-2000", "5432", "79-81"}
	genProtos = []string{"tcp", "udp", "icmp", "all", "47"}
	testPorts = []uint16{80, 79, 81, 1023, 1024, 5432, 999, 1000, 2000, 2001, 22}
)

func genMatch(r *rand.Rand) (proto, ports string, icmp *ICMPSpec) {
	proto = genProtos[r.Intn(len(genProtos))]
	switch proto {
	case "tcp", "udp":
		ports = genPorts[r.Intn(len(genPorts))]
	case "icmp":
		switch r.Intn(3) {
		case 0:
			t := 8
			icmp = &ICMPSpec{Type: &t}
		case 1:
			t, c := 8, 0
			icmp = &ICMPSpec{Type: &t, Code: &c}
		}
	}
	return
}

func genCIDRList(r *rand.Rand) []string {
	n := 1 + r.Intn(2)
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		c := genCIDRs[r.Intn(len(genCIDRs))]
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// genPolicyBlueprint: 2-3 hosts, 1-2 VPCs with the same addresses, 2-3
// tiers each (distributed routing in most), random ACL lists and tiers'
// acl, random security groups and members.
func genPolicyBlueprint(t testing.TB, r *rand.Rand, n int) *Blueprint {
	t.Helper()
	bp := &Blueprint{Version: 1, Revision: 1, Encapsulation: EncapVXLAN, Controllers: []string{"tcp:192.0.2.250:6653"}}
	bp.Management.CIDRs = []string{"192.0.2.0/24"}
	nHosts := 2 + r.Intn(2)
	for i := 0; i < nHosts; i++ {
		bp.Hosts = append(bp.Hosts, Host{Name: fmt.Sprintf("h%d", i+1), DatapathID: fmt.Sprintf("%016x", 0xa0+i),
			Uplink: "eth0", TunnelIP: fmt.Sprintf("192.0.2.%d", 10+i)})
	}
	nGroups := r.Intn(4)
	for g := 0; g < nGroups; g++ {
		sg := SecurityGroup{Name: fmt.Sprintf("sg%d", g+1)}
		for k := r.Intn(3); k > 0; k-- {
			proto, ports, icmp := genMatch(r)
			rule := SGRule{Protocol: proto, Ports: ports, ICMP: icmp}
			if r.Intn(3) == 0 {
				rule.Groups = []string{fmt.Sprintf("sg%d", 1+r.Intn(nGroups))}
			} else {
				rule.CIDRs = genCIDRList(r)
			}
			sg.Ingress = append(sg.Ingress, rule)
		}
		for k := r.Intn(3) - 1; k > 0; k-- {
			proto, ports, icmp := genMatch(r)
			sg.Egress = append(sg.Egress, SGRule{Protocol: proto, Ports: ports, ICMP: icmp, CIDRs: genCIDRList(r)})
		}
		bp.SecurityGroups = append(bp.SecurityGroups, sg)
	}
	ports := map[string]int{}
	for vi := 0; vi < 1+r.Intn(2); vi++ {
		p := VPC{Name: fmt.Sprintf("vpc%d", vi+1)}
		if r.Intn(4) != 0 {
			p.Routing = RoutingDistributed
		}
		for li := 0; li < r.Intn(3); li++ {
			l := ACLList{Name: fmt.Sprintf("acl%d", li+1)}
			used := map[int]bool{}
			for k := r.Intn(6); k > 0; k-- {
				num := 1 + r.Intn(50)
				if used[num] {
					continue
				}
				used[num] = true
				proto, ports, icmp := genMatch(r)
				rule := ACLRule{Number: num, Action: []string{ActionAllow, ActionDeny}[r.Intn(2)],
					Direction: []string{DirIngress, DirEgress}[r.Intn(2)], Protocol: proto, Ports: ports, ICMP: icmp, CIDRs: genCIDRList(r)}
				l.Rules = append(l.Rules, rule)
			}
			p.ACLs = append(p.ACLs, l)
		}
		for ti := 0; ti < 2+r.Intn(2); ti++ {
			tr := Tier{Name: fmt.Sprintf("t%d", ti+1), VNI: uint32(1000*(vi+1) + ti + 1), CIDR: fmt.Sprintf("10.%d.0.0/24", ti+1)}
			if p.IsDistributed() {
				tr.Gateway = fmt.Sprintf("10.%d.0.1", ti+1)
			}
			switch x := r.Intn(5); {
			case x < len(p.ACLs):
				tr.ACL = p.ACLs[x].Name
			case x == 3:
				tr.ACL = []string{ACLDefaultAllow, ACLDefaultDeny}[r.Intn(2)]
			}
			for k := 0; k < 1+r.Intn(3); k++ {
				host := bp.Hosts[r.Intn(nHosts)].Name
				vm := VM{Name: fmt.Sprintf("v%d-t%d-%d", vi+1, ti+1, k+1), Host: host, Port: fmt.Sprintf("vnet%d", ports[host]),
					MAC: fmt.Sprintf("52:54:00:%02x:%02x:%02x", vi+1, ti+1, k+1), IP: fmt.Sprintf("10.%d.0.%d", ti+1, 10+k)}
				ports[host]++
				for g := 0; g < nGroups; g++ {
					if r.Intn(2) == 0 {
						vm.SecurityGroups = append(vm.SecurityGroups, fmt.Sprintf("sg%d", g+1))
					}
				}
				tr.VMs = append(tr.VMs, vm)
			}
			p.Tiers = append(p.Tiers, tr)
		}
		bp.VPCs = append(bp.VPCs, p)
	}
	return reparsePolicy(t, bp, n)
}

func reparsePolicy(t testing.TB, bp *Blueprint, n int) *Blueprint {
	t.Helper()
	data, err := yaml.Marshal(bp)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(fmt.Sprintf("policy-generated-%d.yaml", n), data)
	if err != nil {
		t.Fatalf("generated policy blueprint %d does not validate: %v\n%s", n, err, data)
	}
	return parsed
}

// policyPacket builds the packet of connection c sent by VM from (tier ft)
// to VM to, addressed for L2 or for the tier's gateway.
func policyPacket(ft *Tier, from, to *VM, c Conn) Packet {
	dstMAC := to.HW
	if ft != nil {
		dstMAC = ft.GatewayHW
	}
	var p Packet
	switch c.Proto {
	case ProtoTCP:
		p = TCPPacket(from.Port, from.HW, dstMAC, c.Src, c.Dst, c.SrcPort, c.DstPort)
	case ProtoUDP:
		p = UDPPacket(from.Port, from.HW, dstMAC, c.Src, c.Dst, c.SrcPort, c.DstPort)
	case ProtoICMP:
		p = ICMPPacket(from.Port, from.HW, dstMAC, c.Src, c.Dst)
		p.ICMPType, p.ICMPCode = c.ICMPType, c.ICMPCode
	default:
		p = IPv4Packet(from.Port, from.HW, dstMAC, c.Src, c.Dst, c.Proto)
	}
	return p
}

func deliveredTo(as []Arrival, vm *VM) bool {
	for _, a := range as {
		if a.Host == vm.Host && a.Port == vm.Port {
			return true
		}
	}
	return false
}

type polEnd struct {
	vpc  *VPC
	tier *Tier
	vm   *VM
}

func policyEnds(bp *Blueprint) map[*VPC][]polEnd {
	out := map[*VPC][]polEnd{}
	for i := range bp.VPCs {
		p := &bp.VPCs[i]
		for j := range p.Tiers {
			for k := range p.Tiers[j].VMs {
				out[p] = append(out[p], polEnd{p, &p.Tiers[j], &p.Tiers[j].VMs[k]})
			}
		}
	}
	return out
}

func randConn(r *rand.Rand, a, b *VM) Conn {
	c := Conn{Src: a.Addr, Dst: b.Addr}
	switch r.Intn(4) {
	case 0, 1:
		c.Proto, c.SrcPort, c.DstPort = ProtoTCP, uint16(40000+r.Intn(100)), testPorts[r.Intn(len(testPorts))]
	case 2:
		c.Proto, c.SrcPort, c.DstPort = ProtoUDP, uint16(40000+r.Intn(100)), testPorts[r.Intn(len(testPorts))]
	default:
		c.Proto, c.ICMPType = ProtoICMP, []uint8{8, 8, 13}[r.Intn(3)]
	}
	if r.Intn(10) == 0 {
		c.Proto, c.SrcPort, c.DstPort, c.ICMPType = 47, 0, 0, 0
	}
	return c
}

// mutatePolicy revokes or adds policy: a rule removed, an action flipped,
// a tier's ACL swapped, a VM's groups changed.
func mutatePolicy(t testing.TB, r *rand.Rand, bp *Blueprint, n int) *Blueprint {
	t.Helper()
	var raw Blueprint
	data, err := yaml.Marshal(bp)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	raw.Revision++
	for k := 0; k < 1+r.Intn(3); k++ {
		p := &raw.VPCs[r.Intn(len(raw.VPCs))]
		switch r.Intn(4) {
		case 0:
			for i := range p.ACLs {
				if len(p.ACLs[i].Rules) > 0 {
					j := r.Intn(len(p.ACLs[i].Rules))
					p.ACLs[i].Rules = append(p.ACLs[i].Rules[:j], p.ACLs[i].Rules[j+1:]...)
					break
				}
			}
		case 1:
			for i := range p.ACLs {
				for j := range p.ACLs[i].Rules {
					if p.ACLs[i].Rules[j].Action == ActionAllow {
						p.ACLs[i].Rules[j].Action = ActionDeny
					} else {
						p.ACLs[i].Rules[j].Action = ActionAllow
					}
				}
			}
		case 2:
			t := &p.Tiers[r.Intn(len(p.Tiers))]
			t.ACL = []string{"", ACLDefaultAllow, ACLDefaultDeny}[r.Intn(3)]
		case 3:
			if len(raw.SecurityGroups) > 0 {
				t := &p.Tiers[r.Intn(len(p.Tiers))]
				vm := &t.VMs[r.Intn(len(t.VMs))]
				if len(vm.SecurityGroups) > 0 {
					vm.SecurityGroups = nil
				} else {
					vm.SecurityGroups = []string{raw.SecurityGroups[0].Name}
				}
			}
		}
	}
	return reparsePolicy(t, &raw, n)
}

func TestPolicyFlowsAgreeWithModel(t *testing.T) {
	runs := 150
	if testing.Short() {
		runs = 30
	}
	checked, allowed, revoked := 0, 0, 0
	for n := 0; n < runs; n++ {
		r := rand.New(rand.NewSource(int64(n)))
		bp := genPolicyBlueprint(t, r, n)
		c, err := NewCloud(bp)
		if err != nil {
			t.Fatal(err)
		}
		model := NewPolicyModel(bp)
		ends := policyEnds(bp)
		for i := 0; i < 12; i++ {
			p := &bp.VPCs[r.Intn(len(bp.VPCs))]
			es := ends[p]
			a, b := es[r.Intn(len(es))], es[r.Intn(len(es))]
			if a.vm == b.vm {
				continue
			}
			var gwA, gwB *Tier
			if a.tier != b.tier {
				if !p.IsDistributed() {
					continue // across tiers only through a router: not in this test
				}
				gwA, gwB = a.tier, b.tier
			}
			conn := randConn(r, a.vm, b.vm)
			c.EnableConntrack()
			what := fmt.Sprintf("blueprint %d, vpc %s, %s (%s -> %s)", n, p.Name, conn, a.vm.Name, b.vm.Name)
			check := func(step string, got bool, v PolicyVerdict, j Journey) {
				checked++
				if got != v.Allowed {
					t.Errorf("%s, %s: flows deliver=%v, model %s\n%s", what, step, got, v, j)
				}
			}
			v := model.Judge(p, conn, ConnNew)
			j := c.Trace(a.vm.Host, policyPacket(gwA, a.vm, b.vm, conn))
			check("new", deliveredTo(j.Arrivals, b.vm), v, j)
			if v.Allowed {
				allowed++
			}
			j = c.Trace(a.vm.Host, policyPacket(gwA, a.vm, b.vm, conn))
			check("established", deliveredTo(j.Arrivals, b.vm), model.Judge(p, conn, ConnEstablished), j)
			rev := conn.Reverse()
			rp := policyPacket(gwB, b.vm, a.vm, rev)
			rv := model.Judge(p, rev, ConnReply)
			if conn.Proto == ProtoICMP {
				// An echo reply answers a request conntrack saw: delivered
				// exactly when the request was.
				rp.ICMPType = map[uint8]uint8{8: 0, 13: 14}[conn.ICMPType]
				rv = v
			}
			j = c.Trace(b.vm.Host, rp)
			check("reply", deliveredTo(j.Arrivals, a.vm), rv, j)
			if !v.Allowed || r.Intn(2) == 0 {
				continue
			}
			// Change the policy under the open connection.
			bp2 := mutatePolicy(t, r, bp, n)
			c2, err := NewCloud(bp2)
			if err != nil {
				t.Fatal(err)
			}
			c2.ConntrackFrom(c)
			p2 := bp2.testVPC(p.Name)
			a2, at2 := bp2.testVM(a.vm.Name)
			b2, _ := bp2.testVM(b.vm.Name)
			var gw2 *Tier
			if gwA != nil {
				gw2 = at2
			}
			m2 := NewPolicyModel(bp2)
			v2 := m2.Judge(p2, conn, ConnEstablished)
			if !v2.Allowed {
				revoked++
			}
			j = c2.Trace(a2.Host, policyPacket(gw2, a2, b2, conn))
			check("after a policy change", deliveredTo(j.Arrivals, b2), v2, j)
		}
	}
	t.Logf("%d packets checked against the model (%d connections allowed, %d cut by a policy change)", checked, allowed, revoked)
	if allowed == 0 || revoked == 0 || checked < 500 {
		t.Errorf("the generator did not exercise the policy: %d checked, %d allowed, %d revoked", checked, allowed, revoked)
	}
}

func (b *Blueprint) testVPC(name string) *VPC {
	for i := range b.VPCs {
		if b.VPCs[i].Name == name {
			return &b.VPCs[i]
		}
	}
	return nil
}

// testVM returns VM name and its tier.
func (b *Blueprint) testVM(name string) (*VM, *Tier) {
	for i := range b.VPCs {
		for j := range b.VPCs[i].Tiers {
			t := &b.VPCs[i].Tiers[j]
			for k := range t.VMs {
				if t.VMs[k].Name == name {
					return &t.VMs[k], t
				}
			}
		}
	}
	return nil, nil
}

// TestPolicyFlowsParseOVS: every flow the policy example compiles to is
// read by ovs-ofctl as intended (register moves, recirculation, commit).
func TestPolicyFlowsParseOVS(t *testing.T) {
	if os.Getenv("VPCFLOW_E2E") == "0" {
		t.Skip("VPCFLOW_E2E=0")
	}
	bp := loadPolicy(t)
	ports := PortMap{}
	for i, name := range []string{"eth0", "vnet0", "vnet1", "vxlan_sys", TunnelPort(bp.Encapsulation)} {
		ports[name] = uint32(i + 1)
	}
	var all []Flow
	for _, h := range bp.Hosts {
		fs, err := Compile(bp, h.Name)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, fs...)
	}
	text := ofpParse(t, all, ports)
	for _, want := range []string{
		"move:NXM_OF_IP_SRC[]->NXM_NX_REG4[]", "move:NXM_OF_IP_DST[]->NXM_NX_REG4[]",
		"move:NXM_OF_TCP_DST[]->NXM_NX_REG6[0..15]", "move:NXM_OF_ICMP_CODE[]->NXM_NX_REG6[8..15]",
		"ct(table=33,zone=9101)", "ct(commit,zone=9101)", "ct_state=+inv+trk", "ct_state=-rel+rpl-inv+trk",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("ovs-ofctl does not read %q from our encoding", want)
		}
	}
	if t.Failed() {
		t.Logf("ovs-ofctl output:\n%s", text)
	}
}

func TestPolicyZoneCollisionRefused(t *testing.T) {
	data, err := os.ReadFile(policyExample)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), "vni: 9102", "vni: 74638", 1) // 9102 + 65536: zone 9102 = web's? no: 74638 & 0xffff = 9102
	s = strings.Replace(s, "vni: 9103", "vni: 74638", 0)
	s = strings.Replace(s, "vni: 9101", "vni: 9102", 1)
	_, err = Parse(policyExample, []byte(s))
	if err == nil || !strings.Contains(err.Error(), "share conntrack zone 9102") {
		t.Fatalf("two policy tiers with one zone: got %v", err)
	}
}

// ruleCount is the documented flows of one rule: alts are its dimensions'
// alternative counts (local side, remote prefixes, port masks); with two
// or more dimensions of 2+ alternatives a conjunction: their sum + 1;
// otherwise their product.
func ruleCount(alts ...int) int {
	multi, sum, prod := 0, 0, 1
	for _, a := range alts {
		prod *= a
		if a > 1 {
			multi++
			sum += a
		}
	}
	if multi >= 2 {
		return sum + 1
	}
	return prod
}

// TestPolicyFlowCount checks the documented flow-count formula
// (docs/policy.md, Compile) on random policy blueprints: every flow of
// the policy tables of every host.
func TestPolicyFlowCount(t *testing.T) {
	masks := func(m *TrafficMatch) []string {
		switch {
		case m.HasPorts() && m.Ports != AllPorts:
			var out []string
			for _, pm := range m.Ports.Prefixes() {
				out = append(out, pm.String())
			}
			return out
		case !m.AnyProto && m.Proto == ProtoICMP && m.ICMPType >= 0:
			return []string{fmt.Sprint(m.ICMPType, m.ICMPCode)}
		}
		return []string{"any"}
	}
	remotes := func(pfx []string) []string {
		for _, p := range pfx {
			if p == "0.0.0.0/0" {
				return []string{"any"}
			}
		}
		return pfx
	}
	for n := 0; n < 60; n++ {
		r := rand.New(rand.NewSource(int64(1000 + n)))
		bp := genPolicyBlueprint(t, r, n)
		model := NewPolicyModel(bp)
		for _, h := range bp.Hosts {
			fs, err := Compile(bp, h.Name)
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			seen := map[string]bool{}
			for _, f := range fs {
				if IsPolicyTable(f.Table) {
					got++
				}
				k := fmt.Sprintf("%d|%d|%s", f.Table, f.Priority, f.Match.String())
				if seen[k] {
					t.Errorf("%s/%s: two flows with one match: %s", bp.Source, h.Name, k)
				}
				seen[k] = true
			}
			want, tiers, vms, vpcs := 0, map[*Tier]bool{}, 0, map[*VPC]bool{}
			for i := range bp.VPCs {
				p := &bp.VPCs[i]
				for j := range p.Tiers {
					t := &p.Tiers[j]
					for k := range t.VMs {
						if t.VMs[k].Host == h.Name && IsPolicyVM(t, &t.VMs[k]) {
							tiers[t], vpcs[p] = true, true
							vms++
						}
					}
				}
			}
			if len(vpcs) > 0 {
				want = 8 + 13 + 1 + 3*len(tiers) + 2*vms // the third per-VM flow is in l2_forward
			}
			for p := range vpcs {
				routers := 0
				for j := range p.Tiers {
					if p.Tiers[j].HasGateway {
						routers++
					}
				}
				want += 4 + 4*routers
				for j := range p.Tiers {
					t := &p.Tiers[j]
					if t.ACL == "" {
						continue
					}
					want += 2 + 2
				}
				for li := range p.ACLs {
					l := &p.ACLs[li]
					users := 0
					for j := range p.Tiers {
						if p.Tiers[j].ACL == l.Name {
							users++
						}
					}
					if users == 0 {
						continue
					}
					for _, ru := range l.Rules {
						var pf []string
						for _, x := range ru.Match.Prefixes {
							pf = append(pf, x.String())
						}
						want += ruleCount(users, len(remotes(pf)), len(masks(&ru.Match)))
					}
				}
				// Security groups: one rule's flows per VPC with members;
				// clause flows equal to another rule's counted once.
				keys := map[string]bool{}
				for gi := range bp.SecurityGroups {
					g := &bp.SecurityGroups[gi]
					var locals []string
					for _, a := range model.GroupMembers(p, gi) {
						locals = append(locals, a.String())
					}
					if len(locals) == 0 {
						continue
					}
					for d, rules := range [][]SGRule{g.Egress, g.Ingress} {
						for i, ru := range rules {
							var pf []string
							for _, x := range ru.Match.Prefixes {
								pf = append(pf, x.String())
							}
							for _, ref := range ru.GroupRefs {
								for _, a := range model.GroupMembers(p, ref) {
									pf = append(pf, a.String()+"/32")
								}
							}
							if len(pf) == 0 {
								continue
							}
							dims := [][]string{locals, remotes(pf), masks(&ru.Match)}
							multi, single := 0, ru.Match.ProtoString()
							for k, dim := range dims {
								if len(dim) > 1 {
									multi++
								} else if dim[0] != "any" { // "any" adds no match field
									single += fmt.Sprintf("|%d=%s", k, dim[0])
								}
							}
							if multi < 2 {
								for _, a := range dims[0] {
									for _, b := range dims[1] {
										for _, c := range dims[2] {
											keys[fmt.Sprintf("plain %d %s %s %s %s", d, ru.Match.ProtoString(), a, b, c)] = true
										}
									}
								}
								continue
							}
							keys[fmt.Sprintf("conj %s %d %d", g.Name, d, i)] = true
							for k, dim := range dims {
								if len(dim) > 1 {
									for _, a := range dim {
										keys[fmt.Sprintf("clause %d %s %d %s", d, single, k, a)] = true
									}
								}
							}
						}
					}
				}
				want += len(keys)
				for j := range p.Tiers {
					for k := range p.Tiers[j].VMs {
						vm := &p.Tiers[j].VMs[k]
						if vm.IsRouter() || len(vm.SecurityGroups) == 0 {
							continue
						}
						want++
						if hasEgressRules(bp, vm) {
							want++
						}
					}
				}
			}
			if got != want {
				t.Errorf("%s/%s: %d policy-table flows, formula %d", bp.Source, h.Name, got, want)
			}
		}
	}
}

// TestPolicyConjunctionAdditive: a rule that references a 500-member group
// compiles to members + remote + port masks + 1 flows (a conjunction), not
// their product.
func TestPolicyConjunctionAdditive(t *testing.T) {
	bp := &Blueprint{Version: 1, Revision: 1, Encapsulation: EncapVXLAN, Controllers: []string{"tcp:192.0.2.250:6653"}}
	bp.Management.CIDRs = []string{"192.0.2.0/24"}
	for i := 0; i < 2; i++ {
		bp.Hosts = append(bp.Hosts, Host{Name: fmt.Sprintf("h%d", i+1), DatapathID: fmt.Sprintf("%016x", 0xa0+i), Uplink: "eth0", TunnelIP: fmt.Sprintf("192.0.2.%d", 10+i)})
	}
	web := Tier{Name: "web", VNI: 5001, CIDR: "10.1.0.0/22"}
	for k := 0; k < 500; k++ {
		web.VMs = append(web.VMs, VM{Name: fmt.Sprintf("web-%d", k), Host: bp.Hosts[k%2].Name, Port: fmt.Sprintf("vnet%d", k),
			MAC: fmt.Sprintf("52:54:00:01:%02x:%02x", k/256, k%256), IP: fmt.Sprintf("10.1.%d.%d", k/250, 2+k%250), SecurityGroups: []string{"web-sg"}})
	}
	db := Tier{Name: "db", VNI: 5002, CIDR: "10.2.0.0/24"}
	for k := 0; k < 2; k++ {
		db.VMs = append(db.VMs, VM{Name: fmt.Sprintf("db-%d", k), Host: "h1", Port: fmt.Sprintf("vdb%d", k),
			MAC: fmt.Sprintf("52:54:00:02:00:%02x", k), IP: fmt.Sprintf("10.2.0.%d", 10+k), SecurityGroups: []string{"db-sg"}})
	}
	bp.VPCs = []VPC{{Name: "blue", Routing: RoutingDistributed, Tiers: []Tier{web, db}}}
	bp.VPCs[0].Tiers[0].Gateway, bp.VPCs[0].Tiers[1].Gateway = "10.1.0.1", "10.2.0.1"
	bp.SecurityGroups = []SecurityGroup{
		{Name: "web-sg", Ingress: []SGRule{{Protocol: "tcp", Ports: "80", CIDRs: []string{"0.0.0.0/0"}}}},
		{Name: "db-sg", Ingress: []SGRule{{Protocol: "tcp", Ports: "5432", Groups: []string{"web-sg"}}, {Protocol: "tcp", Ports: "7000-7010", Groups: []string{"web-sg"}}}},
	}
	bp = reparsePolicy(t, bp, 0)
	fs, err := Compile(bp, "h1")
	if err != nil {
		t.Fatal(err)
	}
	count := func(i int) int {
		n := 0
		for _, f := range fs {
			if f.Cookie.Category() == CatSGRule && f.Cookie.Object() == SGRuleObject("db-sg", DirIngress, i) {
				n++
			}
		}
		return n
	}
	masks := len(PortRange{7000, 7010}.Prefixes())
	if got, want := count(0), 2+500+1; got != want {
		t.Errorf("db-sg ingress[0] (5432 from a 500-member group, 2 members): %d flows, want %d (product would be %d)", got, want, 2*500)
	}
	if got, want := count(1), 2+500+masks+1; got != want {
		t.Errorf("db-sg ingress[1] (7000-7010 from a 500-member group): %d flows, want %d (product would be %d)", got, want, 2*500*masks)
	}
	t.Logf("a 500-member group reference: %d and %d flows for two rules (products: %d, %d)", count(0), count(1), 2*500, 2*500*masks)
	// And it still decides as the model does.
	c, err := NewCloud(bp)
	if err != nil {
		t.Fatal(err)
	}
	c.EnableConntrack()
	model := NewPolicyModel(bp)
	w, _ := bp.testVM("web-321")
	d, _ := bp.testVM("db-1")
	for _, port := range []uint16{5432, 5433, 7000, 7010, 7011, 80} {
		conn := Conn{Proto: ProtoTCP, Src: w.Addr, Dst: d.Addr, SrcPort: 40000, DstPort: port}
		j := c.Trace(w.Host, policyPacket(&bp.VPCs[0].Tiers[0], w, d, conn))
		if got, want := deliveredTo(j.Arrivals, d), model.Judge(&bp.VPCs[0], conn, ConnNew).Allowed; got != want {
			t.Errorf("%s: delivered %v, model %v", conn, got, want)
		}
	}
}

// TestIncrementalPolicy: the segment property (checkIncremental) under
// policy changes: rules removed or flipped, a tier's ACL swapped, a VM's
// groups changed (group membership moves the remote side of every rule
// that references the group), plus the generic blueprint edits.
func TestIncrementalPolicy(t *testing.T) {
	runs := 0
	for n := 0; n < 80; n++ {
		r := rand.New(rand.NewSource(int64(5000 + n)))
		old := genPolicyBlueprint(t, r, n)
		var cur *Blueprint
		what := "policy change"
		if n%3 == 2 {
			cur, what = mutateBlueprint(t, r, old, n)
		} else {
			cur = mutatePolicy(t, r, old, n)
		}
		runs += checkIncremental(t, old, cur, n, what)
	}
	if runs == 0 {
		t.Fatal("no incremental compile was checked")
	}
}
