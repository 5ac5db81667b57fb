package controller

import (
	"encoding/binary"
	"slices"
	"sort"
	"strconv"

	"github.com/vpcflow/vpcflow/flows"
)

// FlowDiff is the difference between the intended and the installed flows of
// one bridge (DESIGN §4): flows are keyed by table, priority and canonical
// match; a flow is in sync when its actions and its cookie's rule bits
// (category + object) are equal. The cookie's revision bits are not compared:
// an installed flow keeps the revision that last changed it.
type FlowDiff struct {
	Missing  []flows.Flow // intended, not installed: add
	Modified []flows.Flow // installed with other actions or rule: replace (ADD overwrites)
	Extra    []flows.Flow // installed, not intended (foreign or stale): delete
	InSync   int
	// Was holds the installed version of each Modified flow, same order.
	Was []flows.Flow
}

// Empty reports whether nothing needs to change.
func (d *FlowDiff) Empty() bool {
	return len(d.Missing) == 0 && len(d.Modified) == 0 && len(d.Extra) == 0
}

// Changes is the number of flow-mods the diff needs.
func (d *FlowDiff) Changes() int { return len(d.Missing) + len(d.Modified) + len(d.Extra) }

// appendKey appends a compact binary key of a flow's switch identity:
// table, priority and the canonical (sorted, normalised) match, field by
// field. It identifies the same entries as flows.Flow.Key (whose text form
// is built from the same fields) without formatting text: the read-back diff
// of 100k flows spent most of its time and allocations rendering keys
// (pprof: Flow.Key + ActionsString ~0.45 s of a 1.0 s reconcile).
func appendKey(buf []byte, f *flows.Flow) []byte {
	if f.Unknown != "" {
		buf = append(buf, 0xff, byte(f.Table), byte(f.Priority>>8), byte(f.Priority))
		return append(buf, f.RawMatch...)
	}
	buf = append(buf, 0, byte(f.Table), byte(f.Priority>>8), byte(f.Priority))
	for _, x := range f.Match {
		buf = append(buf, byte(x.Field))
		if x.Field == flows.FInPort {
			buf = binary.BigEndian.AppendUint16(buf, uint16(len(x.Port)))
			buf = append(buf, x.Port...)
			continue
		}
		buf = binary.BigEndian.AppendUint64(buf, x.Value)
		if x.Field.Is128() { // IPv6 addresses: the high 64 bits too
			buf = binary.BigEndian.AppendUint64(buf, x.Hi)
			buf = binary.BigEndian.AppendUint64(buf, x.MaskHi)
		}
		if x.Masked {
			buf = append(buf, 1)
			buf = binary.BigEndian.AppendUint64(buf, x.Mask)
		} else {
			buf = append(buf, 0)
		}
	}
	return buf
}

// sameActions reports whether two flows have the same instructions (what
// ActionsString renders), comparing the typed actions instead of text.
func sameActions(a, b *flows.Flow) bool {
	if a.Unknown != "" || b.Unknown != "" {
		return a.Unknown == b.Unknown && a.ActionsString() == b.ActionsString()
	}
	if a.Goto != b.Goto || a.Meter != b.Meter || len(a.Actions) != len(b.Actions) {
		return false
	}
	for i := range a.Actions {
		// Every action type is a comparable struct, except Bundle (its
		// member list is a slice) and CT (its exec list is a slice): == on
		// them would panic.
		if x, ok := a.Actions[i].(flows.Bundle); ok {
			if y, ok := b.Actions[i].(flows.Bundle); !ok || !x.Equal(y) {
				return false
			}
			continue
		}
		if x, ok := a.Actions[i].(flows.CT); ok {
			if y, ok := b.Actions[i].(flows.CT); !ok || !sameCT(x, y) {
				return false
			}
			continue
		}
		if a.Actions[i] != b.Actions[i] {
			return false
		}
	}
	return true
}

// sameCT compares two ct actions by value (a nil and an empty exec list
// are the same).
func sameCT(x, y flows.CT) bool {
	return x.Commit == y.Commit && x.Zone == y.Zone && x.Table == y.Table && slices.Equal(x.Exec, y.Exec)
}

// DiffFlows compares intended (compiled and bound) with installed (decoded
// from the switch) flows.
func DiffFlows(intended, installed []flows.Flow) FlowDiff {
	var d FlowDiff
	have := make(map[string]int, len(installed))
	var kb []byte
	for i := range installed {
		kb = appendKey(kb[:0], &installed[i])
		have[string(kb)] = i
	}
	used := make([]bool, len(installed))
	for i := range intended {
		f := &intended[i]
		kb = appendKey(kb[:0], f)
		j, ok := have[string(kb)]
		if !ok {
			d.Missing = append(d.Missing, *f)
			continue
		}
		used[j] = true
		g := &installed[j]
		if g.Cookie.Rule() == f.Cookie.Rule() && sameActions(g, f) {
			d.InSync++
			continue
		}
		d.Modified = append(d.Modified, *f)
		d.Was = append(d.Was, *g)
	}
	for j := range installed {
		if !used[j] {
			d.Extra = append(d.Extra, installed[j])
		}
	}
	return d
}

func portsKey(pm map[string]uint32) string {
	names := make([]string, 0, len(pm))
	for n := range pm {
		names = append(names, n)
	}
	sort.Strings(names)
	var b []byte
	for _, n := range names {
		b = append(b, n...)
		b = append(b, '=')
		b = strconv.AppendUint(b, uint64(pm[n]), 10)
		b = append(b, ',')
	}
	return string(b)
}
