package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

// More network ACL and security group behaviour on real ovs-vswitchd with
// real packets (issue 12, item 5): port-range edges, ICMP types, UDP, a
// group reference following membership across reloads, and ACLs under
// router-NIC routing. Each test edits the demo blueprint (polSpec) and
// starts its own lab; the helpers of policy_test.go (ruleCounter, tcpOK,
// tcpRefused, listen) do the probing.

// polSpec describes the policy edits made to the demo blueprint.
type polSpec struct {
	revision int
	// blueHead: keys of VPC blue written before its tiers (routing, acls),
	// each line indented by four spaces.
	blueHead string
	// webKeys, dbKeys: keys added to blue's tiers web and db (gateway, acl),
	// each line indented by eight spaces.
	webKeys, dbKeys string
	// groups: VM name -> its security_groups, e.g. "[web-sg]".
	groups map[string]string
	// after: VM name -> a line inserted after that VM's line (router NICs).
	after map[string]string
	// tail is appended to the blueprint (security_groups: ...).
	tail string
}

// text renders the spec onto the demo blueprint; a missing anchor is a
// test bug and fails the test.
func (s polSpec) text(t *testing.T) string {
	t.Helper()
	text := demoBlueprint(t, nil)
	rep := func(old, new string) {
		t.Helper()
		if strings.Count(text, old) < 1 {
			t.Fatalf("test bug: %q not in the demo blueprint", old)
		}
		text = strings.Replace(text, old, new, 1)
	}
	rep("revision: 1", fmt.Sprintf("revision: %d", max(s.revision, 1)))
	rep("  - name: blue\n    tiers:\n", "  - name: blue\n"+s.blueHead+"    tiers:\n")
	rep("        vni: 5001\n        cidr: 10.10.1.0/24\n", "        vni: 5001\n        cidr: 10.10.1.0/24\n"+s.webKeys)
	rep("        vni: 5002\n        cidr: 10.10.2.0/24\n", "        vni: 5002\n        cidr: 10.10.2.0/24\n"+s.dbKeys)
	vmLine := func(vm string) string {
		t.Helper()
		for _, line := range strings.Split(text, "\n") {
			if strings.Contains(line, "{name: "+vm+",") {
				return line
			}
		}
		t.Fatalf("test bug: VM %s not in the demo blueprint", vm)
		return ""
	}
	for vm, g := range s.groups {
		line := vmLine(vm)
		rep(line, strings.TrimSuffix(line, "}")+", security_groups: "+g+"}")
	}
	for vm, extra := range s.after {
		line := vmLine(vm)
		rep(line, line+"\n"+extra)
	}
	return text + s.tail
}

// blueDistributed: blue routes between its tiers in the switch (give both
// tiers a gateway: webGateway, dbGateway in webKeys, dbKeys).
const blueDistributed = "    routing: distributed\n"

const (
	webGateway = "        gateway: 10.10.1.1\n"
	dbGateway  = "        gateway: 10.10.2.1\n"
)

// defaultRoutes points blue's VMs at their tier's gateway (the distributed
// router's address, or the router NIC's).
func (e *env) defaultRoutes(vms ...string) {
	e.t.Helper()
	gw := map[string]string{"blue-web-1": "10.10.1.1", "blue-web-2": "10.10.1.1", "blue-db-1": "10.10.2.1", "blue-db-2": "10.10.2.1"}
	for _, vm := range vms {
		if out, err := e.lab.Exec(e.ctx, e.lab.VMNS(vm), "ip", "route", "add", "default", "via", gw[vm]); err != nil {
			e.t.Fatalf("%s: default route via %s: %v: %s", vm, gw[vm], err, out)
		}
	}
}

