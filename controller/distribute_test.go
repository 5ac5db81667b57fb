package controller

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/cluster"
	"github.com/vpcflow/vpcflow/flows"
)

// Replicas with real memberlist on loopback, each with its own blueprint
// file, and no switches: what is asserted is the policy each enforces.

type distLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *distLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *distLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type testReplica struct {
	name string
	path string
	c    *Controller
	cl   *cluster.Cluster
	log  *distLog
	stop func()
}

func demoText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// variant returns the demo blueprint with revision rev and without the
// VMs named in drop.
func variant(t *testing.T, rev int, drop ...string) string {
	s := strings.Replace(demoText(t), "revision: 1\n", fmt.Sprintf("revision: %d\n", rev), 1)
	s = strings.Replace(s, "controllers: [tcp:192.0.2.250:6653]", "controllers: [tcp:"+strings.Join(distReplicaSet, ", tcp:")+"]", 1)
	var out []string
	for _, line := range strings.Split(s, "\n") {
		skip := false
		for _, d := range drop {
			if strings.Contains(line, "{name: "+d+",") {
				skip = true
			}
		}
		if !skip {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func hashOf(t *testing.T, text string) string {
	t.Helper()
	bp, err := flows.Parse("x", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return bp.Hash()
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	// Write and rename, so the watcher never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// distReplicaSet: the controllers: of variant(); replica "rN" of these
// tests is named after entry N, as a production replica is.
var distReplicaSet = []string{"192.0.2.250:6653", "192.0.2.251:6653", "192.0.2.252:6653"}

func distName(short string) string {
	var i int
	if _, err := fmt.Sscanf(short, "r%d", &i); err == nil && i < len(distReplicaSet) {
		return distReplicaSet[i]
	}
	return short
}

func testClusterConfig(name string, replicas int, join string) cluster.Config {
	cfg := cluster.DefaultConfig()
	cfg.Name, cfg.BindAddr, cfg.BindPort = distName(name), "127.0.0.1", 0
	cfg.ReplicaSet = distReplicaSet[:max(replicas, 3)]
	if join != "" {
		cfg.Join = []string{join}
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	cfg.Log = l
	return cfg
}

func selfAddr(cl *cluster.Cluster) string {
	for _, m := range cl.Members() {
		if m.Self {
			return m.Addr
		}
	}
	return ""
}

// startReplica starts one controller replica on its own file.
func startReplica(t *testing.T, name string, replicas int, join, text string, mod func(*Options)) *testReplica {
	t.Helper()
	r := &testReplica{name: name, path: filepath.Join(t.TempDir(), "blueprint.yaml"), log: &distLog{}}
	writeFile(t, r.path, text)
	cl, err := cluster.Start(testClusterConfig(name, replicas, join))
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(r.log)
	opts := Options{BlueprintPath: r.path, Listen: "tcp:127.0.0.1:0", HTTP: "off", ReloadPoll: 50 * time.Millisecond,
		DriftInterval: time.Hour, Log: log}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		_ = cl.Shutdown()
		t.Fatal(err)
	}
	c.SetCluster(cl)
	r.c, r.cl = c, cl
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			_ = cl.Shutdown()
		})
	}
	t.Cleanup(r.stop)
	return r
}

// startReplicas starts len(texts) replicas r0.., each on its own file.
func startReplicas(t *testing.T, texts ...string) []*testReplica {
	t.Helper()
	rs := []*testReplica{startReplica(t, "r0", len(texts), "", texts[0], nil)}
	for i := 1; i < len(texts); i++ {
		rs = append(rs, startReplica(t, fmt.Sprintf("r%d", i), len(texts), selfAddr(rs[0].cl), texts[i], nil))
	}
	ofWaitFor(t, 10*time.Second, "every replica sees all members", func() bool {
		for _, r := range rs {
			if len(r.cl.Members()) != len(rs) {
				return false
			}
		}
		return true
	})
	return rs
}

// waitPolicy waits until every replica enforces hash at revision rev.
func waitPolicy(t *testing.T, rs []*testReplica, d time.Duration, what string, rev uint32, hash string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok := true
		var got []string
		for _, r := range rs {
			st := r.c.Status()
			got = append(got, fmt.Sprintf("%s: revision %d %.12s (%s)", r.name, st.Revision, st.BlueprintHash, st.Blueprint))
			if st.Revision != rev || st.BlueprintHash != hash {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not every replica enforces revision %d %.12s after %s: %s", what, rev, hash, d, strings.Join(got, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A reload on one replica of three reaches the other two: they fetch the
// blueprint from it, verify and apply it, and say where it came from.
func TestReloadReachesAllReplicas(t *testing.T) {
	v1 := variant(t, 1)
	rs := startReplicas(t, v1, v1, v1)
	waitPolicy(t, rs, 10*time.Second, "start", 1, hashOf(t, v1))

	v2 := variant(t, 2, "blue-web-1")
	writeFile(t, rs[1].path, v2) // one file, on one replica
	waitPolicy(t, rs, 20*time.Second, "reload on r1", 2, hashOf(t, v2))
	for _, i := range []int{0, 2} {
		if st := rs[i].c.Status(); !strings.Contains(st.Blueprint, "peer "+distName("r1")+" (revision 2)") {
			t.Errorf("%s: status blueprint %q, want it to name peer r1", rs[i].name, st.Blueprint)
		}
		if !strings.Contains(rs[i].log.String(), "applied the newer blueprint fetched from a replica") {
			t.Errorf("%s: no log line for the fetched blueprint", rs[i].name)
		}
	}
	// And onwards: another reload, on another replica.
	v3 := variant(t, 3, "blue-web-1", "red-web-1")
	writeFile(t, rs[2].path, v3)
	waitPolicy(t, rs, 20*time.Second, "reload on r2", 3, hashOf(t, v3))
}

// A replica started with an older file converges on the cluster's newer
// policy (and keeps it: its file is not re-read while unchanged).
func TestStaleReplicaConverges(t *testing.T) {
	v1, v2 := variant(t, 1), variant(t, 2, "blue-web-1")
	rs := startReplicas(t, v2, v2)
	late := startReplica(t, "r2", 3, selfAddr(rs[0].cl), v1, nil)
	rs = append(rs, late)
	waitPolicy(t, rs, 20*time.Second, "stale replica", 2, hashOf(t, v2))
	time.Sleep(300 * time.Millisecond) // several file polls
	if st := late.c.Status(); st.Revision != 2 {
		t.Fatalf("the stale file came back: revision %d", st.Revision)
	}
}

// Revision 0 (unordered) on two replicas at once, with different content:
// all three converge on one of the two policies and stay there.
func TestConcurrentReloadsConverge(t *testing.T) {
	v0 := variant(t, 0)
	rs := startReplicas(t, v0, v0, v0)
	waitPolicy(t, rs, 10*time.Second, "start", 0, hashOf(t, v0))
	a, b := variant(t, 0, "blue-web-1"), variant(t, 0, "red-web-1")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); writeFile(t, rs[0].path, a) }()
	go func() { defer wg.Done(); writeFile(t, rs[1].path, b) }()
	wg.Wait()
	var winner string
	ofWaitFor(t, 20*time.Second, "one policy on every replica", func() bool {
		h := rs[0].c.Status().BlueprintHash
		for _, r := range rs[1:] {
			if r.c.Status().BlueprintHash != h {
				return false
			}
		}
		winner = h
		return h == hashOf(t, a) || h == hashOf(t, b)
	})
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		for _, r := range rs {
			if h := r.c.Status().BlueprintHash; h != winner {
				t.Fatalf("%s flipped to %.12s after converging on %.12s", r.name, h, winner)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A member that gossips a newer policy but sends bytes that hash to
// something else is refused: the replicas keep their policy and report
// the failure. Once it sends the right bytes, they take them.
func TestForgedBlueprintRejected(t *testing.T) {
	v1 := variant(t, 1)
	rs := startReplicas(t, v1, v1)
	evil, err := cluster.Start(testClusterConfig("r2", 3, selfAddr(rs[0].cl)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = evil.Shutdown() })
	claimed, sent := variant(t, 9, "blue-web-1"), variant(t, 9, "red-web-1")
	var mu sync.Mutex
	serve := sent
	evil.SetBlueprintProvider(func(string) []byte { mu.Lock(); defer mu.Unlock(); return []byte(serve) })
	evil.SetLocal(cluster.LocalState{Revision: 9, Hash: hashOf(t, claimed), Version: 1})
	ofWaitFor(t, 10*time.Second, "both replicas refused the forged blueprint", func() bool {
		for _, r := range rs {
			if !strings.Contains(r.log.String(), "not to the gossiped") {
				return false
			}
		}
		return true
	})
	for _, r := range rs {
		if st := r.c.Status(); st.Revision != 1 || st.BlueprintHash != hashOf(t, v1) {
			t.Fatalf("%s applied a forged blueprint: revision %d", r.name, st.Revision)
		}
	}
	mu.Lock()
	serve = claimed
	mu.Unlock()
	waitPolicy(t, rs, 20*time.Second, "genuine bytes", 9, hashOf(t, claimed))
}
