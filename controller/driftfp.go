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
// the intended flows of plan bound to the port map ports.
type cleanTable struct {
	plan  *flows.Compiled
	ports string
	fp    uint64
	n     int
}

// fpSeed keys the fingerprint: a party that can write flows cannot make a
// different table collide with a clean one without knowing it.
var fpSeed = maphash.MakeSeed()

// tableFP fingerprints a flow dump as a multiset of its entries, each
// without the fields the switch changes on its own (duration_sec/nsec,
// packet_count, byte_count): the same flows in any order give the same
// value. An entry too short to be a flow-stats entry is hashed whole (the
// full decode then reports it).
func tableFP(raw [][]byte) uint64 {
	var h maphash.Hash
	h.SetSeed(fpSeed)
	var sum uint64
	for _, e := range raw {
		h.Reset()
		if len(e) >= 56 && int(binary.BigEndian.Uint16(e)) >= 56 && int(binary.BigEndian.Uint16(e)) <= len(e) {
			e = e[:binary.BigEndian.Uint16(e)]
			h.Write(e[:4])    // length, table, pad
			h.Write(e[12:32]) // priority, timeouts, flags, pad, cookie
			h.Write(e[48:])   // match, instructions
		} else {
			h.Write(e)
		}
		// Sum of mixed entry hashes: order-independent, and unlike XOR a
		// repeated entry does not cancel out.
		sum += mix64(h.Sum64())
	}
	return sum ^ mix64(uint64(len(raw)))
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
