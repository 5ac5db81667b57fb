package controller

// Blueprint reloads against a real ovs-vswitchd: a reload sends only the
// flows the change touches (reconcileDelta), and the table ends exactly as
// compiled (the audit's full read-back agrees). Skipped only when
// VPCFLOW_E2E=0; fails loudly when OVS is missing.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// ofLogLines records the controller's log entries for assertions.
type ofLogLines struct {
	mu      sync.Mutex
	entries []*logrus.Entry
}

func (h *ofLogLines) Levels() []logrus.Level { return logrus.AllLevels }
func (h *ofLogLines) Fire(e *logrus.Entry) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entries = append(h.entries, e)
	return nil
}

// count returns the entries with message msg whose field k is v (any v if k is "").
func (h *ofLogLines) count(msg, k string, v any) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.entries {
		if e.Message == msg && (k == "" || e.Data[k] == v) {
			n++
		}
	}
	return n
}

// ofReloadLab is a real ovs-vswitchd with kvm1 of the demo blueprint
// (uplink eth0, VMs on vnet0..vnet2, spare port vnet3) connected to a
// controller whose blueprint file write(rev) rewrites: the demo with the
// revision bumped and the VM lines of extra appended after their anchors.
type ofReloadLab struct {
	t     *testing.T
	lab   *ofOVSLab
	c     *Controller
	hook  *ofLogLines
	br    string
	extra map[string][]string
	write func(rev int)
}

