// Package cluster coordinates vpcflow controller replicas over
// hashicorp/memberlist so that exactly one replica owns each Open vSwitch
// bridge.
//
// Every replica gossips a small LocalState (blueprint revision and hash, the
// datapath ids connected to it, the highest OpenFlow role generation id it
// has seen). The owner of a bridge is the rendezvous hash of its datapath id
// over the live replicas that report it connected (over all live replicas if
// none does). A replica acts as owner only while it sees a strict majority of
// the replica set (HasQuorum): memberlist is not consensus, so a partitioned
// minority must not claim anything. The OpenFlow generation id arbitration on
// the switch is the final fence (see DESIGN.md §6).
//
// # Membership
//
// Only the replicas named in Config.ReplicaSet (the blueprint's
// controllers:, updated with SetReplicaSet) count toward the quorum, may own
// a bridge, and have their gossiped state heard. Any other member is refused
// at the membership level (memberlist's AliveDelegate and MergeDelegate) and
// reported by Refused. The cluster key authenticates the members; the
// replica set authorizes their names.
//
// # Concurrency
//
// All methods are safe for concurrent use. Name, Owner, IsOwner, HasQuorum,
// MaxGeneration, NewestRevision, Members and Changes only read the local view
// and never block on the network. SetLocal and ObserveGeneration update the
// local view and queue gossip; they never wait for the network either (large
// states are sent by a background goroutine). Start blocks while joining the
// Join peers (at most about TCPTimeout per unreachable peer); Leave blocks up
// to its timeout; Shutdown blocks until memberlist and the package's
// goroutines have stopped (at most about TCPTimeout, when a background
// re-join is in flight). memberlist's goroutines only ever take the
// package's own mutex briefly and never block on the Changes channel.
//
// Lock order: memberlist's node lock → Cluster.mu. memberlist calls
// NotifyJoin, NotifyLeave, NotifyUpdate, NotifyAlive (AliveDelegate),
// NotifyConflict and, via mergeState, NotifyAlive again with its node lock
// held (NotifyJoin with it held for writing); NotifyMsg, MergeRemoteState,
// LocalState, NotifyMerge, GetBroadcasts and NotifyPingComplete run
// without it. Every one of those callbacks takes at most Cluster.mu (and
// the broadcast queue's own lock, a leaf), briefly. So no code of this
// package may call into memberlist (Members, Join, Leave, SendReliable,
// Shutdown…) while it holds Cluster.mu: the quorum is computed from the
// package's own view (live, heard), never from memberlist.Members. publishMu
// is taken before Cluster.mu and never inside a callback.
package cluster

import (
	"errors"
	"fmt"
	"log"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/sirupsen/logrus"
)

// LocalState is what this replica gossips about itself.
type LocalState struct {
	Revision  uint32   // blueprint revision it enforces
	Hash      string   // blueprint hash (hex)
	Connected []uint64 // datapath ids of bridges connected to this replica
	Master    []uint64 // datapath ids of bridges that granted this replica MASTER
	// ReplicaSet is the replica set this member enforces (filled by the
	// cluster from SetReplicaSet; what callers pass is ignored). A member
	// counts toward this replica's quorum and ownership only if it lists
	// this replica too: a replica the others refuse learns it from their
	// states and cannot gather a quorum of its own.
	ReplicaSet    []string
	MaxGeneration uint64 // highest OpenFlow role generation id this replica has seen or used
	OpenFlow      string // its OpenFlow listen address, informational
	// Version and Origin order policies with equal revisions (distribute.go):
	// the newest (Revision, Version, Origin) wins. Origin "" = this member.
	Version uint64
	Origin  string
	// BuildVersion is the member's vpcflow version (buildinfo), shown in
	// `vpcflow status`; "" from a replica too old to gossip it.
	BuildVersion string
	// Protocol is the gossip protocol version the member speaks (filled by
	// the cluster, protocol.go; what callers pass is ignored); 0 from a
	// replica older than protocol versioning (protocol 1).
	Protocol uint8
}

