package flows

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
	"sync"
)

// Compiling network ACLs and security groups (docs/policy.md, "Compile").
//
// A policy VM is a guest NIC (not a router NIC) that has security groups
// or sits in a tier with an ACL. Its IPv4 traffic is judged at two points
// on its own host, both in its tier's conntrack zone (PolicyZone):
//
//	from the VM  vm_egress -> policy_out: ct(zone, table=policy_state)
//	to the VM    l2_forward/route -> policy_in: ct(zone, table=policy_state)
//
// policy_state drops invalid packets, passes related ones, and loads the
// connection's ORIGINAL direction into registers (a reply's addresses and
// ports swapped back), so one set of check tables judges new packets,
// later packets and replies alike. A packet passes only while the rules
// allow its connection: revoking a rule cuts established connections at
// the next packet, both ways (docs/policy.md, Revocation). The checks run
// in path order, each on the whole path of the connection inside the VPC
// (source VM's groups, source tier's ACL, destination tier's ACL,
// destination VM's groups), so either point decides the same as the model
// (PolicyModel.Judge). policy_commit commits new connections and sends the
// packet on: from a VM to mgmt_guard, to a VM to its port.
//
// Flows per host with a policy VM of VPC V: the check flows of all of V
// (any VM of V may be the other end), the plumbing per local policy tier
// and VM. Rules compile to remote prefixes x port masks (docs/policy.md,
// flow-count formula; TestPolicyFlowCount).

// Priorities in the check tables.
const (
	prioPolExempt  = 40000 // not judged: inside the tier, to/from the router
	prioPolRuleTop = 35000 // an ACL rule: prioPolRuleTop - number
	prioPolSGRule  = 2000  // a security-group rule (allow-only: order is irrelevant)
	prioPolDefault = 1000  // a list's or a VM's no-match verdict
	prioPolVPCPass = 10    // nothing of this check applies to the connection
)

// Values of RegPolPoint.
const (
	PointFromVM = 1
	PointToVM   = 2
)

// PolicyZone is tier t's conntrack zone: the low 16 bits of its key
// (validation refuses two policy tiers with the same zone, and zone 0).
func PolicyZone(t *Tier) uint16 { return uint16(t.Key) }

// IsPolicyVM reports whether vm's IPv4 traffic is judged: a guest NIC with
// security groups or in a tier with an ACL.
func IsPolicyVM(t *Tier, vm *VM) bool {
	return !vm.IsRouter() && (len(vm.SecurityGroups) > 0 || t.ACL != "")
}

// policyIndex is what the policy compile needs, computed once per Index.
type policyIndex struct {
	tierPolicy map[uint32]bool   // tier key -> has a policy VM
	hostVPCs   map[string][]*VPC // host -> VPCs with a local policy VM, blueprint order
	vpcFP      map[*VPC]uint64
	model      *PolicyModel

	mu    sync.Mutex
	cache map[polKey]*vpcPolicyFlows
}

func newPolicyIndex(bp *Blueprint) *policyIndex {
	pi := &policyIndex{tierPolicy: map[uint32]bool{}, hostVPCs: map[string][]*VPC{}, vpcFP: map[*VPC]uint64{},
		cache: map[polKey]*vpcPolicyFlows{}}
	if !bp.UsesPolicy() {
		return pi
	}
	pi.model = NewPolicyModel(bp)
	var sgfp fingerprint
	for _, g := range canonSGs(bp.SecurityGroups) {
		sgfp.str(g.Name)
		for _, rs := range [][]canonRule{g.Ingress, g.Egress} {
			sgfp.str("dir")
			for _, r := range rs {
				fpRule(&sgfp, r)
			}
		}
	}
	for i := range bp.VPCs {
		p := &bp.VPCs[i]
		var f fingerprint
		f.u64(sgfp.sum())
		f.str(p.Name)
		f.u64(uint64(p.ID))
		for _, l := range canonACLs(p.ACLs) {
			f.str(l.Name)
			for _, r := range l.Rules {
				fpRule(&f, r)
			}
		}
		for j := range p.Tiers {
			t := &p.Tiers[j]
			f.str(t.Name)
			f.u64(uint64(t.Key))
			f.str(t.Prefix.String())
			f.str(t.ACL)
			f.bool(t.HasGateway)
			f.u64(addrValue(t.GatewayAddr))
			for k := range t.VMs {
				vm := &t.VMs[k]
				f.str(vm.Name)
				f.u64(IPValue(vm.Addr))
				f.str(vm.Role)
				for _, g := range vm.SecurityGroups {
					f.str(g)
				}
				f.str("|")
				if IsPolicyVM(t, vm) {
					pi.tierPolicy[t.Key] = true
					if !containsVPC(pi.hostVPCs[vm.Host], p) {
						pi.hostVPCs[vm.Host] = append(pi.hostVPCs[vm.Host], p)
					}
				}
			}
		}
		pi.vpcFP[p] = f.sum()
	}
	return pi
}

