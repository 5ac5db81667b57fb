package flows

// Shared segments: a VPC's policy checks (tables 32-39, the "policy:"
// segment) are the same flows on every host that carries the VPC's policy
// VMs, and they name no port (they match registers and addresses only).
// When a rule changes, the delta of that segment is therefore the same on
// every such host (80 bridges for one rule in the 200-host bench): the
// controller diffs it once per reload instead of once per bridge
// (controller.sharedDelta), and nothing copies or binds the segment's flows
// per host.

// SharedChange is a changed shared segment of one host: Before and After
// are the segment's flows under the two plans, shared read-only by every
// host (never modify them). Key identifies the pair: equal keys have equal
// Before and After.
type SharedChange struct {
	ID            string
	Before, After []Flow
	Errs          []error
	key           [2]*vpcPolicyFlows
}

// Key identifies the (before, after) pair for caching its diff.
func (s *SharedChange) Key() any { return s.key }

// ChangedSegmentsSplit is ChangedSegments with the changed shared segments
// (present in both plans) returned apart, unbuilt and unbound: before and
// after hold the flows of every other changed segment. The union of both
// parts is exactly what ChangedSegments returns.
func ChangedSegmentsSplit(prev, cur *Compiled) (before, after []Flow, shared []SharedChange, err error) {
	if prev.Opts != cur.Opts || prev.Host != cur.Host {
		before, after, err = ChangedSegments(prev, cur)
		return before, after, nil, err
	}
	old := make(map[string]*Segment, len(prev.Segs))
	for i := range prev.Segs {
		old[prev.Segs[i].ID] = &prev.Segs[i]
	}
	now := make(map[string]*Segment, len(cur.Segs))
	for i := range cur.Segs {
		now[cur.Segs[i].ID] = &cur.Segs[i]
	}
	split := map[string]bool{}
	for i := range cur.Segs {
		s := &cur.Segs[i]
		o := old[s.ID]
		if s.kind != 'a' || o == nil || o.kind != 'a' || o.FP == s.FP {
			continue
		}
		pv := prev.v.ix.pol.hostVPCs[prev.Host][o.idx]
		cv := cur.v.ix.pol.hostVPCs[cur.Host][s.idx]
		b := prev.v.ix.pol.shared(prev.v.ix, pv, prev.Opts)
		a := cur.v.ix.pol.shared(cur.v.ix, cv, cur.Opts)
		shared = append(shared, SharedChange{ID: s.ID, Before: b.flows, After: a.flows,
			Errs: append(append([]error(nil), b.errs...), a.errs...), key: [2]*vpcPolicyFlows{b, a}})
		split[s.ID] = true
	}
	changed := func(other map[string]*Segment) func(*Segment) bool {
		return func(s *Segment) bool {
			if split[s.ID] {
				return false
			}
			o, ok := other[s.ID]
			return !ok || o.FP != s.FP
		}
	}
	if before, err = prev.build(changed(now)); err != nil {
		return nil, nil, nil, err
	}
	after, err = cur.build(changed(old))
	return before, after, shared, err
}
