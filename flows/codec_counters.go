package flows

import (
	"encoding/binary"

	ofp "github.com/contiv/libOpenflow/openflow13"
)

// DecodeFlowCounters decodes the parts of one ofp_flow_stats entry that the
// counters need (Table, Priority, Cookie, DurationMs, Packets, Bytes,
// RawMatch: the match as the switch encoded it, aliasing e) and,
// for a conjunction clause flow (apply-actions holding only conjunction
// actions), its Conjunction actions, so IsConjunctionClause and
// PolicyDecides are exact. It skips the match and every other action: a
// drift check whose table fingerprint matches a table proven equal to the
// intended flows (controller/driftfp.go) reads the counters this way at a
// fraction of DecodeFlowStats's cost. The result is not a full flow: do not
// diff, bind or describe it.
func DecodeFlowCounters(e []byte) (Flow, error) {
	f, m, err := decodeStatsHeader(e)
	if err != nil {
		return f, err
	}
	ml := int(binary.BigEndian.Uint16(m[2:]))
	padded := (ml + 7) / 8 * 8
	if ml < 4 || padded > len(m) {
		return f, decodeErr("match length %d", ml)
	}
	f.RawMatch = m[:padded:padded] // aliases e: copy it to keep it
	ins := m[padded:]
	var conj []Action
	clause := false
	for len(ins) >= 4 {
		t, il := binary.BigEndian.Uint16(ins[0:]), int(binary.BigEndian.Uint16(ins[2:]))
		if il < 4 || il > len(ins) {
			return f, decodeErr("instruction length %d", il)
		}
		body := ins[:il]
		ins = ins[il:]
		if t != ofp.InstrType_APPLY_ACTIONS {
			continue
		}
		if il < 8 {
			return f, decodeErr("apply_actions length %d", il)
		}
		acts := body[8:]
		clause = len(acts) > 0
		for len(acts) >= 4 {
			at, al := binary.BigEndian.Uint16(acts[0:]), int(binary.BigEndian.Uint16(acts[2:]))
			if al < 4 || al > len(acts) {
				return f, decodeErr("action length %d", al)
			}
			a := acts[:al]
			acts = acts[al:]
			if at != ofp.ActionType_Experimenter || al < 16 || binary.BigEndian.Uint32(a[4:]) != nxVendor ||
				binary.BigEndian.Uint16(a[8:]) != ofp.NXAST_CONJUNCTION {
				clause = false
				break
			}
			conj = append(conj, Conjunction{ID: binary.BigEndian.Uint32(a[12:]), Clause: a[10] + 1, NClauses: a[11]})
		}
	}
	if clause && len(conj) > 0 {
		f.Actions = conj
	}
	return f, nil
}