func fpRule(f *fingerprint, r canonRule) {
	f.u64(uint64(r.Number))
	f.str(r.Action)
	f.str(r.Direction)
	f.str(r.Protocol)
	f.str(r.Ports)
	f.bool(r.ICMPSet)
	for _, p := range []*int{r.ICMPType, r.ICMPCode} {
		if p == nil {
			f.u64(1 << 40)
		} else {
			f.u64(uint64(int64(*p)))
		}
	}
	for _, c := range r.CIDRs {
		f.str(c)
	}
	f.str("g")
	for _, g := range r.Groups {
		f.str(g)
	}
}

// policyHostSegment: the plumbing every host with a policy VM carries
// once: conntrack state handling and the commit of connections judged
// from a VM.
func (b *builder) policyHostSegment() {
	pass := func(cookieObj uint32) Cookie { return MakeCookie(CatPolicyPass, cookieObj, 0) }
	b.add(Flow{Table: TPolState, Priority: 300, Cookie: MakeCookie(CatCtInvalid, 0, 0),
		Match: ipMatch(CtStateMatch(CtTrk|CtInv, 0)),
		Note:  "conntrack: invalid packet (e.g. TCP outside its window): dropped and counted"})
	b.add(Flow{Table: TPolState, Priority: 250, Cookie: pass(0),
		Match: ipMatch(CtStateMatch(CtTrk|CtRel, CtInv)), Goto: TPolCommit,
		Note: "conntrack: related to an allowed connection (e.g. an ICMP error): passes"})
	l4 := []struct {
		proto    uint8
		src, dst Field
	}{{ProtoTCP, FTCPSrc, FTCPDst}, {ProtoUDP, FUDPSrc, FUDPDst}}
	for _, rpl := range []bool{false, true} {
		st, prio, dir := CtStateMatch(CtTrk, CtInv|CtRel|CtRpl), uint16(100), "original direction"
		addrs := []Action{Move{Src: FIPv4Src, Dst: RegPolSrc, NBits: 32}, Move{Src: FIPv4Dst, Dst: RegPolDst, NBits: 32}}
		if rpl {
			st, prio, dir = CtStateMatch(CtTrk|CtRpl, CtInv|CtRel), 200, "reply direction: judged as its connection's original direction"
			addrs = []Action{Move{Src: FIPv4Dst, Dst: RegPolSrc, NBits: 32}, Move{Src: FIPv4Src, Dst: RegPolDst, NBits: 32}}
		}
		for _, x := range l4 {
			port := x.dst
			if rpl {
				port = x.src
			}
			acts := append(append([]Action(nil), addrs...), SetField{RegPolL4, 0}, Move{Src: port, Dst: RegPolL4, NBits: 16})
			b.add(Flow{Table: TPolState, Priority: prio, Cookie: pass(0),
				Match: ipMatch(st, exact(FIPProto, uint64(x.proto))), Actions: acts, Goto: TSGOut,
				Note: b.notef("%s, proto %d: addresses and destination port into reg4..reg6", dir, x.proto)})
		}
		if !rpl {
			acts := append(append([]Action(nil), addrs...), SetField{RegPolL4, 0},
				Move{Src: FICMPType, Dst: RegPolL4, NBits: 8}, Move{Src: FICMPCode, Dst: RegPolL4, NBits: 8, DstOfs: 8})
			b.add(Flow{Table: TPolState, Priority: prio, Cookie: pass(0),
				Match: ipMatch(st, exact(FIPProto, ProtoICMP)), Actions: acts, Goto: TSGOut,
				Note: "original direction, icmp: addresses, type and code into reg4..reg6"})
		} else {
			// The replies conntrack tracks, judged as their requests.
			for _, q := range []struct{ reply, request uint64 }{{0, 8}, {14, 13}, {16, 15}, {18, 17}} {
				acts := append(append([]Action(nil), addrs...), SetField{RegPolL4, q.request})
				b.add(Flow{Table: TPolState, Priority: prio + 10, Cookie: pass(0),
					Match: ipMatch(st, exact(FIPProto, ProtoICMP), exact(FICMPType, q.reply)), Actions: acts, Goto: TSGOut,
					Note: b.notef("reply direction, icmp type %d: judged as its request, type %d code 0", q.reply, q.request)})
			}
		}
		acts := append(append([]Action(nil), addrs...), SetField{RegPolL4, 0})
		b.add(Flow{Table: TPolState, Priority: prio - 50, Cookie: pass(0),
			Match: ipMatch(st), Actions: acts, Goto: TSGOut,
			Note: b.notef("%s, other protocols: addresses into reg4, reg5", dir)})
	}
	b.add(Flow{Table: TPolCommit, Priority: 100, Cookie: pass(0),
		Match: ipMatch(exact(RegPolPoint, PointFromVM), CtStateMatch(CtTrk, CtNew)), Goto: TMgmtGuard,
		Note: "from a VM, a later packet of an allowed connection: on to management separation"})
}

