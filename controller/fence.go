package controller

// The revision fence: never write a bridge whose installed flows carry a
// blueprint revision newer than the policy in force (docs/cluster.md,
// "Blueprint agreement"). Every write path (full reconcile and drift
// repair, the incremental reload path, the orphan path) goes through it.
//
// Why it works with deletions too: a change that only deletes flows from a
// bridge leaves no flow stamped with its revision, so the installed cookies
// alone would look like an older table. Every bundle that carries no flow
// of the new revision (deletes only) therefore also rewrites the revision
// marker (the classify table's miss flow, whose rule never changes) with
// that revision. Invariant: after any write of revision R, the bridge's
// highest installed cookie revision is R.

import (
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// errFenced: the bridge holds flows of a newer blueprint revision than the
// policy in force; nothing was written. Not a failure: the bridge waits
// for a reload (or a drift check re-reading the table).
var errFenced = errors.New("bridge holds a newer blueprint revision: standing by")

// markerRule is the rule of the revision marker: the classify table's miss
// (every host has it, a host removed from the blueprint keeps it).
var markerRule = flows.MakeCookie(flows.CatDefaultDrop, uint32(flows.TClassify), 0)

// revisionMarker is the marker flow stamped with rev, as compiled (table 0,
// priority 0, no match, drop).
func revisionMarker(rev uint32) flows.Flow {
	return flows.Flow{Table: flows.TClassify, Priority: 0, Cookie: markerRule.WithRevision(rev), Goto: flows.NoGoto}
}

// installedRevision is the highest blueprint revision carried by the
// vpcflow cookies of installed flows (0 for an empty or foreign table).
// Flows vpcflow cannot have written (a cookie of no known category, a flow
// the decoder cannot represent) do not count. Revisions are 24-bit values
// that never wrap (the validator rejects revision > flows.MaxRevision), so
// a plain comparison orders them.
func installedRevision(installed []flows.Flow) uint32 {
	var max uint32
	for i := range installed {
		f := &installed[i]
		if f.Unknown != "" || !f.Cookie.Category().Known() {
			continue
		}
		if r := f.Cookie.Revision(); r > max {
			max = r
		}
	}
	return max
}

// stampMarker makes a diff that writes only deletes also rewrite the
// revision marker with rev, so the bridge records that revision rev wrote
// it. installed is the marker as installed (nil when unknown: the
// incremental path does not read the table). It does nothing when the diff
// is empty, writes flows of revision rev anyway (adds and modifies carry
// the revision they are compiled with), or the marker already carries rev.
func stampMarker(d *FlowDiff, rev uint32, installed *flows.Flow) {
	if len(d.Extra) == 0 || len(d.Missing) > 0 || len(d.Modified) > 0 {
		return
	}
	if installed != nil && installed.Cookie.Revision() == rev&flows.MaxRevision {
		return
	}
	m := revisionMarker(rev)
	was := m
	if installed != nil {
		was = *installed
	}
	for i := range d.Extra { // never delete and re-add the same entry
		if d.Extra[i].Unknown == "" && d.Extra[i].Cookie.Rule() == markerRule && d.Extra[i].Priority == 0 && len(d.Extra[i].Match) == 0 {
			return
		}
	}
	d.Modified = append(d.Modified, m)
	d.Was = append(d.Was, was)
}

// findMarker returns the installed revision marker, or nil.
func findMarker(installed []flows.Flow) *flows.Flow {
	for i := range installed {
		f := &installed[i]
		if f.Unknown == "" && f.Table == flows.TClassify && f.Priority == 0 && len(f.Match) == 0 && f.Cookie.Rule() == markerRule {
			return f
		}
	}
	return nil
}

// checkFence compares the installed revision with the policy's. When the
// bridge holds a newer revision it records and reports the stand-by and
// returns errFenced; otherwise it clears a previous fence.
func (b *bridge) checkFence(installed []flows.Flow, p *policy, reason string) error {
	inst := installedRevision(installed)
	rev := p.bp.Revision
	if inst <= rev {
		first := b.revisionChecked.CompareAndSwap(false, true)
		was := b.status()
		if first || was.Fenced {
			b.c.kickProvision() // provisioning waits for this (provisionAllowed)
		}
		b.update(func(s *BridgeStatus) {
			s.InstalledRevision = inst
			if s.Fenced {
				s.Fenced, s.Standby = false, ""
			}
		})
		if was.Fenced {
			b.log.WithFields(logrus.Fields{"installed_revision": was.InstalledRevision, "revision": rev, "reason": reason}).
				Warn("revision fence lifted: the enforced blueprint is at least as new as the bridge's flows; writing again")
		}
		return nil
	}
	why := fmt.Sprintf("bridge holds flows of blueprint revision %d, newer than the enforced revision %d: not writing; load a blueprint with revision >= %d", inst, rev, inst)
	was := b.status()
	b.update(func(s *BridgeStatus) {
		s.Fenced, s.Standby, s.InstalledRevision = true, why, inst
		s.Converged = false
		s.FlowsInstalled = len(installed)
		s.LastError = ""
	})
	lf := logrus.Fields{"installed_revision": inst, "revision": rev, "reason": reason, "flows": len(installed)}
	if !was.Fenced || was.InstalledRevision != inst {
		b.log.WithFields(lf).Warn("revision fence: the bridge holds flows of a newer blueprint revision than this controller enforces; " +
			"sending nothing to it (an older policy never overwrites a newer one). Load the newer blueprint (revision >= installed_revision) to resume")
	} else {
		b.log.WithFields(lf).Debug("revision fence: still standing by")
	}
	return errFenced
}

// fencedRevision is the highest installed revision among this
// controller's fenced bridges (0: none fenced).
func (c *Controller) fencedRevision() (rev uint32, bridges int) {
	c.mu.Lock()
	brs := make([]*bridge, 0, len(c.bridges))
	for _, b := range c.bridges {
		brs = append(brs, b)
	}
	c.mu.Unlock()
	for _, b := range brs {
		if st := b.status(); st.Fenced && st.Connected {
			bridges++
			if st.InstalledRevision > rev {
				rev = st.InstalledRevision
			}
		}
	}
	return rev, bridges
}

// provisionAllowed decides whether this controller may provision host h
// (OVSDB: controller targets, tunnel port) with policy p: in a cluster only
// the owner with a quorum; in every mode only in blueprint agreement (no
// live replica gossips a newer or conflicting blueprint, no bridge is
// fenced by a newer installed revision), and, when h's bridge is
// connected here, only after its table was read and found not newer.
func (c *Controller) provisionAllowed(h *flows.Host, p *policy) (bool, string) {
	if cl := c.opts.Cluster; cl != nil {
		if !cl.HasQuorum() {
			return false, noQuorum
		}
		if !cl.IsOwner(h.DPID) {
			o, _ := cl.Owner(h.DPID)
			return false, "owned by replica " + o
		}
		if ok, why := c.revisionAgreement(p); !ok {
			return false, why
		}
	}
	if rev, n := c.fencedRevision(); n > 0 {
		return false, fmt.Sprintf("%d bridge(s) hold flows of blueprint revision %d, newer than the enforced revision %d: load it", n, rev, p.bp.Revision)
	}
	c.mu.Lock()
	b := c.bridges[h.DPID]
	c.mu.Unlock()
	if b != nil && b.conn.Err() == nil && !b.revisionChecked.Load() {
		return false, errUnread
	}
	return true, ""
}

// errUnread is provisionAllowed's reason while a connected bridge's table
// has not been read yet.
const errUnread = "the bridge's flows have not been read yet (revision fence)"

// kickProvision asks the provisioning loop for a pass now (coalesced).
func (c *Controller) kickProvision() {
	select {
	case c.provKick <- struct{}{}:
	default:
	}
}
