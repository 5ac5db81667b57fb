package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vpcflow/vpcflow/flows"
)

// demoVariants is the demo blueprint and edits of it that exercise every
// input of Apply: GRE, bonded uplinks (active-backup and LACP), no
// tunnel_mac, an ovsdb: endpoint.
func demoVariants(t *testing.T) map[string]*flows.Blueprint {
	t.Helper()
	raw, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	demo := string(raw)
	edits := map[string]func(string) string{
		"demo": func(s string) string { return s },
		"gre":  func(s string) string { return strings.Replace(s, "encapsulation: vxlan", "encapsulation: gre", 1) },
		"bonds": func(s string) string {
			s = strings.Replace(s, "    uplink: eth0", "    uplink: {name: bond0, bond: [eth0, eth1]}", 1)
			return strings.Replace(s, "    uplink: eth0", "    uplink: {name: bond1, bond: [eth2, eth3], lacp: active}", 1)
		},
		"no-mac-ovsdb": func(s string) string {
			s = strings.Replace(s, `    tunnel_mac: "02:00:c0:00:02:0b"`+"\n", "", 1)
			s = strings.Replace(s, "    uplink: eth0", "    uplink: eth0\n    ovsdb: tcp:192.0.2.11:6640", 1)
			return strings.Replace(s, "trusted_peers: []", "trusted_peers: [203.0.113.7]", 1)
		},
	}
	out := map[string]*flows.Blueprint{}
	for name, edit := range edits {
		bp, err := flows.Parse(name+".yaml", []byte(edit(demo)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = bp
	}
	return out
}

// hostFileBlueprint extracts host's file from bp, writes it, loads it back
// as `host apply --host-config` does, and returns its host-only blueprint.
func hostFileBlueprint(t *testing.T, bp *flows.Blueprint, host string) *flows.Blueprint {
	t.Helper()
	hc, err := flows.HostConfigFor(bp, host)
	if err != nil {
		t.Fatal(err)
	}
	y, err := hc.YAML("test")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), host+".yaml")
	if err := os.WriteFile(path, y, 0o644); err != nil {
		t.Fatal(err)
	}
	rbp, err := flows.LoadHostConfigBlueprint(path)
	if err != nil {
		t.Fatal(err)
	}
	return rbp
}

