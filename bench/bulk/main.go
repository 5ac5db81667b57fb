// Command bulk measures vpcflow's bulk install against the switch's own
// limit in the same run: one bridge in a private userspace ovs-vswitchd, a
// "big host" blueprint compiling to ~10k and ~100k flows; per run, the time
// from the switch connecting to the controller to all flows installed,
// barrier-confirmed and read back (the controller's own log), versus
// `ovs-ofctl -O OpenFlow13 --bundle add-flows` of the same flows on an empty
// bridge. Needs root and Open vSwitch.
//
//	go run ./bench/bulk -runs 5 -flows 10000,100000 -json /tmp/bulk.json
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vpcflow/vpcflow/bench/gen"
	"github.com/vpcflow/vpcflow/bench/internal/ovsbench"
	"github.com/vpcflow/vpcflow/flows"
)

type caseResult struct {
	Target          int       `json:"target_flows"`
	Flows           int       `json:"flows"`
	Runs            int       `json:"runs"`
	OfctlMs         []float64 `json:"ofctl_bundle_ms"`
	CtlMs           []float64 `json:"controller_connect_to_converged_ms"`
	CtlTookMs       []float64 `json:"controller_reconcile_took_ms"`
	CtlFromTargetMs []float64 `json:"controller_from_set_controller_ms"`
	OfctlMedian     float64   `json:"ofctl_median_ms"`
	CtlMedian       float64   `json:"controller_median_ms"`
	Ratio           float64   `json:"ratio_median"`
	Ratios          []float64 `json:"ratios"`
}

func main() {
	runs := flag.Int("runs", 5, "runs per size")
	sizes := flag.String("flows", "10000,100000", "target flow counts")
	jsonOut := flag.String("json", "", "write results as JSON here")
	cpuprofile := flag.String("cpuprofile", "", "controller CPU profile of the last run of the largest size (file)")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	var targets []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/bulk: -flows:", err)
			os.Exit(2)
		}
		targets = append(targets, n)
	}
	if err := run(targets, *runs, *jsonOut, *cpuprofile, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench/bulk:", err)
		os.Exit(1)
	}
}