// Member is one live replica as seen locally.
type Member struct {
	Name  string
	Addr  string // memberlist address IP:PORT
	Self  bool
	State LocalState
	Owned []uint64 // filled by Members(): bridges this member owns per Owner()
}

// maxBroadcastSize is the largest encoded state sent by UDP gossip; larger
// states (hundreds of dpids) go by reliable TCP user messages instead, since
// a gossip packet is limited to memberlist's UDPBufferSize (1400 bytes)
// minus headers, encryption and memberlist's own broadcasts.
const maxBroadcastSize = 900

// memberlistLabel keeps vpcflow gossip apart from any other memberlist
// cluster (Consul, Serf…) reachable on the same network.
const memberlistLabel = "vpcflow"

type liveMember struct {
	node memberlist.Node // copy, safe to read under Cluster.mu
	addr string
}

// Cluster is one replica's membership in the controller cluster.
type Cluster struct {
	cfg   Config
	name  string
	log   logrus.FieldLogger
	peers []string
	epoch uint64
	lease time.Duration // quorum lease (LeaseFor unless configured)

	ml *memberlist.Memberlist
	bq *memberlist.TransmitLimitedQueue

	publishMu sync.Mutex // orders encode+queue of our own state

	dist *distributor // blueprint transfers between replicas (distribute.go)

	proto  protoRange // gossip protocol range (protocol.go)
	pstats protoStats

	mu sync.RWMutex
	// heard: last evidence per peer that it is alive and reaches us (probe
	// ack, state message): the quorum lease.
	heard       map[string]time.Time
	quorum      int
	replicas    int
	open        bool           // tests only: no replica set, every member counts
	set         map[string]int // replica name → index in the replica set
	setNames    []string       // the replica set in order
	refused     map[string]*Refused
	protoWarned map[string]bool // peers whose protocol refusal was logged at warning level
	// incompat: peers whose last message or alive announcement was
	// refused for its protocol version; they do not count (liveNamesLocked)
	// until a message of theirs is read again.
	incompat    map[string]bool
	self        stateEntry                     // our own versioned state
	observedGen uint64                         // max generation ever seen (local or gossiped)
	states      map[string]*stateEntry         // remote states by replica name
	connSets    map[string]map[uint64]struct{} // Connected as sets, by name (incl. self)
	live        map[string]liveMember          // live remote members (self excluded)
	selfAddr    string
	left        bool
	closed      bool
	sendAll     bool            // reliable-send our state to every live member
	sendTo      map[string]bool // reliable-send our state to these members

	numNodes atomic.Int32 // live members incl. self, for the broadcast queue

	changes  chan struct{}
	sendWake chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
}

