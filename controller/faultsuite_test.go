package controller

// The seeded cluster fault suite (issue 13).
//
// Each seed builds one in-process cluster: three replicas (controller.New +
// cluster.Start, real memberlist on a loopback address of its own, tuned
// intervals), and three fake switches (faultsuite_switch_test.go) that
// connect to every replica and arbitrate roles like OVS 3.1. A schedule that
// is a pure function of the seed then injects faults (kills, restarts,
// partitions, delayed and dropped gossip, stale blueprint files, concurrent
// reloads, an outsider, slow switches, a fourth replica joining and leaving
// through the blueprint's controllers:), heals everything, and the checker
// verifies:
//
//	single-writer   every flow-mod a switch accepted came from its MASTER
//	                connection (never from an EQUAL one)
//	generation      no two replicas wrote under the same generation id
//	revision        no add/modify carries a blueprint revision lower than the
//	                highest revision already in that switch's table
//	converge        once healthy, every bridge holds exactly the flows of the
//	                newest revision, with one MASTER (bounded wait)
//	stuck           every replica answers Status/HasQuorum within 5 s
//	                (a watchdog dumps all goroutines otherwise)
//	leak            no goroutine started by the run outlives it
//
// Run:   go test ./controller/ -run TestFaultSuite                 (CI: 200 seeds)
//        VPCFLOW_FAULT_SEEDS=2000 go test ... (or make soak)
// Replay one seed (its schedule is printed on failure and is identical on
// every run; memberlist and goroutine timing are not, so replay a few times):
//        VPCFLOW_FAULT_SEED=137 VPCFLOW_FAULT_REPEAT=5 go test ./controller/ -run TestFaultSuite -v
// Event logs of failing seeds go to $VPCFLOW_FAULT_LOGDIR (default
// $TMPDIR/vpcflow-faultsuite); VPCFLOW_FAULT_LOGALL=1 writes every seed's.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/cluster"
	"github.com/vpcflow/vpcflow/flows"
)

// Invariants.
const (
	invSingleWriter = "single-writer"
	invGenReuse     = "generation"
	invRevision     = "revision"
	invConverge     = "converge"
	invStuck        = "stuck"
	invLeak         = "leak"
	invHarness      = "harness" // the suite itself could not do what the schedule asked
)

// Fault kinds. Each is enabled unless listed in fsNeeds: kinds that
// exercise features today's code does not have yet. The integrator enables
// one (delete it from fsNeeds, or VPCFLOW_FAULT_ENABLE=kind,...) when the
// feature it needs lands.
const (
	evKill        = "kill"         // abrupt stop: connections dropped, no memberlist Leave
	evStop        = "stop"         // graceful stop (SIGTERM: handover)
	evRestart     = "restart"      // start a stopped replica again with its file
	evPartition   = "partition"    // symmetric partition of a subset, for a while
	evOneWay      = "oneway"       // one direction of one link cut, for a while
	evDelay       = "delay"        // gossip on one link delayed
	evLoss        = "loss"         // gossip on one link dropped at random
	evStaleStart  = "stale-start"  // restart a replica with an OLDER blueprint file
	evReload      = "reload"       // new revision written to every replica, reloaded concurrently
	evReloadSome  = "reload-some"  // new revision reaches only some replicas for now
	evOutsider    = "outsider"     // a memberlist member not in controllers: joins, then crashes
	evSlowSwitch  = "slow-switch"  // a switch answers every request late, for a while
	evReplicaSet  = "replica-set"  // a fourth replica joins, then leaves (replica-set change)
	evHostileOuts = "outsider-max" // an outsider gossiping revision 0xffffffff and staying
	evReloadOne   = "reload-one"   // a reload on ONE replica only: the others must fetch it
)

// fsNeeds lists the fault kinds that need a feature not built yet (issue
// 13), with what they need. They are not scheduled until enabled.
var fsNeeds = map[string]string{
	// empty: every kind is scheduled
}

// fsKnownDefects maps an invariant to the issue-13 defect that breaks it on
// today's main. A seed whose only violations are of listed invariants is
// reported as SKIP "known defect", never as passed. Remove an entry when
// its fix lands (VPCFLOW_FAULT_STRICT=1 fails on them today).
var fsKnownDefects = map[string]string{
	// empty: defects 1, 2/10 and 9 have landed (issue 13)
}

// Suite parameters (env overrides, see the file comment).
func fsEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func fsEnabledKinds() map[string]bool {
	en := map[string]bool{}
	for _, k := range fsAllKinds {
		if _, blocked := fsNeeds[k]; !blocked {
			en[k] = true
		}
	}
	for _, k := range strings.Split(os.Getenv("VPCFLOW_FAULT_ENABLE"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			en[k] = true
		}
	}
	return en
}

var fsAllKinds = []string{evKill, evStop, evRestart, evPartition, evOneWay, evDelay, evLoss, evStaleStart,
	evReload, evReloadSome, evOutsider, evSlowSwitch, evReplicaSet, evHostileOuts, evReloadOne}

// fsWeights are the relative frequencies of the kinds in a schedule.
var fsWeights = map[string]int{evKill: 3, evStop: 1, evPartition: 3, evOneWay: 2, evDelay: 2, evLoss: 2,
	evStaleStart: 2, evReload: 3, evReloadSome: 2, evOutsider: 1, evSlowSwitch: 2, evReplicaSet: 1,
	evHostileOuts: 1, evReloadOne: 2}

const (
	fsReplicas    = 3 // r0..r2; r3 (fsNewcomer) runs only while a replica-set event has grown the set
	fsNewcomer    = fsReplicas
	fsGossipPort  = 27946 // every replica has its own loopback IP
	fsFaultPhase  = 5 * time.Second
	fsConvergeMax = 40 * time.Second
	fsStuckAfter  = 5 * time.Second
)

// ---------------------------------------------------------------- schedule

type fsEvent struct {
	At     time.Duration
	Kind   string
	R, R2  int           // replica indexes (R2: the other end of a link)
	Set    []int         // partition side / replicas that get a reload
	For    time.Duration // how long a link fault or slowness lasts (replica-set: until the shrink)
	Grow   bool          // replica-set: the grow step (else the shrink step, scheduled For after it)
	Rev    uint32        // blueprint revision (reload, stale start)
	Amount time.Duration // delay or slowness
	Loss   float64
	Switch int
}

