package controller

// Blueprint distribution between replicas (docs/cluster.md, "Blueprint
// distribution"). Every replica gossips the key of the policy it enforces
// (revision, version, origin: cluster.PolicyKey). A replica that sees a live
// member enforcing a newer key with other content fetches the blueprint
// bytes from it (cluster.FetchBlueprint), parses and validates them with
// flows.Parse like a local file, checks that the result hashes to the
// gossiped hash and carries the gossiped revision, and applies it through
// apply, whose rules still refuse an older revision. A local change (file
// reload, CloudStack fetch) takes the next version in the cluster, so it is
// newer than everything the replicas enforce. With a blueprint Source
// (CloudStack) only one replica, cluster.Fetcher, polls it and numbers each
// change with a revision above every revision in the cluster; the others
// follow by distribution.

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/cluster"
	"github.com/vpcflow/vpcflow/flows"
)

// RawSource is a Source that also returns the YAML it parsed, so the
// policy can be distributed to the other replicas and renumbered by the
// fetcher. Without it, a Source's policies cannot be fetched by peers.
type RawSource interface {
	Source
	// FetchRaw returns the blueprint and the YAML that flows.Parse turned
	// into it.
	FetchRaw(ctx context.Context) (*flows.Blueprint, []byte, error)
}

// peerFetchTimeout bounds one transfer of a blueprint from a peer.
const peerFetchTimeout = 30 * time.Second

// syncInterval is how often a replica re-checks the cluster's newest
// policy besides the cluster's change signals (a failed fetch is retried).
const syncInterval = time.Second

// incoming describes where a blueprint being applied comes from.
type incoming struct {
	raw      []byte
	peer     *cluster.PolicyKey // fetched from a peer under this key
	peerName string             // the member it was fetched from
}

func (in incoming) name(c *Controller) string {
	if in.peer != nil {
		return fmt.Sprintf("peer %s (revision %d)", in.peerName, in.peer.Revision)
	}
	return c.sourceName()
}

// loadFile reads and parses a blueprint file (what flows.Load does),
// keeping its bytes for distribution.
func loadFile(path string) (*flows.Blueprint, []byte, error) {
	data, err := flows.ReadFile(path) // bounded: flows.MaxBlueprintBytes
	if err != nil {
		return nil, nil, err
	}
	bp, err := flows.Parse(path, data)
	if err != nil {
		return nil, nil, err
	}
	return bp, data, nil
}

// fetchSource fetches a Source, with its YAML when it has one.
func fetchSource(ctx context.Context, s Source) (*flows.Blueprint, []byte, error) {
	if rs, ok := s.(RawSource); ok {
		return rs.FetchRaw(ctx)
	}
	bp, err := s.Fetch(ctx)
	return bp, nil, err
}

// selfName is this replica's cluster name ("" without a cluster).
func (c *Controller) selfName() string {
	if cl := c.opts.Cluster; cl != nil {
		return cl.Name()
	}
	return ""
}

// key is the policy's place in the cluster's order.
func (p *policy) key(self string) cluster.PolicyKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.origin
	if o == "" {
		o = self
	}
	return cluster.PolicyKey{Revision: p.bp.Revision, Version: p.version, Origin: o}
}

// fromName is where the policy came from, for logs and /status.
func (p *policy) fromName(c *Controller) string {
	if p.from != "" {
		return p.from
	}
	return c.sourceName()
}

// adoptKey takes a peer's newer key for the content this replica already
// enforces (the same hash), so the cluster shows one key. c.mu held.
func (c *Controller) adoptKey(in incoming) bool {
	if in.peer == nil || !in.peer.Newer(c.pol.key(c.selfName())) {
		return false
	}
	c.pol.mu.Lock()
	c.pol.version, c.pol.origin = in.peer.Version, in.peer.Origin
	c.pol.mu.Unlock()
	return true
}