// reload writes the blueprint file (the controller watches it) and waits
// until every bridge has applied that revision.
func (e *env) reload(text string, revision uint32) {
	e.t.Helper()
	if err := os.WriteFile(e.bpPath, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	start := time.Now()
	if _, err := e.lab.WaitConverged(e.ctx, 30*time.Second, revision); err != nil {
		e.t.Fatalf("revision %d: %v", revision, err)
	}
	e.t.Logf("revision %d converged %s after the edit", revision, time.Since(start).Round(time.Millisecond))
}

// rises waits (bounded) until a policy rule's counter, summed over the
// hosts, exceeds before. Open vSwitch credits a packet handled by the
// slow path at once, one that hits a datapath flow at the next
// revalidator sweep: hence the wait.
func (e *env) rises(what string, cat flows.Category, obj uint32, before uint64) {
	e.t.Helper()
	eventually(e.t, 5*time.Second, what+": counter rises", func() (bool, string) {
		n := e.ruleCounter(cat, obj, allHosts...)
		return n > before, fmt.Sprintf("%d -> %d", before, n)
	})
}

// refused asserts that probe (nil: the traffic got through) fails every
// time, and repeats it until the counter of the deciding flow (cat, obj)
// has risen, so the refusal is the policy's and not, say, the userspace
// datapath dropping the first packet to a tunnel peer whose ARP entry it
// is still resolving ("neighbor cache miss").
func (e *env) refused(what string, cat flows.Category, obj uint32, probe func() error) {
	e.t.Helper()
	before := e.ruleCounter(cat, obj, allHosts...)
	deadline := time.Now().Add(10 * time.Second)
	for try := 1; ; try++ {
		if err := probe(); err == nil {
			e.t.Fatalf("%s: got through (try %d): must be refused", what, try)
		}
		n := e.ruleCounter(cat, obj, allHosts...)
		if n > before {
			if try > 1 {
				e.t.Logf("%s: counted at try %d", what, try)
			}
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: refused %d times, but the deciding flow's counter (%s %#x) did not rise (%d -> %d): dropped elsewhere", what, try, cat, obj, before, n)
		}
	}
}

// tcpProbe connects from a VM to ip:port (1 s window); nil = greeted.
func (e *env) tcpProbe(from, ip string, port int) func() error {
	return func() error { return e.lab.TCPConnect(e.ctx, from, ip, port, time.Second) }
}

// TestPolicyPortRangeEdges: a range rule allows exactly its edges and
// nothing beside them, for a security group (blue-web-1 -> blue-web-2,
// same tier, kvm1 -> kvm2) and for an ACL rule (blue-web-1 -> blue-db-1
// across blue's distributed router, kvm1 -> kvm3). 7000-7010 compiles to
// three port masks (7000/0xfff8, 7008/0xfffe, 7010), so 7000 and 7010 sit
// in different masks, and 6999 and 7011 just outside them.
func TestPolicyPortRangeEdges(t *testing.T) {
	e := startEnv(t, polSpec{
		blueHead: blueDistributed + `    acls:
      - name: db-acl
        rules:
          - {number: 10, action: allow, direction: ingress, protocol: tcp, ports: 7000-7010, cidrs: [10.10.1.0/24]}
          - {number: 20, action: allow, direction: ingress, protocol: icmp, cidrs: [0.0.0.0/0]}
`,
		webKeys: webGateway,
		dbKeys:  dbGateway + "        acl: db-acl\n",
		groups:  map[string]string{"blue-web-2": "[range-sg]"},
		tail: `security_groups:
  - name: range-sg
    ingress:
      - {protocol: tcp, ports: 7000-7010, cidrs: [10.10.0.0/16]}
`,
	}.text(t))
	e.defaultRoutes("blue-web-1", "blue-db-1")
	web2, db1 := e.vm("blue-web-2"), e.vm("blue-db-1")
	ports := []int{6999, 7000, 7010, 7011}
	for _, p := range ports {
		e.listen(web2.Name, p)
		e.listen(db1.Name, p)
	}
	sgObj := flows.SGRuleObject("range-sg", flows.DirIngress, 0)
	aclObj := flows.ACLRuleObject("blue", "db-acl", 10)
	aclDef := flows.ACLDefaultObject("blue", "db-acl", flows.DirIngress)
	for _, c := range []struct {
		what, dst string
		allow     flows.Category
		allowObj  uint32
		deny      flows.Category
		denyObj   uint32
	}{
		{"sg range-sg ingress[0] into blue-web-2", web2.IP, flows.CatSGRule, sgObj, flows.CatSGDefault, flows.VMObject(web2.Name)},
		{"acl blue/db-acl #10 into blue-db-1", db1.IP, flows.CatACLRule, aclObj, flows.CatACLDefault, aclDef},
	} {
		t.Logf("%s: ports %v", c.what, ports)
		for _, p := range []int{7000, 7010} {
			before := e.ruleCounter(c.allow, c.allowObj, allHosts...)
			e.tcpOK("blue-web-1", c.dst, p, 15*time.Second)
			e.rises(fmt.Sprintf("%s, tcp/%d allowed", c.what, p), c.allow, c.allowObj, before)
		}
		for _, p := range []int{6999, 7011} {
			e.refused(fmt.Sprintf("%s, tcp/%d (no-match verdict)", c.what, p), c.deny, c.denyObj, e.tcpProbe("blue-web-1", c.dst, p))
		}
	}
}

// icmpTimestampPy sends one ICMP timestamp request (type 13) and exits 0
// when the matching timestamp reply (type 14) arrives within the timeout.
// (iputils ping cannot send type 13: its -T is the IP timestamp option.)
const icmpTimestampPy = `
import os, socket, struct, sys, time
dst, t = sys.argv[1], float(sys.argv[2])
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
ident = os.getpid() & 0xffff
ms = int(time.time() * 1000) % 86400000
msg = struct.pack("!BBHHHIII", 13, 0, 0, ident, 1, ms, 0, 0)
msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(msg, (dst, 0))
deadline = time.time() + t
while True:
    left = deadline - time.time()
    if left <= 0:
        sys.exit("no timestamp reply from %s within %ss" % (dst, t))
    s.settimeout(left)
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        continue
    ihl = (data[0] & 0xf) * 4
    typ, code, _, rid = struct.unpack("!BBHH", data[ihl:ihl + 6])
    if addr[0] == dst and typ == 14 and rid == ident:
        print("timestamp reply")
        break
`

// icmpTimestamp: nil when from's timestamp request to ip is answered
// within timeout.
func (e *env) icmpTimestamp(from, ip string, timeout time.Duration) error {
	e.t.Helper()
	return e.pyProbe(from, timeout, icmpTimestampPy, ip, fmt.Sprint(timeout.Seconds()))
}

// pyProbe runs a python probe script in a VM (bounded by timeout + 5 s);
// its failure is the script's last line of output (not its source text).
func (e *env) pyProbe(from string, timeout time.Duration, script string, args ...string) error {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, timeout+5*time.Second)
	defer cancel()
	out, err := e.lab.Exec(ctx, e.lab.VMNS(from), append([]string{labPython(e.t), "-c", script}, args...)...)
	if err != nil {
		return fmt.Errorf("probe from %s: %s", from, tailLines(strings.TrimSpace(out), 1))
	}
	return nil
}