// planned is every step's plan Apply would commit first against the
// database as it is now: the ops (as JSON) and the change lines.
func planned(t *testing.T, ctx context.Context, c *Client, opts ApplyOptions) []string {
	t.Helper()
	opts.Endpoint = c.endpoint
	o, err := opts.normalize()
	if err != nil {
		t.Fatalf("normalize: %v", err)
	}
	s, err := c.readSnapshot(ctx, o.Bridge, []string{o.tunnelPort, o.otherPort, o.Host.Uplink})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.check(s, o); err != nil {
		t.Fatalf("check: %v", err)
	}
	var out []string
	add := func(what string, p *plan, err error) {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if p == nil {
			out = append(out, what+": nothing")
			return
		}
		out = append(out, what+": "+strings.Join(p.lines, "; ")+"\n"+canonicalOps(t, p.ops))
	}
	p, err := c.planCreateBridge(o)(s)
	add("create", p, err)
	if s.bridge == nil {
		return out
	}
	p, err = c.planBridgeSettings(o)(s)
	add("settings", p, err)
	p, err = c.planControllers(o)(s)
	add("controllers", p, err)
	if o.Host.IsBond() {
		bs, err := c.readBond(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		p, err = c.planBond(o)(bs)
		add("bond", p, err)
	}
	p, err = c.planTunnelPort(o)(s)
	add("tunnel", p, err)
	return out
}

// canonicalOps renders OVSDB operations as JSON with the elements of every
// map and set sorted (libovsdb writes them in Go map order).
func canonicalOps(t *testing.T, ops any) string {
	t.Helper()
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var sortSets func(any) any
	sortSets = func(x any) any {
		switch y := x.(type) {
		case map[string]any:
			for k, e := range y {
				y[k] = sortSets(e)
			}
		case []any:
			for i, e := range y {
				y[i] = sortSets(e)
			}
			if len(y) == 2 && (y[0] == "map" || y[0] == "set") {
				if elems, ok := y[1].([]any); ok {
					slices.SortFunc(elems, func(a, b any) int {
						ja, _ := json.Marshal(a)
						jb, _ := json.Marshal(b)
						return strings.Compare(string(ja), string(jb))
					})
				}
			}
		}
		return x
	}
	out, err := json.Marshal(sortSets(v))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestHostConfigApplyPlansEqual: `host apply --host-config` computes the
// same OVSDB transactions as `host apply --blueprint`, for every host of
// the demo blueprint and its variants (GRE, bonds, LACP, no tunnel_mac,
// ovsdb:), both on a hand-made bridge and when the bridge must be created.
// The plans are computed against a real ovsdb-server.
func TestHostConfigApplyPlansEqual(t *testing.T) {
	l := startOVS(t, false)
	ctx := ctxT(t)
	c, err := Dial(ctx, l.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	compared := 0
	for vname, bp := range demoVariants(t) {
		for hi := range bp.Hosts {
			h := &bp.Hosts[hi]
			rbp := hostFileBlueprint(t, bp, h.Name)
			rh := rbp.HostByName(h.Name)
			if rh == nil {
				t.Fatalf("%s/%s: not in its host file", vname, h.Name)
			}
			br := randName("vfb")
			first := h.Uplink
			if h.IsBond() {
				first = h.UplinkSpec.Members[0] // a hand-made single-NIC port that apply converts
			}
			for _, scenario := range []string{"missing bridge", "hand-made bridge"} {
				if scenario == "hand-made bridge" {
					l.vsctl("add-br", br, "--", "add-port", br, first)
				}
				from := func(src *flows.Blueprint, host *flows.Host) []string {
					opts := HostApplyOptions(src, host)
					opts.Bridge, opts.CreateBridge, opts.Logger = br, true, testLogger()
					return planned(t, ctx, c, opts)
				}
				want, got := from(bp, h), from(rbp, rh)
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("%s/%s (%s): the host file's plan differs from the blueprint's:\n--- blueprint\n%s\n--- host file\n%s",
						vname, h.Name, scenario, strings.Join(want, "\n"), strings.Join(got, "\n"))
				}
				if !strings.Contains(strings.Join(want, "\n"), h.DatapathID) {
					t.Fatalf("%s/%s (%s): the plan does not set the datapath id: %s", vname, h.Name, scenario, want)
				}
				compared++
			}
			l.vsctl("del-br", br)
		}
	}
	t.Logf("%d plans compared", compared)
}

// hostFileText is kvm1's host file of watchBP(revision, up, peers...).
func hostFileText(t *testing.T, revision int, up string, peers ...string) string {
	t.Helper()
	bp, err := flows.Parse("bp.yaml", []byte(watchBP(revision, up, peers...)))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := flows.HostConfigFor(bp, "kvm1")
	if err != nil {
		t.Fatal(err)
	}
	y, err := hc.YAML("")
	if err != nil {
		t.Fatal(err)
	}
	return string(y)
}

// TestWatchHostConfigReload: the watcher follows a host file with the
// blueprint's rules (same code path): a new host file is taken, its
// bootstrap flows equal the blueprint's, and a bad file, another host's
// file, a blueprint, an older revision are rejected with the last good
// one kept.
func TestWatchHostConfigReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "host.yaml")
	writeBP(t, path, hostFileText(t, 1, "eth0"))
	log, buf := bufLogger()
	b, err := LoadWatchHostConfig(path, "kvm1", true, log)
	if err != nil {
		t.Fatal(err)
	}
	bpPath := filepath.Join(dir, "blueprint.yaml")
	writeBP(t, bpPath, watchBP(1, "eth0"))
	fromBP, err := LoadWatchBlueprint(bpPath, "kvm1", true, log)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(b.Config().Bootstrap, "\n"), strings.Join(fromBP.Config().Bootstrap, "\n"); got != want || got == "" {
		t.Fatalf("bootstrap flows from the host file differ from the blueprint's:\n%s\n---\n%s", got, want)
	}

	writeBP(t, path, hostFileText(t, 2, "eth0", "203.0.113.7"))
	if changed, err := b.Reload("file changed"); err != nil || !changed || !hasPeerFlow(b.Config().Bootstrap, "203.0.113.7") || b.Config().Revision != 2 {
		t.Fatalf("reload: %v %v %+v", changed, err, b.Config())
	}
	good := b.Config()

	kvm2, err := flows.HostConfigFor(mustParse(t, watchBP(3, "eth0")), "kvm2")
	if err != nil {
		t.Fatal(err)
	}
	kvm2YAML, _ := kvm2.YAML("")
	for _, bad := range []struct{ name, text, want string }{
		{"unknown key", bad0(t), path + ":9:3: host.uplinc: unknown key"},
		{"another host's file", string(kvm2YAML), "this is the host file of kvm2, not of kvm1"},
		{"a blueprint", watchBP(3, "eth0"), "this is a blueprint, not a host file"},
		{"older revision", hostFileText(t, 1, "eth0", "203.0.113.9"), "revision 1 is older than the revision in force 2"},
	} {
		writeBP(t, path, bad.text)
		changed, err := b.Reload("SIGHUP")
		if err == nil || changed || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: changed=%v err=%v, want an error with %q", bad.name, changed, err, bad.want)
		}
		if got := b.Config(); got.Hash != good.Hash {
			t.Errorf("%s: last good host file not kept", bad.name)
		}
	}
	if out := buf.String(); !strings.Contains(out, "host file rejected, last good bootstrap flows kept: "+path+":") || !strings.Contains(out, "host_file="+path) {
		t.Errorf("rejections not logged with the host file's file:line:\n%s", out)
	}
	writeBP(t, path, bad0(t))
	if _, err := LoadWatchHostConfig(path, "kvm1", true, log); err == nil {
		t.Error("a bad host file at start was accepted")
	}
	writeBP(t, path, string(kvm2YAML))
	if _, err := LoadWatchHostConfig(path, "kvm1", true, log); err == nil || !strings.Contains(err.Error(), "host file of kvm2, not of kvm1") {
		t.Errorf("another host's file at start: %v", err)
	}
}

