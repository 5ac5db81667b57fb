package cluster

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// All multi-replica tests run real memberlist over UDP/TCP on 127.0.0.1 with
// kernel-assigned ports.

func testLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if os.Getenv("VPCFLOW_TEST_VERBOSE") != "" {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return l
}

func testConfig(name string, replicas int, join ...string) Config {
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.BindAddr = "127.0.0.1"
	cfg.BindPort = 0
	cfg.Replicas = replicas
	cfg.testOpen = true // any name counts; replica-set tests set ReplicaSet
	cfg.Join = join
	cfg.Log = testLogger()
	return cfg
}

func start(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	c, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	return c
}

func (c *Cluster) addr() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.selfAddr
}

// startN starts n replicas (Replicas=n) named r0..r(n-1), all joining r0.
func startN(t *testing.T, n int) []*Cluster {
	t.Helper()
	cs := []*Cluster{start(t, testConfig("r0", n))}
	for i := 1; i < n; i++ {
		cs = append(cs, start(t, testConfig(fmt.Sprintf("r%d", i), n, cs[0].addr())))
	}
	waitMembers(t, 5*time.Second, cs, n)
	return cs
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	deadline := t0.Add(timeout)
	for {
		if cond() {
			return time.Since(t0)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func memberNames(c *Cluster) []string {
	var out []string
	for _, m := range c.Members() {
		out = append(out, m.Name)
	}
	return out
}

func waitMembers(t *testing.T, timeout time.Duration, cs []*Cluster, n int) time.Duration {
	t.Helper()
	return waitFor(t, timeout, fmt.Sprintf("%d members on every replica", n), func() bool {
		for _, c := range cs {
			if len(c.Members()) != n {
				return false
			}
		}
		return true
	})
}

// agree reports whether all replicas compute the same owner, among want,
// for every dpid.
func agree(cs []*Cluster, ds []uint64, want []string) bool {
	for _, d := range ds {
		o0, ok := cs[0].Owner(d)
		if !ok || !slices.Contains(want, o0) {
			return false
		}
		for _, c := range cs[1:] {
			if o, _ := c.Owner(d); o != o0 {
				return false
			}
		}
	}
	return true
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

func TestClusterFormsAndAgrees(t *testing.T) {
	cs := startN(t, 3)
	ds := dpids(1000)
	all := []string{"r0", "r1", "r2"}
	if !agree(cs, ds, all) {
		t.Fatal("replicas disagree on owners")
	}
	owners := map[string]int{}
	for _, d := range ds {
		o, _ := cs[0].Owner(d)
		owners[o]++
		if o != Rendezvous(d, all) {
			t.Fatalf("Owner(%#x)=%s, want rendezvous %s", d, o, Rendezvous(d, all))
		}
		n := 0
		for _, c := range cs {
			if c.IsOwner(d) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("dpid %#x has %d replicas claiming IsOwner, want 1", d, n)
		}
	}
	t.Logf("owners of 1000 dpids: %v", owners)
	for _, c := range cs {
		if !c.HasQuorum() {
			t.Fatalf("%s: no quorum with 3 of 3 live", c.Name())
		}
		if q, r := c.Quorum(); q != 2 || r != 3 {
			t.Fatalf("Quorum() = %d of %d, want 2 of 3", q, r)
		}
		ms := c.Members()
		if got := memberNames(c); !slices.Equal(got, all) {
			t.Fatalf("%s: Members() = %v, want %v", c.Name(), got, all)
		}
		for _, m := range ms {
			if m.Self != (m.Name == c.Name()) || m.Addr == "" {
				t.Fatalf("%s: bad member %+v", c.Name(), m)
			}
		}
	}
}

func TestAloneHasNoQuorum(t *testing.T) {
	c := start(t, testConfig("solo", 3))
	if c.HasQuorum() {
		t.Fatal("1 of 3 replicas has quorum")
	}
	for _, d := range dpids(200) {
		if o, ok := c.Owner(d); !ok || o != "solo" {
			t.Fatalf("Owner(%#x) = %q,%v, want solo (the only live member)", d, o, ok)
		}
		if c.IsOwner(d) {
			t.Fatalf("IsOwner(%#x) true without quorum", d)
		}
	}
	// Replicas=0 and no peers: a single-replica set, which has quorum.
	single := start(t, testConfig("single", 0))
	if !single.HasQuorum() || !single.IsOwner(7) {
		t.Fatal("a lone replica of a 1-replica set must own everything")
	}
}

func TestConnectedOwnership(t *testing.T) {
	cs := startN(t, 3)
	// 600 dpids connected only to r1 (too big for one gossip packet: sent
	// reliably), dpid 7 connected to r0 and r2.
	var onB []uint64
	for i := uint64(1000); i < 1600; i++ {
		onB = append(onB, i)
	}
	cs[1].SetLocal(LocalState{Connected: onB, Revision: 1, Hash: "aa"})
	cs[0].SetLocal(LocalState{Connected: []uint64{7}})
	cs[2].SetLocal(LocalState{Connected: []uint64{7}})
	waitFor(t, 5*time.Second, "ownership of r1's dpids on every replica", func() bool {
		for _, c := range cs {
			for _, d := range onB {
				if o, _ := c.Owner(d); o != "r1" {
					return false
				}
			}
			if o, _ := c.Owner(7); o != Rendezvous(7, []string{"r0", "r2"}) {
				return false
			}
		}
		return true
	})
	// Members() on another replica reports r1 owning all of them.
	for _, m := range cs[2].Members() {
		if m.Name == "r1" {
			if len(m.Owned) != len(onB) || len(m.State.Connected) != len(onB) {
				t.Fatalf("r1 as seen by r2: owns %d, connected %d, want %d", len(m.Owned), len(m.State.Connected), len(onB))
			}
		}
	}
	// A dpid nobody reports is spread over all live members.
	if !agree(cs, []uint64{99}, []string{Rendezvous(99, []string{"r0", "r1", "r2"})}) {
		t.Fatal("unconnected dpid 99 not owned per rendezvous over all members")
	}
}

func TestGenerationMonotonicAndPropagates(t *testing.T) {
	cs := startN(t, 3)
	cs[0].ObserveGeneration(100)
	waitFor(t, 3*time.Second, "MaxGeneration 100 on every replica", func() bool {
		for _, c := range cs {
			if c.MaxGeneration() != 100 {
				return false
			}
		}
		return true
	})
	cs[0].ObserveGeneration(50)
	cs[1].SetLocal(LocalState{MaxGeneration: 10}) // lower: raised, not lowered
	for _, c := range cs {
		if g := c.MaxGeneration(); g != 100 {
			t.Fatalf("%s: MaxGeneration went to %d, want 100 (monotonic)", c.Name(), g)
		}
	}
	cs[2].SetLocal(LocalState{MaxGeneration: 250})
	waitFor(t, 3*time.Second, "MaxGeneration 250 on every replica", func() bool {
		for _, c := range cs {
			if c.MaxGeneration() != 250 {
				return false
			}
		}
		return true
	})
	// The replica that raised it dies: the others keep it.
	_ = cs[2].Shutdown()
	waitMembers(t, 5*time.Second, cs[:2], 2)
	for _, c := range cs[:2] {
		if g := c.MaxGeneration(); g != 250 {
			t.Fatalf("%s: MaxGeneration %d after the raiser died, want 250", c.Name(), g)
		}
	}
	// Concurrent observers never see it go down.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := uint64(0)
			for j := range 200 {
				cs[0].ObserveGeneration(uint64(300 + i*1000 + j))
				g := cs[0].MaxGeneration()
				if g < last {
					t.Errorf("MaxGeneration decreased %d -> %d", last, g)
				}
				last = g
			}
		}()
	}
	wg.Wait()
}

func TestNewestRevisionPropagates(t *testing.T) {
	cs := startN(t, 3)
	cs[0].SetLocal(LocalState{Revision: 3, Hash: "03"})
	cs[1].SetLocal(LocalState{Revision: 7, Hash: "07"})
	waitFor(t, 3*time.Second, "revision 7 everywhere", func() bool {
		for _, c := range cs {
			if r, h := c.NewestRevision(); r != 7 || h != "07" {
				return false
			}
		}
		return true
	})
	// The newest holder leaves: newest among live members drops back.
	if err := cs[1].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "revision 3 after r1 left", func() bool {
		r, h := cs[2].NewestRevision()
		return r == 3 && h == "03"
	})
}

func TestLeaveSeenQuickly(t *testing.T) {
	cs := startN(t, 3)
	ds := dpids(300)
	t0 := time.Now()
	if err := cs[2].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if cs[2].HasQuorum() || cs[2].IsOwner(ds[0]) {
		t.Fatal("a replica that left still claims quorum/ownership")
	}
	waitFor(t, 2*time.Second, "survivors to agree without r2", func() bool {
		return len(cs[0].Members()) == 2 && len(cs[1].Members()) == 2 && agree(cs[:2], ds, []string{"r0", "r1"})
	})
	d := time.Since(t0)
	t.Logf("graceful leave seen by both survivors after %s", d)
	if d > time.Second {
		t.Fatalf("leave took %s to be seen, want well under 1 s", d)
	}
	if err := cs[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := cs[2].Leave(time.Second); err == nil {
		t.Fatal("Leave after Shutdown must return an error, not panic")
	}
}

// TestFailoverDetection kills (Shutdown without Leave) a replica of a
// 3-replica cluster 5 times and reports the detection time with the tuned
// defaults.
func TestFailoverDetection(t *testing.T) {
	const runs = 5
	var times []time.Duration
	ds := dpids(500)
	for i := range runs {
		cs := startN(t, 3)
		victim := cs[i%3]
		var surv []*Cluster
		var survNames []string
		for _, c := range cs {
			if c != victim {
				surv = append(surv, c)
				survNames = append(survNames, c.Name())
			}
		}
		t0 := time.Now()
		_ = victim.Shutdown()
		waitFor(t, 5*time.Second, "survivors to agree on new owners", func() bool {
			for _, c := range surv {
				if len(c.Members()) != 2 || !c.HasQuorum() {
					return false
				}
			}
			return agree(surv, ds, survNames)
		})
		d := time.Since(t0)
		times = append(times, d)
		t.Logf("run %d: killed %s, survivors agreed after %s", i+1, victim.Name(), d.Round(time.Millisecond))
		for _, c := range surv {
			_ = c.Shutdown()
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	med := times[len(times)/2]
	t.Logf("failure detection over %d runs: min %s median %s max %s (formula %s)", runs,
		times[0].Round(time.Millisecond), med.Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond),
		DefaultProbeInterval+DefaultProbeTimeout+time.Duration(DefaultSuspicionMult)*DefaultProbeInterval)
	if med > 2*time.Second {
		t.Fatalf("median detection %s, want ≤ ~1.5 s with the tuned defaults", med)
	}
}

func TestChangesFires(t *testing.T) {
	a := start(t, testConfig("a", 3))
	ch := a.Changes()
	drain(ch)
	wait := func(what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(3 * time.Second):
			t.Fatalf("no Changes() signal for %s", what)
		}
	}
	b := start(t, testConfig("b", 3, a.addr()))
	wait("join")
	waitMembers(t, 3*time.Second, []*Cluster{a, b}, 2)
	drain(ch)
	b.SetLocal(LocalState{Connected: []uint64{1, 2, 3}})
	wait("remote Connected change")
	waitFor(t, 3*time.Second, "b's state on a", func() bool { o, _ := a.Owner(1); return o == "b" })
	drain(ch)
	b.ObserveGeneration(9)
	wait("remote generation change")
	drain(ch)
	b.SetLocal(LocalState{Connected: []uint64{1, 2, 3}, MaxGeneration: 9, Revision: 4, Hash: "x"})
	wait("remote revision change")
	drain(ch)
	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	wait("leave")
	// Unchanged SetLocal is a no-op: no signal on the other side.
	c := start(t, testConfig("c", 3, a.addr()))
	waitMembers(t, 3*time.Second, []*Cluster{a, c}, 2)
	c.SetLocal(LocalState{Revision: 1})
	waitFor(t, 3*time.Second, "c's revision on a", func() bool { r, _ := a.NewestRevision(); return r == 1 })
	// Judged by its own state's sequence number, not by c.Changes(): any
	// late gossip from a (a remote merge, a membership event) also signals
	// there, and under load one arrived after the drain (a CI failure).
	seq := func() uint64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.self.Seq
	}
	before := seq()
	c.SetLocal(LocalState{Revision: 1})
	if after := seq(); after != before {
		t.Fatalf("unchanged SetLocal changed the local state (seq %d -> %d): it signals and gossips a change", before, after)
	}
}

// TestRejoinAfterRestart: a replica that crashed and restarts on the same
// address (without Join peers of its own) is re-joined by the survivor's
// rejoin loop, and its new state supersedes its previous life's.
func TestRejoinAfterRestart(t *testing.T) {
	a := start(t, testConfig("a", 3))
	addr := a.addr()
	a.SetLocal(LocalState{Revision: 9, Hash: "old"})
	b := start(t, testConfig("b", 3, addr))
	waitMembers(t, 3*time.Second, []*Cluster{a, b}, 2)
	waitFor(t, 3*time.Second, "a's revision on b", func() bool { r, _ := b.NewestRevision(); return r == 9 })
	_ = a.Shutdown()
	waitMembers(t, 5*time.Second, []*Cluster{b}, 1)

	cfg := testConfig("a", 3)
	port, err := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	cfg.BindPort = port
	cfg.RejoinInterval = 200 * time.Millisecond
	a2 := start(t, cfg)
	a2.SetLocal(LocalState{Revision: 2, Hash: "new"})
	waitMembers(t, 5*time.Second, []*Cluster{a2, b}, 2)
	waitFor(t, 3*time.Second, "restarted a's state on b", func() bool {
		for _, m := range b.Members() {
			if m.Name == "a" {
				return m.State.Revision == 2 && m.State.Hash == "new"
			}
		}
		return false
	})
}

func TestSecretKey(t *testing.T) {
	key1 := []byte("0123456789abcdef")
	key2 := []byte("fedcba9876543210")
	cfgA := testConfig("a", 3)
	cfgA.SecretKey = key1
	a := start(t, cfgA)

	// Positive control: same key joins.
	cfgB := testConfig("b", 3, a.addr())
	cfgB.SecretKey = key1
	b := start(t, cfgB)
	waitMembers(t, 3*time.Second, []*Cluster{a, b}, 2)

	// Other key: the join fails and the node never appears.
	for _, key := range [][]byte{key2, nil} {
		cfgX := testConfig(fmt.Sprintf("x%d", len(key)), 3, a.addr())
		cfgX.SecretKey = key
		cfgX.RejoinInterval = 100 * time.Millisecond
		x := start(t, cfgX)
		n, err := x.ml.Join([]string{a.addr()})
		if err == nil || n != 0 {
			t.Fatalf("join with key %q succeeded (n=%d)", key, n)
		}
		assertStays(t, time.Second, "x never appears", func() bool {
			return len(a.Members()) == 2 && len(b.Members()) == 2 && len(x.Members()) == 1
		})
		_ = x.Shutdown()
	}
}

// TestKeyRotation: in the middle of a rolling rotation one replica still
// encrypts with the old key and another already with the new one; both
// accept the other's, so they stay one cluster. A node with a third key
// still cannot join.
func TestKeyRotation(t *testing.T) {
	oldKey := []byte("0123456789abcdef")
	newKey := []byte("fedcba9876543210")
	cfgA := testConfig("a", 3)
	cfgA.SecretKey, cfgA.AcceptKeys = oldKey, [][]byte{newKey}
	a := start(t, cfgA)
	cfgB := testConfig("b", 3, a.addr())
	cfgB.SecretKey, cfgB.AcceptKeys = newKey, [][]byte{oldKey}
	b := start(t, cfgB)
	waitMembers(t, 3*time.Second, []*Cluster{a, b}, 2)

	cfgX := testConfig("x", 3, a.addr())
	cfgX.SecretKey = []byte("another-key-0000")
	cfgX.RejoinInterval = 100 * time.Millisecond
	x := start(t, cfgX)
	if n, err := x.ml.Join([]string{a.addr()}); err == nil || n != 0 {
		t.Fatalf("join with a third key succeeded (n=%d)", n)
	}
	assertStays(t, time.Second, "a and b stay together, x never appears", func() bool {
		return len(a.Members()) == 2 && len(b.Members()) == 2 && len(x.Members()) == 1
	})
	_ = x.Shutdown()
}

// assertStays checks cond continuously over an observation window (used for
// "never happens" assertions; not for synchronisation).
func assertStays(t *testing.T, window time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("violated: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRestrictCIDRs(t *testing.T) {
	// Positive control: loopback allowed.
	cfgA := testConfig("a", 3)
	cfgA.RestrictCIDRs, cfgA.CIDRsAllowed = true, []string{"127.0.0.0/8"}
	a := start(t, cfgA)
	cfgB := testConfig("b", 3, a.addr())
	cfgB.RestrictCIDRs, cfgB.CIDRsAllowed = true, []string{"127.0.0.1/32"}
	b := start(t, cfgB)
	waitMembers(t, 3*time.Second, []*Cluster{a, b}, 2)

	for _, tc := range []struct {
		name  string
		cidrs []string
	}{{"empty-denies-all", nil}, {"other-net", []string{"192.0.2.0/24"}}} {
		t.Run(tc.name, func(t *testing.T) {
			// Restricted node joining an open one.
			cfgR := testConfig("r-"+tc.name, 3, a.addr())
			cfgR.RestrictCIDRs, cfgR.CIDRsAllowed = true, tc.cidrs
			r := start(t, cfgR)
			if n, err := r.ml.Join([]string{a.addr()}); err == nil || n != 0 {
				t.Fatalf("restricted node (%v) joined a peer outside its allowlist", tc.cidrs)
			}
			// Open node joining the restricted one.
			o := start(t, testConfig("o-"+tc.name, 3))
			if n, err := o.ml.Join([]string{r.addr()}); err == nil || n != 0 {
				t.Fatalf("peer joined a restricted node (%v)", tc.cidrs)
			}
			assertStays(t, time.Second, "nobody joins the restricted node", func() bool {
				return len(r.Members()) == 1 && len(o.Members()) == 1 && len(a.Members()) == 2
			})
		})
	}
}

func TestValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.BindAddr = "192.0.2.10"
	ok.Join = []string{"192.0.2.11", "192.0.2.12:7000", "192.0.2.10"} // self ignored
	ok.Replicas = 3
	ok.testOpen = true
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	if p, _ := ok.peers(); len(p) != 2 || p[0] != "192.0.2.11:7946" || p[1] != "192.0.2.12:7000" {
		t.Fatalf("peers() = %v", p)
	}
	z := ok
	z.Replicas = 0
	if n := z.replicaSetSize(); n != 3 {
		t.Fatalf("Replicas=0 with 2 peers: replica set %d, want 3", n)
	}
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.BindAddr = "" }, "BindAddr is required"},
		{func(c *Config) { c.BindAddr = "host.example" }, "not an IP"},
		{func(c *Config) { c.BindAddr = "0.0.0.0" }, "AdvertiseAddr"},
		{func(c *Config) { c.BindPort = 70000 }, "BindPort 70000"},
		{func(c *Config) { c.Join = []string{"nohost"} }, `Join entry "nohost"`},
		{func(c *Config) { c.BindPort = 0; c.Join = []string{"192.0.2.11"} }, "no port given"},
		{func(c *Config) { c.Replicas = 2 }, "Replicas=2 but Join lists 2"},
		{func(c *Config) { c.Replicas = -1 }, "negative"},
		{func(c *Config) { c.ProbeInterval = 0 }, "ProbeInterval (--probe-interval) 0s out of range"},
		{func(c *Config) { c.ProbeInterval = 5 * time.Millisecond }, "out of range 20ms-10s"},
		{func(c *Config) { c.SuspicionMult = 50 }, "SuspicionMult (--suspicion-mult) 50 out of range"},
		{func(c *Config) { c.QuorumLease = 500 * time.Millisecond }, "shorter than one worst-case probe round"},
		{func(c *Config) { c.testOpen = false }, "ReplicaSet is empty"},
		{func(c *Config) { c.ReplicaSet = []string{"a:1", "b:1", "c:1"} }, "Replicas and ReplicaSet are both set"},
		{func(c *Config) { c.Replicas = 0; c.Name = "x:1"; c.ReplicaSet = []string{"a:1", "b:1", "c:1"} }, `name "x:1" is not in the replica set`},
		{func(c *Config) { c.Replicas = 0; c.ReplicaSet = []string{"a:1", "a:1", "c:1"} }, `lists "a:1" twice`},
		{func(c *Config) { c.ProbeTimeout = c.ProbeInterval }, "shorter than ProbeInterval"},
		{func(c *Config) { c.SuspicionMult = 0 }, "SuspicionMult"},
		{func(c *Config) { c.SuspicionMaxTimeoutMult = 0 }, "SuspicionMaxTimeoutMult"},
		{func(c *Config) { c.GossipInterval = 0 }, "GossipInterval"},
		{func(c *Config) { c.PushPullInterval = 0 }, "PushPullInterval"},
		{func(c *Config) { c.SecretKey = []byte("short") }, "16, 24 or 32 bytes"},
		{func(c *Config) { c.SecretKey, c.AcceptKeys = []byte("0123456789abcdef"), [][]byte{[]byte("short")} }, "AcceptKeys[0] is 5 bytes"},
		{func(c *Config) { c.AcceptKeys = [][]byte{[]byte("0123456789abcdef")} }, "without SecretKey"},
		{func(c *Config) { c.CIDRsAllowed = []string{"192.0.2.0/24"} }, "RestrictCIDRs is false"},
		{func(c *Config) { c.RestrictCIDRs = true; c.CIDRsAllowed = []string{"192.0.2.0"} }, "not a CIDR"},
	} {
		c := ok
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error containing %q, got %v", tc.want, err)
		}
	}
	// RestrictCIDRs with an empty list is valid (deny-all), not an error.
	c := ok
	c.RestrictCIDRs = true
	if err := c.Validate(); err != nil {
		t.Fatalf("RestrictCIDRs with empty list must be valid (deny-all): %v", err)
	}
	if _, err := Start(Config{}); err == nil || !strings.Contains(err.Error(), "BindAddr is required") {
		t.Fatalf("Start(Config{}) = %v, want validation error", err)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	e := &stateEntry{Name: "r1", Epoch: 1 << 62, Seq: 5, State: LocalState{
		Revision: 1<<32 - 1, Hash: "abcdef", MaxGeneration: 1<<64 - 1, OpenFlow: "tcp:192.0.2.1:6653",
		Connected: []uint64{0, 1, 1 << 47, 1<<64 - 1}, Version: 1<<64 - 1, Origin: "r2", Master: []uint64{1, 1 << 47}, ReplicaSet: []string{"r1", "r2"}, BuildVersion: "v9.9.9",
	}}
	got, err := decodeStateMsg(encodeStateMsg(e))
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != e.Name || got.Epoch != e.Epoch || got.Seq != e.Seq || !stateEqual(&got.State, &e.State) {
		t.Fatalf("round trip: got %+v want %+v", got, e)
	}
	pp, err := decodePushPull(encodePushPull([]*stateEntry{e, e}))
	if err != nil || len(pp) != 2 || !stateEqual(&pp[1].State, &e.State) {
		t.Fatalf("push/pull round trip: %v %+v", err, pp)
	}
	msg := encodeStateMsg(e)
	v1 := len(appendEntry([]byte{msgState, wireVersion}, e)) // an older replica's message: no extension
	for i := range len(msg) {
		if _, err := decodeStateMsg(msg[:i]); err == nil && i < len(msg) && i != v1 {
			t.Fatalf("truncated message (%d of %d bytes) decoded without error", i, len(msg))
		}
	}
}

