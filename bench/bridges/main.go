// Command bridges measures vpcflow at hundreds of bridges in one userspace
// ovs-vswitchd (private namespace, dummy ports) with the realistic blueprint
// (20 VMs per host, 50 tiers, every host a tunnel peer of every other):
//
//   - initial convergence of all bridges vs the switch side alone (the sum
//     of per-bridge `ovs-ofctl --bundle add-flows` of the same flows),
//     controller CPU seconds, peak RSS and goroutines;
//   - incremental change (add one VM; move one VM to another host; with
//     -change acl-rule, edit one rule of the policy blueprint's 1,000 ACL
//     rules): per affected bridge the time from "blueprint loaded" and from
//     the blueprint file's write to its barrier-confirmed reconcile,
//     p50/p99, and flow-mods to unaffected bridges;
//   - reconnect storm: controller restart and controller targets removed
//     and restored (flow-mods must be 0), and an ovs-vswitchd restart
//     (empty tables: full re-install).
//
// Needs root and Open vSwitch.
//
//	go run ./bench/bridges -bridges 200 -changes 5 -json /tmp/bridges.json
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vpcflow/vpcflow/bench/gen"
	"github.com/vpcflow/vpcflow/bench/internal/ovsbench"
	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/flows"
)

const spares = 6 // spare dummy ports per bridge for added/moved VMs

type result struct {
	Bridges          int       `json:"bridges"`
	VSwitchds        int       `json:"vswitchds"`
	VMsPerHost       int       `json:"vms_per_host"`
	Tiers            int       `json:"tiers"`
	FlowsPerBridge   int       `json:"flows_per_bridge_h0"`
	FlowsTotal       int       `json:"flows_total"`
	SwitchSideMs     float64   `json:"switch_side_sum_ms"`
	ConvergeMs       float64   `json:"controller_converge_ms"`
	Ratio            float64   `json:"ratio"`
	CtlCPUSeconds    float64   `json:"controller_cpu_s"`
	CtlBaseRSSKiB    int       `json:"controller_base_rss_kib"`
	CtlHWMKiB        int       `json:"controller_peak_rss_kib"`
	BytesPerFlow     float64   `json:"controller_rss_bytes_per_flow_above_base"`
	Goroutines       int       `json:"controller_goroutines_max"`
	VSwitchdHWMKiB   int       `json:"vswitchd_peak_rss_kib"`
	Policy           bool      `json:"policy_blueprint"`  // the blueprint carries the 1,000 ACL rules and security groups (gen.AddPolicy)
	Load             [2]string `json:"loadavg_start_end"` // /proc/loadavg when the changes started and ended
	AddVM            change    `json:"add_vm"`
	MoveVM           change    `json:"move_vm"`
	ACLRule          change    `json:"acl_rule"`
	RestartMs        float64   `json:"controller_restart_converge_ms"`
	RestartFlowMods  uint64    `json:"controller_restart_flow_mods"`
	RetargetMs       float64   `json:"targets_restored_converge_ms"`
	RetargetFlowMods uint64    `json:"targets_restored_flow_mods"`
	MovedMs          float64   `json:"targets_moved_ms"`
	MovedFlowMods    uint64    `json:"targets_moved_flow_mods"`
	OVSRestartMs     float64   `json:"vswitchd_restart_converge_ms"`
	OVSRestartMods   uint64    `json:"vswitchd_restart_flow_mods"`
}

type change struct {
	Runs           int       `json:"runs"`
	AffectedPerRun []int     `json:"affected_per_run"`
	LatenciesMs    []float64 `json:"latencies_ms"` // blueprint loaded -> committed, barrier-confirmed and read back
	P50Ms          float64   `json:"p50_ms"`
	P99Ms          float64   `json:"p99_ms"`
	MaxMs          float64   `json:"max_ms"`
	// End to end: the blueprint file written (the bench's clock, just
	// before the rename) -> each affected bridge's reconcile, so reading,
	// parsing, validating and indexing the file are included.
	WriteLatenciesMs []float64 `json:"write_latencies_ms"`
	WriteP50Ms       float64   `json:"write_p50_ms"`
	WriteP99Ms       float64   `json:"write_p99_ms"`
	// Per change: load -> applied p50 and max over its affected bridges
	// (the samples of one change move together; the pooled p99 is mostly
	// the worst change or two).
	PerChangeP50Ms []float64 `json:"per_change_load_p50_ms"`
	PerChangeMaxMs []float64 `json:"per_change_load_max_ms"`
	// "blueprint loaded" - write: reading, parsing, validating, indexing.
	LoadMs []float64 `json:"write_to_loaded_ms"`
	// Of that, the bench's own file write (os.WriteFile + rename over the
	// old file: on ext4 the rename forces the new file's blocks out, which
	// can stall under other I/O) until the SIGHUP is sent, and from the
	// SIGHUP to "blueprint loaded" (the controller's part).
	FileWriteMs []float64 `json:"file_write_ms"`
	HupLoadedMs []float64 `json:"hup_to_loaded_ms"`
	// Per change, the medians over its affected bridges of the reconcile
	// line's took_diff, took_gather, took_switch; and of its flow_mods.
	PhaseMedianMs  [][3]float64 `json:"per_change_diff_gather_switch_median_ms"`
	FlowModsMedian []float64    `json:"per_change_flow_mods_median"`
	// CPU spent between the blueprint write and the last bridge applied:
	// ovs-vswitchd's main (OpenFlow) thread, and the whole controller.
	SwitchCPUMs []float64 `json:"vswitchd_main_thread_cpu_ms"`
	// The switch side alone: one affected bridge's added/rewritten flows as
	// one ovs-ofctl --bundle add-flows (5 bridges per change, sequential).
	SwitchFloorMs     []float64 `json:"switch_side_one_bridge_ms"`
	CtlCPUMs          []float64 `json:"controller_cpu_ms"`
	WriteToAppliedMs  []float64 `json:"file_write_to_all_applied_ms"`
	UnaffectedModsSum uint64    `json:"unaffected_flow_mods"`
	UnaffectedBridges int       `json:"unaffected_bridges_checked"`
	WrongAffected     int       `json:"affected_mismatch"`
	// Bridges whose connection was re-established during a change (an
	// overloaded machine: echo timeouts); their flow-mods are counted
	// from the reconnect.
	Reconnects int `json:"bridges_reconnected"`
}

