package controller

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

func fpEntry(table byte, prio uint16, cookie uint64, body string) []byte {
	e := make([]byte, 48, 48+len(body))
	e[2] = table
	binary.BigEndian.PutUint16(e[12:], prio)
	binary.BigEndian.PutUint64(e[24:], cookie)
	e = append(e, body...)
	binary.BigEndian.PutUint16(e, uint16(len(e)))
	return e
}

// TestTableFP: the fingerprint ignores order, durations and counters, and
// sees every other change (a flow added, removed, duplicated, its actions,
// priority, table or cookie changed).
func TestTableFP(t *testing.T) {
	base := func() [][]byte {
		return [][]byte{
			fpEntry(0, 100, 1, "match-a/actions-a"),
			fpEntry(0, 90, 2, "match-b/actions-b"),
			fpEntry(3, 10, 3, "match-c/actions-c"),
		}
	}
	want := tableFP(base())
	same := base()
	same[0], same[2] = same[2], same[0]
	for _, e := range same {
		binary.BigEndian.PutUint32(e[4:], 99)      // duration_sec
		binary.BigEndian.PutUint32(e[8:], 12345)   // duration_nsec
		binary.BigEndian.PutUint64(e[32:], 777)    // packet_count
		binary.BigEndian.PutUint64(e[40:], 123456) // byte_count
	}
	if got := tableFP(same); got != want {
		t.Fatal("reordered dump with other counters and durations fingerprints differently")
	}
	for name, mut := range map[string]func([][]byte) [][]byte{
		"actions":   func(d [][]byte) [][]byte { d[1][len(d[1])-1] = 'X'; return d },
		"priority":  func(d [][]byte) [][]byte { binary.BigEndian.PutUint16(d[1][12:], 91); return d },
		"table":     func(d [][]byte) [][]byte { d[1][2] = 4; return d },
		"cookie":    func(d [][]byte) [][]byte { binary.BigEndian.PutUint64(d[1][24:], 9); return d },
		"removed":   func(d [][]byte) [][]byte { return d[:2] },
		"added":     func(d [][]byte) [][]byte { return append(d, fpEntry(5, 1, 4, "x")) },
		"duplicate": func(d [][]byte) [][]byte { return append(d, d[0]) },
		"swapped bodies": func(d [][]byte) [][]byte {
			return [][]byte{fpEntry(0, 100, 1, "match-b/actions-b"), fpEntry(0, 90, 2, "match-a/actions-a"), d[2]}
		},
	} {
		if tableFP(mut(base())) == want {
			t.Errorf("%s: the fingerprint did not change", name)
		}
	}
}

// TestDriftFirstSpread: bridges that connect together start their drift
// cycles at phases spread over the whole interval (no waves of dumps).
func TestDriftFirstSpread(t *testing.T) {
	const d = 30 * time.Second
	var deciles [10]int
	for i := 0; i < 2000; i++ {
		f := driftFirst(d)
		if f < d/10 || f > d+d/10 {
			t.Fatalf("first drift check after %s: outside [%s, %s]", f, d/10, d+d/10)
		}
		deciles[min(int((f-d/10)*10/d), 9)]++
	}
	for i, n := range deciles {
		if n < 100 { // 200 expected per tenth of the interval
			t.Fatalf("tenth %d of the interval holds %d of 2000 first checks: not spread (%v)", i, n, deciles)
		}
	}
}

// fpEntries encodes flows as the flow-stats entries a switch returns.
func fpEntries(t *testing.T, fs []flows.Flow, ports flows.PortMap) [][]byte {
	t.Helper()
	var out [][]byte
	for i := range fs {
		fm, err := flows.AppendFlowMod(nil, &fs[i], 0, ports)
		if err != nil {
			t.Fatal(err)
		}
		e := make([]byte, 48, len(fm))
		e[2] = byte(fs[i].Table)
		binary.BigEndian.PutUint32(e[4:], uint32(i)) // durations and counters
		binary.BigEndian.PutUint64(e[32:], uint64(i)*7)
		binary.BigEndian.PutUint16(e[12:], fs[i].Priority)
		binary.BigEndian.PutUint64(e[24:], uint64(fs[i].Cookie))
		e = append(e, fm[48:]...)
		binary.BigEndian.PutUint16(e, uint16(len(e)))
		out = append(out, e)
	}
	return out
}

// TestCleanTableApplyDelta: the fingerprint of a proven table updated by a
// delta (flows deleted, rewritten, added, as the switch reads them back)
// equals the fingerprint of the resulting table's dump; a delta that
// deletes a flow the table does not hold, or writes one not read back,
// cannot be applied.
func TestCleanTableApplyDelta(t *testing.T) {
	bp, err := flows.Load("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := flows.Compile(bp, "kvm1")
	if err != nil {
		t.Fatal(err)
	}
	ports := flows.PortMap{}
	for i, n := range []string{"eth0", "vnet0", "vnet1", "vnet2", "vnet3", flows.TunnelPort(bp.Encapsulation)} {
		ports[n] = uint32(i + 1)
	}
	fs, _ = flows.Bind(fs, ports)
	if len(fs) < 20 {
		t.Fatalf("%d flows: too few for the test", len(fs))
	}
	decode := func(raw [][]byte) []flows.Flow {
		out, err := decodeFlows(raw, ports.Names())
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	rawA := fpEntries(t, fs, ports)
	c := newCleanTable(nil, "", rawA, decode(rawA))
	if c.fp() != tableFP(rawA) {
		t.Fatal("a new clean table's fingerprint is not the dump's")
	}
	// The delta: delete 3, rewrite 2 (another cookie revision), add 2.
	var d FlowDiff
	d.Extra = append(d.Extra, fs[0:3]...)
	for _, f := range fs[3:5] {
		g := f
		g.Cookie = flows.MakeCookie(f.Cookie.Category(), f.Cookie.Object(), f.Cookie.Revision()+1)
		d.Modified = append(d.Modified, g)
		d.Was = append(d.Was, f)
	}
	for _, f := range fs[5:7] {
		g := f
		g.Priority += 7
		d.Missing = append(d.Missing, g)
	}
	written := append(append([]flows.Flow(nil), d.Missing...), d.Modified...)
	rawBack := fpEntries(t, written, ports)
	after := append(append(append([]flows.Flow(nil), fs[5:]...), d.Modified...), d.Missing...)
	want := tableFP(fpEntries(t, after, ports))
	if want == c.fp() {
		t.Fatal("the delta does not change the fingerprint: the test checks nothing")
	}
	c2 := newCleanTable(nil, "", rawA, decode(rawA))
	if !c2.applyDelta(&d, rawBack, decode(rawBack)) {
		t.Fatal("a valid delta could not be applied")
	}
	if c2.fp() != want || c2.n != len(after) {
		t.Fatalf("after the delta: fingerprint %x (%d flows), the resulting dump's %x (%d flows)", c2.fp(), c2.n, want, len(after))
	}
	// Deleting a flow the table does not hold: refused.
	c3 := newCleanTable(nil, "", rawA, decode(rawA))
	bad := d
	bad.Extra = append([]flows.Flow{d.Missing[0]}, d.Extra...)
	if c3.applyDelta(&bad, rawBack, decode(rawBack)) {
		t.Error("a delta deleting an unknown flow was applied")
	}
	// A written flow missing from the read-back: refused.
	c4 := newCleanTable(nil, "", rawA, decode(rawA))
	if c4.applyDelta(&d, rawBack[1:], decode(rawBack[1:])) {
		t.Error("a delta with a written flow not read back was applied")
	}
}