// TestPolicyICMPType: a security group rule allowing icmp type 8 (echo)
// lets ping into blue-web-2 and not a timestamp request (type 13); one
// allowing only type 13 (code 0) lets a timestamp request into blue-db-1
// and not a ping. The senders carry client-sg (nothing allowed in), so each
// reply (echo reply 0, timestamp reply 14) passes only as the reply of an
// allowed connection. Both pairs cross hosts inside one tier.
func TestPolicyICMPType(t *testing.T) {
	e := startEnv(t, polSpec{
		groups: map[string]string{"blue-web-1": "[client-sg]", "blue-web-2": "[echo-sg]", "blue-db-1": "[ts-sg]", "blue-db-2": "[client-sg]"},
		tail: `security_groups:
  - name: echo-sg
    ingress:
      - {protocol: icmp, icmp: {type: 8}, cidrs: [10.10.0.0/16]}
  - name: ts-sg
    ingress:
      - {protocol: icmp, icmp: {type: 13, code: 0}, cidrs: [10.10.0.0/16]}
  - name: client-sg
    ingress: []
`,
	}.text(t))
	web2, db1 := e.vm("blue-web-2"), e.vm("blue-db-1")
	echoObj := flows.SGRuleObject("echo-sg", flows.DirIngress, 0)
	tsObj := flows.SGRuleObject("ts-sg", flows.DirIngress, 0)

	// Type 8 allowed into blue-web-2 (kvm1 -> kvm2) ...
	before := e.ruleCounter(flows.CatSGRule, echoObj, allHosts...)
	e.pingOK("blue-web-1", web2.IP, 15*time.Second)
	e.rises("sg echo-sg ingress[0] (icmp type 8)", flows.CatSGRule, echoObj, before)
	// ... type 13 not.
	e.refused("icmp timestamp request blue-web-1 -> blue-web-2 (echo-sg allows type 8 only; blue-web-2's sg-default)",
		flows.CatSGDefault, flows.VMObject(web2.Name), func() error { return e.icmpTimestamp("blue-web-1", web2.IP, time.Second) })

	// Type 13 allowed into blue-db-1 (kvm1 -> kvm3) ...
	before = e.ruleCounter(flows.CatSGRule, tsObj, allHosts...)
	eventually(t, 15*time.Second, "blue-db-2's timestamp request to blue-db-1 answered", func() (bool, string) {
		err := e.icmpTimestamp("blue-db-2", db1.IP, time.Second)
		return err == nil, fmt.Sprint(err)
	})
	e.rises("sg ts-sg ingress[0] (icmp type 13)", flows.CatSGRule, tsObj, before)
	// ... type 8 not.
	e.refused("ping blue-db-2 -> blue-db-1 (ts-sg allows type 13 only; blue-db-1's sg-default)",
		flows.CatSGDefault, flows.VMObject(db1.Name), func() error {
			if _, recv, err := e.lab.Ping(e.ctx, "blue-db-2", db1.IP, 1, 200*time.Millisecond, time.Second); err != nil || recv == 0 {
				return fmt.Errorf("no reply (%v)", err)
			}
			return nil
		})
}