type bench struct {
	ctx     context.Context
	dir     string
	bin     string
	sw      *ovsbench.Switch   // the first vswitchd (its namespace runs the controller)
	shards  []*ovsbench.Switch // every vswitchd; bridge i lives on shards[i % len]
	bpPath  string
	bp      *flows.Blueprint // current (parsed)
	raw     *flows.Blueprint // current (unparsed, editable)
	brs     []string
	ports   []flows.PortMap // per bridge, as the switch numbers them
	dpidBr  map[string]int  // dpid hex -> host index
	ctl     *ovsbench.Ctl
	logPath string
	tail    *ovsbench.LogTail
	res     result
	spareAt []int // next spare port per host
}

func main() {
	n := flag.Int("bridges", 200, "bridges (hosts) in one ovs-vswitchd")
	vms := flag.Int("vms", 20, "VMs per host")
	tiers := flag.Int("tiers", 50, "tiers")
	changes := flag.Int("changes", 5, "incremental changes of each kind")
	flag.StringVar(&changeKinds, "change", "add,move", "kinds of incremental change, comma-separated: add, move, acl-rule (acl-rule adds the policy blueprint's 1,000 ACL rules and security groups, bench/gen AddPolicy, to the blueprint)")
	jsonOut := flag.String("json", "", "write results as JSON here")
	cpuprofile := flag.String("cpuprofile", "", "controller CPU profile of the initial convergence + changes (file)")
	heapprofile := flag.String("heapprofile", "", "controller heap profile right after initial convergence (file)")
	flag.StringVar(&changeProfile, "change-profile", "", "controller CPU profile of the incremental changes only (file)")
	flag.DurationVar(&statusPoll, "status-poll", 0, "also poll /status this often during each change (the method of earlier runs: 20ms; 0 = off)")
	skipSwitch := flag.Bool("skip-switch-side", false, "skip the ovs-ofctl baseline")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.IntVar(&fullReconciles, "full-reconciles", 0, "the controller's --full-reconciles (0 = its default)")
	flag.DurationVar(&driftInterval, "drift-interval", 0, "the controller's --drift-interval (0 = its default, 30s)")
	flag.StringVar(&reloadGather, "reload-gather", "", "the controller's --reload-gather (e.g. 0 = off; empty = its default, 100ms)")
	flag.IntVar(&vswitchds, "vswitchds", 1, "spread the bridges over this many ovs-vswitchd processes (round robin; 1 = all in one)")
	flag.BoolVar(&storms, "storms", true, "run the reconnect storms (controller restart, targets moved/removed, ovs-vswitchd restart)")
	flag.Parse()
	if err := run(*n, *vms, *tiers, *changes, *jsonOut, *cpuprofile, *heapprofile, *skipSwitch, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench/bridges:", err)
		os.Exit(1)
	}
}

var (
	driftInterval  time.Duration
	statusPoll     time.Duration
	changeProfile  string
	fullReconciles int
	reloadGather   string
	storms         bool
	vswitchds      int
	changeKinds    string
)

