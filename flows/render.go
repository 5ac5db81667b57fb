package flows

import (
	"sort"
	"strconv"
	"strings"
)

// SortFlows orders flows by table, descending priority, then match text: the
// order ovs-ofctl dumps them in, stable for golden files.
func SortFlows(fs []Flow) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := &fs[i], &fs[j]
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		return a.Match.String() < b.Match.String()
	})
}

// Render prints flows in ovs-ofctl add-flows syntax, sorted, with a comment
// line per table and (annotate) per rule. The output is valid input for
// `ovs-ofctl -O OpenFlow13 add-flows` (comments start with '#').
func Render(fs []Flow, annotate bool) string {
	sorted := append([]Flow(nil), fs...)
	SortFlows(sorted)
	var b strings.Builder
	last := -1
	for i := range sorted {
		f := &sorted[i]
		if annotate && int(f.Table) != last {
			last = int(f.Table)
			t, _ := TableByID(f.Table)
			if t != nil {
				b.WriteString("\n# table " + strconv.Itoa(int(t.ID)) + " " + t.Name + ": " + t.Purpose + "\n")
			}
		}
		if annotate {
			b.WriteString("# [" + f.Cookie.Category().String() + "] " + f.Note + "\n")
		}
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}
