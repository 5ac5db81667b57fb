package cluster

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/sirupsen/logrus"
)

// Refused is a member that tried to join (or was gossiped as alive) but is
// not in the replica set.
type Refused struct {
	Name  string    `json:"name"`
	Addr  string    `json:"addr"`
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	Count uint64    `json:"count"`
}

// maxRefused bounds the refused table (a flood of invented names must not
// grow memory): beyond it only the counter of the oldest entry moves.
const maxRefused = 64

// SetReplicaSet replaces the replica set (the blueprint's controllers:, in
// order) on a reload. The caller checks the change with
// CheckReplicaSetChange first; SetReplicaSet itself only rejects an
// unusable set. Members outside the new set stop counting at once; members
// that joined the set are admitted from their next alive message or
// push/pull (they re-join within RejoinInterval).
func (c *Cluster) SetReplicaSet(names []string) error {
	if err := checkReplicaSet(names); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if len(names) == 0 {
		return errors.New("cluster: empty replica set: the blueprint needs controllers:")
	}
	c.mu.Lock()
	if slices.Equal(names, c.setNames) {
		c.mu.Unlock()
		return nil
	}
	old := slices.Clone(c.setNames)
	c.setReplicaSetLocked(names)
	c.self.State.ReplicaSet = slices.Clone(names)
	c.self.Seq++
	for n := range c.states {
		if !c.memberLocked(n) {
			delete(c.states, n)
			delete(c.connSets, n)
		}
	}
	q, r := c.quorum, c.replicas
	c.mu.Unlock()
	c.log.WithFields(logrus.Fields{"old": old, "new": names, "replicas": r, "quorum": q}).Warn("cluster replica set changed")
	c.signal()
	c.publish()
	return nil
}

func (c *Cluster) setReplicaSetLocked(names []string) {
	if len(names) == 0 {
		return // open test mode: Replicas from the config
	}
	c.open = false
	c.setNames = slices.Clone(names)
	c.set = make(map[string]int, len(names))
	for i, n := range names {
		c.set[n] = i
	}
	c.replicas = len(names)
	c.quorum = len(names)/2 + 1
	if c.cfg.QuorumLease == 0 {
		c.lease = LeaseFor(c.cfg.ProbeInterval, c.cfg.ProbeTimeout, len(names))
	}
}

// ReplicaSet returns the replica set in force (nil in the open test mode).
func (c *Cluster) ReplicaSet() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.setNames)
}

// Refused returns the members refused because they are not in the replica
// set, sorted by name.
func (c *Cluster) Refused() []Refused {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Refused, 0, len(c.refused))
	for _, r := range c.refused {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Refused) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// refuse records a refused member. Caller holds c.mu; returns whether it is
// the first refusal of that name (worth a warning).
func (c *Cluster) refuseLocked(name, addr string) bool {
	now := time.Now()
	if r := c.refused[name]; r != nil {
		r.Last, r.Addr = now, addr
		r.Count++
		return false
	}
	if len(c.refused) >= maxRefused {
		var oldest *Refused
		for _, r := range c.refused {
			if oldest == nil || r.Last.Before(oldest.Last) {
				oldest = r
			}
		}
		delete(c.refused, oldest.Name)
	}
	c.refused[name] = &Refused{Name: name, Addr: addr, First: now, Last: now, Count: 1}
	return true
}

// admission implements memberlist.AliveDelegate and MergeDelegate: only
// members of the replica set join. NotifyAlive runs with memberlist's node
// lock held: it takes only c.mu (lock order: package doc).
type admission struct{ c *Cluster }

var errNotInReplicaSet = errors.New("not in the replica set (the blueprint's controllers:)")

func (a *admission) NotifyAlive(n *memberlist.Node) error {
	c := a.c
	if n.Name == c.name {
		return nil // memberlist cannot run without its own node
	}
	if err := c.admitProtocol(n); err != nil { // protocol.go
		var ie *IncompatibleError
		if errors.As(err, &ie) {
			c.mu.Lock()
			c.incompat[n.Name] = true
			c.mu.Unlock()
			c.noteIncompatible(ie, true)
		}
		return err
	}
	c.mu.Lock()
	delete(c.incompat, n.Name) // e.g. a replica rolled back to a compatible build
	if c.memberLocked(n.Name) {
		c.mu.Unlock()
		return nil
	}
	addr := nodeAddr(n)
	first := c.refuseLocked(n.Name, addr)
	c.mu.Unlock()
	l := c.log.WithFields(logrus.Fields{"peer": n.Name, "addr": addr})
	if first {
		l.Warn("refused a cluster member: its name is not in the replica set (the blueprint's controllers:); it neither counts toward the quorum nor owns bridges")
	} else {
		l.Debug("refused a cluster member again")
	}
	return fmt.Errorf("%s: %w", n.Name, errNotInReplicaSet)
}

// NotifyMerge refuses a push/pull (a join) from a cluster none of whose
// members is in the replica set. Strangers inside an otherwise legitimate
// merge are refused one by one by NotifyAlive.
func (a *admission) NotifyMerge(peers []*memberlist.Node) error {
	c := a.c
	c.mu.Lock()
	defer c.mu.Unlock()
	var strangers []*memberlist.Node
	for _, n := range peers {
		if n.Name == c.name || c.memberLocked(n.Name) {
			return nil
		}
		strangers = append(strangers, n)
	}
	for _, n := range strangers {
		if c.refuseLocked(n.Name, nodeAddr(n)) {
			c.log.WithFields(logrus.Fields{"peer": n.Name, "addr": nodeAddr(n)}).
				Warn("refused a cluster join: no member of the joining cluster is in the replica set (the blueprint's controllers:)")
		}
	}
	if len(strangers) == 0 {
		return nil
	}
	return fmt.Errorf("join from %s refused: %w", strangers[0].Name, errNotInReplicaSet)
}

// ReplicaIndex is this replica's index in the replica set (-1 outside it).
func (c *Cluster) ReplicaIndex() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if i, ok := c.set[c.name]; ok {
		return i
	}
	return -1
}

// ClaimGeneration returns the generation id of a MASTER claim newer than
// above (OpenFlow's wrapping comparison): its high bits are one more than
// above's, its low GenerationBits bits this replica's index in the replica
// set. Two replicas therefore never send the same id: of two concurrent
// claims from the same base, the switch keeps the higher index's. Outside a
// replica set (tests) the index is 0.
func ClaimGeneration(above uint64, index int) uint64 {
	return ((above>>GenerationBits)+1)<<GenerationBits | uint64(max(index, 0))&(MaxReplicas-1)
}

// MasterElsewhere returns a live member of the replica set other than this
// one that gossips that it holds MASTER of dpid.
func (c *Cluster) MasterElsewhere(dpid uint64) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, n := range c.liveNamesLocked() {
		if n == c.name {
			continue
		}
		if s := c.stateLocked(n); s != nil && slices.Contains(s.Master, dpid) {
			return n, true
		}
	}
	return "", false
}

// Unsettled names a live member of the replica set whose state this replica
// has not received yet ("" when the view is settled): ownership computed
// before every live member's connected set is known may name the wrong
// owner, so the controller claims nothing until then.
func (c *Cluster) Unsettled() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, n := range c.liveNamesLocked() {
		if n != c.name && c.states[n] == nil {
			return n
		}
	}
	return ""
}
