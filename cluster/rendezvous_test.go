package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("replica-%d:7946", i)
	}
	return out
}

func dpids(n int) []uint64 {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]uint64, n)
	for i := range out {
		if i%2 == 0 {
			out[i] = uint64(i + 1) // small sequential ids
		} else {
			out[i] = r.Uint64() & 0xffffffffffff // MAC-derived ids
		}
	}
	return out
}

func TestRendezvousDeterministicAndOrderIndependent(t *testing.T) {
	if got := Rendezvous(42, nil); got != "" {
		t.Fatalf("Rendezvous over no members = %q, want empty", got)
	}
	ms := names(5)
	rev := slices.Clone(ms)
	slices.Reverse(rev)
	for _, d := range dpids(500) {
		a, b := Rendezvous(d, ms), Rendezvous(d, rev)
		if a != b || a == "" {
			t.Fatalf("dpid %#x: owner %q vs %q with reversed member order", d, a, b)
		}
		if c := Rendezvous(d, ms); c != a {
			t.Fatalf("dpid %#x: not deterministic: %q then %q", d, a, c)
		}
	}
	// Pinned values: the weight function is part of the cluster protocol;
	// replicas of different builds must agree.
	if w := weight(1, "a"); w != 0x4b03c9f3704c6eb9 {
		t.Fatalf("weight(1, \"a\") = %#x: the rendezvous weight function changed (cluster protocol break)", w)
	}
	if a, b := Rendezvous(1, []string{"a", "b", "c"}), Rendezvous(0xdeadbeef, []string{"a", "b", "c"}); a != "c" || b != "b" {
		t.Fatalf("pinned owners changed: got %q, %q, want c, b", a, b)
	}
}

func TestRendezvousBalance(t *testing.T) {
	for _, tc := range []struct {
		n        int
		min, max float64
	}{{3, 0.25, 0.42}, {5, 0.13, 0.28}, {2, 0.40, 0.60}} {
		ds := dpids(1000)
		ms := names(tc.n)
		count := map[string]int{}
		for _, d := range ds {
			count[Rendezvous(d, ms)]++
		}
		for _, m := range ms {
			share := float64(count[m]) / float64(len(ds))
			t.Logf("%d replicas: %s owns %.1f%%", tc.n, m, 100*share)
			if share < tc.min || share > tc.max {
				t.Errorf("%d replicas: %s owns %.1f%%, want %.0f–%.0f%%", tc.n, m, 100*share, 100*tc.min, 100*tc.max)
			}
		}
	}
}

func TestRendezvousMinimalMovement(t *testing.T) {
	ds := dpids(1000)
	ms := names(4)
	before := map[uint64]string{}
	for _, d := range ds {
		before[d] = Rendezvous(d, ms)
	}
	// Removing a member moves only its dpids.
	gone := ms[1]
	rest := slices.Delete(slices.Clone(ms), 1, 2)
	for _, d := range ds {
		after := Rendezvous(d, rest)
		if before[d] != gone && after != before[d] {
			t.Fatalf("dpid %#x moved %s -> %s although %s was removed", d, before[d], after, gone)
		}
		if after == gone {
			t.Fatalf("dpid %#x still owned by removed %s", d, gone)
		}
	}
	// Adding a member moves ≈1/N, only to the new member.
	added := append(slices.Clone(ms), "replica-new:7946")
	moved := 0
	for _, d := range ds {
		after := Rendezvous(d, added)
		if after != before[d] {
			if after != "replica-new:7946" {
				t.Fatalf("dpid %#x moved %s -> %s, not to the new member", d, before[d], after)
			}
			moved++
		}
	}
	share := float64(moved) / float64(len(ds))
	t.Logf("adding a 5th member moved %.1f%% of dpids (ideal 20%%)", 100*share)
	if share < 0.14 || share > 0.26 {
		t.Fatalf("adding a 5th member moved %.1f%%, want ≈20%%", 100*share)
	}
}
