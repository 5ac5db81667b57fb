package controller

// The revision fence (fence.go) and the stale ROLE_STATUS rule, against
// whole controllers and a fake switch that keeps a real flow table across
// connections (ofFenceTable).

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// ofFenceTable is a switch flow table that outlives connections: the
// entries left by earlier connections (base) plus the flow-mods the
// current fake switch committed, in order.
type ofFenceTable struct {
	mu   sync.Mutex
	base map[string][]byte // key (table, priority, match) -> ofp_flow_stats entry
	fs   *ofFakeSwitch
}

func ofFenceKey(table byte, prio uint16, match []byte) string {
	return fmt.Sprintf("%d/%d/%x", table, prio, match)
}

// entries returns the table now (base + the current switch's commits).
func (t *ofFenceTable) entries() map[string][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string][]byte, len(t.base))
	for k, v := range t.base {
		out[k] = v
	}
	if t.fs == nil {
		return out
	}
	t.fs.mu.Lock()
	mods := append([][]byte(nil), t.fs.installed...)
	t.fs.mu.Unlock()
	for _, m := range mods {
		if len(m) < 56 || m[1] != OFPTFlowMod {
			continue
		}
		ml := int(binary.BigEndian.Uint16(m[50:52]))
		mp := (ml + 7) / 8 * 8
		key := ofFenceKey(m[24], binary.BigEndian.Uint16(m[30:32]), m[48:48+mp])
		switch m[25] { // command
		case flows.CmdAdd:
			body := m[48:]
			e := make([]byte, 48+len(body))
			binary.BigEndian.PutUint16(e[0:], uint16(len(e)))
			e[2] = m[24]
			copy(e[12:14], m[30:32])
			copy(e[24:32], m[8:16])
			copy(e[48:], body)
			out[key] = e
		case flows.CmdDeleteStrict:
			delete(out, key)
		default:
			panic(fmt.Sprintf("fake table: flow-mod command %d not modelled", m[25]))
		}
	}
	return out
}

// attach makes fs serve this table (the previous switch's state is kept).
func (t *ofFenceTable) attach(fs *ofFakeSwitch) {
	e := t.entries()
	t.mu.Lock()
	t.base, t.fs = e, fs
	t.mu.Unlock()
	fs.hook = func(fs *ofFakeSwitch, h ofHeader, msg []byte) bool {
		if h.Type != OFPTMultipartReq || binary.BigEndian.Uint16(msg[8:10]) != OFPMPFlow || len(msg) < 48 {
			return false
		}
		cookie, mask := binary.BigEndian.Uint64(msg[32:40]), binary.BigEndian.Uint64(msg[40:48])
		var body []byte
		for _, e := range t.entries() {
			if binary.BigEndian.Uint64(e[24:32])&mask == cookie&mask {
				body = append(body, e...)
			}
		}
		p := make([]byte, 8, 8+len(body))
		binary.BigEndian.PutUint16(p[0:2], OFPMPFlow)
		fs.send(ofSimple(OFPTMultipartReply, h.Xid, append(p, body...)))
		return true
	}
}

// revisions returns the installed cookies' highest revision and whether a
// flow with the given cookie rule is installed.
func (t *ofFenceTable) has(rule flows.Cookie) bool {
	for _, e := range t.entries() {
		if flows.Cookie(binary.BigEndian.Uint64(e[24:32])).Rule() == rule {
			return true
		}
	}
	return false
}