// Start creates the memberlist for cfg and joins the Join peers. A failed
// join of some peers is logged, not fatal; when no peer is reachable the
// replica runs alone and keeps retrying every RejoinInterval while fewer than
// Replicas members are live.
func Start(cfg Config) (*Cluster, error) {
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	proto, err := buildProtocol()
	if err != nil {
		return nil, err
	}
	if cfg.testProto != nil {
		proto = *cfg.testProto
	}
	allowed, _ := parseCIDRs(cfg.CIDRsAllowed) // validated above
	peers, _ := cfg.peers()
	replicas := cfg.replicaSetSize()

	mlLogger := newStdLogger(cfg.Log)
	nt, err := newNetTransport(cfg, mlLogger)
	if err != nil {
		return nil, err
	}
	port := nt.GetAutoBindPort()
	name := cfg.replicaName(port)
	lg := cfg.Log.WithFields(logrus.Fields{"component": "cluster", "replica": name})

	lease := cfg.QuorumLease
	if lease == 0 {
		lease = LeaseFor(cfg.ProbeInterval, cfg.ProbeTimeout, replicas)
	}
	c := &Cluster{
		cfg:      cfg,
		name:     name,
		log:      lg,
		lease:    lease,
		heard:    map[string]time.Time{},
		refused:  map[string]*Refused{},
		incompat: map[string]bool{},
		proto:    proto,
		replicas: replicas,
		quorum:   replicas/2 + 1,
		open:     len(cfg.ReplicaSet) == 0,
		peers:    peers,
		epoch:    uint64(time.Now().UnixNano()),
		states:   map[string]*stateEntry{},
		connSets: map[string]map[uint64]struct{}{},
		live:     map[string]liveMember{},
		sendTo:   map[string]bool{},
		changes:  make(chan struct{}, 1),
		sendWake: make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	c.setReplicaSetLocked(cfg.ReplicaSet)
	c.self = stateEntry{Name: name, Epoch: c.epoch, Seq: 1, State: LocalState{ReplicaSet: slices.Clone(c.setNames), Protocol: proto.max}}
	c.dist = newDistributor(c)
	c.numNodes.Store(1)
	c.bq = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(c.numNodes.Load()) },
		RetransmitMult: 4,
	}

	var transport memberlist.Transport = nt
	if cfg.RestrictCIDRs || cfg.testPeerFilter != nil {
		transport = newFilterTransport(nt, cfg.RestrictCIDRs, allowed, cfg.testPeerFilter, func(f string, a ...any) { lg.Debugf(f, a...) })
	}
	if cfg.TestTransport != nil {
		transport = cfg.TestTransport(transport)
	}

	mlc := memberlist.DefaultLANConfig()
	mlc.Name = name
	mlc.BindAddr = cfg.BindAddr
	mlc.BindPort = port
	mlc.AdvertiseAddr = cfg.AdvertiseAddr
	if mlc.AdvertiseAddr == "" {
		mlc.AdvertiseAddr = cfg.BindAddr
	}
	mlc.AdvertisePort = cfg.AdvertisePort
	if mlc.AdvertisePort == 0 {
		mlc.AdvertisePort = port
	}
	mlc.Transport = transport
	mlc.Label = memberlistLabel
	mlc.ProbeInterval = cfg.ProbeInterval
	mlc.ProbeTimeout = cfg.ProbeTimeout
	mlc.SuspicionMult = cfg.SuspicionMult
	mlc.SuspicionMaxTimeoutMult = cfg.SuspicionMaxTimeoutMult
	mlc.GossipInterval = cfg.GossipInterval
	mlc.PushPullInterval = cfg.PushPullInterval
	mlc.TCPTimeout = cfg.TCPTimeout
	mlc.GossipToTheDeadTime = 2 * cfg.PushPullInterval
	mlc.Logger = mlLogger
	mlc.Delegate = &delegate{c}
	mlc.Events = &events{c}
	mlc.Ping = &pingDelegate{c}
	mlc.Conflict = &events{c}
	mlc.Alive = &admission{c}
	mlc.Merge = &admission{c}
	if len(cfg.SecretKey) > 0 {
		kr, err := memberlist.NewKeyring(cfg.AcceptKeys, slices.Clone(cfg.SecretKey))
		if err != nil {
			return nil, fmt.Errorf("cluster: keyring: %w", err)
		}
		mlc.Keyring = kr
	}
	if cfg.RestrictCIDRs && len(allowed) > 0 {
		// Also makes memberlist ignore gossip about members outside the
		// list. (An empty list is enforced by filterTransport alone.)
		// memberlist applies the list to this replica's own alive message
		// too, and without its own node it crashes: always admit ourselves.
		for _, n := range allowed {
			mlc.CIDRsAllowed = append(mlc.CIDRsAllowed, *n)
		}
		self := net.ParseIP(mlc.AdvertiseAddr)
		bits := 8 * len(self.To16())
		if v4 := self.To4(); v4 != nil {
			self, bits = v4, 32
		}
		mlc.CIDRsAllowed = append(mlc.CIDRsAllowed, net.IPNet{IP: self, Mask: net.CIDRMask(bits, bits)})
	}

	ml, err := memberlist.Create(mlc)
	if err != nil {
		_ = transport.Shutdown()
		return nil, fmt.Errorf("cluster: starting memberlist on %s:%d: %w", cfg.BindAddr, port, err)
	}
	c.ml = ml
	ln := ml.LocalNode()
	c.mu.Lock()
	c.selfAddr = ln.Address()
	c.mu.Unlock()

	c.wg.Add(2)
	go c.sender()
	go c.rejoinLoop()

	if len(peers) > 0 {
		c.join(peers, true)
	}
	lg.WithFields(logrus.Fields{"addr": c.selfAddr, "replicas": replicas, "quorum": c.quorum, "quorum_lease": lease,
		"encrypted": len(cfg.SecretKey) > 0, "restrict_cidrs": cfg.RestrictCIDRs}).Info("cluster replica started")
	return c, nil
}

