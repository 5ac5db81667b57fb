package controller

// Reconciling a bridge's table: the full path (dump, diff, bundle,
// read-back; drift checks) and the incremental path for a reload.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

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
	if hook := testHookDecoded.Load(); hook != nil && reason == "drift check" {
		(*hook)(readCtx)
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
