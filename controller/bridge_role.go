package controller

// The role side of a bridge's loop: waiting for ports to settle, claiming
// MASTER with a generation id, standing by as SLAVE.

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
)

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