func (e fsEvent) String() string {
	s := fmt.Sprintf("t=%-6s %-12s", e.At.Round(time.Millisecond), e.Kind)
	switch e.Kind {
	case evKill, evStop, evRestart:
		s += fmt.Sprintf(" r%d", e.R)
	case evStaleStart:
		s += fmt.Sprintf(" r%d with revision %d", e.R, e.Rev)
	case evPartition:
		s += fmt.Sprintf(" %v | rest for %s", fsNames(e.Set), e.For)
	case evOneWay:
		s += fmt.Sprintf(" r%d -> r%d dropped for %s", e.R, e.R2, e.For)
	case evDelay:
		s += fmt.Sprintf(" r%d -> r%d +%s for %s", e.R, e.R2, e.Amount, e.For)
	case evLoss:
		s += fmt.Sprintf(" r%d -> r%d %.0f%% for %s", e.R, e.R2, e.Loss*100, e.For)
	case evReload, evReloadSome, evReloadOne:
		s += fmt.Sprintf(" revision %d to %v (stagger %s)", e.Rev, fsNames(e.Set), e.Amount)
	case evOutsider, evHostileOuts:
		s += fmt.Sprintf(" for %s", e.For)
	case evReplicaSet:
		if e.Grow {
			s += fmt.Sprintf(" grow: revision %d (4 controllers) to %v (stagger %s), then r3 starts; shrink after %s", e.Rev, fsNames(e.Set), e.Amount, e.For)
		} else {
			s += fmt.Sprintf(" shrink: r3 stops, then revision %d (3 controllers) to %v (stagger %s)", e.Rev, fsNames(e.Set), e.Amount)
		}
	case evSlowSwitch:
		s += fmt.Sprintf(" kvm%d +%s per reply for %s", e.Switch+1, e.Amount, e.For)
	}
	return s
}

func fsNames(set []int) []string {
	var out []string
	for _, i := range set {
		out = append(out, fmt.Sprintf("r%d", i))
	}
	return out
}

// fsSchedule derives the fault schedule from the seed alone.
//
// A replica-set event is two entries: the grow (a new revision listing a
// fourth controller, then r3 starts) and, For later, the shrink (r3 stops,
// then the next revision without it). The shrink is an entry of its own so
// that its revision is ordered against the other reloads' by the schedule,
// not by timers; it may fall after the fault phase (then the heal waits for
// it: every run ends with three replicas). A replica-set event drawn while
// the set is grown is dropped (one change at a time, as the product
// requires). Revisions drawn while the set is grown list four controllers
// (fsRevSizes).
func fsSchedule(seed uint64, enabled map[string]bool) []fsEvent {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var kinds []string
	total := 0
	for _, k := range fsAllKinds {
		if enabled[k] && fsWeights[k] > 0 {
			kinds = append(kinds, k)
			total += fsWeights[k]
		}
	}
	down := map[int]bool{} // the model: which replicas are stopped
	rev := uint32(1)       // newest revision written so far
	var evs []fsEvent
	dur := func(lo, hi time.Duration) time.Duration {
		return (lo + time.Duration(rng.Int64N(int64(hi-lo)))).Round(10 * time.Millisecond)
	}
	up := func() []int {
		var out []int
		for i := range fsReplicas {
			if !down[i] {
				out = append(out, i)
			}
		}
		return out
	}
	// some picks the live replicas (in the model) a replica-set revision is
	// written to and reloaded on: one or more; a down one if none is up
	// (its file gets the revision, nothing is reloaded).
	some := func(r int) []int {
		live := up()
		if len(live) == 0 {
			return []int{r}
		}
		rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
		set := live[:1+rng.IntN(len(live))]
		slices.Sort(set)
		return set
	}
	grown, shrinkAt := false, time.Duration(0)
	shrink := func(at time.Duration) {
		rev++
		evs = append(evs, fsEvent{At: at, Kind: evReplicaSet, Rev: rev, Set: some(rng.IntN(fsReplicas)),
			Amount: dur(10*time.Millisecond, 300*time.Millisecond)})
		grown = false
	}
	for t := dur(100*time.Millisecond, 500*time.Millisecond); t < fsFaultPhase; t += dur(150*time.Millisecond, 900*time.Millisecond) {
		if grown && shrinkAt <= t {
			shrink(shrinkAt)
		}
		n := rng.IntN(total)
		kind := kinds[0]
		for _, k := range kinds {
			if n < fsWeights[k] {
				kind = k
				break
			}
			n -= fsWeights[k]
		}
		e := fsEvent{At: t, Kind: kind}
		r := rng.IntN(fsReplicas)
		r2 := (r + 1 + rng.IntN(fsReplicas-1)) % fsReplicas
		switch kind {
		case evKill, evStop:
			if down[r] {
				e.Kind = evRestart
			}
			down[r] = !down[r]
			e.R = r
		case evStaleStart:
			if rev < 2 { // nothing older than the first revision: a plain kill
				e.Kind, e.R = evKill, r
				down[r] = !down[r]
				if !down[r] {
					e.Kind = evRestart
				}
				break
			}
			e.R, e.Rev = r, 1+uint32(rng.IntN(int(rev-1)))
			down[r] = false
		case evPartition:
			e.Set = []int{r}
			if rng.IntN(3) == 0 {
				e.Set = append(e.Set, r2)
				slices.Sort(e.Set)
			}
			e.For = dur(300*time.Millisecond, 2500*time.Millisecond)
		case evOneWay:
			e.R, e.R2, e.For = r, r2, dur(300*time.Millisecond, 2500*time.Millisecond)
		case evDelay:
			e.R, e.R2, e.For, e.Amount = r, r2, dur(300*time.Millisecond, 2500*time.Millisecond), dur(20*time.Millisecond, 600*time.Millisecond)
		case evLoss:
			e.R, e.R2, e.For, e.Loss = r, r2, dur(300*time.Millisecond, 2500*time.Millisecond), 0.2+0.7*rng.Float64()
		case evReload, evReloadSome, evReloadOne:
			rev++
			e.Rev = rev
			e.Amount = dur(10*time.Millisecond, 400*time.Millisecond)
			switch kind {
			case evReload:
				e.Set = []int{0, 1, 2}
			case evReloadOne:
				e.Set = []int{r}
			default:
				e.Set = []int{r}
				if rng.IntN(2) == 0 {
					e.Set = append(e.Set, r2)
					slices.Sort(e.Set)
				}
			}
		case evOutsider, evHostileOuts:
			e.For = dur(500*time.Millisecond, 3*time.Second)
		case evReplicaSet:
			if grown {
				continue // one replica-set change at a time
			}
			rev++
			e.Grow, e.Rev, e.For = true, rev, dur(500*time.Millisecond, 3*time.Second)
			e.Set, e.Amount = some(r), dur(10*time.Millisecond, 300*time.Millisecond)
			grown, shrinkAt = true, t+e.For
		case evSlowSwitch:
			e.Switch, e.For, e.Amount = rng.IntN(3), dur(300*time.Millisecond, 2500*time.Millisecond), dur(10*time.Millisecond, 250*time.Millisecond)
		}
		evs = append(evs, e)
	}
	if grown {
		shrink(shrinkAt)
	}
	return evs
}

