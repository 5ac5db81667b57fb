package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// bridge is one connected switch and its reconcile loop. One goroutine per
// bridge runs the loop; a slow switch only delays itself.
type bridge struct {
	c    *Controller
	conn *OFConn
	dpid uint64
	log  logrus.FieldLogger

	kickCh chan string
	// preempt carries a token with every "reload" kick: a drift check still
	// reading the table gives way to it (see preemptible).
	preempt chan struct{}
	// gate is the reload gate of the current loop turn (run's goroutine only).
	gate *sendGate
	// identity is the switch's TLS certificate name ("" without TLS).
	identity string
	// meterOK: the drop-logging meter is installed on this connection.
	meterOK bool
	// claimedGen is the generation id of our last granted MASTER claim.
	claimedGen uint64
	// confirmed is the plan this connection's table was last proven to
	// hold (a converged full reconcile, or an acknowledged delta on top of
	// one), with the port map it was bound to; nil when unknown. A reload
	// then sends only what changed between confirmed and the new plan,
	// without dumping the table (reconcileDelta). Used by the run goroutine
	// only.
	confirmed      *flows.Compiled
	confirmedPorts string
	// clean fingerprints the table the last converged full reconcile read
	// (driftfp.go): a drift check that finds it unchanged decodes only the
	// counters. Run goroutine only.
	clean cleanTable
	// revisionChecked: a read of this connection's table found no revision
	// newer than the policy's (the revision fence, fence.go); provisioning
	// waits for it.
	revisionChecked atomic.Bool

	mu sync.Mutex
	st BridgeStatus
}

// BridgeStatus is what /status reports per bridge.
type BridgeStatus struct {
	DatapathID     string   `json:"datapath_id"`
	Host           string   `json:"host,omitempty"`
	Known          bool     `json:"known"`
	Connected      bool     `json:"connected"`
	Remote         string   `json:"remote,omitempty"`
	Role           string   `json:"role,omitempty"`
	GenerationID   uint64   `json:"generation_id,omitempty"`
	Converged      bool     `json:"converged"`
	FlowsIntended  int      `json:"flows_intended"`
	FlowsInstalled int      `json:"flows_installed"`
	Revision       uint32   `json:"revision"`
	MissingPorts   []string `json:"missing_ports,omitempty"`
	// UnmanagedPorts are ports on the bridge the blueprint does not name:
	// they get no flows (everything from them is dropped by classify).
	UnmanagedPorts []string  `json:"unmanaged_ports,omitempty"`
	LastReconcile  time.Time `json:"last_reconcile,omitempty"`
	LastChanges    int       `json:"last_changes"`
	FlowModsSent   uint64    `json:"flow_mods_sent"`
	Reconciles     uint64    `json:"reconciles"`
	LastError      string    `json:"last_error,omitempty"`
	ConnectedSince time.Time `json:"connected_since,omitempty"`
	// Owner is the replica that owns the bridge (cluster mode).
	Owner string `json:"owner,omitempty"`
	// Standby says why this replica does not write to the bridge.
	Standby string `json:"standby,omitempty"`
	// InstalledRevision is the highest blueprint revision carried by the
	// bridge's vpcflow cookies at this replica's last full read.
	InstalledRevision uint32 `json:"installed_revision"`
	// Fenced: that revision is newer than the enforced one, so this replica
	// writes nothing to the bridge until a blueprint at least as new is
	// loaded (Standby says so; see fence.go).
	Fenced bool `json:"fenced,omitempty"`
}

func newBridge(c *Controller, conn *OFConn) *bridge {
	dpid := conn.DatapathID()
	b := &bridge{c: c, conn: conn, dpid: dpid, kickCh: make(chan string, 1),
		preempt: make(chan struct{}, 1),
		log:     c.log.WithFields(logrus.Fields{"bridge": fmt.Sprintf("%016x", dpid), "remote": conn.RemoteAddr()})}
	b.st = BridgeStatus{DatapathID: fmt.Sprintf("%016x", dpid), Connected: true, Remote: conn.RemoteAddr(), ConnectedSince: time.Now()}
	return b
}

func (b *bridge) status() BridgeStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.st
	s.MissingPorts = append([]string(nil), b.st.MissingPorts...)
	return s
}

func (b *bridge) update(f func(s *BridgeStatus)) {
	b.mu.Lock()
	f(&b.st)
	b.mu.Unlock()
}

// kick asks the loop to reconcile (coalesced).
func (b *bridge) kick(reason string) {
	select {
	case b.kickCh <- reason:
	default:
	}
	if reason == "reload" {
		select {
		case b.preempt <- struct{}{}:
		default:
		}
	}
}

// errPreempted: a drift check stopped reading because a reload arrived. It
// wrote nothing, so the table is as it was; the reload goes next and the
// drift check runs again soon (driftRetry).
var errPreempted = errors.New("drift check preempted by a reload")

// errStalePolicy: a reconcile found a newer blueprint loaded than the one
// it computed with; it wrote nothing and the bridge's loop runs again.
var errStalePolicy = errors.New("a newer blueprint was loaded during the reconcile")

// testHookDecoded, when set by a test, runs in a drift check after the
// table is decoded, before it may be preempted for the last time.
var testHookDecoded func(readCtx context.Context)

// driftRetry is how soon a preempted drift check runs again.
const driftRetry = 2 * time.Second

