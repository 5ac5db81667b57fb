package flows

import (
	"fmt"
	"math/rand"
	"net/netip"
	"sort"
	"testing"

	"go.yaml.in/yaml/v3"
)

// flowSet renders flows as a set of "key => rule actions" lines, ignoring
// the cookie's revision bits (what the reconcile diff compares).
func flowSet(fs []Flow) map[string]string {
	m := make(map[string]string, len(fs))
	for i := range fs {
		m[fs[i].Key()] = fmt.Sprintf("%s %s", fs[i].Cookie.Rule(), fs[i].ActionsString())
	}
	return m
}

// setDelta is what a diff of cur against prev must change: keys to delete
// and keys to add or rewrite.
func setDelta(prev, cur []Flow) (del, put []string) {
	p, c := flowSet(prev), flowSet(cur)
	for k := range p {
		if _, ok := c[k]; !ok {
			del = append(del, k)
		}
	}
	for k, v := range c {
		if pv, ok := p[k]; !ok || pv != v {
			put = append(put, k+" => "+v)
		}
	}
	sort.Strings(del)
	sort.Strings(put)
	return del, put
}

func reparse(t *testing.T, bp *Blueprint, n int) *Blueprint {
	t.Helper()
	data, err := yaml.Marshal(bp)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Parse(fmt.Sprintf("mutated-%d.yaml", n), data)
	if err != nil {
		t.Fatalf("mutated blueprint %d does not validate: %v\n%s", n, err, data)
	}
	return out
}

// mutateBlueprint applies one random blueprint change (as an operator would) to a
// copy of bp and says what it did.
func mutateBlueprint(t *testing.T, r *rand.Rand, bp *Blueprint, n int) (*Blueprint, string) {
	t.Helper()
	data, _ := yaml.Marshal(bp)
	var m Blueprint
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m.Revision++
	p := &m.VPCs[r.Intn(len(m.VPCs))]
	tr := &p.Tiers[r.Intn(len(p.Tiers))]
	host := m.Hosts[r.Intn(len(m.Hosts))].Name
	what := ""
	switch r.Intn(8) {
	case 0:
		pfx := netip.MustParsePrefix(tr.CIDR) // the generator's VMs use .10 and up
		tr.VMs = append(tr.VMs, VM{Name: fmt.Sprintf("new-%d", n), Host: host, Port: fmt.Sprintf("spare%d", n),
			MAC: fmt.Sprintf("52:54:ff:00:%02x:%02x", n/256, n%256), IP: pfx.Addr().Next().Next().Next().String()})
		what = "add VM to " + p.Name + "/" + tr.Name + " on " + host
	case 1:
		v := &tr.VMs[r.Intn(len(tr.VMs))]
		v.Host, v.Port = host, fmt.Sprintf("moved%d", n)
		what = "move VM " + v.Name + " to " + host
	case 2:
		if len(tr.VMs) > 1 {
			k := r.Intn(len(tr.VMs))
			what = "remove VM " + tr.VMs[k].Name
			tr.VMs = append(tr.VMs[:k], tr.VMs[k+1:]...)
		} else {
			what = "nothing (single VM)"
		}
	case 3:
		v := &tr.VMs[r.Intn(len(tr.VMs))]
		v.MAC = fmt.Sprintf("52:54:ee:00:%02x:%02x", n/256, n%256)
		what = "new MAC for " + v.Name
	case 4:
		m.TrustedPeers = append(m.TrustedPeers, "198.51.100.250")
		what = "add trusted peer"
	case 5:
		h := &m.Hosts[r.Intn(len(m.Hosts))]
		h.TunnelIP = "203.0.113.200"
		what = "new tunnel IP for " + h.Name
	case 6:
		if m.Encapsulation == EncapGRE {
			m.Encapsulation = EncapVXLAN
		} else {
			m.Encapsulation = EncapGRE
		}
		what = "switch encapsulation"
	case 7:
		m.Hosts = append(m.Hosts, Host{Name: "added", DatapathID: "00000000000000ff", TunnelIP: "203.0.113.201", Uplink: "eth0"})
		what = "add host"
	}
	return reparse(t, &m, n), what
}

