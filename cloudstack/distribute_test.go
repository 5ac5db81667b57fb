package cloudstack

import (
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

	"github.com/vpcflow/vpcflow/cloudstack/cstest"
	"github.com/vpcflow/vpcflow/cluster"
	"github.com/vpcflow/vpcflow/controller"
)

// csReplica is one controller replica with its own view of the fake cloud
// (a server per replica, all holding the same objects), so each server's
// request count shows which replica polled.
type csReplica struct {
	name string
	srv  *cstest.Server
	c    *controller.Controller
	cl   *cluster.Cluster
	stop func()
}

func (r *csReplica) polls() int { return r.srv.Requests()["listHosts"] }

// csBase is testdata/base.yaml with three controllers (the replica set).
func csBase(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "controllers: [tcp:192.0.2.250:6653]",
		"controllers: [tcp:192.0.2.250:6653, tcp:192.0.2.251:6653, tcp:192.0.2.252:6653]", 1)
	p := filepath.Join(t.TempDir(), "base.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func startCSReplica(t *testing.T, name, join string) *csReplica {
	t.Helper()
	r := &csReplica{name: name, srv: cstest.New(t, "testdata/cloud", testAPIKey, testSecret)}
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg := cluster.DefaultConfig()
	cfg.Name, cfg.BindAddr, cfg.BindPort, cfg.Log = name, "127.0.0.1", 0, log
	cfg.ReplicaSet = []string{"192.0.2.250:6653", "192.0.2.251:6653", "192.0.2.252:6653"}
	if join != "" {
		cfg.Join = []string{join}
	}
	cl, err := cluster.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := NewSource(newTestClient(t, r.srv, nil), csBase(t), nil, log)
	c, err := controller.New(controller.Options{Source: src, Listen: "tcp:127.0.0.1:0", HTTP: "off",
		SourceInterval: 50 * time.Millisecond, DriftInterval: time.Hour, Log: log})
	if err != nil {
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
			<-done
			_ = cl.Shutdown()
		})
	}
	t.Cleanup(r.stop)
	return r
}

func csAddr(cl *cluster.Cluster) string {
	for _, m := range cl.Members() {
		if m.Self {
			return m.Addr
		}
	}
	return ""
}

func csWait(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, d, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// agreed reports whether every replica enforces the same blueprint with a
// revision above min, and returns it.
func agreed(rs []*csReplica, min uint32) (bool, string, controller.Status) {
	st0 := rs[0].c.Status()
	why := ""
	ok := st0.Revision > min
	for _, r := range rs {
		st := r.c.Status()
		why += fmt.Sprintf("%s: revision %d %.12s (%s); ", r.name, st.Revision, st.BlueprintHash, st.Blueprint)
		if st.BlueprintHash != st0.BlueprintHash || st.Revision != st0.Revision {
			ok = false
		}
	}
	return ok, why, st0
}

// With --source cloudstack, one replica (the fetcher) polls CloudStack and
// numbers every change with a higher revision; the others do not poll and
// follow it. When the fetcher goes, another takes over and the revisions
// keep growing.
func TestCloudStackOneFetcher(t *testing.T) {
	// Replicas are named after the controllers: entries of csBase.
	rs := []*csReplica{startCSReplica(t, "192.0.2.250:6653", "")}
	rs = append(rs, startCSReplica(t, "192.0.2.251:6653", csAddr(rs[0].cl)), startCSReplica(t, "192.0.2.252:6653", csAddr(rs[0].cl)))
	var st controller.Status
	csWait(t, 20*time.Second, "one numbered policy on every replica", func() (bool, string) {
		ok, why, s := agreed(rs, 0)
		st = s
		return ok, why
	})
	fetcher := rs[0].cl.Fetcher()
	var f *csReplica
	var others []*csReplica
	for _, r := range rs {
		if r.cl.Fetcher() != fetcher {
			t.Fatalf("%s names fetcher %s, r0 names %s", r.name, r.cl.Fetcher(), fetcher)
		}
		if r.name == fetcher {
			f = r
		} else {
			others = append(others, r)
		}
	}
	if st.BlueprintFetcher != fetcher {
		t.Fatalf("status blueprint_fetcher %q, want %q", st.BlueprintFetcher, fetcher)
	}
	// The others poll no more (give a few intervals for the start-up).
	time.Sleep(200 * time.Millisecond)
	before := map[string]int{}
	for _, r := range others {
		before[r.name] = r.polls()
	}
	fp := f.polls()

	// A change in the cloud (every server is the same cloud).
	for _, r := range rs {
		r.srv.Remove("listVirtualMachines", "0f000000-0000-4000-8000-000000000002")
	}
	rev := st.Revision
	csWait(t, 20*time.Second, "the change on every replica", func() (bool, string) {
		ok, why, s := agreed(rs, rev)
		st = s
		return ok, why
	})
	if f.polls() <= fp {
		t.Fatal("the fetcher did not poll")
	}
	for _, r := range others {
		if n := r.polls(); n != before[r.name] {
			t.Errorf("%s is not the fetcher but polled CloudStack %d times", r.name, n-before[r.name])
		}
		if s := r.c.Status(); s.Blueprint != fmt.Sprintf("peer %s (revision %d)", fetcher, st.Revision) {
			t.Errorf("%s: status blueprint %q", r.name, s.Blueprint)
		}
	}

	// Failover of the fetcher.
	f.stop()
	csWait(t, 20*time.Second, "a new fetcher", func() (bool, string) {
		a, b := others[0].cl.Fetcher(), others[1].cl.Fetcher()
		return a == b && a != "" && a != fetcher, a + " / " + b
	})
	for _, r := range others {
		r.srv.Remove("listVirtualMachines", "0f000000-0000-4000-8000-000000000003")
	}
	rev = st.Revision
	csWait(t, 20*time.Second, "the next change on the survivors", func() (bool, string) {
		ok, why, s := agreed(others, rev)
		st = s
		return ok, why
	})
	t.Logf("after failover: revision %d from %s", st.Revision, st.Blueprint)
}