// preemptible derives from ctx a context that a reload kick cancels (cause
// errPreempted). A periodic drift check re-reads a whole table (5,800 flows
// take the switch and the controller tens of ms); a reload arriving
// meanwhile would otherwise wait for it, and with gathered writes so would
// every other bridge of the reload. stop ends the watch: call it before
// anything is written.
func (b *bridge) preemptible(ctx context.Context) (_ context.Context, stop func()) {
	pctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		select {
		case <-b.preempt:
			cancel(errPreempted)
		case <-done:
		}
	}()
	var once sync.Once
	return pctx, func() { once.Do(func() { close(done) }) }
}

// hostFor resolves which host this datapath is: the current blueprint's, or
// (for a host removed from the blueprint) the last known one, in which case
// only its management flows are kept.
func (b *bridge) hostFor(p *policy) (h *flows.Host, removed bool) {
	if h := p.bp.HostByDPID(b.dpid); h != nil {
		return h, false
	}
	b.c.mu.Lock()
	defer b.c.mu.Unlock()
	if old, ok := b.c.knownHosts[b.dpid]; ok {
		return &old, true
	}
	return nil, false
}

func (b *bridge) run(ctx context.Context) {
	defer b.update(func(s *BridgeStatus) { s.Connected = false; s.Converged = false })
	b.log.Info("switch connected")
	go b.logDrops(ctx)
	master := false
	// After the switch demoted us, do not re-claim while another live
	// replica reports MASTER of this bridge, for at most reclaimBackoff. The
	// back-off lifts early when the membership changed since (e.g. the
	// replica that took the bridge died: a claim is then failover, not a
	// fight), or when nobody reports MASTER of the bridge once reclaimGrace
	// has passed (time for the new master's gossip to arrive) and a quorum
	// has been heard from since the demotion (a replica cut off by a
	// partition cannot hear one, so it never lifts early). Without the
	// early lift an owner demoted at start-up by a replica whose view was
	// not settled left the bridge without master for the whole back-off.
	var claimBlockedUntil, blockedAt time.Time
	var blockedMembers string
	blocked := func() bool {
		now := time.Now()
		if !now.Before(claimBlockedUntil) {
			return false
		}
		if b.c.memberKey() != blockedMembers {
			// The membership changed (the replica that took the bridge
			// died: a claim now is failover, not a fight), but only with
			// evidence from a quorum since the demotion. A replica cut off
			// by a partition sees its peers fail one by one while its lease
			// still counts the others: under load one re-claimed MASTER in
			// that window (TestClusterPartition).
			return !b.c.heardFromQuorumSince(blockedAt)
		}
		if _, ok := b.c.masterElsewhere(b.dpid); ok {
			return true
		}
		return now.Sub(blockedAt) < reclaimGrace || !b.c.heardFromQuorumSince(blockedAt)
	}
	block := func() {
		blockedAt = time.Now()
		claimBlockedUntil = blockedAt.Add(b.c.reclaimBackoff())
		blockedMembers = b.c.memberKey()
	}
	// blockedRetry is when a blocked claim is reconsidered (cluster changes
	// also kick the loop).
	blockedRetry := func() <-chan time.Time {
		d := min(time.Until(claimBlockedUntil), reclaimGrace)
		return time.After(max(d, 10*time.Millisecond))
	}
	// Drift checks re-read whole tables: jitter each bridge's period by
	// ±10 %, and start each bridge's cycle at a uniformly random phase, so
	// bridges that connected together (a controller restart, a failover)
	// do not dump in waves.
	driftEvery := func() time.Duration {
		d := b.c.opts.DriftInterval
		return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
	}
	drift := time.NewTimer(driftFirst(b.c.opts.DriftInterval))
	defer drift.Stop()
	var retry <-chan time.Time
	reason := "connect"
	for {
		if reason == "reload" {
			// This turn serves the reload the token was sent with: a drift
			// check later must not take it as a new one.
			select {
			case <-b.preempt:
			default:
			}
		}
		// The latest reload's gate: reconcileDelta arrives and waits at it;
		// every other path through this turn arrives below.
		b.gate = b.c.gate.Load()
		p := b.c.policy()
		h, removed := b.hostFor(p)
		if h == nil {
			b.update(func(s *BridgeStatus) { s.Known, s.Host, s.Converged = false, "", false })
			err := b.reconcileOrphan(ctx, p, master, reason)
			if errors.Is(err, errNeedMaster) {
				// Guest flows of a removed host to delete: only the owner
				// (MASTER) may. Nothing is claimed for a truly unknown datapath.
				want, why := b.c.wantMaster(b.dpid, p)
				b.update(func(s *BridgeStatus) { s.Standby = why })
				err = nil
				if want && !blocked() && b.c.unsettled() == "" {
					if err = b.claimMaster(ctx); err == nil {
						master = true
						err = b.reconcileOrphan(ctx, p, master, reason)
					}
				}
			}
			if errors.Is(err, errFenced) {
				err, retry = nil, nil // a reload or a drift check looks again
			}
			if err != nil {
				if b.conn.Err() != nil {
					return
				}
				b.log.WithError(err).Warn("orphan reconcile failed; will retry")
				retry = time.After(b.c.opts.RetryInterval)
			}
		} else {
			wasKnown := b.status().Known
			b.update(func(s *BridgeStatus) { s.Known, s.Host = true, h.Name })
			if !wasKnown {
				// Gossip the connected set now that this bridge counts as known
				// (ownership prefers replicas a bridge is connected to).
				b.c.publishState()
			}
			want, why := b.c.wantMaster(b.dpid, p)
			b.update(func(s *BridgeStatus) { s.Owner = b.c.ownerOf(b.dpid) })
			handover := "" // the replica a planned move hands this bridge to
			if !want && b.conn.Role() == OFRoleMaster {
				handover = b.c.handoverTo(b.dpid, why)
			}
			switch {
			case want && !master && blocked():
				retry = blockedRetry()
				if who, ok := b.c.masterElsewhere(b.dpid); ok {
					b.update(func(s *BridgeStatus) { s.Standby = "demoted by the switch: replica " + who + " holds MASTER" })
				}
			case want && !master && b.c.opts.Cluster != nil && b.c.opts.ClaimSettle > 0 &&
				time.Since(b.status().ConnectedSince) < b.c.opts.ClaimSettle:
				// A fresh connection: the other replicas may not have heard
				// of theirs yet, and an owner computed now may be wrong.
				wait := b.c.opts.ClaimSettle - time.Since(b.status().ConnectedSince)
				b.update(func(s *BridgeStatus) {
					s.Standby = "connection settling: claiming in " + wait.Round(time.Millisecond).String()
				})
				retry = time.After(wait)
			case want && !master && b.c.unsettled() != "":
				// No claim before the state of every live replica is known:
				// ownership computed from a partial view may be wrong, and a
				// wrong claim demotes the real owner. A cluster change kicks
				// the loop when the state arrives.
				who := b.c.unsettled()
				b.update(func(s *BridgeStatus) { s.Standby = "waiting for the state of replica " + who })
				retry = time.After(b.c.opts.RetryInterval)
			case want && !master:
				if err := b.claimMaster(ctx); err != nil {
					if errors.Is(err, ErrStaleGeneration) {
						b.log.WithError(err).Warn("MASTER claim refused as stale: another replica holds a newer generation; not writing")
					} else {
						b.log.WithError(err).Error("cannot take the MASTER role")
					}
					b.update(func(s *BridgeStatus) { s.LastError = err.Error(); s.Converged = false })
					retry = time.After(b.c.opts.RetryInterval)
				} else {
					master = true
				}
			case !want && why == noQuorum:
				// Stop writing at once; keep the role (see wantMaster).
				if master {
					b.log.Warn("quorum lost: stopped writing to this bridge")
				}
				master = false
				b.update(func(s *BridgeStatus) { s.Converged = false; s.Standby = why })
			case handover != "":
				// A planned move (a replica that connected later outranks us
				// in the hash, or ours came back): stop writing at once but
				// keep the role until the new owner's claim demotes us, so
				// the switch is never without a master while it settles.
				to := handover
				if master {
					b.log.WithField("to", to).Info("ownership moved: stopped writing; keeping MASTER until the new owner claims")
				}
				master = false
				b.update(func(s *BridgeStatus) {
					s.Converged = false
					s.Standby = "handing over to replica " + to + ": keeping MASTER, not writing, until it claims"
				})
			case !want:
				if master || b.conn.Role() != OFRoleSlave {
					if err := b.becomeSlave(ctx, why); err != nil {
						b.log.WithError(err).Warn("cannot take the SLAVE role")
						retry = time.After(b.c.opts.RetryInterval)
					}
				}
				master = false
				b.update(func(s *BridgeStatus) { s.Converged = false; s.LastError = ""; s.Standby = why })
			}
			if master {
				b.update(func(s *BridgeStatus) {
					if !s.Fenced {
						s.Standby = ""
					}
				})
				if err := b.reconcile(ctx, p, h, removed, reason); errors.Is(err, errPreempted) {
					b.log.Debug("drift check preempted by a reload; retrying in " + driftRetry.String())
					drift.Reset(driftRetry)
				} else if errors.Is(err, errFenced) {
					retry = nil // nothing written: a reload or a drift check looks again
				} else if errors.Is(err, errStalePolicy) {
					b.log.Info("a newer blueprint was loaded during this reconcile: nothing written, reconciling with it")
					retry = time.After(0)
				} else if err != nil {
					if errors.Is(err, context.Canceled) || b.conn.Err() != nil {
						return
					}
					if errors.Is(err, ErrIsSlave) {
						b.log.WithError(err).Warn("switch refused our writes: no longer MASTER; stopped writing")
						master = false
						block()
					} else {
						b.log.WithError(err).Error("reconcile failed; will retry")
					}
					b.update(func(s *BridgeStatus) { s.LastError = err.Error(); s.Converged = false })
					retry = time.After(b.c.opts.RetryInterval)
				} else {
					retry = nil
					b.observeApplied(p, removed) // metrics.go
				}
			}
		}
		b.gate.arrive(b.dpid)
		select {
		case <-ctx.Done():
			return
		case <-b.conn.Done():
			b.log.WithError(b.conn.Err()).Info("switch disconnected")
			return
		case reason = <-b.kickCh:
		case <-b.conn.PortEvents():
			reason = "port change"
			b.settlePorts(ctx)
		case st := <-b.conn.RoleStatus():
			if b.claimedGen != 0 && generationNewer(b.claimedGen, st.GenerationID) {
				// Queued before our newer MASTER claim was granted: it
				// describes an older state (the switch's answer to our claim
				// is newer). Acting on it would undo the claim. The turn it
				// starts re-reads the table, as after any role event.
				b.log.WithFields(logrus.Fields{"role": st.Role.String(), "generation": st.GenerationID, "claimed": b.claimedGen}).
					Info("ignored a role status older than our MASTER claim")
				reason = "role change"
				break
			}
			b.log.WithFields(logrus.Fields{"role": st.Role.String(), "generation": st.GenerationID}).Warn("role changed by the switch: stopped writing")
			b.c.observeGeneration(st.GenerationID)
			// Another controller may write the table from now on: prove it
			// again (and pass the revision fence) before any incremental write.
			b.confirmed = nil
			b.update(func(s *BridgeStatus) { s.Role, s.GenerationID = st.Role.String(), st.GenerationID })
			b.c.metrics.roles.WithLabelValues(b.label(), st.Role.String()).Inc()
			if st.Role != OFRoleMaster {
				master = false
				b.update(func(s *BridgeStatus) { s.Converged = false })
				// Do not fight: another replica claimed the bridge. Re-claim only
				// after a back-off, and only if we still own it then.
				block()
				b.c.publishState()
			}
			reason = "role change"
		case <-drift.C:
			drift.Reset(driftEvery())
			reason = "drift check"
		case <-retry:
			reason = "retry"
		}
	}
}

