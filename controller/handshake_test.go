package controller

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// hsTestController runs a controller on loopback with the demo blueprint.
func hsTestController(t *testing.T, mod func(o *Options)) (*Controller, string) {
	t.Helper()
	demo, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bpPath := filepath.Join(t.TempDir(), "blueprint.yaml")
	if err := os.WriteFile(bpPath, demo, 0o644); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	o := Options{BlueprintPath: bpPath, Listen: "tcp:127.0.0.1:0", HTTP: "off", ReloadPoll: time.Hour,
		DriftInterval: time.Hour, Log: log}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	var addr net.Addr
	ofWaitFor(t, 5*time.Second, "listener", func() bool { addr, _ = c.Addrs(); return addr != nil })
	return c, addr.String()
}

// heapWatch samples the live heap until stopped and reports the largest
// growth over the baseline taken at start.
type heapWatch struct {
	base, peak uint64
	over       atomic.Bool
	stop       chan struct{}
	done       chan struct{}
}

func watchHeap(bound uint64) *heapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w := &heapWatch{base: ms.HeapAlloc, peak: ms.HeapAlloc, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tk.C:
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > w.peak {
				w.peak = ms.HeapAlloc
			}
			if w.peak > w.base+bound {
				w.over.Store(true)
			}
		}
	}()
	return w
}

func (w *heapWatch) growth() uint64 {
	close(w.stop)
	<-w.done
	return w.peak - w.base
}

// hostileSwitch speaks OpenFlow on a raw TCP connection: HELLO, a
// FEATURES_REPLY for dpid, and then, on the PORT_DESC request, sends part
// (a complete MULTIPART_REPLY with REPLY_MORE, xid patched) forever. It
// returns when the controller closes the connection (closed=true) or stop
// is set (closed=false), and the bytes it sent.
func hostileSwitch(addr string, dpid uint64, part []byte, stop *atomic.Bool, deadline time.Time) (closed bool, sent int64, err error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return false, 0, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(deadline)
	fs := &ofFakeSwitch{nc: nc, br: bufio.NewReader(nc)}
	if _, err := nc.Write(ofHelloMsg(1)); err != nil {
		return false, 0, err
	}
	for {
		h, msg, err := fs.read()
		if err != nil {
			return false, 0, err
		}
		switch h.Type {
		case OFPTFeaturesRequest:
			p := make([]byte, 24)
			binary.BigEndian.PutUint64(p[0:8], dpid)
			if _, err := nc.Write(ofSimple(OFPTFeaturesReply, h.Xid, p)); err != nil {
				return false, 0, err
			}
		case OFPTEchoRequest:
			_, _ = nc.Write(ofSimple(OFPTEchoReply, h.Xid, msg[8:]))
		case OFPTMultipartReq:
			// 64 KiB of parts per write.
			var buf []byte
			for len(buf) < 64<<10 {
				m := append([]byte(nil), part...)
				binary.BigEndian.PutUint32(m[4:8], h.Xid)
				buf = append(buf, m...)
			}
			// The controller closes its side; reading notices, writing
			// fails (EPIPE/ECONNRESET) once the kernel knows.
			go func() { _, _ = io.Copy(io.Discard, nc) }()
			for !stop.Load() {
				if time.Now().After(deadline) {
					return false, sent, nil
				}
				n, err := nc.Write(buf)
				sent += int64(n)
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						return false, sent, nil
					}
					return true, sent, nil
				}
			}
			return false, sent, nil
		}
	}
}

func mpPart(body []byte) []byte {
	p := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint16(p[0:2], OFPMPPortDesc)
	binary.BigEndian.PutUint16(p[2:4], OFPMPFReplyMore)
	return ofSimple(OFPTMultipartReply, 0, append(p, body...))
}

