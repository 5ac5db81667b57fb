package controller

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestNoLeaksOverManyCycles connects and disconnects a switch 1,000 times
// and reloads the blueprint 1,000 times against a running controller, then
// asserts the goroutine count and the heap return to their baseline.
func TestNoLeaksOverManyCycles(t *testing.T) {
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	demo, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bpPath := filepath.Join(t.TempDir(), "blueprint.yaml")
	write := func(rev int) {
		s := strings.Replace(string(demo), "revision: 1", fmt.Sprintf("revision: %d", rev), 1)
		if err := os.WriteFile(bpPath, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	log := logrus.New()
	log.SetOutput(io.Discard)
	c, err := New(Options{BlueprintPath: bpPath, Listen: "tcp:127.0.0.1:0", HTTP: "off", ReloadPoll: time.Hour,
		DriftInterval: time.Hour, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var addr net.Addr
	ofWaitFor(t, 5*time.Second, "listener", func() bool { addr, _ = c.Addrs(); return addr != nil })

	connectOnce := func() {
		nc, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		fs := ofNewFakeSwitch(t, nc, 0x00000000000000a1)
		go fs.serve()
		// Wait until the controller has taken the role and sent its bundle.
		ofWaitFor(t, 5*time.Second, "reconcile", func() bool {
			_, _, commits, role := fs.snapshot()
			return role == OFRoleMaster && commits > 0
		})
		nc.Close()
		ofWaitFor(t, 5*time.Second, "bridge gone", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return len(c.bridges) == 0
		})
	}
	// Warm up (first connection allocates caches), then take the baseline.
	connectOnce()
	write(2)
	if err := c.Reload("test"); err != nil {
		t.Fatal(err)
	}
	baseG, baseHeap := settle()

	for i := 0; i < cycles; i++ {
		connectOnce()
	}
	for i := 0; i < cycles; i++ {
		write(3 + i)
		if err := c.Reload("test"); err != nil {
			t.Fatal(err)
		}
	}
	g, heap := settle()
	t.Logf("after %d connect/disconnect cycles and %d reloads: goroutines %d -> %d, heap %d KiB -> %d KiB",
		cycles, cycles, baseG, g, baseHeap/1024, heap/1024)
	if g > baseG+2 {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("goroutines grew from %d to %d:\n%s", baseG, g, buf[:n])
	}
	if heap > baseHeap+4<<20 {
		t.Fatalf("heap grew from %d KiB to %d KiB", baseHeap/1024, heap/1024)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// settle waits for goroutines to wind down and returns the goroutine count
// and live heap after GC.
func settle() (int, uint64) {
	var last int
	for i := 0; i < 50; i++ {
		runtime.GC()
		n := runtime.NumGoroutine()
		if n == last {
			break
		}
		last = n
		time.Sleep(20 * time.Millisecond)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return last, ms.HeapAlloc
}