// kinds parses -change.
func kinds() ([]string, error) {
	var out []string
	for _, k := range strings.Split(changeKinds, ",") {
		switch k = strings.TrimSpace(k); k {
		case "add", "move", "acl-rule":
			out = append(out, k)
		case "":
		default:
			return nil, fmt.Errorf("-change %q: unknown kind %q (want add, move or acl-rule, comma-separated)", changeKinds, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-change %q: no kind (want add, move or acl-rule, comma-separated)", changeKinds)
	}
	return out, nil
}

func has(ks []string, k string) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

// ctlArgs are the extra controller flags of every start.
func ctlArgs(extra ...string) []string {
	if fullReconciles > 0 {
		extra = append(extra, "-full-reconciles", fmt.Sprint(fullReconciles))
	}
	if reloadGather != "" {
		extra = append(extra, "-reload-gather", reloadGather)
	}
	if driftInterval > 0 {
		extra = append(extra, "-drift-interval", driftInterval.String())
	}
	return extra
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" bridges: "+format+"\n", a...)
}

func run(n, vms, tiers, changes int, jsonOut, cpuprofile, heapprofile string, skipSwitch, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 40*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "vpcflow-bench-bridges-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	ks, err := kinds()
	if err != nil {
		return err
	}
	b := &bench{ctx: ctx, dir: dir, dpidBr: map[string]int{}}
	b.res.Bridges, b.res.VMsPerHost, b.res.Tiers, b.res.VSwitchds = n, vms, tiers, vswitchds
	if b.bin, err = ovsbench.BuildTools(dir); err != nil {
		return err
	}
	spec := gen.Spec{Hosts: n, VMsPerHost: vms, Tiers: tiers}
	if b.raw, err = gen.Build(spec); err != nil {
		return err
	}
	if has(ks, "acl-rule") {
		gen.AddPolicy(b.raw)
		b.res.Policy = true
	}
	b.bpPath = filepath.Join(dir, "blueprint.yaml")
	if err := b.writeBlueprint(); err != nil {
		return err
	}
	b.spareAt = make([]int, n)
	sw, err := ovsbench.Start(ctx, fmt.Sprintf("vfbm%d", os.Getpid()%100000), filepath.Join(dir, "ovs"))
	if err != nil {
		return err
	}
	defer sw.Close()
	b.sw = sw
	b.shards = []*ovsbench.Switch{sw}
	for k := 1; k < vswitchds; k++ {
		sh, err := sw.StartShard(ctx, filepath.Join(dir, fmt.Sprintf("ovs%d", k)))
		if err != nil {
			return err
		}
		defer sh.Close()
		b.shards = append(b.shards, sh)
	}
	var specs []ovsbench.Bridge
	for i := range b.bp.Hosts {
		h := &b.bp.Hosts[i]
		br := ovsbench.Bridge{Name: fmt.Sprintf("b%d", i), DPID: h.DPID, Ports: []string{h.Uplink}}
		for k := 0; k < vms; k++ {
			br.Ports = append(br.Ports, gen.VMPort(i, k))
		}
		for k := 0; k < spares; k++ {
			br.Ports = append(br.Ports, fmt.Sprintf("h%ds%d", i, k))
		}
		if i == 0 {
			br.TunnelPort, br.TunnelIP = flows.TunnelPortVXLAN, h.TunnelIP
		}
		specs = append(specs, br)
		b.brs = append(b.brs, br.Name)
		b.dpidBr[fmt.Sprintf("%016x", h.DPID)] = i
	}
	t0 := time.Now()
	for k, sh := range b.shards {
		var mine []ovsbench.Bridge
		for i := k; i < len(specs); i += len(b.shards) {
			mine = append(mine, specs[i])
		}
		if err := sh.AddBridges(ctx, mine, 20); err != nil {
			return err
		}
	}
	logf("%d bridges with %d ports each created in %s", n, len(specs[1].Ports), time.Since(t0).Round(time.Millisecond))

	// Switch side alone: the same flows (compiled, bound to each bridge's
	// ports as the controller binds them), one bundle per bridge, sequential.
	files := make([]string, n)
	total := 0
	for i := range b.bp.Hosts {
		fs, err := flows.Compile(b.bp, b.bp.Hosts[i].Name)
		if err != nil {
			return err
		}
		pm := flows.PortMap{}
		for j, p := range specs[i].Ports {
			pm[p] = uint32(j + 1)
		}
		if specs[i].TunnelPort != "" {
			pm[specs[i].TunnelPort] = 9999
		}
		bound, _ := flows.Bind(fs, pm)
		b.ports = append(b.ports, pm)
		total += len(bound)
		if i == 0 {
			b.res.FlowsPerBridge = len(bound)
		}
		files[i] = filepath.Join(dir, fmt.Sprintf("b%d.flows", i))
		if err := os.WriteFile(files[i], []byte(flows.Render(bound, false)), 0o644); err != nil {
			return err
		}
	}
	b.res.FlowsTotal = total
	if !skipSwitch {
		var sum time.Duration
		for i, br := range b.brs {
			d, err := b.shardOf(i).TimeOfctlBundle(ctx, br, files[i])
			if err != nil {
				return err
			}
			sum += d
		}
		b.res.SwitchSideMs = ovsbench.Ms(sum)
		got := 0
		for i, br := range b.brs {
			c, err := b.shardOf(i).FlowCount(ctx, br)
			if err != nil {
				return err
			}
			got += c
			if _, err := b.shardOf(i).Ofctl(ctx, "del-flows", br); err != nil {
				return err
			}
		}
		if got != total {
			return fmt.Errorf("ovs-ofctl installed %d flows, want %d", got, total)
		}
		logf("switch side alone: %d flows on %d bridges in %.0f ms (sum of per-bridge bundles)", total, n, b.res.SwitchSideMs)
	}
	for _, f := range files {
		_ = os.Remove(f)
	}

	// Initial convergence.
	b.logPath = filepath.Join(dir, "ctl.log")
	var extra []string
	if cpuprofile != "" {
		extra = append(extra, "-cpuprofile", cpuprofile)
	}
	if b.ctl, err = sw.StartCtl(b.bin, b.bpPath, 6653, b.logPath, ctlArgs(extra...)...); err != nil {
		return err
	}
	defer func() { b.ctl.Stop() }()
	rss0, _ := ovsbench.ProcMemKB(b.ctl.Pid)
	b.res.CtlBaseRSSKiB = rss0
	cpu0 := b.ctl.CPUSeconds()
	b.tail = ovsbench.NewLogTail(b.logPath)
	t0 = time.Now()
	if err := b.setControllers(ctx, "tcp:127.0.0.1:6653", 50); err != nil {
		return err
	}
	gdone := make(chan struct{})
	go func() { // goroutine high-water mark while converging
		for {
			select {
			case <-gdone:
				return
			case <-time.After(100 * time.Millisecond):
				if g := b.ctl.Goroutines(); g > b.res.Goroutines {
					b.res.Goroutines = g
				}
			}
		}
	}()
	last, err := b.waitAllConverged(0, 10*time.Minute)
	close(gdone)
	if err != nil {
		return err
	}
	b.res.ConvergeMs = ovsbench.Ms(last.Sub(t0))
	b.res.CtlCPUSeconds = b.ctl.CPUSeconds() - cpu0
	_, b.res.CtlHWMKiB = ovsbench.ProcMemKB(b.ctl.Pid)
	b.res.BytesPerFlow = float64(b.res.CtlHWMKiB-rss0) * 1024 / float64(total)
	if b.res.SwitchSideMs > 0 {
		b.res.Ratio = b.res.ConvergeMs / b.res.SwitchSideMs
	}
	for _, sh := range b.shards {
		_, hwm := ovsbench.ProcMemKB(sh.VSwitchdPid())
		b.res.VSwitchdHWMKiB += hwm
	}
	logf("controller: all %d bridges converged in %.0f ms (ratio %.2f), CPU %.2f s, RSS base %d KiB peak %d KiB (%.0f B/flow), goroutines <= %d",
		n, b.res.ConvergeMs, b.res.Ratio, b.res.CtlCPUSeconds, rss0, b.res.CtlHWMKiB, b.res.BytesPerFlow, b.res.Goroutines)
	if heapprofile != "" {
		if err := b.ctl.SaveHeap(heapprofile); err != nil {
			logf("heap profile: %v", err)
		}
	}

	// Incremental changes.
	waitProf := func() error { return nil }
	if changeProfile != "" {
		waitProf = b.ctl.StartCPUProfile(changeProfile, time.Duration(changes)*9*time.Second)
	}
	b.res.Load[0] = loadavg()
	for _, k := range ks {
		for r := 0; r < changes; r++ {
			if err := b.change(b.res.of(k), k, r); err != nil {
				return err
			}
		}
	}
	b.res.Load[1] = loadavg()
	if err := waitProf(); err != nil {
		return fmt.Errorf("change profile: %w", err)
	}
	for _, c := range []*change{&b.res.AddVM, &b.res.MoveVM, &b.res.ACLRule} {
		c.P50Ms, c.P99Ms = ovsbench.Percentile(c.LatenciesMs, 50), ovsbench.Percentile(c.LatenciesMs, 99)
		c.MaxMs = ovsbench.Percentile(c.LatenciesMs, 100)
		c.WriteP50Ms, c.WriteP99Ms = ovsbench.Percentile(c.WriteLatenciesMs, 50), ovsbench.Percentile(c.WriteLatenciesMs, 99)
	}

	if !storms {
		b.print()
		return ovsbench.WriteJSON(jsonOut, b.res)
	}
	// Reconnect storm 1: controller restart.
	b.ctl.Stop()
	t0 = time.Now()
	if b.ctl, err = sw.StartCtl(b.bin, b.bpPath, 6653, b.logPath, ctlArgs()...); err != nil {
		return err
	}
	b.tail = ovsbench.NewLogTail(b.logPath)
	if err := b.waitStatus(func(st *controller.Status) bool { return allConverged(st, b.bp.Revision, 1) }, 5*time.Minute); err != nil {
		return err
	}
	b.res.RestartMs = ovsbench.Ms(time.Since(t0))
	st, err := b.ctl.Status()
	if err != nil {
		return err
	}
	b.res.RestartFlowMods = sumMods(st)
	logf("controller restart: all converged %.0f ms after start, %d flow-mods", b.res.RestartMs, b.res.RestartFlowMods)

	// Reconnect storm 1b: every bridge's controller target pointed at an
	// address nobody listens on, then back. OVS keeps the tables (the bridge
	// never loses its primary controller), so nothing needs sending.
	if b.res.MovedMs, b.res.MovedFlowMods, err = b.flapTargets(ctx, "tcp:127.0.0.1:6600"); err != nil {
		return err
	}
	logf("targets moved away and back: all converged in %.0f ms, %d flow-mods", b.res.MovedMs, b.res.MovedFlowMods)

	// Reconnect storm 2: controller targets removed and restored (OVS
	// flushes a bridge's flows when its last controller goes).
	if b.res.RetargetMs, b.res.RetargetFlowMods, err = b.flapTargets(ctx, ""); err != nil {
		return err
	}
	logf("targets removed+restored: all converged in %.0f ms, %d flow-mods", b.res.RetargetMs, b.res.RetargetFlowMods)

	// ovs-vswitchd restart: tables come back empty.
	for _, sh := range b.shards {
		sh.StopVSwitchd()
	}
	t0 = time.Now()
	for _, sh := range b.shards {
		if err := sh.StartVSwitchd(ctx); err != nil {
			return err
		}
	}
	if err := b.waitStatus(func(st *controller.Status) bool {
		if !allConverged(st, b.bp.Revision, 1) {
			return false
		}
		for _, br := range st.Bridges {
			if br.ConnectedSince.Before(t0) {
				return false
			}
		}
		return true
	}, 10*time.Minute); err != nil {
		return err
	}
	b.res.OVSRestartMs = ovsbench.Ms(time.Since(t0))
	st, _ = b.ctl.Status()
	b.res.OVSRestartMods = sumMods(st)
	logf("ovs-vswitchd restart: all converged %.0f ms after start, %d flow-mods", b.res.OVSRestartMs, b.res.OVSRestartMods)

	b.print()
	return ovsbench.WriteJSON(jsonOut, b.res)
}

var phaseNames = [3]string{"took_diff", "took_gather", "took_switch"}

func (r *result) of(kind string) *change {
	switch kind {
	case "add":
		return &r.AddVM
	case "move":
		return &r.MoveVM
	}
	return &r.ACLRule
}

func (b *bench) writeBlueprint() error {
	bp, y, err := gen.Parse(b.raw)
	if err != nil {
		return err
	}
	return b.writeYAML(bp, y)
}

// writeYAML writes the blueprint file atomically (bp is y parsed).
func (b *bench) writeYAML(bp *flows.Blueprint, y []byte) error {
	tmp := b.bpPath + ".tmp"
	if err := os.WriteFile(tmp, y, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, b.bpPath); err != nil {
		return err
	}
	b.bp = bp
	return nil
}

func (b *bench) shardOf(i int) *ovsbench.Switch { return b.shards[i%len(b.shards)] }

// setControllers sets every bridge's controller target ("" removes it).
func (b *bench) setControllers(ctx context.Context, target string, batch int) error {
	for k, sh := range b.shards {
		var mine []string
		for i := k; i < len(b.brs); i += len(b.shards) {
			mine = append(mine, b.brs[i])
		}
		if err := sh.SetControllers(ctx, mine, target, batch); err != nil {
			return err
		}
	}
	return nil
}

// switchCPU is the main (OpenFlow) threads' CPU seconds of every vswitchd.
func (b *bench) switchCPU() float64 {
	t := 0.0
	for _, sh := range b.shards {
		t += ovsbench.MainThreadCPU(sh.VSwitchdPid())
	}
	return t
}

// flapTargets sets every bridge's controller target to away ("" removes
// it), waits until no bridge is connected, restores the target and returns
// the time until all converged again and the flow-mods the new connections
// sent (their status counts from 0).
func (b *bench) flapTargets(ctx context.Context, away string) (float64, uint64, error) {
	if err := b.setControllers(ctx, away, 100); err != nil {
		return 0, 0, err
	}
	if err := b.waitStatus(func(st *controller.Status) bool {
		for _, br := range st.Bridges {
			if br.Connected {
				return false
			}
		}
		return true
	}, time.Minute); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	if err := b.setControllers(ctx, "tcp:127.0.0.1:6653", 50); err != nil {
		return 0, 0, err
	}
	if err := b.waitStatus(func(st *controller.Status) bool { return allConverged(st, b.bp.Revision, 1) }, 5*time.Minute); err != nil {
		return 0, 0, err
	}
	ms := ovsbench.Ms(time.Since(t0))
	st, err := b.ctl.Status()
	if err != nil {
		return 0, 0, err
	}
	return ms, sumMods(st), nil
}

func allConverged(st *controller.Status, rev uint32, minRecs uint64) bool {
	for _, br := range st.Bridges {
		if !br.Connected || !br.Converged || br.Revision != rev || br.Reconciles < minRecs {
			return false
		}
	}
	return len(st.Bridges) > 0
}

func sumMods(st *controller.Status) uint64 {
	var n uint64
	for _, br := range st.Bridges {
		n += br.FlowModsSent
	}
	return n
}

func reconciles(st *controller.Status) map[string]uint64 {
	m := map[string]uint64{}
	for _, br := range st.Bridges {
		m[br.DatapathID] = br.Reconciles
	}
	return m
}

func (b *bench) waitStatus(ok func(*controller.Status) bool, timeout time.Duration) error {
	return b.waitStatusEvery(20*time.Millisecond, ok, timeout)
}

func (b *bench) waitStatusEvery(every time.Duration, ok func(*controller.Status) bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := b.ctl.Status()
		if err == nil && ok(st) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("status condition not reached within %s (log %s)", timeout, b.logPath)
		}
		select {
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-time.After(every):
		}
	}
}

