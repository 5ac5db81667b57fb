package flows

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"sync"
)

// A host's flows are compiled in segments, each a pure function of a small,
// fingerprinted part of the blueprint:
//
//	host        default drops, classify of uplink/LOCAL/tunnel, underlay
//	            allowlist, host-out, guest guards, trusted-peer clause 2;
//	            reads every host's identity, management, trusted peers
//	vm:NAME     one local VM: classify, port security, ARP self-drop;
//	            reads the VM and its tier's name, VPC and key
//	tier:KEY    one tier present on the host: management pass, ARP
//	            responder, tunnel-in (or VLAN in/out), L2 forwarding and
//	            flooding; reads the tier, its VMs, the hosts carrying it
//	            and, for a distributed-routing VPC, the VPC's hosts
//	vpc:NAME    a distributed-routing VPC with a tier on the host: gateway
//	            ARP, route entry per local tier, a route per VM of the VPC;
//	            reads the VPC's tiers, VMs and their hosts
//
// CompileHost plans a host as its segments' fingerprints; ChangedSegments
// builds only the segments whose fingerprint differs between two plans, so
// a blueprint change costs what it touches: adding a VM builds that VM's
// segment and its tier's segment on the hosts carrying the tier, nothing
// else. Flows are built on demand and never cached (the controller keeps
// plans, not flows).

// Index is what the compiler needs of one validated blueprint, computed once
// for all its hosts: per host its local VMs and tiers, per tier its VMs, the
// hosts carrying it and a fingerprint; plus the per-tier flows shared by
// every carrying host, built on first use. Safe for concurrent use.
type Index struct {
	bp        *Blueprint
	hosts     map[string]*Host
	local     map[string][]VMRef   // host -> local VMs, blueprint order
	tiers     map[string][]TierRef // host -> tiers with a local VM, blueprint order
	tierVMs   map[uint32][]VMRef   // tier key -> VMs, blueprint order
	tierHosts map[uint32][]*Host   // tier key -> hosts carrying the tier, by name
	// acceptHosts: the hosts whose tunnel key of the tier is accepted: the
	// tier's hosts, or every host of a distributed-routing VPC (a routed
	// packet arrives under the destination tier's key from the source's
	// host).
	acceptHosts map[uint32][]*Host
	vpcHosts    map[*VPC][]*Host // distributed VPCs: hosts carrying any tier, by name
	vpcFP       map[*VPC]uint64
	tierFP      map[uint32]uint64
	globalFP    uint64 // inputs of every host segment
	hasVLAN     bool   // some tier is VLAN-backed: the uplink's tagged frames are claimed
	pol         *policyIndex

	mu     sync.Mutex
	shared map[sharedKey]*tierShared
}

// tierShared holds the flows of one tier that are identical on every host
// carrying it, built once per index (and options) instead of once per host:
// the ARP answers, the tunnel-key acceptance per carrying host, and the
// tunnel forwarding to each VM (used on every host but the VM's own).
// Read-only once built; hosts' flow slices share its Match/Actions.
type tierShared struct {
	once     sync.Once
	arp      []Flow
	tunnelIn map[string]Flow // by the sending host's name
	remoteL2 map[string]Flow // by VM name
	errs     []error
}

type sharedKey struct {
	vni  uint32
	opts CompileOptions
}

