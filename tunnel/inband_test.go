package tunnel

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
)

func TestManagementFlowsInstalled(t *testing.T) {
	const hdr = "OFPST_FLOW reply (OF1.3) (xid=0x2):\n"
	both := hdr +
		" cookie=0x1000000000000001, duration=3.1s, table=0, n_packets=0, n_bytes=0, priority=200,in_port=LOCAL actions=output:eth0\n" +
		" cookie=0x1000000000000002, duration=3.1s, table=0, n_packets=4, n_bytes=168, priority=200,in_port=eth0 actions=goto_table:1\n" +
		" cookie=0x0, duration=3.1s, table=0, n_packets=0, n_bytes=0, priority=0 actions=drop\n"
	for _, tc := range []struct {
		name, dump, uplink string
		want               bool
	}{
		{"both", both, "eth0", true},
		{"empty table", hdr, "eth0", false},
		{"nothing at all", "", "eth0", false},
		{"only LOCAL", hdr + " cookie=0x1, table=0, priority=200,in_port=LOCAL actions=output:eth0\n", "eth0", false},
		{"only uplink", hdr + " cookie=0x1, table=0, priority=200,in_port=eth0 actions=LOCAL\n", "eth0", false},
		{"other uplink", both, "eth1", false},
		{"bond: a flow for either member counts", both, "eth1,eth0", true},
		{"bond: other members", both, "eth1,eth2", false},
		{"prefix of uplink name is not the uplink", strings.ReplaceAll(both, "in_port=eth0", "in_port=eth0.100"), "eth0", false},
		{"quoted names", hdr +
			" cookie=0x1, table=0, priority=200,in_port=LOCAL actions=output:\"eth0.100\"\n" +
			" cookie=0x2, table=0, priority=200,ip,in_port=\"eth0.100\",nw_dst=192.0.2.11 actions=LOCAL\n", "eth0.100", true},
		{"flows of another table do not count", hdr +
			" cookie=0x1, table=3, priority=200,in_port=LOCAL actions=drop\n" +
			" cookie=0x2, table=3, priority=200,in_port=eth0 actions=drop\n", "eth0", false},
		{"match after other fields, no table column", " priority=100,udp,in_port=LOCAL,tp_dst=4789 actions=drop\n priority=100,in_port=eth0 actions=drop\n", "eth0", true},
		{"in_port only in actions does not count", hdr + " cookie=0x1, table=0, priority=1 actions=load:0->NXM_OF_IN_PORT[],output:in_port=LOCAL\n", "eth0", false},
	} {
		if got := ManagementFlowsInstalled(tc.dump, tc.uplink); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDecideConnectionMode(t *testing.T) {
	in, out := ModeInBand, ModeOutOfBand
	for _, tc := range []struct {
		name      string
		installed bool
		modes     map[string]string
		want      string
		change    bool
	}{
		{"installed, all in-band: close", true, map[string]string{"a": in, "b": in}, out, true},
		{"installed, one still in-band: close", true, map[string]string{"a": out, "b": in}, out, true},
		{"installed, all out-of-band: nothing", true, map[string]string{"a": out, "b": out}, out, false},
		{"missing, out-of-band: open", false, map[string]string{"a": out, "b": out}, in, true},
		{"missing, partly out-of-band: open", false, map[string]string{"a": in, "b": out}, in, true},
		{"missing, in-band: nothing", false, map[string]string{"a": in}, in, false},
		{"no controllers", true, nil, out, false},
	} {
		mode, change := DecideConnectionMode(tc.installed, tc.modes)
		if mode != tc.want || change != tc.change {
			t.Errorf("%s: got (%s, %v), want (%s, %v)", tc.name, mode, change, tc.want, tc.change)
		}
	}
}

func TestSetConnectionModeRoundTrip(t *testing.T) {
	t.Parallel()
	l := startOVS(t, false)
	br, up := randName("vft"), randName("vfu")
	l.addBridge(br, up)
	ctx := ctxT(t)
	o := applyOpts(l, br, testHost(up))
	if _, err := Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	modes, err := ConnectionModes(ctx, l.endpoint, br)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"tcp:127.0.0.1:1": ModeInBand, "tcp:127.0.0.1:2": ModeInBand}; !maps.Equal(modes, want) {
		t.Fatalf("modes = %v, want %v", modes, want)
	}
	// in-band is already effective (unset): nothing changes.
	if changed, err := SetConnectionMode(ctx, l.endpoint, br, ModeInBand); err != nil || changed {
		t.Fatalf("set in-band on unset rows: changed=%v err=%v", changed, err)
	}
	if changed, err := SetConnectionMode(ctx, l.endpoint, br, ModeOutOfBand); err != nil || !changed {
		t.Fatalf("set out-of-band: changed=%v err=%v", changed, err)
	}
	for _, c := range l.controllers(br) {
		if !strings.HasSuffix(c, " out-of-band") {
			t.Errorf("controller row %q not out-of-band", c)
		}
	}
	if changed, err := SetConnectionMode(ctx, l.endpoint, br, ModeOutOfBand); err != nil || changed {
		t.Fatalf("second set out-of-band: changed=%v err=%v", changed, err)
	}
	// Apply never touches the mode of existing rows.
	if res, err := Apply(ctx, o); err != nil || res.Changed() {
		t.Fatalf("apply after out-of-band: %v %q", err, res.Changes)
	}
	modes, err = ConnectionModes(ctx, l.endpoint, br)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"tcp:127.0.0.1:1": ModeOutOfBand, "tcp:127.0.0.1:2": ModeOutOfBand}; !maps.Equal(modes, want) {
		t.Fatalf("modes = %v, want %v", modes, want)
	}
	// A new controller target gets a fresh (in-band) row; the others keep theirs.
	o.Controllers = append(o.Controllers, "tcp:127.0.0.1:3")
	if _, err := Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	modes, _ = ConnectionModes(ctx, l.endpoint, br)
	if want := map[string]string{"tcp:127.0.0.1:1": ModeOutOfBand, "tcp:127.0.0.1:2": ModeOutOfBand, "tcp:127.0.0.1:3": ModeInBand}; !maps.Equal(modes, want) {
		t.Fatalf("modes = %v, want %v", modes, want)
	}
	if changed, err := SetConnectionMode(ctx, l.endpoint, br, ModeInBand); err != nil || !changed {
		t.Fatalf("set in-band: changed=%v err=%v", changed, err)
	}
	for _, c := range l.controllers(br) {
		if strings.HasSuffix(c, " out-of-band") {
			t.Errorf("controller row %q still out-of-band", c)
		}
	}
	if _, err := SetConnectionMode(ctx, l.endpoint, br, "sideways"); err == nil {
		t.Error("invalid mode accepted")
	}
	if _, err := SetConnectionMode(ctx, l.endpoint, randName("vft"), ModeInBand); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing bridge: %v", err)
	}
}

