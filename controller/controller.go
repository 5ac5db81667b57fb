// Package controller is vpcflow's OpenFlow runtime and reconciler: it accepts
// switch connections, takes the MASTER role, and keeps every bridge's flow
// table equal to the flows compiled from the blueprint by applying only the
// difference, in one bundle. It also serves the HTTP status API.
package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/cluster"
	"github.com/vpcflow/vpcflow/flows"
)

// Options configure a Controller. Zero values take the documented defaults.
type Options struct {
	// NoPeerFetch (replica mode) turns blueprint distribution off: this
	// replica never takes a newer policy from a peer, only from its own
	// file or source (for sites whose configuration management writes every
	// replica's file). While a live peer enforces a newer policy it stands
	// by; the revision fence guards what a dead peer wrote.
	NoPeerFetch bool
	// BlueprintPath is the blueprint file; it must be valid at start.
	// Ignored when Source is set.
	BlueprintPath string
	// Source, when set, produces the blueprint instead of the file (e.g.
	// the CloudStack API, package cloudstack): it is fetched at start (it
	// must succeed), every SourceInterval, on SIGHUP and on POST /reload.
	// A failed fetch or an invalid result keeps the last good policy.
	Source Source
	// SourceInterval is how often Source is fetched (default 60s).
	SourceInterval time.Duration
	// SourceTimeout bounds one fetch of Source (default 5m).
	SourceTimeout time.Duration
	// Listen is the OpenFlow listen address, tcp:HOST:PORT (default
	// tcp:127.0.0.1:6653: set the management address in production).
	Listen string
	// HTTP is the status API address (default 127.0.0.1:9653; "" = default,
	// "off" = disabled).
	HTTP string
	// HTTPToken, HTTPTLS and Metrics: the API's credentials, optional TLS
	// and the separate /metrics listener (httpauth.go; docs/security.md
	// "The HTTP API").
	HTTPToken string
	HTTPTLS   *tls.Config
	Metrics   string
	// ReloadPoll is how often the blueprint file is checked for changes
	// (default 1s). SIGHUP reloads at once (the command wires it).
	ReloadPoll time.Duration
	// DriftInterval is how often each bridge's installed flows are re-read
	// and repaired (default 30s).
	DriftInterval time.Duration
	// RetryInterval is the wait after a failed reconcile (default 2s).
	RetryInterval time.Duration
	// OpTimeout bounds one OpenFlow operation (dump, bundle) (default 60s).
	OpTimeout time.Duration
	// ReclaimBackoff is how long a replica waits before re-claiming MASTER
	// of a bridge after the switch demoted it (default 5s, longer than the
	// ~2.2 s a partitioned replica keeps believing it has a quorum): replicas
	// never fight over a bridge while their views of the cluster differ.
	ReclaimBackoff time.Duration
	// ClaimSettle (replica mode): a bridge is claimed only once its
	// connection to this replica is this old, so that every replica's
	// connected set has been gossiped and all compute the same owner: at
	// start-up, replicas that each saw only their own connection all
	// claimed every bridge, each claim demoting the previous one (issue 13
	// defect 9). Default 400 ms (several gossip rounds); negative = off.
	ClaimSettle time.Duration
	// Cluster, when set, makes this controller one replica of a cluster:
	// only the bridge's owner (with a quorum) claims MASTER. nil = a single
	// replica that masters every bridge.
	Cluster *cluster.Cluster
	// TLS is the listener's configuration for ssl: (mutual TLS: switches
	// must present a certificate signed by the CA; see package pki). A
	// switch's certificate CommonName must be its blueprint host's name.
	TLS *tls.Config
	// OVSDBTLS is the client configuration for ssl: OVSDB endpoints
	// (--provision).
	OVSDBTLS *tls.Config
	// DropLog sends packets dropped by the security rules to the controller
	// (rate-limited by an OpenFlow meter) and logs each (see droplog.go).
	DropLog bool
	// DropLogRate is the meter rate in packets/s per bridge (default 20).
	DropLogRate uint32
	// PolicyMetricRules caps the policy rules with their own
	// vpcflow_policy_rule_* series (policy_observe.go); the others are
	// counted under rule="other". 0 = DefaultPolicyMetricRules; negative =
	// none (every rule under "other"); at most MaxPolicyMetricRules.
	PolicyMetricRules int
	// Provision makes the controller provision hosts that have an `ovsdb:`
	// endpoint (only the owner replica of a host does).
	Provision bool
	// ProvisionInterval is how often owned hosts are re-provisioned
	// (idempotent; repairs drift) (default 30s).
	ProvisionInterval time.Duration
	// HandoverTimeout bounds a graceful shutdown's wait for other replicas
	// to take over this replica's bridges (default 5s).
	HandoverTimeout time.Duration
	// FullReconciles bounds how many bridges are reconciled in full (table
	// dump, diff, bundle, read-back) at once: each holds whole flow tables
	// in memory (~2 KiB per flow while it runs). Default 64. At 200 bridges
	// in one ovs-vswitchd (docs/performance.md): 4 took 150 s to converge
	// (the switch serves each connection a batch per main-loop turn), 32
	// 44 s at 450 B/flow, 64 31 s at 823 B/flow, unbounded 30 s at 2.2
	// KiB/flow. Incremental reloads are not bounded.
	FullReconciles int
	// ReloadGather bounds how long a reload's incremental reconciles wait
	// for each other before writing (default 100ms; negative: no waiting).
	// Every bridge computes its delta, then all write together, so a switch
	// process holding several affected bridges receives their bundles in one
	// main-loop turn instead of one turn per bridge as they trickle in.
	ReloadGather time.Duration
	// MaxHandshakes bounds the switch connections between accept and a
	// completed handshake (TLS, OpenFlow HELLO/FEATURES, identity check,
	// PORT_DESC); more are closed at once (default 128). Each one holds at
	// most ~1.2 MiB (PORT_DESC is bounded to 1 MiB).
	MaxHandshakes int
	// HandshakeTimeout bounds one switch's whole handshake (default 10s).
	HandshakeTimeout time.Duration
	Log              logrus.FieldLogger
}