func newNetTransport(cfg Config, l *log.Logger) (*memberlist.NetTransport, error) {
	ntc := &memberlist.NetTransportConfig{BindAddrs: []string{cfg.BindAddr}, BindPort: cfg.BindPort, Logger: l}
	tries := 1
	if cfg.BindPort == 0 {
		tries = 10 // TCP and UDP pick the port separately: retry collisions
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		if nt, err = memberlist.NewNetTransport(ntc); err == nil {
			return nt, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("cluster: binding %s port %d (TCP and UDP): %w; pick a free port or the right --cluster-bind address", cfg.BindAddr, cfg.BindPort, err)
}

// join joins peers; first==true logs at Warn when nobody is reachable.
func (c *Cluster) join(peers []string, first bool) {
	n, err := c.ml.Join(peers)
	switch {
	case n == 0 && first:
		c.log.WithError(err).WithField("peers", peers).Warn("no cluster peer reachable; running alone until a peer joins")
	case n == 0:
		c.log.WithError(err).WithField("peers", peers).Debug("re-join: no peer reachable")
	case err != nil:
		c.log.WithError(err).WithFields(logrus.Fields{"peers": peers, "joined": n}).Warn("some cluster peers unreachable")
	default:
		c.log.WithFields(logrus.Fields{"peers": peers, "joined": n}).Info("joined cluster peers")
	}
}

// rejoinLoop re-joins Join peers that are not live while fewer than Replicas
// members are live (peer down at start, healed partition).
func (c *Cluster) rejoinLoop() {
	defer c.wg.Done()
	if len(c.peers) == 0 {
		return
	}
	t := time.NewTicker(c.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.RLock()
		if c.left || c.closed || len(c.liveNamesLocked()) >= c.replicas {
			c.mu.RUnlock()
			continue
		}
		have := map[string]bool{}
		for _, m := range c.live {
			have[m.addr] = true
		}
		var missing []string
		for _, p := range c.peers {
			if !have[p] {
				missing = append(missing, p)
			}
		}
		c.mu.RUnlock()
		if len(missing) > 0 {
			c.join(missing, false)
		}
	}
}

// Name returns this replica's name.
func (c *Cluster) Name() string { return c.name }

// Changes returns a channel (buffer 1) that receives a coalesced signal on
// any membership change or state change (remote, or local via SetLocal /
// ObserveGeneration) that could change ownership, quorum, the max generation
// or the newest revision. Receivers re-read the view after each signal. The
// channel is never closed; senders never block.
func (c *Cluster) Changes() <-chan struct{} { return c.changes }

func (c *Cluster) signal() {
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

// SetLocal replaces this replica's gossiped state. s.MaxGeneration is raised
// to MaxGeneration() if lower (the generation never decreases). Calling it
// with an unchanged state is a no-op, so it is cheap to call often. The new
// state is broadcast by gossip (or sent over TCP to every member when it is
// too large for a gossip packet) and repaired by push/pull. Never blocks on
// the network.
func (c *Cluster) SetLocal(s LocalState) {
	s.Connected = normalizeConnected(s.Connected)
	s.Master = normalizeConnected(s.Master)
	c.mu.Lock()
	s.ReplicaSet = slices.Clone(c.setNames)
	s.Protocol = c.proto.max
	if s.MaxGeneration < c.observedGen {
		s.MaxGeneration = c.observedGen
	}
	c.observedGen = s.MaxGeneration
	if stateEqual(&c.self.State, &s) {
		c.mu.Unlock()
		return
	}
	c.self.State = s
	c.self.Seq++
	c.connSets[c.name] = toSet(s.Connected)
	c.mu.Unlock()
	c.signal()
	c.publish()
}

// ObserveGeneration raises this replica's MaxGeneration to g (no-op if not
// higher) and gossips it.
func (c *Cluster) ObserveGeneration(g uint64) {
	c.mu.Lock()
	if g <= c.observedGen && g <= c.self.State.MaxGeneration {
		c.mu.Unlock()
		return
	}
	c.observedGen = max(c.observedGen, g)
	c.self.State.MaxGeneration = c.observedGen
	c.self.Seq++
	c.mu.Unlock()
	c.signal()
	c.publish()
}

// publish queues our current state for gossip (or reliable send).
func (c *Cluster) publish() {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	msg := c.proto.encodeStateMsg(&c.self)
	big := len(msg) > maxBroadcastSize
	if big {
		c.sendAll = true
	}
	c.mu.Unlock()
	if big {
		// The queue only ever holds our own state: drop any older small
		// broadcast so it cannot arrive after the big one.
		c.bq.Reset()
		c.wakeSender()
		return
	}
	c.bq.QueueBroadcast(&stateBroadcast{msg: msg})
}

func (c *Cluster) wakeSender() {
	select {
	case c.sendWake <- struct{}{}:
	default:
	}
}

// sender delivers our state over TCP to new members and, for states too big
// for gossip, to every member.
func (c *Cluster) sender() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.sendWake:
		}
		c.mu.Lock()
		var nodes []memberlist.Node
		for name, m := range c.live {
			if c.sendAll || c.sendTo[name] {
				nodes = append(nodes, m.node)
			}
		}
		c.sendAll = false
		clear(c.sendTo)
		msg := c.proto.encodeStateMsg(&c.self)
		c.mu.Unlock()
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Add(1)
			go func(n *memberlist.Node) {
				defer wg.Done()
				if err := c.ml.SendReliable(n, msg); err != nil {
					c.log.WithError(err).WithField("peer", n.Name).Debug("sending replica state failed (push/pull will repair)")
				}
			}(&nodes[i])
		}
		wg.Wait()
	}
}

