package cluster

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func setConfig(name string, set []string, join ...string) Config {
	c := testConfig(name, 0, join...)
	c.Replicas = 0
	c.testOpen = false
	c.ReplicaSet = set
	return c
}

// TestStrangerRefused: a member whose name is not in the replica set is
// refused at the membership level and reported; it does not count toward
// the quorum, owns nothing, and its gossiped state (a huge revision and
// generation) influences nothing.
func TestStrangerRefused(t *testing.T) {
	set := []string{"r0", "r1", "r2"}
	r0 := start(t, setConfig("r0", set))
	r1 := start(t, setConfig("r1", set, r0.addr()))
	waitMembers(t, 5*time.Second, []*Cluster{r0, r1}, 2)
	r0.SetLocal(LocalState{Revision: 3, Hash: "aa"})
	r1.SetLocal(LocalState{Revision: 3, Hash: "aa"})

	x := start(t, testConfig("x", 3, r0.addr(), r1.addr())) // accepts anyone itself
	x.SetLocal(LocalState{Revision: 0xffffffff, Hash: "ff", MaxGeneration: 1 << 40, Connected: dpids(50), Master: dpids(50)})
	waitFor(t, 5*time.Second, "r0 and r1 to report the refused stranger", func() bool {
		return len(r0.Refused()) > 0 && len(r1.Refused()) > 0
	})
	if rf := r0.Refused(); rf[0].Name != "x" || rf[0].Count == 0 || rf[0].Addr == "" {
		t.Fatalf("refused = %+v", rf)
	}
	assertStays(t, 2*time.Second, "the stranger to stay out", func() bool {
		for _, c := range []*Cluster{r0, r1} {
			if slices.Contains(memberNames(c), "x") {
				return false
			}
			if rev, _ := c.NewestRevision(); rev != 3 {
				return false
			}
			if c.MaxGeneration() >= 1<<40 {
				return false
			}
			for _, d := range dpids(50) {
				if o, _ := c.Owner(d); o == "x" {
					return false
				}
				if _, ok := c.MasterElsewhere(d); ok {
					return false
				}
			}
		}
		return true
	})
	// r1 dies: r0 plus the stranger would be 2 of 3 if strangers counted.
	_ = r1.Shutdown()
	waitFor(t, 10*time.Second, "r0 to see r1 gone", func() bool { return len(r0.Members()) == 1 })
	waitFor(t, 5*time.Second, "r0 to lose its quorum (the stranger does not count)", func() bool { return !r0.HasQuorum() })
	assertStays(t, time.Second, "r0 to stay without quorum", func() bool { return !r0.HasQuorum() })
}

// TestSetReplicaSet: the set (and so the quorum) follows the blueprint on a
// reload; a member removed from the set stops counting at once.
func TestSetReplicaSet(t *testing.T) {
	set := []string{"r0", "r1", "r2"}
	r0 := start(t, setConfig("r0", set))
	r1 := start(t, setConfig("r1", set, r0.addr()))
	waitMembers(t, 5*time.Second, []*Cluster{r0, r1}, 2)
	waitFor(t, 5*time.Second, "quorum 2 of 3", r0.HasQuorum)
	if err := r0.SetReplicaSet([]string{"r0", "r1", "r2", "r3"}); err != nil {
		t.Fatal(err)
	}
	if q, n := r0.Quorum(); q != 3 || n != 4 {
		t.Fatalf("quorum %d of %d, want 3 of 4", q, n)
	}
	if r0.HasQuorum() {
		t.Fatal("2 live of 4 has a quorum")
	}
	if err := r0.SetReplicaSet([]string{"r0", "r2"}); err != nil {
		t.Fatal(err)
	}
	if r0.HasQuorum() || slices.Contains(memberNames(r0), "r1") {
		t.Fatalf("r1, removed from the set, still counts: members %v", memberNames(r0))
	}
	if err := r0.SetReplicaSet(nil); err == nil {
		t.Fatal("empty replica set accepted")
	}
	if i := r0.ReplicaIndex(); i != 0 {
		t.Fatalf("ReplicaIndex = %d", i)
	}
}

func cnames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("c%d", i)
	}
	return out
}

