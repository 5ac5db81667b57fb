package cloudstack

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/cloudstack/cstest"
	"github.com/vpcflow/vpcflow/controller"
)

// syncBuffer is a log sink safe for the controller's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A controller whose blueprint comes from CloudStack applies valid
// changes, and keeps the last good policy (same hash) when a later fetch
// fails, is partial, or builds an invalid blueprint; /status shows why.
// Nothing it logs or reports contains the secret key or a signature.
func TestControllerKeepsLastGoodPolicy(t *testing.T) {
	srv := cstest.New(t, "testdata/cloud", testAPIKey, testSecret)
	logBuf := &syncBuffer{}
	log := logrus.New()
	log.SetOutput(logBuf)
	log.SetLevel(logrus.DebugLevel)
	src := NewSource(newTestClient(t, srv, func(c *Config) { c.Timeout = 300 * time.Millisecond }), "testdata/base.yaml", nil, log)
	c, err := controller.New(controller.Options{Source: src, Listen: "tcp:127.0.0.1:0", HTTP: "off", SourceInterval: 20 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	st := c.Status()
	if !strings.HasPrefix(st.Blueprint, "cloudstack http://127.0.0.1:") || len(st.Bridges) != 3 {
		t.Fatalf("status blueprint %q with %d bridges", st.Blueprint, len(st.Bridges))
	}
	good := st.BlueprintHash

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// waitStatus polls the status until cond holds (the source is polled
	// every 20 ms).
	waitStatus := func(what string, cond func(controller.Status) bool) controller.Status {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st := c.Status()
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not reached within 10s; status: hash %s, error %q", what, st.BlueprintHash[:12], st.LastReloadError)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// A valid change (a VM deleted in CloudStack) is applied by the poll.
	srv.Remove("listVirtualMachines", "0f000000-0000-4000-8000-000000000002")
	st = waitStatus("VM removal applied", func(s controller.Status) bool { return s.BlueprintHash != good })
	good = st.BlueprintHash
	if c.Blueprint().HostByName("kvm2") == nil {
		t.Fatal("kvm2 missing")
	}

	// Each failure: while it lasts every poll is rejected and the enforced
	// hash stays, although CloudStack meanwhile lost a VM (applying a
	// partial view would shrink the policy); once it clears, the change
	// applies.
	for _, tc := range []struct {
		name   string
		fault  cstest.Fault
		cmd    string
		page   int
		want   string
		victim string
	}{
		{"http 500", cstest.HTTP500, "listNetworks", 1, "HTTP 500", "0f000000-0000-4000-8000-000000000001"},
		{"cloudstack error", cstest.APIError, "listVirtualMachines", 2, "errorcode 431", "0f000000-0000-4000-8000-000000000003"},
		{"missing page", cstest.EmptyPage, "listVirtualMachines", 2, "partial list", "0f000000-0000-4000-8000-000000000006"},
		{"short count", cstest.ShortCount, "listHosts", 1, "partial list", "0f000000-0000-4000-8000-000000000007"},
		{"slow", cstest.Slow, "listVPCs", 1, "no answer", "0f000000-0000-4000-8000-000000000004"},
	} {
		srv.Inject(func(command string, page int) cstest.Fault {
			if command == tc.cmd && page == tc.page {
				return tc.fault
			}
			return cstest.None
		})
		waitStatus(tc.name+" reported", func(s controller.Status) bool { return strings.Contains(s.LastReloadError, tc.want) })
		// Every poll from now on meets the fault. Change CloudStack, then
		// wait for a poll that read it to complete: every fetch starts
		// with listHosts (two pages), so three more listHosts requests
		// mean a fetch began after one that read the change finished.
		srv.Remove("listVirtualMachines", tc.victim)
		n := srv.Requests()["listHosts"]
		st := waitStatus(tc.name+" polled after the change", func(controller.Status) bool { return srv.Requests()["listHosts"] >= n+3 })
		if st = c.Status(); st.BlueprintHash != good || !strings.Contains(st.LastReloadError, tc.want) {
			t.Fatalf("%s: enforced hash changed to %s", tc.name, st.BlueprintHash[:12])
		}
		if !strings.Contains(logBuf.String(), "blueprint rejected, last good policy kept: "+st.LastReloadError[:20]) {
			t.Errorf("%s: the rejection is not logged", tc.name)
		}
		srv.Inject(nil)
		good = waitStatus(tc.name+" cleared", func(s controller.Status) bool { return s.LastReloadError == "" && s.BlueprintHash != good }).BlueprintHash
	}

	// An invalid result (two NICs with one MAC) is rejected with the
	// CloudStack object named.
	srv.Edit("listVirtualMachines", "0f000000-0000-4000-8000-000000000005", func(o map[string]any) {
		o["nic"].([]any)[0].(map[string]any)["macaddress"] = "02:00:0b:01:01:01" // blue's router NIC in web
	})
	st = waitStatus("invalid rejected", func(s controller.Status) bool { return s.LastReloadError != "" })
	if !strings.Contains(st.LastReloadError, `cloudstack: vm "red-web-1" (id 0f000000-0000-4000-8000-000000000005) nic 41c00000-0000-4000-8000-000000000006`) || st.BlueprintHash != good {
		t.Errorf("invalid blueprint: error %q, hash changed %v", st.LastReloadError, st.BlueprintHash != good)
	}

	// On-demand reload goes through the same path.
	if err := c.Reload("api"); err == nil || !strings.Contains(err.Error(), "mac 02:00:0b:01:01:01 is already used") {
		t.Errorf("Reload: %v", err)
	}
	for _, text := range []string{logBuf.String(), st.LastReloadError} {
		assertNoSecrets(t, text, srv)
	}
	if !strings.Contains(logBuf.String(), `cloudstack object not in the blueprint`) {
		t.Error("skipped objects are not logged")
	}
}