// policyTierFlows: the plumbing of local tier t with a policy VM: the
// conntrack entry at both points and the commit from a VM.
func (b *builder) policyTierFlows(t TierRef) {
	key, zone := uint64(t.Tier.Key), PolicyZone(t.Tier)
	who := b.notef("tier %s/%s (zone %d)", t.VPC.Name, t.Tier.Name, zone)
	setup := func(point uint64) []Action {
		return []Action{SetField{RegPolVPC, uint64(t.VPC.ID)}, SetField{RegPolPoint, point}, CT{Zone: zone, Table: TPolState}}
	}
	c := MakeCookie(CatPolicyPass, t.Tier.Key, 0)
	b.add(Flow{Table: TPolOut, Priority: 100, Cookie: c,
		Match: ipMatch(exact(RegTier, key), exact(RegOrigin, OriginVM)), Actions: setup(PointFromVM),
		Note: b.notef("from a policy VM of %s: into conntrack", who)})
	b.add(Flow{Table: TPolIn, Priority: 100, Cookie: c,
		Match: ipMatch(exact(RegTier, key)), Actions: setup(PointToVM),
		Note: b.notef("to a policy VM of %s: into conntrack", who)})
	b.add(Flow{Table: TPolCommit, Priority: 200, Cookie: c,
		Match:   ipMatch(exact(RegPolPoint, PointFromVM), exact(RegTier, key), CtStateMatch(CtTrk|CtNew, 0)),
		Actions: []Action{CT{Commit: true, Zone: zone, Table: NoGoto}}, Goto: TMgmtGuard,
		Note: b.notef("from a VM of %s, a new connection every check allowed: committed, on to management separation", who)})
}

