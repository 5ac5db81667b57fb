package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
var testHookDecoded atomic.Pointer[func(readCtx context.Context)]

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
