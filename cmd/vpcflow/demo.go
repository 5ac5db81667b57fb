package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vpcflow/vpcflow/examples/demo"
	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

func init() {
	register("demo", "build a 3-hypervisor userspace-OVS lab, run the controller, print reachability", runDemo)
}

var demoPackages = []string{"openvswitch-switch", "iproute2", "iputils-ping", "tcpdump", "ethtool", "python3-scapy"}

// ensureTools installs the lab's Debian packages when a tool is missing.
func ensureTools(install bool) error {
	var missing []string
	for _, t := range []string{"ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ip", "ping", "tcpdump", "ethtool"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if exec.Command("/usr/bin/python3", "-c", "import scapy.all").Run() != nil &&
		exec.Command("python3", "-c", "import scapy.all").Run() != nil {
		missing = append(missing, "scapy")
	}
	if len(missing) == 0 {
		return nil
	}
	if !install {
		return fmt.Errorf("missing tools %v: run apt-get install -y %s (or drop --no-install)", missing, strings.Join(demoPackages, " "))
	}
	fmt.Printf("installing missing tools %v with apt-get ...\n", missing)
	for _, argv := range [][]string{{"apt-get", "update", "-q"}, append([]string{"apt-get", "install", "-y", "-q"}, demoPackages...)} {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		}
	}
	return nil
}

func runDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	bpPath := fs.String("blueprint", "", "blueprint to run (default: the built-in demo, examples/demo/blueprint.yaml)")
	keep := fs.Bool("keep", false, "keep the lab running after the report until Ctrl-C (explore it with ip netns / ovs-ofctl)")
	noInstall := fs.Bool("no-install", false, "do not apt-get install missing tools")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "vpcflow demo: must run as root (it creates network namespaces and OVS daemons)")
		return 1
	}
	if err := ensureTools(!*noInstall); err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow demo:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demoRun(ctx, *bpPath, *keep); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Println("interrupted: lab torn down")
			return 130
		}
		fmt.Fprintln(os.Stderr, "vpcflow demo:", err)
		return 1
	}
	return 0
}

func demoRun(ctx context.Context, bpPath string, keep bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "vpcflow-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	policyAct := bpPath == "" // the policy act edits the built-in demo blueprint
	if bpPath == "" {
		bpPath = filepath.Join(dir, "blueprint.yaml")
		if err := os.WriteFile(bpPath, demo.Blueprint, 0o644); err != nil {
			return err
		}
	}
	bp, err := flows.Load(bpPath)
	if err != nil {
		return err
	}
	fmt.Printf("blueprint %s: %d hosts, %d VPCs, encapsulation %s\n", bpPath, len(bp.Hosts), len(bp.VPCs), bp.Encapsulation)
	t0 := time.Now()
	l, err := lab.Up(ctx, lab.Options{Blueprint: bp, BlueprintPath: bpPath, VPCFlowBin: self, Watch: true,
		Dir: filepath.Join(dir, "lab"), KeepDir: false})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer func() {
		fmt.Println("tearing the lab down ...")
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "lab down:", err)
		}
	}()
	fmt.Printf("lab up in %s: namespaces %s*, OVS state in %s\n", time.Since(t0).Round(time.Millisecond), l.Prefix(), l.Dir())
	t1 := time.Now()
	ctl, err := l.StartController(l.ControllerArgs()...)
	if err != nil {
		return err
	}
	defer ctl.Stop()
	st, err := l.WaitConverged(ctx, 60*time.Second, 0)
	if err != nil {
		fmt.Println(tail(ctl.Log(), 20))
		return err
	}
	fmt.Printf("controller started; all %d bridges converged in %s\n\n", len(st.Bridges), time.Since(t1).Round(time.Millisecond))
	fmt.Println("HOST   DATAPATH          ROLE    FLOWS")
	for _, b := range st.Bridges {
		fmt.Printf("%-6s %s  %-6s  %d\n", b.Host, b.DatapathID, b.Role, b.FlowsInstalled)
	}

	fmt.Println("\nVM-to-VM reachability (ping; ok = reached, -- = blocked, = same IP as source, !! = contradicts policy):")
	res := l.Matrix(ctx)
	fmt.Print(lab.FormatMatrix(res))
	for _, p := range bp.VPCs {
		for _, t := range p.Tiers {
			var names []string
			for _, v := range t.VMs {
				names = append(names, fmt.Sprintf("%s@%s(%s)", v.Name, v.Host, v.IP))
			}
			fmt.Printf("  vpc %-5s tier %-4s %s  vni %d: %s\n", p.Name, t.Name, t.CIDR, t.VNI, strings.Join(names, " "))
		}
	}
	bad := lab.MatrixViolations(res)

	fmt.Println("\nBlocked probes (each must be BLOCKED):")
	probes := demoProbes(ctx, l, bp)
	for _, p := range probes {
		fmt.Println("  " + p)
		if strings.HasPrefix(p, "LEAK") {
			bad = append(bad, p)
		}
	}
	if policyAct {
		fmt.Println("\nNetwork ACLs and security groups on vpc blue (docs/policy.md):")
		lines, err := demoPolicy(ctx, l, bpPath)
		if err != nil {
			bad = append(bad, "policy act: "+err.Error())
		}
		for _, line := range lines {
			fmt.Println("  " + line)
			if strings.HasPrefix(line, "WRONG") {
				bad = append(bad, line)
			}
		}
	}
	if len(bad) > 0 {
		fmt.Println("\nPOLICY VIOLATIONS:")
		for _, b := range bad {
			fmt.Println("  " + b)
		}
	} else {
		fmt.Println("\nall results match the policy")
	}
	if keep {
		fmt.Printf("\nlab kept running: try `ip netns exec %sv-%s ping 10.10.1.12` or `ip netns exec %smgmt %s status`. Ctrl-C to tear down.\n",
			l.Prefix(), bp.VPCs[0].Tiers[0].VMs[0].Name, l.Prefix(), self)
		<-ctx.Done()
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d policy violations", len(bad))
	}
	return nil
}