func ofStartReloadLab(t *testing.T, drift time.Duration) *ofReloadLab {
	lab := ofStartOVS(t, "--enable-dummy=override")
	demo, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bpPath := filepath.Join(lab.dir, "blueprint.yaml")
	r := &ofReloadLab{t: t, lab: lab, br: "cloudbr0", extra: map[string][]string{}}
	r.write = func(rev int) {
		s := strings.Replace(string(demo), "revision: 1", fmt.Sprintf("revision: %d", rev), 1)
		for anchor, vms := range r.extra {
			if !strings.Contains(s, anchor) {
				t.Fatalf("demo blueprint changed: anchor %q not found", anchor)
			}
			s = strings.Replace(s, anchor, anchor+"\n"+strings.Join(vms, "\n"), 1)
		}
		if err := os.WriteFile(bpPath, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.write(1)
	log := logrus.New()
	log.SetOutput(&ofTestWriter{t: t})
	log.SetLevel(logrus.DebugLevel)
	r.hook = &ofLogLines{}
	log.AddHook(r.hook)
	r.c, err = New(Options{BlueprintPath: bpPath, Listen: "tcp:127.0.0.1:0", HTTP: "off", ReloadPoll: time.Hour,
		DriftInterval: drift, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var addr fmt.Stringer
	ofWaitFor(t, 5*time.Second, "listener", func() bool {
		a, _ := r.c.Addrs()
		if a != nil {
			addr = a
		}
		return a != nil
	})
	br := r.br
	args := []string{"--timeout=10", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
		"protocols=OpenFlow13", "fail_mode=secure", "other-config:datapath-id=00000000000000a1"}
	for i, p := range []string{"eth0", "vnet0", "vnet1", "vnet2", "vnet3", "vnet4"} {
		args = append(args, "--", "add-port", br, p, "--", "set", "interface", p, fmt.Sprintf("ofport_request=%d", i+1))
	}
	lab.run("ovs-vsctl", args...)
	lab.run("ovs-vsctl", "--timeout=10", "add-port", br, "vpcflow-vxlan", "--", "set", "interface", "vpcflow-vxlan",
		"type=vxlan", "options:remote_ip=flow", "options:key=flow", "options:local_ip=192.0.2.11")
	lab.run("ovs-vsctl", "--timeout=10", "set-controller", br, "tcp:"+addr.String())
	return r
}

func (r *ofReloadLab) bridge() BridgeStatus {
	for _, b := range r.c.Status().Bridges {
		if b.DatapathID == "00000000000000a1" {
			return b
		}
	}
	return BridgeStatus{}
}

func (r *ofReloadLab) waitRev(rev uint32) BridgeStatus {
	r.t.Helper()
	var st BridgeStatus
	ofWaitFor(r.t, 30*time.Second, fmt.Sprintf("kvm1 converged at revision %d", rev), func() bool {
		st = r.bridge()
		return st.Converged && st.Revision == rev
	})
	return st
}

// audit checks the full read-back (audit) agrees with the compiled set and
// with what ovs-ofctl shows.
func (r *ofReloadLab) audit(what string) {
	r.t.Helper()
	a := r.c.Audit(context.Background(), "kvm1")
	if len(a.Bridges) != 1 || !a.Bridges[0].Audited || a.Bridges[0].Drift {
		r.t.Fatalf("%s: audit of kvm1 is not in sync: %+v", what, a.Bridges)
	}
	if got := r.lab.flowCount(r.br); got != a.Bridges[0].Intended || got != r.bridge().FlowsInstalled {
		r.t.Fatalf("%s: ovs-ofctl shows %d flows, audit intends %d, status says %d installed",
			what, got, a.Bridges[0].Intended, r.bridge().FlowsInstalled)
	}
}

func TestReloadSendsOnlyTheDeltaOVS(t *testing.T) {
	r := ofStartReloadLab(t, time.Hour)
	c, hook, extra, write, waitRev, audit := r.c, r.hook, r.extra, r.write, r.waitRev, r.audit
	st := waitRev(1)
	audit("initial")
	mods := st.FlowModsSent
	fullBefore := hook.count("reconciled", "incremental", nil)

	steps := []struct {
		what   string
		anchor string // add this VM line after the anchor ("" = remove the last added)
		vm     string
		mods   uint64
	}{
		{"a VM on another host joins kvm1's tier blue/web: ARP answer + L2 entry",
			"          - {name: blue-web-2, host: kvm2, port: vnet0, mac: \"52:54:00:b1:01:0c\", ip: 10.10.1.12}",
			"          - {name: blue-web-3, host: kvm2, port: vnet5, mac: \"52:54:00:b1:01:0d\", ip: 10.10.1.13}", 2},
		{"a VM on kvm1 itself: its 6 flows, ARP answer, local L2 entry, 2 floods",
			"          - {name: blue-db-2, host: kvm1, port: vnet1, mac: \"52:54:00:b1:02:0c\", ip: 10.10.2.12}",
			"          - {name: blue-db-3, host: kvm1, port: vnet3, mac: \"52:54:00:b1:02:0d\", ip: 10.10.2.13}", 10},
		{"a VM in a tier kvm1 does not carry: nothing",
			"          - {name: red-app-2, host: kvm3, port: vnet2, mac: \"52:54:00:d1:02:0c\", ip: 10.20.2.12}",
			"          - {name: red-app-3, host: kvm3, port: vnet6, mac: \"52:54:00:d1:02:0d\", ip: 10.20.2.13}", 0},
		{"a VM on kvm1 in red/app, a tier kvm1 did not carry: its flows and the whole tier's; read back by revision in one request",
			"          - {name: red-app-2, host: kvm3, port: vnet2, mac: \"52:54:00:d1:02:0c\", ip: 10.20.2.12}",
			"          - {name: red-app-4, host: kvm1, port: vnet4, mac: \"52:54:00:d1:02:0e\", ip: 10.20.2.14}", 19},
	}
	for i, s := range steps {
		rev := uint32(i + 2)
		extra[s.anchor] = append(extra[s.anchor], s.vm)
		write(int(rev))
		if err := c.Reload("test"); err != nil {
			t.Fatal(err)
		}
		st := waitRev(rev)
		if got := st.FlowModsSent - mods; got != s.mods {
			t.Errorf("%s: %d flow-mods, want %d", s.what, got, s.mods)
		}
		mods = st.FlowModsSent
		audit(s.what)
	}
	// Remove blue-web-3 again: its 2 flows are deleted, and the revision
	// marker records revision 6 (a deletes-only change leaves no flow of
	// its revision otherwise: the revision fence, fence.go).
	anchor := steps[0].anchor
	extra[anchor] = nil
	write(6)
	if err := c.Reload("test"); err != nil {
		t.Fatal(err)
	}
	st = waitRev(6)
	if got := st.FlowModsSent - mods; got != 3 {
		t.Errorf("removing blue-web-3: %d flow-mods, want 2 deletes + the revision marker", got)
	}
	if got := r.lab.run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", r.br, "table=0"); !strings.Contains(got, "cookie=0x1200000000000006,") {
		t.Errorf("revision marker (classify miss) not stamped with revision 6:\n%s", got)
	}
	audit("VM removed")
	// 19 flows, more than 8 distinct cookies: one read-back request by revision;
	// the smaller deltas ask for their cookies exactly.
	if n := hook.count("reconciled", "read_back_requests", 1); n != 2 {
		t.Errorf("%d reconciles read back with one request, want 2 (the red/app step by revision, the removal's marker by its cookie)", n)
	}
	if n := hook.count("reconciled", "read_back_requests", 7); n != 1 {
		t.Errorf("%d reconciles read back 7 exact cookies, want 1 (the blue-db-3 step)", n)
	}
	if n := hook.count("reconciled", "incremental", true); n != 4 {
		t.Errorf("%d incremental reconciles with changes, want 4", n)
	}
	if n := hook.count("reconciled", "incremental", nil); n != fullBefore {
		t.Errorf("%d full reconciles with changes after the first, want none", n-fullBefore)
	}
	if n := hook.count("incremental reconcile failed; reconciling in full", "", nil); n != 0 {
		t.Errorf("%d incremental reconciles fell back to a full one", n)
	}
}