// waitAllConverged waits (on the log) until every bridge logged a converged
// reconcile and returns the time of the last one.
func (b *bench) waitAllConverged(_ int, timeout time.Duration) (time.Time, error) {
	seen := map[string]time.Time{}
	var last time.Time
	err := b.tail.Wait(b.ctx, timeout, "every bridge converged", func(l *ovsbench.LogLine) bool {
		if l.Msg == "reconciled" || l.Msg == "reconciled: in sync" {
			if conv, _ := l.Fields["converged"].(bool); conv {
				seen[l.Str("bridge")] = l.Time
				if l.Time.After(last) {
					last = l.Time
				}
			}
		}
		return len(seen) == len(b.brs)
	})
	return last, err
}

// affected compiles every host under both blueprints and returns the hosts
// whose flow set (key, actions, rule) differs.
// affected compiles every host under both blueprints: the hosts whose flows
// differ, with the flows each must add or rewrite.
func affected(old, cur *flows.Blueprint) (map[int][]flows.Flow, error) {
	out := map[int][]flows.Flow{}
	// One index per blueprint (flows.Compile builds one per call: 400
	// index builds per change, most of the bench's time between changes).
	ixo, ixc := flows.NewIndex(old), flows.NewIndex(cur)
	compile := func(ix *flows.Index, host string) ([]flows.Flow, error) {
		c, err := flows.CompileHost(ix, host, flows.CompileOptions{NoNotes: true})
		if err != nil {
			return nil, err
		}
		return c.Flows()
	}
	for i := range cur.Hosts {
		a, err := compile(ixo, cur.Hosts[i].Name)
		if err != nil {
			return nil, err
		}
		c, err := compile(ixc, cur.Hosts[i].Name)
		if err != nil {
			return nil, err
		}
		if d := controller.DiffFlows(c, a); !d.Empty() {
			out[i] = append(d.Missing, d.Modified...)
		}
	}
	return out, nil
}

