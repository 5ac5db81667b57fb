package controller

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vpcflow/vpcflow/cluster"
	"github.com/vpcflow/vpcflow/flows"
)

// noQuorum is wantMaster's reason when this replica lacks a quorum.
const noQuorum = "no quorum: this replica does not see a majority of the replica set alive"

// localGen is the highest role generation id this process has seen when
// running without a cluster.
var localGen atomic.Uint64

// generationNewer reports whether a is newer than b in OpenFlow's wrapping
// comparison (the switch refuses a claim whose id is "older": int64(a-b) < 0).
func generationNewer(a, b uint64) bool { return int64(a-b) > 0 }

// undefinedGeneration is what OVS reports before any controller set an id.
const undefinedGeneration = math.MaxUint64

func (c *Controller) maxGeneration() uint64 {
	if cl := c.opts.Cluster; cl != nil {
		return cl.MaxGeneration()
	}
	return localGen.Load()
}

func (c *Controller) observeGeneration(g uint64) {
	if g == undefinedGeneration {
		return
	}
	if cl := c.opts.Cluster; cl != nil {
		cl.ObserveGeneration(g)
		return
	}
	for {
		cur := localGen.Load()
		if !generationNewer(g, cur) || localGen.CompareAndSwap(cur, g) {
			return
		}
	}
}

// nextGeneration is the id of a MASTER claim: newer than both the switch's
// current id and every id gossiped in the cluster. In replica mode its low
// bits are this replica's index in controllers: (cluster.ClaimGeneration),
// so two replicas claiming at once never send the same id: the switch
// accepts an equal id, and each such claim would demote the previous one.
func (c *Controller) nextGeneration(switchGen uint64) uint64 {
	g := c.maxGeneration()
	if switchGen != undefinedGeneration && generationNewer(switchGen, g) {
		g = switchGen
	}
	if cl := c.opts.Cluster; cl != nil {
		return cluster.ClaimGeneration(g, cl.ReplicaIndex())
	}
	if switchGen == undefinedGeneration && g == 0 {
		return 1
	}
	return g + 1
}

// ReplicaNames turns the blueprint's controllers: into replica names:
// HOST:PORT without the tcp:/ssl: scheme (a replica's default name is its
// --listen address the same way).
func ReplicaNames(controllers []string) []string {
	out := make([]string, 0, len(controllers))
	for _, s := range controllers {
		out = append(out, ReplicaName(s))
	}
	return out
}

// ReplicaName is one controllers: entry (or --listen address) as a replica
// name.
func ReplicaName(target string) string {
	for _, p := range []string{"tcp:", "ssl:"} {
		if strings.HasPrefix(target, p) {
			return strings.TrimPrefix(target, p)
		}
	}
	return target
}

// checkReplicaSetChange rejects, in replica mode, a blueprint whose
// controllers: differ from the enforced ones by more than one replica.
func (c *Controller) checkReplicaSetChange(cur, next *flows.Blueprint) error {
	if c.opts.Cluster == nil {
		return nil
	}
	if err := cluster.CheckReplicaSetChange(ReplicaNames(cur.Controllers), ReplicaNames(next.Controllers)); err != nil {
		return fmt.Errorf("%s: %w", c.sourceName(), err)
	}
	return nil
}

// applyReplicaSet makes the cluster follow the controllers: of the
// blueprint just loaded.
func (c *Controller) applyReplicaSet(bp *flows.Blueprint) {
	if cl := c.opts.Cluster; cl != nil {
		if err := cl.SetReplicaSet(ReplicaNames(bp.Controllers)); err != nil {
			c.log.WithError(err).Error("cannot apply the replica set of the new blueprint")
		}
	}
}

// masterElsewhere reports a live replica that gossips MASTER of dpid.
func (c *Controller) masterElsewhere(dpid uint64) (string, bool) {
	if cl := c.opts.Cluster; cl != nil {
		return cl.MasterElsewhere(dpid)
	}
	return "", false
}

// unsettled names a live replica whose state this one has not received.
func (c *Controller) unsettled() string {
	if cl := c.opts.Cluster; cl != nil {
		return cl.Unsettled()
	}
	return ""
}