// policyVMFlows: a local policy VM's delivery after the checks (to its
// port, committing a new connection) and its L2 entry into policy_in.
func (b *builder) policyVMFlows(r VMRef) {
	key, zone, mac := uint64(r.Tier.Key), PolicyZone(r.Tier), MACValue(r.VM.HW)
	c := MakeCookie(CatPolicyPass, VMObject(r.VM.Name), 0)
	b.add(Flow{Table: TPolCommit, Priority: 200, Cookie: c,
		Match:   ipMatch(exact(RegPolPoint, PointToVM), exact(RegTier, key), exact(FEthDst, mac), CtStateMatch(CtTrk|CtNew, 0)),
		Actions: []Action{CT{Commit: true, Zone: zone, Table: NoGoto}, Output{Port: r.VM.Port}},
		Note:    b.notef("to VM %s, a new connection every check allowed: committed, to port %s", r.VM.Name, r.VM.Port)})
	b.add(Flow{Table: TPolCommit, Priority: 150, Cookie: c,
		Match:   ipMatch(exact(RegPolPoint, PointToVM), exact(RegTier, key), exact(FEthDst, mac)),
		Actions: []Action{Output{Port: r.VM.Port}},
		Note:    b.notef("to VM %s, a later packet of an allowed connection (or a related one): to port %s", r.VM.Name, r.VM.Port)})
	b.add(Flow{Table: TL2Forward, Priority: 210, Cookie: MakeCookie(CatVPCForward, VMObject(r.VM.Name), 0),
		Match: ipMatch(exact(RegTier, key), exact(FEthDst, mac)), Goto: TPolIn,
		Note: b.notef("IPv4 to policy VM %s (%s): judged before its port", r.VM.Name, r.VM.HW)})
}

// policyVPCSegment: the check flows of VPC p (every host with a local
// policy VM of p carries them).
func (b *builder) policyVPCSegment(ix *Index, p *VPC) {
	sh := ix.pol.shared(ix, p, b.opts)
	b.errs = append(b.errs, sh.errs...)
	b.flows = append(b.flows, sh.flows...)
}

// vpcPolicyFlows holds a VPC's check flows, identical on every host that
// carries them: built once per index and options, shared read-only.
type vpcPolicyFlows struct {
	once  sync.Once
	flows []Flow
	errs  []error
}

type polKey struct {
	vpc  *VPC
	opts CompileOptions
}

func (pi *policyIndex) shared(ix *Index, p *VPC, opts CompileOptions) *vpcPolicyFlows {
	pi.mu.Lock()
	sh := pi.cache[polKey{p, opts}]
	if sh == nil {
		sh = &vpcPolicyFlows{}
		pi.cache[polKey{p, opts}] = sh
	}
	pi.mu.Unlock()
	sh.once.Do(func() {
		b := &builder{rev: ix.bp.Revision, opts: opts}
		b.buildVPCPolicy(ix, p)
		sh.flows, sh.errs = b.flows, b.errs
	})
	return sh
}

func (b *builder) buildVPCPolicy(ix *Index, p *VPC) {
	pi := ix.pol
	vpc := exact(RegPolVPC, uint64(p.ID))
	c0 := MakeCookie(CatPolicyPass, p.ID, 0)
	for _, tb := range []TableID{TSGOut, TACLOut, TACLIn, TSGIn} {
		b.add(Flow{Table: tb, Priority: prioPolVPCPass, Cookie: c0, Match: ipMatch(vpc), Goto: rulePass(tb),
			Note: b.notef("vpc %s: no %s check applies", p.Name, TableName(tb))})
	}
	// Not judged by ACLs: the router's own addresses (VR NICs, distributed gateways).
	var routers []netip.Addr
	for j := range p.Tiers {
		t := &p.Tiers[j]
		if t.HasGateway && t.GatewayAddr.IsValid() {
			routers = append(routers, t.GatewayAddr)
		}
		for k := range t.VMs {
			if t.VMs[k].IsRouter() {
				routers = append(routers, t.VMs[k].Addr)
			}
		}
	}
	sort.Slice(routers, func(i, j int) bool { return routers[i].Less(routers[j]) })
	routers = slices.Compact(routers)
	for _, tb := range []TableID{TACLOut, TACLIn} {
		for _, a := range routers {
			for _, f := range []Field{RegPolSrc, RegPolDst} {
				b.add(Flow{Table: tb, Priority: prioPolExempt, Cookie: c0,
					Match: ipMatch(vpc, exact(f, ipv4(a))), Goto: tb + 1,
					Note: b.notef("vpc %s: to or from the router's address %s: not judged by an ACL", p.Name, a)})
			}
		}
	}
	for j := range p.Tiers {
		t := &p.Tiers[j]
		if t.ACL == "" {
			continue
		}
		b.aclTier(p, t)
	}
	acl := &builder{rev: b.rev, opts: b.opts}
	for li := range p.ACLs {
		acl.aclListRules(p, &p.ACLs[li])
	}
	b.errs = append(b.errs, acl.errs...)
	if merged, err := mergeClauses(acl.flows); err != nil {
		b.errs = append(b.errs, err)
	} else {
		b.flows = append(b.flows, merged...)
	}
	// Rules: clause flows identical to another rule's are merged.
	sub := &builder{rev: b.rev, opts: b.opts}
	sub.sgRules(ix.bp, pi.model, p)
	b.errs = append(b.errs, sub.errs...)
	merged, err := mergeClauses(sub.flows)
	if err != nil {
		b.errs = append(b.errs, err)
	}
	b.flows = append(b.flows, merged...)
}

