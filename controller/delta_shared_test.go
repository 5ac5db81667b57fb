package controller

import (
	"fmt"
	"sort"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vpcflow/vpcflow/bench/gen"
	"github.com/vpcflow/vpcflow/flows"
)

func deltaTestPolicy(t *testing.T, edit func(bp *flows.Blueprint)) *policy {
	t.Helper()
	raw, err := gen.Build(gen.Realistic(24))
	if err != nil {
		t.Fatal(err)
	}
	raw.Revision = 1
	gen.AddPolicy(raw)
	if edit != nil {
		raw.Revision = 2
		edit(raw)
	}
	data, err := yaml.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	bp, err := flows.Parse("delta-test.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	return newPolicy(bp, flows.CompileOptions{NoNotes: true})
}

// TestDeltaDiffShared: the reload delta with shared policy segments diffed
// once per reload equals the plain diff of all changed segments, on every
// host, for changes that touch only a shared segment (an ACL rule), only
// per-host segments and both (VMs leaving, joining and moving change the
// security groups' members); the shared diff is computed once and reused.
func TestDeltaDiffShared(t *testing.T) {
	base := deltaTestPolicy(t, nil)
	edits := map[string]func(bp *flows.Blueprint){
		"acl rule port": func(bp *flows.Blueprint) {
			if err := gen.EditACLRule(bp, 0, 5, 4444); err != nil {
				t.Fatal(err)
			}
		},
		"vm removed": func(bp *flows.Blueprint) {
			tr := &bp.VPCs[0].Tiers[0]
			tr.VMs = tr.VMs[1:]
		},
		"vm moved": func(bp *flows.Blueprint) {
			vm := &bp.VPCs[1].Tiers[1].VMs[0]
			vm.Host = bp.Hosts[len(bp.Hosts)-1].Name
			vm.Port = "vnet99"
		},
		"acl rule and vm moved": func(bp *flows.Blueprint) {
			if err := gen.EditACLRule(bp, 1, 3, 4445); err != nil {
				t.Fatal(err)
			}
			vm := &bp.VPCs[1].Tiers[0].VMs[0]
			vm.Host = bp.Hosts[0].Name
			vm.Port = "vnet98"
		},
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			next := deltaTestPolicy(t, edit)
			sharedHosts, changedHosts := 0, 0
			for _, h := range next.bp.Hosts {
				prev, err := base.plan(h.Name)
				if err != nil {
					t.Fatal(err)
				}
				cur, err := next.plan(h.Name)
				if err != nil {
					t.Fatal(err)
				}
				ports := flows.PortMap{}
				for i := 0; i < 64; i++ {
					ports[fmt.Sprintf("vnet%d", i)] = uint32(i + 1)
				}
				ports["vnet98"], ports["vnet99"] = 98, 99
				for _, p := range []string{h.Uplink, flows.TunnelPort(next.bp.Encapsulation)} {
					ports[p] = uint32(100 + len(ports))
				}
				got, err := deltaDiff(next, prev, cur, ports)
				if err != nil {
					t.Fatal(err)
				}
				before, after, err := flows.ChangedSegments(prev, cur)
				if err != nil {
					t.Fatal(err)
				}
				was, _ := flows.Bind(before, ports)
				now, _ := flows.Bind(after, ports)
				want := DiffFlows(now, was)
				if diffKeys(got) != diffKeys(want) || got.InSync != want.InSync {
					t.Fatalf("host %s: delta with shared segments\n%s\nwant\n%s", h.Name, diffKeys(got), diffKeys(want))
				}
				if _, _, sh, _ := flows.ChangedSegmentsSplit(prev, cur); len(sh) > 0 {
					sharedHosts++
					for i := range sh {
						for _, f := range append(append([]flows.Flow(nil), sh[i].Before...), sh[i].After...) {
							if _, ok := f.Match.Get(flows.FInPort); ok {
								t.Fatalf("shared segment %s names a port: %s", sh[i].ID, f.String())
							}
							for _, a := range f.Actions {
								if _, ok := a.(flows.Output); ok {
									t.Fatalf("shared segment %s names a port: %s", sh[i].ID, f.String())
								}
							}
						}
					}
				}
				if !want.Empty() {
					changedHosts++
				}
			}
			t.Logf("%d hosts changed, %d with a changed shared segment, %d shared diffs computed", changedHosts, sharedHosts, len(next.sharedDeltas.m))
			if changedHosts == 0 {
				t.Fatal("the edit changed no host: the test checks nothing")
			}
			if sharedHosts > 1 && len(next.sharedDeltas.m) >= sharedHosts {
				t.Errorf("%d shared diffs for %d hosts: not shared", len(next.sharedDeltas.m), sharedHosts)
			}
		})
	}
}

