package controller

import (
	"encoding/binary"
	"testing"

	"github.com/vpcflow/vpcflow/flows"
)

func demoFlows(t *testing.T) ([]flows.Flow, flows.PortMap) {
	t.Helper()
	bp, err := flows.Load("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := flows.Compile(bp, "kvm1")
	if err != nil {
		t.Fatal(err)
	}
	ports := flows.PortMap{"eth0": 1, "vnet0": 2, "vnet1": 3, "vnet2": 4, "vpcflow-vxlan": 5}
	bound, missing := flows.Bind(fs, ports)
	if len(missing) != 0 {
		t.Fatalf("missing ports %v", missing)
	}
	return bound, ports
}

// asInstalled round-trips flows through the wire format the way a switch
// reports them (FLOW_MOD body -> ofp_flow_stats -> DecodeFlowStats).
func asInstalled(t *testing.T, fs []flows.Flow, ports flows.PortMap) []flows.Flow {
	t.Helper()
	names := ports.Names()
	out := make([]flows.Flow, 0, len(fs))
	for i := range fs {
		m, err := flows.AppendFlowMod(nil, &fs[i], flows.CmdAdd, ports)
		if err != nil {
			t.Fatal(err)
		}
		// FLOW_MOD: 8 header + 40 fixed, then match + instructions. Build
		// ofp_flow_stats: 48 fixed bytes, then the same match + instructions.
		body := m[48:]
		e := make([]byte, 48+len(body))
		binary.BigEndian.PutUint16(e[0:], uint16(len(e)))
		e[2] = byte(fs[i].Table)
		binary.BigEndian.PutUint16(e[12:], fs[i].Priority)
		binary.BigEndian.PutUint64(e[24:], uint64(fs[i].Cookie))
		copy(e[48:], body)
		f, err := flows.DecodeFlowStats(e, names)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func TestDiffInSyncSendsNothing(t *testing.T) {
	intended, ports := demoFlows(t)
	installed := asInstalled(t, intended, ports)
	d := DiffFlows(intended, installed)
	if !d.Empty() || d.InSync != len(intended) {
		t.Fatalf("identical tables: diff %d changes (%d missing, %d modified, %d extra), %d in sync of %d",
			d.Changes(), len(d.Missing), len(d.Modified), len(d.Extra), d.InSync, len(intended))
	}
}

func TestDiffIgnoresRevisionButNotRule(t *testing.T) {
	intended, ports := demoFlows(t)
	installed := asInstalled(t, intended, ports)
	// Installed under an older revision: still in sync (the revision is the
	// one that last changed the flow).
	for i := range installed {
		installed[i].Cookie = installed[i].Cookie.WithRevision(0)
	}
	if d := DiffFlows(intended, installed); !d.Empty() {
		t.Fatalf("older revision with identical content: %d changes", d.Changes())
	}
	// Another rule's cookie on the same flow: modified.
	installed[3].Cookie = flows.MakeCookie(flows.CatFlood, 7, 0)
	d := DiffFlows(intended, installed)
	if len(d.Modified) != 1 || d.Changes() != 1 {
		t.Fatalf("changed rule bits: %d modified, %d changes", len(d.Modified), d.Changes())
	}
}

func TestDiffMissingModifiedExtra(t *testing.T) {
	intended, ports := demoFlows(t)
	installed := asInstalled(t, intended, ports)
	// Missing: drop two installed flows. Modified: change an action.
	// Extra: a foreign flow.
	installed = append(installed[:5], installed[7:]...)
	for i := range installed {
		if installed[i].Cookie.Category() == flows.CatHostOut {
			installed[i].Actions = []flows.Action{flows.Output{Port: "vnet0"}}
		}
	}
	foreign := flows.Flow{Table: flows.TL2Forward, Priority: 500, RawMatch: []byte{0, 1, 0, 4, 0, 0, 0, 0}}
	installed = append(installed, foreign)
	d := DiffFlows(intended, installed)
	if len(d.Missing) != 2 || len(d.Modified) != 1 || len(d.Extra) != 1 {
		t.Fatalf("want 2 missing, 1 modified, 1 extra; got %d, %d, %d", len(d.Missing), len(d.Modified), len(d.Extra))
	}
	if d.Modified[0].Cookie.Category() != flows.CatHostOut || d.Was[0].ActionsString() != "output:vnet0" {
		t.Fatalf("modified flow: %s (was %s)", d.Modified[0].String(), d.Was[0].String())
	}
}

func TestGenerationOrder(t *testing.T) {
	cases := []struct {
		a, b  uint64
		newer bool
	}{{2, 1, true}, {1, 2, false}, {5, 5, false}, {0, ^uint64(0), true}, {^uint64(0), 0, false}}
	for _, c := range cases {
		if got := generationNewer(c.a, c.b); got != c.newer {
			t.Errorf("generationNewer(%d, %d) = %v, want %v", c.a, c.b, got, c.newer)
		}
	}
	c := &Controller{}
	if g := c.nextGeneration(undefinedGeneration); g != 1 && g != localGen.Load()+1 {
		t.Errorf("first claim on a fresh switch: generation %d", g)
	}
	if g := c.nextGeneration(41); g <= 41 {
		t.Errorf("claim after switch generation 41: %d", g)
	}
}

// TestDiffBondedUplink: a bond host's bundle action round-trips through the
// wire format in sync (no permanent drift), and a changed member list or
// algorithm is a modification.
func TestDiffBondedUplink(t *testing.T) {
	bp, err := flows.Load("../flows/testdata/golden/bond.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := flows.Compile(bp, "hv-a")
	if err != nil {
		t.Fatal(err)
	}
	ports := flows.PortMap{"eth0": 1, "eth1": 2, "vnet0": 3, "vpcflow-vxlan": 4}
	intended, missing := flows.Bind(fs, ports)
	if len(missing) != 0 {
		t.Fatalf("missing ports %v", missing)
	}
	installed := asInstalled(t, intended, ports)
	if d := DiffFlows(intended, installed); len(d.Missing)+len(d.Extra)+len(d.Modified) != 0 {
		t.Fatalf("bond host not in sync after a round trip: %+v", d)
	}
	for i := range installed {
		if len(installed[i].Actions) != 1 {
			continue
		}
		if b, ok := installed[i].Actions[0].(flows.Bundle); ok {
			for _, change := range []flows.Bundle{
				{Fields: b.Fields, Algorithm: b.Algorithm, Members: []string{"eth1", "eth0"}},
				{Fields: b.Fields, Algorithm: flows.BundleHRW, Members: b.Members},
			} {
				mod := append([]flows.Flow(nil), installed...)
				mod[i].Actions = []flows.Action{change}
				if d := DiffFlows(intended, mod); len(d.Modified) != 1 {
					t.Errorf("installed %s: diff %+v, want one modification", change, d)
				}
			}
			return
		}
	}
	t.Fatal("no bundle action installed")
}

// TestReadBack: a delta's read-back asks for a few cookies exactly and for
// many by revision in one request, unless a written flow carries another
// revision (then exactly, whatever the count).
func TestReadBack(t *testing.T) {
	mk := func(n int, rev uint32) []flows.Flow {
		var fs []flows.Flow
		for i := 0; i < n; i++ {
			fs = append(fs, flows.Flow{Cookie: flows.MakeCookie(flows.CatVPCForward, uint32(i), rev)})
		}
		return fs
	}
	d := FlowDiff{Missing: mk(3, 7), Modified: mk(2, 7)}
	if r := readBack(&d, 7); len(r) != 3 || r[0].Mask != ^uint64(0) {
		t.Errorf("5 flows, 3 distinct cookies: %+v, want 3 exact reads", r)
	}
	d = FlowDiff{Missing: mk(250, 7)}
	r := readBack(&d, 7)
	if len(r) != 1 || r[0].Cookie != 7 || r[0].Mask != uint64(flows.MaxRevision) {
		t.Errorf("250 distinct cookies of revision 7: %+v, want one read by revision", r)
	}
	for _, f := range d.Missing {
		if uint64(f.Cookie)&r[0].Mask != r[0].Cookie {
			t.Fatalf("cookie %v not selected by %+v", f.Cookie, r[0])
		}
	}
	d.Modified = mk(1, 6)
	if r := readBack(&d, 7); len(r) != 251 {
		t.Errorf("one flow of another revision: %d reads, want 251 exact", len(r))
	}
	d = FlowDiff{Extra: mk(20, 6)}
	if r := readBack(&d, 7); len(r) != 0 {
		t.Errorf("deletes only: %+v, want no read-back", r)
	}
}

// TestDiffPolicyConntrack: policy flows carry ct actions (a struct with a
// slice, like Bundle): a round trip through the wire reads back in sync,
// a changed zone or commit is one modification, and the diff never
// compares them with == (which panicked the controller on real OVS at
// the first reconcile after installing a policy blueprint).
func TestDiffPolicyConntrack(t *testing.T) {
	bp, err := flows.Load("../flows/testdata/policy/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := flows.Compile(bp, "kvm1")
	if err != nil {
		t.Fatal(err)
	}
	ports := flows.PortMap{"eth0": 1, "vnet0": 2, "vnet1": 3, "vpcflow-vxlan": 4}
	intended, missing := flows.Bind(fs, ports)
	if len(missing) != 0 {
		t.Fatalf("missing ports %v", missing)
	}
	installed := asInstalled(t, intended, ports)
	if d := DiffFlows(intended, installed); len(d.Missing)+len(d.Extra)+len(d.Modified) != 0 {
		t.Fatalf("policy host not in sync after a round trip: %d missing, %d extra, %d modified", len(d.Missing), len(d.Extra), len(d.Modified))
	}
	n := 0
	for i := range installed {
		for k, a := range installed[i].Actions {
			c, ok := a.(flows.CT)
			if !ok {
				continue
			}
			n++
			for _, change := range []flows.CT{
				{Commit: !c.Commit, Zone: c.Zone, Table: c.Table, Exec: c.Exec},
				{Commit: c.Commit, Zone: c.Zone + 1, Table: c.Table, Exec: c.Exec},
			} {
				mod := append([]flows.Flow(nil), installed...)
				mod[i].Actions = append([]flows.Action(nil), installed[i].Actions...)
				mod[i].Actions[k] = change
				if d := DiffFlows(intended, mod); len(d.Modified) != 1 {
					t.Errorf("installed %s: %d modifications, want 1", change, len(d.Modified))
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no ct action in the policy host's flows")
	}
}