// TestWatcherAgainstSwitch drives the watcher against a real ovs-vswitchd:
// management flows appear -> out-of-band; the table is emptied (as after a
// restart) -> in-band.
func TestWatcherAgainstSwitch(t *testing.T) {
	l := startOVS(t, true)
	// DumpTable0 finds the bridge's management socket through OVS_RUNDIR.
	t.Setenv("OVS_RUNDIR", l.dir)
	br, up := randName("vft"), randName("vfu")
	l.addBridge(br, up)
	ctx := ctxT(t)
	if _, err := Apply(ctx, applyOpts(l, br, testHost(up))); err != nil {
		t.Fatal(err)
	}
	w := &Watcher{Endpoint: l.endpoint, Bridge: br, Uplink: up, Logger: testLogger()}
	defer w.Close()
	step := func(want string) {
		t.Helper()
		got, err := w.Step(ctx)
		if err != nil {
			t.Fatalf("step: %v", err)
		}
		if got != want {
			t.Fatalf("step set %q, want %q", got, want)
		}
	}
	modes := func() map[string]string {
		t.Helper()
		m, err := ConnectionModes(ctx, l.endpoint, br)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// The switch must have the bridge before ovs-ofctl can talk to it.
	waitFor(t, "bridge management socket", 10*time.Second, func() (bool, string) {
		_, err := DumpTable0(ctx, br)
		return err == nil, errString(err)
	})
	step("") // empty table, rows in-band (unset): nothing to do

	l.ofctl("add-flow", br, "table=0,priority=200,in_port=LOCAL,actions=output:"+up)
	step("") // only one of the two management flows
	l.ofctl("add-flow", br, "cookie=0x42,table=0,priority=200,in_port="+up+",actions=LOCAL")
	step(ModeOutOfBand)
	for tgt, m := range modes() {
		if m != ModeOutOfBand {
			t.Errorf("%s: %s", tgt, m)
		}
	}
	step("")

	l.ofctl("del-flows", br) // what a restarted ovs-vswitchd looks like
	step(ModeInBand)
	for tgt, m := range modes() {
		if m != ModeInBand {
			t.Errorf("%s: %s", tgt, m)
		}
	}
	step("")

	// Run loop: flows come back, the loop closes in-band; cancel ends it.
	l.ofctl("add-flow", br, "table=0,priority=200,in_port=LOCAL,actions=output:"+up)
	l.ofctl("add-flow", br, "table=0,priority=200,in_port="+up+",actions=LOCAL")
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	w2 := &Watcher{Endpoint: l.endpoint, Bridge: br, Uplink: up, Logger: testLogger()}
	go func() { done <- w2.Run(rctx, 50*time.Millisecond) }()
	waitFor(t, "out-of-band by Run", 10*time.Second, func() (bool, string) {
		m := modes()
		_, change := DecideConnectionMode(true, m)
		return !change, fmt.Sprint(m)
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestDecideMode(t *testing.T) {
	g, h := 10*time.Second, 3*time.Second
	cases := []struct {
		name string
		in   WatchInput
		want string
	}{
		{"fresh host, no flows", WatchInput{Installed: false, Current: ModeInBand}, ModeInBand},
		{"restarted vswitchd, rows out-of-band, no flows", WatchInput{Installed: false, Current: ModeOutOfBand}, ModeInBand},
		{"flows installed by the controller: close at once", WatchInput{Installed: true, Connected: false, Current: ModeInBand}, ModeOutOfBand},
		{"steady state", WatchInput{Installed: true, Connected: true, ConnectedFor: time.Hour, Current: ModeOutOfBand}, ModeOutOfBand},
		{"short disconnect (controller restart)", WatchInput{Installed: true, DisconnectedFor: 5 * time.Second, Current: ModeOutOfBand}, ModeOutOfBand},
		{"controller unreachable past grace", WatchInput{Installed: true, DisconnectedFor: 11 * time.Second, Current: ModeOutOfBand}, ModeInBand},
		{"opened for unreachable: still not connected", WatchInput{Installed: true, DisconnectedFor: 2 * time.Second, Current: ModeInBand, OpenedUnreachable: true}, ModeInBand},
		{"opened for unreachable: connected, not long", WatchInput{Installed: true, Connected: true, ConnectedFor: time.Second, Current: ModeInBand, OpenedUnreachable: true}, ModeInBand},
		{"opened for unreachable: connected long enough", WatchInput{Installed: true, Connected: true, ConnectedFor: 4 * time.Second, Current: ModeInBand, OpenedUnreachable: true}, ModeOutOfBand},
	}
	for _, c := range cases {
		if got, why := DecideMode(c.in, g, h); got != c.want {
			t.Errorf("%s: got %s (%s), want %s", c.name, got, why, c.want)
		}
	}
}

func TestStepBootstrap(t *testing.T) {
	var installs, dels int
	w := &Watcher{Bridge: "br", Bootstrap: []string{"table=0,priority=0 actions=drop"}, Logger: testLogger(),
		Install:  func(ctx context.Context, b string, fs []string) error { installs++; return nil },
		DelFlows: func(ctx context.Context, b, spec string) error { dels++; return nil }}
	out := map[string]string{"tcp:192.0.2.250:6653": ModeOutOfBand}
	ctx := context.Background()
	if got, _ := w.stepBootstrap(ctx, WatchInput{Installed: false}, out, 10*time.Second, w.Bootstrap); got != "bootstrap" || installs != 1 {
		t.Fatalf("empty table: %q, %d installs", got, installs)
	}
	if got, _ := w.stepBootstrap(ctx, WatchInput{Installed: true, Connected: true, ConnectedFor: time.Hour}, out, 10*time.Second, w.Bootstrap); got != "" || installs != 1 {
		t.Fatalf("steady state: %q", got)
	}
	if got, _ := w.stepBootstrap(ctx, WatchInput{Installed: true, DisconnectedFor: 5 * time.Second}, out, 10*time.Second, w.Bootstrap); got != "" {
		t.Fatalf("short outage: %q", got)
	}
	if got, _ := w.stepBootstrap(ctx, WatchInput{Installed: true, DisconnectedFor: 11 * time.Second}, out, 10*time.Second, w.Bootstrap); got != "repair" || installs != 2 || dels != 3 {
		t.Fatalf("unreachable past grace: %q, %d installs, %d dels", got, installs, dels)
	}
	if got, _ := w.stepBootstrap(ctx, WatchInput{Installed: true, DisconnectedFor: 12 * time.Second}, out, 10*time.Second, w.Bootstrap); got != "" {
		t.Fatalf("repair repeated within the grace period: %q", got)
	}
}