// mergeClauses merges flows with the same table, priority and match (the
// switch would keep only one): conjunction clauses of several rules become
// one flow carrying every rule's conjunction action; identical plain flows
// become one. Anything else is a compile error.
func mergeClauses(fs []Flow) ([]Flow, error) {
	idx := map[string]int{}
	out := fs[:0:0]
	for _, f := range fs {
		k := fmt.Sprintf("%d|%d|%s", f.Table, f.Priority, f.Match.String())
		i, dup := idx[k]
		if !dup {
			idx[k] = len(out)
			out = append(out, f)
			continue
		}
		g := &out[i]
		switch {
		case g.Goto == f.Goto && g.ActionsString() == f.ActionsString():
			// the same flow twice (two rules with one match)
		case len(conjunctions(g)) == len(g.Actions) && len(conjunctions(&f)) == len(f.Actions) && g.Goto == NoGoto && f.Goto == NoGoto:
			acts := append([]Action(nil), g.Actions...)
			for _, a := range f.Actions {
				if !slices.Contains(acts, a) {
					acts = append(acts, a)
				}
			}
			g.Actions = acts
			if g.Note != "" {
				g.Note += "; " + f.Note
			}
		default:
			return nil, fmt.Errorf("policy flows conflict at table %s priority %d, %s: %s vs %s", TableName(f.Table), f.Priority, f.Match.String(), g.ActionsString(), f.ActionsString())
		}
	}
	// A conj_id appears once per table.
	ids := map[string]bool{}
	for i := range out {
		if v, ok := out[i].Match.Get(FConjID); ok {
			k := fmt.Sprintf("%d|%d", out[i].Table, v.Value)
			if ids[k] {
				return nil, fmt.Errorf("conjunction id %d used twice in table %s (two rules' keys collide): rename a group", v.Value, TableName(out[i].Table))
			}
			ids[k] = true
		}
	}
	return out, nil
}

// aclTier: tier t's ACL in both directions: inside the tier not judged,
// then the rules by number, then the list's no-match verdict.
func (b *builder) aclTier(p *VPC, t *Tier) {
	vpc := exact(RegPolVPC, uint64(p.ID))
	val, m := PrefixMask(t.Prefix)
	for _, dir := range []string{DirEgress, DirIngress} {
		tb, local, remote := TACLOut, RegPolSrc, RegPolDst
		if dir == DirIngress {
			tb, local, remote = TACLIn, RegPolDst, RegPolSrc
		}
		in := masked(local, val, m)
		b.add(Flow{Table: tb, Priority: prioPolExempt, Cookie: MakeCookie(CatPolicyPass, t.Key, 0),
			Match: ipMatch(vpc, in, masked(remote, val, m)), Goto: tb + 1,
			Note: b.notef("tier %s/%s: traffic inside the tier is not judged by its ACL", p.Name, t.Name)})
		switch t.ACL {
		case ACLDefaultAllow, ACLDefaultDeny:
			n := 1
			if dir == DirEgress {
				n = 2
			}
			f := Flow{Table: tb, Priority: prioPolDefault, Cookie: MakeCookie(CatACLRule, ACLRuleObject(p.Name, t.ACL, n), 0),
				Match: ipMatch(vpc, in),
				Note:  b.notef("%s (tier %s/%s, %s): %s all", ACLRuleName(p, t.ACL, n), p.Name, t.Name, dir, map[bool]string{true: "allow", false: "deny"}[t.ACL == ACLDefaultAllow])}
			if t.ACL == ACLDefaultAllow {
				f.Goto = tb + 1
			}
			b.add(f)
			continue
		}
		l := p.ACLByName(t.ACL)
		f := Flow{Table: tb, Priority: prioPolDefault, Cookie: MakeCookie(CatACLDefault, ACLDefaultObject(p.Name, l.Name, dir), 0),
			Match: ipMatch(vpc, in)}
		if dir == DirEgress {
			f.Goto = tb + 1
			f.Note = b.notef("acl %s/%s (tier %s): no egress rule matched: allowed", p.Name, l.Name, t.Name)
		} else {
			f.Note = b.notef("acl %s/%s (tier %s): no ingress rule matched: denied", p.Name, l.Name, t.Name)
		}
		b.add(f)
	}
}

