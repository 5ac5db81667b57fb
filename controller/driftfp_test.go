package controller

import (
	"encoding/binary"
	"testing"
	"time"
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