func run(targets []int, runs int, jsonOut, cpuprofile string, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "vpcflow-bench-bulk-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	bin, err := ovsbench.BuildTools(dir)
	if err != nil {
		return err
	}
	var results []caseResult
	for ti, target := range targets {
		prof := ""
		if cpuprofile != "" && ti == len(targets)-1 {
			prof = cpuprofile
		}
		r, err := runCase(ctx, dir, bin, target, runs, prof)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	fmt.Printf("\nBulk install, one bridge, median of %d runs (ms)\n", runs)
	fmt.Printf("%-8s %-8s %-14s %-16s %-12s %-8s %-14s\n", "target", "flows", "ofctl-bundle", "ctl conn->conv", "ctl took", "ratio", "ctl set->conv")
	for _, r := range results {
		fmt.Printf("%-8d %-8d %-14.0f %-16.0f %-12.0f %-8.2f %-14.0f\n", r.Target, r.Flows, r.OfctlMedian, r.CtlMedian,
			ovsbench.Median(r.CtlTookMs), r.Ratio, ovsbench.Median(r.CtlFromTargetMs))
	}
	return ovsbench.WriteJSON(jsonOut, results)
}

func runCase(ctx context.Context, dir, bin string, target, runs int, cpuprofile string) (caseResult, error) {
	res := caseResult{Target: target, Runs: runs}
	spec, n, err := gen.BigHost(target)
	if err != nil {
		return res, err
	}
	bp, err := gen.Build(spec)
	if err != nil {
		return res, err
	}
	v, y, err := gen.Parse(bp)
	if err != nil {
		return res, err
	}
	bpPath := filepath.Join(dir, fmt.Sprintf("big%d.yaml", target))
	if err := os.WriteFile(bpPath, y, 0o644); err != nil {
		return res, err
	}
	h := &v.Hosts[0]
	ports := []string{h.Uplink}
	for _, p := range v.VPCs {
		for _, t := range p.Tiers {
			for _, m := range t.VMs {
				if m.Host == h.Name {
					ports = append(ports, m.Port)
				}
			}
		}
	}
	// The flows ovs-ofctl installs: the same compiled set, bound to the
	// bridge's ports exactly as the controller binds it.
	pm := flows.PortMap{}
	for i, p := range append(ports, flows.TunnelPortVXLAN) {
		pm[p] = uint32(i + 1)
	}
	compiled, err := flows.Compile(v, h.Name)
	if err != nil {
		return res, err
	}
	bound, missing := flows.Bind(compiled, pm)
	if len(missing) > 0 {
		return res, fmt.Errorf("ports missing from the bench bridge: %v", missing)
	}
	flowFile := filepath.Join(dir, fmt.Sprintf("big%d.flows", target))
	if err := os.WriteFile(flowFile, []byte(flows.Render(bound, false)), 0o644); err != nil {
		return res, err
	}
	res.Flows = len(bound)
	fmt.Fprintf(os.Stderr, "bulk: target %d: %d flows (calibrated %d), %d ports, blueprint %d bytes\n", target, len(bound), n, len(ports)+1, len(y))

	prefix := fmt.Sprintf("vfbb%d", os.Getpid()%100000)
	sw, err := ovsbench.Start(ctx, prefix, filepath.Join(dir, "ovs"))
	if err != nil {
		return res, err
	}
	defer sw.Close()
	const br = "b0"
	if err := sw.AddBridges(ctx, []ovsbench.Bridge{{Name: br, DPID: h.DPID, Ports: ports, TunnelPort: flows.TunnelPortVXLAN, TunnelIP: h.TunnelIP}}, 1); err != nil {
		return res, err
	}
	for r := 0; r < runs; r++ {
		ofctlFirst := r%2 == 0
		var ofMs, ctlMs, tookMs, fromTargetMs float64
		doOfctl := func() error {
			if _, err := sw.Ofctl(ctx, "del-flows", br); err != nil {
				return err
			}
			d, err := sw.TimeOfctlBundle(ctx, br, flowFile)
			if err != nil {
				return err
			}
			if c, err := sw.FlowCount(ctx, br); err != nil || c != len(bound) {
				return fmt.Errorf("ovs-ofctl installed %d flows, want %d (%v)", c, len(bound), err)
			}
			ofMs = ovsbench.Ms(d)
			_, err = sw.Ofctl(ctx, "del-flows", br)
			return err
		}
		doCtl := func() error {
			if _, err := sw.Ofctl(ctx, "del-flows", br); err != nil {
				return err
			}
			logPath := filepath.Join(dir, fmt.Sprintf("ctl-%d-%d.log", target, r))
			var extra []string
			if cpuprofile != "" && r == runs-1 {
				extra = append(extra, "-cpuprofile", cpuprofile)
			}
			c, err := sw.StartCtl(bin, bpPath, 6653, logPath, extra...)
			if err != nil {
				return err
			}
			defer c.Stop()
			tail := ovsbench.NewLogTail(logPath)
			t0 := time.Now()
			if err := sw.SetControllers(ctx, []string{br}, "tcp:127.0.0.1:6653", 1); err != nil {
				return err
			}
			var connected, done ovsbench.LogLine
			err = tail.Wait(ctx, 5*time.Minute, "reconciled+converged", func(l *ovsbench.LogLine) bool {
				switch l.Msg {
				case "switch connected":
					connected = *l
				case "reconciled":
					if conv, _ := l.Fields["converged"].(bool); conv {
						done = *l
						return true
					}
				}
				return false
			})
			if err != nil {
				return err
			}
			if connected.Time.IsZero() {
				return fmt.Errorf("no 'switch connected' line in %s", logPath)
			}
			ctlMs = ovsbench.Ms(done.Time.Sub(connected.Time))
			fromTargetMs = ovsbench.Ms(done.Time.Sub(t0))
			if d, err := time.ParseDuration(done.Str("took")); err == nil {
				tookMs = ovsbench.Ms(d)
			}
			if got := int(done.Num("installed")); got != len(bound) {
				return fmt.Errorf("controller converged with %d flows installed, want %d", got, len(bound))
			}
			if err := sw.SetControllers(ctx, []string{br}, "", 1); err != nil {
				return err
			}
			c.Stop()
			_, err = sw.Ofctl(ctx, "del-flows", br)
			return err
		}
		steps := []func() error{doOfctl, doCtl}
		if !ofctlFirst {
			steps = []func() error{doCtl, doOfctl}
		}
		for _, s := range steps {
			if err := s(); err != nil {
				return res, err
			}
		}
		res.OfctlMs = append(res.OfctlMs, ofMs)
		res.CtlMs = append(res.CtlMs, ctlMs)
		res.CtlTookMs = append(res.CtlTookMs, tookMs)
		res.CtlFromTargetMs = append(res.CtlFromTargetMs, fromTargetMs)
		res.Ratios = append(res.Ratios, ctlMs/ofMs)
		fmt.Fprintf(os.Stderr, "bulk: %d flows run %d: ofctl %.0f ms, controller %.0f ms (reconcile took %.0f ms), ratio %.2f\n",
			len(bound), r+1, ofMs, ctlMs, tookMs, ctlMs/ofMs)
	}
	res.OfctlMedian = ovsbench.Median(res.OfctlMs)
	res.CtlMedian = ovsbench.Median(res.CtlMs)
	res.Ratio = ovsbench.Median(res.Ratios)
	return res, nil
}
