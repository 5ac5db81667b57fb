package controller

import (
	"fmt"
	"sync"

	"github.com/vpcflow/vpcflow/flows"
)

// sharedDelta is the diff of one changed shared segment (a VPC's policy
// checks, flows.SharedChange) between two plans: the same on every bridge
// that carries the segment, so computed once per reload and pair of plans,
// by the first bridge that needs it.
type sharedDelta struct {
	once sync.Once
	d    FlowDiff
	keys map[string]bool // switch identities of every flow the diff touches
}

// sharedDeltas caches sharedDelta per (before, after) pair; it lives on the
// policy of "after" and goes with it.
type sharedDeltas struct {
	mu sync.Mutex
	m  map[any]*sharedDelta
}

func (s *sharedDeltas) get(sc *flows.SharedChange) *sharedDelta {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[any]*sharedDelta{}
	}
	e := s.m[sc.Key()]
	if e == nil {
		e = &sharedDelta{}
		s.m[sc.Key()] = e
	}
	s.mu.Unlock()
	e.once.Do(func() {
		e.d = DiffFlows(sc.After, sc.Before)
		e.keys = map[string]bool{}
		var kb []byte
		for _, set := range [][]flows.Flow{e.d.Missing, e.d.Modified, e.d.Extra} {
			for i := range set {
				kb = appendKey(kb[:0], &set[i])
				e.keys[string(kb)] = true
			}
		}
	})
	return e
}

// overlaps reports whether d touches a flow the shared diff also touches
// (a flow that moved between a shared segment and another one).
func (e *sharedDelta) overlaps(d *FlowDiff) bool {
	if len(e.keys) == 0 {
		return false
	}
	var kb []byte
	for _, set := range [][]flows.Flow{d.Missing, d.Modified, d.Extra} {
		for i := range set {
			kb = appendKey(kb[:0], &set[i])
			if e.keys[string(kb)] {
				return true
			}
		}
	}
	return false
}

// deltaDiff is the flow-mods a reload needs on a table that holds prev, to
// make it hold cur, bound to ports: the diff of the changed segments, with
// the changed shared segments' diffs taken from the policy's cache. It
// equals DiffFlows over flows.ChangedSegments (TestDeltaDiffShared); when a
// flow moved between a shared segment and another segment it diffs them
// together, as that does.
func deltaDiff(p *policy, prev, cur *flows.Compiled, ports flows.PortMap) (FlowDiff, error) {
	before, after, shared, err := flows.ChangedSegmentsSplit(prev, cur)
	if err != nil {
		return FlowDiff{}, err
	}
	was, _ := flows.Bind(before, ports)
	now, _ := flows.Bind(after, ports)
	d := DiffFlows(now, was)
	for i := range shared {
		sc := &shared[i]
		if len(sc.Errs) > 0 {
			return FlowDiff{}, fmt.Errorf("compile %s of %s: %v", sc.ID, cur.Host, sc.Errs)
		}
		e := p.sharedDeltas.get(sc)
		if e.overlaps(&d) {
			before, after, err := flows.ChangedSegments(prev, cur)
			if err != nil {
				return FlowDiff{}, err
			}
			was, _ := flows.Bind(before, ports)
			now, _ := flows.Bind(after, ports)
			return DiffFlows(now, was), nil
		}
		d.Missing = append(d.Missing, e.d.Missing...)
		d.Modified = append(d.Modified, e.d.Modified...)
		d.Was = append(d.Was, e.d.Was...)
		d.Extra = append(d.Extra, e.d.Extra...)
		d.InSync += e.d.InSync
	}
	return d, nil
}