// driftFirst is a bridge's first drift-check delay after it connects:
// uniform over [d/10, d+d/10). With the old first period (d ± 10 %) the 200
// bridges of a restarted controller checked within a 6 s window every 30 s
// (their phases only slowly drift apart), and each wave of 200 table dumps
// (18,000 flows each with a large policy) took the switches' and the
// controller's CPU for seconds: a blueprint change landing in a wave waited
// 5-10x longer (docs/performance.md §3). Spread, the same checks cost a
// steady d/200 apart.
func driftFirst(d time.Duration) time.Duration {
	return d/10 + time.Duration(rand.Int64N(int64(d)+1))
}

// reclaimGrace is how long a demoted replica waits, at least, for the new
// master's gossip before it may lift its re-claim back-off early.
const reclaimGrace = 300 * time.Millisecond

// portSettle is how long a port change must be quiet before the bridge
// reconciles; portSettleMax bounds the wait under a stream of changes.
const (
	portSettle    = 150 * time.Millisecond
	portSettleMax = time.Second
)

// settlePorts waits until the bridge's ports stop changing: Open vSwitch
// reports a reconfigured port (e.g. an uplink NIC moved into a bond by
// `host apply`, a VM's tap re-plugged) as a delete then an add, and a
// reconcile between the two would remove the flows of a port that is about
// to come back.
func (b *bridge) settlePorts(ctx context.Context) {
	quiet := time.NewTimer(portSettle)
	defer quiet.Stop()
	limit := time.NewTimer(portSettleMax)
	defer limit.Stop()
	for {
		select {
		case <-b.conn.PortEvents():
			quiet.Reset(portSettle) // Go ≥ 1.23: Reset drops a pending expiry
		case <-quiet.C:
			return
		case <-limit.C:
			return
		case <-ctx.Done():
			return
		case <-b.conn.Done():
			return
		}
	}
}

