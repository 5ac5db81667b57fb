package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

// Dual-stack demo: blue/web and red/web get the SAME IPv6 prefix and the
// same addresses (2001:db8:10:1::/64, documentation space, inside the lab's
// namespaces only); blue/web gets a third VM on kvm3 for the spoofing checks.
const (
	v6Prefix = "2001:db8:10:1::/64"
	v6Web1   = "2001:db8:10:1::11" // blue-web-1 (kvm1) and red-web-1 (kvm1)
	v6Web2   = "2001:db8:10:1::12" // blue-web-2 (kvm2) and red-web-2 (kvm3)
	v6Web3   = "2001:db8:10:1::13" // blue-web-3 (kvm3)
)

func dualStackBlueprint(t *testing.T, encap string) string {
	return demoBlueprint(t, func(s string) string {
		s = strings.Replace(s, "encapsulation: vxlan", "encapsulation: "+encap, 1)
		s = strings.Replace(s, "        vni: 5001\n        cidr: 10.10.1.0/24\n", "        vni: 5001\n        cidr: 10.10.1.0/24\n        cidr6: "+v6Prefix+"\n", 1)
		s = strings.Replace(s, "        vni: 6001\n        cidr: 10.10.1.0/24\n", "        vni: 6001\n        cidr: 10.10.1.0/24\n        cidr6: "+v6Prefix+"\n", 1)
		s = strings.Replace(s, `mac: "52:54:00:b1:01:0b", ip: 10.10.1.11}`, `mac: "52:54:00:b1:01:0b", ip: 10.10.1.11, ip6: "`+v6Web1+`"}`, 1)
		s = strings.Replace(s, `mac: "52:54:00:b1:01:0c", ip: 10.10.1.12}`, `mac: "52:54:00:b1:01:0c", ip: 10.10.1.12, ip6: "`+v6Web2+`"}
          - {name: blue-web-3, host: kvm3, port: vnet3, mac: "52:54:00:b1:01:0d", ip: 10.10.1.13, ip6: "`+v6Web3+`"}`, 1)
		s = strings.Replace(s, `mac: "52:54:00:d1:01:0b", ip: 10.10.1.11}`, `mac: "52:54:00:d1:01:0b", ip: 10.10.1.11, ip6: "`+v6Web1+`"}`, 1)
		return strings.Replace(s, `mac: "52:54:00:d1:01:0c", ip: 10.10.1.12}`, `mac: "52:54:00:d1:01:0c", ip: 10.10.1.12, ip6: "`+v6Web2+`"}`, 1)
	})
}

// vmExec runs argv in a VM's namespace and fails the test on error.
func (e *env) vmExec(vm string, argv ...string) string {
	e.t.Helper()
	out, err := e.lab.Exec(e.ctx, e.lab.VMNS(vm), argv...)
	if err != nil {
		e.t.Fatalf("%s: %s: %v: %s", vm, strings.Join(argv, " "), err, out)
	}
	return out
}