// checkPeerKey: a peer's policy replaces ours only under a newer key.
// c.mu held.
func (c *Controller) checkPeerKey(in incoming) error {
	if cur := c.pol.key(c.selfName()); !in.peer.Newer(cur) {
		return fmt.Errorf("%s: its policy (%s) is not newer than the enforced one (%s)", in.name(c), *in.peer, cur)
	}
	return nil
}

// stampPolicy records where the new policy c.pol came from and gives a
// local change the next version in the cluster. c.mu held.
func (c *Controller) stampPolicy(prev *policy, in incoming) {
	p := c.pol
	p.raw = in.raw
	p.mu.Lock()
	defer p.mu.Unlock()
	if in.peer != nil {
		p.version, p.origin, p.from = in.peer.Version, in.peer.Origin, in.name(c)
		return
	}
	if cl := c.opts.Cluster; cl != nil {
		p.version = max(cl.MaxPolicyVersion(), prev.key("").Version) + 1
	}
}

// provideBlueprint answers peers' fetches: the bytes of the policy in force
// when its hash is asked for.
func (c *Controller) provideBlueprint(hash string) []byte {
	p := c.policy()
	if p.hash != hash {
		return nil
	}
	return p.raw
}

func (c *Controller) wakeSync() {
	select {
	case c.syncWake <- struct{}{}:
	default:
	}
}

// syncLoop follows the cluster's newest policy and, with a Source, notices
// when this replica becomes the fetcher.
func (c *Controller) syncLoop(ctx context.Context) {
	t := time.NewTicker(syncInterval)
	defer t.Stop()
	wasFetcher := false
	for {
		c.syncOnce(ctx)
		if c.opts.Source != nil {
			is := c.isFetcher()
			if is && !wasFetcher {
				c.log.WithField("source", c.sourceName()).Info("this replica now fetches the blueprint source; the other replicas follow it")
				select {
				case c.fetchKick <- struct{}{}:
				default:
				}
			}
			wasFetcher = is
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.syncWake:
		}
	}
}

// syncOnce fetches the cluster's newest policy when a live member enforces
// a newer key with other content.
func (c *Controller) syncOnce(ctx context.Context) {
	cl := c.opts.Cluster
	key, hash, holders, ok := cl.NewestPolicy()
	if !ok {
		return
	}
	p := c.policy()
	if hash == p.hash {
		if key.Newer(p.key(cl.Name())) {
			c.mu.Lock()
			adopted := c.pol == p && c.adoptKey(incoming{peer: &key})
			c.mu.Unlock()
			if adopted {
				c.publishState()
			}
		}
		return
	}
	if !key.Newer(p.key(cl.Name())) {
		return // this replica enforces the newest policy: the others fetch it
	}
	if c.opts.NoPeerFetch {
		return // files are distributed by other means; wantMaster stands by
	}
	for _, from := range holders {
		if ctx.Err() != nil {
			return
		}
		err := c.fetchFromPeer(ctx, from, key, hash)
		if err == nil {
			return
		}
		c.metrics.peerFetches.WithLabelValues("error").Inc()
		c.log.WithFields(logrus.Fields{"peer": from, "revision": key.Revision, "version": key.Version,
			"origin": key.Origin, "hash": short(hash)}).WithError(err).Warn("fetching the newer blueprint from a replica failed; retrying")
	}
}

