package controller

// Bridges of hosts removed from the blueprint (or unknown datapaths), and
// ports the blueprint does not name.

import (
	"context"
	"errors"
	"sort"

	"github.com/vpcflow/vpcflow/flows"
)

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
