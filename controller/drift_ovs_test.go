package controller

import (
	"context"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDriftCheckYieldsToReloadOVS: a reload that arrives while the bridge's
// periodic drift check is still reading the table does not wait for it. The
// switch is frozen (SIGSTOP) while the drift check's dump is outstanding;
// the reload preempts the check at once (before the switch answers), keeps
// the confirmed table, and is then applied as a delta, not a full
// reconcile. The drift check runs again afterwards and finds the table in
// sync.
func TestDriftCheckYieldsToReloadOVS(t *testing.T) {
	r := ofStartReloadLab(t, 300*time.Millisecond)
	r.waitRev(1)
	r.audit("initial")
	pid := ofReadPidfile(filepath.Join(r.lab.dir, "ovs-vswitchd.pid"))
	if pid == 0 {
		t.Fatal("no ovs-vswitchd pid in the lab's pidfile")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	cont := func() {
		if stopped {
			stopped = false
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	defer cont()

	// Wait until the drift check has its flow dump outstanding.
	dumping := func() bool {
		r.c.mu.Lock()
		br := r.c.bridges[0xa1]
		r.c.mu.Unlock()
		if br == nil {
			return false
		}
		br.conn.mu.Lock()
		defer br.conn.mu.Unlock()
		for _, p := range br.conn.pending {
			if p.kind == ofPendMultipart && p.mpType == OFPMPFlow {
				return true
			}
		}
		return false
	}
	ofWaitFor(t, 10*time.Second, "a drift check dumping the frozen switch's table", dumping)
	incBefore := r.hook.count("reconciled", "incremental", true)

	// A VM on another host joins kvm1's tier blue/web: 2 flows on kvm1.
	anchor := "          - {name: blue-web-2, host: kvm2, port: vnet0, mac: \"52:54:00:b1:01:0c\", ip: 10.10.1.12}"
	r.extra[anchor] = []string{"          - {name: blue-web-3, host: kvm2, port: vnet5, mac: \"52:54:00:b1:01:0d\", ip: 10.10.1.13}"}
	r.write(2)
	if err := r.c.Reload("test"); err != nil {
		t.Fatal(err)
	}
	// The switch is still frozen: only preemption can end the drift check.
	ofWaitFor(t, 5*time.Second, "the drift check preempted while the switch is frozen", func() bool {
		return r.hook.count("drift check preempted by a reload; retrying in "+driftRetry.String(), "", nil) > 0
	})
	cont()
	st := r.waitRev(2)
	if n := r.hook.count("reconciled", "incremental", true) - incBefore; n != 1 {
		t.Errorf("%d incremental reconciles for the reload, want 1 (the preempted check kept the confirmed table)", n)
	}
	if n := r.hook.count("incremental reconcile failed; reconciling in full", "", nil); n != 0 {
		t.Errorf("%d incremental reconciles fell back to a full one", n)
	}
	if st.LastChanges != 2 {
		t.Errorf("reload sent %d flow-mods, want 2", st.LastChanges)
	}
	r.audit("after the preempted drift check")
	// The drift check comes back (driftRetry) and finds the table in sync.
	inSync := r.hook.count("reconciled: in sync", "reason", "drift check")
	ofWaitFor(t, 3*driftRetry+5*time.Second, "a drift check after the reload", func() bool {
		return r.hook.count("reconciled: in sync", "reason", "drift check") > inSync
	})
}

// TestDriftCheckYieldsAfterDecodeOVS: a reload that arrives while a drift
// check decodes the table it has read (after the dump, before the diff)
// still preempts it: the check writes nothing, keeps the confirmed table,
// and the reload is applied as a delta at once.
func TestDriftCheckYieldsAfterDecodeOVS(t *testing.T) {
	r := ofStartReloadLab(t, 300*time.Millisecond)
	r.waitRev(1)
	r.audit("initial")
	incBefore := r.hook.count("reconciled", "incremental", true)
	var once sync.Once
	fired := make(chan struct{})
	hook := func(readCtx context.Context) {
		once.Do(func() {
			anchor := "          - {name: blue-web-2, host: kvm2, port: vnet0, mac: \"52:54:00:b1:01:0c\", ip: 10.10.1.12}"
			r.extra[anchor] = []string{"          - {name: blue-web-3, host: kvm2, port: vnet5, mac: \"52:54:00:b1:01:0d\", ip: 10.10.1.13}"}
			r.write(2)
			if err := r.c.Reload("test"); err != nil {
				t.Error(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for context.Cause(readCtx) != errPreempted && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			close(fired)
		})
	}
	testHookDecoded.Store(&hook)
	t.Cleanup(func() { testHookDecoded.Store(nil) })
	// A foreign flow makes the next drift check a full one (the table no
	// longer has the clean fingerprint).
	r.lab.run("ovs-ofctl", "-O", "OpenFlow13", "add-flow", r.br, "table=200,priority=1,cookie=0x77,actions=drop")
	ofWaitFor(t, 15*time.Second, "a full drift check decoding the table", func() bool {
		select {
		case <-fired:
			return true
		default:
			return false
		}
	})
	ofWaitFor(t, 5*time.Second, "the drift check preempted after decoding", func() bool {
		return r.hook.count("drift check preempted by a reload; retrying in "+driftRetry.String(), "", nil) > 0
	})
	st := r.waitRev(2)
	if n := r.hook.count("reconciled", "incremental", true) - incBefore; n != 1 {
		t.Errorf("%d incremental reconciles for the reload, want 1 (the preempted check kept the confirmed table)", n)
	}
	if st.LastChanges != 2 {
		t.Errorf("reload sent %d flow-mods, want 2", st.LastChanges)
	}
	// The drift check comes back (driftRetry) and removes the foreign flow.
	ofWaitFor(t, 3*driftRetry+10*time.Second, "the foreign flow removed by the drift check", func() bool {
		a := r.c.Audit(context.Background(), "kvm1")
		return len(a.Bridges) == 1 && a.Bridges[0].Audited && !a.Bridges[0].Drift
	})
	r.audit("after the preempted drift check")
}
