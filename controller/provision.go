package controller

import (
	"context"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
	"github.com/vpcflow/vpcflow/tunnel"
)

// provisionLoop provisions hosts over OVSDB (cloudbr0 settings, controller
// targets, tunnel port) when Options.Provision is set. Only the replica that
// owns a host's bridge (with a quorum) provisions it, so replicas never race
// on one host, and only in blueprint agreement (provisionAllowed: no live
// replica with a newer or conflicting blueprint, no bridge fenced by a newer
// installed revision), so an older blueprint never rewrites a host's
// controller targets (e.g. removes a new replica's Controller row); every
// tunnel.Apply transaction is also guarded by OVSDB wait
// operations, so even overlapping owners (during a view change) cannot create
// duplicates or half-provisioned hosts. Hosts without `ovsdb:` are skipped
// (provision them with `vpcflow host apply`).
func (c *Controller) provisionLoop(ctx context.Context, kick <-chan struct{}) {
	t := time.NewTicker(c.opts.ProvisionInterval)
	defer t.Stop()
	done := map[string]string{}    // host -> blueprint hash last provisioned while owner
	skipped := map[string]string{} // host -> why it was last not provisioned (logged once)
	for {
		p := c.policy()
		for i := range p.bp.Hosts {
			h := p.bp.Hosts[i]
			if h.OVSDB == "" {
				continue
			}
			if ok, why := c.provisionAllowed(&h, p); !ok {
				delete(done, h.Name)
				if skipped[h.Name] != why {
					l := c.log.WithFields(logrus.Fields{"host": h.Name, "revision": p.bp.Revision})
					if strings.HasPrefix(why, "owned by") || why == noQuorum || why == errUnread {
						l.Debug("not provisioning: " + why)
					} else {
						l.Warn("not provisioning: " + why)
					}
				}
				skipped[h.Name] = why
				continue
			}
			delete(skipped, h.Name)
			if done[h.Name] == p.hash {
				continue
			}
			if err := c.provisionHost(ctx, p.bp, &h); err != nil {
				c.log.WithError(err).WithField("host", h.Name).Warn("provisioning failed; will retry")
				continue
			}
			done[h.Name] = p.hash
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Re-check periodically: repairs settings changed behind our back.
			for k := range done {
				delete(done, k)
			}
		case <-kick:
		}
	}
}

func (c *Controller) provisionHost(ctx context.Context, bp *flows.Blueprint, h *flows.Host) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.OpTimeout)
	defer cancel()
	log := c.log.WithFields(logrus.Fields{"host": h.Name, "ovsdb": h.OVSDB})
	res, err := tunnel.Apply(ctx, tunnel.ApplyOptions{Endpoint: h.OVSDB, TLS: c.opts.OVSDBTLS, Host: h, Encapsulation: bp.Encapsulation,
		Controllers: bp.Controllers, Logger: log.WithField("component", "provision")})
	if err != nil {
		return err
	}
	if res.Changed() {
		log.WithField("changes", res.Changes).Info("host provisioned")
	}
	return nil
}