// Owner returns the owner of dpid: the rendezvous hash of dpid over the live
// members (incl. this one) that report dpid in Connected, or over all live
// members if none does. false if there are no members (after Leave or
// Shutdown).
func (c *Cluster) Owner(dpid uint64) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	o := c.ownerLocked(dpid)
	return o, o != ""
}

// liveNamesLocked returns the live members of the replica set (this one
// included unless it left).
func (c *Cluster) liveNamesLocked() []string {
	if c.closed {
		return nil
	}
	names := make([]string, 0, len(c.live)+1)
	if !c.left && c.memberLocked(c.name) {
		names = append(names, c.name)
	}
	for n := range c.live {
		if c.memberLocked(n) && c.listsMeLocked(n) && !c.incompat[n] {
			names = append(names, n)
		}
	}
	return names
}

// listsMeLocked reports whether member n, as far as its gossiped state
// tells, counts this replica in its replica set: a member whose set leaves
// us out (it refuses us) is not counted by us either. A member whose state
// has not arrived yet, or that gossips no set (an older vpcflow), counts.
func (c *Cluster) listsMeLocked(n string) bool {
	if c.open {
		return true
	}
	e := c.states[n]
	if e == nil || len(e.State.ReplicaSet) == 0 {
		return true
	}
	return slices.Contains(e.State.ReplicaSet, c.name)
}

// memberLocked reports whether name is in the replica set.
func (c *Cluster) memberLocked(name string) bool {
	if c.open {
		return true
	}
	_, ok := c.set[name]
	return ok
}

func (c *Cluster) ownerLocked(dpid uint64) string {
	names := c.liveNamesLocked()
	best, bestW, found := "", uint64(0), false
	for pass := 0; pass < 2 && !found; pass++ {
		for _, n := range names {
			if pass == 0 {
				if _, ok := c.connSets[n][dpid]; !ok {
					continue
				}
			}
			w := weight(dpid, n)
			if !found || w > bestW || (w == bestW && n < best) {
				best, bestW, found = n, w, true
			}
		}
	}
	return best
}

