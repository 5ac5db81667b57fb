package cluster

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestQuorumLeaseNoFalseLoss: a healthy 3-replica cluster never loses its
// quorum, with memberlist's LAN probe interval (1 s) and with the default
// (200 ms). A fixed 1.5 s lease flapped at 1 s (a peer is probed only every
// (N-1) × ProbeInterval, round-robin, and a missed ack doubles that).
func TestQuorumLeaseNoFalseLoss(t *testing.T) {
	for _, tc := range []struct {
		probe, timeout, run time.Duration
	}{
		{time.Second, 500 * time.Millisecond, 15 * time.Second},
		{DefaultProbeInterval, DefaultProbeTimeout, 10 * time.Second},
	} {
		t.Run(tc.probe.String(), func(t *testing.T) {
			t.Parallel()
			mk := func(name string, join ...string) Config {
				c := testConfig(name, 3, join...)
				c.ProbeInterval, c.ProbeTimeout = tc.probe, tc.timeout
				return c
			}
			r0 := start(t, mk("r0"))
			cs := []*Cluster{r0, start(t, mk("r1", r0.addr())), start(t, mk("r2", r0.addr()))}
			waitMembers(t, 10*time.Second, cs, 3)
			waitFor(t, 5*time.Second, "quorum everywhere", func() bool {
				return cs[0].HasQuorum() && cs[1].HasQuorum() && cs[2].HasQuorum()
			})
			var samples, lost atomic.Int64
			t0 := time.Now()
			for time.Since(t0) < tc.run {
				for i, c := range cs {
					samples.Add(1)
					if !c.HasQuorum() {
						lost.Add(1)
						t.Errorf("r%d lost its quorum at %s in a healthy cluster (lease %s)", i, time.Since(t0).Round(time.Millisecond), c.QuorumLease())
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("probe interval %s, lease %s: %d samples, %d without quorum", tc.probe, cs[0].QuorumLease(), samples.Load(), lost.Load())
		})
	}
}

// TestPartitionLosesQuorumWithinBound: a replica cut off from both peers
// loses its quorum within lease + ProbeInterval (+ scheduling slack), the
// bound docs/cluster.md publishes.
func TestPartitionLosesQuorumWithinBound(t *testing.T) {
	var cut atomic.Bool
	cfg0 := testConfig("r0", 3)
	cfg0.testPeerFilter = func(string) bool { return !cut.Load() }
	r0 := start(t, cfg0)
	cs := []*Cluster{r0, start(t, testConfig("r1", 3, r0.addr())), start(t, testConfig("r2", 3, r0.addr()))}
	waitMembers(t, 5*time.Second, cs, 3)
	waitFor(t, 5*time.Second, "quorum on r0", r0.HasQuorum)
	lease := r0.QuorumLease()
	if want := LeaseFor(DefaultProbeInterval, DefaultProbeTimeout, 3); lease != want {
		t.Fatalf("lease %s, want the derived %s", lease, want)
	}
	bound := lease + DefaultProbeInterval + 300*time.Millisecond // 300 ms: a loaded CI machine
	cut.Store(true)
	d := waitFor(t, 10*time.Second, "r0 to lose its quorum", func() bool { return !r0.HasQuorum() })
	t.Logf("cut-off replica lost its quorum %s after the cut (lease %s, bound %s)", d.Round(time.Millisecond), lease, bound)
	if d > bound {
		t.Fatalf("quorum lost %s after the cut, later than the bound %s", d, bound)
	}
}

func TestLeaseFor(t *testing.T) {
	for _, tc := range []struct {
		pi, pt time.Duration
		n      int
		want   time.Duration
	}{
		{200 * time.Millisecond, 100 * time.Millisecond, 3, 1700 * time.Millisecond},
		{time.Second, 500 * time.Millisecond, 3, 8500 * time.Millisecond},
		{200 * time.Millisecond, 100 * time.Millisecond, 5, 3300 * time.Millisecond},
		{200 * time.Millisecond, 100 * time.Millisecond, 1, 900 * time.Millisecond},
	} {
		if got := LeaseFor(tc.pi, tc.pt, tc.n); got != tc.want {
			t.Errorf("LeaseFor(%s, %s, %d) = %s, want %s", tc.pi, tc.pt, tc.n, got, tc.want)
		}
	}
}
