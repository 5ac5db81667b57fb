package controller

import (
	"context"
	"testing"
	"time"
)

// TestSendGate: the gate opens when every bridge of the reload has arrived
// (repeat arrivals and unknown bridges do not count twice), or at its bound
// when one never arrives; a nil gate never blocks.
func TestSendGate(t *testing.T) {
	ctx := context.Background()
	g := newSendGate([]uint64{1, 2, 3}, time.Hour)
	g.arrive(1)
	g.arrive(1)
	g.arrive(9)
	select {
	case <-g.open:
		t.Fatal("gate open before bridges 2 and 3 arrived")
	default:
	}
	g.arrive(2)
	g.arrive(3)
	select {
	case <-g.open:
	case <-time.After(5 * time.Second):
		t.Fatal("gate still closed after every bridge arrived")
	}
	g.wait(ctx)

	start := time.Now()
	late := newSendGate([]uint64{1, 2}, 50*time.Millisecond)
	late.arrive(1)
	late.wait(ctx) // bridge 2 never arrives: the bound opens it
	if d := time.Since(start); d < 40*time.Millisecond || d > 5*time.Second {
		t.Fatalf("bounded gate opened after %s, want about 50ms", d)
	}

	off := newSendGate([]uint64{1}, -1)
	off.wait(ctx) // disabled: open at once
	var none *sendGate
	none.arrive(1)
	none.wait(ctx)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	newSendGate([]uint64{1}, time.Hour).wait(cctx) // a cancelled caller does not wait
}