// ofFenceBlueprint is the demo blueprint at revision rev, with blue-web-3
// (on kvm2, in kvm1's tier blue/web) when withVM3, and extra lines after
// kvm1's uplink.
func ofFenceBlueprint(t *testing.T, rev int, withVM3 bool, kvm1Extra string) string {
	t.Helper()
	demo, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(demo), "revision: 1", fmt.Sprintf("revision: %d", rev), 1)
	if withVM3 {
		anchor := `          - {name: blue-web-2, host: kvm2, port: vnet0, mac: "52:54:00:b1:01:0c", ip: 10.10.1.12}`
		s = strings.Replace(s, anchor, anchor+"\n"+`          - {name: blue-web-3, host: kvm2, port: vnet5, mac: "52:54:00:b1:01:0d", ip: 10.10.1.13}`, 1)
	}
	if kvm1Extra != "" {
		anchor := "    tunnel_mac: \"02:00:c0:00:02:0b\"\n    uplink: eth0\n"
		if !strings.Contains(s, anchor) {
			t.Fatal("demo blueprint changed: kvm1 anchor not found")
		}
		s = strings.Replace(s, anchor, anchor+kvm1Extra, 1)
	}
	return s
}

// ofFenceCtl is a running controller on a blueprint file.
type ofFenceCtl struct {
	t    *testing.T
	c    *Controller
	path string
	stop func()
}

func ofStartFenceCtl(t *testing.T, dir, name, text string, mod func(o *Options)) *ofFenceCtl {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(&ofTestWriter{t: t})
	log.SetLevel(logrus.InfoLevel)
	o := Options{BlueprintPath: path, Listen: "tcp:127.0.0.1:0", HTTP: "off", ReloadPoll: time.Hour,
		DriftInterval: time.Hour, ReclaimBackoff: time.Minute, Log: log}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	ofWaitFor(t, 5*time.Second, "listener", func() bool { a, _ := c.Addrs(); return a != nil })
	return &ofFenceCtl{t: t, c: c, path: path, stop: stop}
}

func (f *ofFenceCtl) reload(text string) {
	f.t.Helper()
	if err := os.WriteFile(f.path, []byte(text), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := f.c.Reload("test"); err != nil {
		f.t.Fatal(err)
	}
}

func (f *ofFenceCtl) kvm1() BridgeStatus {
	for _, b := range f.c.Status().Bridges {
		if b.DatapathID == "00000000000000a1" {
			return b
		}
	}
	return BridgeStatus{}
}

func (f *ofFenceCtl) waitKvm1(what string, cond func(BridgeStatus) bool) BridgeStatus {
	f.t.Helper()
	var st BridgeStatus
	ofWaitFor(f.t, 15*time.Second, what, func() bool { st = f.kvm1(); return cond(st) })
	return st
}

// connect dials the controller as kvm1's switch serving table.
func (f *ofFenceCtl) connect(table *ofFenceTable, setup func(fs *ofFakeSwitch)) *ofFakeSwitch {
	f.t.Helper()
	a, _ := f.c.Addrs()
	nc, err := net.Dial("tcp", a.String())
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { nc.Close() })
	fs := ofNewFakeSwitch(f.t, nc, 0x00000000000000a1)
	fs.ports = map[uint32]string{1: "eth0", 2: "vnet0", 3: "vnet1", 4: "vnet2", 5: "vpcflow-vxlan", OFPPLocal: "cloudbr0"}
	if table != nil {
		table.attach(fs)
	}
	if setup != nil {
		setup(fs)
	}
	go fs.serve()
	return fs
}