func (ix *Index) tierFlows(t TierRef, opts CompileOptions) *tierShared {
	ix.mu.Lock()
	k := sharedKey{t.Tier.Key, opts}
	sh := ix.shared[k]
	if sh == nil {
		sh = &tierShared{}
		ix.shared[k] = sh
	}
	ix.mu.Unlock()
	sh.once.Do(func() {
		b := &builder{rev: ix.bp.Revision, opts: opts}
		vms := ix.tierVMs[t.Tier.Key]
		for _, r := range vms {
			b.arpAnswer(t, r)
		}
		sh.arp = b.flows
		if t.Tier.IsVLAN() { // no tunnels: the uplink carries it tagged
			sh.errs = b.errs
			return
		}
		sh.tunnelIn = make(map[string]Flow, len(ix.acceptHosts[t.Tier.Key]))
		for _, p := range ix.acceptHosts[t.Tier.Key] {
			b.flows = nil
			b.tunnelKeyFrom(t, p)
			if len(b.flows) == 1 {
				sh.tunnelIn[p.Name] = b.flows[0]
			}
		}
		sh.remoteL2 = make(map[string]Flow, len(vms))
		tunnel := TunnelPort(ix.bp.Encapsulation)
		for _, r := range vms {
			ph := ix.hosts[r.VM.Host]
			if ph == nil {
				continue
			}
			b.flows = nil
			b.l2Remote(t, r, ph, tunnel)
			if len(b.flows) == 1 {
				sh.remoteL2[r.VM.Name] = b.flows[0]
			}
		}
		sh.errs = b.errs
	})
	return sh
}

// NewIndex indexes bp (which must be validated).
func NewIndex(bp *Blueprint) *Index {
	ix := &Index{bp: bp, hosts: make(map[string]*Host, len(bp.Hosts)),
		local: map[string][]VMRef{}, tiers: map[string][]TierRef{},
		tierVMs: map[uint32][]VMRef{}, tierHosts: map[uint32][]*Host{}, tierFP: map[uint32]uint64{},
		acceptHosts: map[uint32][]*Host{}, vpcHosts: map[*VPC][]*Host{}, vpcFP: map[*VPC]uint64{},
		shared: map[sharedKey]*tierShared{}}
	for i := range bp.Hosts {
		ix.hosts[bp.Hosts[i].Name] = &bp.Hosts[i]
	}
	var fp fingerprint
	fp.str(string(bp.Encapsulation))
	for _, p := range bp.MgmtPrefixes {
		fp.str(p.String())
	}
	fp.str("ports")
	for _, p := range bp.Management.HostPorts {
		fp.u64(uint64(p))
	}
	fp.str("peers")
	for _, a := range bp.PeerAddrs {
		fp.u64(IPValue(a))
	}
	fp.str("hosts")
	for i := range bp.Hosts {
		o := &bp.Hosts[i]
		fp.str(o.Name)
		fp.u64(IPValue(o.Addr))
		fp.u64(MACValue(o.MAC))
		fp.bool(o.HasMAC)
	}
	ix.globalFP = fp.sum()
	ix.pol = newPolicyIndex(bp)
	for pi := range bp.VPCs {
		for ti := range bp.VPCs[pi].Tiers {
			if bp.VPCs[pi].Tiers[ti].IsVLAN() {
				ix.hasVLAN = true
			}
		}
	}
	for pi := range bp.VPCs {
		p := &bp.VPCs[pi]
		for ti := range p.Tiers {
			t := &p.Tiers[ti]
			var hosts []*Host
			for mi := range t.VMs {
				m := &t.VMs[mi]
				r := VMRef{p, t, m}
				ix.tierVMs[t.Key] = append(ix.tierVMs[t.Key], r)
				if len(ix.local[m.Host]) == 0 || ix.lastTier(m.Host) != t {
					ix.tiers[m.Host] = append(ix.tiers[m.Host], TierRef{p, t})
				}
				ix.local[m.Host] = append(ix.local[m.Host], r)
				if h := ix.hosts[m.Host]; h != nil && !containsHost(hosts, h) {
					hosts = append(hosts, h)
				}
			}
			sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
			ix.tierHosts[t.Key] = hosts
			if p.IsDistributed() {
				for _, h := range hosts {
					if !containsHost(ix.vpcHosts[p], h) {
						ix.vpcHosts[p] = append(ix.vpcHosts[p], h)
					}
				}
			}
		}
		vh := ix.vpcHosts[p]
		sort.Slice(vh, func(i, j int) bool { return vh[i].Name < vh[j].Name })
		var vf fingerprint
		if p.IsDistributed() {
			vf.str(string(bp.Encapsulation))
			vf.str(p.Name)
			for ti := range p.Tiers {
				t := &p.Tiers[ti]
				vf.u64(uint64(t.Key))
				vf.str(t.Prefix.String())
				vf.u64(addrValue(t.GatewayAddr))
				vf.u64(MACValue(t.GatewayHW))
				vf.bool(t.VirtualGateway)
				vf.vms(t.VMs)
				vf.policyVMs(t)
			}
			vf.hosts(vh)
			ix.vpcFP[p] = vf.sum()
		}
		for ti := range p.Tiers {
			t := &p.Tiers[ti]
			hosts := ix.tierHosts[t.Key]
			accept := hosts
			if p.IsDistributed() {
				accept = vh
			}
			ix.acceptHosts[t.Key] = accept
			var tf fingerprint
			tf.str(string(bp.Encapsulation))
			tf.bool(len(bp.PeerAddrs) > 0)
			tf.str(p.Name)
			tf.str(t.Name)
			tf.u64(uint64(t.Key))
			tf.str(t.Prefix.String())
			tf.u64(addrValue(t.GatewayAddr))
			tf.u64(MACValue(t.GatewayHW))
			tf.bool(t.VirtualGateway)
			tf.bool(p.IsDistributed())
			if t.Prefix6.IsValid() {
				tf.str(t.Prefix6.String())
			}
			tf.vms(t.VMs)
			tf.policyVMs(t)
			tf.hosts(hosts)
			tf.str("accept")
			tf.hosts(accept)
			ix.tierFP[t.Key] = tf.sum()
		}
	}
	return ix
}

