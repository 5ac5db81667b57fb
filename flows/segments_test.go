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

// editable returns a copy of bp's YAML fields to edit (reparse it after).
func editable(t *testing.T, bp *Blueprint) *Blueprint {
	t.Helper()
	data, err := yaml.Marshal(bp)
	if err != nil {
		t.Fatal(err)
	}
	var m Blueprint
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// parseEdited marshals an edited blueprint and parses it as file name.
func parseEdited(m *Blueprint, name string) error {
	data, _ := yaml.Marshal(m)
	_, err := Parse(name, data)
	return err
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
		runs += checkIncremental(t, old, cur, n, what)
	}
	if runs == 0 {
		t.Fatal("no incremental compile was checked")
	}
}

// TestIncrementalCloudFit: the same property on a blueprint with VLAN tiers
// and a distributed-routing VPC, under random edits and edits of the VLAN,
// gateway and routing fields.
func TestIncrementalCloudFit(t *testing.T) {
	base := loadCloudFit(t)
	r := rand.New(rand.NewSource(11))
	runs := 0
	for n := 0; n < 40; n++ {
		cur, what := mutateBlueprint(t, r, base, 1000+n)
		runs += checkIncremental(t, base, cur, 1000+n, what)
	}
	for i, c := range []struct {
		what string
		edit func(bp *Blueprint)
	}{
		{"routing off", func(bp *Blueprint) { bp.VPCs[2].Routing = "" }},
		{"new gateway", func(bp *Blueprint) { bp.VPCs[2].Tiers[0].Gateway = "10.40.1.254" }},
		{"new VLAN id", func(bp *Blueprint) { bp.VPCs[0].Tiers[1].VLAN = 300 }},
		{"move green-b-1 to kvm3", func(bp *Blueprint) { v := &bp.VPCs[2].Tiers[1].VMs[0]; v.Host, v.Port = "kvm3", "vnet7" }},
		{"VLAN tier to overlay", func(bp *Blueprint) { tr := &bp.VPCs[0].Tiers[1]; tr.Type, tr.VLAN, tr.VNI = "", 0, 5003 }},
	} {
		m := editable(t, base)
		m.Revision++
		c.edit(m)
		runs += checkIncremental(t, base, reparse(t, m, 2000+i), 2000+i, c.what)
	}
	if runs == 0 {
		t.Fatal("no incremental compile was checked")
	}
}

// checkIncremental compiles every host of cur from its plan and checks it
// equals a fresh compile, and that the changed segments between old's and
// cur's plans give the same delta as the whole flow sets. It returns the
// number of hosts checked incrementally.
func checkIncremental(t *testing.T, old, cur *Blueprint, n int, what string) int {
	t.Helper()
	runs := 0
	oix, cix := NewIndex(old), NewIndex(cur)
	for _, opts := range []CompileOptions{{}, {DropLog: true}} {
		for i := range cur.Hosts {
			h := cur.Hosts[i].Name
			var prev *Compiled
			if old.HostByName(h) != nil {
				prev = mustCompile(t, oix, h, opts)
			}
			inc := mustCompile(t, cix, h, opts)
			got := mustFlows(t, inc)
			fresh, err := CompileWith(cur, h, opts)
			if err != nil {
				t.Fatal(err)
			}
			if d, p := setDelta(fresh, got); len(d)+len(p) > 0 || len(got) != len(fresh) {
				t.Fatalf("blueprint %d (%s), host %s: planned compile differs from CompileWith:\n-%v\n+%v", n, what, h, d, p)
			}
			if prev == nil {
				continue
			}
			wantDel, wantPut := setDelta(mustFlows(t, prev), got)
			before, after, err := ChangedSegments(prev, inc)
			if err != nil {
				t.Fatal(err)
			}
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
	return runs
}

func mustCompile(t *testing.T, ix *Index, h string, opts CompileOptions) *Compiled {
	t.Helper()
	c, err := CompileHost(ix, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustFlows(t *testing.T, c *Compiled) []Flow {
	t.Helper()
	fs, err := c.Flows()
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// TestAddVMTouchesOnlyItsTier: adding a VM changes only its own segment and
// its tier's segment, only on the hosts that carry the tier, and the delta
// is exactly the flows the new VM needs.
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
		prev, inc := mustCompile(t, oix, h, CompileOptions{}), mustCompile(t, cix, h, CompileOptions{})
		was := map[string]uint64{}
		for _, s := range prev.Segs {
			was[s.ID] = s.FP
		}
		var changed []string
		for _, s := range inc.Segs {
			if fp, ok := was[s.ID]; !ok || fp != s.FP {
				changed = append(changed, s.ID)
			}
		}
		want := "[]"
		switch h {
		case "kvm2":
			want = fmt.Sprintf("[vm:blue-web-3 tier:%d]", vni)
		case "kvm1":
			want = fmt.Sprintf("[tier:%d]", vni)
		}
		if fmt.Sprint(changed) != want {
			t.Errorf("%s: changed segments %v, want %s", h, changed, want)
		}
		if (prev.FP() == inc.FP()) != (want == "[]") {
			t.Errorf("%s: plan FP equal = %v, want %v", h, prev.FP() == inc.FP(), want == "[]")
		}
		before, after, err := ChangedSegments(prev, inc)
		if err != nil {
			t.Fatal(err)
		}
		del, put := setDelta(before, after)
		for _, f := range after {
			if f.Cookie.Revision() != cur.Revision {
				t.Errorf("%s: changed flow %s has revision %d, want %d", h, f.Key(), f.Cookie.Revision(), cur.Revision)
			}
		}
		switch {
		case len(del) != 0:
			t.Errorf("%s: adding a VM deletes flows: %v", h, del)
		case h == "kvm3" && len(put) != 0:
			t.Errorf("kvm3 does not carry the tier but its delta is +%v", put)
		case h == "kvm1" && len(put) != 2: // ARP answer + L2 entry to the tunnel
			t.Errorf("kvm1: delta +%v, want 2 flows", put)
		case h == "kvm2" && len(put) != 10: // 6 VM flows, ARP answer, local L2 entry, 2 floods
			t.Errorf("kvm2: delta +%v, want 10 flows", put)
		}
	}
}