// IsOwner reports whether this replica owns dpid and may act on it:
// Owner(dpid) is this replica AND HasQuorum().
func (c *Cluster) IsOwner(dpid uint64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.hasQuorumLocked(time.Now()) && c.ownerLocked(dpid) == c.name
}

// HasQuorum reports whether this replica sees a strict majority of the
// replica set alive (itself included, if it is in the set): alive >=
// Replicas/2+1. A peer counts while it is a live member of the replica set
// and evidence from it (a probe ack, a state message) arrived within the
// quorum lease (QuorumLease): a replica cut off by a partition loses its
// quorum at most lease + ProbeInterval after the cut. (memberlist v0.7.0
// never sets Node.State, so a "suspect" state cannot be read from it.)
// Always false after Leave or Shutdown.
func (c *Cluster) HasQuorum() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.hasQuorumLocked(time.Now())
}

// hasQuorumLocked: the memberlist view is never consulted here (lock order,
// see the package doc).
func (c *Cluster) hasQuorumLocked(now time.Time) bool {
	if c.closed || c.left {
		return false
	}
	n := 0
	for _, name := range c.liveNamesLocked() {
		if name == c.name || now.Sub(c.heard[name]) <= c.lease {
			n++
		}
	}
	return n >= c.quorum
}

// HeardFromQuorumSince reports whether, counting this replica, a quorum of
// the replica set has given evidence of life after t (a probe ack or a
// state message): a replica that is cut off cannot, so it cannot lift a
// re-claim back-off early (see the controller).
func (c *Cluster) HeardFromQuorumSince(t time.Time) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.hasQuorumLocked(time.Now()) {
		return false
	}
	n := 0
	for _, name := range c.liveNamesLocked() {
		if name == c.name || c.heard[name].After(t) {
			n++
		}
	}
	return n >= c.quorum
}

// QuorumLease is how long a peer counts as alive after the last evidence.
func (c *Cluster) QuorumLease() time.Duration { return c.lease }

// touchLocked records evidence that a peer is alive and reaches us.
func (c *Cluster) touchLocked(name string) {
	if name != c.name {
		c.heard[name] = time.Now()
	}
}

// pingDelegate records every successful probe of a peer (the quorum lease).
// NotifyPingComplete runs without memberlist's node lock.
type pingDelegate struct{ c *Cluster }

func (p *pingDelegate) AckPayload() []byte { return nil }

func (p *pingDelegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	p.c.mu.Lock()
	p.c.touchLocked(other.Name)
	p.c.mu.Unlock()
}

// Quorum returns the quorum size and the replica-set size it derives from.
func (c *Cluster) Quorum() (quorum, replicas int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.quorum, c.replicas
}

// MaxGeneration returns the highest OpenFlow role generation id this
// replica has observed locally or seen gossiped by any member (including
// members that have since died). It never decreases.
func (c *Cluster) MaxGeneration() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.observedGen
}

// NewestRevision returns the highest blueprint revision among the live
// members (this one included) and its hash. If members report different
// hashes for that revision, the lexicographically greatest hash is returned
// (Members shows who reports what).
func (c *Cluster) NewestRevision() (uint32, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var rev uint32
	hash := ""
	for i, n := range c.liveNamesLocked() {
		s := c.stateLocked(n)
		if s == nil {
			continue
		}
		if i == 0 || s.Revision > rev || (s.Revision == rev && s.Hash > hash) {
			rev, hash = s.Revision, s.Hash
		}
	}
	return rev, hash
}

func (c *Cluster) stateLocked(name string) *LocalState {
	if name == c.name {
		return &c.self.State
	}
	if e := c.states[name]; e != nil {
		return &e.State
	}
	return nil
}

