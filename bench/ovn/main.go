// Command ovn measures vpcflow and OVN side by side on the same namespace
// lab (examples/lab): the same hypervisors, underlay, VMs and policy.
//
//	vpcflow  the blueprint's hosts only are enforced (management flows);
//	         then the full blueprint is written and the controller reloads
//	OVN      Debian's ovn-central (NB + SB ovsdb-server, ovn-northd) in the
//	         management namespace, ovn-controller on every hypervisor with
//	         br-int (userspace datapath, Geneve over cloudbr0); the VM ports
//	         are bound by iface-id; then the same policy is written to the NB
//	         database in one ovn-nbctl transaction: a logical switch per tier,
//	         a logical port per VM with addresses and port security, and on
//	         every switch ACLs dropping guest traffic to the management CIDRs
//	         and to the host service ports outside the tier
//
// For each it reports the time from "policy written" to the first working
// cross-host same-tier ping and to "all flows installed" (vpcflow: every
// bridge converged at the new revision, barrier-confirmed and read back;
// OVN: `ovn-nbctl --wait=hv` returns, i.e. every chassis has caught up),
// the flows per host, and checks that a guest cannot reach the management
// network under either. Medians over -runs runs; needs root, Open vSwitch
// and ovn-central + ovn-host (not part of CI).
//
//	go run ./bench/ovn -runs 5 -json /tmp/ovn.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

type sample struct {
	PingMs   float64        `json:"ping_ms"`
	FlowsMs  float64        `json:"all_flows_ms"`
	Flows    map[string]int `json:"flows_per_host"`
	MgmtSafe bool           `json:"guest_to_management_blocked"`
}

type result struct {
	Blueprint string   `json:"blueprint"`
	Hosts     int      `json:"hosts"`
	VMs       int      `json:"vms"`
	Tiers     int      `json:"tiers"`
	Runs      int      `json:"runs"`
	VPCFlow   []sample `json:"vpcflow"`
	OVN       []sample `json:"ovn"`
}

func main() {
	runs := flag.Int("runs", 5, "runs of each system")
	bpPath := flag.String("blueprint", "examples/demo/blueprint.yaml", "the topology and policy")
	jsonOut := flag.String("json", "", "write the samples as JSON here")
	flag.BoolVar(&keep, "keep", false, "keep the work directory (logs)")
	flag.Parse()
	if err := run(*runs, *bpPath, *jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ovn:", err)
		os.Exit(1)
	}
}

var keep bool