// diffKeys is a diff as text: every flow-mod it implies, sorted.
func diffKeys(d FlowDiff) string {
	var out []string
	for _, f := range d.Missing {
		out = append(out, "+ "+f.String())
	}
	for _, f := range d.Modified {
		out = append(out, "~ "+f.String())
	}
	for _, f := range d.Extra {
		out = append(out, "- "+f.String())
	}
	sort.Strings(out)
	s := ""
	for _, l := range out {
		s += l + "\n"
	}
	return s
}

// BenchmarkReloadDeltaPolicy200 is the controller's work for one ACL rule
// change after "blueprint loaded", over the bench's 200 hosts (1,000 rules,
// security groups on all 4,000 VMs; docs/performance.md §3), as every
// bridge's reconcileDelta does it: plan the host under the new blueprint
// and diff the changed segments. "segments" is the per-bridge diff of all
// changed segments (before the shared-segment cache), "shared" deltaDiff.
//
//	go test -run x -bench ReloadDeltaPolicy200 -benchtime 5x -count 5 ./controller/
func BenchmarkReloadDeltaPolicy200(b *testing.B) {
	mk := func(edit bool) *flows.Blueprint {
		raw, err := gen.Build(gen.Realistic(200))
		if err != nil {
			b.Fatal(err)
		}
		raw.Revision = 1
		gen.AddPolicy(raw)
		if edit {
			raw.Revision = 2
			if err := gen.EditACLRule(raw, 0, 5, 4444); err != nil {
				b.Fatal(err)
			}
		}
		data, err := yaml.Marshal(raw)
		if err != nil {
			b.Fatal(err)
		}
		bp, err := flows.Parse("bench.yaml", data)
		if err != nil {
			b.Fatal(err)
		}
		return bp
	}
	before, after := mk(false), mk(true)
	opts := flows.CompileOptions{NoNotes: true}
	base := newPolicy(before, opts)
	ports := flows.PortMap{}
	for i := 0; i < 64; i++ {
		ports[fmt.Sprintf("vnet%d", i)] = uint32(i + 1)
	}
	ports["eth0"], ports[flows.TunnelPort(before.Encapsulation)] = 100, 101
	for _, mode := range []string{"segments", "shared"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			mods := 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				next := newPolicy(after, opts) // indexed at load ("write -> loaded")
				b.StartTimer()
				mods = 0
				for _, h := range after.Hosts {
					prev, err := base.plan(h.Name)
					if err != nil {
						b.Fatal(err)
					}
					cur, err := next.plan(h.Name)
					if err != nil {
						b.Fatal(err)
					}
					var d FlowDiff
					if mode == "shared" {
						if d, err = deltaDiff(next, prev, cur, ports); err != nil {
							b.Fatal(err)
						}
					} else {
						fb, fa, err := flows.ChangedSegments(prev, cur)
						if err != nil {
							b.Fatal(err)
						}
						was, _ := flows.Bind(fb, ports)
						now, _ := flows.Bind(fa, ports)
						d = DiffFlows(now, was)
					}
					mods += d.Changes()
				}
			}
			b.ReportMetric(float64(mods), "flow-mods")
		})
	}
}
