// Package e2e proves vpcflow on real Open vSwitch: three userspace
// ovs-vswitchd "hypervisors" in network namespaces, VMs as namespaces, a
// management node running the controller, and a rogue underlay node. Real
// packets decide every assertion. Needs root and Open vSwitch; set
// VPCFLOW_E2E=0 to skip explicitly (CI never does).
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

var vpcflowBin string

func TestMain(m *testing.M) {
	if os.Getenv("VPCFLOW_E2E") == "0" {
		fmt.Println("e2e: VPCFLOW_E2E=0: skipping the end-to-end suite")
		os.Exit(m.Run())
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: FAIL: the end-to-end suite needs Linux and root (set VPCFLOW_E2E=0 to skip it explicitly)")
		os.Exit(1)
	}
	for _, tool := range []string{"ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovs-ofctl", "tcpdump", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: FAIL: %s not found: install openvswitch-switch iproute2 iputils-ping tcpdump ethtool python3-scapy (or VPCFLOW_E2E=0)\n", tool)
			os.Exit(1)
		}
	}
	vpcflowBin = os.Getenv("VPCFLOW_BIN")
	dir := ""
	if vpcflowBin == "" {
		var err error
		dir, err = os.MkdirTemp("", "vpcflow-e2e-bin-")
		if err != nil {
			panic(err)
		}
		vpcflowBin = filepath.Join(dir, "vpcflow")
		out, err := exec.Command("go", "build", "-o", vpcflowBin, "github.com/vpcflow/vpcflow/cmd/vpcflow").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building vpcflow: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func skipIfDisabled(t *testing.T) {
	t.Helper()
	if os.Getenv("VPCFLOW_E2E") == "0" {
		t.Skip("VPCFLOW_E2E=0")
	}
}

// env is one running lab with its controller.
type env struct {
	t      *testing.T
	lab    *lab.Lab
	bp     *flows.Blueprint
	bpPath string
	ctl    *lab.Proc
	ctx    context.Context
}

// demoBlueprint returns the demo blueprint text, with optional edits.
func demoBlueprint(t *testing.T, edit func(string) string) string {
	b, err := os.ReadFile("../demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if edit != nil {
		s = edit(s)
	}
	return s
}

// startEnv builds a lab from blueprint text and starts the controller, then
// waits until every bridge is converged.
func startEnv(t *testing.T, blueprint string, ctlArgs ...string) *env {
	t.Helper()
	e := startEnvNoController(t, blueprint)
	e.startController(ctlArgs...)
	start := time.Now()
	if _, err := e.lab.WaitConverged(e.ctx, 60*time.Second, 0); err != nil {
		t.Fatalf("controller did not converge: %v", err)
	}
	t.Logf("all bridges converged %s after controller start", time.Since(start).Round(time.Millisecond))
	return e
}

// startEnvNoController builds a lab (hosts provisioned by `vpcflow host
// apply`, host watchers running) without starting a controller.
func startEnvNoController(t *testing.T, blueprint string) *env {
	t.Helper()
	return startEnvWith(t, blueprint, filepath.Join(t.TempDir(), "lab"), nil)
}

// startEnvWith builds a lab in dir; provision, when set, replaces `vpcflow
// host apply` as the lab's provisioning step.
func startEnvWith(t *testing.T, blueprint, dir string, provision func(l *lab.Lab, host string) error) *env {
	t.Helper()
	return startEnvTopology(t, blueprint, "", dir, provision)
}

// startEnvTopology is startEnvWith where the lab's topology (hosts, links,
// VMs) comes from topology when it is not empty, while provisioning, the
// watchers and the controller use the blueprint file (blueprint).
func startEnvTopology(t *testing.T, blueprint, topology, dir string, provision func(l *lab.Lab, host string) error) *env {
	t.Helper()
	return startEnvOpts(t, blueprint, topology, dir, provision, nil)
}

// startEnvOpts is startEnvTopology with edit, when set, applied to the
// lab's options before it is built.
func startEnvOpts(t *testing.T, blueprint, topology, dir string, provision func(l *lab.Lab, host string) error, edit func(*lab.Options)) *env {
	t.Helper()
	skipIfDisabled(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	bpPath := filepath.Join(filepath.Dir(dir), "blueprint.yaml")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bpPath, []byte(blueprint), 0o644); err != nil {
		t.Fatal(err)
	}
	bp, err := flows.Load(bpPath)
	if err != nil {
		t.Fatalf("blueprint: %v", err)
	}
	opts := lab.Options{Blueprint: bp, BlueprintPath: bpPath, VPCFlowBin: vpcflowBin, Watch: true, Dir: dir, KeepDir: true}
	if topology != "" {
		if opts.Blueprint, err = flows.Parse("topology.yaml", []byte(topology)); err != nil {
			t.Fatalf("topology blueprint: %v", err)
		}
	}
	if provision != nil {
		opts.Provision = func(ctx context.Context, l *lab.Lab, h *flows.Host) error { return provision(l, h.Name) }
	}
	if edit != nil {
		edit(&opts)
	}
	upCtx, upCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer upCancel()
	l, err := lab.Up(upCtx, opts)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	e := &env{t: t, lab: l, bp: bp, bpPath: bpPath, ctx: ctx}
	t.Cleanup(func() {
		if t.Failed() {
			for i := 0; i < l.Replicas(); i++ {
				name := "controller.log"
				if i > 0 {
					name = fmt.Sprintf("controller-%d.log", i+1)
				}
				t.Logf("%s (tail):\n%s", name, tailLines(readFile(filepath.Join(l.Dir(), name)), 40))
			}
			for _, h := range bp.Hosts {
				t.Logf("%s watch log (tail):\n%s", h.Name, tailLines(readFile(filepath.Join(l.Dir(), h.Name, "watch.log")), 10))
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return e
}

func (e *env) startController(args ...string) {
	e.t.Helper()
	ctl, err := e.lab.StartController(e.lab.ControllerArgs(append([]string{"--drift-interval", "2s"}, args...)...)...)
	if err != nil {
		e.t.Fatalf("start controller: %v", err)
	}
	e.ctl = ctl
	e.t.Cleanup(func() {
		if ctl.Running() {
			_ = ctl.Stop()
		}
	})
}

func (e *env) status() *controller.Status {
	e.t.Helper()
	st, err := e.lab.ControllerStatus(e.ctx)
	if err != nil {
		e.t.Fatalf("status: %v", err)
	}
	return st
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s (last: %s)", what, d, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) vm(name string) *flows.VM {
	for pi := range e.bp.VPCs {
		for ti := range e.bp.VPCs[pi].Tiers {
			for vi := range e.bp.VPCs[pi].Tiers[ti].VMs {
				if v := &e.bp.VPCs[pi].Tiers[ti].VMs[vi]; v.Name == name {
					return v
				}
			}
		}
	}
	e.t.Fatalf("no VM %s", name)
	return nil
}

// counter sums n_packets of the flows of a rule category on a host.
func (e *env) counter(host string, cat flows.Category) uint64 {
	e.t.Helper()
	n, err := e.lab.FlowPackets(e.ctx, host, uint64(flows.MakeCookie(cat, 0, 0)), 0xff00000000000000)
	if err != nil {
		e.t.Fatalf("counter %s on %s: %v", cat, host, err)
	}
	return n
}

// pingOK waits (bounded) until from reaches ip.
func (e *env) pingOK(from, ip string, d time.Duration) {
	e.t.Helper()
	eventually(e.t, d, fmt.Sprintf("%s pings %s", from, ip), func() (bool, string) {
		_, recv, err := e.lab.Ping(e.ctx, from, ip, 1, 200*time.Millisecond, time.Second)
		return err == nil && recv > 0, fmt.Sprint(err)
	})
}

// pingBlocked asserts nothing comes back within a bounded window.
func (e *env) pingBlocked(from, ip string) {
	e.t.Helper()
	sent, recv, _ := e.lab.Ping(e.ctx, from, ip, 2, 200*time.Millisecond, time.Second)
	if recv > 0 {
		e.t.Fatalf("%s reached %s (%d/%d replies): must be blocked", from, ip, recv, sent)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