// TestReplicaSetChangeOneAtATime: replicas enforcing an old and a new
// replica set that differ by one member can never form two quorums on the
// two sides of any partition, for every set size up to 7; a change by two
// (3 → 5, or a replacement) can, and is rejected.
func TestReplicaSetChangeOneAtATime(t *testing.T) {
	twoQuorums := func(old, next []string) bool {
		all := cnames(max(len(old), len(next)) + 1)
		for mask := 0; mask < 1<<len(all); mask++ {
			var a, b []string
			for i, n := range all {
				if mask&(1<<i) != 0 {
					a = append(a, n)
				} else {
					b = append(b, n)
				}
			}
			// Side a enforces old, side b next (and the other way round).
			if (Quorate(old, a) && Quorate(next, b)) || (Quorate(next, a) && Quorate(old, b)) {
				return true
			}
		}
		return false
	}
	for n := 1; n <= 7; n++ {
		old := cnames(n)
		grow := cnames(n + 1)
		if twoQuorums(old, grow) {
			t.Errorf("%d → %d replicas: two quorums possible", n, n+1)
		}
		if err := CheckReplicaSetChange(old, grow); err != nil {
			t.Errorf("%d → %d rejected: %v", n, n+1, err)
		}
		if n > 1 {
			shrink := old[1:]
			if twoQuorums(old, shrink) {
				t.Errorf("%d → %d replicas: two quorums possible", n, n-1)
			}
			if err := CheckReplicaSetChange(old, shrink); err != nil {
				t.Errorf("%d → %d rejected: %v", n, n-1, err)
			}
		}
	}
	three, five := cnames(3), cnames(5)
	if !twoQuorums(three, five) {
		t.Error("3 → 5 at once cannot produce two quorums? the check would be pointless")
	}
	err := CheckReplicaSetChange(three, five)
	if err == nil || !strings.Contains(err.Error(), "one replica at a time") {
		t.Errorf("3 → 5 at once: %v, want a rejection explaining the procedure", err)
	}
	replace := []string{"c0", "c1", "c9"}
	if err := CheckReplicaSetChange(three, replace); err == nil {
		t.Error("replacing a replica in one step accepted")
	}
	if err := CheckReplicaSetChange(three, []string{"c2", "c0", "c1"}); err != nil {
		t.Errorf("reordering rejected: %v", err)
	}
}

func TestClaimGeneration(t *testing.T) {
	seen := map[uint64]int{}
	for idx := range 3 {
		g := ClaimGeneration(0, idx)
		if o, dup := seen[g]; dup {
			t.Fatalf("replicas %d and %d claim with the same id %d", o, idx, g)
		}
		seen[g] = idx
		if int64(g-0) <= 0 {
			t.Fatalf("claim %d not newer than 0", g)
		}
		// Above any id another replica used, whatever its index.
		for other := range 3 {
			prev := ClaimGeneration(0, other)
			if g2 := ClaimGeneration(prev, idx); int64(g2-prev) <= 0 {
				t.Fatalf("claim %d after %d is not newer", g2, prev)
			}
		}
	}
	if g := ClaimGeneration(41, 2); g != 256+2 {
		t.Fatalf("ClaimGeneration(41, 2) = %d, want 258", g)
	}
}

// TestStrangerCannotGatherQuorum: a stranger holding the key and a set of
// its own that lists the three replicas and itself learns their states
// (they carry their replica set, which leaves it out) and so counts none
// of them: it never has a quorum and owns nothing, even though memberlist
// shows it the replicas alive. Without the check it had quorum 4 of 4.
func TestStrangerCannotGatherQuorum(t *testing.T) {
	set := []string{"r0", "r1", "r2"}
	r0 := start(t, setConfig("r0", set))
	r1 := start(t, setConfig("r1", set, r0.addr()))
	r2 := start(t, setConfig("r2", set, r0.addr()))
	waitMembers(t, 5*time.Second, []*Cluster{r0, r1, r2}, 3)
	x := start(t, setConfig("x", append(slices.Clone(set), "x"), r0.addr(), r1.addr(), r2.addr()))
	waitFor(t, 5*time.Second, "the replicas to refuse the stranger", func() bool {
		return len(r0.Refused()) > 0 && len(r1.Refused()) > 0 && len(r2.Refused()) > 0
	})
	waitFor(t, 5*time.Second, "the stranger to learn the replicas' states", func() bool {
		x.mu.RLock()
		defer x.mu.RUnlock()
		return len(x.states) == 3
	})
	assertStays(t, 2*time.Second, "the stranger to stay without quorum and own nothing", func() bool {
		if x.HasQuorum() {
			return false
		}
		for _, d := range dpids(20) {
			if x.IsOwner(d) {
				return false
			}
		}
		return true
	})
	if !r0.HasQuorum() {
		t.Fatal("the replicas lost their quorum")
	}
}