// aclListRules: the rules of list l, once for every tier of p that uses
// it (the tiers' prefixes are the rule's local dimension).
func (b *builder) aclListRules(p *VPC, l *ACLList) {
	vpc := exact(RegPolVPC, uint64(p.ID))
	for _, dir := range []string{DirEgress, DirIngress} {
		tb, local, remote := TACLOut, RegPolSrc, RegPolDst
		if dir == DirIngress {
			tb, local, remote = TACLIn, RegPolDst, RegPolSrc
		}
		var locals [][]MatchField
		var names []string
		for j := range p.Tiers {
			t := &p.Tiers[j]
			if t.ACL == l.Name {
				val, m := PrefixMask(t.Prefix)
				locals = append(locals, []MatchField{masked(local, val, m)})
				names = append(names, t.Name)
			}
		}
		if len(locals) == 0 {
			continue
		}
		for _, r := range sortedRules(l, dir) {
			act := rulePass(tb)
			if r.Action != ActionAllow {
				act = NoGoto
			}
			name := ACLRuleName(p, l.Name, r.Number)
			b.ruleFlows(tb, uint16(prioPolRuleTop-r.Number), MakeCookie(CatACLRule, ACLRuleObject(p.Name, l.Name, r.Number), 0), act,
				b.notef("%s (tiers %v): %s %s %s", name, names, r.Action, dir, r.Match.String()),
				fmt.Sprintf("acl %s/%s#%d %s", p.Name, l.Name, r.Number, dir),
				protoMatch(&r.Match), [][]MatchField{{vpc}}, locals, remoteAlts(remote, r.Match.Prefixes), l4Alts(&r.Match))
		}
	}
}

// sgRules: the rules of every security group that has members in VPC p,
// one conjunction per rule (members x remote addresses x port masks, each a
// clause), and each member VM's no-match drop.
func (b *builder) sgRules(bp *Blueprint, model *PolicyModel, p *VPC) {
	vpc := exact(RegPolVPC, uint64(p.ID))
	for gi := range bp.SecurityGroups {
		g := &bp.SecurityGroups[gi]
		members := model.GroupMembers(p, gi)
		if len(members) == 0 {
			continue
		}
		for _, dir := range []string{DirEgress, DirIngress} {
			tb, local, remote := TSGOut, RegPolSrc, RegPolDst
			rules := g.Egress
			if dir == DirIngress {
				tb, local, remote, rules = TSGIn, RegPolDst, RegPolSrc, g.Ingress
			}
			var locals [][]MatchField
			for _, a := range members {
				locals = append(locals, []MatchField{exact(local, ipv4(a))})
			}
			for i := range rules {
				r := &rules[i]
				pfx := append([]netip.Prefix(nil), r.Match.Prefixes...)
				for _, ref := range r.GroupRefs {
					for _, a := range model.GroupMembers(p, ref) {
						pfx = append(pfx, netip.PrefixFrom(a, 32))
					}
				}
				if len(pfx) == 0 {
					continue // a reference to an empty group matches nothing
				}
				b.ruleFlows(tb, prioPolSGRule, MakeCookie(CatSGRule, SGRuleObject(g.Name, dir, i), 0), rulePass(tb),
					b.notef("%s (vpc %s): allow %s %s", SGRuleName(g.Name, dir, i), p.Name, dir, r.Match.String()),
					fmt.Sprintf("sg %s %s[%d] vpc %s", g.Name, dir, i, p.Name),
					protoMatch(&r.Match), [][]MatchField{{vpc}}, locals, remoteAlts(remote, pfx), l4Alts(&r.Match))
			}
		}
	}
	for j := range p.Tiers {
		t := &p.Tiers[j]
		for k := range t.VMs {
			vm := &t.VMs[k]
			if vm.IsRouter() || len(vm.SecurityGroups) == 0 {
				continue
			}
			for _, dir := range []string{DirEgress, DirIngress} {
				tb, local := TSGOut, RegPolSrc
				if dir == DirIngress {
					tb, local = TSGIn, RegPolDst
				}
				if dir == DirEgress && !hasEgressRules(bp, vm) {
					continue
				}
				b.add(Flow{Table: tb, Priority: prioPolDefault, Cookie: MakeCookie(CatSGDefault, VMObject(vm.Name), 0),
					Match: ipMatch(vpc, exact(local, ipv4(vm.Addr))),
					Note:  b.notef("VM %s: no %s rule of its security groups allows it: denied", vm.Name, dir)})
			}
		}
	}
}

