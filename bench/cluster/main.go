// Command cluster measures vpcflow's replica failover on real Open vSwitch:
// the median time from SIGKILL of a bridge's owner to a new MASTER on all of
// its bridges, the ping loss through each failover, and (with -soak) the
// number of ownership changes while all replicas are healthy and one
// replica's CPU is loaded. Needs root and Open vSwitch (like the e2e suite).
//
//	go run ./bench/cluster -runs 5
//	go run ./bench/cluster -runs 0 -soak 10m -load
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

type result struct {
	Runs              int       `json:"runs"`
	FailoverMs        []float64 `json:"failover_ms"`
	MedianMs          float64   `json:"failover_median_ms"`
	PingLost          []int     `json:"ping_lost"`
	SoakSeconds       float64   `json:"soak_seconds,omitempty"`
	SoakChanges       int       `json:"soak_ownership_changes"`
	SoakRoleGrants    int       `json:"soak_role_grants"`
	SoakLoadedReplica int       `json:"soak_loaded_replica,omitempty"`
}

func main() {
	runs := flag.Int("runs", 5, "failover runs (SIGKILL of the owner of kvm1)")
	soak := flag.Duration("soak", 0, "soak duration with all replicas healthy (0 = none)")
	load := flag.Bool("load", true, "during the soak, load one replica's CPU (busy loops pinned to its core)")
	bin := flag.String("bin", "", "vpcflow binary (default: go build)")
	jsonOut := flag.String("json", "", "write results as JSON to this file")
	flag.Parse()
	if err := run(*runs, *soak, *load, *bin, *jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "bench/cluster:", err)
		os.Exit(1)
	}
}

func run(runs int, soak time.Duration, load bool, bin, jsonOut string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "vpcflow-bench-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "vpcflow")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/vpcflow").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	demo, err := os.ReadFile("examples/demo/blueprint.yaml")
	if err != nil {
		return err
	}
	bpText := strings.Replace(string(demo), "controllers: [tcp:192.0.2.250:6653]",
		"controllers: [tcp:192.0.2.250:6653, tcp:192.0.2.251:6653, tcp:192.0.2.252:6653]", 1)
	bpPath := filepath.Join(dir, "blueprint.yaml")
	if err := os.WriteFile(bpPath, []byte(bpText), 0o644); err != nil {
		return err
	}
	bp, err := flows.Load(bpPath)
	if err != nil {
		return err
	}
	l, err := lab.Up(ctx, lab.Options{Blueprint: bp, BlueprintPath: bpPath, VPCFlowBin: bin, Watch: true, Dir: filepath.Join(dir, "lab")})
	if err != nil {
		return err
	}
	defer l.Down()
	all := []int{0, 1, 2}
	procs := map[int]*lab.Proc{}
	start := func(i int) error {
		p, err := l.StartControllerIn(i, l.ReplicaArgs(i)...)
		procs[i] = p
		return err
	}
	for _, i := range all {
		if err := start(i); err != nil {
			return err
		}
	}
	defer func() {
		for _, p := range procs {
			if p.Running() {
				p.Kill()
			}
		}
	}()
	if _, err := l.WaitClusterConverged(ctx, all, 60*time.Second); err != nil {
		return err
	}
	// Warm up: the first packet over a fresh tunnel waits for (and may be
	// dropped by) OVS's tunnel-neighbour ARP; that is not failover loss.
	for i := 0; i < 50; i++ {
		if _, rx, _ := l.Ping(ctx, "blue-web-1", "10.10.1.12", 1, 100*time.Millisecond, time.Second); rx > 0 {
			break
		}
	}
	res := result{Runs: runs}
	for r := 0; r < runs; r++ {
		v, err := l.ReadCluster(ctx, all)
		if err != nil {
			return err
		}
		victim := v.OwnerOf("kvm1")
		var hosts []string
		for _, h := range bp.Hosts {
			if v.OwnerOf(h.Name) == victim {
				hosts = append(hosts, h.Name)
			}
		}
		var survivors []int
		for _, i := range all {
			if i != victim {
				survivors = append(survivors, i)
			}
		}
		// A fixed-count ping (200 x 20 ms) that exits by itself, so loss is
		// exact: no echo is cut off in flight by stopping it.
		type pr struct{ tx, rx int }
		pingDone := make(chan pr, 1)
		go func() {
			tx, rx, _ := l.Ping(ctx, "blue-web-1", "10.10.1.12", 200, 20*time.Millisecond, 2*time.Second)
			pingDone <- pr{tx, rx}
		}()
		time.Sleep(500 * time.Millisecond) // let the ping establish
		t0 := time.Now()
		procs[victim].Kill()
		var detectMs float64
		for {
			if detectMs == 0 {
				if st, err := l.ReplicaStatus(ctx, survivors[0]); err == nil && st.Cluster != nil && len(st.Cluster.Members) == 2 {
					detectMs = float64(time.Since(t0).Microseconds()) / 1000
				}
			}
			v, err := l.ReadCluster(ctx, survivors)
			done := err == nil
			for _, h := range hosts {
				if err != nil || len(v.Masters[h]) != 1 {
					done = false
				}
			}
			if done {
				break
			}
			if time.Since(t0) > 30*time.Second {
				return fmt.Errorf("run %d: no new MASTER within 30s", r)
			}
			time.Sleep(20 * time.Millisecond)
		}
		ms := float64(time.Since(t0).Microseconds()) / 1000
		pg := <-pingDone
		tx, rx := pg.tx, pg.rx
		res.FailoverMs = append(res.FailoverMs, ms)
		res.PingLost = append(res.PingLost, tx-rx)
		fmt.Printf("run %d: replica %d killed (owned %v): membership updated after %.0f ms, new MASTER after %.0f ms; ping %d/%d lost\n", r+1, victim, hosts, detectMs, ms, tx-rx, tx)
		if err := start(victim); err != nil {
			return err
		}
		if _, err := l.WaitClusterConverged(ctx, all, 60*time.Second); err != nil {
			return err
		}
		// Let the switches reconnect to the restarted replica and ownership settle.
		time.Sleep(3 * time.Second)
		if _, err := l.WaitClusterConverged(ctx, all, 60*time.Second); err != nil {
			return err
		}
	}
	if len(res.FailoverMs) > 0 {
		s := append([]float64(nil), res.FailoverMs...)
		sort.Float64s(s)
		res.MedianMs = s[len(s)/2]
		fmt.Printf("failover: median %.0f ms over %d runs (min %.0f, max %.0f)\n", res.MedianMs, len(s), s[0], s[len(s)-1])
	}
	if soak > 0 {
		if err := soakRun(ctx, l, procs, all, soak, load, &res); err != nil {
			return err
		}
	}
	if jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		return os.WriteFile(jsonOut, b, 0o644)
	}
	return nil
}