// demoProbes runs the guest->management, spoofing and rogue-underlay probes.
func demoProbes(ctx context.Context, l *lab.Lab, bp *flows.Blueprint) []string {
	var out []string
	verdict := func(what string, reached bool) {
		if reached {
			out = append(out, "LEAK     "+what)
		} else {
			out = append(out, "blocked  "+what)
		}
	}
	vm := bp.VPCs[0].Tiers[0].VMs[0]
	peer := bp.VPCs[0].Tiers[0].VMs[1]
	if err := l.GuestRouteToUnderlay(ctx, vm.Name); err != nil {
		return append(out, "LEAK? could not set up guest probes: "+err.Error())
	}
	h := bp.HostByName(vm.Host)
	for _, port := range []int{22, 8250} {
		for i := range bp.Hosts {
			ph := &bp.Hosts[i]
			lp, err := l.Listen(ph.Name, "tcp", port)
			if err != nil {
				return append(out, "LEAK? listener: "+err.Error())
			}
			mgmtOK := l.TCPConnect(ctx, "mgmt", ph.TunnelIP, port, 2*time.Second) == nil
			guest := l.TCPConnect(ctx, vm.Name, ph.TunnelIP, port, time.Second) == nil
			lp.Stop()
			verdict(fmt.Sprintf("guest %s -> host %s %s:%d (management reaches it: %v)", vm.Name, ph.Name, ph.TunnelIP, port, mgmtOK), guest)
		}
	}
	verdict(fmt.Sprintf("guest %s -> controller %s:6653 (OpenFlow)", vm.Name, l.MgmtAddr()), l.TCPOpen(ctx, vm.Name, l.MgmtAddr(), 6653, time.Second))
	_, recv, _ := l.Ping(ctx, vm.Name, l.MgmtAddr(), 2, 200*time.Millisecond, time.Second)
	verdict(fmt.Sprintf("guest %s -> management %s (ping)", vm.Name, l.MgmtAddr()), recv > 0)

	// Spoofing: a second address on the VM, used as source.
	if err := l.SetVMAddr(ctx, vm.Name, "", "10.10.1.99"); err == nil {
		o, _ := l.Exec(ctx, l.VMNS(vm.Name), "ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", "10.10.1.99", peer.IP)
		verdict(fmt.Sprintf("guest %s with spoofed source 10.10.1.99 -> %s", vm.Name, peer.Name), strings.Contains(o, " 0% packet loss") || strings.Contains(o, "bytes from"))
	}
	// Rogue underlay node: crafted tunnel packets to a VM.
	capt, err := l.Capture(ctx, vm.Name, lab.VMIface, "icmp and src host 10.66.66.66")
	if err == nil {
		encap := string(bp.Encapsulation)
		before, _ := l.FlowPackets(ctx, h.Name, uint64(flows.MakeCookie(flows.CatTunnelDrop, 0, 0)), 0xff00000000000000)
		_ = l.SendRogue(ctx, lab.RoguePacket{Encap: encap, DstHost: h.Name, Key: bp.VPCs[0].Tiers[0].VNI, InnerDstMAC: vm.MAC, InnerDstIP: vm.IP, Count: 5})
		time.Sleep(300 * time.Millisecond) // bounded observation window for a negative check
		// The switch attributes datapath hits to the flow when it revalidates
		// (up to ~1 s later): poll the counter until all 5 show, 3 s at most.
		var after uint64
		for deadline := time.Now().Add(3 * time.Second); ; {
			after, _ = l.FlowPackets(ctx, h.Name, uint64(flows.MakeCookie(flows.CatTunnelDrop, 0, 0)), 0xff00000000000000)
			if after >= before+5 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		txt, _ := capt.Stop()
		got := strings.Count(txt, "ICMP")
		verdict(fmt.Sprintf("rogue %s (%s) -> %s: 5 crafted %s packets, allowlist drop counter +%d, %d arrived", lab.RogueAddr, "underlay", vm.Name, encap, after-before, got), got > 0)
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