// fsRevSizes maps every revision of a schedule to the number of
// controllers its blueprint lists: 4 from a replica-set grow until its
// shrink (reloads in between keep the fourth controller), 3 otherwise.
func fsRevSizes(sched []fsEvent) map[uint32]int {
	sizes := map[uint32]int{1: fsReplicas}
	n := fsReplicas
	for _, e := range sched {
		switch e.Kind {
		case evReplicaSet:
			n = fsReplicas
			if e.Grow {
				n = fsReplicas + 1
			}
			sizes[e.Rev] = n
		case evReload, evReloadSome, evReloadOne:
			sizes[e.Rev] = n
		}
	}
	return sizes
}

// ---------------------------------------------------------------- blueprint

var fsDemo = sync.OnceValues(func() ([]byte, error) { return os.ReadFile("../examples/demo/blueprint.yaml") })

// fsBlueprint is the demo blueprint at revision rev listing the first n
// (3 or 4) controllers of fsReplicaNames: odd revisions carry VM
// blue-web-2, even ones do not (so every revision changes flows on kvm1 and
// kvm2, and an older writer would re-add or remove a VM). controllers:
// compiles to no flow (only the hash and OVSDB provisioning read it), but
// fsIntended compiles the same bytes anyway.
// fsReplicaNames names the replicas r0..r3 by their controllers: entries;
// fsReplicaSet is the set of three every run starts with (r3 is appended
// last, so r0..r2 keep their index, and so their claim ids' low bits).
var fsReplicaNames = []string{"192.0.2.250:6653", "192.0.2.251:6653", "192.0.2.252:6653", "192.0.2.253:6653"}

var fsReplicaSet = fsReplicaNames[:fsReplicas]

func fsBlueprint(rev uint32, n int) []byte {
	demo, err := fsDemo()
	if err != nil {
		panic(err)
	}
	var ctls []string
	for _, name := range fsReplicaNames[:n] {
		ctls = append(ctls, "tcp:"+name)
	}
	s := strings.Replace(string(demo), "revision: 1", fmt.Sprintf("revision: %d", rev), 1)
	s = strings.Replace(s, "controllers: [tcp:192.0.2.250:6653]", "controllers: ["+strings.Join(ctls, ", ")+"]", 1)
	if rev%2 == 0 {
		s = regexp.MustCompile(`(?m)^\s*- \{name: blue-web-2,.*\n`).ReplaceAllString(s, "")
	}
	return []byte(s)
}

// ---------------------------------------------------------------- the run

type fsReplica struct {
	idx    int
	name   string
	ip     string
	file   string
	fileRv uint32

	// guarded by run.mu
	up     bool
	ctrl   *Controller
	cl     *cluster.Cluster
	ofAddr string
	cancel context.CancelFunc
	done   chan struct{}
	inc    int // incarnation
}

type fsViolation struct {
	at   time.Duration
	inv  string
	text string
}

type fsRun struct {
	seed    uint64
	label   string
	start   time.Time
	net     *fsNet
	dir     string
	enabled map[string]bool

	revSize map[uint32]int // controllers listed by each revision (fsRevSizes; read-only)

	mu         sync.Mutex
	log        bytes.Buffer
	violations []fsViolation
	replicas   []*fsReplica // r0..r2, and r3 (fsNewcomer: up only while the set is grown)
	extra      []*fsReplica // outsiders
	switches   []*fsSwitch
	newest     uint32
	stopped    bool
	stuck      bool
	stuckCh    chan struct{} // closed when stuck

	wg sync.WaitGroup // dial loops, timers
}

// setSize is the number of controllers revision rev lists.
func (r *fsRun) setSize(rev uint32) int {
	if n, ok := r.revSize[rev]; ok {
		return n
	}
	return fsReplicas
}

// blueprint is the file content of revision rev in this run.
func (r *fsRun) blueprint(rev uint32) []byte { return fsBlueprint(rev, r.setSize(rev)) }

func (r *fsRun) since() time.Duration { return time.Since(r.start).Round(time.Millisecond) }

func (r *fsRun) logf(format string, a ...any) {
	line := fmt.Sprintf(format, a...)
	r.mu.Lock()
	fmt.Fprintf(&r.log, "%8s  %s\n", r.since(), line)
	r.mu.Unlock()
}

func (r *fsRun) policyRevision(name string) uint32 {
	var ctrl *Controller
	r.mu.Lock()
	for _, rep := range r.replicas {
		if rep.name == name {
			ctrl = rep.ctrl
		}
	}
	r.mu.Unlock()
	if ctrl == nil {
		return 0
	}
	return ctrl.Blueprint().Revision
}