// heardFromQuorumSince: without a cluster, trivially true.
func (c *Controller) heardFromQuorumSince(t time.Time) bool {
	if cl := c.opts.Cluster; cl != nil {
		return cl.HeardFromQuorumSince(t)
	}
	return true
}

// reclaimBackoff is the longest a demoted replica waits before it claims a
// bridge again: Options.ReclaimBackoff, at least twice the quorum lease (a
// replica whose view lags believes in its quorum for up to a lease).
func (c *Controller) reclaimBackoff() time.Duration {
	d := c.opts.ReclaimBackoff
	if cl := c.opts.Cluster; cl != nil && 2*cl.QuorumLease() > d {
		d = 2 * cl.QuorumLease()
	}
	return d
}

// memberKey identifies the current set of live replicas ("" without a
// cluster).
func (c *Controller) memberKey() string {
	cl := c.opts.Cluster
	if cl == nil {
		return ""
	}
	var names []string
	for _, m := range cl.Members() {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}

// ownerOf names the replica owning a bridge ("" without a cluster).
func (c *Controller) ownerOf(dpid uint64) string {
	if cl := c.opts.Cluster; cl != nil {
		o, _ := cl.Owner(dpid)
		return o
	}
	return ""
}

// wantMaster decides whether this replica should be MASTER of a bridge:
// always without a cluster; with one, only the owner, only with a quorum, and
// only when no live replica enforces a newer blueprint (or a conflicting one
// with the same revision).
//
// errNoQuorum-style standby (no quorum) means: stop writing, but do not step
// down to SLAVE — if another replica really takes the bridge, the switch's
// generation arbitration demotes us; if our quorum comes back first, we
// resume without a new claim.
func (c *Controller) wantMaster(dpid uint64, p *policy) (bool, string) {
	cl := c.opts.Cluster
	if cl == nil {
		return true, ""
	}
	if c.leaving.Load() {
		return false, "this replica is leaving the cluster"
	}
	if !cl.HasQuorum() {
		return false, noQuorum
	}
	owner, ok := cl.Owner(dpid)
	if !ok || owner != cl.Name() {
		return false, "owned by replica " + owner
	}
	return c.revisionAgreement(p)
}

// revisionAgreement reports whether no live replica gossips a newer
// blueprint revision than p, or a newer policy key (version, origin) with
// different content under the same revision (true without a cluster). This
// only covers live replicas: what a dead replica wrote is caught by the
// revision fence on the bridge itself (fence.go), and provisioning checks
// both (provisionAllowed).
func (c *Controller) revisionAgreement(p *policy) (bool, string) {
	cl := c.opts.Cluster
	if cl == nil {
		return true, ""
	}
	mine := p.key(cl.Name())
	for _, m := range cl.Members() {
		if m.State.Revision > p.bp.Revision {
			return false, fmt.Sprintf("replica %s enforces newer blueprint revision %d (this replica has %d): fetching it", m.Name, m.State.Revision, p.bp.Revision)
		}
		// Equal revisions: the newer (version, origin) wins (distribute.go).
		if m.State.Hash != "" && m.State.Hash != p.hash && cluster.KeyOf(m.Name, &m.State).Newer(mine) {
			return false, fmt.Sprintf("replica %s enforces a newer policy with different content under the same revision %d (version %d from %s): fetching it",
				m.Name, p.bp.Revision, m.State.Version, cluster.KeyOf(m.Name, &m.State).Origin)
		}
	}
	return true, ""
}

// publishState gossips this replica's blueprint version, connected bridges
// and highest generation id.
func (c *Controller) publishState() {
	cl := c.opts.Cluster
	if cl == nil {
		return
	}
	c.mu.Lock()
	p := c.pol
	dpids := make([]uint64, 0, len(c.bridges))
	var masters []uint64
	for d, b := range c.bridges {
		if b.status().Known {
			dpids = append(dpids, d)
		}
		if b.conn.Role() == OFRoleMaster {
			masters = append(masters, d)
		}
	}
	c.mu.Unlock()
	sort.Slice(dpids, func(i, j int) bool { return dpids[i] < dpids[j] })
	k := p.key(cl.Name())
	cl.SetLocal(cluster.LocalState{Revision: p.bp.Revision, Hash: p.hash, Connected: dpids, Master: masters,
		MaxGeneration: cl.MaxGeneration(), OpenFlow: c.opts.Listen, Version: k.Version, Origin: k.Origin, BuildVersion: buildVersion()})
}

// ClusterStatus is the cluster part of /status.
type ClusterStatus struct {
	Self    string          `json:"self"`
	Quorum  bool            `json:"quorum"`
	Members []ClusterMember `json:"members"`
	// Replicas is the replica set in force (the blueprint's controllers:).
	Replicas []string `json:"replicas"`
	// Refused are members refused because they are not in Replicas.
	Refused []cluster.Refused `json:"refused"`
	// Protocol is this replica's gossip protocol version and
	// ProtocolReadsFrom the oldest it reads; ProtocolRefused counts what
	// it refused for its protocol (upgrade.go, docs/upgrade.md).
	Protocol          uint8           `json:"protocol"`
	ProtocolReadsFrom uint8           `json:"protocol_reads_from"`
	ProtocolRefused   ProtocolRefused `json:"protocol_refused"`
}

// ClusterMember is one live replica in /status.
type ClusterMember struct {
	Name          string   `json:"name"`
	Addr          string   `json:"addr"`
	Self          bool     `json:"self,omitempty"`
	Revision      uint32   `json:"revision"`
	Hash          string   `json:"blueprint_hash"`
	Connected     int      `json:"bridges_connected"`
	Owned         []string `json:"bridges_owned"`
	Master        []string `json:"bridges_master"`
	MaxGeneration uint64   `json:"max_generation"`
	// PolicyVersion and PolicyOrigin: the member's policy key with Revision
	// (docs/cluster.md#blueprint-distribution).
	PolicyVersion uint64 `json:"policy_version"`
	PolicyOrigin  string `json:"policy_origin"`
	// Version is the member's vpcflow version (gossiped; empty for a
	// replica too old to gossip it).
	Version string `json:"version,omitempty"`
	// Protocol is the member's gossip protocol version (absent: a replica
	// older than protocol versioning, protocol 1).
	Protocol uint8 `json:"protocol,omitempty"`
}

func (c *Controller) clusterStatus() *ClusterStatus {
	cl := c.opts.Cluster
	if cl == nil {
		return nil
	}
	cs := &ClusterStatus{Self: cl.Name(), Quorum: cl.HasQuorum(), Replicas: cl.ReplicaSet(), Refused: cl.Refused()}
	for _, m := range cl.Members() {
		cm := ClusterMember{Name: m.Name, Addr: m.Addr, Self: m.Self, Revision: m.State.Revision, Hash: m.State.Hash,
			Connected: len(m.State.Connected), MaxGeneration: m.State.MaxGeneration, Owned: []string{},
			PolicyVersion: m.State.Version, PolicyOrigin: cluster.KeyOf(m.Name, &m.State).Origin, Version: m.State.BuildVersion, Protocol: m.State.Protocol}
		for _, d := range m.Owned {
			cm.Owned = append(cm.Owned, fmt.Sprintf("%016x", d))
		}
		for _, d := range m.State.Master {
			cm.Master = append(cm.Master, fmt.Sprintf("%016x", d))
		}
		cs.Members = append(cs.Members, cm)
	}
	c.protocolStatus(cs)
	return cs
}

// SetCluster makes this controller a replica of cl (call before Run).
func (c *Controller) SetCluster(cl *cluster.Cluster) { c.opts.Cluster = cl }

// Blueprint returns the blueprint in force.
func (c *Controller) Blueprint() *flows.Blueprint { return c.policy().bp }

// handoverTo names the replica a bridge is being handed over to when why
// (wantMaster's reason) says another live replica owns it and that replica
// reports the bridge connected: a planned move, where this replica keeps
// its MASTER role, without writing, until the new owner's claim demotes it.
// "" otherwise (no cluster, another reason, or an owner that cannot claim).
func (c *Controller) handoverTo(dpid uint64, why string) string {
	cl := c.opts.Cluster
	if cl == nil {
		return ""
	}
	owner, ok := strings.CutPrefix(why, "owned by replica ")
	if !ok || owner == "" || owner == cl.Name() {
		return ""
	}
	for _, m := range cl.Members() {
		if m.Name == owner && slices.Contains(m.State.Connected, dpid) {
			return owner
		}
	}
	return ""
}
