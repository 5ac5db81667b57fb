package e2e

// Fault injection on real Open vSwitch (security issue §6): ovs-vswitchd
// killed mid-bundle, the controller killed mid-reconcile, the controller's
// OpenFlow traffic dropped for 30 s, and blueprint file faults (unreadable,
// disk full, corrupt). After each fault the flows end exactly as compiled
// (status converged with read-back equal, dump-flows count equal, `vpcflow
// audit` in sync); tcpdump in every VM proves no guest frame crossed VPCs at
// any time while cross-VPC traffic generators ran; an established same-tier
// ping across hosts loses nothing unless the fault itself cuts the dataplane.

import (
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

// ---------------------------------------------------------------------------
// Leak watch: a capture in every VM plus cross-VPC traffic generators.

// vmFacts is what the leak analysis knows about one VM.
type vmFacts struct {
	name, vpc, host, mac, ip string
}

// leakWatch runs tcpdump in every VM namespace for the whole fault window
// and (optionally) cross-VPC traffic generators.
type leakWatch struct {
	e        *env
	vms      map[string]vmFacts        // by VM name
	byMAC    map[string]vmFacts        // by lower-case MAC
	prefixes map[string][]netip.Prefix // VPC -> tier prefixes
	caps     map[string]*lab.Capture   // victim VM -> capture
	gens     []*lab.Proc
	genDesc  []string
	stopped  bool
}

// crossVPCGenerators are unicast probes addressed (by a static neighbour
// entry, like lab.Matrix's ping-mac trick) to a VM of the other VPC,
// covering every host pair direction that matters.
var crossVPCGenerators = [][2]string{
	{"red-web-1", "blue-web-2"}, // kvm1 -> kvm2, overlapping address 10.10.1.12
	{"blue-web-1", "red-app-1"}, // kvm1 -> kvm2
	{"red-app-1", "blue-web-1"}, // kvm2 -> kvm1
	{"blue-db-1", "red-web-1"},  // kvm3 -> kvm1
	{"red-web-2", "blue-db-2"},  // kvm3 -> kvm1
	{"red-app-1", "blue-web-2"}, // kvm2 -> kvm2 (same host)
	{"blue-db-2", "red-web-1"},  // kvm1 -> kvm1 (same host)
}

// broadcastGenerators send ARP broadcasts: for an absent address of the
// own tier (tier flooding) and for the controller's address through an
// on-link route (the frames OVS's hidden in-band rules match while in-band
// control is open).
var broadcastGenerators = [][2]string{
	{"red-web-1", "10.10.1.99"},
	{"blue-web-2", "10.10.1.98"},
	{"red-web-1", lab.DefaultMgmtAddr},
	{"blue-db-2", lab.DefaultMgmtAddr},
	{"red-app-1", lab.DefaultMgmtAddr},
	{"blue-web-2", lab.DefaultMgmtAddr},
	{"red-web-2", lab.DefaultMgmtAddr},
}

// startLeakWatch starts a capture (frames not sent by the VM itself) in
// every VM and, if generators is set, the cross-VPC and broadcast traffic
// generators. Stop it with check; cleanup stops everything anyway.
func startLeakWatch(t *testing.T, e *env, generators bool) *leakWatch {
	t.Helper()
	w := &leakWatch{e: e, vms: map[string]vmFacts{}, byMAC: map[string]vmFacts{},
		prefixes: map[string][]netip.Prefix{}, caps: map[string]*lab.Capture{}}
	for _, p := range e.bp.VPCs {
		for _, tier := range p.Tiers {
			if pfx, err := netip.ParsePrefix(tier.CIDR); err == nil {
				w.prefixes[p.Name] = append(w.prefixes[p.Name], pfx)
			}
			for _, v := range tier.VMs {
				f := vmFacts{name: v.Name, vpc: p.Name, host: v.Host, mac: strings.ToLower(v.MAC), ip: v.IP}
				w.vms[v.Name] = f
				w.byMAC[f.mac] = f
			}
		}
	}
	t.Cleanup(w.stop)
	names := make([]string, 0, len(w.vms))
	for n := range w.vms {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c, err := e.lab.Capture(e.ctx, n, lab.VMIface, "not ether src "+w.vms[n].mac)
		if err != nil {
			t.Fatalf("leak watch: capture in %s: %v", n, err)
		}
		w.caps[n] = c
	}
	if !generators {
		return w
	}
	for _, g := range crossVPCGenerators {
		from, to := w.vms[g[0]], w.vms[g[1]]
		if from.vpc == to.vpc {
			t.Fatalf("test bug: generator %s -> %s is not cross-VPC", from.name, to.name)
		}
		ns := e.lab.VMNS(from.name)
		if _, err := e.lab.Exec(e.ctx, ns, "ip", "route", "replace", to.ip+"/32", "dev", lab.VMIface); err != nil {
			t.Fatal(err)
		}
		if _, err := e.lab.Exec(e.ctx, ns, "ip", "neigh", "replace", to.ip, "lladdr", to.mac, "dev", lab.VMIface, "nud", "permanent"); err != nil {
			t.Fatal(err)
		}
		p, err := e.lab.StartPing(from.name, to.ip, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		w.gens = append(w.gens, p)
		w.genDesc = append(w.genDesc, fmt.Sprintf("%s(%s) -> %s(%s) %s@%s", from.name, from.vpc, to.name, to.vpc, to.ip, to.mac))
	}
	for _, g := range broadcastGenerators {
		ns := e.lab.VMNS(g[0])
		if _, err := e.lab.Exec(e.ctx, ns, "ip", "route", "replace", g[1]+"/32", "dev", lab.VMIface); err != nil {
			t.Fatal(err)
		}
		p, err := e.lab.StartPing(g[0], g[1], 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		w.gens = append(w.gens, p)
		w.genDesc = append(w.genDesc, fmt.Sprintf("%s ARP broadcast for %s", g[0], g[1]))
	}
	return w
}

func (w *leakWatch) stop() {
	if w.stopped {
		return
	}
	w.stopped = true
	for _, g := range w.gens {
		_ = g.Stop()
	}
	for _, c := range w.caps {
		_, _ = c.Stop()
	}
}

var (
	ipv4Src   = regexp.MustCompile(`length \d+: (\d+\.\d+\.\d+\.\d+)(?:\.\d+)? > `)
	arpTell   = regexp.MustCompile(`Request who-has \S+ tell (\d+\.\d+\.\d+\.\d+)`)
	arpReply  = regexp.MustCompile(`Reply (\d+\.\d+\.\d+\.\d+) is-at`)
	tcpdumpTS = regexp.MustCompile(`^\d{2}:\d{2}:\d{2}\.\d+ `)
)

// check stops the watch and fails the test for every captured frame that a
// VM of another VPC sent (by source MAC, and by sender IP where the address
// belongs only to another VPC's tiers). positive names victims that must
// have received frames from their own VPC (proof the capture worked).
func (w *leakWatch) check(t *testing.T, positive ...string) {
	t.Helper()
	w.stop()
	for i, g := range w.gens {
		tx, rx := g.PingStats()
		if tx == 0 && !strings.Contains(g.Log(), "PING") {
			t.Errorf("leak watch: generator %s did not run: %s", w.genDesc[i], tailLines(g.Log(), 3))
		}
		if strings.Contains(w.genDesc[i], "->") && rx > 0 {
			t.Errorf("LEAK: cross-VPC generator %s got %d/%d echo replies", w.genDesc[i], rx, tx)
		}
	}
	var leaks, foreign []string
	total, nForeign := 0, 0
	for victim, c := range w.caps {
		me := w.vms[victim]
		own, other := 0, 0
		for _, line := range strings.Split(c.Text(), "\n") {
			if !tcpdumpTS.MatchString(line) {
				continue
			}
			total++
			fs := strings.Fields(line)
			if len(fs) < 2 {
				continue
			}
			src := strings.ToLower(fs[1])
			leak := false
			if f, ok := w.byMAC[src]; ok {
				if f.vpc != me.vpc {
					leak = true
				} else {
					own++
				}
			} else {
				other++
				nForeign++
				if len(foreign) < 20 {
					foreign = append(foreign, victim+": "+line)
				}
			}
			sender := ""
			for _, re := range []*regexp.Regexp{ipv4Src, arpTell, arpReply} {
				if m := re.FindStringSubmatch(line); m != nil {
					sender = m[1]
					break
				}
			}
			if a, err := netip.ParseAddr(sender); err == nil && w.otherVPCOnly(me.vpc, a) {
				leak = true
			}
			if leak {
				leaks = append(leaks, fmt.Sprintf("%s (vpc %s) received: %s", victim, me.vpc, line))
			}
		}
		t.Logf("leak watch: %-10s captured %4d frames from its own VPC, %3d from non-VM sources", victim, own, other)
		for _, p := range positive {
			if p == victim && own == 0 {
				t.Errorf("leak watch: %s captured no frame from its own VPC: the capture did not work, the leak check proves nothing", victim)
			}
		}
	}
	if len(foreign) > 0 {
		// Not guest traffic crossing VPCs, but management/underlay frames
		// (e.g. the controller's OpenFlow session, the host's ARP) handed
		// to guests: a management -> guest separation failure.
		inBandFinding(t, "SECURITY: %d frames not sent by any VM (management/underlay traffic) reached guests during the fault:\n  %s", nForeign, strings.Join(foreign, "\n  "))
	}
	if len(leaks) > 0 {
		if len(leaks) > 30 {
			leaks = append(leaks[:30], fmt.Sprintf("... and %d more", len(leaks)-30))
		}
		t.Errorf("LEAK: %d guest frames crossed VPCs during the fault:\n  %s", len(leaks), strings.Join(leaks, "\n  "))
	} else {
		t.Logf("leak watch: no cross-VPC frame in %d captured frames (%d generators)", total, len(w.gens))
	}
}

// otherVPCOnly reports whether a belongs to a tier of another VPC and to no
// tier of vpc (the VPCs' CIDRs may overlap).
func (w *leakWatch) otherVPCOnly(vpc string, a netip.Addr) bool {
	for _, p := range w.prefixes[vpc] {
		if p.Contains(a) {
			return false
		}
	}
	for v, ps := range w.prefixes {
		if v == vpc {
			continue
		}
		for _, p := range ps {
			if p.Contains(a) {
				return true
			}
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// Established ping analysis (ping -D -O output).

var pingLineTS = regexp.MustCompile(`^\[(\d+\.\d+)\] (?:\d+ bytes from .*icmp_seq=(\d+)|no answer yet for icmp_seq=(\d+))`)

// pingTimeline returns the reply timestamps by sequence number and the
// sequence numbers reported missing.
func pingTimeline(p *lab.Proc) (replies map[int]time.Time, missing []int) {
	replies = map[int]time.Time{}
	for _, line := range strings.Split(p.Log(), "\n") {
		m := pingLineTS.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f, _ := strconv.ParseFloat(m[1], 64)
		ts := time.Unix(0, int64(f*1e9))
		if m[2] != "" {
			n, _ := strconv.Atoi(m[2])
			replies[n] = ts
		} else {
			n, _ := strconv.Atoi(m[3])
			missing = append(missing, n)
		}
	}
	return replies, missing
}

// pingGap is the longest time between two consecutive replies, and the
// first reply at or after t0.
func pingGap(replies map[int]time.Time, t0 time.Time) (gap time.Duration, firstAfter time.Time) {
	var ts []time.Time
	for _, v := range replies {
		ts = append(ts, v)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	for i := range ts {
		if i > 0 && ts[i].Sub(ts[i-1]) > gap {
			gap = ts[i].Sub(ts[i-1])
		}
		if firstAfter.IsZero() && !ts[i].Before(t0) {
			firstAfter = ts[i]
		}
	}
	return gap, firstAfter
}

// pingRecovery is the reply that ends the longest gap between replies from
// t0 on (the last reply before t0 counts as the gap's start): when the
// dataplane came back after an outage that began around t0.
func pingRecovery(replies map[int]time.Time, t0 time.Time) time.Time {
	var ts []time.Time
	for _, v := range replies {
		ts = append(ts, v)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	var best time.Time
	var gap time.Duration
	for i := 1; i < len(ts); i++ {
		if ts[i].Before(t0) {
			continue
		}
		if d := ts[i].Sub(ts[i-1]); d > gap {
			gap, best = d, ts[i]
		}
	}
	return best
}

// assertNoLoss stops an established ping and fails on more than one lost
// echo (the last one may be in flight when ping is stopped).
func assertNoLoss(t *testing.T, p *lab.Proc, what string, minTx int) {
	t.Helper()
	if err := p.Stop(); err != nil {
		t.Logf("stop ping: %v", err)
	}
	tx, rx := p.PingStats()
	replies, _ := pingTimeline(p)
	gap, _ := pingGap(replies, time.Time{})
	t.Logf("established ping across %s: %d transmitted, %d received, %d lost, longest gap between replies %s",
		what, tx, rx, tx-rx, gap.Round(time.Millisecond))
	if tx < minTx || tx-rx > 1 {
		t.Errorf("established same-tier ping lost packets across %s: %d transmitted, %d received (longest gap %s)", what, tx, rx, gap.Round(time.Millisecond))
	}
}

// ---------------------------------------------------------------------------
// Flows exactly as compiled.

// assertExact waits until every bridge is converged at revision rev and
// then checks that the switches hold exactly the compiled flows: status
// read-back equal (intended == installed), `ovs-ofctl dump-flows` count ==
// intended, and `vpcflow audit` in sync (exit 0).
func assertExact(t *testing.T, e *env, rev uint32, timeout time.Duration) *controller.Status {
	t.Helper()
	st, err := e.lab.WaitConverged(e.ctx, timeout, rev)
	if err != nil {
		t.Fatalf("flows not as compiled: %v", err)
	}
	if st.Revision != rev {
		t.Fatalf("controller enforces revision %d, want %d", st.Revision, rev)
	}
	for _, b := range st.Bridges {
		if !b.Known {
			continue
		}
		n, err := e.lab.FlowCount(e.ctx, b.Host)
		if err != nil {
			t.Fatal(err)
		}
		if !b.Converged || b.FlowsIntended != b.FlowsInstalled || n != b.FlowsIntended || b.Revision != rev {
			t.Errorf("%s: converged %v, revision %d, intended %d, installed (read-back) %d, dump-flows %d: want exactly the compiled flows of revision %d",
				b.Host, b.Converged, b.Revision, b.FlowsIntended, b.FlowsInstalled, n, rev)
		}
	}
	rep, code := e.audit()
	if code != 0 || !rep.InSync || !rep.Complete {
		var drift []string
		for _, b := range rep.Bridges {
			if b.Drift || !b.Audited {
				drift = append(drift, fmt.Sprintf("%s: audited %v %s missing %d extra %d modified %d", b.Host, b.Audited, b.Error, len(b.Missing), len(b.Extra), len(b.Modified)))
			}
		}
		t.Errorf("vpcflow audit after the fault: exit %d, in_sync %v, complete %v: %s", code, rep.InSync, rep.Complete, strings.Join(drift, "; "))
	}
	return st
}

func bridgeOf(st *controller.Status, host string) controller.BridgeStatus {
	for _, b := range st.Bridges {
		if b.Host == host {
			return b
		}
	}
	return controller.BridgeStatus{}
}

// ---------------------------------------------------------------------------
// Big change: a bundle large enough to be caught in flight.

// bulkVMs is the number of remote VMs the big change adds: about two flows
// each on kvm1 (and on kvm2/kvm3 for the VMs of the other host).
const bulkVMs = 8000

// bulkBlueprint is the demo blueprint at revision 2 with a new tier "bulk"
// in VPC blue: one VM on kvm1 (port bulk0, absent: reported as missing) and
// bulkVMs VMs split over kvm2 and kvm3 (ports absent). kvm1 gets flows for
// every remote VM of the tier. Existing tiers and VMs are untouched.
func bulkBlueprint(t *testing.T) string {
	var b strings.Builder
	b.WriteString("      - name: bulk\n        vni: 5003\n        cidr: 10.30.0.0/16\n        vms:\n")
	b.WriteString("          - {name: bulk-local, host: kvm1, port: bulk0, mac: \"52:54:01:00:ff:01\", ip: 10.30.255.1}\n")
	for i := 0; i < bulkVMs; i++ {
		h := "kvm2"
		if i%2 == 1 {
			h = "kvm3"
		}
		a := i + 2
		fmt.Fprintf(&b, "          - {name: bulk-%d, host: %s, port: b%d, mac: \"52:54:01:%02x:%02x:%02x\", ip: 10.30.%d.%d}\n",
			i, h, i, (a>>16)&0xff, (a>>8)&0xff, a&0xff, a>>8, a&0xff)
	}
	return demoBlueprint(t, func(s string) string {
		s = strings.Replace(s, "revision: 1", "revision: 2", 1)
		out := strings.Replace(s, "  - name: red\n", b.String()+"  - name: red\n", 1)
		if out == s {
			t.Fatal("test bug: bulk tier not inserted")
		}
		return out
	})
}

// writeAtomic replaces a file by rename, so no reader sees a partial file.
func writeAtomic(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

var hiddenPrio = regexp.MustCompile(`priority=(\d+)`)

var ssBytesReceived = regexp.MustCompile(`bytes_received:(\d+)`)

// ofBytesReceived is how many bytes a host's ovs-vswitchd has received on
// its OpenFlow connections to the controller (ss in the host namespace).
func ofBytesReceived(e *env, host string) (uint64, error) {
	out, err := e.lab.Exec(e.ctx, e.lab.HostNS(host), "ss", "-tinH", "state", "established", "dst", e.lab.MgmtAddr(), "dport", "=", ":6653")
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, m := range ssBytesReceived.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseUint(m[1], 10, 64)
		n += v
	}
	return n, nil
}

// waitBundleInFlight polls until host's ovs-vswitchd has received at least
// min bytes more than base from the controller: the bundle's adds are
// arriving. The controller sends the commit only after the switch has
// acknowledged every add (barrier), so this is before the commit.
func waitBundleInFlight(t *testing.T, e *env, host string, base, min uint64, timeout time.Duration) uint64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n, err := ofBytesReceived(e, host)
		if err == nil && n >= base+min {
			return n - base
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bundle in flight to %s within %s (received %d bytes since the reload, err %v)", host, timeout, n-base, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) sighup() {
	e.t.Helper()
	if err := syscall.Kill(e.ctl.Pid, syscall.SIGHUP); err != nil {
		e.t.Fatalf("SIGHUP controller: %v", err)
	}
}

// controllerLogSince returns the controller log from byte offset off.
func (e *env) controllerLogSince(off int) string {
	s := readFile(filepath.Join(e.lab.Dir(), "controller.log"))
	if off > len(s) {
		return ""
	}
	return s[off:]
}

func (e *env) controllerLogLen() int {
	return len(readFile(filepath.Join(e.lab.Dir(), "controller.log")))
}

// inBand reports whether any Controller row of a host is in-band (unset
// connection_mode means in-band).
func (e *env) inBand(host string) (bool, string) {
	out, err := e.lab.OVS(e.ctx, host, "ovs-vsctl", "--columns=connection_mode", "list", "controller")
	if err != nil {
		return false, err.Error()
	}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "connection_mode" {
			if m := strings.Trim(strings.TrimSpace(v), `"`); m != "out-of-band" {
				return true, out
			}
		}
	}
	return false, out
}

// ---------------------------------------------------------------------------
// 1. ovs-vswitchd killed mid-bundle.

// TestFaultVSwitchdKilledMidBundle: a large change (revision 2 adds a tier
// with 8,000 remote VMs: ~16,000 new flows on kvm1) is being sent to kvm1
// in one bundle when kvm1's ovs-vswitchd is SIGKILLed. The restarted
// ovs-vswitchd has an empty table (fail_mode=secure: it drops everything);
// the host watcher opens in-band control, the controller reconnects and
// installs the complete revision 2, the watcher closes in-band. kvm1's
// dataplane is cut from the kill until the flows are back: the established
// ping (blue-web-1 on kvm1 -> blue-web-2 on kvm2) loses packets then, and
// the test asserts its recovery instead. No guest frame crosses VPCs at any
// time.
func TestFaultVSwitchdKilledMidBundle(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, nil))
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	w := startLeakWatch(t, e, true)
	ping, err := e.lab.StartPing("blue-web-1", "10.10.1.12", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	waitReplies(t, ping, 10)

	bulk := bulkBlueprint(t)
	base, err := ofBytesReceived(e, "kvm1")
	if err != nil {
		t.Fatal(err)
	}
	logOff := e.controllerLogLen()
	reload := time.Now()
	writeAtomic(t, e.bpPath, bulk)
	e.sighup()
	got := waitBundleInFlight(t, e, "kvm1", base, 128<<10, 30*time.Second)
	pidfile := filepath.Join(e.lab.Dir(), "kvm1", "ovs-vswitchd.pid")
	pid := mustDaemonPid(t, pidfile, "ovs-vswitchd")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL ovs-vswitchd of kvm1 (pid %d): %v", pid, err)
	}
	killed := time.Now()
	t.Logf("kvm1 ovs-vswitchd (pid %d) SIGKILLed %s after the reload, with %d KiB of the bundle received", pid, killed.Sub(reload).Round(time.Millisecond), got>>10)
	eventually(t, 10*time.Second, "killed ovs-vswitchd gone", func() (bool, string) { return !lab.PidAlive(pid), "" })
	// Was it really mid-bundle? The controller logs "reconciled" for kvm1
	// only after the commit and the read-back.
	if pre := e.controllerLogSince(logOff); regexp.MustCompile(`msg=reconciled[^\n]*bridge=00000000000000a1`).MatchString(pre) {
		t.Fatalf("test timing: kvm1 had already committed and read back revision 2 when ovs-vswitchd was killed (not mid-bundle):\n%s", tailLines(pre, 10))
	}

	if err := e.lab.StartVSwitchd("kvm1"); err != nil {
		t.Fatal(err)
	}
	t.Logf("kvm1 ovs-vswitchd restarted %s after the kill", time.Since(killed).Round(time.Millisecond))
	st := assertExact(t, e, 2, 60*time.Second)
	conv := time.Since(killed)
	b1 := bridgeOf(st, "kvm1")
	t.Logf("kvm1 converged at revision 2 with %d flows (%d flow-mods on the new connection) %s after the kill", b1.FlowsInstalled, b1.FlowModsSent, conv.Round(time.Millisecond))
	// The restarted switch starts empty; the host watcher installs the
	// bootstrap management flows (identical to the controller's), so the
	// controller adds every other flow exactly once.
	if b1.FlowModsSent > uint64(b1.FlowsIntended) || b1.FlowModsSent+64 < uint64(b1.FlowsIntended) {
		t.Errorf("kvm1 after restart: %d flow-mods sent for %d intended flows: want every flow but the watcher's bootstrap flows added once", b1.FlowModsSent, b1.FlowsIntended)
	}
	eventually(t, 30*time.Second, "in-band control closed again on kvm1", func() (bool, string) {
		in, out := e.inBand("kvm1")
		return !in, out
	})
	t.Logf("kvm1 in-band control closed %s after the kill", time.Since(killed).Round(time.Millisecond))
	// The dataplane of kvm1 is back: replies resume and then none is lost.
	n := replies(ping)
	waitReplies(t, ping, n+40)
	if err := ping.Stop(); err != nil {
		t.Logf("stop ping: %v", err)
	}
	rs, _ := pingTimeline(ping)
	gap, _ := pingGap(rs, killed)
	// Recovery is the reply that ends the outage (the longest gap after the
	// kill), not the first reply stamped after the kill: an echo answered
	// just before the switch died can arrive after the kill's timestamp
	// when the CPUs are busy (that made all of the outage count as loss
	// "after recovery" in a busy-CPU run).
	first := pingRecovery(rs, killed)
	tx, rx := ping.PingStats()
	t.Logf("established ping (kvm1 dataplane cut by the kill): %d transmitted, %d received, outage %s, dataplane back %s after the kill",
		tx, rx, gap.Round(time.Millisecond), first.Sub(killed).Round(time.Millisecond))
	if first.IsZero() || first.Sub(killed) > 30*time.Second {
		t.Errorf("kvm1 dataplane did not recover within 30 s of the ovs-vswitchd kill")
	}
	// After recovery, no further loss: every echo after the reply that
	// ended the outage was answered.
	lostAfter := 0
	maxSeq := 0
	firstSeq := 0
	for seq, ts := range rs {
		if seq > maxSeq {
			maxSeq = seq
		}
		if ts.Equal(first) {
			firstSeq = seq
		}
	}
	for s := firstSeq; s < maxSeq; s++ {
		if _, ok := rs[s]; !ok {
			lostAfter++
		}
	}
	if lostAfter > 0 {
		t.Errorf("established ping lost %d echoes after kvm1's dataplane had recovered", lostAfter)
	}
	w.check(t, "blue-web-2")
	t.Logf("controller log around the fault:\n%s", grepLines(e.controllerLogSince(logOff), "00000000000000a1", 12))
}

// mustDaemonPid reads an OVS pidfile and checks the pid is that daemon.
func mustDaemonPid(t *testing.T, pidfile, daemon string) int {
	t.Helper()
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("pidfile %s: %q", pidfile, b)
	}
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(filepath.Base(strings.SplitN(string(cmd), "\x00", 2)[0]), daemon) {
		t.Fatalf("pid %d from %s is not %s (cmdline %q)", pid, pidfile, daemon, cmd)
	}
	return pid
}

// grepLines returns up to n lines of s containing sub.
func grepLines(s, sub string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}

// ---------------------------------------------------------------------------
// 2. Controller killed mid-reconcile.

// TestFaultControllerKilledMidReconcile: the controller is SIGKILLed while
// kvm1 receives the big revision-2 bundle. Bundles are atomic: kvm1 keeps
// exactly the old or the new set (the open bundle is discarded when the
// connection drops), so the established ping loses nothing; the restarted
// controller reads revision 2 and applies it everywhere.
func TestFaultControllerKilledMidReconcile(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, nil))
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	old := e.status()
	oldKvm1 := bridgeOf(old, "kvm1").FlowsInstalled
	w := startLeakWatch(t, e, true)
	ping, err := e.lab.StartPing("blue-web-1", "10.10.1.12", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	waitReplies(t, ping, 10)

	base, err := ofBytesReceived(e, "kvm1")
	if err != nil {
		t.Fatal(err)
	}
	reload := time.Now()
	writeAtomic(t, e.bpPath, bulkBlueprint(t))
	e.sighup()
	got := waitBundleInFlight(t, e, "kvm1", base, 128<<10, 30*time.Second)
	if err := e.ctl.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	t.Logf("controller SIGKILLed %s after the reload, with %d KiB of kvm1's bundle received", killed.Sub(reload).Round(time.Millisecond), got>>10)
	// The switch saw the connection drop: what it holds now is final until
	// a controller comes back. It must be the old set or the new set.
	var atKill int
	eventually(t, 15*time.Second, "kvm1 sees the controller gone", func() (bool, string) {
		n, err := ofBytesReceived(e, "kvm1")
		return err == nil && n == 0, fmt.Sprint(n, err)
	})
	if atKill, err = e.lab.FlowCount(e.ctx, "kvm1"); err != nil {
		t.Fatal(err)
	}
	e.startController()
	st := assertExact(t, e, 2, 60*time.Second)
	newKvm1 := bridgeOf(st, "kvm1").FlowsIntended
	t.Logf("controller restarted; all bridges at revision 2 %s after the kill; kvm1 held %d flows with the controller gone (old set %d, new set %d)",
		time.Since(killed).Round(time.Millisecond), atKill, oldKvm1, newKvm1)
	if atKill != oldKvm1 && atKill != newKvm1 {
		t.Errorf("kvm1 held %d flows after the controller died mid-bundle: neither the old set (%d) nor the new set (%d): the bundle was not atomic", atKill, oldKvm1, newKvm1)
	}
	n := replies(ping)
	waitReplies(t, ping, n+20)
	assertNoLoss(t, ping, "the controller kill mid-reconcile", n+20)
	w.check(t, "blue-web-2")
}

// ---------------------------------------------------------------------------
// 3. The controller's OpenFlow traffic dropped for 30 s.

// TestFaultControlChannelDropped: nftables in kvm2's host namespace drops
// all TCP to and from the controller's port 6653 for 30 s. The dataplane
// keeps forwarding on the installed flows (zero loss); the host watcher may
// open in-band control after its grace period, and even then a guest on
// kvm2 must not reach the controller. After the rules are removed kvm2
// reconnects, nothing needs changing (zero flow-mods), the watcher closes
// in-band, and the flows are exactly as compiled.
func TestFaultControlChannelDropped(t *testing.T) {
	const window = 30 * time.Second
	e := startEnv(t, demoBlueprint(t, nil))
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	e.pingOK("blue-web-2", "10.10.1.11", 10*time.Second)
	w := startLeakWatch(t, e, true)
	ping, err := e.lab.StartPing("blue-web-1", "10.10.1.12", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	waitReplies(t, ping, 10)

	ns := e.lab.HostNS("kvm2")
	rules := fmt.Sprintf(`table inet vffault {
  chain out { type filter hook output priority 0; policy accept;
    ip daddr %[1]s tcp dport 6653 drop
  }
  chain in { type filter hook input priority 0; policy accept;
    ip saddr %[1]s tcp sport 6653 drop
  }
}
`, e.lab.MgmtAddr())
	f := filepath.Join(t.TempDir(), "fault.nft")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	healed := false
	heal := func() error {
		if healed {
			return nil
		}
		healed = true
		_, err := e.lab.Exec(e.ctx, ns, "nft", "delete", "table", "inet", "vffault")
		return err
	}
	t.Cleanup(func() { _ = heal() })
	if _, err := e.lab.Exec(e.ctx, ns, "nft", "-f", f); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	t.Logf("kvm2: OpenFlow to/from %s:6653 dropped", e.lab.MgmtAddr())

	// During the window: watch the watcher; once in-band is open, a guest
	// on kvm2 tries the controller.
	var inbandAt, discAt time.Time
	probed := false
	for time.Since(cut) < window {
		if inbandAt.IsZero() {
			if in, _ := e.inBand("kvm2"); in {
				inbandAt = time.Now()
				t.Logf("kvm2: watcher opened in-band control %s into the window", inbandAt.Sub(cut).Round(time.Millisecond))
			}
		}
		if discAt.IsZero() {
			if st, err := e.lab.ControllerStatus(e.ctx); err == nil && !bridgeOf(st, "kvm2").Connected {
				discAt = time.Now()
				t.Logf("controller declared kvm2 disconnected %s into the window", discAt.Sub(cut).Round(time.Millisecond))
			}
		}
		if !inbandAt.IsZero() && !probed {
			probed = true
			guestToController(t, e, "blue-web-2", "while kvm2's in-band control is open")
		}
		time.Sleep(200 * time.Millisecond) // observation cadence inside the fixed fault window
	}
	if !probed {
		t.Logf("kvm2: the watcher did not open in-band control within the %s window", window)
		guestToController(t, e, "blue-web-2", "during the control-channel outage (in-band still closed)")
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	healAt := time.Now()
	t.Logf("kvm2: OpenFlow traffic restored after %s", healAt.Sub(cut).Round(time.Millisecond))

	var reconnected time.Duration
	eventually(t, 40*time.Second, "kvm2 reconnected after the outage and converged", func() (bool, string) {
		st, err := e.lab.ControllerStatus(e.ctx)
		if err != nil {
			return false, err.Error()
		}
		b := bridgeOf(st, "kvm2")
		if b.Connected && b.Converged && b.ConnectedSince.After(cut) {
			reconnected = time.Since(healAt)
			return true, ""
		}
		return false, fmt.Sprintf("%+v", b)
	})
	st := assertExact(t, e, 1, 30*time.Second)
	b2 := bridgeOf(st, "kvm2")
	t.Logf("kvm2 reconnected and converged %s after the restore (%d flow-mods on the new connection)", reconnected.Round(time.Millisecond), b2.FlowModsSent)
	if b2.FlowModsSent != 0 {
		t.Errorf("kvm2 got %d flow-mods after reconnecting: the flows never changed, the reconcile must be a no-op", b2.FlowModsSent)
	}
	eventually(t, 30*time.Second, "in-band control closed again on kvm2", func() (bool, string) {
		in, out := e.inBand("kvm2")
		return !in, out
	})
	t.Logf("kvm2: in-band control closed %s after the restore", time.Since(healAt).Round(time.Millisecond))
	guestToController(t, e, "blue-web-2", "after recovery")
	n := replies(ping)
	waitReplies(t, ping, n+10)
	assertNoLoss(t, ping, "the 30 s control-channel outage", 500)
	w.check(t, "blue-web-2")
}

// guestToController asserts that a guest, routing straight at the
// management network with the controller's real MAC, cannot open a TCP
// connection to the controller's OpenFlow port.
func guestToController(t *testing.T, e *env, vm, when string) {
	t.Helper()
	if err := e.lab.GuestRouteToUnderlay(e.ctx, vm); err != nil {
		t.Fatal(err)
	}
	host := e.vm(vm).Host
	guest := e.vm(vm)
	// Ground truth on the management side: any frame from the guest that
	// reaches the controller's host is a breach, even if TCP cannot
	// complete (the lab's management node has no route back to guest
	// subnets; a controller host with a default route would have one).
	capt, err := e.lab.Capture(e.ctx, "mgmt", lab.NodeIface, "ether src "+strings.ToLower(guest.MAC))
	if err != nil {
		t.Fatal(err)
	}
	open := e.lab.TCPOpen(e.ctx, vm, e.lab.MgmtAddr(), 6653, time.Second)
	// Worst case: the controller host can route back to the guest.
	mg := e.lab.MgmtNS()
	if _, err := e.lab.Exec(e.ctx, mg, "ip", "route", "replace", guest.IP+"/32", "dev", lab.NodeIface); err != nil {
		t.Fatal(err)
	}
	openRouted := e.lab.TCPOpen(e.ctx, vm, e.lab.MgmtAddr(), 6653, time.Second)
	if _, err := e.lab.Exec(e.ctx, mg, "ip", "route", "del", guest.IP+"/32", "dev", lab.NodeIface); err != nil {
		t.Fatal(err)
	}
	_, _ = e.lab.Exec(e.ctx, mg, "ip", "neigh", "flush", "dev", lab.NodeIface)
	arrived, _ := capt.Stop()
	if n := capt.Count(); n > 0 && !open && !openRouted {
		inBandFinding(t, "SECURITY: %d frames from guest %s on %s reached the controller's host %s (no connection: the lab's management node has no route back):\n%s",
			n, vm, host, when, tailLines(arrived, 5))
	}
	if openRouted && !open {
		inBandFinding(t, "SECURITY: guest %s on %s opened a TCP connection to the controller %s:6653 %s once the controller host has a route back to the guest (as with a default route)", vm, host, e.lab.MgmtAddr(), when)
	}
	// OVS's hidden in-band rules (priority above every OpenFlow flow) are
	// listed by bridge/dump-flows only.
	dump, _ := e.lab.OVS(e.ctx, host, "ovs-appctl", "bridge/dump-flows", lab.Bridge)
	var hidden []string
	for _, l := range strings.Split(dump, "\n") {
		if m := hiddenPrio.FindStringSubmatch(l); m != nil {
			if p, _ := strconv.Atoi(m[1]); p > 65535 {
				hidden = append(hidden, strings.TrimSpace(l))
			}
		}
	}
	if open {
		modes, _ := e.lab.OVS(e.ctx, host, "ovs-vsctl", "--columns=target,connection_mode", "list", "controller")
		inBandFinding(t, "SECURITY: guest %s on %s opened a TCP connection to the controller %s:6653 %s.\nController rows:\n%s\nHidden in-band flows:\n  %s",
			vm, host, e.lab.MgmtAddr(), when, modes, strings.Join(hidden, "\n  "))
	} else {
		t.Logf("guest %s: no TCP connection to the controller's OpenFlow port %s without a return route (%v with one; %d hidden in-band flows on %s)", vm, when, openRouted, len(hidden), host)
		if len(hidden) > 0 {
			t.Logf("hidden in-band flows on %s:\n  %s", host, strings.Join(hidden, "\n  "))
		}
	}
}

// ---------------------------------------------------------------------------
// 4. Blueprint file faults.

// TestFaultBlueprintFile: the controller's blueprint lives on a 64 KiB tmpfs.
// It is made unreadable (deleted, replaced by a directory, its filesystem
// shadowed by another mount), the disk fills up so a new revision is
// written only partly, and the file is corrupted on reload (random bytes in
// the middle, truncated in a VM entry, valid YAML with a duplicate VNI).
// Every time the controller keeps the last good policy, reports the error
// (with file:line for content errors), sends no flow-mod, and the matrix
// still holds; a valid fix then applies.
func TestFaultBlueprintFile(t *testing.T) {
	good := demoBlueprint(t, nil)
	dir := filepath.Join(t.TempDir(), "bp")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd("mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", dir); err != nil {
		t.Fatalf("mount tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := runCmd("umount", dir); err != nil {
			t.Logf("umount %s: %v: %s; lazy unmount", dir, err, out)
			_, _ = runCmd("umount", "-l", dir)
		}
	})
	path := filepath.Join(dir, "blueprint.yaml")
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startEnvNoController(t, good)
	// The controller reads the tmpfs copy (the last --blueprint wins).
	e.startController("--blueprint", path)
	if _, err := e.lab.WaitConverged(e.ctx, 60*time.Second, 1); err != nil {
		t.Fatal(err)
	}
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	base := e.status()
	if base.Blueprint != path {
		t.Fatalf("controller reads %s, want the tmpfs copy %s", base.Blueprint, path)
	}
	w := startLeakWatch(t, e, false) // the matrix probes are the cross-VPC traffic
	lineRef := regexp.MustCompile(regexp.QuoteMeta(path) + `:\d+(:\d+)?: `)

	restore := func() {
		t.Helper()
		writeAtomic(t, path, good)
		e.sighup()
		eventually(t, 10*time.Second, "good blueprint restored, reload error cleared", func() (bool, string) {
			st := e.status()
			return st.LastReloadError == "", st.LastReloadError
		})
	}
	// fault applies a fault, waits for the rejection and checks that the
	// last good policy stays: same revision and hash, no flow-mod, every
	// bridge converged, audit in sync, established ping without loss.
	fault := func(name string, apply func(), want func(msg string) bool, undo func()) string {
		t.Helper()
		ping, err := e.lab.StartPing("blue-web-1", "10.10.1.12", 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		waitReplies(t, ping, 5)
		apply()
		e.sighup()
		var msg string
		eventually(t, 10*time.Second, name+": reload rejected", func() (bool, string) {
			st := e.status()
			msg = st.LastReloadError
			return msg != "" && want(msg), msg
		})
		t.Logf("%s: rejected: %s", name, strings.ReplaceAll(msg, "\n", " | "))
		st := e.status()
		if st.Revision != base.Revision || st.BlueprintHash != base.BlueprintHash {
			t.Errorf("%s: controller enforces revision %d hash %.12s, want the last good revision %d hash %.12s", name, st.Revision, st.BlueprintHash, base.Revision, base.BlueprintHash)
		}
		for i, b := range st.Bridges {
			if b.FlowModsSent != base.Bridges[i].FlowModsSent || !b.Converged {
				t.Errorf("%s: %s: flow-mods %d (before %d), converged %v: a rejected blueprint must change nothing", name, b.Host, b.FlowModsSent, base.Bridges[i].FlowModsSent, b.Converged)
			}
		}
		if rep, code := e.audit(); code != 0 || !rep.InSync {
			t.Errorf("%s: audit exit %d, in_sync %v", name, code, rep.InSync)
		}
		if !strings.Contains(readFile(filepath.Join(e.lab.Dir(), "controller.log")), "blueprint rejected, last good policy kept") {
			t.Errorf("%s: controller log has no rejection line", name)
		}
		if undo != nil {
			undo()
		}
		restore()
		waitReplies(t, ping, replies(ping)+5)
		assertNoLoss(t, ping, name, 10)
		return msg
	}

	// (a) Unreadable.
	fault("deleted", func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}, func(m string) bool { return strings.Contains(m, path) && strings.Contains(m, "no such file") }, nil)
	fault("replaced by a directory", func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(path, 0o755); err != nil {
			t.Fatal(err)
		}
	}, func(m string) bool { return strings.Contains(m, path) && strings.Contains(m, "is a directory") }, func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	})
	// A filesystem mounted over the blueprint's directory, inside the
	// controller's own mount namespace (ip netns exec gave it a private copy).
	shadowed := false
	unshadow := func() {
		if shadowed {
			shadowed = false
			if out, err := runCmd("nsenter", "-t", strconv.Itoa(e.ctl.Pid), "-m", "umount", dir); err != nil {
				t.Errorf("unmount the shadowing tmpfs: %v: %s", err, out)
			}
		}
	}
	t.Cleanup(unshadow)
	fault("directory shadowed by an empty filesystem", func() {
		if out, err := runCmd("nsenter", "-t", strconv.Itoa(e.ctl.Pid), "-m", "mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", dir); err != nil {
			t.Fatalf("mount over %s in the controller's mount namespace: %v: %s", dir, err, out)
		}
		shadowed = true
	}, func(m string) bool { return strings.Contains(m, path) && strings.Contains(m, "no such file") }, unshadow)
	checkMatrix(t, e)

	// (b) Disk full: a new revision is written only partly.
	filler := filepath.Join(dir, "filler")
	next := partialBlueprint(t, good)
	fault("disk full, partial write", func() {
		fillDisk(t, filler)
		err := os.WriteFile(path, []byte(next), 0o644)
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("test premise: writing the new blueprint on the full tmpfs: err %v, want ENOSPC", err)
		}
		onDisk, _ := os.ReadFile(path)
		if len(onDisk) >= len(next) || !strings.HasPrefix(next, string(onDisk)) {
			t.Fatalf("test premise: %d of %d bytes on disk, want a strict prefix", len(onDisk), len(next))
		}
		if _, perr := flows.Parse(path, onDisk); perr == nil {
			t.Fatalf("test premise: the %d-byte prefix on disk is a valid blueprint", len(onDisk))
		}
		t.Logf("disk full: %d of %d bytes of revision 2 written, ends %q", len(onDisk), len(next), tailBytes(onDisk, 40))
	}, func(m string) bool { return lineRef.MatchString(m) && strings.Contains(m, "invalid YAML") }, func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	})
	checkMatrix(t, e)

	// (c) Corrupt on reload: every error names file:line.
	rng := rand.New(rand.NewSource(6))
	garbage := make([]byte, 512)
	rng.Read(garbage)
	mid := strings.Index(good, "  - name: red")
	corrupt := strings.Replace(good[:mid], "revision: 1", "revision: 2", 1) + string(garbage) + good[mid:]
	msg := fault("random bytes in the middle", func() { writeAtomic(t, path, corrupt) },
		func(m string) bool { return strings.Contains(m, path) }, nil)
	if !lineRef.MatchString(msg) {
		t.Errorf("PRODUCT: a blueprint corrupted by random bytes at line %d is rejected without a line number: %q (want %s:LINE: ...)",
			strings.Count(good[:mid], "\n")+1, msg, path)
	}
	vmLine := `          - {name: blue-web-2, host: kvm2, port: vnet0, mac: "52:54:00:b1:01:0c", ip: 10.10.1.12}`
	cutAt := strings.Index(good, vmLine) + len(vmLine)/2
	truncated := strings.Replace(good[:cutAt], "revision: 1", "revision: 2", 1)
	fault("truncated in a VM entry", func() { writeAtomic(t, path, truncated) },
		func(m string) bool { return lineRef.MatchString(m) && strings.Contains(m, "invalid YAML") }, nil)
	dup := strings.Replace(strings.Replace(good, "revision: 1", "revision: 2", 1), "vni: 6001", "vni: 5001", 1)
	fault("duplicate VNI", func() { writeAtomic(t, path, dup) },
		func(m string) bool { return lineRef.MatchString(m) && strings.Contains(m, "vni 5001 is already used") }, nil)
	checkMatrix(t, e)

	// A valid fix applies: revision 2 adds blue-web-3 (on kvm3, port
	// absent) to blue/web: kvm1 and kvm2 get its flows.
	fix := strings.Replace(good, "revision: 1", "revision: 2", 1)
	fix = strings.Replace(fix, vmLine+"\n", vmLine+"\n"+`          - {name: blue-web-3, host: kvm3, port: vnet9, mac: "52:54:00:b1:01:0d", ip: 10.10.1.13}`+"\n", 1)
	writeAtomic(t, path, fix)
	e.sighup()
	st := assertExact(t, e, 2, 30*time.Second)
	if st.LastReloadError != "" {
		t.Errorf("valid fix: reload error %q", st.LastReloadError)
	}
	for i, b := range st.Bridges {
		if b.Host != "kvm3" && b.FlowModsSent <= base.Bridges[i].FlowModsSent {
			t.Errorf("valid fix: %s sent no flow-mods (%d)", b.Host, b.FlowModsSent)
		}
	}
	checkMatrix(t, e)
	w.check(t)
}