// enableIPv6 turns IPv6 on in a VM (the lab disables it everywhere) and adds
// its blueprint address; dad=false skips duplicate address detection on the
// NIC (it is not the subject of most checks), acceptRA lets the guest learn
// routes and addresses from router advertisements.
func (e *env) enableIPv6(vm, addr string, dad, acceptRA bool) {
	e.t.Helper()
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	e.vmExec(vm, "sysctl", "-q", "-w", "net.ipv6.conf.eth0.accept_dad="+b(dad), "net.ipv6.conf.eth0.accept_ra="+b(acceptRA),
		"net.ipv6.conf.eth0.forwarding=0", "net.ipv6.conf.eth0.dad_transmits=1")
	e.vmExec(vm, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0", "net.ipv6.conf.eth0.disable_ipv6=0")
	argv := []string{"ip", "-6", "addr", "add", addr + "/64", "dev", "eth0"}
	if !dad {
		argv = append(argv, "nodad")
	}
	e.vmExec(vm, argv...)
}

func (e *env) ping6(from, dst string, src ...string) bool {
	argv := []string{"ping", "-6", "-n", "-q", "-c", "1", "-W", "1", dst}
	if len(src) > 0 {
		argv = append(argv, "-I", src[0])
	}
	out, _ := e.lab.Exec(e.ctx, e.lab.VMNS(from), argv...)
	return strings.Contains(out, " 1 received")
}

func (e *env) ping6OK(from, dst string, d time.Duration) {
	e.t.Helper()
	eventually(e.t, d, fmt.Sprintf("%s pings %s", from, dst), func() (bool, string) {
		return e.ping6(from, dst), ""
	})
}

func (e *env) ping6Blocked(from, dst string, src ...string) {
	e.t.Helper()
	for i := 0; i < 2; i++ {
		if e.ping6(from, dst, src...) {
			e.t.Fatalf("%s reached %s (source %v): must be blocked", from, dst, src)
		}
	}
}

// neighMAC is the link-layer address vm's neighbour table holds for addr.
func (e *env) neighMAC(vm, addr string) string {
	out, _ := e.lab.Exec(e.ctx, e.lab.VMNS(vm), "ip", "-6", "neigh", "show", addr, "dev", "eth0")
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// scapy sends a crafted IPv6 packet from inside a VM (python3 with scapy is
// a lab prerequisite).
func (e *env) scapy(vm, script string) {
	e.t.Helper()
	e.vmExec(vm, "/usr/bin/python3", "-c", "from scapy.all import *\nconf.verb=0\n"+script)
}

// tcp6 starts a one-line IPv6 TCP server in vm (stopped by pid at cleanup)
// and connects to it from `from`.
func (e *env) tcp6(from, vm, addr string, port int) {
	e.t.Helper()
	srv := fmt.Sprintf(`import socket
s=socket.socket(socket.AF_INET6,socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(("::",%d)); s.listen(8)
while True:
    c,a=s.accept(); c.sendall(b"ok\n"); c.close()`, port)
	cmd := exec.Command("ip", "netns", "exec", e.lab.VMNS(vm), "/usr/bin/python3", "-c", srv)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	eventually(e.t, 15*time.Second, fmt.Sprintf("%s connects to [%s]:%d", from, addr, port), func() (bool, string) {
		err := e.lab.TCPConnect(e.ctx, from, addr, port, 2*time.Second)
		return err == nil, fmt.Sprint(err)
	})
}

// TestIPv6SameTierVXLAN: dual-stack tiers on real Open vSwitch over VXLAN:
// ping6 and TCP across hosts (neighbour discovery answered by the switch),
// identical prefixes/addresses in two VPCs isolated, spoofed source, spoofed
// NA and guest RAs dropped (counted), DAD not answered by the switch.
func TestIPv6SameTierVXLAN(t *testing.T) { testIPv6(t, "vxlan", true) }

// TestIPv6SameTierGRE: the same forwarding over GRE.
func TestIPv6SameTierGRE(t *testing.T) { testIPv6(t, "gre", false) }

func testIPv6(t *testing.T, encap string, security bool) {
	e := startEnv(t, dualStackBlueprint(t, encap))
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, h := range []string{"kvm1", "kvm2"} {
			out, _ := e.lab.OVS(e.ctx, h, "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "cloudbr0")
			var keep []string
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "ipv6") || strings.Contains(l, "icmp6") || strings.Contains(l, "table=52") || strings.Contains(l, "table=70") {
					keep = append(keep, l)
				}
			}
			t.Logf("%s IPv6 flows:\n%s", h, strings.Join(keep, "\n"))
		}
		for _, vm := range []string{"blue-web-1", "blue-web-2"} {
			out, _ := e.lab.Exec(e.ctx, e.lab.VMNS(vm), "sh", "-c", "ip -6 addr; ip -6 neigh; ip -6 route")
			t.Logf("%s:\n%s", vm, out)
		}
	})
	// DAD on blue-web-3: the switch knows its address and must not answer
	// the probe (which comes from ::), or the address would fail DAD.
	e.enableIPv6("blue-web-3", v6Web3, true, false)
	e.enableIPv6("blue-web-1", v6Web1, false, false)
	e.enableIPv6("blue-web-2", v6Web2, false, true)
	e.enableIPv6("red-web-1", v6Web1, false, false)
	e.enableIPv6("red-web-2", v6Web2, false, false)

	eventually(t, 15*time.Second, "blue-web-3's address passes DAD", func() (bool, string) {
		out, _ := e.lab.Exec(e.ctx, e.lab.VMNS("blue-web-3"), "ip", "-6", "addr", "show", "dev", "eth0")
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, v6Web3+"/64") {
				if strings.Contains(l, "dadfailed") {
					t.Fatalf("DAD failed on blue-web-3 (the switch answered its probe?): %s", l)
				}
				return !strings.Contains(l, "tentative"), l
			}
		}
		return false, out
	})

	// Same tier across hosts (kvm1 -> kvm2, kvm1 -> kvm3): the switch
	// answers the neighbour solicitation with the right VPC's MAC.
	e.ping6OK("blue-web-1", v6Web2, 20*time.Second)
	e.ping6OK("red-web-1", v6Web2, 20*time.Second)
	e.ping6OK("blue-web-2", v6Web3, 20*time.Second)
	if m := e.neighMAC("blue-web-1", v6Web2); m != "52:54:00:b1:01:0c" {
		t.Errorf("blue-web-1 resolved %s to %q, want blue-web-2's 52:54:00:b1:01:0c", v6Web2, m)
	}
	if m := e.neighMAC("red-web-1", v6Web2); m != "52:54:00:d1:01:0c" {
		t.Errorf("red-web-1 resolved %s to %q, want red-web-2's 52:54:00:d1:01:0c", v6Web2, m)
	}
	if n := e.counter("kvm1", flows.CatNDResponder); n == 0 {
		t.Errorf("no neighbour solicitation answered by kvm1's nd_responder")
	}
	e.tcp6("blue-web-1", "blue-web-2", v6Web2, 8086)
	e.tcp6("red-web-1", "red-web-2", v6Web2, 8086)
	if !security {
		return
	}

	// Cross-VPC with identical addresses: blue-web-1 forced to use red-web-2's
	// MAC for the shared address reaches nothing.
	e.vmExec("blue-web-1", "ip", "-6", "neigh", "replace", v6Web2, "lladdr", "52:54:00:d1:01:0c", "nud", "permanent", "dev", "eth0")
	e.ping6Blocked("blue-web-1", v6Web2)
	e.vmExec("blue-web-1", "ip", "-6", "neigh", "del", v6Web2, "dev", "eth0")
	e.ping6OK("blue-web-1", v6Web2, 20*time.Second)

	// Spoofed source: an address of the tier that is not blue-web-1's.
	dropsBefore := e.counter("kvm1", flows.CatIPv6Drop)
	e.vmExec("blue-web-1", "ip", "-6", "addr", "add", "2001:db8:10:1::66/64", "dev", "eth0", "nodad")
	e.vmExec("blue-web-2", "ip", "-6", "neigh", "replace", "2001:db8:10:1::66", "lladdr", "52:54:00:b1:01:0b", "nud", "permanent", "dev", "eth0")
	e.ping6Blocked("blue-web-1", v6Web2, "2001:db8:10:1::66")
	if after := e.counter("kvm1", flows.CatIPv6Drop); after <= dropsBefore {
		t.Errorf("spoofed IPv6 source not counted by ipv6-drop on kvm1 (%d -> %d)", dropsBefore, after)
	}
	e.vmExec("blue-web-1", "ip", "-6", "addr", "del", "2001:db8:10:1::66/64", "dev", "eth0")

	// Spoofed NA: blue-web-1 claims blue-web-3's address (override) to
	// blue-web-2, which has resolved it: its entry must keep web-3's MAC.
	if m := e.neighMAC("blue-web-2", v6Web3); m != "52:54:00:b1:01:0d" {
		t.Fatalf("blue-web-2 resolved %s to %q before the attack, want 52:54:00:b1:01:0d", v6Web3, m)
	}
	guardBefore := e.counter("kvm1", flows.CatIPv6Guard)
	e.scapy("blue-web-1", fmt.Sprintf(`p=Ether(src="52:54:00:b1:01:0b",dst="52:54:00:b1:01:0c")/IPv6(src="%s",dst="%s")/ICMPv6ND_NA(tgt="%s",R=0,S=1,O=1)/ICMPv6NDOptDstLLAddr(lladdr="52:54:00:b1:01:0b")
sendp(p,iface="eth0",count=3,inter=0.1)
q=Ether(src="52:54:00:b1:01:0b",dst="33:33:00:00:00:01")/IPv6(src="%s",dst="ff02::1")/ICMPv6ND_NA(tgt="%s",R=0,S=0,O=1)/ICMPv6NDOptDstLLAddr(lladdr="52:54:00:b1:01:0b")
sendp(q,iface="eth0",count=3,inter=0.1)`, v6Web1, v6Web2, v6Web3, v6Web1, v6Web3))
	eventually(t, 10*time.Second, "kvm1 counts the spoofed NAs", func() (bool, string) {
		n := e.counter("kvm1", flows.CatIPv6Guard)
		return n >= guardBefore+6, fmt.Sprintf("ipv6-guard %d -> %d", guardBefore, n)
	})
	if m := e.neighMAC("blue-web-2", v6Web3); m != "52:54:00:b1:01:0d" {
		t.Errorf("after a spoofed NA blue-web-2 resolves %s to %q, want blue-web-3's 52:54:00:b1:01:0d", v6Web3, m)
	}

	// RA guard: blue-web-1 advertises itself as a router with a prefix;
	// blue-web-2 accepts RAs but must learn neither a default route nor an
	// address from it.
	guardBefore = e.counter("kvm1", flows.CatIPv6Guard)
	e.scapy("blue-web-1", `ll="fe80::5054:ff:feb1:10b"
p=Ether(src="52:54:00:b1:01:0b",dst="33:33:00:00:00:01")/IPv6(src=ll,dst="ff02::1")/ICMPv6ND_RA(routerlifetime=1800)/ICMPv6NDOptSrcLLAddr(lladdr="52:54:00:b1:01:0b")/ICMPv6NDOptPrefixInfo(prefix="2001:db8:bad::",prefixlen=64,L=1,A=1,validlifetime=3600,preferredlifetime=1800)
sendp(p,iface="eth0",count=5,inter=0.1)`)
	eventually(t, 10*time.Second, "kvm1 counts the guest RAs", func() (bool, string) {
		n := e.counter("kvm1", flows.CatIPv6Guard)
		return n >= guardBefore+5, fmt.Sprintf("ipv6-guard %d -> %d", guardBefore, n)
	})
	time.Sleep(time.Second) // bounded window for a negative check
	if out := e.vmExec("blue-web-2", "ip", "-6", "route", "show", "default"); strings.TrimSpace(out) != "" {
		t.Errorf("blue-web-2 installed a default route from a guest RA: %s", out)
	}
	if out := e.vmExec("blue-web-2", "ip", "-6", "addr", "show", "dev", "eth0"); strings.Contains(out, "2001:db8:bad:") {
		t.Errorf("blue-web-2 configured an address from a guest RA: %s", out)
	}
}