// fetchFromPeer fetches, verifies and applies the policy key/hash from
// member from.
func (c *Controller) fetchFromPeer(ctx context.Context, from string, key cluster.PolicyKey, hash string) error {
	fctx, cancel := context.WithTimeout(ctx, peerFetchTimeout)
	raw, err := c.opts.Cluster.FetchBlueprint(fctx, from, hash)
	cancel()
	if err != nil {
		return err
	}
	in := incoming{raw: raw, peer: &key, peerName: from}
	bp, err := flows.Parse(in.name(c), raw)
	if err != nil {
		return fmt.Errorf("the blueprint it sent is invalid: %w", err)
	}
	if got := bp.Hash(); got != hash {
		return fmt.Errorf("the blueprint it sent hashes to %s, not to the gossiped %s: refused", short(got), short(hash))
	}
	if bp.Revision != key.Revision {
		return fmt.Errorf("the blueprint it sent has revision %d, not the gossiped %d: refused", bp.Revision, key.Revision)
	}
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	c.mu.Lock()
	if err := c.apply(bp, nil, "newer policy on replica "+from, in); err != nil {
		return err
	}
	c.metrics.peerFetches.WithLabelValues("ok").Inc()
	c.log.WithFields(logrus.Fields{"peer": from, "revision": key.Revision, "version": key.Version, "origin": key.Origin,
		"hash": short(hash), "bytes": len(raw)}).Info("applied the newer blueprint fetched from a replica")
	return nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// isFetcher: with a cluster, only the fetcher (cluster.Fetcher, and only
// with a quorum) polls the Source; without one, always.
func (c *Controller) isFetcher() bool {
	cl := c.opts.Cluster
	if cl == nil {
		return true
	}
	return cl.HasQuorum() && cl.Fetcher() == cl.Name()
}

// reloadSource fetches Options.Source (only on the fetcher in replica mode)
// and applies the result.
func (c *Controller) reloadSource(reason string) error {
	cl := c.opts.Cluster
	if !c.isFetcher() {
		if reason != "poll" {
			f := cl.Fetcher()
			c.log.WithFields(logrus.Fields{"reason": reason, "fetcher": f, "quorum": cl.HasQuorum()}).
				Info("blueprint source not fetched: another replica (the fetcher) polls it and this replica follows it; reload the fetcher")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.SourceTimeout)
	bp, raw, err := fetchSource(ctx, c.opts.Source)
	cancel()
	if err == nil && cl != nil {
		bp, raw, err = c.numberRevision(bp, raw)
	}
	c.mu.Lock()
	c.reloadAt = time.Now()
	return c.apply(bp, err, reason, incoming{raw: raw})
}

// contentHash is the blueprint's hash ignoring its revision.
func contentHash(bp *flows.Blueprint) string {
	cp := *bp
	cp.Revision = 0
	return cp.Hash()
}

var revisionLine = regexp.MustCompile(`(?m)^revision:[ \t]*[0-9]+[ \t]*$`)

// numberRevision gives a fetched blueprint whose content changed (or the
// first one, at revision 0) the next revision above every revision the
// cluster enforces, by rewriting its YAML's revision line and parsing it
// again; unchanged content keeps the policy in force.
func (c *Controller) numberRevision(bp *flows.Blueprint, raw []byte) (*flows.Blueprint, []byte, error) {
	p := c.policy()
	// Bridges this replica found holding a newer revision (fence.go: e.g.
	// every replica restarted, numbering began again at 1) are numbered
	// past: the API's content is current, the installed numbering is not.
	inst, _ := c.fencedRevision()
	if p.bp.Revision != 0 && inst <= p.bp.Revision && contentHash(bp) == contentHash(p.bp) {
		return p.bp, p.raw, nil
	}
	if raw == nil {
		return bp, raw, nil // not distributable: revision as fetched
	}
	newest, _ := c.opts.Cluster.NewestRevision()
	rev := max(newest, p.bp.Revision, bp.Revision, inst) + 1
	if rev > flows.MaxRevision {
		return nil, nil, fmt.Errorf("%s: the next revision %d exceeds the maximum %d", c.sourceName(), rev, flows.MaxRevision)
	}
	loc := revisionLine.FindIndex(raw)
	if loc == nil {
		return nil, nil, errors.New(c.sourceName() + ": its YAML has no top-level revision line to number")
	}
	out := make([]byte, 0, len(raw)+8)
	out = append(out, raw[:loc[0]]...)
	out = append(out, "revision: "+strconv.FormatUint(uint64(rev), 10)...)
	out = append(out, raw[loc[1]:]...)
	nbp, err := flows.Parse(bp.Source, out)
	if err != nil {
		return nil, nil, err
	}
	return nbp, out, nil
}