func ofMetric(t *testing.T, c *Controller, name string) (float64, bool) {
	t.Helper()
	mfs, err := c.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// TestRevisionFenceDefect10 is defect 10 against one bridge: revision 3
// removes blue-web-3 (on kvm1 only deletes: its ARP answer and L2 entry),
// written by controller A; A stops; controller B still at revision 2
// connects. B must send nothing (no re-install of the removed VM's
// flows), report why, and resume writing when it loads revision >= 3.
func TestRevisionFenceDefect10(t *testing.T) {
	dir := t.TempDir()
	table := &ofFenceTable{}
	rev2, rev3 := ofFenceBlueprint(t, 2, true, ""), ofFenceBlueprint(t, 3, false, "")

	a := ofStartFenceCtl(t, dir, "a.yaml", rev2, nil)
	a.connect(table, nil)
	a.waitKvm1("A: kvm1 converged at revision 2", func(s BridgeStatus) bool { return s.Converged && s.Revision == 2 })
	vm3 := flows.MakeCookie(flows.CatARPResponder, 0, 0) // any rule of blue-web-3: found below
	for _, e := range table.entries() {
		ck := flows.Cookie(binary.BigEndian.Uint64(e[24:32]))
		if ck.Category() == flows.CatVPCForward && strings.Contains(string(e), "\x52\x54\x00\xb1\x01\x0d") {
			vm3 = ck.Rule()
		}
	}
	if vm3.Category() != flows.CatVPCForward {
		t.Fatal("no L2 entry for blue-web-3 installed at revision 2")
	}
	mods := a.kvm1().FlowModsSent
	a.reload(rev3)
	st := a.waitKvm1("A: kvm1 converged at revision 3", func(s BridgeStatus) bool { return s.Converged && s.Revision == 3 })
	// 2 deletes + the revision marker stamped with revision 3.
	if got := st.FlowModsSent - mods; got != 3 {
		t.Errorf("A: removing blue-web-3 sent %d flow-mods, want 3 (2 deletes + revision marker)", got)
	}
	if table.has(vm3) {
		t.Fatal("A: blue-web-3's L2 entry still installed at revision 3")
	}
	a.stop()

	// B: a replica (or a restarted single controller) with the older file.
	b := ofStartFenceCtl(t, dir, "b.yaml", rev2, nil)
	fsB := b.connect(table, nil)
	st = b.waitKvm1("B: kvm1 read (fenced or reconciled)", func(s BridgeStatus) bool { return s.Fenced || s.Reconciles > 0 })
	if n, _, commits, _ := fsB.snapshot(); n != 0 || commits != 0 || table.has(vm3) {
		t.Fatalf("B (revision 2) wrote to a bridge holding revision 3: %d flow-mods in %d bundles; removed VM's L2 entry back: %v",
			n, commits, table.has(vm3))
	}
	if st.InstalledRevision != 3 || !strings.Contains(st.Standby, "revision 3") || !strings.Contains(st.Standby, "enforced revision 2") || st.Converged {
		t.Errorf("B: status does not say why it stands by: %+v", st)
	}
	if v, ok := ofMetric(t, b.c, "vpcflow_bridge_fenced"); !ok || v != 1 {
		t.Errorf("B: vpcflow_bridge_fenced = %v (present %v), want 1", v, ok)
	}
	if v, _ := ofMetric(t, b.c, "vpcflow_bridge_installed_revision"); v != 3 {
		t.Errorf("B: vpcflow_bridge_installed_revision = %v, want 3", v)
	}
	// A drift check (a full read) and a bounded window: still nothing.
	b.c.kickAll("drift check")
	time.Sleep(500 * time.Millisecond)
	if n, _, commits, role := fsB.snapshot(); n != 0 || commits != 0 {
		t.Fatalf("B (revision 2) wrote to a bridge holding revision 3: %d flow-mods in %d bundles (role %s)", n, commits, role)
	}
	if table.has(vm3) {
		t.Fatal("B re-installed the removed VM's flows")
	}
	if ok, why := b.c.provisionAllowed(b.c.policy().bp.HostByDPID(0xa1), b.c.policy()); ok || !strings.Contains(why, "revision 3") {
		t.Errorf("B: provisioning allowed while fenced (%v, %q)", ok, why)
	}

	// Reload to the same revision 3: the fence lifts, nothing to write.
	b.reload(rev3)
	st = b.waitKvm1("B: kvm1 converged at revision 3", func(s BridgeStatus) bool { return s.Converged && s.Revision == 3 })
	if st.Fenced || st.Standby != "" || st.FlowModsSent != 0 {
		t.Errorf("B at revision 3: fenced %v, standby %q, %d flow-mods (want none: the table is revision 3)", st.Fenced, st.Standby, st.FlowModsSent)
	}
	if ok, why := b.c.provisionAllowed(b.c.policy().bp.HostByDPID(0xa1), b.c.policy()); !ok {
		t.Errorf("B: provisioning still refused after the fence lifted: %s", why)
	}
	// Revision 4 brings blue-web-3 back: writes resume (incremental path).
	b.reload(ofFenceBlueprint(t, 4, true, ""))
	st = b.waitKvm1("B: kvm1 converged at revision 4", func(s BridgeStatus) bool { return s.Converged && s.Revision == 4 })
	if st.FlowModsSent != 2 || !table.has(vm3) {
		t.Errorf("B at revision 4: %d flow-mods (want 2), blue-web-3 installed %v", st.FlowModsSent, table.has(vm3))
	}
	if v, _ := ofMetric(t, b.c, "vpcflow_bridge_fenced"); v != 0 {
		t.Errorf("B: vpcflow_bridge_fenced = %v after the fence lifted", v)
	}
}

// TestRevisionFenceRestartedOlderReloadNewer: a bridge holding revision 3
// (a controller restarted with an older file, revision 2) gets nothing; a
// reload straight to revision 4 resumes writing without a restart.
func TestRevisionFenceReloadNewerResumes(t *testing.T) {
	dir := t.TempDir()
	table := &ofFenceTable{}
	a := ofStartFenceCtl(t, dir, "a.yaml", ofFenceBlueprint(t, 3, false, ""), nil)
	a.connect(table, nil)
	a.waitKvm1("A: converged at revision 3", func(s BridgeStatus) bool { return s.Converged && s.Revision == 3 })
	a.stop()
	b := ofStartFenceCtl(t, dir, "b.yaml", ofFenceBlueprint(t, 2, true, ""), nil)
	fsB := b.connect(table, nil)
	b.waitKvm1("B: fenced", func(s BridgeStatus) bool { return s.Fenced && s.InstalledRevision == 3 })
	if n, _, commits, _ := fsB.snapshot(); n != 0 || commits != 0 {
		t.Fatalf("B wrote %d flow-mods in %d bundles while fenced", n, commits)
	}
	b.reload(ofFenceBlueprint(t, 4, true, ""))
	st := b.waitKvm1("B: converged at revision 4", func(s BridgeStatus) bool { return s.Converged && s.Revision == 4 })
	if st.Fenced || st.FlowModsSent == 0 {
		t.Errorf("B at revision 4: fenced %v, %d flow-mods", st.Fenced, st.FlowModsSent)
	}
}

// TestRevisionMarkerIsCompiled: the marker is the compiled classify miss,
// so it is in sync whatever revision it carries.
func TestRevisionMarkerIsCompiled(t *testing.T) {
	bp, err := flows.Load("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := flows.Compile(bp, "kvm1")
	if err != nil {
		t.Fatal(err)
	}
	m := revisionMarker(7)
	for i := range fs {
		if fs[i].Cookie.Rule() == markerRule {
			fs[i].Note = ""
			want := revisionMarker(bp.Revision)
			if d := DiffFlows([]flows.Flow{fs[i]}, []flows.Flow{m}); !d.Empty() || fs[i].String() != want.String() {
				t.Fatalf("marker %s differs from the compiled classify miss %s", m.String(), fs[i].String())
			}
			return
		}
	}
	t.Fatal("no classify miss compiled")
}

// TestStaleRoleStatusIgnored (defect 8): a ROLE_STATUS with a generation
// older than our granted MASTER claim (queued before the claim's reply)
// must not stop the bridge from writing.
func TestStaleRoleStatusIgnored(t *testing.T) {
	dir := t.TempDir()
	ctl := ofStartFenceCtl(t, dir, "bp.yaml", ofFenceBlueprint(t, 2, false, ""), nil)
	var sent atomic.Bool
	ctl.connect(&ofFenceTable{}, func(fs *ofFakeSwitch) {
		inner := fs.hook
		fs.hook = func(fs *ofFakeSwitch, h ofHeader, msg []byte) bool {
			if h.Type == OFPTRoleRequest && OFRole(binary.BigEndian.Uint32(msg[8:12])) == OFRoleMaster && !sent.Swap(true) {
				// The demotion that preceded our claim, on the wire just
				// before the claim's reply.
				gen := binary.BigEndian.Uint64(msg[16:24])
				p := make([]byte, 16)
				binary.BigEndian.PutUint32(p[0:4], uint32(OFRoleSlave))
				p[4] = OFRoleReasonMasterRequest
				binary.BigEndian.PutUint64(p[8:16], gen-1)
				fs.send(ofSimple(OFPTRoleStatus14, 0, p))
				return false // then answer the claim as usual
			}
			return inner(fs, h, msg)
		}
	})
	ctl.waitKvm1("converged at revision 2", func(s BridgeStatus) bool { return s.Converged && s.Revision == 2 })
	if !sent.Load() {
		t.Fatal("the stale role status was not sent")
	}
	// A reload must be written at once (not after the 1-minute re-claim
	// back-off a real demotion starts).
	ctl.reload(ofFenceBlueprint(t, 3, true, ""))
	st := ctl.waitKvm1("converged at revision 3", func(s BridgeStatus) bool { return s.Converged && s.Revision == 3 })
	if st.Role != "MASTER" {
		t.Errorf("role %s after a stale role status, want MASTER", st.Role)
	}
}

// TestProvisionWaitsForAgreement (defect 8): a controller whose bridge
// holds a newer revision does not provision hosts (it would rewrite their
// controller targets with the older blueprint's); it provisions again once
// the newer blueprint is loaded.
func TestProvisionWaitsForAgreement(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "ovsdb.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var dials atomic.Int64
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			go func() { _, _ = io.Copy(io.Discard, nc) }()
			time.AfterFunc(50*time.Millisecond, func() { nc.Close() })
		}
	}()
	extra := "    ovsdb: unix:" + sock + "\n"
	table := &ofFenceTable{}
	a := ofStartFenceCtl(t, dir, "a.yaml", ofFenceBlueprint(t, 3, false, ""), nil)
	a.connect(table, nil)
	a.waitKvm1("A: converged at revision 3", func(s BridgeStatus) bool { return s.Converged && s.Revision == 3 })
	a.stop()
	b := ofStartFenceCtl(t, dir, "b.yaml", ofFenceBlueprint(t, 2, false, extra), func(o *Options) {
		o.Provision, o.ProvisionInterval, o.OpTimeout = true, 100*time.Millisecond, time.Second
	})
	b.connect(table, nil)
	b.waitKvm1("B: fenced", func(s BridgeStatus) bool { return s.Fenced })
	time.Sleep(150 * time.Millisecond) // a provisioning pass already running ends
	before := dials.Load()
	time.Sleep(time.Second) // ten provisioning intervals
	if n := dials.Load() - before; n != 0 {
		t.Fatalf("a fenced controller (revision 2, bridge at 3) provisioned kvm1 %d times in 1 s", n)
	}
	b.reload(ofFenceBlueprint(t, 3, false, extra))
	b.waitKvm1("B: converged at revision 3", func(s BridgeStatus) bool { return s.Converged && s.Revision == 3 && !s.Fenced })
	ofWaitFor(t, 5*time.Second, "provisioning resumed", func() bool { return dials.Load() > before })
}