// TestIncrementalCompileEqualsFresh: compiling under a changed blueprint
// while reusing the previous compile's unchanged segments gives the same
// flows as compiling from scratch, and the changed segments alone yield the
// same delta as comparing the whole flow sets.
func TestIncrementalCompileEqualsFresh(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	runs := 0
	for n := 0; n < genCount(); n++ {
		old := genBlueprint(t, r, n)
		cur, what := mutateBlueprint(t, r, old, n)
		oix, cix := NewIndex(old), NewIndex(cur)
		for _, opts := range []CompileOptions{{}, {DropLog: true}} {
			for i := range cur.Hosts {
				h := cur.Hosts[i].Name
				var prev *Compiled
				if old.HostByName(h) != nil {
					var err error
					if prev, err = CompileHost(oix, h, opts, nil); err != nil {
						t.Fatal(err)
					}
				}
				inc, err := CompileHost(cix, h, opts, prev)
				if err != nil {
					t.Fatal(err)
				}
				fresh, err := CompileWith(cur, h, opts)
				if err != nil {
					t.Fatal(err)
				}
				if d, p := setDelta(fresh, inc.Flows()); len(d)+len(p) > 0 {
					t.Fatalf("blueprint %d (%s), host %s: incremental compile differs from a fresh one:\n-%v\n+%v", n, what, h, d, p)
				}
				if inc.Len() != len(fresh) || inc.FP() != mustCompile(t, cix, h, opts).FP() {
					t.Fatalf("blueprint %d (%s), host %s: Len/FP differ from a fresh compile", n, what, h)
				}
				if prev == nil {
					continue
				}
				wantDel, wantPut := setDelta(prev.Flows(), inc.Flows())
				before, after := ChangedSegments(prev, inc)
				gotDel, gotPut := setDelta(before, after)
				if fmt.Sprint(wantDel, wantPut) != fmt.Sprint(gotDel, gotPut) {
					t.Fatalf("blueprint %d (%s), host %s: segment delta differs from the full delta:\nfull  -%v +%v\nsegs  -%v +%v",
						n, what, h, wantDel, wantPut, gotDel, gotPut)
				}
				// FP is conservative: equal FPs promise equal flows (the
				// controller then skips the host); the converse need not hold.
				if inc.FP() == prev.FP() && len(wantDel)+len(wantPut) != 0 {
					t.Fatalf("blueprint %d (%s), host %s: same FP but the flows differ: -%v +%v", n, what, h, wantDel, wantPut)
				}
				runs++
			}
		}
	}
	if runs == 0 {
		t.Fatal("no incremental compile was checked")
	}
}

func mustCompile(t *testing.T, ix *Index, h string, opts CompileOptions) *Compiled {
	t.Helper()
	c, err := CompileHost(ix, h, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAddVMTouchesOnlyItsTier: adding a VM rebuilds only its own segment and
// its tier's segment, only on the hosts that carry the tier; every other
// segment is the previous compile's (same backing array), keeping the
// revision that last changed it.
func TestAddVMTouchesOnlyItsTier(t *testing.T) {
	old := loadDemo(t)
	data, _ := yaml.Marshal(old)
	var m Blueprint
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m.Revision = old.Revision + 1
	tr := &m.VPCs[0].Tiers[0] // blue/web: kvm1 and kvm2
	tr.VMs = append(tr.VMs, VM{Name: "blue-web-3", Host: "kvm2", Port: "vnet9", MAC: "52:54:00:0a:01:09", IP: "10.10.1.19"})
	cur := reparse(t, &m, 0)
	oix, cix := NewIndex(old), NewIndex(cur)
	vni := cur.VPCs[0].Tiers[0].VNI
	for i := range cur.Hosts {
		h := cur.Hosts[i].Name
		prev := mustCompile(t, oix, h, CompileOptions{})
		inc, err := CompileHost(cix, h, CompileOptions{}, prev)
		if err != nil {
			t.Fatal(err)
		}
		was := map[string]*Segment{}
		for k := range prev.Segs {
			was[prev.Segs[k].ID] = &prev.Segs[k]
		}
		var rebuilt []string
		for k := range inc.Segs {
			s := &inc.Segs[k]
			o := was[s.ID]
			if o != nil && len(s.Flows) > 0 && &o.Flows[0] == &s.Flows[0] {
				for _, f := range s.Flows {
					if f.Cookie.Revision() != old.Revision {
						t.Fatalf("%s: reused segment %s has revision %d, want %d", h, s.ID, f.Cookie.Revision(), old.Revision)
					}
				}
				continue
			}
			rebuilt = append(rebuilt, s.ID)
		}
		carries := h == "kvm1" || h == "kvm2"
		want := "[]"
		switch {
		case h == "kvm2":
			want = fmt.Sprintf("[vm:blue-web-3 tier:%d]", vni)
		case carries:
			want = fmt.Sprintf("[tier:%d]", vni)
		}
		if fmt.Sprint(rebuilt) != want {
			t.Errorf("%s: rebuilt segments %v, want %s", h, rebuilt, want)
		}
		before, after := ChangedSegments(prev, inc)
		del, put := setDelta(before, after)
		switch {
		case !carries && len(del)+len(put) != 0:
			t.Errorf("%s does not carry the tier but its delta is -%v +%v", h, del, put)
		case carries && len(del) != 0:
			t.Errorf("%s: adding a VM deletes flows: %v", h, del)
		case h == "kvm1" && len(put) != 2: // ARP answer + L2 entry to the tunnel
			t.Errorf("kvm1: delta +%v, want 2 flows", put)
		case h == "kvm2" && len(put) != 10: // 6 VM flows, ARP answer, local L2 entry, 2 floods
			t.Errorf("kvm2: delta +%v, want 10 flows", put)
		}
	}
}