// bad0 is a host file with an unknown key on line 9.
func bad0(t *testing.T) string {
	return strings.Replace(hostFileText(t, 3, "eth0"), "  uplink: eth0", "  uplink: eth0\n  uplinc: eth1", 1)
}

func mustParse(t *testing.T, text string) *flows.Blueprint {
	t.Helper()
	bp, err := flows.Parse("bp.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return bp
}

// TestSelectHost: --host, else the hostname (or its first label), else the
// bridge's datapath id; a host file's peers are never candidates; no match
// fails closed with the fix.
func TestSelectHost(t *testing.T) {
	bp := mustParse(t, watchBP(1, "eth0"))
	dpid := func(id uint64, err error) func() (uint64, error) {
		return func() (uint64, error) { return id, err }
	}
	called := false
	never := func() (uint64, error) { called = true; return 0, errors.New("not called") }
	for _, tc := range []struct {
		name, flag, hostname string
		cands                []flows.Host
		dpid                 func() (uint64, error)
		want, by, err        string
	}{
		{"flag", "kvm2", "kvm1", bp.Hosts, never, "kvm2", "flag", ""},
		{"flag unknown", "kvm9", "kvm1", bp.Hosts, never, "", "", `host "kvm9" is not in bp.yaml (hosts: kvm1, kvm2)`},
		{"hostname", "", "kvm2", bp.Hosts, never, "kvm2", "hostname", ""},
		{"fqdn", "", "kvm1.example.net", bp.Hosts, never, "kvm1", "hostname", ""},
		{"dpid", "", "node-17", bp.Hosts, dpid(0xa2, nil), "kvm2", "datapath-id", ""},
		{"no match", "", "node-17", bp.Hosts, dpid(0xb7, nil), "", "", `hostname "node-17" names no host in bp.yaml (hosts: kvm1, kvm2), and the bridge's datapath id 00000000000000b7 is not one of theirs: pass --host NAME`},
		{"dpid unreadable", "", "node-17", bp.Hosts, dpid(0, errors.New("bridge cloudbr0 not found")), "", "", "could not be read (bridge cloudbr0 not found)"},
		{"host file: own name", "", "kvm1", bp.Hosts[:1], never, "kvm1", "hostname", ""},
		{"host file: a peer's hostname", "", "kvm2", bp.Hosts[:1], dpid(0xa2, nil), "", "", `bp.yaml is the host file of kvm1, but this machine's hostname is "kvm2"`},
		{"host file: dpid", "", "node-17", bp.Hosts[:1], dpid(0xa1, nil), "kvm1", "datapath-id", ""},
		{"host file: wrong flag", "kvm2", "node-17", bp.Hosts[:1], never, "", "", "--host kvm2: bp.yaml is the host file of kvm1, not of kvm2"},
	} {
		called = false
		got, err := SelectHost(tc.cands, "bp.yaml", tc.flag, tc.hostname, tc.dpid)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case got.Host.Name != tc.want || got.By != tc.by:
			t.Errorf("%s: got %s by %s, want %s by %s", tc.name, got.Host.Name, got.By, tc.want, tc.by)
		}
		if called {
			t.Errorf("%s: the datapath id was read although the flag or hostname decided", tc.name)
		}
	}
}

// TestBridgeDatapathID reads other_config:datapath-id from a real
// ovsdb-server, and fails with the reason when it cannot.
func TestBridgeDatapathID(t *testing.T) {
	l := startOVS(t, false)
	ctx := ctxT(t)
	br := randName("vfb")
	l.vsctl("add-br", br)
	if _, err := BridgeDatapathID(ctx, l.endpoint, nil, br); err == nil || !strings.Contains(err.Error(), "has no datapath id yet") {
		t.Errorf("no datapath id: %v", err)
	}
	l.vsctl("set", "bridge", br, "other-config:datapath-id=00000000000000a2")
	if id, err := BridgeDatapathID(ctx, l.endpoint, nil, br); err != nil || id != 0xa2 {
		t.Errorf("got %x %v, want a2", id, err)
	}
	if _, err := BridgeDatapathID(ctx, l.endpoint, nil, "nosuchbr"); err == nil || !strings.Contains(err.Error(), "bridge nosuchbr not found") {
		t.Errorf("missing bridge: %v", err)
	}
}