// withoutKvm1 removes host kvm1 and its VMs from a demo blueprint.
func withoutKvm1(t *testing.T, s string) string {
	t.Helper()
	var kept []string
	skip := false
	for _, line := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(line, "  - name: kvm1"):
			skip = true
			continue
		case skip && strings.HasPrefix(line, "    "):
			continue
		case strings.Contains(line, "host: kvm1"):
			continue
		}
		skip = false
		kept = append(kept, line)
	}
	out := strings.Join(kept, "\n")
	if out == s {
		t.Fatal("test bug: kvm1 not removed")
	}
	return out
}

// TestRevisionFenceOrphanPath: a controller at revision 2, whose blueprint
// no longer lists kvm1, meets kvm1 holding revision-3 flows (a newer
// blueprint lists it again): it must not strip kvm1's guest flows.
func TestRevisionFenceOrphanPath(t *testing.T) {
	dir := t.TempDir()
	table := &ofFenceTable{}
	a := ofStartFenceCtl(t, dir, "a.yaml", ofFenceBlueprint(t, 3, false, ""), nil)
	a.connect(table, nil)
	st := a.waitKvm1("A: converged at revision 3", func(s BridgeStatus) bool { return s.Converged && s.Revision == 3 })
	a.stop()
	flowsBefore := len(table.entries())
	b := ofStartFenceCtl(t, dir, "b.yaml", withoutKvm1(t, ofFenceBlueprint(t, 2, false, "")), nil)
	fsB := b.connect(table, nil)
	st = b.waitKvm1("B: kvm1 read", func(s BridgeStatus) bool { return s.Fenced || s.FlowsInstalled > 0 })
	time.Sleep(300 * time.Millisecond) // a claim and a bundle would follow at once
	if n, _, commits, _ := fsB.snapshot(); n != 0 || commits != 0 || len(table.entries()) != flowsBefore {
		t.Fatalf("B (revision 2, kvm1 unknown) wrote to kvm1 holding revision 3: %d flow-mods in %d bundles, %d of %d flows left",
			n, commits, len(table.entries()), flowsBefore)
	}
	st = b.kvm1()
	if !st.Fenced || st.InstalledRevision != 3 || st.Known {
		t.Errorf("B: kvm1 status %+v: want fenced by revision 3, unknown", st)
	}
	// The same blueprint at revision 4 (kvm1 still absent): kvm1 is reduced
	// to its management flows, the marker records revision 4.
	b.reload(withoutKvm1(t, ofFenceBlueprint(t, 4, false, "")))
	ofWaitFor(t, 15*time.Second, "kvm1 reduced to its management flows", func() bool {
		s := b.kvm1()
		return s.Converged && !s.Fenced && s.InstalledRevision == 4 && len(table.entries()) < flowsBefore
	})
}