// switchFloor times the switch side alone for a few affected bridges: the
// same added/rewritten flows, bound like the controller binds them, as one
// `ovs-ofctl --bundle add-flows` each (sequential; re-adding identical
// flows is the same work for the switch).
func (b *bench) switchFloor(res *change, aff map[int][]flows.Flow) error {
	n := 0
	for i, fs := range aff {
		if n == 5 {
			break
		}
		bound, _ := flows.Bind(fs, b.ports[i])
		if len(bound) == 0 {
			continue
		}
		file := filepath.Join(b.dir, "floor.flows")
		if err := os.WriteFile(file, []byte(flows.Render(bound, false)), 0o644); err != nil {
			return err
		}
		d, err := b.shardOf(i).TimeOfctlBundle(b.ctx, b.brs[i], file)
		if err != nil {
			return err
		}
		res.SwitchFloorMs = append(res.SwitchFloorMs, ovsbench.Ms(d))
		n++
	}
	return nil
}

func (b *bench) change(res *change, kind string, r int) error {
	old := b.bp
	host := (37 + 53*r) % len(b.raw.Hosts)
	target := (host + 1 + 71*r) % len(b.raw.Hosts)
	switch kind {
	case "add":
		// A new VM on host, in tier r, on one of its spare ports.
		t := &b.raw.VPCs[0].Tiers[r%len(b.raw.VPCs[0].Tiers)]
		port := fmt.Sprintf("h%ds%d", host, b.spareAt[host])
		b.spareAt[host]++
		n := len(t.VMs)
		t.VMs = append(t.VMs, flows.VM{Name: "new" + port, Host: gen.HostName(host), Port: port,
			MAC: fmt.Sprintf("52:54:ff:00:%02x:%02x", byte(r), byte(host)), IP: tierIP(t.CIDR, 3000+n)})
	case "move":
		// VM 0 of host moves to target, onto a spare port there.
		vm := findVM(b.raw, gen.VMPort(host, 0))
		if vm == nil {
			return fmt.Errorf("move: VM %s not found", gen.VMPort(host, 0))
		}
		vm.Host = gen.HostName(target)
		vm.Port = fmt.Sprintf("h%ds%d", target, b.spareAt[target])
		b.spareAt[target]++
	case "acl-rule":
		// One rule of one VPC's list now matches another tcp port: VPC r
		// (mod VPCs), rule 7r+1 (mod 100), port 20000+r.
		if err := gen.EditACLRule(b.raw, r%len(b.raw.VPCs), (7*r)%gen.PolicyRulesPerList+1, 20000+r); err != nil {
			return err
		}
	}
	b.raw.Revision++
	cur, y, err := gen.Parse(b.raw)
	if err != nil {
		return err
	}
	aff, err := affected(old, cur)
	if err != nil {
		return err
	}
	st0, err := b.ctl.Status()
	if err != nil {
		return err
	}
	mods0 := map[string]uint64{}
	recs0 := reconciles(st0)
	conn0 := map[string]time.Time{}
	for _, br := range st0.Bridges {
		mods0[br.DatapathID] = br.FlowModsSent
		conn0[br.DatapathID] = br.ConnectedSince
	}
	// A bridge that reconnected during the change starts its counters
	// from 0: count all it sent since (a resync of an unchanged table
	// sends 0), never a negative difference.
	since := func(br *controller.BridgeStatus) (sent, r0 uint64) {
		if !br.ConnectedSince.Equal(conn0[br.DatapathID]) {
			return br.FlowModsSent, 0
		}
		return br.FlowModsSent - mods0[br.DatapathID], recs0[br.DatapathID]
	}
	b.tail.Poll()
	b.tail.Lines = nil
	// The bench just compiled every host twice (affected); collect that
	// garbage now so its GC does not run inside the measured window.
	runtime.GC()
	swCPU0, ctlCPU0 := b.switchCPU(), b.ctl.CPUSeconds()
	tw := time.Now() // the YAML is ready: write it, then signal
	if err := b.writeYAML(cur, y); err != nil {
		return err
	}
	th := time.Now()
	if err := b.ctl.HUP(); err != nil {
		return err
	}
	// Wait until every affected bridge logged its reconcile of the new
	// revision, reading the log every 50 ms: the latencies come from the
	// lines' timestamps, and polling /status every 20 ms during the change
	// (as this bench did before) cost the controller and the bench CPU
	// inside the very window being measured. /status is read once the log
	// shows the change everywhere, to check every bridge is on it.
	rev := b.bp.Revision
	pending := map[string]bool{}
	for i := range aff {
		pending[fmt.Sprintf("%016x", b.bp.Hosts[i].DPID)] = true
	}
	gotLoad := false
	if statusPoll > 0 {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(statusPoll):
					_, _ = b.ctl.Status()
				}
			}
		}()
	}
	if err := b.tail.WaitEvery(b.ctx, 2*time.Minute, 50*time.Millisecond, "the affected bridges' reconciles", func(l *ovsbench.LogLine) bool {
		switch {
		case l.Time.Before(tw):
		case l.Msg == "blueprint loaded" && uint32(l.Num("revision")) == rev:
			gotLoad = true
		case l.Msg == "reconciled" && gotLoad:
			delete(pending, l.Str("bridge"))
		}
		return gotLoad && len(pending) == 0
	}); err != nil {
		return err
	}
	if err := b.waitStatusEvery(100*time.Millisecond, func(st *controller.Status) bool {
		for _, br := range st.Bridges {
			if _, r0 := since(&br); br.Revision != rev || !br.Converged || br.Reconciles <= r0 {
				return false
			}
		}
		return true
	}, 2*time.Minute); err != nil {
		return err
	}
	res.SwitchCPUMs = append(res.SwitchCPUMs, 1000*(b.switchCPU()-swCPU0))
	res.CtlCPUMs = append(res.CtlCPUMs, 1000*(b.ctl.CPUSeconds()-ctlCPU0))
	b.tail.Poll()
	var loaded time.Time
	applied := map[string]time.Time{}
	var phases [3][]float64
	var mods []float64
	for _, l := range b.tail.Lines {
		if l.Time.Before(tw) {
			continue
		}
		switch l.Msg {
		case "blueprint loaded":
			if uint32(l.Num("revision")) == rev && loaded.IsZero() {
				loaded = l.Time
			}
		case "reconciled":
			// The first one after the load: a later line of the same
			// bridge (a drift check that found and fixed something) is
			// not this change's.
			if _, seen := applied[l.Str("bridge")]; !loaded.IsZero() && !seen {
				applied[l.Str("bridge")] = l.Time
				for k, name := range phaseNames {
					if d, err := time.ParseDuration(l.Str(name)); err == nil {
						phases[k] = append(phases[k], ovsbench.Ms(d))
					}
				}
				mods = append(mods, l.Num("flow_mods"))
			}
		}
	}
	b.tail.Lines = nil
	if loaded.IsZero() {
		return fmt.Errorf("%s run %d: no 'blueprint loaded' line for revision %d", kind, r, rev)
	}
	st1, err := b.ctl.Status()
	if err != nil {
		return err
	}
	var lastApplied time.Time
	naff := 0
	n0 := len(res.LatenciesMs)
	for _, br := range st1.Bridges {
		i := b.dpidBr[br.DatapathID]
		sent, _ := since(&br)
		if !br.ConnectedSince.Equal(conn0[br.DatapathID]) {
			res.Reconnects++
		}
		if _, ok := aff[i]; ok {
			naff++
			at, ok := applied[br.DatapathID]
			if !ok || sent == 0 {
				res.WrongAffected++
				continue
			}
			res.LatenciesMs = append(res.LatenciesMs, ovsbench.Ms(at.Sub(loaded)))
			res.WriteLatenciesMs = append(res.WriteLatenciesMs, ovsbench.Ms(at.Sub(tw)))
			if at.After(lastApplied) {
				lastApplied = at
			}
		} else {
			res.UnaffectedBridges++
			res.UnaffectedModsSum += sent
			if _, ok := applied[br.DatapathID]; ok {
				res.WrongAffected++
			}
		}
	}
	if err := b.switchFloor(res, aff); err != nil {
		return err
	}
	res.Runs++
	res.AffectedPerRun = append(res.AffectedPerRun, naff)
	res.WriteToAppliedMs = append(res.WriteToAppliedMs, ovsbench.Ms(lastApplied.Sub(tw)))
	lat := append([]float64(nil), res.LatenciesMs[n0:]...)
	sort.Float64s(lat)
	res.PerChangeP50Ms = append(res.PerChangeP50Ms, ovsbench.Percentile(lat, 50))
	res.PerChangeMaxMs = append(res.PerChangeMaxMs, ovsbench.Percentile(lat, 100))
	res.LoadMs = append(res.LoadMs, ovsbench.Ms(loaded.Sub(tw)))
	res.FileWriteMs = append(res.FileWriteMs, ovsbench.Ms(th.Sub(tw)))
	res.HupLoadedMs = append(res.HupLoadedMs, ovsbench.Ms(loaded.Sub(th)))
	var ph [3]float64
	for k := range phases {
		ph[k] = ovsbench.Median(phases[k])
	}
	res.PhaseMedianMs = append(res.PhaseMedianMs, ph)
	res.FlowModsMedian = append(res.FlowModsMedian, ovsbench.Median(mods))
	logf("%s run %d: revision %d, %d affected bridges (flow-mods median %.0f max %.0f), write->loaded %.1f ms (file write %.1f, HUP->loaded %.1f), load->applied p50 %.1f ms max %.1f ms (median diff %.0f gather %.0f switch %.0f ms), write->all applied %.1f ms, unaffected flow-mods so far %d, CPU vswitchd main %.0f ms controller %.0f ms, loadavg %s",
		kind, r+1, rev, naff, ovsbench.Median(mods), ovsbench.Percentile(mods, 100), ovsbench.Ms(loaded.Sub(tw)), ovsbench.Ms(th.Sub(tw)), ovsbench.Ms(loaded.Sub(th)), ovsbench.Percentile(lat, 50), ovsbench.Percentile(lat, 100), ph[0], ph[1], ph[2], ovsbench.Ms(lastApplied.Sub(tw)), res.UnaffectedModsSum,
		res.SwitchCPUMs[len(res.SwitchCPUMs)-1], res.CtlCPUMs[len(res.CtlCPUMs)-1], loadavg())
	return nil
}