// lastTier is the tier of host's most recently indexed local VM.
func (ix *Index) lastTier(host string) *Tier {
	l := ix.local[host]
	return l[len(l)-1].Tier
}

func containsVPC(ps []*VPC, p *VPC) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

func containsHost(hs []*Host, h *Host) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

// Blueprint is the indexed blueprint.
func (ix *Index) Blueprint() *Blueprint { return ix.bp }

// Segment is one part of a host's flows, planned but not built.
type Segment struct {
	ID   string // "host", "vm:NAME", "tier:KEY" or "vpc:NAME"
	FP   uint64 // fingerprint of every input the segment is compiled from
	kind byte   // 'h', 'v', 't', 'p'
	idx  int    // into the view's local VMs ('v'), tiers ('t') or distributed VPCs ('p')
}

// Compiled is the plan of one host's flows under one blueprint: its
// segments and their fingerprints. It holds no flows (they are built on
// demand by Flows and ChangedSegments), so keeping a plan per bridge costs a
// few bytes per segment, not per flow. Immutable; safe for concurrent use.
type Compiled struct {
	Host string
	Opts CompileOptions
	Segs []Segment
	v    *hostView
}

// Flows builds all the host's flows (host, VMs, tiers) in a new slice.
func (c *Compiled) Flows() ([]Flow, error) {
	return c.build(func(*Segment) bool { return true })
}

// Annotated is Flows with every flow's Note, whatever Opts.NoNotes says
// (audit, descriptions).
func (c *Compiled) Annotated() ([]Flow, error) {
	d := *c
	d.Opts.NoNotes = false
	return d.Flows()
}

func (c *Compiled) build(want func(*Segment) bool) ([]Flow, error) {
	b := &builder{rev: c.v.bp.Revision, opts: c.Opts}
	for i := range c.Segs {
		s := &c.Segs[i]
		if !want(s) {
			continue
		}
		switch s.kind {
		case 'h':
			b.hostSegment(c.v)
		case 'v':
			b.vmSegment(c.v.local[s.idx])
		case 't':
			b.tierSegment(c.v, c.v.tiers[s.idx])
		case 'p':
			b.vpcSegment(c.v, c.v.vpcs[s.idx])
		case 'a':
			b.policyVPCSegment(c.v.ix, c.v.ix.pol.hostVPCs[c.Host][s.idx])
		}
	}
	if len(b.errs) > 0 {
		return nil, fmt.Errorf("compile %s: %v", c.Host, b.errs)
	}
	return b.flows, nil
}