// Members returns the live members sorted by name, with Owned filled for
// every dpid reported connected by some live member.
func (c *Cluster) Members() []Member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	names := c.liveNamesLocked()
	slices.Sort(names)
	idx := map[string]int{}
	out := make([]Member, len(names))
	all := map[uint64]struct{}{}
	for i, n := range names {
		idx[n] = i
		m := Member{Name: n, Self: n == c.name}
		if m.Self {
			m.Addr = c.selfAddr
		} else {
			m.Addr = c.live[n].addr
		}
		if s := c.stateLocked(n); s != nil {
			m.State = *s
			m.State.Connected = slices.Clone(s.Connected)
			m.State.Master = slices.Clone(s.Master)
		}
		for d := range c.connSets[n] {
			all[d] = struct{}{}
		}
		out[i] = m
	}
	for d := range all {
		if o := c.ownerLocked(d); o != "" {
			out[idx[o]].Owned = append(out[idx[o]].Owned, d)
		}
	}
	for i := range out {
		slices.Sort(out[i].Owned)
	}
	return out
}

// Leave gracefully leaves the cluster: peers see this replica gone in about
// one gossip round (~0.2 s) and take over its bridges. From the call on,
// HasQuorum and IsOwner are false. Blocks up to timeout waiting for the
// leave message to be sent. Call Shutdown afterwards.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("cluster: Leave after Shutdown")
	}
	c.left = true
	c.mu.Unlock()
	c.signal()
	if err := c.ml.Leave(timeout); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	return nil
}

// Shutdown stops gossip without telling peers (they detect the failure as
// for a crash: use Leave first for a graceful handover). Idempotent.
func (c *Cluster) Shutdown() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	err := c.ml.Shutdown()
	c.wg.Wait()
	c.mu.Lock()
	clear(c.live)
	c.numNodes.Store(1)
	c.mu.Unlock()
	c.signal()
	if err != nil {
		return fmt.Errorf("cluster: shutdown: %w", err)
	}
	return nil
}

// mergeEntry applies a remote state if newer; it returns whether anything
// observable changed. Caller holds c.mu.
func (c *Cluster) mergeEntryLocked(e *stateEntry) bool {
	if e.Name == c.name || !c.memberLocked(e.Name) {
		// A non-member's state influences nothing: not the generation,
		// the ownership or the newest revision.
		return false
	}
	changed := false
	if e.State.MaxGeneration > c.observedGen {
		c.observedGen = e.State.MaxGeneration
		changed = true
	}
	old := c.states[e.Name]
	if old != nil && !e.newerThan(old) {
		return changed
	}
	e.State.Connected = normalizeConnected(e.State.Connected)
	e.State.Master = normalizeConnected(e.State.Master)
	c.states[e.Name] = e
	c.connSets[e.Name] = toSet(e.State.Connected)
	if _, live := c.live[e.Name]; live && (old == nil || !stateEqual(&old.State, &e.State)) {
		changed = true
	}
	return changed
}

func stateEqual(a, b *LocalState) bool {
	return a.Revision == b.Revision && a.Hash == b.Hash && a.MaxGeneration == b.MaxGeneration &&
		a.OpenFlow == b.OpenFlow && slices.Equal(a.Connected, b.Connected) && a.Version == b.Version && a.Origin == b.Origin &&
		slices.Equal(a.Master, b.Master) && slices.Equal(a.ReplicaSet, b.ReplicaSet) && a.BuildVersion == b.BuildVersion && a.Protocol == b.Protocol
}

func toSet(ds []uint64) map[uint64]struct{} {
	m := make(map[uint64]struct{}, len(ds))
	for _, d := range ds {
		m[d] = struct{}{}
	}
	return m
}

func nodeAddr(n *memberlist.Node) string {
	ip := n.Addr.String()
	return net.JoinHostPort(ip, strconv.Itoa(int(n.Port)))
}

// delegate implements memberlist.Delegate. Its methods run on memberlist
// goroutines: they take c.mu briefly and never block otherwise.
type delegate struct{ c *Cluster }

// NodeMeta advertises this replica's protocol range (protocol.go).
func (d *delegate) NodeMeta(limit int) []byte {
	m := d.c.proto.meta()
	if len(m) > limit {
		return nil
	}
	return m
}

