package controller

// What a reconcile sends and logs: read-back requests, flow-mod
// encoding, counters and the audit log's flow-change lines.

import (
	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// readBackExact is the most distinct cookies a delta's read-back asks for
// one by one; above it, one request by revision reads them all.
const readBackExact = 8

// readBack selects what a delta's read-back asks the switch for: every
// added or modified flow, in flow-stats requests that follow the commit in
// the same write (no extra round trip). A few distinct cookies are asked
// for exactly (rule + this revision: the switch's cookie index). More are
// asked for by revision alone, in one request: every flow written for a
// revision carries it, and the switch takes at most 50 messages of a
// connection per main-loop turn, so a host that starts carrying a tier (250
// flows, 250 distinct cookies) would otherwise spend five extra turns on
// its read-back (measured: the one straggler of a change, 140-280 ms, with
// 200 bridges in one vswitchd). Flows of the same revision that were not
// written now come back too; the check ignores them.
func readBack(d *FlowDiff, rev uint32) []CookieRead {
	var exact []CookieRead
	seen := map[flows.Cookie]bool{}
	sameRev := true
	for _, set := range [][]flows.Flow{d.Missing, d.Modified} {
		for i := range set {
			ck := set[i].Cookie
			sameRev = sameRev && ck.Revision() == rev&flows.MaxRevision
			if !seen[ck] {
				seen[ck] = true
				exact = append(exact, CookieRead{Cookie: uint64(ck), Mask: ^uint64(0)})
			}
		}
	}
	if len(exact) > readBackExact && sameRev {
		return []CookieRead{{Cookie: uint64(rev & flows.MaxRevision), Mask: uint64(flows.MaxRevision)}}
	}
	return exact
}

// flowMods encodes a diff: deletes of the extra flows, then adds of the
// missing and modified ones (an ADD overwrites).
func flowMods(d *FlowDiff, ports flows.PortMap) ([][]byte, error) {
	msgs := make([][]byte, 0, d.Changes())
	for i := range d.Extra {
		m, err := flows.AppendFlowMod(nil, &d.Extra[i], flows.CmdDeleteStrict, ports)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	for _, set := range [][]flows.Flow{d.Missing, d.Modified} {
		for i := range set {
			m, err := flows.AppendFlowMod(nil, &set[i], flows.CmdAdd, ports)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, m)
		}
	}
	return msgs, nil
}

func (b *bridge) countMods(d *FlowDiff) {
	b.c.metrics.flowMods.WithLabelValues(b.label(), "delete").Add(float64(len(d.Extra)))
	b.c.metrics.flowMods.WithLabelValues(b.label(), "add").Add(float64(len(d.Missing)))
	b.c.metrics.flowMods.WithLabelValues(b.label(), "modify").Add(float64(len(d.Modified)))
}

// logChanges writes the audit log of a bundle: one line per (rule category,
// action) group, listing the cookies, so logging never dominates install time.
func (b *bridge) logChanges(d *FlowDiff, reason string) {
	type key struct {
		cat    flows.Category
		action string
	}
	groups := map[key][]string{}
	var order []key
	add := func(fs []flows.Flow, action string) {
		for i := range fs {
			k := key{fs[i].Cookie.Category(), action}
			if _, ok := groups[k]; !ok {
				order = append(order, k)
			}
			groups[k] = append(groups[k], fs[i].Cookie.String())
		}
	}
	add(d.Extra, "delete")
	add(d.Missing, "add")
	add(d.Modified, "modify")
	for _, k := range order {
		cookies := groups[k]
		lf := logrus.Fields{"audit": "flow-change", "action": k.action, "rule": k.cat.String(), "count": len(cookies), "reason": reason}
		if len(cookies) <= 16 {
			lf["cookies"] = cookies
		}
		if k.action == "delete" && k.cat == flows.CatUnknown {
			lf["note"] = "foreign flow removed"
		}
		b.log.WithFields(lf).Info("flow change")
	}
}