// TestHostileMultipartBounded: a peer that completes HELLO and
// FEATURES_REPLY and then answers PORT_DESC with an endless stream of
// REPLY_MORE parts (empty ones, or full 64 KiB ones) is dropped once the
// PORT_DESC bound is reached, and the controller's heap stays bounded, with
// several such peers at once. (Before: empty parts counted nothing against
// a 1 GiB bound, full ones up to 1 GiB, and PORT_DESC ran before the
// identity check.)
func TestHostileMultipartBounded(t *testing.T) {
	ports := make([]byte, 0, 1000*ofpPortLen)
	for i := 0; i < 1000; i++ {
		ports = append(ports, ofFakePort(uint32(i+1), "p")...)
	}
	for _, tc := range []struct {
		name string
		part []byte
	}{
		{"empty-reply-more-parts", mpPart(nil)},
		{"huge-port-desc", mpPart(ports)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := hsTestController(t, func(o *Options) { o.HandshakeTimeout = 30 * time.Second })
			const peers = 8
			const bound = 64 << 20
			w := watchHeap(bound)
			var wg sync.WaitGroup
			closed := make([]bool, peers)
			sent := make([]int64, peers)
			errs := make([]error, peers)
			for i := 0; i < peers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Known and unknown datapath ids alike.
					dpid := []uint64{0xa1, 0xf0 + uint64(i)}[i%2]
					closed[i], sent[i], errs[i] = hostileSwitch(addr, dpid, tc.part, &w.over, time.Now().Add(8*time.Second))
				}()
			}
			wg.Wait()
			g := w.growth()
			var total int64
			for i := 0; i < peers; i++ {
				total += sent[i]
				if errs[i] != nil {
					t.Errorf("peer %d: %v", i, errs[i])
				} else if !closed[i] {
					t.Errorf("peer %d: the controller kept the connection (sent %d MiB; heap +%d MiB)", i, sent[i]>>20, g>>20)
				}
			}
			t.Logf("%d peers sent %d KiB in all; controller heap peak +%d KiB (bound %d MiB)", peers, total>>10, g>>10, bound>>20)
			if g > bound {
				t.Fatalf("heap grew by %d MiB (bound %d MiB)", g>>20, bound>>20)
			}
		})
	}
}

// TestHalfOpenHandshakesBounded: 200 connections that never complete a
// handshake occupy at most MaxHandshakes slots; the others are closed at
// once, the held ones when HandshakeTimeout ends, and a genuine switch
// connects afterwards.
func TestHalfOpenHandshakesBounded(t *testing.T) {
	const maxHS, n = 16, 200
	c, addr := hsTestController(t, func(o *Options) {
		o.MaxHandshakes = maxHS
		o.HandshakeTimeout = 3 * time.Second
	})
	baseG := runtime.NumGoroutine()
	start := time.Now()
	closedAt := make([]atomic.Int64, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if i%2 == 0 {
			_, _ = nc.Write(ofHelloMsg(1)) // half of them say HELLO, then nothing
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = nc.SetReadDeadline(time.Now().Add(15 * time.Second))
			buf := make([]byte, 4096)
			for {
				if _, err := nc.Read(buf); err != nil {
					closedAt[i].Store(int64(time.Since(start)))
					return
				}
			}
		}()
	}
	// Within 1 s (well before HandshakeTimeout) all but maxHS are closed.
	ofWaitFor(t, 2*time.Second, "connections beyond MaxHandshakes closed at once", func() bool {
		k := 0
		for i := range closedAt {
			if closedAt[i].Load() != 0 {
				k++
			}
		}
		return k >= n-maxHS
	})
	early := time.Since(start)
	if g := runtime.NumGoroutine() - baseG; g > n+3*maxHS+10 { // our n readers + the controller's held handshakes
		t.Errorf("goroutines grew by %d with %d half-open connections", g, n)
	}
	if r := c.hsRefused.Load(); r < n-maxHS {
		t.Errorf("refused %d handshakes, want >= %d", r, n-maxHS)
	}
	wg.Wait()
	var last time.Duration
	for i := range closedAt {
		if d := time.Duration(closedAt[i].Load()); d > last {
			last = d
		}
	}
	t.Logf("%d of %d refused at accept within %s; the %d held closed by the handshake timeout after %s",
		c.hsRefused.Load(), n, early.Round(time.Millisecond), maxHS, last.Round(time.Millisecond))
	if last > 10*time.Second {
		t.Errorf("held handshakes lasted %s (HandshakeTimeout 3s)", last)
	}
	// A genuine switch connects once the slots are free.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fs := ofNewFakeSwitch(t, nc, 0xa1)
	go fs.serve()
	ofWaitFor(t, 10*time.Second, "genuine switch reconciled", func() bool {
		_, _, commits, role := fs.snapshot()
		return role == OFRoleMaster && commits > 0
	})
}