// claimMaster reads the switch's generation id and claims MASTER with a
// generation above both it and every id the cluster has gossiped, so the
// claim id only grows cluster-wide and survives replica restarts.
func (b *bridge) claimMaster(ctx context.Context) error {
	// Whoever held the bridge meanwhile may have written: prove the table
	// again before sending deltas.
	b.confirmed = nil
	ctx, cancel := context.WithTimeout(ctx, b.c.opts.OpTimeout)
	defer cancel()
	role, cur, err := b.conn.RequestRole(ctx, OFRoleNoChange, 0)
	if err != nil {
		return fmt.Errorf("read role: %w", err)
	}
	if role == OFRoleMaster && b.claimedGen != 0 && cur == b.claimedGen {
		// Still MASTER under our own claim (e.g. the quorum came back before
		// anyone else claimed): resume without a new claim.
		b.log.WithField("generation", cur).Info("still MASTER under our own claim: resuming")
		return nil
	}
	gen := b.c.nextGeneration(cur)
	role, gen, err = b.conn.RequestRole(ctx, OFRoleMaster, gen)
	if err != nil {
		return err
	}
	b.c.observeGeneration(gen)
	if role == OFRoleMaster {
		b.claimedGen = gen
		b.c.metrics.roles.WithLabelValues(b.label(), "MASTER").Inc()
	}
	b.c.publishState() // gossip the MASTER role (other replicas' back-off)
	b.update(func(s *BridgeStatus) { s.Role, s.GenerationID = role.String(), gen })
	b.log.WithFields(logrus.Fields{"role": role.String(), "generation": gen}).Info("role granted")
	if role != OFRoleMaster {
		return fmt.Errorf("switch answered role %s to a MASTER request", role)
	}
	return nil
}

