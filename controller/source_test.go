package controller

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// stubSource serves a blueprint text or an error.
type stubSource struct {
	mu    sync.Mutex
	text  string
	err   error
	calls int
}

func (s *stubSource) Name() string { return "stub source" }

func (s *stubSource) Fetch(ctx context.Context) (*flows.Blueprint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	return flows.Parse("stub", []byte(s.text))
}

func (s *stubSource) set(text string, err error) {
	s.mu.Lock()
	s.text, s.err = text, err
	s.mu.Unlock()
}

// A controller with a Source: a failed fetch and an invalid blueprint
// keep the enforced policy and send the switch nothing; a valid change
// (revision 0: unordered) is applied; the source is polled.
func TestSourceKeepsLastGoodPolicy(t *testing.T) {
	demo, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rev0 := strings.Replace(string(demo), "revision: 1", "revision: 0", 1)
	src := &stubSource{text: rev0}
	log := logrus.New()
	log.SetOutput(io.Discard)
	c, err := New(Options{Source: src, Listen: "tcp:127.0.0.1:0", HTTP: "off", SourceInterval: 10 * time.Millisecond,
		DriftInterval: time.Hour, RetryInterval: time.Hour, Log: log}) // the fake switch never reads back equal: no retries
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st.Blueprint != "stub source" {
		t.Fatalf("status blueprint %q", st.Blueprint)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	var addr net.Addr
	ofWaitFor(t, 5*time.Second, "listener", func() bool { addr, _ = c.Addrs(); return addr != nil })
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fs := ofNewFakeSwitch(t, nc, 0x00000000000000a1)
	go fs.serve()
	ofWaitFor(t, 5*time.Second, "first reconcile", func() bool { _, _, commits, _ := fs.snapshot(); return commits > 0 })
	good := c.Status().BlueprintHash
	installed, _, commits, _ := fs.snapshot()

	removed := strings.Replace(rev0, "          - {name: blue-web-1, host: kvm1, port: vnet0, mac: \"52:54:00:b1:01:0b\", ip: 10.10.1.11}\n", "", 1)
	for _, tc := range []struct {
		name, text string
		err        error
		want       string
	}{
		{"fetch error", removed, errors.New("cloudstack listHosts page 1: HTTP 500"), "HTTP 500"},
		{"invalid", strings.Replace(removed, "ip: 10.10.1.12", "ip: 10.10.1.13", 1) + "bogus: 1\n", nil, `unknown key "bogus"`},
	} {
		src.set(tc.text, tc.err)
		src.mu.Lock()
		n := src.calls
		src.mu.Unlock()
		ofWaitFor(t, 5*time.Second, tc.name+": two more polls", func() bool {
			src.mu.Lock()
			defer src.mu.Unlock()
			return src.calls >= n+2
		})
		st := c.Status()
		if st.BlueprintHash != good || !strings.Contains(st.LastReloadError, tc.want) {
			t.Fatalf("%s: hash changed %v, last_reload_error %q", tc.name, st.BlueprintHash != good, st.LastReloadError)
		}
		if i, _, cm, _ := fs.snapshot(); cm != commits || i != installed {
			t.Fatalf("%s: the switch got %d more bundles", tc.name, cm-commits)
		}
	}

	// Recovery: the valid change (same revision 0, other content) applies.
	src.set(removed, nil)
	ofWaitFor(t, 5*time.Second, "change applied", func() bool {
		st := c.Status()
		return st.BlueprintHash != good && st.LastReloadError == ""
	})
	ofWaitFor(t, 5*time.Second, "change sent", func() bool { _, _, cm, _ := fs.snapshot(); return cm > commits })
	if c.Blueprint().HostByName("kvm1") == nil {
		t.Fatal("kvm1 missing")
	}
}