func soakRun(ctx context.Context, l *lab.Lab, procs map[int]*lab.Proc, all []int, d time.Duration, load bool, res *result) error {
	v, err := l.WaitClusterConverged(ctx, all, 60*time.Second)
	if err != nil {
		return err
	}
	loaded := 1
	var burners []*exec.Cmd
	if load {
		// Pin the replica and two busy loops to CPU 0: the replica competes
		// for its core with two CPU hogs for the whole soak.
		pid := procs[loaded].Pid
		_ = exec.Command("taskset", "-a", "-p", "-c", "0", fmt.Sprint(pid)).Run()
		for i := 0; i < 2; i++ {
			c := exec.Command("taskset", "-c", "0", "sh", "-c", "while :; do :; done")
			if err := c.Start(); err != nil {
				return err
			}
			burners = append(burners, c)
		}
		defer func() {
			for _, c := range burners {
				c.Process.Kill()
				c.Wait()
			}
		}()
		res.SoakLoadedReplica = loaded
	}
	grants := func() int {
		n := 0
		for _, p := range procs {
			n += strings.Count(p.Log(), `msg="role granted"`)
		}
		return n
	}
	g0 := grants()
	prev := v.Ownership()
	changes := 0
	t0 := time.Now()
	for time.Since(t0) < d {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		v, err := l.ReadCluster(ctx, all)
		if err != nil {
			continue
		}
		ok, _ := v.Converged(hostNames(l))
		if !ok || v.Ownership() != prev {
			changes++
			fmt.Printf("soak %s: ownership change: %s -> %s (converged %v)\n", time.Since(t0).Round(time.Second), prev, v.Ownership(), ok)
			prev = v.Ownership()
		}
	}
	res.SoakSeconds = time.Since(t0).Seconds()
	res.SoakChanges = changes
	res.SoakRoleGrants = grants() - g0
	fmt.Printf("soak: %s with replica %d loaded=%v: %d ownership changes, %d MASTER grants\n", time.Since(t0).Round(time.Second), loaded, load, changes, res.SoakRoleGrants)
	return nil
}

func hostNames(l *lab.Lab) []string {
	var out []string
	for _, h := range l.Blueprint().Hosts {
		out = append(out, h.Name)
	}
	return out
}