// becomeSlave requests SLAVE with the switch's current generation id (a
// SLAVE request with an older id would be refused as stale).
func (b *bridge) becomeSlave(ctx context.Context, why string) error {
	ctx, cancel := context.WithTimeout(ctx, b.c.opts.OpTimeout)
	defer cancel()
	_, cur, err := b.conn.RequestRole(ctx, OFRoleNoChange, 0)
	if err != nil {
		return err
	}
	gen := cur
	if g := b.c.maxGeneration(); generationNewer(g, gen) {
		gen = g
	}
	role, gen, err := b.conn.RequestRole(ctx, OFRoleSlave, gen)
	if err != nil {
		return err
	}
	b.update(func(s *BridgeStatus) { s.Role, s.GenerationID = role.String(), gen })
	b.c.metrics.roles.WithLabelValues(b.label(), "SLAVE").Inc()
	b.c.publishState()
	b.log.WithFields(logrus.Fields{"role": role.String(), "generation": gen, "why": why}).Info("standing by as SLAVE")
	return nil
}

func (b *bridge) readFlows(ctx context.Context, names map[uint32]string) ([]flows.Flow, error) {
	raw, err := b.conn.DumpFlows(ctx)
	if err != nil {
		return nil, fmt.Errorf("dump flows: %w", err)
	}
	return decodeFlows(raw, names)
}