func (d *delegate) NotifyMsg(b []byte) {
	if d.c.dist.handle(b) {
		return // a blueprint transfer message
	}
	e, err := d.c.proto.decodeStateMsg(b)
	if err != nil {
		d.c.refusedMessage(err, "ignoring cluster message")
		return
	}
	d.c.mu.Lock()
	d.c.readable(e.Name)
	if _, live := d.c.live[e.Name]; live && d.c.memberLocked(e.Name) {
		d.c.touchLocked(e.Name) // a state message comes from its replica itself
	}
	changed := d.c.mergeEntryLocked(e)
	d.c.mu.Unlock()
	if changed {
		d.c.signal()
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.c.bq.GetBroadcasts(overhead, limit)
}

// LocalState sends our own state and the states of the members we see live.
func (d *delegate) LocalState(join bool) []byte {
	c := d.c
	c.mu.RLock()
	defer c.mu.RUnlock()
	es := []*stateEntry{&c.self}
	for n := range c.live {
		if e := c.states[n]; e != nil {
			es = append(es, e)
		}
	}
	return c.proto.encodePushPull(es)
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	es, err := d.c.proto.decodePushPull(buf)
	if err != nil {
		d.c.refusedMessage(err, "ignoring cluster push/pull state")
		return
	}
	changed := false
	d.c.mu.Lock()
	if len(es) > 0 {
		d.c.readable(es[0].Name)
		if _, live := d.c.live[es[0].Name]; live && d.c.memberLocked(es[0].Name) {
			d.c.touchLocked(es[0].Name) // the sender's own state comes first
		}
	}
	for _, e := range es {
		if d.c.mergeEntryLocked(e) {
			changed = true
		}
	}
	d.c.mu.Unlock()
	if changed {
		d.c.signal()
	}
}

// events implements memberlist.EventDelegate and ConflictDelegate. Called
// with memberlist's node lock held: only c.mu is taken, never the reverse.
type events struct{ c *Cluster }

func (ev *events) NotifyJoin(n *memberlist.Node) {
	c := ev.c
	if n.Name == c.name {
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.touchLocked(n.Name)
	c.live[n.Name] = liveMember{node: *n, addr: nodeAddr(n)}
	c.numNodes.Store(int32(len(c.live) + 1))
	c.sendTo[n.Name] = true // give the newcomer our state right away
	c.mu.Unlock()
	c.log.WithFields(logrus.Fields{"peer": n.Name, "addr": nodeAddr(n)}).Info("cluster member joined")
	c.wakeSender()
	c.signal()
}

func (ev *events) NotifyLeave(n *memberlist.Node) {
	c := ev.c
	if n.Name == c.name {
		return
	}
	c.mu.Lock()
	_, was := c.live[n.Name]
	delete(c.live, n.Name)
	delete(c.states, n.Name)
	delete(c.connSets, n.Name)
	delete(c.heard, n.Name)
	delete(c.incompat, n.Name)
	c.numNodes.Store(int32(len(c.live) + 1))
	c.mu.Unlock()
	if was {
		c.log.WithField("peer", n.Name).Info("cluster member left or failed")
		c.signal()
	}
}

func (ev *events) NotifyUpdate(n *memberlist.Node) {
	c := ev.c
	if n.Name == c.name {
		return
	}
	c.mu.Lock()
	if _, ok := c.live[n.Name]; ok {
		c.live[n.Name] = liveMember{node: *n, addr: nodeAddr(n)}
	}
	c.mu.Unlock()
	c.signal()
}

func (ev *events) NotifyConflict(existing, other *memberlist.Node) {
	ev.c.log.WithFields(logrus.Fields{"name": existing.Name, "existing": nodeAddr(existing), "other": nodeAddr(other)}).
		Warn("two cluster replicas use the same name: give each replica a unique name")
}

// stateBroadcast is our own state queued for gossip; a newer one replaces
// an older one in the queue.
type stateBroadcast struct{ msg []byte }

func (b *stateBroadcast) Invalidates(other memberlist.Broadcast) bool {
	_, ok := other.(*stateBroadcast)
	return ok
}
func (b *stateBroadcast) Name() string    { return "vpcflow-state" }
func (b *stateBroadcast) Message() []byte { return b.msg }
func (b *stateBroadcast) Finished()       {}
