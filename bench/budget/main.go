// Command budget tabulates the flows one host carries as its local VMs,
// the tiers and the peers (other hosts carrying its tiers, and
// trusted_peers) grow, and checks that the growth is additive: a linear
// model fitted on single-factor steps must predict every combined point
// exactly (a cross product would show up as a residual). No switch needed.
//
//	go run ./bench/budget -json /tmp/budget.json
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/vpcflow/vpcflow/bench/gen"
	"github.com/vpcflow/vpcflow/bench/internal/ovsbench"
	"github.com/vpcflow/vpcflow/flows"
)

type point struct {
	LocalVMs     int `json:"local_vms"`
	Tiers        int `json:"tiers"`
	Hosts        int `json:"hosts"` // h0 + peers
	TrustedPeers int `json:"trusted_peers"`
	RemoteVMs    int `json:"remote_vms_in_local_tiers"`
	Flows        int `json:"flows"`
	Predicted    int `json:"predicted"`
}

// Host h0 carries L local VMs over T tiers (L >= T so all tiers are local);
// each of the H-1 peer hosts carries one VM in every tier (so every peer
// carries every tier: the worst case for per-tier tunnel allowlists).
func measure(l, t, h, tp int) (point, error) {
	p := point{LocalVMs: l, Tiers: t, Hosts: h, TrustedPeers: tp}
	s := gen.Spec{Hosts: h, VMsPerHost: t, LocalVMs: l, Tiers: t, TrustedPeers: tp}
	bp, err := gen.Build(s)
	if err != nil {
		return p, err
	}
	// gen spreads VM k of host i over tier (slot % T); h0's L VMs cover all T
	// tiers when L >= T, and each peer's T VMs one per tier.
	v, _, err := gen.Parse(bp)
	if err != nil {
		return p, err
	}
	fs, err := flows.Compile(v, gen.HostName(0))
	if err != nil {
		return p, err
	}
	p.RemoteVMs = (h - 1) * t
	p.Flows = len(fs)
	return p, nil
}

func main() {
	jsonOut := flag.String("json", "", "write results as JSON here")
	flag.Parse()
	var pts []point
	// Model: flows = c0 + cL*L + cT*T + cH*(H-1) + cTP*TP + cR*R + cTH*T*(H-1)
	// where R = remote VMs in local tiers (each needs an ARP answer and an L2
	// entry) and T*(H-1) = (tier, peer carrying it) pairs (the tunnel-in
	// allowlist: key K only from hosts that carry tier K). In this grid R ==
	// T*(H-1), so the two are one term: per remote VM-or-pair.
	grid := [][4]int{}
	for _, l := range []int{10, 100, 1000} {
		for _, t := range []int{10, 100} {
			for _, h := range []int{11, 101} { // 10 / 100 peers
				for _, tp := range []int{0, 10, 100} {
					if l < t {
						continue
					}
					grid = append(grid, [4]int{l, t, h, tp})
				}
			}
		}
	}
	for _, g := range grid {
		p, err := measure(g[0], g[1], g[2], g[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/budget:", err)
			os.Exit(1)
		}
		pts = append(pts, p)
	}
	// Fit on single-factor differences from the base point (10,10,11,0).
	base := pts[0]
	find := func(l, t, h, tp int) point {
		for _, p := range pts {
			if p.LocalVMs == l && p.Tiers == t && p.Hosts == h && p.TrustedPeers == tp {
				return p
			}
		}
		panic("missing grid point")
	}
	cL := float64(find(100, 10, 11, 0).Flows-base.Flows) / 90
	// trusted_peers: per peer flows, plus (only when there are any) the
	// conjunction clause per local tier and the conjunction flow itself.
	cTP := float64(find(10, 10, 11, 100).Flows-find(10, 10, 11, 10).Flows) / 90
	s10 := float64(find(10, 10, 11, 10).Flows-base.Flows) - cTP*10
	s100 := float64(find(100, 100, 11, 10).Flows-find(100, 100, 11, 0).Flows) - cTP*10
	cTT := (s100 - s10) / 90
	c1 := s10 - cTT*10
	// Peers: +90 hosts at T=10 adds 90 hosts' host-level flows + 90*10 pairs.
	dH := float64(find(10, 10, 101, 0).Flows - base.Flows)
	// Tiers at 100 VMs: T 10->100 at H=11 adds 90 tiers + 90*10 pairs.
	dT := float64(find(100, 100, 11, 0).Flows - find(100, 10, 11, 0).Flows)
	// Solve cH*90 + cPair*900 = dH and cT*90 + cPair*900 = dT needs one more
	// equation: use (100,100,101,0).
	d2 := float64(find(100, 100, 101, 0).Flows - find(100, 10, 101, 0).Flows) // cT*90 + cPair*90*100
	cPair := (d2 - dT) / (90*100 - 900)
	cT := (dT - cPair*900) / 90
	cH := (dH - cPair*900) / 90
	maxRes := 0
	for i := range pts {
		p := &pts[i]
		pred := float64(base.Flows) + cL*float64(p.LocalVMs-10) + cT*float64(p.Tiers-10) + cH*float64(p.Hosts-11) +
			cTP*float64(p.TrustedPeers) + cPair*float64(p.Tiers*(p.Hosts-1)-10*10)
		if p.TrustedPeers > 0 {
			pred += cTT*float64(p.Tiers) + c1
		}
		p.Predicted = int(pred + 0.5)
		if r := abs(p.Predicted - p.Flows); r > maxRes {
			maxRes = r
		}
	}
	fmt.Printf("Flows on host h0 (peers = other hosts, each carrying one VM in every tier; trusted = trusted_peers)\n")
	fmt.Printf("%-9s %-6s %-6s %-8s %-10s %-8s %-9s\n", "localVMs", "tiers", "peers", "trusted", "remoteVMs", "flows", "additive")
	for _, p := range pts {
		fmt.Printf("%-9d %-6d %-6d %-8d %-10d %-8d %-9d\n", p.LocalVMs, p.Tiers, p.Hosts-1, p.TrustedPeers, p.RemoteVMs, p.Flows, p.Predicted)
	}
	fmt.Printf("\nadditive model: flows = %d + %.2f*(localVMs-10) + %.2f*(tiers-10) + %.2f*(peers-10) + %.2f*trusted + [trusted>0]*(%.2f*tiers + %.2f) + %.2f*(remote VMs in local tiers - 100)\n",
		base.Flows, cL, cT, cH, cTP, cTT, c1, cPair)
	fmt.Printf("max |measured - additive| = %d flows over %d points (0 = purely additive; a cross product would not fit)\n", maxRes, len(pts))
	_ = ovsbench.WriteJSON(*jsonOut, map[string]any{"points": pts, "per_local_vm": cL, "per_tier": cT, "per_peer": cH,
		"per_trusted_peer": cTP, "per_tier_if_trusted": cTT, "const_if_trusted": c1, "per_remote_vm_in_local_tier": cPair, "max_residual": maxRes})
	if maxRes != 0 {
		os.Exit(1)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
