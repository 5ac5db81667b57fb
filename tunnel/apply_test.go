package tunnel

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

func testLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

func testHost(uplink string) *flows.Host {
	return &flows.Host{
		Name: "kvm1", DatapathID: "00000000000000a1", TunnelIP: "198.51.100.11", Uplink: uplink,
		DPID: 0xa1, Addr: netip.MustParseAddr("198.51.100.11"),
	}
}

func applyOpts(l *ovsLab, bridge string, h *flows.Host) ApplyOptions {
	return ApplyOptions{
		Endpoint: l.endpoint, Bridge: bridge, Host: h, Encapsulation: flows.EncapVXLAN,
		Controllers: []string{"tcp:127.0.0.1:1", "tcp:127.0.0.1:2"}, Logger: testLogger(),
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// controllers returns "target max_backoff inactivity_probe connection_mode"
// per Controller row of the bridge, sorted.
func (l *ovsLab) controllers(bridge string) []string {
	l.t.Helper()
	ids := l.vsctl("get", "bridge", bridge, "controller")
	var out []string
	for _, id := range splitSet(ids) {
		out = append(out, strings.Join([]string{
			unquote(l.vsctl("get", "controller", id, "target")),
			l.vsctl("get", "controller", id, "max_backoff"),
			l.vsctl("get", "controller", id, "inactivity_probe"),
			l.vsctl("get", "controller", id, "connection_mode"),
		}, " "))
	}
	slices.Sort(out)
	return out
}

func (l *ovsLab) portNames(bridge string) []string {
	l.t.Helper()
	s := strings.Fields(l.vsctl("list-ports", bridge))
	slices.Sort(s)
	return s
}

func splitSet(s string) []string {
	s = strings.Trim(strings.TrimSpace(s), "[]")
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func unquote(s string) string { return strings.Trim(s, `"`) }

func TestApplyHandMadeBridge(t *testing.T) {
	t.Parallel()
	l := startOVS(t, true)
	br, up := randName("vft"), randName("vfu")
	l.addBridge(br, up, "--", "set", "bridge", br, "other-config:hwaddr=02:00:00:00:00:aa", "other-config:operator-key=kept")
	ctx := ctxT(t)
	opts := applyOpts(l, br, testHost(up))

	res, err := Apply(ctx, opts)
	if err != nil {
		t.Fatalf("first apply: %v", err)
	}
	t.Logf("changes:\n%s", strings.Join(res.Changes, "\n"))
	if !res.Changed() {
		t.Fatal("first apply reported no change")
	}
	for _, want := range []string{"protocols", "fail_mode", "other_config:datapath-id", "controller tcp:127.0.0.1:1 added", "controller tcp:127.0.0.1:2 added", "tunnel port vpcflow-vxlan added"} {
		if !slices.ContainsFunc(res.Changes, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("changes lack %q", want)
		}
	}

	if got := l.vsctl("get", "bridge", br, "protocols"); got != `[OpenFlow13]` {
		t.Errorf("protocols = %s", got)
	}
	if got := l.vsctl("get", "bridge", br, "fail_mode"); got != "secure" {
		t.Errorf("fail_mode = %s", got)
	}
	if got := l.vsctl("get", "bridge", br, "other_config:datapath-id"); unquote(got) != "00000000000000a1" {
		t.Errorf("datapath-id = %s", got)
	}
	if got := l.vsctl("get", "bridge", br, "other_config:hwaddr"); unquote(got) != "02:00:00:00:00:aa" {
		t.Errorf("operator's hwaddr not kept: %s", got)
	}
	if got := l.vsctl("get", "bridge", br, "other_config:operator-key"); unquote(got) != "kept" {
		t.Errorf("operator's other_config key not kept: %s", got)
	}
	if got := l.vsctl("get", "bridge", br, "datapath_type"); got != "netdev" {
		t.Errorf("datapath_type changed: %s", got)
	}
	wantCtl := []string{"tcp:127.0.0.1:1 2000 5000 []", "tcp:127.0.0.1:2 2000 5000 []"}
	if got := l.controllers(br); !slices.Equal(got, wantCtl) {
		t.Errorf("controllers = %q, want %q", got, wantCtl)
	}
	if got := l.portNames(br); !slices.Equal(got, sortedOf(up, "vpcflow-vxlan")) {
		t.Errorf("ports = %q", got)
	}
	if got := l.vsctl("get", "interface", "vpcflow-vxlan", "type"); got != "vxlan" {
		t.Errorf("tunnel type = %s", got)
	}
	if got := l.vsctl("get", "interface", "vpcflow-vxlan", "options"); got != `{key=flow, local_ip="198.51.100.11", remote_ip=flow}` {
		t.Errorf("tunnel options = %s", got)
	}
	// The switch accepted the port and took the datapath id.
	waitFor(t, "tunnel ofport", 10*time.Second, func() (bool, string) {
		p := l.vsctl("get", "interface", "vpcflow-vxlan", "ofport")
		return p != "[]" && p != "-1" && p != "0", p
	})
	if e := l.vsctl("get", "interface", "vpcflow-vxlan", "error"); e != "[]" {
		t.Errorf("tunnel interface error: %s", e)
	}
	waitFor(t, "datapath_id", 10*time.Second, func() (bool, string) {
		s := l.vsctl("get", "bridge", br, "datapath_id")
		return unquote(s) == "00000000000000a1", s
	})

	res, err = Apply(ctx, opts)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if res.Changed() {
		t.Errorf("second apply changed: %q", res.Changes)
	}
}

func sortedOf(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestApplySetsTunnelMACAndRepairs(t *testing.T) {
	t.Parallel()
	l := startOVS(t, false)
	br, up := randName("vft"), randName("vfu")
	l.addBridge(br, up, "--", "set", "bridge", br, "other-config:hwaddr=02:00:00:00:00:aa", "other-config:datapath-id=00000000000000ff",
		"protocols=OpenFlow10", "fail_mode=standalone", "other-config:operator-key=kept")
	// A stale controller, a right one with wrong timers and a duplicate.
	l.vsctl("set-controller", br, "tcp:127.0.0.1:9", "tcp:127.0.0.1:1")
	l.vsctl("--", "--id=@c", "create", "controller", "target=\"tcp:127.0.0.1:1\"", "--", "add", "bridge", br, "controller", "@c")
	ctx := ctxT(t)
	h := testHost(up)
	h.TunnelMAC, h.HasMAC = "02:00:C6:33:64:0B", true
	h.MAC, _ = flows.ParseMAC(h.TunnelMAC)
	opts := applyOpts(l, br, h)
	opts.Controllers = []string{"tcp:127.0.0.1:1"}

	res, err := Apply(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("changes:\n%s", strings.Join(res.Changes, "\n"))
	if got := unquote(l.vsctl("get", "bridge", br, "other_config:hwaddr")); got != "02:00:c6:33:64:0b" {
		t.Errorf("hwaddr = %s", got)
	}
	if got := unquote(l.vsctl("get", "bridge", br, "other_config:datapath-id")); got != "00000000000000a1" {
		t.Errorf("datapath-id = %s", got)
	}
	if got := unquote(l.vsctl("get", "bridge", br, "other_config:operator-key")); got != "kept" {
		t.Errorf("operator key lost: %s", got)
	}
	if got := l.vsctl("get", "bridge", br, "fail_mode"); got != "secure" {
		t.Errorf("fail_mode = %s", got)
	}
	if got := l.vsctl("get", "bridge", br, "protocols"); got != `[OpenFlow13]` {
		t.Errorf("protocols = %s", got)
	}
	if got, want := l.controllers(br), []string{"tcp:127.0.0.1:1 2000 5000 []"}; !slices.Equal(got, want) {
		t.Errorf("controllers = %q, want %q", got, want)
	}
	// Garbage collection removed the unreferenced rows.
	if n := len(strings.Fields(l.vsctl("--columns=_uuid", "--bare", "list", "controller"))); n != 1 {
		t.Errorf("%d Controller rows left, want 1", n)
	}
	// Tunnel options drifted by hand are repaired (local_ip) without a new port.
	l.vsctl("set", "interface", "vpcflow-vxlan", "options:local_ip=203.0.113.9", "options:remote_ip=192.0.2.1")
	res, err = Apply(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 1 || !strings.Contains(res.Changes[0], "options:local_ip 203.0.113.9 -> 198.51.100.11") {
		t.Errorf("repair changes = %q", res.Changes)
	}
	if got := l.vsctl("get", "interface", "vpcflow-vxlan", "options"); got != `{key=flow, local_ip="198.51.100.11", remote_ip=flow}` {
		t.Errorf("tunnel options = %s", got)
	}
	if res, err = Apply(ctx, opts); err != nil || res.Changed() {
		t.Errorf("third apply: %v %q", err, res.Changes)
	}
}

func TestApplyMissingBridge(t *testing.T) {
	t.Parallel()
	l := startOVS(t, false)
	br := randName("vft")
	_, err := Apply(ctxT(t), applyOpts(l, br, testHost("eth0")))
	want := fmt.Sprintf("bridge %s not found on %s: create it (ovs-vsctl add-br %s; add-port %s eth0) or pass --create-bridge", br, l.endpoint, br, br)
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if got := l.vsctl("list-br"); got != "" {
		t.Errorf("bridges created: %q", got)
	}
}

func TestApplyMissingUplink(t *testing.T) {
	t.Parallel()
	l := startOVS(t, false)
	br, other, up := randName("vft"), randName("vft"), randName("vfu")
	l.addBridge(br, "")
	_, err := Apply(ctxT(t), applyOpts(l, br, testHost(up)))
	if err == nil || !strings.Contains(err.Error(), "uplink "+up+" is not a port of bridge "+br) ||
		!strings.Contains(err.Error(), "ovs-vsctl add-port "+br+" "+up) {
		t.Fatalf("err = %v", err)
	}
	// Uplink on another bridge.
	l.addBridge(other, up)
	_, err = Apply(ctxT(t), applyOpts(l, br, testHost(up)))
	if err == nil || !strings.Contains(err.Error(), "uplink "+up+" is a port of bridge "+other) {
		t.Fatalf("err = %v", err)
	}
	// Nothing was changed on the bridge.
	if got := l.vsctl("get", "bridge", br, "fail_mode"); got != "[]" {
		t.Errorf("fail_mode changed to %s despite the error", got)
	}
	// Also with --create-bridge, a missing bridge whose uplink is elsewhere.
	o := applyOpts(l, randName("vft"), testHost(up))
	o.CreateBridge = true
	if _, err = Apply(ctxT(t), o); err == nil || !strings.Contains(err.Error(), "is a port of bridge "+other) {
		t.Fatalf("err = %v", err)
	}
}

func TestApplyCreateBridge(t *testing.T) {
	t.Parallel()
	l := startOVS(t, true)
	br, up := randName("vft"), randName("vfu")
	l.cleanupBridge(br)
	// The uplink must exist as a system device for the switch to open it;
	// the test only checks the database.
	o := applyOpts(l, br, testHost(up))
	o.CreateBridge, o.DatapathType = true, "netdev"
	res, err := Apply(ctxT(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("changes:\n%s", strings.Join(res.Changes, "\n"))
	if len(res.Changes) != 4 || !strings.HasPrefix(res.Changes[0], "created bridge "+br+" (datapath_type=netdev, fail_mode=secure") {
		t.Errorf("changes = %q", res.Changes)
	}
	if got := l.vsctl("get", "bridge", br, "datapath_type"); got != "netdev" {
		t.Errorf("datapath_type = %s", got)
	}
	if got := l.vsctl("get", "bridge", br, "fail_mode"); got != "secure" {
		t.Errorf("fail_mode = %s", got)
	}
	if got := l.portNames(br); !slices.Equal(got, sortedOf(up, "vpcflow-vxlan")) {
		t.Errorf("ports = %q", got)
	}
	if got := l.vsctl("get", "interface", up, "type"); got != `""` {
		t.Errorf("uplink type = %s", got)
	}
	res, err = Apply(ctxT(t), o)
	if err != nil || res.Changed() {
		t.Errorf("second apply: %v %q", err, res.Changes)
	}
}

func TestApplySwitchEncapsulation(t *testing.T) {
	t.Parallel()
	l := startOVS(t, false)
	br, up := randName("vft"), randName("vfu")
	l.addBridge(br, up)
	ctx := ctxT(t)
	o := applyOpts(l, br, testHost(up))
	if _, err := Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	o.Encapsulation = flows.EncapGRE
	res, err := Apply(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		br + ": tunnel port vpcflow-gre added (type=gre, options:remote_ip=flow, options:key=flow, options:local_ip=198.51.100.11)",
		br + ": tunnel port vpcflow-vxlan removed (encapsulation is now gre)",
	}
	if !slices.Equal(res.Changes, want) {
		t.Errorf("changes = %q\nwant %q", res.Changes, want)
	}
	if got := l.portNames(br); !slices.Equal(got, sortedOf(up, "vpcflow-gre")) {
		t.Errorf("ports = %q", got)
	}
	if got := l.vsctl("get", "interface", "vpcflow-gre", "type"); got != "gre" {
		t.Errorf("type = %s", got)
	}
	if out, _ := l.try("ovs-vsctl", "--timeout=5", "--no-wait", "--bare", "--columns=name", "find", "interface", "name=vpcflow-vxlan"); out != "" {
		t.Errorf("old interface row still exists: %q", out)
	}
	if res, err := Apply(ctx, o); err != nil || res.Changed() {
		t.Errorf("second apply: %v %q", err, res.Changes)
	}
}

// TestApplyConcurrent runs several Applys (separate sessions, like
// replicas) at once against a fresh bridge, repeatedly: the guards must
// leave exactly one tunnel port and one Controller row per target, and
// every change must be committed by exactly one of them.
func TestApplyConcurrent(t *testing.T) {
	t.Parallel()
	l := startOVS(t, false)
	const workers, rounds = 4, 10
	for round := range rounds {
		br, up := randName("vft"), randName("vfu")
		create := round%2 == 1
		if !create {
			l.addBridge(br, up)
		}
		o := applyOpts(l, br, testHost(up))
		o.CreateBridge, o.DatapathType = create, "netdev"
		o.Encapsulation = []flows.Encapsulation{flows.EncapVXLAN, flows.EncapGRE}[round%2]
		var wg sync.WaitGroup
		results := make([]*Result, workers)
		errs := make([]error, workers)
		start := make(chan struct{})
		for i := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i], errs[i] = Apply(ctxT(t), o)
			}()
		}
		close(start)
		wg.Wait()
		all := map[string]int{}
		for i := range workers {
			if errs[i] != nil {
				t.Fatalf("round %d worker %d: %v", round, i, errs[i])
			}
			for _, c := range results[i].Changes {
				all[c]++
			}
		}
		for c, n := range all {
			if n != 1 {
				t.Errorf("round %d: change %q committed %d times", round, c, n)
			}
		}
		tun := flows.TunnelPort(o.Encapsulation)
		if got := l.portNames(br); !slices.Equal(got, sortedOf(up, tun)) {
			t.Errorf("round %d: ports = %q", round, got)
		}
		want := []string{"tcp:127.0.0.1:1 2000 5000 []", "tcp:127.0.0.1:2 2000 5000 []"}
		if got := l.controllers(br); !slices.Equal(got, want) {
			t.Errorf("round %d: controllers = %q", round, got)
		}
		if got := strings.Count(l.vsctl("list-br"), br); got != 1 {
			t.Errorf("round %d: bridge %s listed %d times", round, br, got)
		}
		// No leaked rows: two Controller rows, the bridge's.
		if n := len(strings.Fields(l.vsctl("--columns=_uuid", "--bare", "list", "controller"))); n != 2 {
			t.Errorf("round %d: %d Controller rows, want 2", round, n)
		}
		// Port names are unique per database: clear the stage for the next round.
		l.vsctl("del-br", br)
	}
}

func TestApplyOptionErrors(t *testing.T) {
	t.Parallel()
	h := testHost("eth0")
	for _, tc := range []struct {
		name string
		mod  func(*ApplyOptions)
		want string
	}{
		{"no host", func(o *ApplyOptions) { o.Host = nil }, "no host"},
		{"no controllers", func(o *ApplyOptions) { o.Controllers = nil }, "no controller targets"},
		{"bad controller", func(o *ApplyOptions) { o.Controllers = []string{"192.0.2.1:6653"} }, "controller target"},
		{"bad endpoint", func(o *ApplyOptions) { o.Endpoint = "/var/run/db.sock" }, "OVSDB endpoint"},
		{"bad encap", func(o *ApplyOptions) { o.Encapsulation = "geneve" }, "encapsulation"},
		{"bad datapath", func(o *ApplyOptions) { o.DatapathType = "dpdk" }, "datapath type"},
		{"small backoff", func(o *ApplyOptions) { o.MaxBackoffMS = 10 }, "at least 1000"},
	} {
		o := ApplyOptions{Endpoint: "unix:/nonexistent/db.sock", Host: h, Controllers: []string{"tcp:192.0.2.1:6653"}}
		tc.mod(&o)
		_, err := Apply(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	// An unreachable server is a clear error too.
	o := ApplyOptions{Endpoint: "unix:/nonexistent/db.sock", Host: h, Controllers: []string{"tcp:192.0.2.1:6653"}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Apply(ctx, o); err == nil || !strings.Contains(err.Error(), "cannot connect to ovsdb-server at unix:/nonexistent/db.sock") {
		t.Errorf("err = %v", err)
	}
}