func logf(format string, a ...any) {
	fmt.Printf("%s ovn-bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

func run(runs int, bpPath, jsonOut string) error {
	for _, b := range []string{"ovn-controller", "ovn-northd", "ovn-nbctl", "ovn-sbctl", "ovsdb-server", "ovs-vswitchd"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found: apt-get install -y openvswitch-switch ovn-central ovn-host", b)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bp, err := flows.Load(bpPath)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "vpcflow-bench-ovn-")
	if err != nil {
		return err
	}
	if keep {
		logf("work directory %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin := filepath.Join(dir, "vpcflow")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/vpcflow").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/vpcflow: %v\n%s", err, out)
	}
	res := result{Blueprint: bpPath, Hosts: len(bp.Hosts), Runs: runs}
	for _, p := range bp.VPCs {
		for _, t := range p.Tiers {
			res.Tiers++
			res.VMs += len(t.VMs)
		}
	}
	for r := 0; r < runs; r++ {
		s, err := runVPCFlow(ctx, dir, bin, bp, r)
		if err != nil {
			return fmt.Errorf("vpcflow run %d: %w", r+1, err)
		}
		logf("vpcflow run %d: ping after %.0f ms, all flows after %.0f ms, flows %v, guest->mgmt blocked %v", r+1, s.PingMs, s.FlowsMs, s.Flows, s.MgmtSafe)
		res.VPCFlow = append(res.VPCFlow, s)
		s, err = runOVN(ctx, dir, bp, r)
		if err != nil {
			return fmt.Errorf("ovn run %d: %w", r+1, err)
		}
		logf("ovn     run %d: ping after %.0f ms, all flows after %.0f ms, flows %v, guest->mgmt blocked %v", r+1, s.PingMs, s.FlowsMs, s.Flows, s.MgmtSafe)
		res.OVN = append(res.OVN, s)
	}
	print(&res)
	if jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		return os.WriteFile(jsonOut, b, 0o644)
	}
	return nil
}

// pingPair is the first cross-host pair of VMs in one tier.
func pingPair(bp *flows.Blueprint) (from, to *flows.VM, err error) {
	for _, p := range bp.VPCs {
		for _, t := range p.Tiers {
			for i := range t.VMs {
				for j := range t.VMs {
					if t.VMs[i].Host != t.VMs[j].Host {
						return &t.VMs[i], &t.VMs[j], nil
					}
				}
			}
		}
	}
	return nil, nil, errors.New("the blueprint has no tier spanning two hosts")
}

// startPing starts a 10 ms ping from -> to (timestamps on) just before the
// policy is written; firstReply then finds the first echo reply's time.
func startPing(ctx context.Context, l *lab.Lab, from, to *flows.VM) (*lab.Proc, error) {
	if err := fastARP(ctx, l, from); err != nil {
		return nil, err
	}
	return l.StartPing(from.Name, to.IP, 10*time.Millisecond)
}

var replyLine = regexp.MustCompile(`^\[(\d+)\.(\d+)\] \d+ bytes from`)

// firstReply waits (polling ping's output, with ctx's deadline) for the
// first reply and returns its time after t0.
func firstReply(ctx context.Context, p *lab.Proc, t0 time.Time) (time.Duration, error) {
	for {
		for _, line := range strings.Split(p.Log(), "\n") {
			if m := replyLine.FindStringSubmatch(line); m != nil {
				sec, _ := strconv.ParseInt(m[1], 10, 64)
				frac := (m[2] + "000000000")[:9]
				ns, _ := strconv.ParseInt(frac, 10, 64)
				return time.Unix(sec, ns).Sub(t0), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no ping reply: %w\n%s", ctx.Err(), p.Log())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// fastARP makes the VM retry ARP every 20 ms instead of every second, so
// the ping time measures the switch, not the guest's ARP back-off (the same
// for both systems).
func fastARP(ctx context.Context, l *lab.Lab, vm *flows.VM) error {
	_, err := l.Exec(ctx, l.VMNS(vm.Name), "sysctl", "-q", "-w", "net.ipv4.neigh."+lab.VMIface+".retrans_time_ms=20")
	return err
}

// mgmtBlocked: the VM cannot ping the management address (3 tries).
func mgmtBlocked(ctx context.Context, l *lab.Lab, vm *flows.VM) bool {
	_, recv, _ := l.Ping(ctx, vm.Name, l.MgmtAddr(), 3, 100*time.Millisecond, 300*time.Millisecond)
	return recv == 0
}

func writeYAML(path string, bp *flows.Blueprint) error {
	b, err := yaml.Marshal(bp)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func runVPCFlow(ctx context.Context, dir, bin string, bp *flows.Blueprint, r int) (sample, error) {
	var s sample
	from, to, err := pingPair(bp)
	if err != nil {
		return s, err
	}
	// The same hosts without VPCs first: the policy is written later.
	hostsOnly := *bp
	hostsOnly.VPCs = nil
	hostsOnly.Revision = 1
	full := *bp
	full.Revision = 2
	path := filepath.Join(dir, fmt.Sprintf("vpcflow-%d.yaml", r))
	if err := writeYAML(path, &hostsOnly); err != nil {
		return s, err
	}
	l, err := lab.Up(ctx, lab.Options{Blueprint: bp, BlueprintPath: path, VPCFlowBin: bin, Watch: true})
	if err != nil {
		return s, err
	}
	defer l.Down()
	ctl, err := l.StartController(l.ControllerArgs()...)
	if err != nil {
		return s, err
	}
	if _, err := l.WaitConverged(ctx, time.Minute, 1); err != nil {
		return s, err
	}
	pp, err := startPing(ctx, l, from, to)
	if err != nil {
		return s, err
	}
	defer pp.Stop()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := writeYAML(path, &full); err != nil {
		return s, err
	}
	if err := syscall.Kill(ctl.Pid, syscall.SIGHUP); err != nil {
		return s, err
	}
	st, err := l.WaitConverged(wctx, time.Minute, 2)
	if err != nil {
		return s, err
	}
	// The status is polled every 100 ms: take the moment each bridge
	// finished (read back and verified) from the status itself.
	var last time.Time
	for _, b := range st.Bridges {
		if b.LastReconcile.After(last) {
			last = b.LastReconcile
		}
	}
	s.FlowsMs = ms(last.Sub(t0))
	ping, err := firstReply(wctx, pp, t0)
	if err != nil {
		return s, err
	}
	s.PingMs = ms(ping)
	s.Flows = map[string]int{}
	for i := range bp.Hosts {
		n, err := l.FlowCount(ctx, bp.Hosts[i].Name)
		if err != nil {
			return s, err
		}
		s.Flows[bp.Hosts[i].Name] = n
	}
	s.MgmtSafe = mgmtBlocked(ctx, l, from)
	return s, nil
}

// ovnCentral runs the NB and SB databases and ovn-northd in the management
// namespace.
type ovnCentral struct {
	dir  string
	nb   string // unix socket
	sb   string
	addr string
}

func startCentral(ctx context.Context, l *lab.Lab, dir string) (*ovnCentral, error) {
	c := &ovnCentral{dir: dir, nb: filepath.Join(dir, "nb.sock"), sb: filepath.Join(dir, "sb.sock"), addr: l.MgmtAddr()}
	ns := l.MgmtNS()
	env := []string{"env", "OVN_RUNDIR=" + dir, "OVS_RUNDIR=" + dir}
	for _, db := range []struct{ name, schema, sock, port string }{
		{"nb", "/usr/share/ovn/ovn-nb.ovsschema", c.nb, "6641"},
		{"sb", "/usr/share/ovn/ovn-sb.ovsschema", c.sb, "6642"},
	} {
		file := filepath.Join(dir, db.name+".db")
		if out, err := exec.CommandContext(ctx, "ovsdb-tool", "create", file, db.schema).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ovsdb-tool create %s: %v\n%s", file, err, out)
		}
		argv := append(append([]string{}, env...), "ovsdb-server", "--remote=punix:"+db.sock,
			"--remote=ptcp:"+db.port+":"+c.addr, "--unixctl="+filepath.Join(dir, db.name+".ctl"),
			"-vconsole:off", "--log-file="+filepath.Join(dir, db.name+".log"), file)
		if _, err := l.StartProcess(ns, "ovsdb-"+db.name, filepath.Join(dir, db.name+".out"), argv...); err != nil {
			return nil, err
		}
	}
	for _, sock := range []string{c.nb, c.sb} {
		if err := waitFile(ctx, sock); err != nil {
			return nil, err
		}
	}
	argv := append(append([]string{}, env...), "ovn-northd", "--ovnnb-db=unix:"+c.nb, "--ovnsb-db=unix:"+c.sb,
		"--unixctl="+filepath.Join(dir, "northd.ctl"), "-vconsole:off", "--log-file="+filepath.Join(dir, "northd.log"))
	if _, err := l.StartProcess(ns, "ovn-northd", filepath.Join(dir, "northd.out"), argv...); err != nil {
		return nil, err
	}
	return c, nil
}

func waitFile(ctx context.Context, p string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear", p)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *ovnCentral) nbctl(ctx context.Context, l *lab.Lab, args ...string) (string, error) {
	return l.Exec(ctx, l.MgmtNS(), append([]string{"ovn-nbctl", "--db=unix:" + c.nb, "--timeout=60"}, args...)...)
}

func (c *ovnCentral) sbctl(ctx context.Context, l *lab.Lab, args ...string) (string, error) {
	return l.Exec(ctx, l.MgmtNS(), append([]string{"ovn-sbctl", "--db=unix:" + c.sb, "--timeout=10"}, args...)...)
}

// ovnPolicy is the blueprint as one ovn-nbctl transaction.
func ovnPolicy(bp *flows.Blueprint) []string {
	var a []string
	cmd := func(args ...string) { a = append(append(a, "--"), args...) }
	var ports []string
	for _, p := range bp.Management.HostPorts {
		ports = append(ports, fmt.Sprint(p))
	}
	for _, p := range bp.VPCs {
		for _, t := range p.Tiers {
			ls := p.Name + "-" + t.Name
			cmd("ls-add", ls)
			cmd("acl-add", ls, "from-lport", "1002", fmt.Sprintf("ip4.dst == {%s}", strings.Join(bp.Management.CIDRs, ", ")), "drop")
			if len(ports) > 0 {
				set := strings.Join(ports, ", ")
				cmd("acl-add", ls, "from-lport", "1001",
					fmt.Sprintf("ip4 && ip4.dst != %s && (tcp.dst == {%s} || udp.dst == {%s})", t.CIDR, set, set), "drop")
			}
			for _, v := range t.VMs {
				addr := v.MAC + " " + v.IP
				cmd("lsp-add", ls, v.Name)
				cmd("lsp-set-addresses", v.Name, addr)
				cmd("lsp-set-port-security", v.Name, addr)
			}
		}
	}
	return a
}

func runOVN(ctx context.Context, dir string, bp *flows.Blueprint, r int) (sample, error) {
	var s sample
	from, to, err := pingPair(bp)
	if err != nil {
		return s, err
	}
	cdir := filepath.Join(dir, fmt.Sprintf("ovn-%d", r))
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return s, err
	}
	var central *ovnCentral
	var once sync.Once
	var centralErr error
	provision := func(ctx context.Context, l *lab.Lab, h *flows.Host) error {
		once.Do(func() { central, centralErr = startCentral(ctx, l, cdir) })
		if centralErr != nil {
			return centralErr
		}
		// cloudbr0 stays a plain NORMAL bridge holding the host IP; the
		// Geneve tunnels live on br-int and leave through cloudbr0.
		if _, err := l.OVS(ctx, h.Name, "ovs-vsctl", "add-br", "br-int", "--", "set", "bridge", "br-int",
			"datapath_type=netdev", "fail_mode=secure", "other-config:disable-in-band=true"); err != nil {
			return err
		}
		if _, err := l.OVS(ctx, h.Name, "ovs-vsctl", "set", "open", ".", "external_ids:system-id="+h.Name,
			"external_ids:ovn-remote=tcp:"+central.addr+":6642", "external_ids:ovn-encap-type=geneve",
			"external_ids:ovn-encap-ip="+h.TunnelIP, "external_ids:ovn-bridge-datapath-type=netdev"); err != nil {
			return err
		}
		hd := filepath.Join(cdir, h.Name)
		if err := os.MkdirAll(hd, 0o755); err != nil {
			return err
		}
		env := append([]string{"env"}, l.OVSEnv(h.Name)...)
		argv := append(env, "OVN_RUNDIR="+hd, "ovn-controller", l.DBSock(h.Name), "-vconsole:off",
			"--log-file="+filepath.Join(hd, "ovn-controller.log"))
		_, err := l.StartProcess(l.HostNS(h.Name), h.Name+"-ovn-controller", filepath.Join(hd, "ovn-controller.out"), argv...)
		return err
	}
	l, err := lab.Up(ctx, lab.Options{Blueprint: bp, Provision: provision, Dir: filepath.Join(cdir, "lab"), KeepDir: keep, VMBridge: "br-int",
		VMPortArgs: func(vm *flows.VM) []string {
			return []string{"--", "set", "interface", vm.Port, "external_ids:iface-id=" + vm.Name}
		}})
	if err != nil {
		return s, err
	}
	defer l.Down()
	// Every chassis registered before the policy is written.
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := central.sbctl(ctx, l, "--bare", "--columns=name", "list", "Chassis")
		if err == nil && len(strings.Fields(out)) == len(bp.Hosts) {
			break
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("chassis not registered: %q %v", out, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the SB database with a deadline
	}
	pp, err := startPing(ctx, l, from, to)
	if err != nil {
		return s, err
	}
	defer pp.Stop()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t0 := time.Now()
	if out, err := central.nbctl(wctx, l, append([]string{"--wait=hv"}, ovnPolicy(bp)...)...); err != nil {
		return s, fmt.Errorf("ovn-nbctl: %v\n%s", err, out)
	}
	s.FlowsMs = ms(time.Since(t0))
	ping, err := firstReply(wctx, pp, t0)
	if err != nil {
		return s, err
	}
	s.PingMs = ms(ping)
	s.Flows = map[string]int{}
	for i := range bp.Hosts {
		n := 0
		for _, br := range []string{"br-int", lab.Bridge} {
			out, err := l.OVS(ctx, bp.Hosts[i].Name, "ovs-ofctl", "dump-aggregate", br)
			if err != nil {
				return s, err
			}
			var c int
			if i := strings.Index(out, "flow_count="); i >= 0 {
				fmt.Sscanf(out[i+len("flow_count="):], "%d", &c)
			}
			n += c
		}
		s.Flows[bp.Hosts[i].Name] = n
	}
	s.MgmtSafe = mgmtBlocked(ctx, l, from)
	return s, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func print(r *result) {
	col := func(ss []sample, f func(sample) float64) float64 {
		var xs []float64
		for _, s := range ss {
			xs = append(xs, f(s))
		}
		return median(xs)
	}
	ping := func(s sample) float64 { return s.PingMs }
	all := func(s sample) float64 { return s.FlowsMs }
	fmt.Printf("\n%d hosts, %d tiers, %d VMs (%s); medians of %d runs\n\n", r.Hosts, r.Tiers, r.VMs, r.Blueprint, r.Runs)
	fmt.Printf("%-34s %12s %12s %8s\n", "metric", "vpcflow", "OVN", "OVN/vpcflow")
	vp, op := col(r.VPCFlow, ping), col(r.OVN, ping)
	va, oa := col(r.VPCFlow, all), col(r.OVN, all)
	fmt.Printf("%-34s %12.0f %12.0f %8.2f\n", "policy written -> ping works (ms)", vp, op, op/vp)
	fmt.Printf("%-34s %12.0f %12.0f %8.2f\n", "policy written -> all flows (ms)", va, oa, oa/va)
	hosts := make([]string, 0, len(r.VPCFlow[0].Flows))
	for h := range r.VPCFlow[0].Flows {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		v := col(r.VPCFlow, func(s sample) float64 { return float64(s.Flows[h]) })
		o := col(r.OVN, func(s sample) float64 { return float64(s.Flows[h]) })
		fmt.Printf("%-34s %12.0f %12.0f %8.2f\n", "flows on "+h, v, o, o/v)
	}
	safe := func(ss []sample) bool {
		for _, s := range ss {
			if !s.MgmtSafe {
				return false
			}
		}
		return true
	}
	fmt.Printf("%-34s %12v %12v\n", "guest -> management blocked", safe(r.VPCFlow), safe(r.OVN))
}