// TestNoStalePolicyWrittenAfterReload: a reconcile that computed with
// revision 2 and was held (a slow switch: its flow dump answered late)
// while revision 3 was loaded must not write revision 2's flows: it finds
// the newer policy, writes nothing, and reconciles with revision 3. (The
// fault suite's seed 32 once saw a replica write an older policy this way
// after a slow MASTER claim, and a second replica then pass the fence.)
func TestNoStalePolicyWrittenAfterReload(t *testing.T) {
	dir := t.TempDir()
	table := &ofFenceTable{}
	c := ofStartFenceCtl(t, dir, "bp.yaml", ofFenceBlueprint(t, 2, false, ""), nil)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fs := c.connect(table, func(fs *ofFakeSwitch) {
		inner := fs.hook
		fs.hook = func(fs *ofFakeSwitch, h ofHeader, msg []byte) bool {
			if h.Type == OFPTMultipartReq && len(msg) >= 10 && binary.BigEndian.Uint16(msg[8:10]) == OFPMPFlow {
				once.Do(func() { close(held); <-release })
			}
			return inner(fs, h, msg)
		}
	})
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the reconcile never read the table")
	}
	c.reload(ofFenceBlueprint(t, 3, false, ""))
	close(release)
	c.waitKvm1("converged at revision 3", func(s BridgeStatus) bool { return s.Converged && s.Revision == 3 })
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, m := range fs.installed {
		if len(m) >= 16 && m[1] == OFPTFlowMod {
			if rev := flows.Cookie(binary.BigEndian.Uint64(m[8:16])).Revision(); rev < 3 {
				t.Fatalf("a flow-mod of revision %d was written after revision 3 was loaded", rev)
			}
		}
	}
}
