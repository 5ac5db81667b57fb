package controller

import (
	"encoding/binary"
	"hash/maphash"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vpcflow/vpcflow/flows"
)

// A periodic drift check re-reads the whole table. Decoding and diffing it
// (18,000 flows on a host with a 1,000-rule policy) was most of the
// controller's CPU between changes: 200 bridges checked every 30 s cost a
// fifth of a core and its garbage, and a blueprint change that fell
// among them waited for the cores (docs/performance.md §3). A table that
// is byte for byte what the last converged reconcile read (up to the
// counters and durations, which the switch keeps moving) still holds the
// intended flows, so the check compares a fingerprint of the dump with the
// one taken then and decodes only the counters when they agree; any
// difference (a flow added, removed or changed by anyone, a port renumbered)
// falls through to the full decode and diff, which reports and repairs it.

// cleanTable is the fingerprint of a table a full reconcile proved equal to
// the intended flows of plan bound to the port map ports: the sum of its
// entries' mixed hashes and their number. entries maps each flow's switch
// identity (table, priority, match: appendKey) to its entry's hash, so a
// reload's delta can update the fingerprint (applyDelta) instead of making
// the next drift check decode the whole table again: 16 bytes per flow,
// ~0.35 MB for 18,000 flows.
type cleanTable struct {
	plan    *flows.Compiled
	ports   string
	sum     uint64
	n       int
	entries map[uint64]uint64
}

// fp is the table fingerprint tableFP computes for the same dump.
func (c *cleanTable) fp() uint64 { return c.sum ^ mix64(uint64(c.n)) }

// fpSeed keys the fingerprint: a party that can write flows cannot make a
// different table collide with a clean one without knowing it.
var fpSeed = maphash.MakeSeed()

// entryHash hashes one flow-stats entry without the fields the switch
// changes on its own (duration_sec/nsec, packet_count, byte_count). An
// entry too short to be a flow-stats entry is hashed whole (the full
// decode then reports it).
func entryHash(h *maphash.Hash, e []byte) uint64 {
	h.Reset()
	if len(e) >= 56 && int(binary.BigEndian.Uint16(e)) >= 56 && int(binary.BigEndian.Uint16(e)) <= len(e) {
		e = e[:binary.BigEndian.Uint16(e)]
		h.Write(e[:4])    // length, table, pad
		h.Write(e[12:32]) // priority, timeouts, flags, pad, cookie
		h.Write(e[48:])   // match, instructions
	} else {
		h.Write(e)
	}
	return h.Sum64()
}

// tableFP fingerprints a flow dump as a multiset of its entries (entryHash):
// the same flows in any order give the same value. The sum of mixed entry
// hashes is order-independent and, unlike XOR, a repeated entry does not
// cancel out.
func tableFP(raw [][]byte) uint64 {
	var h maphash.Hash
	h.SetSeed(fpSeed)
	var sum uint64
	for _, e := range raw {
		sum += mix64(entryHash(&h, e))
	}
	return sum ^ mix64(uint64(len(raw)))
}

// flowID hashes a flow's switch identity (the key DiffFlows matches on).
func flowID(kb []byte, f *flows.Flow) ([]byte, uint64) {
	kb = appendKey(kb[:0], f)
	return kb, maphash.Bytes(fpSeed, kb)
}

// newCleanTable records the table a converged full reconcile read: raw and
// installed are the same dump, entry for entry.
func newCleanTable(plan *flows.Compiled, ports string, raw [][]byte, installed []flows.Flow) cleanTable {
	c := cleanTable{plan: plan, ports: ports, n: len(raw), entries: make(map[uint64]uint64, len(raw))}
	var h maphash.Hash
	h.SetSeed(fpSeed)
	var kb []byte
	for i, e := range raw {
		eh := entryHash(&h, e)
		c.sum += mix64(eh)
		var id uint64
		kb, id = flowID(kb, &installed[i])
		c.entries[id] = eh
	}
	return c
}

// applyDelta updates the fingerprint for a delta the switch acknowledged:
// d's extra flows were deleted, its modified and missing flows written and
// read back as raw (got is raw decoded, entry for entry). It reports false
// when the result cannot be known (a flow it does not hold, a written flow
// not read back): the caller then forgets the table, and the next drift
// check decodes it in full. A wrong fingerprint can only cost such a full
// check: the drift check compares it with the switch's actual dump.
func (c *cleanTable) applyDelta(d *FlowDiff, raw [][]byte, got []flows.Flow) bool {
	if c.entries == nil || len(raw) != len(got) {
		return false
	}
	var h maphash.Hash
	h.SetSeed(fpSeed)
	var kb []byte
	written := make(map[uint64]uint64, len(got))
	for i := range got {
		var id uint64
		kb, id = flowID(kb, &got[i])
		written[id] = entryHash(&h, raw[i])
	}
	remove := func(f *flows.Flow) bool {
		var id uint64
		kb, id = flowID(kb, f)
		eh, ok := c.entries[id]
		if ok {
			c.sum -= mix64(eh)
			c.n--
			delete(c.entries, id)
		}
		return ok
	}
	add := func(f *flows.Flow) bool {
		var id uint64
		kb, id = flowID(kb, f)
		eh, ok := written[id]
		if _, dup := c.entries[id]; !ok || dup {
			return false
		}
		c.entries[id] = eh
		c.sum += mix64(eh)
		c.n++
		return true
	}
	for i := range d.Extra {
		if !remove(&d.Extra[i]) {
			return false
		}
	}
	for i := range d.Modified {
		if !remove(&d.Modified[i]) || !add(&d.Modified[i]) {
			return false
		}
	}
	for i := range d.Missing {
		if !add(&d.Missing[i]) {
			return false
		}
	}
	return true
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// decodeCounters decodes only what the counters need from a dump
// (flows.DecodeFlowCounters).
func decodeCounters(raw [][]byte) ([]flows.Flow, error) {
	out := make([]flows.Flow, 0, len(raw))
	for _, e := range raw {
		f, err := flows.DecodeFlowCounters(e)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// cleanDriftCheck finishes a drift check whose dump raw matched the clean
// fingerprint: the table still holds the intended flows of plan cur, so
// only the counters and the status move.
func (b *bridge) cleanDriftCheck(p *policy, h *flows.Host, cur *flows.Compiled, pkey string, raw [][]byte, start time.Time) error {
	light, err := decodeCounters(raw)
	if err != nil {
		return err
	}
	b.recordCounters(light)
	b.c.metrics.reconcile.WithLabelValues(b.label()).Observe(time.Since(start).Seconds())
	b.update(func(s *BridgeStatus) {
		s.Converged = true
		s.FlowsIntended, s.FlowsInstalled = len(raw), len(raw)
		s.Revision = p.bp.Revision
		s.LastReconcile = time.Now()
		s.LastChanges = 0
		s.Reconciles++
		s.LastError = ""
	})
	b.log.WithFields(logrus.Fields{"host": h.Name, "reason": "drift check", "flow_mods": 0, "installed": len(raw),
		"converged": true, "fingerprint": true, "took": time.Since(start).Round(time.Millisecond).String()}).Debug("reconciled: in sync")
	b.confirmed, b.confirmedPorts = cur, pkey
	return nil
}