// FP is a fingerprint of all the host's inputs: two plans with the same FP
// build the same flows (up to the revision bits of their cookies).
func (c *Compiled) FP() uint64 {
	var fp fingerprint
	fp.bool(c.Opts.DropLog)
	for i := range c.Segs {
		fp.str(c.Segs[i].ID)
		fp.u64(c.Segs[i].FP)
	}
	return fp.sum()
}

// CompileHost plans host hostName's flows under the indexed blueprint:
// cheap (fingerprints only, O(local VMs + tiers) after the index); the flows
// are built by Flows or ChangedSegments.
func CompileHost(ix *Index, hostName string, opts CompileOptions) (*Compiled, error) {
	h := ix.hosts[hostName]
	if h == nil {
		return nil, fmt.Errorf("host %q is not in blueprint %s", hostName, ix.bp.Source)
	}
	v := &hostView{bp: ix.bp, host: h, ix: ix, local: ix.local[hostName], tiers: ix.tiers[hostName]}
	for _, t := range v.tiers {
		if t.VPC.IsDistributed() && !containsVPC(v.vpcs, t.VPC) {
			v.vpcs = append(v.vpcs, t.VPC)
		}
	}
	c := &Compiled{Host: hostName, Opts: opts, Segs: make([]Segment, 0, 1+len(v.local)+len(v.tiers)), v: v}
	var fp fingerprint
	fp.u64(ix.globalFP)
	fp.str(h.Name)
	fp.str(h.Uplink)
	if h.IsBond() { // members and mode shape classify and host_out
		for _, m := range h.UplinkSpec.Members {
			fp.str(m)
		}
		fp.str(h.UplinkSpec.Mode)
	}
	fp.bool(len(v.tiers) > 0)
	fp.bool(ix.hasVLAN)
	fp.bool(len(v.vpcs) > 0)
	fp.bool(len(ix.pol.hostVPCs[hostName]) > 0)
	if v.dualStack() {
		fp.str("ipv6")
	}
	c.Segs = append(c.Segs, Segment{ID: "host", FP: fp.sum(), kind: 'h'})
	for i, r := range v.local {
		var vf fingerprint
		vf.str(r.VM.Name)
		vf.str(r.VM.Port)
		vf.u64(MACValue(r.VM.HW))
		vf.u64(IPValue(r.VM.Addr))
		vf.u64(uint64(r.Tier.Key))
		vf.str(r.VPC.Name)
		vf.str(r.Tier.Name)
		vf.str(r.VM.Role)
		vf.bool(IsPolicyVM(r.Tier, r.VM))
		if IsDualStack(r) {
			vf.str(r.VM.Addr6.String())
		}
		if r.VM.IsRouter() { // it may source any tier CIDR of its VPC
			for ti := range r.VPC.Tiers {
				vf.str(r.VPC.Tiers[ti].Name)
				vf.str(r.VPC.Tiers[ti].Prefix.String())
			}
		}
		c.Segs = append(c.Segs, Segment{ID: "vm:" + r.VM.Name, FP: vf.sum(), kind: 'v', idx: i})
	}
	for i, t := range v.tiers {
		var tf fingerprint
		tf.u64(ix.tierFP[t.Tier.Key])
		tf.str(h.Name)
		c.Segs = append(c.Segs, Segment{ID: "tier:" + strconv.FormatUint(uint64(t.Tier.Key), 10), FP: tf.sum(), kind: 't', idx: i})
	}
	for i, p := range v.vpcs {
		var pf fingerprint
		pf.u64(ix.vpcFP[p])
		pf.str(h.Name)
		for _, t := range v.tiers { // the route entries are per local tier
			if t.VPC == p {
				pf.u64(uint64(t.Tier.Key))
			}
		}
		c.Segs = append(c.Segs, Segment{ID: "vpc:" + p.Name, FP: pf.sum(), kind: 'p', idx: i})
	}
	for i, p := range ix.pol.hostVPCs[hostName] {
		c.Segs = append(c.Segs, Segment{ID: "policy:" + p.Name, FP: ix.pol.vpcFP[p], kind: 'a', idx: i})
	}
	return c, nil
}