func hasEgressRules(bp *Blueprint, vm *VM) bool {
	for _, n := range vm.SecurityGroups {
		if g := bp.SecurityGroupByName(n); g != nil && len(g.Egress) > 0 {
			return true
		}
	}
	return false
}

// rulePass is where an allowing check goes next.
func rulePass(tb TableID) TableID {
	if tb == TSGIn {
		return TPolCommit
	}
	return tb + 1
}

func protoMatch(m *TrafficMatch) []MatchField {
	out := []MatchField{exact(FEthType, EthIPv4)}
	if !m.AnyProto {
		out = append(out, exact(FIPProto, uint64(m.Proto)))
	}
	return out
}

// remoteAlts: one alternative per remote prefix (none for 0.0.0.0/0).
func remoteAlts(remote Field, pfx []netip.Prefix) [][]MatchField {
	var out [][]MatchField
	for _, p := range pfx {
		val, mk := PrefixMask(p)
		if mk == 0 {
			return [][]MatchField{{}} // any address: the dimension vanishes
		}
		out = append(out, []MatchField{masked(remote, val, mk)})
	}
	return out
}

// l4Alts: one alternative per port mask or the ICMP type/code (none when
// the rule has no port or ICMP restriction).
func l4Alts(m *TrafficMatch) [][]MatchField {
	switch {
	case m.HasPorts():
		if m.Ports == AllPorts {
			return [][]MatchField{{}}
		}
		var out [][]MatchField
		for _, pm := range m.Ports.Prefixes() {
			out = append(out, []MatchField{masked(RegPolL4, uint64(pm.Value), uint64(pm.Mask)|0xffff0000)})
		}
		return out
	case !m.AnyProto && m.Proto == ProtoICMP && m.ICMPType >= 0:
		v, mk := uint64(m.ICMPType), uint64(0xff)
		if m.ICMPCode >= 0 {
			v, mk = v|uint64(m.ICMPCode)<<8, 0xffff
		}
		return [][]MatchField{{masked(RegPolL4, v, mk)}}
	}
	return [][]MatchField{{}}
}