// udpEchoPy sends one datagram and exits 0 when the same datagram comes
// back (lab.Listen's udp listener echoes) within the timeout.
const udpEchoPy = `
import socket, sys
ip, port, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(t)
msg = b"vpcflow-udp-probe"
s.sendto(msg, (ip, port))
try:
    d, a = s.recvfrom(2048)
except socket.timeout:
    sys.exit("no udp reply from %s:%d within %ss" % (ip, port, t))
if d != msg:
    sys.exit("udp reply %r is not the probe" % d)
print("echo")
`

// udpEcho: nil when a datagram from `from` to ip:port is echoed back
// within timeout.
func (e *env) udpEcho(from, ip string, port int, timeout time.Duration) error {
	e.t.Helper()
	return e.pyProbe(from, timeout, udpEchoPy, ip, fmt.Sprint(port), fmt.Sprint(timeout.Seconds()))
}

func (e *env) listenUDP(vm string, port int) *lab.Proc {
	e.t.Helper()
	ln, err := e.lab.Listen(vm, "udp", port)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = ln.Stop() })
	return ln
}

// TestPolicyUDP: udp-sg allows udp 5300 into blue-web-2: a datagram from
// blue-web-1 (client-sg: nothing allowed in) is echoed back, the echo
// passing blue-web-1 as the reply of an allowed flow; a datagram to 5301
// gets nothing and never reaches the listener; a NEW datagram the other
// way (blue-web-2 -> blue-web-1:5300) is refused too.
func TestPolicyUDP(t *testing.T) {
	e := startEnv(t, polSpec{
		groups: map[string]string{"blue-web-1": "[client-sg]", "blue-web-2": "[udp-sg]"},
		tail: `security_groups:
  - name: udp-sg
    ingress:
      - {protocol: udp, ports: 5300, cidrs: [10.10.0.0/16]}
  - name: client-sg
    ingress: []
`,
	}.text(t))
	web1, web2 := e.vm("blue-web-1"), e.vm("blue-web-2")
	allowObj := flows.SGRuleObject("udp-sg", flows.DirIngress, 0)
	e.listenUDP(web2.Name, 5300)
	denied := e.listenUDP(web2.Name, 5301)
	back := e.listenUDP(web1.Name, 5300)

	before := e.ruleCounter(flows.CatSGRule, allowObj, allHosts...)
	eventually(t, 15*time.Second, "udp blue-web-1 -> blue-web-2:5300 echoed", func() (bool, string) {
		err := e.udpEcho(web1.Name, web2.IP, 5300, time.Second)
		return err == nil, fmt.Sprint(err)
	})
	e.rises("sg udp-sg ingress[0] (udp 5300)", flows.CatSGRule, allowObj, before)

	e.refused("udp blue-web-1 -> blue-web-2:5301 (udp-sg allows 5300 only; blue-web-2's sg-default)",
		flows.CatSGDefault, flows.VMObject(web2.Name), func() error { return e.udpEcho(web1.Name, web2.IP, 5301, time.Second) })
	if strings.Contains(denied.Log(), "datagram") {
		t.Errorf("the udp 5301 listener on blue-web-2 received a datagram:\n%s", denied.Log())
	}

	e.refused("udp blue-web-2 -> blue-web-1:5300, a new flow (client-sg allows nothing in; blue-web-1's sg-default)",
		flows.CatSGDefault, flows.VMObject(web1.Name), func() error { return e.udpEcho(web2.Name, web1.IP, 5300, time.Second) })
	if strings.Contains(back.Log(), "datagram") {
		t.Errorf("the udp 5300 listener on blue-web-1 received a datagram:\n%s", back.Log())
	}
}