// partialBlueprint is a revision-2 blueprint larger than the 4 KiB a full
// tmpfs can still take after the old file's page is freed, laid out so that
// byte 4096 falls inside a flow-style VM entry (a cut there is invalid YAML).
func partialBlueprint(t *testing.T, good string) string {
	var extra strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&extra, "          - {name: blue-extra-%02d, host: kvm3, port: x%02d, mac: \"52:54:00:b1:09:%02x\", ip: 10.10.1.%d}\n", i, i, i, 100+i)
	}
	vmLine := `          - {name: blue-web-2, host: kvm2, port: vnet0, mac: "52:54:00:b1:01:0c", ip: 10.10.1.12}` + "\n"
	body := strings.Replace(strings.Replace(good, "revision: 1", "revision: 2", 1), vmLine, vmLine+extra.String(), 1)
	// Pad with a comment so that offset 4096 is in the middle of a VM line.
	for pad := 0; pad < 200; pad++ {
		s := "# " + strings.Repeat("p", pad) + "\n" + body
		ls := strings.LastIndex(s[:4096], "\n") + 1
		le := ls + strings.Index(s[ls:], "\n")
		line := s[ls:le]
		if strings.Contains(line, "{name: blue-extra-") && 4096-ls > 20 && le-4096 > 20 {
			return s
		}
	}
	t.Fatal("test bug: cannot place the 4 KiB cut inside a VM entry")
	return ""
}

// fillDisk writes filler until the filesystem is full (ENOSPC).
func fillDisk(t *testing.T, filler string) {
	t.Helper()
	f, err := os.OpenFile(filler, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1024)
	for i := 0; i < 1<<16; i++ {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
	t.Fatalf("test premise: %s never filled up", filler)
}

func tailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// runCmd runs a command in the root namespace and returns its output.
func runCmd(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// inBandFinding fails the test: management frames reaching guests, or a
// guest reaching the controller, during a fault. (The host watcher recovers
// with bootstrap flows and keeps in-band control closed, so OVS's hidden
// in-band rules never open this path.)
func inBandFinding(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Errorf(format, args...)
}