func (o *Options) defaults() {
	if o.Listen == "" {
		o.Listen = "tcp:127.0.0.1:6653"
	}
	if o.HTTP == "" {
		o.HTTP = "127.0.0.1:9653"
	}
	if o.ReloadPoll == 0 {
		o.ReloadPoll = time.Second
	}
	if o.SourceInterval == 0 {
		o.SourceInterval = 60 * time.Second
	}
	if o.SourceTimeout == 0 {
		o.SourceTimeout = 5 * time.Minute
	}
	if o.DriftInterval == 0 {
		o.DriftInterval = 30 * time.Second
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = 2 * time.Second
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = 60 * time.Second
	}
	if o.ClaimSettle == 0 {
		o.ClaimSettle = 400 * time.Millisecond
	}
	if o.ReclaimBackoff == 0 {
		o.ReclaimBackoff = 5 * time.Second
	}
	if o.DropLogRate == 0 {
		o.DropLogRate = 20
	}
	if o.PolicyMetricRules == 0 {
		o.PolicyMetricRules = DefaultPolicyMetricRules
	} else if o.PolicyMetricRules < 0 {
		o.PolicyMetricRules = 0
	}
	if o.ProvisionInterval == 0 {
		o.ProvisionInterval = 30 * time.Second
	}
	if o.HandoverTimeout == 0 {
		o.HandoverTimeout = 5 * time.Second
	}
	if o.FullReconciles <= 0 {
		o.FullReconciles = 64
	}
	if o.ReloadGather == 0 {
		o.ReloadGather = 100 * time.Millisecond
	}
	if o.MaxHandshakes <= 0 {
		o.MaxHandshakes = 128
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
}

// policy is one accepted blueprint, indexed, with its host plans. It keeps
// no compiled flows: a plan is a few fingerprints per host, and flows are
// built when a reconcile or an audit needs them.
type policy struct {
	opts   flows.CompileOptions
	bp     *flows.Blueprint
	ix     *flows.Index
	hash   string
	loaded time.Time
	// Distribution (distribute.go): the bytes peers fetch, where the
	// policy came from, and its place in the cluster's policy order.
	raw     []byte
	from    string
	version uint64
	origin  string // "" = this replica

	mu    sync.Mutex
	plans map[string]*flows.Compiled
	descs map[string]map[flows.Cookie]string // per host: rule -> description

	rulesOnce sync.Once
	rules     *flows.PolicyRules // policy rule names (policy_observe.go)

	// sharedDeltas: diffs of changed shared segments, once per reload
	// (delta_shared.go).
	sharedDeltas sharedDeltas
}

func newPolicy(bp *flows.Blueprint, opts flows.CompileOptions) *policy {
	return &policy{bp: bp, ix: flows.NewIndex(bp), hash: bp.Hash(), loaded: time.Now(),
		opts: opts, plans: map[string]*flows.Compiled{}}
}

// describe returns the host's rule descriptions (cookie rule bits -> note),
// built once per policy from the compiled flows.
func (p *policy) describe(host string) (map[flows.Cookie]string, error) {
	p.mu.Lock()
	d, ok := p.descs[host]
	p.mu.Unlock()
	if ok {
		return d, nil
	}
	fs, err := p.compile(host)
	if err != nil {
		return nil, err
	}
	d = describeRules(fs)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.descs == nil {
		p.descs = map[string]map[flows.Cookie]string{}
	}
	p.descs[host] = d
	return d, nil
}

// compile builds the host's flows with their notes (a new slice; audit and
// rule descriptions). Reconciles build without notes.
func (p *policy) compile(host string) ([]flows.Flow, error) {
	c, err := p.plan(host)
	if err != nil {
		return nil, err
	}
	return c.Annotated()
}

// plan returns the host's plan (segment fingerprints), made once.
func (p *policy) plan(host string) (*flows.Compiled, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.plans[host]; ok {
		return c, nil
	}
	c, err := flows.CompileHost(p.ix, host, p.opts)
	if err != nil {
		return nil, err
	}
	p.plans[host] = c
	return c, nil
}

// Source produces blueprints from something other than a file. The
// controller calls Fetch from one goroutine at a time (reloads are
// serialised).
type Source interface {
	// Name describes the source for logs and GET /status ("blueprint");
	// it must not contain credentials.
	Name() string
	// Fetch returns a validated blueprint (as flows.Parse returns it), or
	// an error. It must never return a blueprint built from a partial
	// view: any fetch problem is an error.
	Fetch(ctx context.Context) (*flows.Blueprint, error)
}

// Controller is the running controller.
type Controller struct {
	opts Options
	log  logrus.FieldLogger

	mu         sync.Mutex
	pol        *policy
	reloadErr  string
	reloadAt   time.Time
	fileStamp  string
	bridges    map[uint64]*bridge // current connection per datapath id
	knownHosts map[uint64]flows.Host
	listenAddr net.Addr
	httpAddr   net.Addr
	leaving    atomic.Bool
	metrics    *metrics
	rejected   []Rejected
	// metricsAddr is the bound --metrics address; authFailures rate-limits
	// the log of refused API requests (httpauth.go).
	metricsAddr  net.Addr
	authFailures authLog

	// fullSem bounds the full reconciles running at once.
	fullSem chan struct{}
	// reloadMu serialises Reload.
	reloadMu sync.Mutex
	// gate lines up the writes of the latest reload's incremental
	// reconciles (see Options.ReloadGather).
	gate atomic.Pointer[sendGate]
	// provKick asks the provisioning loop for a pass now (kickProvision).
	provKick chan struct{}
	// syncWake and fetchKick drive blueprint distribution (distribute.go).
	syncWake  chan struct{}
	fetchKick chan struct{}
	// hsSem bounds the handshakes in progress (handshake.go).
	hsSem     chan struct{}
	hsRefused atomic.Uint64
	hsLogAt   atomic.Int64
}

// New loads the blueprint and returns a controller ready to Run.
func New(opts Options) (*Controller, error) {
	opts.defaults()
	if err := checkPolicyMetricRules(opts.PolicyMetricRules); err != nil {
		return nil, err
	}
	c := &Controller{opts: opts, log: opts.Log, bridges: map[uint64]*bridge{}, knownHosts: map[uint64]flows.Host{},
		fullSem: make(chan struct{}, opts.FullReconciles), provKick: make(chan struct{}, 1),
		syncWake: make(chan struct{}, 1), fetchKick: make(chan struct{}, 1),
		hsSem: make(chan struct{}, opts.MaxHandshakes)}
	c.metrics = newMetrics(c)
	if opts.Source != nil {
		ctx, cancel := context.WithTimeout(context.Background(), opts.SourceTimeout)
		defer cancel()
		bp, raw, err := fetchSource(ctx, opts.Source)
		if err != nil {
			return nil, err
		}
		c.setPolicy(bp)
		c.pol.raw = raw
		return c, nil
	}
	bp, raw, err := loadFile(opts.BlueprintPath)
	if err != nil {
		return nil, err
	}
	c.setPolicy(bp)
	c.pol.raw = raw
	c.fileStamp = flows.FileStamp(opts.BlueprintPath)
	return c, nil
}

// sourceName is the blueprint's origin for logs and /status.
func (c *Controller) sourceName() string {
	if c.opts.Source != nil {
		return c.opts.Source.Name()
	}
	return c.opts.BlueprintPath
}

func (c *Controller) setPolicy(bp *flows.Blueprint) {
	c.pol = newPolicy(bp, flows.CompileOptions{DropLog: c.opts.DropLog, NoNotes: true})
	for i := range bp.Hosts {
		c.knownHosts[bp.Hosts[i].DPID] = bp.Hosts[i]
	}
}

func (c *Controller) policy() *policy {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pol
}

// Reload re-reads the blueprint (the file, or a fetch of Options.Source).
// An invalid blueprint (or an older revision, or the same revision with
// other content), and with a Source any fetch error, is rejected: its
// errors are logged and returned, and the last good policy stays in force.
func (c *Controller) Reload(reason string) error {
	// One reload at a time: a SIGHUP and the file watcher seeing the same
	// write would otherwise parse the file twice, concurrently.
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	if c.opts.Source != nil {
		return c.reloadSource(reason)
	}
	stamp := flows.FileStamp(c.opts.BlueprintPath)
	c.mu.Lock()
	seen := stamp == c.fileStamp
	c.mu.Unlock()
	if seen && reason == "file changed" {
		return nil // another reload read this version of the file meanwhile
	}
	bp, raw, err := loadFile(c.opts.BlueprintPath)
	c.mu.Lock()
	c.fileStamp = stamp
	c.reloadAt = time.Now()
	return c.apply(bp, err, reason, incoming{raw: raw})
}

// apply accepts bp as the new policy, or rejects it (err, an older
// revision, the same non-zero revision with other content, or for a peer's
// policy one not newer in the cluster's order) keeping the last good
// policy. It is called with c.mu held and releases it.
func (c *Controller) apply(bp *flows.Blueprint, err error, reason string, in incoming) error {
	if err == nil {
		cur := c.pol.bp
		switch {
		case bp.Hash() == c.pol.hash:
			if in.peer != nil {
				adopted := c.adoptKey(in)
				c.mu.Unlock()
				if adopted {
					c.publishState()
				}
				return nil
			}
			c.reloadErr = ""
			c.mu.Unlock()
			l := c.log.WithFields(logrus.Fields{"reason": reason, "revision": bp.Revision})
			if reason == "poll" {
				l.Debug("blueprint unchanged") // every SourceInterval: not worth a line
			} else {
				l.Info("blueprint unchanged")
			}
			return nil
		case in.peer != nil && bp.Revision >= cur.Revision:
			err = c.checkPeerKey(in)
		default:
			if err = flows.CheckSuccessor(cur.Revision, c.pol.hash, bp); err != nil {
				err = fmt.Errorf("%s: %w", in.name(c), err)
			} else {
				err = c.checkReplicaSetChange(cur, bp)
			}
		}
	}
	if err != nil {
		if in.peer == nil {
			c.reloadErr = err.Error()
		}
		c.mu.Unlock()
		for _, line := range strings.Split(err.Error(), "\n") {
			c.log.WithField("reason", reason).Error("blueprint rejected, last good policy kept: " + line)
		}
		return err
	}
	if in.peer == nil {
		c.reloadErr = ""
	}
	prev := c.pol
	c.setPolicy(bp)
	c.stampPolicy(prev, in)
	c.applyReplicaSet(bp)
	// Certificates are checked against the new policy before any bridge can
	// read it (same critical section): see handshake.go.
	refused := c.recheckIdentities()
	brs := make([]*bridge, 0, len(c.bridges))
	dpids := make([]uint64, 0, len(c.bridges))
	for _, b := range c.bridges {
		brs = append(brs, b)
		dpids = append(dpids, b.dpid)
	}
	c.gate.Store(newSendGate(dpids, c.opts.ReloadGather))
	c.mu.Unlock()
	for _, r := range refused {
		c.reject(r.remote, r.dpid, r.why)
	}
	c.log.WithFields(logrus.Fields{"reason": reason, "revision": bp.Revision, "hash": bp.Hash()[:12], "from": c.policy().fromName(c)}).Info("blueprint loaded")
	// Accepted even if some bridge holds a newer revision: each such bridge
	// stays fenced (nothing is written to it) while the others take the
	// new policy; docs/cluster.md "Blueprint agreement".
	if inst, n := c.fencedRevision(); n > 0 && inst > bp.Revision {
		c.log.WithFields(logrus.Fields{"revision": bp.Revision, "installed_revision": inst, "bridges": n}).
			Warn("revision fence: some bridges hold flows of a newer blueprint revision than the one just loaded; they stay on standby until a blueprint with revision >= installed_revision is loaded")
	}
	c.publishState()
	for _, b := range brs {
		b.kick("reload")
	}
	return nil
}

// Run serves until ctx is cancelled. It returns an error if a listener
// cannot be opened.
func (c *Controller) Run(ctx context.Context) error {
	network, addr, err := ParseListen(c.opts.Listen)
	if err != nil {
		return err
	}
	if network == "ssl" && c.opts.TLS == nil {
		return fmt.Errorf("listen %s: ssl: needs --tls-cert, --tls-key and --tls-ca", c.opts.Listen)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("openflow listen %s: %w", c.opts.Listen, err)
	}
	if network == "ssl" {
		ln = tls.NewListener(ln, c.opts.TLS)
	}
	c.mu.Lock()
	c.listenAddr = ln.Addr()
	c.mu.Unlock()
	var hln net.Listener
	if c.opts.HTTP != "off" {
		hln, err = net.Listen("tcp", c.opts.HTTP)
		if err != nil {
			ln.Close()
			return fmt.Errorf("http listen %s: %w", c.opts.HTTP, err)
		}
		c.mu.Lock()
		c.httpAddr = hln.Addr()
		c.mu.Unlock()
		if c.opts.HTTPTLS != nil {
			hln = tls.NewListener(hln, c.opts.HTTPTLS)
		}
	}
	mln, err := c.listenMetrics()
	if err != nil {
		ln.Close()
		if hln != nil {
			hln.Close()
		}
		return err
	}
	c.log.WithFields(logrus.Fields{"openflow": ln.Addr().String(), "http": c.opts.HTTP, "blueprint": c.sourceName(),
		"revision": c.policy().bp.Revision, "version": buildVersion(), "commit": buildCommit()}).Info("controller started")

	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Bridges outlive ctx during a graceful handover: they stop only after it.
	bctx, bcancel := context.WithCancel(context.Background())
	defer bcancel()
	if hln != nil {
		c.serveHTTP(ctx, &wg, c.httpServer(), hln)
	}
	if mln != nil {
		c.serveHTTP(ctx, &wg, c.metricsServer(), mln)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if c.opts.Source != nil {
			c.pollSource(ctx)
			return
		}
		c.watchFile(ctx)
	}()
	provKick := c.provKick
	if c.opts.Provision {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.provisionLoop(ctx, provKick)
		}()
	}
	if cl := c.opts.Cluster; cl != nil {
		cl.SetBlueprintProvider(c.provideBlueprint)
		c.publishState()
		wg.Add(2)
		go func() {
			defer wg.Done()
			c.syncLoop(ctx)
		}()
		go func() {
			defer wg.Done()
			quorumTick := time.NewTicker(50 * time.Millisecond)
			defer quorumTick.Stop()
			lastQuorum := cl.HasQuorum()
			for {
				select {
				case <-ctx.Done():
					return
				case <-quorumTick.C:
					// memberlist reports no event when a peer becomes
					// suspect; quorum counts only alive peers, so poll it.
					if q := cl.HasQuorum(); q != lastQuorum {
						lastQuorum = q
						c.log.WithField("quorum", q).Warn("cluster quorum changed")
						c.kickAll("quorum change")
					}
				case <-cl.Changes():
					c.wakeSync()
					c.kickAll("cluster change")
					select {
					case provKick <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			c.log.WithError(err).Warn("accept failed")
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if !c.admitHandshake(nc.RemoteAddr().String()) {
			nc.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serveConn(bctx, nc)
		}()
	}
	c.handover()
	bcancel()
	c.mu.Lock()
	for _, b := range c.bridges {
		b.conn.Close()
	}
	c.mu.Unlock()
	wg.Wait()
	c.log.Info("controller stopped")
	return nil
}

// Addrs returns the bound OpenFlow and HTTP addresses (after Run started).
func (c *Controller) Addrs() (openflow, http net.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.listenAddr, c.httpAddr
}

func (c *Controller) watchFile(ctx context.Context) {
	every(ctx, c.opts.ReloadPoll, func() {
		c.mu.Lock()
		changed := flows.FileStamp(c.opts.BlueprintPath) != c.fileStamp
		c.mu.Unlock()
		if changed {
			_ = c.Reload("file changed")
		}
	})
}

// pollSource fetches Options.Source every SourceInterval, and at once when
// this replica becomes the cluster's fetcher (reloadSource skips the
// fetch on the other replicas).
func (c *Controller) pollSource(ctx context.Context) {
	t := time.NewTicker(c.opts.SourceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = c.Reload("poll")
		case <-c.fetchKick:
			_ = c.Reload("became the fetcher")
		}
	}
}

// every calls f every d until ctx is done.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// ParseListen parses tcp:HOST:PORT, ssl:HOST:PORT (network "ssl") or
// HOST:PORT.
func ParseListen(s string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(s, "tcp:"):
		return "tcp", s[4:], nil
	case strings.HasPrefix(s, "ssl:"):
		return "ssl", s[4:], nil
	case strings.Contains(s, ":") && !strings.Contains(s, "://"):
		return "tcp", s, nil
	}
	return "", "", fmt.Errorf("listen %q: want tcp:HOST:PORT, e.g. tcp:192.0.2.250:6653", s)
}

// serveConn runs one switch connection; it holds a handshake slot
// (admitHandshake) until the handshake is over.
func (c *Controller) serveConn(ctx context.Context, nc net.Conn) {
	release := sync.OnceFunc(c.releaseHandshake)
	defer release()
	remote := nc.RemoteAddr().String()
	log := c.log.WithField("remote", remote)
	hctx, cancel := context.WithTimeout(ctx, c.opts.HandshakeTimeout)
	if tc, ok := nc.(*tls.Conn); ok {
		if err := tc.HandshakeContext(hctx); err != nil {
			cancel()
			c.reject(remote, 0, "tls handshake failed: "+err.Error())
			nc.Close()
			return
		}
	}
	identity := peerIdentity(nc)
	conn, err := ofHandshake(hctx, nc, log, c.ofOptions(remote, identity))
	cancel()
	if err != nil {
		var r *identityRefusal
		if errors.As(err, &r) {
			c.reject(remote, r.dpid, r.why)
		} else {
			log.WithError(err).Warn("handshake failed")
		}
		nc.Close()
		return
	}
	dpid := conn.DatapathID()
	b := newBridge(c, conn)
	b.identity = identity
	// Check again and register in one critical section: a reload between
	// the early check and here is seen either by this check or by the
	// reload's re-check (handshake.go).
	c.mu.Lock()
	why := c.checkIdentityLocked(dpid, conn.RemoteAddr(), identity)
	var old *bridge
	if why == "" {
		old = c.bridges[b.dpid]
		c.bridges[b.dpid] = b
	}
	c.mu.Unlock()
	if why != "" {
		c.reject(conn.RemoteAddr(), dpid, why)
		conn.Close()
		return
	}
	release()
	if old != nil {
		b.log.WithField("old_remote", old.conn.RemoteAddr()).Info("datapath reconnected: replacing the previous connection")
		old.conn.Close()
	}
	c.publishState()
	b.run(ctx)
	c.mu.Lock()
	if c.bridges[b.dpid] == b {
		delete(c.bridges, b.dpid)
	}
	c.mu.Unlock()
	c.publishState()
}

// peerIdentity is the switch's certificate CommonName ("" without TLS).
func peerIdentity(nc net.Conn) string {
	if tc, ok := nc.(*tls.Conn); ok {
		if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
			return st.PeerCertificates[0].Subject.CommonName
		}
	}
	return ""
}

func hostOf(remote string) string {
	h, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return h
}

// checkIdentityLocked refuses a connection that claims a datapath id it
// may not hold (c.mu held): with TLS, the certificate must name the
// blueprint host that owns the datapath id (identityMismatch); and a
// datapath id already connected from another address or certificate is not
// taken over while that connection is alive (a rogue switch cannot hijack a
// bridge's identity; a genuine reconnect comes from the same address and
// certificate).
func (c *Controller) checkIdentityLocked(dpid uint64, remote, identity string) string {
	if why := identityMismatch(c.pol.bp, dpid, identity); why != "" {
		return why
	}
	old := c.bridges[dpid]
	if old == nil || old.conn.Err() != nil {
		return ""
	}
	if hostOf(old.conn.RemoteAddr()) != hostOf(remote) || old.identity != identity {
		return fmt.Sprintf("datapath id %016x is already connected from %s (certificate %q); refused a second connection claiming it from %s (certificate %q)",
			dpid, old.conn.RemoteAddr(), old.identity, remote, identity)
	}
	return ""
}

// Rejected is one refused switch connection (reported in /status).
type Rejected struct {
	At         time.Time `json:"at"`
	Remote     string    `json:"remote"`
	DatapathID string    `json:"datapath_id,omitempty"`
	Reason     string    `json:"reason"`
}

func (c *Controller) reject(remote string, dpid uint64, reason string) {
	r := Rejected{At: time.Now().UTC(), Remote: remote, Reason: reason}
	if dpid != 0 {
		r.DatapathID = fmt.Sprintf("%016x", dpid)
	}
	c.log.WithFields(logrus.Fields{"remote": remote, "datapath_id": r.DatapathID}).Warn("switch connection refused: " + reason)
	c.metrics.rejected.Inc()
	c.mu.Lock()
	c.rejected = append(c.rejected, r)
	if len(c.rejected) > 50 {
		c.rejected = c.rejected[len(c.rejected)-50:]
	}
	c.mu.Unlock()
}

func (c *Controller) kickAll(reason string) {
	c.mu.Lock()
	brs := make([]*bridge, 0, len(c.bridges))
	for _, b := range c.bridges {
		brs = append(brs, b)
	}
	c.mu.Unlock()
	for _, b := range brs {
		b.kick(reason)
	}
}

// handover, on a graceful shutdown of a cluster replica: leave the cluster
// (peers see it in well under a second), then wait until the switches have
// given every bridge this replica mastered to another replica, so the
// dataplane never waits for failure detection.
func (c *Controller) handover() {
	cl := c.opts.Cluster
	if cl == nil {
		return
	}
	c.leaving.Store(true)
	if err := cl.Leave(c.opts.HandoverTimeout); err != nil {
		c.log.WithError(err).Warn("cluster leave")
	}
	deadline := time.Now().Add(c.opts.HandoverTimeout)
	for {
		c.mu.Lock()
		masters := 0
		for _, b := range c.bridges {
			if b.conn.Role() == OFRoleMaster && b.conn.Err() == nil {
				masters++
			}
		}
		c.mu.Unlock()
		if masters == 0 {
			c.log.Info("handover complete: no bridge is mastered by this replica")
			break
		}
		if time.Now().After(deadline) {
			c.log.WithField("bridges", masters).Warn("handover timed out: exiting while still MASTER of some bridges (flows persist)")
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cl.Shutdown()
}

// sendGate lines up the writes of one reload's incremental reconciles:
// each bridge of the reload arrives once it has computed its delta (or
// finds it has none, or does something else), and the bridges with a delta
// wait until every bridge has arrived or the deadline passed, then write.
// Nil-safe.
type sendGate struct {
	mu      sync.Mutex
	pending map[uint64]bool
	open    chan struct{}
	once    sync.Once
}

func newSendGate(dpids []uint64, max time.Duration) *sendGate {
	g := &sendGate{pending: make(map[uint64]bool, len(dpids)), open: make(chan struct{})}
	for _, d := range dpids {
		g.pending[d] = true
	}
	if max < 0 || len(dpids) == 0 {
		g.release()
	} else {
		time.AfterFunc(max, g.release)
	}
	return g
}

func (g *sendGate) release() { g.once.Do(func() { close(g.open) }) }

// arrive marks dpid as ready (idempotent).
func (g *sendGate) arrive(dpid uint64) {
	if g == nil {
		return
	}
	g.mu.Lock()
	delete(g.pending, dpid)
	done := len(g.pending) == 0
	g.mu.Unlock()
	if done {
		g.release()
	}
}

// wait blocks until the gate opens or ctx ends.
func (g *sendGate) wait(ctx context.Context) {
	if g == nil {
		return
	}
	select {
	case <-g.open:
	case <-ctx.Done():
	}
}