// TestPartitionAndHeal cuts r0 off from r1 and r2 (in both directions):
// the minority loses quorum and claims nothing, the majority owns every
// dpid exactly once; after healing, the rejoin loop restores one cluster.
func TestPartitionAndHeal(t *testing.T) {
	var cut atomic.Bool
	cfg0 := testConfig("r0", 3)
	cfg0.testPeerFilter = func(string) bool { return !cut.Load() }
	r0 := start(t, cfg0)
	a0 := r0.addr()
	mk := func(name string) *Cluster {
		c := testConfig(name, 3, a0)
		c.RejoinInterval = 300 * time.Millisecond
		c.testPeerFilter = func(addr string) bool { return !cut.Load() || addr != a0 }
		return start(t, c)
	}
	r1, r2 := mk("r1"), mk("r2")
	cs := []*Cluster{r0, r1, r2}
	waitMembers(t, 5*time.Second, cs, 3)
	ds := dpids(300)
	exactlyOne := func(cs []*Cluster) bool {
		for _, d := range ds {
			n := 0
			for _, c := range cs {
				if c.IsOwner(d) {
					n++
				}
			}
			if n != 1 {
				return false
			}
		}
		return true
	}

	cut.Store(true)
	d := waitFor(t, 5*time.Second, "the majority to see the partition", func() bool {
		return len(r1.Members()) == 2 && len(r2.Members()) == 2 && agree([]*Cluster{r1, r2}, ds, []string{"r1", "r2"})
	})
	t.Logf("majority side (r1, r2) took over after %s", d.Round(time.Millisecond))
	d = waitFor(t, 8*time.Second, "the minority to lose quorum", func() bool {
		return len(r0.Members()) == 1 && !r0.HasQuorum()
	})
	t.Logf("minority side (r0) lost quorum after a further %s (memberlist's awareness slows an isolated node's own detection; the switch's generation-id arbitration fences it meanwhile)", d.Round(time.Millisecond))
	if r0.HasQuorum() {
		t.Fatal("isolated minority replica kept quorum")
	}
	for _, d := range ds {
		if r0.IsOwner(d) {
			t.Fatalf("isolated minority replica claims dpid %#x", d)
		}
	}
	if !exactlyOne(cs) || !agree([]*Cluster{r1, r2}, ds, []string{"r1", "r2"}) {
		t.Fatal("majority side does not own every dpid exactly once")
	}

	cut.Store(false)
	d = waitFor(t, 10*time.Second, "the cluster to heal", func() bool {
		for _, c := range cs {
			if len(c.Members()) != 3 {
				return false
			}
		}
		return agree(cs, ds, []string{"r0", "r1", "r2"}) && exactlyOne(cs)
	})
	t.Logf("partition healed, one owner per dpid again after %s", d.Round(time.Millisecond))
}