// TestPolicyGroupMembership: db-sg lets tcp 5432 into blue-db-1 (kvm3)
// from the members of web-sg only, across blue's distributed router.
// blue-web-2 (kvm2, in web-sg) connects; blue-web-1 (kvm1) is refused
// until a reload adds it to web-sg, and refused again once a reload
// removes it. The first connection attempt after each reload's
// convergence must already see the new membership.
func TestPolicyGroupMembership(t *testing.T) {
	spec := func(rev int, web1Groups string) string {
		s := polSpec{
			revision: rev,
			blueHead: blueDistributed,
			webKeys:  webGateway,
			dbKeys:   dbGateway,
			groups:   map[string]string{"blue-web-2": "[web-sg]", "blue-db-1": "[db-sg]"},
			tail: `security_groups:
  - name: db-sg
    ingress:
      - {protocol: tcp, ports: 5432, groups: [web-sg]}
  - name: web-sg
    ingress: []
`,
		}
		if web1Groups != "" {
			s.groups["blue-web-1"] = web1Groups
		}
		return s.text(t)
	}
	// No drift repair during the test (--drift-interval 1h): what the
	// reloads install must be right by itself, not fixed seconds later by a
	// full read-back.
	e := startEnv(t, spec(1, ""), "--drift-interval", "1h")
	e.defaultRoutes("blue-web-1", "blue-web-2", "blue-db-1", "blue-db-2")
	db1 := e.vm("blue-db-1")
	e.listen(db1.Name, 5432)
	ruleObj := flows.SGRuleObject("db-sg", flows.DirIngress, 0)
	denyObj := flows.VMObject(db1.Name)

	// Revision 1: only blue-web-2 is in web-sg.
	before := e.ruleCounter(flows.CatSGRule, ruleObj, allHosts...)
	e.tcpOK("blue-web-2", db1.IP, 5432, 15*time.Second)
	e.rises("sg db-sg ingress[0] (blue-web-2, a web-sg member)", flows.CatSGRule, ruleObj, before)
	// blue-web-1's path to tier db works: it reaches blue-db-2 (no group).
	e.pingOK("blue-web-1", e.vm("blue-db-2").IP, 10*time.Second)
	e.refused("tcp blue-web-1 -> blue-db-1:5432, not in web-sg (blue-db-1's sg-default)", flows.CatSGDefault, denyObj, e.tcpProbe("blue-web-1", db1.IP, 5432))

	// Revision 2: blue-web-1 joins web-sg.
	e.reload(spec(2, "[web-sg]"), 2)
	before = e.ruleCounter(flows.CatSGRule, ruleObj, allHosts...)
	if err := e.lab.TCPConnect(e.ctx, "blue-web-1", db1.IP, 5432, 2*time.Second); err != nil {
		t.Fatalf("tcp blue-web-1 -> blue-db-1:5432 right after revision 2 (blue-web-1 now in web-sg): %s", tailLines(err.Error(), 1))
	}
	e.rises("sg db-sg ingress[0] (blue-web-1, now a web-sg member)", flows.CatSGRule, ruleObj, before)

	// Revision 3: it leaves web-sg again.
	e.reload(spec(3, ""), 3)
	e.refused("tcp blue-web-1 -> blue-db-1:5432, removed from web-sg (blue-db-1's sg-default)", flows.CatSGDefault, denyObj, e.tcpProbe("blue-web-1", db1.IP, 5432))
	e.tcpOK("blue-web-2", db1.IP, 5432, 10*time.Second)
}

// routerNamespace makes blue's router: the lab gives every NIC its own
// namespace, so the db NIC moves into the web NIC's namespace, which
// forwards (as in TestRouterNIC).
func (e *env) routerNamespace(webNIC, dbNIC, dbAddr string) {
	e.t.Helper()
	l := e.lab
	vr, dbNS := l.VMNS(webNIC), l.VMNS(dbNIC)
	for _, c := range []struct {
		ns   string
		argv []string
	}{
		{dbNS, []string{"ip", "link", "set", "eth0", "down"}},
		{dbNS, []string{"ip", "link", "set", "eth0", "name", "vrdb"}},
		{dbNS, []string{"ip", "link", "set", "vrdb", "netns", vr}},
		{vr, []string{"ip", "addr", "add", dbAddr, "dev", "vrdb"}},
		{vr, []string{"ip", "link", "set", "vrdb", "up"}},
		{vr, []string{"sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.arp_announce=2"}},
	} {
		if out, err := l.Exec(e.ctx, c.ns, c.argv...); err != nil {
			e.t.Fatalf("router: %s: %v: %s", strings.Join(c.argv, " "), err, out)
		}
	}
}

