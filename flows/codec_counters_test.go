package flows

import (
	"encoding/binary"
	"math/rand"
	"testing"
)

// statsEntry turns a FLOW_MOD into the ofp_flow_stats entry a switch would
// return for it (the bodies after the 48-byte headers are laid out alike).
func statsEntry(t *testing.T, f *Flow, ports PortMap, packets, bytes uint64) []byte {
	t.Helper()
	fm, err := AppendFlowMod(nil, f, 0, ports)
	if err != nil {
		t.Fatal(err)
	}
	e := make([]byte, 48, len(fm))
	e[2] = byte(f.Table)
	binary.BigEndian.PutUint32(e[4:], 7)
	binary.BigEndian.PutUint32(e[8:], 5e8)
	binary.BigEndian.PutUint16(e[12:], f.Priority)
	binary.BigEndian.PutUint64(e[24:], uint64(f.Cookie))
	binary.BigEndian.PutUint64(e[32:], packets)
	binary.BigEndian.PutUint64(e[40:], bytes)
	e = append(e, fm[48:]...)
	binary.BigEndian.PutUint16(e, uint16(len(e)))
	return e
}

// TestDecodeFlowCountersAgrees: on every flow of the policy examples (ACL
// and security-group conjunctions, plain allows, ct flows, the isolation
// core), the counters-only decode gives what the full decode gives for
// table, priority, cookie, counters, duration and whether the flow is a
// conjunction clause.
func TestDecodeFlowCountersAgrees(t *testing.T) {
	bps := []*Blueprint{loadPolicy(t)}
	r := rand.New(rand.NewSource(7))
	for n := 0; n < 20; n++ {
		bps = append(bps, genPolicyBlueprint(t, r, n))
	}
	clauses := 0
	for _, bp := range bps {
		for _, h := range bp.Hosts {
			fs, err := Compile(bp, h.Name)
			if err != nil {
				t.Fatal(err)
			}
			ports := PortMap{}
			for _, f := range fs {
				if mf, ok := f.Match.Get(FInPort); ok {
					if _, ok := ports[mf.Port]; !ok {
						ports[mf.Port] = uint32(len(ports) + 1)
					}
				}
				for _, a := range f.Actions {
					if o, ok := a.(Output); ok {
						if _, ok := ports[o.Port]; !ok {
							ports[o.Port] = uint32(len(ports) + 1)
						}
					}
				}
			}
			bound, _ := Bind(fs, ports)
			for i := range bound {
				e := statsEntry(t, &bound[i], ports, uint64(i)*3+1, uint64(i)*97)
				full, err := DecodeFlowStats(e, ports.Names())
				if err != nil {
					t.Fatal(err)
				}
				light, err := DecodeFlowCounters(e)
				if err != nil {
					t.Fatal(err)
				}
				if light.Table != full.Table || light.Priority != full.Priority || light.Cookie != full.Cookie ||
					light.Packets != full.Packets || light.Bytes != full.Bytes || light.DurationMs != full.DurationMs ||
					string(light.RawMatch) != string(full.RawMatch) {
					t.Fatalf("%s: counters decode %+v, full decode %+v", full.String(), light, full)
				}
				if IsConjunctionClause(&light) != IsConjunctionClause(&full) || PolicyDecides(&light) != PolicyDecides(&full) {
					t.Fatalf("%s: clause %v/%v decides %v/%v (counters/full)", full.String(), IsConjunctionClause(&light), IsConjunctionClause(&full),
						PolicyDecides(&light), PolicyDecides(&full))
				}
				if IsConjunctionClause(&full) {
					clauses++
				}
			}
		}
	}
	if clauses == 0 {
		t.Fatal("the policy example compiled to no conjunction clause: the test checks nothing")
	}
	for _, bad := range [][]byte{nil, make([]byte, 55), append([]byte{0, 200}, make([]byte, 60)...)} {
		if _, err := DecodeFlowCounters(bad); err == nil {
			t.Errorf("a malformed entry of %d bytes decoded", len(bad))
		}
	}
}