func (r *fsRun) violation(inv, format string, a ...any) {
	text := fmt.Sprintf(format, a...)
	r.mu.Lock()
	r.violations = append(r.violations, fsViolation{at: r.since(), inv: inv, text: text})
	fmt.Fprintf(&r.log, "%8s  VIOLATION [%s] %s\n", r.since(), inv, text)
	r.mu.Unlock()
}

// logWriter feeds a replica's controller log (info and above) into the
// event log.
type fsLogWriter struct {
	r    *fsRun
	name string
}

func (w fsLogWriter) Write(p []byte) (int, error) {
	w.r.logf("%s| %s", w.name, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (r *fsRun) logger(name string) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(fsLogWriter{r, name})
	l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true, DisableQuote: true})
	l.SetLevel(logrus.InfoLevel)
	return l
}

func (r *fsRun) clusterConfig(rep *fsReplica, replicas int, join []string) cluster.Config {
	cfg := cluster.DefaultConfig()
	// Replicas are named after their controllers: entries (fsBlueprint)
	// and start with the set their file lists, as in production (cmd/vpcflow
	// passes the blueprint's controllers:); an outsider believes in a set
	// that includes itself (a stranger with a blueprint of its own): the
	// replicas refuse it.
	if rep.file != "" {
		cfg.Name = fsReplicaNames[rep.idx]
		cfg.ReplicaSet = slices.Clone(fsReplicaNames[:r.setSize(rep.fileRv)])
	} else {
		cfg.Name = rep.name
		cfg.ReplicaSet = append(slices.Clone(fsReplicaSet), rep.name)
	}
	_ = replicas // the set size is len(ReplicaSet)
	cfg.BindAddr = rep.ip
	cfg.BindPort = fsGossipPort
	cfg.Join = join
	cfg.ProbeInterval = 100 * time.Millisecond
	cfg.ProbeTimeout = 50 * time.Millisecond
	cfg.SuspicionMult = 3
	cfg.SuspicionMaxTimeoutMult = 2
	cfg.GossipInterval = 50 * time.Millisecond
	cfg.PushPullInterval = time.Second
	cfg.TCPTimeout = 500 * time.Millisecond
	cfg.RejoinInterval = 300 * time.Millisecond
	cfg.QuorumLease = 750 * time.Millisecond
	lg := logrus.New()
	lg.SetOutput(io.Discard)
	cfg.Log = lg
	cfg.TestTransport = r.net.wrap(rep.name, rep.ip)
	return cfg
}

// joinList is every replica's gossip address but except's; r3's only once
// it has been started (an operator lists the replicas that exist).
func (r *fsRun) joinList(except string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rep := range r.replicas {
		if rep.name != except && (rep.idx < fsReplicas || rep.inc > 0) {
			out = append(out, net.JoinHostPort(rep.ip, strconv.Itoa(fsGossipPort)))
		}
	}
	return out
}

func (r *fsRun) writeFile(rep *fsReplica, rev uint32) {
	tmp := rep.file + ".tmp"
	if err := os.WriteFile(tmp, r.blueprint(rev), 0o644); err == nil {
		err = os.Rename(tmp, rep.file)
		if err != nil {
			r.violation(invHarness, "writing %s: %v", rep.file, err)
		}
	} else {
		r.violation(invHarness, "writing %s: %v", rep.file, err)
	}
	rep.fileRv = rev
}