// ChangedSegments builds the flows of the segments that differ between prev
// and cur (two plans of one host, e.g. under the old and the new
// blueprint): before holds prev's flows of those segments, after cur's.
// Diffing after against before gives the same flow changes as diffing all
// of cur against all of prev, because every other segment is identical in
// both. Plans with different options differ everywhere.
func ChangedSegments(prev, cur *Compiled) (before, after []Flow, err error) {
	if prev.Opts != cur.Opts || prev.Host != cur.Host {
		if before, err = prev.Flows(); err != nil {
			return nil, nil, err
		}
		after, err = cur.Flows()
		return before, after, err
	}
	old := make(map[string]uint64, len(prev.Segs))
	for i := range prev.Segs {
		old[prev.Segs[i].ID] = prev.Segs[i].FP
	}
	now := make(map[string]uint64, len(cur.Segs))
	for i := range cur.Segs {
		now[cur.Segs[i].ID] = cur.Segs[i].FP
	}
	changed := func(other map[string]uint64) func(*Segment) bool {
		return func(s *Segment) bool {
			fp, ok := other[s.ID]
			return !ok || fp != s.FP
		}
	}
	if before, err = prev.build(changed(now)); err != nil {
		return nil, nil, err
	}
	after, err = cur.build(changed(old))
	return before, after, err
}

// fingerprint is FNV-1a over length-delimited fields.
type fingerprint struct{ buf []byte }

func (f *fingerprint) str(s string) {
	f.buf = binary.AppendUvarint(f.buf, uint64(len(s)))
	f.buf = append(f.buf, s...)
}

// vms adds what every flow of a VM depends on.
func (f *fingerprint) vms(vms []VM) {
	for i := range vms {
		m := &vms[i]
		f.str(m.Name)
		f.str(m.Host)
		f.str(m.Port)
		f.u64(MACValue(m.HW))
		f.u64(IPValue(m.Addr))
		if m.Addr6.IsValid() { // IPv6: nothing added for an IPv4-only VM
			f.str(m.Addr6.String())
		}
	}
}

// policyVMs adds what a tier's flows need of its policy: which VMs are
// judged, which have security groups (flooding keeps those out of IPv4
// broadcast). Nothing for a policy-free tier, so its fingerprint is as
// before policy existed.
func (f *fingerprint) policyVMs(t *Tier) {
	if t.ACL == "" {
		any := false
		for i := range t.VMs {
			any = any || len(t.VMs[i].SecurityGroups) > 0
		}
		if !any {
			return
		}
	}
	f.str("policy")
	f.str(t.ACL)
	f.str(t.Prefix.String())
	for i := range t.VMs {
		f.bool(IsPolicyVM(t, &t.VMs[i]))
		f.bool(len(t.VMs[i].SecurityGroups) > 0)
	}
}

// hosts adds hosts' names and tunnel addresses.
func (f *fingerprint) hosts(hs []*Host) {
	for _, h := range hs {
		f.str(h.Name)
		f.u64(IPValue(h.Addr))
	}
}

func (f *fingerprint) u64(v uint64) { f.buf = binary.BigEndian.AppendUint64(f.buf, v) }
func (f *fingerprint) bool(v bool) {
	if v {
		f.buf = append(f.buf, 1)
	} else {
		f.buf = append(f.buf, 0)
	}
}
func (f *fingerprint) sum() uint64 {
	h := fnv.New64a()
	h.Write(f.buf)
	return h.Sum64()
}