func findVM(bp *flows.Blueprint, name string) *flows.VM {
	for pi := range bp.VPCs {
		for ti := range bp.VPCs[pi].Tiers {
			for mi := range bp.VPCs[pi].Tiers[ti].VMs {
				if m := &bp.VPCs[pi].Tiers[ti].VMs[mi]; m.Name == name {
					return m
				}
			}
		}
	}
	return nil
}

func tierIP(cidr string, k int) string {
	var a, b, c, d, bits int
	fmt.Sscanf(strings.Replace(cidr, "/", ".", 1), "%d.%d.%d.%d.%d", &a, &b, &c, &d, &bits)
	v := a<<24 | b<<16 | c<<8 | d + k
	return fmt.Sprintf("%d.%d.%d.%d", v>>24&255, v>>16&255, v>>8&255, v&255)
}

func (b *bench) print() {
	r := &b.res
	fmt.Printf("\nMany bridges: %d bridges in %d ovs-vswitchd, %d VMs/host, %d tiers, %d flows/bridge (h0), %d flows total, policy blueprint %v, loadavg %s -> %s\n",
		r.Bridges, r.VSwitchds, r.VMsPerHost, r.Tiers, r.FlowsPerBridge, r.FlowsTotal, r.Policy, r.Load[0], r.Load[1])
	fmt.Printf("%-44s %12s\n", "metric", "value")
	row := func(k string, f string, v ...any) { fmt.Printf("%-44s %12s\n", k, fmt.Sprintf(f, v...)) }
	row("switch side alone (sum of ofctl bundles) ms", "%.0f", r.SwitchSideMs)
	row("controller: all converged ms", "%.0f", r.ConvergeMs)
	row("ratio (target <= 2)", "%.2f", r.Ratio)
	row("controller CPU s", "%.2f", r.CtlCPUSeconds)
	row("controller RSS base / peak MiB", "%d / %d", r.CtlBaseRSSKiB/1024, r.CtlHWMKiB/1024)
	row("controller B/flow above base (target<=1024)", "%.0f", r.BytesPerFlow)
	row("controller goroutines (max)", "%d", r.Goroutines)
	row("ovs-vswitchd peak RSS MiB", "%d", r.VSwitchdHWMKiB/1024)
	for _, c := range []struct {
		n string
		c *change
	}{{"add VM", &r.AddVM}, {"move VM", &r.MoveVM}, {"ACL rule", &r.ACLRule}} {
		if c.c.Runs == 0 {
			continue
		}
		row(c.n+": runs / affected per run", "%d / %v", c.c.Runs, c.c.AffectedPerRun)
		row(c.n+": load->applied p50 / p99 ms", "%.1f / %.1f", c.c.P50Ms, c.c.P99Ms)
		row(c.n+": write->applied (per bridge) p50 / p99 ms", "%.1f / %.1f", c.c.WriteP50Ms, c.c.WriteP99Ms)
		row(c.n+": write->loaded median ms", "%.1f", ovsbench.Median(c.c.LoadMs))
		row(c.n+": write->all applied median ms", "%.1f", ovsbench.Median(c.c.WriteToAppliedMs))
		row(c.n+": switch side alone, one bridge's delta (ovs-ofctl --bundle) p50 / max ms", "%.1f / %.1f",
			ovsbench.Percentile(c.c.SwitchFloorMs, 50), ovsbench.Percentile(c.c.SwitchFloorMs, 100))
		row(c.n+": CPU ms per change: vswitchd main / controller", "%.0f / %.0f", ovsbench.Median(c.c.SwitchCPUMs), ovsbench.Median(c.c.CtlCPUMs))
		row(c.n+": unaffected flow-mods (bridges checked)", "%d (%d)", c.c.UnaffectedModsSum, c.c.UnaffectedBridges)
		row(c.n+": affected-set mismatches", "%d", c.c.WrongAffected)
		row(c.n+": bridges reconnected during a change", "%d", c.c.Reconnects)
	}
	row("controller restart: converged ms / flow-mods", "%.0f / %d", r.RestartMs, r.RestartFlowMods)
	row("targets moved away and back: ms / flow-mods", "%.0f / %d", r.MovedMs, r.MovedFlowMods)
	row("targets removed+restored: ms / flow-mods", "%.0f / %d", r.RetargetMs, r.RetargetFlowMods)
	row("ovs-vswitchd restart: ms / flow-mods", "%.0f / %d", r.OVSRestartMs, r.OVSRestartMods)
}
