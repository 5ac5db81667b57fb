package lab

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

	"github.com/vpcflow/vpcflow/flows"
)

// bootstrapProvision stands in for `vpcflow host apply`: it closes the
// bridge (fail_mode=secure, which flushes the NORMAL flow) and lets only the
// host's own traffic through, LOCAL <-> uplink.
func bootstrapProvision(ctx context.Context, l *Lab, h *flows.Host) error {
	if _, err := l.OVS(ctx, h.Name, "ovs-vsctl", "set", "bridge", Bridge, "fail_mode=secure"); err != nil {
		return err
	}
	for _, f := range []string{
		"priority=10,in_port=LOCAL,actions=output:" + h.Uplink,
		"priority=10,in_port=" + h.Uplink + ",actions=LOCAL",
	} {
		if _, err := l.OVS(ctx, h.Name, "ovs-ofctl", "add-flow", Bridge, f); err != nil {
			return err
		}
	}
	return nil
}

func TestLabDemoBlueprint(t *testing.T) {
	if os.Getenv("VPCFLOW_E2E") == "0" {
		t.Skip("VPCFLOW_E2E=0")
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Fatalf("the lab e2e test needs Linux and root (set VPCFLOW_E2E=0 to skip): GOOS=%s euid=%d", runtime.GOOS, os.Geteuid())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	bpPath, err := filepath.Abs("../demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A stand-in vpcflow binary: `host watch` and `controller` just run.
	fake := filepath.Join(t.TempDir(), "vpcflow")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"fake vpcflow $*\"\nexec sleep 300\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var logBuf strings.Builder
	t0 := time.Now()
	l, err := Up(ctx, Options{BlueprintPath: bpPath, Provision: bootstrapProvision, VPCFlowBin: fake, Watch: true, Log: &logBuf})
	upTook := time.Since(t0)
	if err != nil {
		t.Fatalf("Up: %v\nlog:\n%s", err, logBuf.String())
	}
	t.Logf("Up took %s", upTook.Round(time.Millisecond))
	downDone := false
	defer func() {
		if !downDone {
			if err := l.Down(); err != nil {
				t.Errorf("Down (deferred): %v", err)
			}
		}
	}()
	prefix := l.Prefix()
	dir := l.Dir()

	// The management namespace reaches every host IP over the underlay
	// and cloudbr0's LOCAL <-> uplink flows.
	for _, h := range l.Blueprint().Hosts {
		sent, recv, err := l.Ping(ctx, "mgmt", h.TunnelIP, 3, 100*time.Millisecond, 2*time.Second)
		if err != nil {
			t.Errorf("ping %s from mgmt: %v", h.TunnelIP, err)
			continue
		}
		if sent != 3 || recv == 0 {
			t.Errorf("ping %s from mgmt: sent %d received %d", h.TunnelIP, sent, recv)
		}
	}

	// Host namespaces: sysctls and the bridge's MAC.
	for _, h := range l.Blueprint().Hosts {
		out, err := l.Exec(ctx, l.HostNS(h.Name), "sysctl", "-n", "net.ipv4.conf.all.arp_ignore", "net.ipv6.conf.all.disable_ipv6", "net.ipv4.ip_forward")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(out); strings.Join(got, " ") != "1 1 0" {
			t.Errorf("host %s sysctls arp_ignore/disable_ipv6/ip_forward = %v, want 1 1 0", h.Name, got)
		}
		out, err = l.Exec(ctx, l.HostNS(h.Name), "ip", "-br", "link", "show", "dev", Bridge)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, h.TunnelMAC) {
			t.Errorf("host %s: cloudbr0 %q does not carry tunnel_mac %s", h.Name, out, h.TunnelMAC)
		}
		out, err = l.OVS(ctx, h.Name, "ovs-vsctl", "get", "bridge", Bridge, "fail_mode", "datapath_type")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(strings.Fields(out), " ") != "secure netdev" {
			t.Errorf("host %s: fail_mode/datapath_type = %q", h.Name, out)
		}
	}

	// Every VM namespace exists with its MAC, IP, MTU and port on cloudbr0.
	for _, vpc := range l.Blueprint().VPCs {
		for _, tier := range vpc.Tiers {
			for _, vm := range tier.VMs {
				out, err := l.Exec(ctx, l.VMNS(vm.Name), "ip", "-o", "addr", "show", "dev", VMIface)
				if err != nil {
					t.Fatalf("vm %s: %v", vm.Name, err)
				}
				bits := strings.SplitN(tier.CIDR, "/", 2)[1]
				if !strings.Contains(out, "inet "+vm.IP+"/"+bits) {
					t.Errorf("vm %s: eth0 lacks %s/%s: %s", vm.Name, vm.IP, bits, out)
				}
				if strings.Contains(out, "inet6") {
					t.Errorf("vm %s: IPv6 not disabled: %s", vm.Name, out)
				}
				out, err = l.Exec(ctx, l.VMNS(vm.Name), "ip", "-o", "link", "show", "dev", VMIface)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(out, "link/ether "+vm.MAC) || !strings.Contains(out, "mtu 1450") {
					t.Errorf("vm %s: eth0 is not %s mtu 1450: %s", vm.Name, vm.MAC, out)
				}
				out, err = l.OVS(ctx, vm.Host, "ovs-vsctl", "port-to-br", vm.Port)
				if err != nil || strings.TrimSpace(out) != Bridge {
					t.Errorf("vm %s: port %s not on %s of %s: %q %v", vm.Name, vm.Port, Bridge, vm.Host, out, err)
				}
				out, err = l.Exec(ctx, l.VMNS(vm.Name), "ethtool", "-k", VMIface)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(out, "tx-checksumming: off") {
					t.Errorf("vm %s: tx checksumming not off", vm.Name)
				}
			}
		}
	}

	// TCP from mgmt to a host's stack through cloudbr0.
	ln, err := l.Listen("kvm2", "tcp", 8080)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.TCPConnect(ctx, "mgmt", "192.0.2.12", 8080, 3*time.Second); err != nil {
		t.Errorf("TCPConnect mgmt -> kvm2:8080: %v", err)
	}
	// A closed port must fail: the helper can report failure.
	if err := l.TCPConnect(ctx, "mgmt", "192.0.2.12", 8081, time.Second); err == nil {
		t.Errorf("TCPConnect to a closed port succeeded")
	}

	// The rogue node sends crafted VXLAN and GRE; with only LOCAL<->uplink
	// flows, the outer packets reach kvm1's LOCAL (the flow counts them).
	capt, err := l.Capture(ctx, "kvm1", Bridge, "udp port 4789")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SendRogueVXLAN(ctx, "kvm1", 5001, "52:54:00:b1:01:0b", "10.10.1.11", 3); err != nil {
		t.Fatalf("SendRogueVXLAN: %v", err)
	}
	if err := l.SendRogueGRE(ctx, "kvm1", 5001, "52:54:00:b1:01:0b", "10.10.1.11", 1); err != nil {
		t.Fatalf("SendRogueGRE: %v", err)
	}
	if err := poll(ctx, 5*time.Second, "3 rogue packets on kvm1's cloudbr0", func() (bool, error) { return capt.Count() >= 3, nil }); err != nil {
		t.Errorf("%v; captured:\n%s", err, capt.Text())
	}
	text, err := capt.Stop()
	if err != nil {
		t.Errorf("capture stop: %v", err)
	}
	if !strings.Contains(text, "192.0.2.66") {
		t.Errorf("capture lacks the rogue source: %s", text)
	}

	// A continuous ping's statistics survive Stop.
	pp, err := l.StartPing("mgmt", "192.0.2.13", 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 5*time.Second, "3 ping replies", func() (bool, error) { _, r := pp.PingStats(); return r >= 3, nil }); err != nil {
		t.Error(err)
	}
	if err := pp.Stop(); err != nil {
		t.Error(err)
	}
	if tx, rx := pp.PingStats(); tx < 3 || rx < 3 {
		t.Errorf("ping stats after stop: %d/%d\n%s", tx, rx, pp.Log())
	}

	// vswitchd restart by pid gives an empty table and the host IP back.
	if err := l.RestartVSwitchd("kvm3"); err != nil {
		t.Fatalf("RestartVSwitchd: %v", err)
	}
	out, err := l.Exec(ctx, l.HostNS("kvm3"), "ip", "-o", "addr", "show", "dev", Bridge)
	if err != nil || !strings.Contains(out, "192.0.2.13/24") {
		t.Errorf("after restart cloudbr0 lacks the host IP: %q %v", out, err)
	}

	// The controller runs in mgmt; its log is appended across restarts.
	for i := 0; i < 2; i++ {
		c, err := l.StartController("--blueprint", bpPath, "--listen", "tcp:192.0.2.250:6653")
		if err != nil {
			t.Fatal(err)
		}
		if err := poll(ctx, 5*time.Second, "controller run logged", func() (bool, error) {
			return strings.Count(c.Log(), "fake vpcflow controller --blueprint") == i+1, nil
		}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := c.Stop(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "controller.log")); err != nil || strings.Count(string(b), "fake vpcflow controller --blueprint") != 2 {
		t.Errorf("controller.log does not hold both runs: %q %v", b, err)
	}
	for _, h := range l.Blueprint().Hosts {
		b, err := os.ReadFile(filepath.Join(dir, h.Name, "watch.log"))
		if err != nil || !strings.Contains(string(b), "host watch --blueprint "+bpPath+" --host "+h.Name+" --ovsdb unix:") {
			t.Errorf("host %s watch.log: %q %v", h.Name, b, err)
		}
	}

	pids := l.Pids()
	// 2 OVS daemons + 1 watch per host, the listener, the controller.
	if want := 3*len(l.Blueprint().Hosts) + 2; len(pids) != want {
		t.Errorf("Pids() = %v: want %d", pids, want)
	}
	_ = ln

	t1 := time.Now()
	if err := l.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	downDone = true
	t.Logf("Down took %s", time.Since(t1).Round(time.Millisecond))
	if err := l.Down(); err != nil {
		t.Errorf("second Down: %v", err)
	}
	nsList, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(nsList), prefix) {
		t.Errorf("namespaces with prefix %s remain:\n%s", prefix, nsList)
	}
	for _, pid := range pids {
		if PidAlive(pid) {
			t.Errorf("pid %d still running after Down", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("state directory %s not removed: %v", dir, err)
	}
}

// TestUpFailsCleanly checks that a provisioning failure halfway tears down
// everything Up built.
func TestUpFailsCleanly(t *testing.T) {
	if os.Getenv("VPCFLOW_E2E") == "0" {
		t.Skip("VPCFLOW_E2E=0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bpPath, _ := filepath.Abs("../demo/blueprint.yaml")
	prefix := fmt.Sprintf("vfz%03x-", os.Getpid()%0x1000)
	dir := t.TempDir()
	provision := func(ctx context.Context, l *Lab, h *flows.Host) error {
		if h.Name == "kvm2" {
			_, err := l.OVS(ctx, h.Name, "ovs-vsctl", "set", "bridge", "nosuchbridge", "fail_mode=secure")
			return err
		}
		return bootstrapProvision(ctx, l, h)
	}
	l, err := Up(ctx, Options{Prefix: prefix, Dir: dir, BlueprintPath: bpPath, Provision: provision})
	if err == nil {
		_ = l.Down()
		t.Fatal("Up succeeded with a failing Provision hook")
	}
	if !strings.Contains(err.Error(), "nosuchbridge") || !strings.Contains(err.Error(), "kvm2") {
		t.Errorf("error does not name the host and carry the command output: %v", err)
	}
	out, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	if strings.Contains(string(out), prefix) {
		t.Errorf("namespaces with prefix %s leaked after failed Up:\n%s", prefix, out)
	}
	// No process still refers to this lab's state directory.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), dir) {
			t.Errorf("%s still running after failed Up: %q", f, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

// TestLabVXLANDataPath proves the lab's data path with hand-written flows:
// blue-web-1 (kvm1) and blue-web-2 (kvm2) talk over a flow-based VXLAN port
// (ping, full-size ping with DF, TCP), and the rogue node's crafted VXLAN
// reaches blue-web-1 when no allowlist stops it.
func TestLabVXLANDataPath(t *testing.T) {
	if os.Getenv("VPCFLOW_E2E") == "0" {
		t.Skip("VPCFLOW_E2E=0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	bpPath, _ := filepath.Abs("../demo/blueprint.yaml")
	provision := func(ctx context.Context, l *Lab, h *flows.Host) error {
		if err := bootstrapProvision(ctx, l, h); err != nil {
			return err
		}
		_, err := l.OVS(ctx, h.Name, "ovs-vsctl", "add-port", Bridge, "vpcflow-vxlan", "--", "set", "interface", "vpcflow-vxlan",
			"type=vxlan", "options:remote_ip=flow", "options:key=flow", "options:local_ip="+h.TunnelIP)
		return err
	}
	l, err := Up(ctx, Options{BlueprintPath: bpPath, Provision: provision})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
	}()
	peer := map[string]string{"kvm1": "192.0.2.12", "kvm2": "192.0.2.11"}
	for host, dst := range peer {
		for _, f := range []string{
			"priority=20,in_port=vnet0,actions=set_field:5001->tun_id,set_field:" + dst + "->tun_dst,output:vpcflow-vxlan",
			"priority=20,in_port=vpcflow-vxlan,tun_id=5001,actions=output:vnet0",
		} {
			if _, err := l.OVS(ctx, host, "ovs-ofctl", "add-flow", Bridge, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	// First packets wait for the tunnel neighbour (ARP) to resolve.
	if err := poll(ctx, 10*time.Second, "blue-web-1 -> blue-web-2 ping", func() (bool, error) {
		_, r, err := l.Ping(ctx, "blue-web-1", "10.10.1.12", 1, 0, 500*time.Millisecond)
		return r == 1, err
	}); err != nil {
		t.Fatal(err)
	}
	// 1422 bytes of ICMP payload = a 1450-byte IP packet, DF set.
	if _, r, err := l.Ping(ctx, "blue-web-1", "10.10.1.12", 3, 50*time.Millisecond, time.Second); err != nil || r != 3 {
		t.Errorf("ping: received %d/3 %v", r, err)
	}
	if out, err := l.Exec(ctx, l.VMNS("blue-web-1"), "ping", "-c", "2", "-W", "1", "-M", "do", "-s", "1422", "10.10.1.12"); err != nil {
		t.Errorf("full-MTU ping over VXLAN: %v\n%s", err, out)
	}
	ln, err := l.Listen("blue-web-2", "tcp", 9000)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.TCPConnect(ctx, "blue-web-1", "10.10.1.12", 9000, 3*time.Second); err != nil {
		t.Errorf("TCP over VXLAN: %v", err)
	}
	_ = ln

	// Rogue VXLAN to kvm1, VNI 5001, inner destination blue-web-1.
	capt, err := l.Capture(ctx, "blue-web-1", VMIface, "icmp and src host 10.66.66.66")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SendRogueVXLAN(ctx, "kvm1", 5001, "52:54:00:b1:01:0b", "10.10.1.11", 2); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 5*time.Second, "rogue packets in blue-web-1", func() (bool, error) { return capt.Count() >= 2, nil }); err != nil {
		t.Errorf("%v\n%s", err, capt.Text())
	}
	if _, err := capt.Stop(); err != nil {
		t.Error(err)
	}
}