// ruleFlows emits one rule: the common match (proto) and its dimensions,
// each a list of alternatives. Dimensions with one alternative join every
// flow; with two or more such dimensions the rule is a conjunction (one
// clause per dimension, flows = sum of alternatives + 1, not their
// product), its conj_id flow doing the action (next is NoGoto: drop).
// Clause flows identical to another rule's are merged by mergeClauses.
func (b *builder) ruleFlows(tb TableID, prio uint16, c Cookie, next TableID, note, conjKey string, proto []MatchField, dims ...[][]MatchField) {
	common := append([]MatchField(nil), proto...)
	var multi [][][]MatchField
	for _, d := range dims {
		if len(d) == 1 {
			common = append(common, d[0]...)
		} else {
			multi = append(multi, d)
		}
	}
	flow := func(m []MatchField) Flow {
		return Flow{Table: tb, Priority: prio, Cookie: c, Match: match(m...), Goto: next, Note: note}
	}
	plain := func(m []MatchField) {
		f := flow(m)
		if tb == TSGOut || tb == TSGIn {
			// Plain allows one above the conjunctions of the same table:
			// the switch then never has to choose between a hard and a
			// soft match at one priority.
			f.Priority++
		}
		b.add(f)
	}
	switch len(multi) {
	case 0:
		plain(common)
		return
	case 1:
		for _, alt := range multi[0] {
			plain(append(append([]MatchField(nil), common...), alt...))
		}
		return
	}
	id := conjIDOf(conjKey)
	for k, d := range multi {
		for _, alt := range d {
			b.add(Flow{Table: tb, Priority: prio, Cookie: c, Match: match(append(append([]MatchField(nil), common...), alt...)...),
				Actions: []Action{Conjunction{ID: id, Clause: uint8(k + 1), NClauses: uint8(len(multi))}},
				Note:    b.notef("%s: clause %d/%d", note, k+1, len(multi))})
		}
	}
	b.add(Flow{Table: tb, Priority: prio, Cookie: c, Match: match(exact(FConjID, uint64(id))), Goto: next,
		Note: b.notef("%s: all %d clauses matched", note, len(multi))})
}

// conjIDOf is a rule's conjunction id: FNV-1a of its key, never the
// trusted-peer id (a collision within a table is refused by
// checkConjIDs).
func conjIDOf(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	v := h.Sum32()
	if v <= conjTrustedPeers {
		v += 2
	}
	return v
}

// floodSplit adds, for a tier with local security-group VMs, the IPv4
// broadcast/multicast flows that keep those VMs out (an L2 broadcast
// frame may carry unicast IPv4 to them, which their security groups must
// judge), except DHCP server replies: m is the flood flow's match, all
// its actions, noSG the same without the security-group VMs' ports.
func (b *builder) floodSplit(t TierRef, m Match, all, noSG []Action, why string) {
	c := MakeCookie(CatFlood, t.Tier.Key, 0)
	b.add(Flow{Table: TL2Forward, Priority: 120, Cookie: c,
		Match: match(append(append([]MatchField(nil), m...), exact(FEthType, EthIPv4), exact(FIPProto, ProtoUDP), exact(FUDPSrc, 67), exact(FUDPDst, 68))...), Actions: all,
		Note: b.notef("DHCP server replies broadcast %s in tier %s/%s: to every port, security-group VMs too", why, t.VPC.Name, t.Tier.Name)})
	b.add(Flow{Table: TL2Forward, Priority: 110, Cookie: c,
		Match: match(append(append([]MatchField(nil), m...), exact(FEthType, EthIPv4))...), Actions: noSG,
		Note: b.notef("IPv4 broadcast/multicast %s in tier %s/%s: not to security-group VMs (their groups judge unicast only)", why, t.VPC.Name, t.Tier.Name)})
}

// withoutSGPorts returns acts without the outputs to local
// security-group VMs of tier t.
func withoutSGPorts(v *hostView, t TierRef, acts []Action) ([]Action, bool) {
	sg := map[string]bool{}
	for _, r := range v.tierVMs(t.Tier.Key) {
		if r.VM.Host == v.host.Name && !r.VM.IsRouter() && len(r.VM.SecurityGroups) > 0 {
			sg[r.VM.Port] = true
		}
	}
	if len(sg) == 0 {
		return acts, false
	}
	out := make([]Action, 0, len(acts))
	for _, a := range acts {
		if o, ok := a.(Output); ok && sg[o.Port] {
			continue
		}
		out = append(out, a)
	}
	return out, true
}

// hasLocalPolicyVM reports whether tier t has a policy VM on this host.
func (v *hostView) hasLocalPolicyVM(t TierRef) bool {
	for _, r := range v.local {
		if r.Tier == t.Tier && IsPolicyVM(r.Tier, r.VM) {
			return true
		}
	}
	return false
}
