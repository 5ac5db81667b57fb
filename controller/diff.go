package controller

import (
	"encoding/hex"
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

func installedKey(f *flows.Flow) string {
	if f.Unknown != "" {
		return "unknown:table=" + strconv.Itoa(int(f.Table)) + ",priority=" + strconv.Itoa(int(f.Priority)) + "," + hex.EncodeToString(f.RawMatch)
	}
	return f.Key()
}

// DiffFlows compares intended (compiled and bound) with installed (decoded
// from the switch) flows.
func DiffFlows(intended, installed []flows.Flow) FlowDiff {
	var d FlowDiff
	have := make(map[string]int, len(installed))
	for i := range installed {
		have[installedKey(&installed[i])] = i
	}
	used := make([]bool, len(installed))
	for i := range intended {
		f := &intended[i]
		j, ok := have[f.Key()]
		if !ok {
			d.Missing = append(d.Missing, *f)
			continue
		}
		used[j] = true
		g := &installed[j]
		if g.Cookie.Rule() == f.Cookie.Rule() && g.ActionsString() == f.ActionsString() {
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