// startReplica starts rep (cluster, then controller) with its file as is.
func (r *fsRun) startReplica(rep *fsReplica, replicas int) error {
	var cl *cluster.Cluster
	var err error
	for try := 0; try < 20; try++ { // the port of a just-stopped incarnation may linger
		cl, err = cluster.Start(r.clusterConfig(rep, replicas, r.joinList(rep.name)))
		if err == nil || !strings.Contains(err.Error(), "in use") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", rep.name, err)
	}
	ctrl, err := New(Options{BlueprintPath: rep.file, Listen: "tcp:" + rep.ip + ":0", HTTP: "off",
		ReloadPoll: time.Hour, DriftInterval: 3 * time.Second, RetryInterval: 200 * time.Millisecond,
		OpTimeout: 5 * time.Second, ReclaimBackoff: 2 * time.Second, HandoverTimeout: time.Second,
		Cluster: cl, Log: r.logger(rep.name)})
	if err != nil {
		_ = cl.Shutdown()
		return fmt.Errorf("start %s: %w", rep.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ctrl.Run(ctx); err != nil {
			r.violation(invHarness, "%s: Run: %v", rep.name, err)
		}
		_ = cl.Shutdown()
	}()
	deadline := time.Now().Add(10 * time.Second)
	var of net.Addr
	for of == nil {
		if of, _ = ctrl.Addrs(); of == nil {
			if time.Now().After(deadline) {
				cancel()
				return fmt.Errorf("%s: OpenFlow listener did not open", rep.name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	r.mu.Lock()
	rep.up, rep.ctrl, rep.cl, rep.ofAddr, rep.cancel, rep.done = true, ctrl, cl, of.String(), cancel, done
	rep.inc++
	r.mu.Unlock()
	r.logf("%s started (revision %d in its file, openflow %s)", rep.name, rep.fileRv, of)
	return nil
}

// stopReplica stops rep: abrupt (a crash: the switches lose the
// connections at once, memberlist is shut down without Leave) or graceful
// (SIGTERM: Leave + handover).
func (r *fsRun) stopReplica(rep *fsReplica, abrupt bool) {
	r.mu.Lock()
	if !rep.up {
		r.mu.Unlock()
		return
	}
	rep.up = false
	cancel, done, cl := rep.cancel, rep.done, rep.cl
	r.mu.Unlock()
	if abrupt {
		for _, sw := range r.switches {
			sw.dropReplica(rep.name)
		}
		shut := make(chan struct{})
		go func() { _ = cl.Shutdown(); close(shut) }()
		select {
		case <-shut:
		case <-time.After(fsStuckAfter + 5*time.Second):
			r.violation(invStuck, "%s: cluster Shutdown did not return within %s", rep.name, fsStuckAfter+5*time.Second)
			r.dumpGoroutines()
			return
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(fsStuckAfter + 10*time.Second):
		r.violation(invStuck, "%s did not stop within %s", rep.name, fsStuckAfter+10*time.Second)
		r.dumpGoroutines()
		return
	}
	for _, sw := range r.switches {
		sw.dropReplica(rep.name)
	}
	r.logf("%s stopped (abrupt=%v)", rep.name, abrupt)
}

// dialLoop keeps switch sw connected to replica rep, like a Controller row
// with max_backoff (tuned down to 200 ms for the suite).
func (r *fsRun) dialLoop(sw *fsSwitch, rep *fsReplica) {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		stopped, up, addr := r.stopped, rep.up, rep.ofAddr
		r.mu.Unlock()
		if stopped {
			return
		}
		if up {
			if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				sw.attach(rep.name, nc)
			}
		}
		time.Sleep(100*time.Millisecond + time.Duration(rand.Int64N(int64(100*time.Millisecond))))
	}
}

// dumpGoroutines writes every goroutine of this run (they carry its pprof
// label) into the event log, marks the run stuck and wakes the runner.
func (r *fsRun) dumpGoroutines() {
	_, stacks := fsGoroutines(r.label)
	if strings.Contains(stacks, "aliveRemotes") && strings.Contains(stacks, "NotifyJoin") {
		r.violation(invStuck, "the stacks match issue 13 defect 1: aliveRemotes holds heardMu while calling ml.Members (memberlist nodeLock) and NotifyJoin, holding nodeLock, waits in touch for heardMu")
	}
	r.mu.Lock()
	fmt.Fprintf(&r.log, "%8s  ALL GOROUTINES OF THIS RUN:\n%s\n", r.since(), stacks)
	if !r.stuck {
		r.stuck = true
		close(r.stuckCh)
	}
	r.mu.Unlock()
}

// watchdog probes every running replica: Status() and HasQuorum() must
// return within fsStuckAfter (defect 1 froze both).
func (r *fsRun) watchdog(ctx context.Context) {
	defer r.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		var reps []*fsReplica
		for _, rep := range r.replicas {
			if rep.up {
				reps = append(reps, rep)
			}
		}
		r.mu.Unlock()
		for _, rep := range reps {
			r.mu.Lock()
			ctrl, cl := rep.ctrl, rep.cl
			r.mu.Unlock()
			ok := make(chan struct{})
			go func() {
				_ = ctrl.Status()
				_ = cl.HasQuorum()
				close(ok)
			}()
			select {
			case <-ok:
			case <-time.After(fsStuckAfter):
				r.violation(invStuck, "%s: Status()/HasQuorum() did not return within %s: replica stuck", rep.name, fsStuckAfter)
				r.dumpGoroutines()
				return
			case <-ctx.Done():
				return
			}
		}
	}
}

// after runs f at d from now (tracked: waited for at teardown).
func (r *fsRun) after(d time.Duration, f func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		time.Sleep(d)
		r.mu.Lock()
		stopped := r.stopped
		r.mu.Unlock()
		if !stopped {
			f()
		}
	}()
}

func (r *fsRun) replica(i int) *fsReplica { return r.replicas[i] }

// reload writes revision rev to the replicas' files and reloads them,
// staggered (concurrent reloads across replicas).
func (r *fsRun) reload(set []int, rev uint32, stagger time.Duration) {
	var wg sync.WaitGroup
	for k, i := range set {
		rep := r.replica(i)
		r.writeFile(rep, rev)
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(stagger * time.Duration(k) / time.Duration(max(1, len(set)-1)))
			r.mu.Lock()
			up, ctrl := rep.up, rep.ctrl
			r.mu.Unlock()
			if up {
				err := ctrl.Reload("fault suite")
				r.logf("%s reload revision %d: err=%v", rep.name, rev, err)
			}
		}()
	}
	wg.Wait()
}

// startOutsider starts a memberlist member that is not a controller
// replica; hostile ones gossip the maximal revision.
func (r *fsRun) startOutsider(name, ip string, hostile bool) *cluster.Cluster {
	rep := &fsReplica{name: name, ip: ip}
	r.net.register(ip, name)
	cl, err := cluster.Start(r.clusterConfig(rep, fsReplicas+1, r.joinList("")))
	if err != nil {
		r.violation(invHarness, "outsider %s: %v", name, err)
		return nil
	}
	if hostile {
		cl.SetLocal(cluster.LocalState{Revision: 0xffffffff, Hash: "ffffffffffff"})
	}
	r.logf("outsider %s joined (hostile=%v)", name, hostile)
	return cl
}

func (r *fsRun) apply(e fsEvent) {
	r.logf("EVENT %s", e)
	switch e.Kind {
	case evKill, evStop:
		r.stopReplica(r.replica(e.R), e.Kind == evKill)
	case evRestart:
		if err := r.startReplica(r.replica(e.R), fsReplicas); err != nil {
			r.violation(invHarness, "%v", err)
		}
	case evStaleStart:
		rep := r.replica(e.R)
		r.stopReplica(rep, true)
		r.writeFile(rep, e.Rev)
		if err := r.startReplica(rep, fsReplicas); err != nil {
			r.violation(invHarness, "%v", err)
		}
	case evPartition:
		in := map[int]bool{}
		for _, i := range e.Set {
			in[i] = true
		}
		var pairs [][2]string
		// r3 is on the rest's side (its links are cut even while it is
		// down: it may start during the partition).
		for a := range r.replicas {
			for b := range r.replicas {
				if in[a] && !in[b] {
					pairs = append(pairs, [2]string{r.replica(a).name, r.replica(b).name}, [2]string{r.replica(b).name, r.replica(a).name})
				}
			}
		}
		for _, p := range pairs {
			r.net.set(p[0], p[1], func(l *fsLink) { l.cut = true })
		}
		r.after(e.For, func() {
			for _, p := range pairs {
				r.net.set(p[0], p[1], func(l *fsLink) { l.cut = false })
			}
			r.logf("partition %v healed", fsNames(e.Set))
		})
	case evOneWay, evDelay, evLoss:
		a, b := r.replica(e.R).name, r.replica(e.R2).name
		r.net.set(a, b, func(l *fsLink) {
			switch e.Kind {
			case evOneWay:
				l.cut = true
			case evDelay:
				l.delay = e.Amount
			case evLoss:
				l.loss = e.Loss
			}
		})
		r.after(e.For, func() {
			r.net.set(a, b, func(l *fsLink) { *l = fsLink{} })
			r.logf("link %s -> %s healed", a, b)
		})
	case evReload, evReloadSome, evReloadOne:
		r.mu.Lock()
		r.newest = max(r.newest, e.Rev)
		r.mu.Unlock()
		r.reload(e.Set, e.Rev, e.Amount)
	case evOutsider, evHostileOuts:
		r.mu.Lock()
		n := len(r.extra)
		r.extra = append(r.extra, &fsReplica{})
		r.mu.Unlock()
		ip := r.replicas[0].ip
		ip = ip[:strings.LastIndex(ip, ".")+1] + strconv.Itoa(10+n)
		cl := r.startOutsider(fmt.Sprintf("outsider%d", n), ip, e.Kind == evHostileOuts)
		if cl == nil {
			return
		}
		r.mu.Lock()
		r.extra[n].cl = cl
		r.mu.Unlock()
		if e.Kind == evOutsider {
			r.after(e.For, func() {
				_ = cl.Shutdown() // crashes (no Leave)
				r.logf("outsider%d crashed", n)
			})
		}
	case evSlowSwitch:
		sw := r.switches[e.Switch]
		sw.setSlow(e.Amount)
		r.after(e.For, func() { sw.setSlow(0); r.logf("switch %s fast again", sw.name) })
	case evReplicaSet:
		// The procedure of docs/cluster.md "Changing the replica set". Grow:
		// the revision listing the fourth controller is reloaded on some
		// live replicas (the others fetch it), then r3 starts with it and
		// the switches connect to it (dialLoop). The operator does not wait
		// for every replica to show four entries: the one-at-a-time rule
		// alone must keep the old and the new set from both having a quorum.
		// Shrink: r3 stops (SIGTERM: handover), then the revision without
		// it is reloaded the same way.
		nc := r.replica(fsNewcomer)
		if !e.Grow {
			r.stopReplica(nc, false)
		}
		r.mu.Lock()
		r.newest = max(r.newest, e.Rev)
		r.mu.Unlock()
		r.reload(e.Set, e.Rev, e.Amount)
		if e.Grow {
			r.writeFile(nc, e.Rev)
			if err := r.startReplica(nc, fsReplicas+1); err != nil {
				r.violation(invHarness, "%v", err)
			}
		}
	}
}

// intended returns the flows a switch must hold under revision rev, keyed
// like the fake's table, with cookie rule bits and instructions.
func fsIntended(rev uint32, controllers int, sw *fsSwitch) (map[string]fsFlow, error) {
	bp, err := flows.Parse("fault-suite.yaml", fsBlueprint(rev, controllers))
	if err != nil {
		return nil, err
	}
	p := newPolicy(bp, flows.CompileOptions{NoNotes: true})
	plan, err := p.plan(sw.name)
	if err != nil {
		return nil, err
	}
	fl, err := plan.Flows()
	if err != nil {
		return nil, err
	}
	ports := flows.PortMap{}
	for no, name := range sw.ports {
		ports[name] = no
	}
	bound, _ := flows.Bind(fl, ports)
	out := map[string]fsFlow{}
	for i := range bound {
		m, err := flows.AppendFlowMod(nil, &bound[i], flows.CmdAdd, ports)
		if err != nil {
			return nil, err
		}
		ml := int(uint16(m[50])<<8 | uint16(m[51]))
		padded := (ml + 7) / 8 * 8
		f := fsFlow{table: m[24], priority: uint16(m[30])<<8 | uint16(m[31]), cookie: uint64(bound[i].Cookie),
			match: m[48 : 48+padded], instr: m[48+padded:]}
		out[fsKey(f.table, f.priority, f.match)] = f
	}
	return out, nil
}

// converged reports whether every switch holds exactly the flows of rev
// and has exactly one MASTER; otherwise why not.
func (r *fsRun) converged(rev uint32, want []map[string]fsFlow) string {
	for i, sw := range r.switches {
		if m := sw.masters(); len(m) != 1 {
			return fmt.Sprintf("switch %s has masters %v", sw.name, m)
		}
		got := sw.snapshotTable()
		var missing, extra, differ int
		for k, w := range want[i] {
			g, ok := got[k]
			switch {
			case !ok:
				missing++
			case flows.Cookie(g.cookie).Rule() != flows.Cookie(w.cookie).Rule() || !bytes.Equal(g.instr, w.instr):
				differ++
			}
		}
		for k := range got {
			if _, ok := want[i][k]; !ok {
				extra++
			}
		}
		if missing+extra+differ > 0 {
			return fmt.Sprintf("switch %s: %d flows missing, %d extra, %d differ from revision %d", sw.name, missing, extra, differ, rev)
		}
	}
	return ""
}

// fsGoroutines counts the goroutines carrying this run's label.
func fsGoroutines(label string) (int, string) {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	n := 0
	var stacks []string
	needle := `"fault.seed":"` + label + `"`
	for _, grp := range strings.Split(buf.String(), "\n\n") {
		if !strings.Contains(grp, needle) {
			continue
		}
		f := strings.Fields(grp)
		if len(f) > 0 {
			if k, err := strconv.Atoi(f[0]); err == nil {
				n += k
			}
		}
		stacks = append(stacks, grp)
	}
	return n, strings.Join(stacks, "\n\n")
}

// fsRunSeed runs one seed and returns its violations and event log.
func fsRunSeed(seed uint64, label string, enabled map[string]bool) (vs []fsViolation, log string) {
	dir, err := os.MkdirTemp("", "vpcflow-fault-")
	if err != nil {
		return []fsViolation{{inv: invHarness, text: err.Error()}}, ""
	}
	defer os.RemoveAll(dir)
	sched := fsSchedule(seed, enabled)
	r := &fsRun{seed: seed, label: label, net: newFSNet(seed), dir: dir, enabled: enabled, newest: 1, stuckCh: make(chan struct{}),
		revSize: fsRevSizes(sched)}
	fmt.Fprintf(&r.log, "seed %d, schedule:\n", seed)
	for _, e := range sched {
		fmt.Fprintf(&r.log, "  %s\n", e)
	}
	r.start = time.Now()
	ips := fsRunIPs(fsReplicas + 1)
	for i := range fsReplicas + 1 {
		rep := &fsReplica{idx: i, name: fmt.Sprintf("r%d", i), ip: ips[i], file: filepath.Join(r.dir, fmt.Sprintf("r%d.yaml", i))}
		r.net.register(rep.ip, rep.name)
		if i < fsReplicas { // r3 gets its file when a replica-set event grows the set
			r.writeFile(rep, 1)
		}
		r.replicas = append(r.replicas, rep)
	}
	bp, err := flows.Parse("fault-suite.yaml", r.blueprint(1))
	if err != nil {
		return []fsViolation{{inv: invHarness, text: err.Error()}}, ""
	}
	for _, h := range bp.Hosts {
		ports := map[uint32]string{1: h.Uplink, 2: flows.TunnelPortVXLAN, OFPPLocal: "cloudbr0"}
		no := uint32(10)
		for _, v := range bp.VPCs {
			for _, tr := range v.Tiers {
				for _, vm := range tr.VMs {
					if vm.Host == h.Name {
						ports[no] = vm.Port
						no++
					}
				}
			}
		}
		r.switches = append(r.switches, newFSSwitch(r, h.DPID, h.Name, ports))
	}
	wctx, wcancel := context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.watchdog(wctx)
	body := make(chan struct{})
	go func() {
		defer close(body)
		r.scenario(sched, enabled)
	}()
	select {
	case <-body:
	case <-r.stuckCh:
		// A replica is stuck: abandon the run (its goroutines stay blocked;
		// they use this run's addresses only, so other runs are not
		// affected), after a grace period for the scenario to notice.
		select {
		case <-body:
		case <-time.After(2 * time.Second):
			r.logf("run abandoned: a replica is stuck")
		}
	}
	// Teardown.
	stuck := r.isStuck()
	if !stuck {
		for _, rep := range r.replicas {
			r.stopReplica(rep, false)
		}
		stuck = r.isStuck()
	}
	r.mu.Lock()
	r.stopped = true
	extra := r.extra
	r.mu.Unlock()
	for _, x := range extra {
		if x.cl != nil {
			_ = x.cl.Shutdown()
		}
	}
	for _, sw := range r.switches {
		sw.close()
	}
	wcancel()
	if !stuck {
		r.wg.Wait()
		deadline := time.Now().Add(10 * time.Second)
		n, stacks := fsGoroutines(label)
		for n > 1 && time.Now().Before(deadline) { // 1: this goroutine
			time.Sleep(50 * time.Millisecond)
			n, stacks = fsGoroutines(label)
		}
		if n > 1 {
			r.violation(invLeak, "%d goroutines of this run outlive it:\n%s", n-1, stacks)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.violations), r.log.String()
}

// scenario starts the cluster, applies the schedule, heals and checks
// convergence.
func (r *fsRun) scenario(sched []fsEvent, enabled map[string]bool) {
	var err error
	for _, rep := range r.replicas[:fsReplicas] {
		if err := r.startReplica(rep, fsReplicas); err != nil {
			r.violation(invHarness, "%v", err)
		}
	}
	// Every switch dials every replica that is up, r3 included (its
	// Controller row is there from the start: dialing a replica that is
	// down fails, as for a killed one).
	for _, sw := range r.switches {
		for _, rep := range r.replicas {
			r.wg.Add(1)
			go r.dialLoop(sw, rep)
		}
	}
	// Faults.
	for _, e := range sched {
		if d := time.Until(r.start.Add(e.At)); d > 0 {
			time.Sleep(d)
		}
		if r.isStuck() {
			break
		}
		r.apply(e)
	}
	// Heal: links, switches, outsiders (hostile ones stay: their harm must
	// be refused), every replica up with the newest file. The schedule ends
	// every replica-set change with its shrink, so r3 is down here and
	// stays down: the newest revision lists three controllers.
	if !r.isStuck() {
		time.Sleep(time.Until(r.start.Add(fsFaultPhase)))
		r.logf("HEAL")
		r.net.heal()
		for _, sw := range r.switches {
			sw.setSlow(0)
		}
		r.mu.Lock()
		newest := r.newest
		r.mu.Unlock()
		r.mu.Lock()
		ncUp := r.replica(fsNewcomer).up
		r.mu.Unlock()
		if r.setSize(newest) != fsReplicas || ncUp {
			r.violation(invHarness, "healing with revision %d (%d controllers), r3 up=%v: the schedule did not end the replica-set change", newest, r.setSize(newest), ncUp)
		}
		for _, rep := range r.replicas[:fsReplicas] {
			r.mu.Lock()
			up := rep.up
			r.mu.Unlock()
			if !up {
				if !enabled[evReloadOne] {
					r.writeFile(rep, newest)
				}
				if err := r.startReplica(rep, fsReplicas); err != nil {
					r.violation(invHarness, "%v", err)
				}
			}
		}
		if !enabled[evReloadOne] {
			var all []int
			for i := range fsReplicas {
				if r.replica(i).fileRv != newest {
					all = append(all, i)
				}
			}
			r.reload(all, newest, 0)
		} else {
			// Distribution: the operator changes one file. If the newest
			// revision survives in no replica's file (it went to a dead
			// replica whose file a stale start then replaced), write it to
			// one replica again, as an operator would; the others fetch it.
			have := false
			for i := range fsReplicas {
				have = have || r.replica(i).fileRv == newest
			}
			if !have {
				r.logf("revision %d is in no replica's file: written to r0 only", newest)
				r.reload([]int{0}, newest, 0)
			}
		}
		want := make([]map[string]fsFlow, len(r.switches))
		for i, sw := range r.switches {
			if want[i], err = fsIntended(newest, r.setSize(newest), sw); err != nil {
				r.violation(invHarness, "compiling revision %d: %v", newest, err)
			}
		}
		deadline := time.Now().Add(fsConvergeMax)
		why := r.converged(newest, want)
		for why != "" && time.Now().Before(deadline) && !r.isStuck() {
			time.Sleep(50 * time.Millisecond)
			why = r.converged(newest, want)
		}
		if why != "" && !r.isStuck() {
			r.violation(invConverge, "not converged on revision %d %s after healing: %s", newest, fsConvergeMax, why)
		} else if why == "" {
			r.logf("CONVERGED on revision %d", newest)
		}
	}
}

func (r *fsRun) isStuck() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stuck
}

// ---------------------------------------------------------------- the test

type fsOutcome struct {
	seed       uint64
	violations []fsViolation
	known      bool
}

func TestFaultSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("fault suite: not in -short")
	}
	if _, err := fsDemo(); err != nil {
		t.Fatal(err)
	}
	seeds := fsEnvInt("VPCFLOW_FAULT_SEEDS", 200)
	if fsRace {
		seeds = fsEnvInt("VPCFLOW_FAULT_SEEDS_RACE", 16) // the race detector costs ~10x CPU
	}
	first := uint64(fsEnvInt("VPCFLOW_FAULT_FIRST", 1))
	repeat := 1
	if s := os.Getenv("VPCFLOW_FAULT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("VPCFLOW_FAULT_SEED=%q: want a number", s)
		}
		first, seeds, repeat = n, 1, fsEnvInt("VPCFLOW_FAULT_REPEAT", 1)
	}
	parallel := fsEnvInt("VPCFLOW_FAULT_PARALLEL", 24)
	strict := os.Getenv("VPCFLOW_FAULT_STRICT") == "1"
	enabled := fsEnabledKinds()
	logDir := os.Getenv("VPCFLOW_FAULT_LOGDIR")
	if logDir == "" {
		logDir = filepath.Join(os.TempDir(), "vpcflow-faultsuite")
	}
	logAll := os.Getenv("VPCFLOW_FAULT_LOGALL") == "1"
	var disabled []string
	for k, why := range fsNeeds {
		if !enabled[k] {
			disabled = append(disabled, k+" ("+why+")")
		}
	}
	sort.Strings(disabled)
	if len(disabled) == 0 {
		disabled = []string{"none"}
	}
	t.Logf("fault suite: seeds %d..%d x%d, %d in parallel; not scheduled until their feature lands: %s",
		first, first+uint64(seeds)-1, repeat, parallel, strings.Join(disabled, "; "))

	type result struct {
		vs   []fsViolation
		log  string
		took time.Duration
	}
	type job struct {
		seed uint64
		run  int
	}
	var jobs []job
	for s := first; s < first+uint64(seeds); s++ {
		for k := range repeat {
			jobs = append(jobs, job{s, k})
		}
	}
	// The runs go in parallel on our own workers (independent of go test's
	// -parallel); the results are reported as subtests in seed order.
	results := make([]result, len(jobs))
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range min(parallel, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				label := fmt.Sprintf("%d.%d", jobs[i].seed, i)
				t0 := time.Now()
				pprof.Do(context.Background(), pprof.Labels("fault.seed", label), func(context.Context) {
					results[i].vs, results[i].log = fsRunSeed(jobs[i].seed, label, enabled)
				})
				results[i].took = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	var outcomes []fsOutcome
	t.Run("seeds", func(t *testing.T) {
		for i, j := range jobs {
			s, vs := j.seed, results[i].vs
			name := fmt.Sprintf("seed=%d", s)
			if repeat > 1 {
				name += fmt.Sprintf("/run=%d", j.run)
			}
			known := len(vs) > 0
			for _, v := range vs {
				if _, ok := fsKnownDefects[v.inv]; !ok || strict {
					known = false
				}
			}
			outcomes = append(outcomes, fsOutcome{seed: s, violations: vs, known: known})
			t.Run(name, func(t *testing.T) {
				if len(vs) > 0 || logAll {
					_ = os.MkdirAll(logDir, 0o755)
					path := filepath.Join(logDir, fmt.Sprintf("seed-%d-run-%d.log", s, i))
					if err := os.WriteFile(path, []byte(results[i].log), 0o644); err == nil {
						t.Logf("event log: %s", path)
					}
				}
				if len(vs) == 0 {
					return
				}
				var b strings.Builder
				fmt.Fprintf(&b, "seed %d: %d violations (replay: VPCFLOW_FAULT_SEED=%d go test ./controller/ -run TestFaultSuite -v)\n", s, len(vs), s)
				for _, v := range vs {
					text := v.text
					if len(text) > 2000 {
						text = text[:2000] + "…"
					}
					fmt.Fprintf(&b, "  %s [%s] %s\n", v.at, v.inv, text)
					if d, ok := fsKnownDefects[v.inv]; ok {
						fmt.Fprintf(&b, "      known: %s\n", d)
					}
				}
				b.WriteString("schedule:\n")
				for _, e := range fsSchedule(s, enabled) {
					fmt.Fprintf(&b, "  %s\n", e)
				}
				if known {
					t.Skipf("KNOWN DEFECT (not a pass; remove from fsKnownDefects when fixed):\n%s", b.String())
				}
				t.Errorf("%s", b.String())
			})
		}
	})
	// Summary per invariant.
	per := map[string][]uint64{}
	failed, known := 0, 0
	for _, o := range outcomes {
		if len(o.violations) == 0 {
			continue
		}
		if o.known {
			known++
		} else {
			failed++
		}
		seen := map[string]bool{}
		for _, v := range o.violations {
			if !seen[v.inv] {
				seen[v.inv] = true
				per[v.inv] = append(per[v.inv], o.seed)
			}
		}
	}
	t.Logf("fault suite: %d runs in %s: %d passed, %d failed, %d skipped as known defects",
		len(outcomes), time.Since(start).Round(time.Second), len(outcomes)-failed-known, failed, known)
	var invs []string
	for k := range per {
		invs = append(invs, k)
	}
	sort.Strings(invs)
	for _, k := range invs {
		s := per[k]
		slices.Sort(s)
		t.Logf("  invariant %-13s violated by seeds %v", k, s)
	}
}