// TestPolicyRouterNIC: with routing: router (the default), blue's virtual
// router (NICs 10.10.1.1 and 10.10.2.1 on kvm3, one forwarding namespace)
// carries traffic between tiers web and db, and db-acl judges it: #10
// allows tcp 7000 in from web, anything else in is denied (no match: tcp
// 9090), #30 denies tcp 7001 out to web. Tier web has no ACL and no
// groups, so its VMs are not policy VMs: only the db side's point (on the
// db VM's host) can judge. Two paths: blue-web-1 (kvm1) -> router (kvm3)
// -> blue-db-1 (kvm3, delivered locally by the router's host) and
// blue-web-2 (kvm2) -> router (kvm3) -> blue-db-2 (kvm1, over a tunnel);
// and blue-db-1 -> blue-web-1 for the egress rule.
func TestPolicyRouterNIC(t *testing.T) {
	e := startEnv(t, polSpec{
		blueHead: `    acls:
      - name: db-acl
        rules:
          - {number: 10, action: allow, direction: ingress, protocol: tcp, ports: 7000, cidrs: [10.10.1.0/24]}
          - {number: 20, action: allow, direction: ingress, protocol: icmp, cidrs: [0.0.0.0/0]}
          - {number: 30, action: deny, direction: egress, protocol: tcp, ports: 7001, cidrs: [10.10.1.0/24]}
`,
		dbKeys: "        acl: db-acl\n",
		after: map[string]string{
			"blue-web-2": `          - {name: blue-vr-web, host: kvm3, port: vnet5, mac: "52:54:00:b1:ff:01", ip: 10.10.1.1, role: router}`,
			"blue-db-2":  `          - {name: blue-vr-db, host: kvm3, port: vnet6, mac: "52:54:00:b1:ff:02", ip: 10.10.2.1, role: router}`,
		},
	}.text(t))
	if e.vm("blue-vr-web").Role != "router" || e.vm("blue-vr-db").Role != "router" {
		t.Fatal("router NICs missing from the test blueprint")
	}
	if e.bp.VPCs[0].IsDistributed() {
		t.Fatal("test bug: blue must route through its router NIC")
	}
	e.routerNamespace("blue-vr-web", "blue-vr-db", "10.10.2.1/24")
	e.defaultRoutes("blue-web-1", "blue-web-2", "blue-db-1", "blue-db-2")
	for _, vm := range []string{"blue-db-1", "blue-db-2"} {
		e.listen(vm, aclAllowFirst) // 7000
		e.listen(vm, polDeniedPort) // 9090
	}
	web1 := e.vm("blue-web-1")
	e.listen(web1.Name, 7000)
	e.listen(web1.Name, 7001)
	allowObj := flows.ACLRuleObject("blue", "db-acl", 10)
	defObj := flows.ACLDefaultObject("blue", "db-acl", flows.DirIngress)
	egressObj := flows.ACLRuleObject("blue", "db-acl", 30)

	for _, c := range []struct{ from, to string }{{"blue-web-1", "blue-db-1"}, {"blue-web-2", "blue-db-2"}} {
		dst := e.vm(c.to).IP
		// Through the router (db-acl #20 allows icmp): the path works.
		e.pingOK(c.from, dst, 15*time.Second)
		before := e.ruleCounter(flows.CatACLRule, allowObj, allHosts...)
		e.tcpOK(c.from, dst, 7000, 10*time.Second)
		e.rises(fmt.Sprintf("acl blue/db-acl #10 (tcp %s -> %s:7000 through the router)", c.from, c.to), flows.CatACLRule, allowObj, before)
		e.refused(fmt.Sprintf("tcp %s -> %s:9090 through the router (blue/db-acl's ingress no-match verdict)", c.from, c.to),
			flows.CatACLDefault, defObj, e.tcpProbe(c.from, dst, polDeniedPort))
	}

	// Out of tier db: egress is allowed unless a rule denies it.
	e.tcpOK("blue-db-1", web1.IP, 7000, 10*time.Second)
	e.refused("tcp blue-db-1 -> blue-web-1:7001 through the router (acl blue/db-acl #30, egress deny)",
		flows.CatACLRule, egressObj, e.tcpProbe("blue-db-1", web1.IP, 7001))
}
