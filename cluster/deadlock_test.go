package cluster

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestNoDeadlockOnJoin hammers HasQuorum, IsOwner, Members and Owner on r0
// while a third replica joins and leaves r0 again and again. memberlist calls
// NotifyJoin with its node lock held for writing; a reader that held one of
// our locks while waiting for memberlist's node lock (aliveRemotes did:
// heardMu, then ml.Members()) froze the replica for good.
func TestNoDeadlockOnJoin(t *testing.T) {
	r0 := start(t, testConfig("r0", 3))
	r1 := start(t, testConfig("r1", 3, r0.addr()))
	waitMembers(t, 5*time.Second, []*Cluster{r0, r1}, 2)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var progress [5]atomic.Int64
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				switch i {
				case 0:
					r0.HasQuorum()
				case 1:
					r0.IsOwner(0xa1)
				case 2:
					r0.Members()
				case 3:
					r0.HasQuorum()
					r0.Owner(0xa2)
				}
				progress[i].Add(1)
			}
		}()
	}
	// Churn: a replica joins r0, then crashes or leaves, in a loop.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			cfg := testConfig("r2", 3, r0.addr())
			cfg.Name = fmt.Sprintf("r2-%d", n%2) // also exercise the join of a new name
			c, err := Start(cfg)
			if err != nil {
				continue
			}
			deadline := time.Now().Add(2 * time.Second)
			for len(c.Members()) < 3 && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
			if n%2 == 0 {
				_ = c.Leave(200 * time.Millisecond)
			}
			_ = c.Shutdown()
			progress[4].Add(1)
		}
	}()
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }) }
	defer halt()

	const run, stall = 8 * time.Second, 5 * time.Second
	last := make([]int64, len(progress))
	lastMove := make([]time.Time, len(progress))
	t0 := time.Now()
	for i := range lastMove {
		lastMove[i] = t0
	}
	for time.Since(t0) < run {
		time.Sleep(50 * time.Millisecond)
		for i := range progress {
			if v := progress[i].Load(); v != last[i] {
				last[i], lastMove[i] = v, time.Now()
			} else if time.Since(lastMove[i]) > stall {
				// t.Fatal (and a panic) would run the cleanups, which hang
				// on a deadlocked memberlist: print every stack and end the
				// test binary.
				fmt.Fprintf(os.Stderr, "All goroutines:\n%s\n--- FAIL: TestNoDeadlockOnJoin: goroutine %d made no progress for %s: deadlock\n", stacks(), i, stall)
				os.Exit(1)
			}
		}
	}
	t.Logf("progress: quorum polls %d, owner polls %d, members %d, mixed %d, join/leave rounds %d",
		last[0], last[1], last[2], last[3], last[4])
	if last[4] < 2 {
		t.Fatalf("only %d join/leave rounds in %s", last[4], run)
	}
	halt()
	wg.Wait()
}