// decodeFlows decodes flow-stats entries, naming ports by names.
func decodeFlows(raw [][]byte, names map[uint32]string) ([]flows.Flow, error) {
	out := make([]flows.Flow, 0, len(raw))
	for _, e := range raw {
		f, err := flows.DecodeFlowStats(e, names)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// reconcile reads the installed flows, diffs them with the compiled set and
// applies only the difference in one atomic bundle, then reads back.
func (b *bridge) reconcile(parent context.Context, p *policy, h *flows.Host, removed bool, reason string) error {
	ctx, cancel := context.WithTimeout(parent, b.c.opts.OpTimeout)
	defer cancel()
	start := time.Now()
	pkey := portsKey(b.conn.Ports())
	var cur *flows.Compiled
	if !removed {
		var err error
		if cur, err = p.plan(h.Name); err != nil {
			return err
		}
		// A reload on a table we know: send only what the blueprint changed.
		if reason == "reload" && b.confirmed != nil && b.confirmedPorts == pkey && (!p.opts.DropLog || b.meterOK) {
			err := b.reconcileDelta(ctx, p, h, cur, start)
			if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrIsSlave) || errors.Is(err, errStalePolicy) || b.conn.Err() != nil {
				return err
			}
			b.log.WithError(err).Warn("incremental reconcile failed; reconciling in full")
		}
	}
	prev, prevPorts := b.confirmed, b.confirmedPorts
	b.confirmed = nil
	// A drift check only reads until it finds a difference: a reload
	// arriving meanwhile preempts it (nothing written, confirmed kept).
	readCtx, stopPreempt := parent, func() {}
	if reason == "drift check" {
		readCtx, stopPreempt = b.preemptible(parent)
	}
	defer stopPreempt()
	preempted := func() error {
		if context.Cause(readCtx) != errPreempted || parent.Err() != nil {
			return nil
		}
		b.confirmed, b.confirmedPorts = prev, prevPorts
		return errPreempted
	}
	// Full reconciles (dump, diff, bundle, read-back) hold whole tables in
	// memory: bound how many run at once (the switch applies them one at a
	// time anyway).
	select {
	case b.c.fullSem <- struct{}{}:
		defer func() { <-b.c.fullSem }()
	case <-readCtx.Done():
		if err := preempted(); err != nil {
			return err
		}
		return parent.Err()
	}
	ctx, cancel = context.WithTimeout(parent, b.c.opts.OpTimeout)
	defer cancel()
	// A drift check of a table last proven to hold this very plan: compare
	// fingerprints first (driftfp.go); decode and diff only on a difference.
	var dumped [][]byte
	if reason == "drift check" && !removed && prev != nil && prev == cur && prevPorts == pkey &&
		b.clean.plan == cur && b.clean.ports == pkey && (!p.opts.DropLog || b.meterOK) {
		rctx, rcancel := context.WithTimeout(readCtx, b.c.opts.OpTimeout)
		raw, err := b.conn.DumpFlows(rctx)
		rcancel()
		if perr := preempted(); perr != nil {
			return perr
		}
		if err != nil {
			return fmt.Errorf("dump flows: %w", err)
		}
		if len(raw) == b.clean.n && tableFP(raw) == b.clean.fp() {
			stopPreempt()
			return b.cleanDriftCheck(p, h, cur, pkey, raw, start)
		}
		dumped = raw // changed since: the full check below decodes this dump
	}
	b.clean = cleanTable{}
	var compiled []flows.Flow
	if removed {
		compiled = flows.CompileManagementWith(p.bp, h, p.opts)
	} else {
		var err error
		if compiled, err = cur.Flows(); err != nil {
			return err
		}
	}
	if p.opts.DropLog && !b.meterOK {
		if err := b.installMeter(ctx); err != nil {
			return err
		}
		b.meterOK = true
	}
	ports := flows.PortMap(b.conn.Ports())
	names := ports.Names()
	intended, missing := flows.Bind(compiled, ports)
	sort.Strings(missing)
	unmanaged := unmanagedPorts(compiled, ports)
	raw := dumped
	var err error
	if raw == nil {
		rctx, rcancel := context.WithTimeout(readCtx, b.c.opts.OpTimeout)
		raw, err = b.conn.DumpFlows(rctx)
		rcancel()
		if perr := preempted(); perr != nil {
			return perr
		}
		if err != nil {
			return fmt.Errorf("dump flows: %w", err)
		}
	}
	installed, err := decodeFlows(raw, names)
	if err != nil {
		return err
	}
	// Decoding a whole table takes tens of ms under load: a reload that
	// arrived meanwhile still goes first (its bridges write together, so
	// one bridge's diff here would hold all of them at the gate).
	if testHookDecoded != nil && reason == "drift check" {
		testHookDecoded(readCtx)
	}
	if perr := preempted(); perr != nil {
		return perr
	}
	stopPreempt() // from here on the reconcile may write: it runs to its end
	// The revision fence: never write over flows of a newer blueprint.
	if err := b.checkFence(installed, p, reason); err != nil {
		b.recordCounters(installed)
		return err
	}
	// Nor write the policy this turn started with once a newer one is
	// loaded (a slow MASTER claim or read can span a reload): the turn
	// runs again with the current one.
	if cur := b.c.policy(); cur != p && cur.bp.Revision >= p.bp.Revision {
		return errStalePolicy
	}
	d := DiffFlows(intended, installed)
	stampMarker(&d, p.bp.Revision, findMarker(installed))
	sent := 0
	if !d.Empty() {
		msgs, err := flowMods(&d, ports)
		if err != nil {
			return err
		}
		if reason == "drift check" {
			b.c.metrics.drift.WithLabelValues(b.label()).Inc()
			b.log.WithFields(logrus.Fields{"missing": len(d.Missing), "extra": len(d.Extra), "modified": len(d.Modified)}).
				Warn("drift detected: installed flows differ from the intended flows; repairing")
		}
		if err := b.conn.Bundle(ctx, msgs); err != nil {
			b.c.metrics.modErrors.WithLabelValues(b.label()).Inc()
			return fmt.Errorf("apply %d flow changes: %w", len(msgs), err)
		}
		sent = len(msgs)
		b.countMods(&d)
		b.logChanges(&d, reason)
		// Read back: converged only when the switch holds exactly the intended set.
		if raw, err = b.conn.DumpFlows(ctx); err != nil {
			return fmt.Errorf("dump flows: %w", err)
		}
		if installed, err = decodeFlows(raw, names); err != nil {
			return err
		}
		d = DiffFlows(intended, installed)
	}
	converged := d.Empty()
	b.recordCounters(installed)
	b.c.metrics.reconcile.WithLabelValues(b.label()).Observe(time.Since(start).Seconds())
	instRev := installedRevision(installed)
	b.update(func(s *BridgeStatus) {
		s.Converged = converged
		s.FlowsIntended, s.FlowsInstalled = len(intended), len(installed)
		s.Revision = p.bp.Revision
		s.InstalledRevision = instRev
		s.MissingPorts = missing
		s.UnmanagedPorts = unmanaged
		s.LastReconcile = time.Now()
		s.LastChanges = sent
		s.FlowModsSent += uint64(sent)
		s.Reconciles++
		s.LastError = ""
		if !converged {
			s.LastError = fmt.Sprintf("read-back differs from intended: %d missing, %d modified, %d extra", len(d.Missing), len(d.Modified), len(d.Extra))
		}
	})
	lf := logrus.Fields{"host": h.Name, "reason": reason, "flow_mods": sent, "intended": len(intended),
		"installed": len(installed), "converged": converged, "took": time.Since(start).Round(time.Millisecond).String()}
	if len(missing) > 0 {
		lf["missing_ports"] = missing
	}
	if len(unmanaged) > 0 {
		lf["unmanaged_ports"] = unmanaged
	}
	if sent > 0 || !converged {
		b.log.WithFields(lf).Info("reconciled")
	} else {
		b.log.WithFields(lf).Debug("reconciled: in sync")
	}
	if !converged {
		return errors.New("read-back differs from the intended flows")
	}
	if !removed && pkey == portsKey(b.conn.Ports()) {
		b.confirmed, b.confirmedPorts = cur, pkey
		b.clean = newCleanTable(cur, pkey, raw, installed)
	}
	return nil
}

// reconcileDelta applies a reload to a table known to hold b.confirmed: it
// diffs only the segments that changed (deltaDiff), sends the
// difference in one bundle, and reads back just the flows it wrote (by
// their exact cookies, in the commit's write) to prove they are installed.
// With no changed segment it sends nothing and reads nothing. Any doubt
// (an error, a read-back that differs) returns an error and the caller
// reconciles in full; the periodic drift check re-reads whole tables.
func (b *bridge) reconcileDelta(ctx context.Context, p *policy, h *flows.Host, cur *flows.Compiled, start time.Time) error {
	prev := b.confirmed
	b.confirmed = nil
	ports := flows.PortMap(b.conn.Ports())
	d, err := deltaDiff(p, prev, cur, ports)
	if err != nil {
		return err
	}
	// No table read here: confirmed is set only by a full reconcile that
	// passed the revision fence, and cleared whenever another controller
	// may have written since (a claim, a role status, any failed write), so
	// the table holds no newer revision. A deletes-only delta stamps the
	// revision marker (the installed one is not known: always).
	stampMarker(&d, p.bp.Revision, nil)
	if d.Empty() {
		b.update(func(s *BridgeStatus) {
			s.Revision = p.bp.Revision
			s.LastReconcile = time.Now()
			s.LastChanges = 0
			s.Reconciles++
		})
		b.confirmed = cur
		if b.clean.plan == prev {
			b.clean.plan = cur // the table did not change
		}
		b.log.WithFields(logrus.Fields{"host": h.Name, "reason": "reload"}).Debug("reconciled: blueprint change does not affect this host")
		return nil
	}
	msgs, err := flowMods(&d, ports)
	if err != nil {
		return err
	}
	tDiff := time.Now()
	// Write together with the reload's other bridges (Options.ReloadGather).
	b.gate.arrive(b.dpid)
	b.gate.wait(ctx)
	tGate := time.Now()
	if cur := b.c.policy(); cur != p && cur.bp.Revision >= p.bp.Revision {
		return errStalePolicy
	}
	reads := readBack(&d, p.bp.Revision)
	raw, err := b.conn.BundleDump(ctx, msgs, reads)
	if err != nil {
		b.c.metrics.modErrors.WithLabelValues(b.label()).Inc()
		return fmt.Errorf("apply %d flow changes: %w", len(msgs), err)
	}
	b.countMods(&d)
	b.logChanges(&d, "reload")
	got, err := decodeFlows(raw, ports.Names())
	if err != nil {
		return err
	}
	written := append(append([]flows.Flow(nil), d.Missing...), d.Modified...)
	if v := DiffFlows(written, got); len(v.Missing) > 0 || len(v.Modified) > 0 {
		b.clean = cleanTable{}
		return fmt.Errorf("read-back of revision %d: %d flows missing, %d differ", p.bp.Revision, len(v.Missing), len(v.Modified))
	}
	// The next drift check compares the switch's dump with the proven
	// table plus this delta (driftfp.go), without decoding it again.
	if b.clean.plan == prev && b.clean.applyDelta(&d, raw, got) {
		b.clean.plan = cur
	} else {
		b.clean = cleanTable{}
	}
	sent := len(msgs)
	b.update(func(s *BridgeStatus) {
		s.Converged = true
		s.FlowsIntended += len(d.Missing) - len(d.Extra)
		s.FlowsInstalled = s.FlowsIntended
		s.Revision = p.bp.Revision
		s.LastReconcile = time.Now()
		s.LastChanges = sent
		s.FlowModsSent += uint64(sent)
		s.Reconciles++
		s.LastError = ""
		s.InstalledRevision = p.bp.Revision
	})
	b.c.metrics.reconcile.WithLabelValues(b.label()).Observe(time.Since(start).Seconds())
	b.log.WithFields(logrus.Fields{"host": h.Name, "reason": "reload", "flow_mods": sent, "incremental": true,
		"converged": true, "read_back_requests": len(reads), "took": time.Since(start).Round(time.Millisecond).String(),
		"took_diff":   tDiff.Sub(start).Round(time.Millisecond).String(),
		"took_gather": tGate.Sub(tDiff).Round(time.Millisecond).String(),
		"took_switch": time.Since(tGate).Round(time.Millisecond).String()}).Info("reconciled")
	b.confirmed = cur
	return nil
}

// readBackExact is the most distinct cookies a delta's read-back asks for
// one by one; above it, one request by revision reads them all.
const readBackExact = 8

// readBack selects what a delta's read-back asks the switch for: every
// added or modified flow, in flow-stats requests that follow the commit in
// the same write (no extra round trip). A few distinct cookies are asked
// for exactly (rule + this revision: the switch's cookie index). More are
// asked for by revision alone, in one request: every flow written for a
// revision carries it, and the switch takes at most 50 messages of a
// connection per main-loop turn, so a host that starts carrying a tier (250
// flows, 250 distinct cookies) would otherwise spend five extra turns on
// its read-back (measured: the one straggler of a change, 140-280 ms, with
// 200 bridges in one vswitchd). Flows of the same revision that were not
// written now come back too; the check ignores them.
func readBack(d *FlowDiff, rev uint32) []CookieRead {
	var exact []CookieRead
	seen := map[flows.Cookie]bool{}
	sameRev := true
	for _, set := range [][]flows.Flow{d.Missing, d.Modified} {
		for i := range set {
			ck := set[i].Cookie
			sameRev = sameRev && ck.Revision() == rev&flows.MaxRevision
			if !seen[ck] {
				seen[ck] = true
				exact = append(exact, CookieRead{Cookie: uint64(ck), Mask: ^uint64(0)})
			}
		}
	}
	if len(exact) > readBackExact && sameRev {
		return []CookieRead{{Cookie: uint64(rev & flows.MaxRevision), Mask: uint64(flows.MaxRevision)}}
	}
	return exact
}

// flowMods encodes a diff: deletes of the extra flows, then adds of the
// missing and modified ones (an ADD overwrites).
func flowMods(d *FlowDiff, ports flows.PortMap) ([][]byte, error) {
	msgs := make([][]byte, 0, d.Changes())
	for i := range d.Extra {
		m, err := flows.AppendFlowMod(nil, &d.Extra[i], flows.CmdDeleteStrict, ports)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	for _, set := range [][]flows.Flow{d.Missing, d.Modified} {
		for i := range set {
			m, err := flows.AppendFlowMod(nil, &set[i], flows.CmdAdd, ports)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, m)
		}
	}
	return msgs, nil
}

func (b *bridge) countMods(d *FlowDiff) {
	b.c.metrics.flowMods.WithLabelValues(b.label(), "delete").Add(float64(len(d.Extra)))
	b.c.metrics.flowMods.WithLabelValues(b.label(), "add").Add(float64(len(d.Missing)))
	b.c.metrics.flowMods.WithLabelValues(b.label(), "modify").Add(float64(len(d.Modified)))
}

// logChanges writes the audit log of a bundle: one line per (rule category,
// action) group, listing the cookies, so logging never dominates install time.
func (b *bridge) logChanges(d *FlowDiff, reason string) {
	type key struct {
		cat    flows.Category
		action string
	}
	groups := map[key][]string{}
	var order []key
	add := func(fs []flows.Flow, action string) {
		for i := range fs {
			k := key{fs[i].Cookie.Category(), action}
			if _, ok := groups[k]; !ok {
				order = append(order, k)
			}
			groups[k] = append(groups[k], fs[i].Cookie.String())
		}
	}
	add(d.Extra, "delete")
	add(d.Missing, "add")
	add(d.Modified, "modify")
	for _, k := range order {
		cookies := groups[k]
		lf := logrus.Fields{"audit": "flow-change", "action": k.action, "rule": k.cat.String(), "count": len(cookies), "reason": reason}
		if len(cookies) <= 16 {
			lf["cookies"] = cookies
		}
		if k.action == "delete" && k.cat == flows.CatUnknown {
			lf["note"] = "foreign flow removed"
		}
		b.log.WithFields(lf).Info("flow change")
	}
}

// errNeedMaster: the orphan reconcile has guest flows to remove but this
// replica is not MASTER of the bridge.
var errNeedMaster = errors.New("not MASTER")

// mgmtCategory reports whether a flow category keeps a host reachable (the
// flows a host removed from the blueprint keeps).
func mgmtCategory(f *flows.Flow) bool {
	switch f.Cookie.Category() {
	case flows.CatUnderlayMgmt, flows.CatHostOut, flows.CatTunnelAllow, flows.CatTunnelDrop,
		flows.CatPeerARPGuard, flows.CatDefaultDrop:
		return true
	case flows.CatClassify:
		// Only the uplink and LOCAL entries, not VM or tunnel ports.
		o := f.Cookie.Object()
		return o == 0 || o == 1
	}
	return false
}

// reconcileOrphan handles a datapath that is not in the blueprint. If its
// table holds flows with vpcflow cookies, it is a host that was removed from
// the blueprint (perhaps before this controller started): its management
// flows (LOCAL<->uplink, tunnel allowlist) are kept as installed and every
// guest flow is removed, so stale tenant policy never outlives the host's
// removal. A datapath with no vpcflow flows is unknown: it gets no flow-mods
// at all and stays fail-closed.
func (b *bridge) reconcileOrphan(ctx context.Context, p *policy, master bool, reason string) error {
	ctx, cancel := context.WithTimeout(ctx, b.c.opts.OpTimeout)
	defer cancel()
	ports := flows.PortMap(b.conn.Ports())
	installed, err := b.readFlows(ctx, ports.Names())
	if err != nil {
		return err
	}
	ours := false
	var keep []flows.Flow
	for i := range installed {
		f := &installed[i]
		if f.Unknown == "" && f.Cookie.Category() == flows.CatClassify {
			ours = true
		}
		if f.Unknown == "" && mgmtCategory(f) {
			keep = append(keep, *f)
		}
	}
	if !ours {
		b.update(func(s *BridgeStatus) {
			s.FlowsInstalled = len(installed)
			s.LastError = "datapath id not in the blueprint: no flows sent (fail-closed)"
		})
		b.log.WithField("flows", len(installed)).Warn("unknown datapath: not in the blueprint; it gets no flow-mods and stays fail-closed")
		return nil
	}
	// The revision fence: a newer blueprint may list this host again.
	if err := b.checkFence(installed, p, reason); err != nil {
		return err
	}
	d := DiffFlows(keep, installed)
	stampMarker(&d, p.bp.Revision, findMarker(installed))
	b.update(func(s *BridgeStatus) {
		s.FlowsIntended, s.FlowsInstalled = len(keep), len(installed)
		s.LastError = "host removed from the blueprint: management flows kept, guest flows removed"
		s.Converged = d.Empty()
	})
	if d.Empty() {
		return nil
	}
	if !master {
		return errNeedMaster
	}
	msgs, err := flowMods(&d, ports)
	if err != nil {
		return err
	}
	if err := b.conn.Bundle(ctx, msgs); err != nil {
		return err
	}
	b.logChanges(&d, reason+" (host removed from the blueprint)")
	b.update(func(s *BridgeStatus) {
		s.FlowsInstalled = len(keep)
		s.FlowModsSent += uint64(len(msgs))
		s.Converged = true
		s.InstalledRevision = installedRevision(keep)
		if len(d.Modified) > 0 { // the marker, stamped with this revision
			s.InstalledRevision = p.bp.Revision
		}
	})
	return nil
}

// unmanagedPorts lists the bridge's ports that no compiled flow names.
func unmanagedPorts(compiled []flows.Flow, ports flows.PortMap) []string {
	named := map[string]bool{}
	for i := range compiled {
		if mf, ok := compiled[i].Match.Get(flows.FInPort); ok {
			named[mf.Port] = true
		}
		for _, a := range compiled[i].Actions {
			if o, ok := a.(flows.Output); ok {
				named[o.Port] = true
			}
		}
	}
	var out []string
	for name, no := range ports {
		if no == flows.OFPPLocal || named[name] {
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
