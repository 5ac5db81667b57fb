package cluster

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"
)

// appendExtV2 is the extension encoder of the previous vpcflow (replica set
// last, no build version), frozen here to test mixed-version clusters.
func appendExtV2(b []byte, e *stateEntry) []byte {
	var x []byte
	x = binary.AppendUvarint(x, e.State.Version)
	x = appendString(x, e.State.Origin)
	x = appendDpids(x, e.State.Master)
	x = binary.AppendUvarint(x, uint64(len(e.State.ReplicaSet)))
	for _, n := range e.State.ReplicaSet {
		x = appendString(x, n)
	}
	b = binary.AppendUvarint(b, uint64(len(x)))
	return append(b, x...)
}

// extV2 is the previous vpcflow's extension decoder, frozen: it reads the
// fields it knows and ignores the rest of the extension.
func (r *reader) extV2(e *stateEntry) {
	if r.err != nil || len(r.b) == 0 || e == nil {
		return
	}
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		r.err = errTest("extension exceeds message")
	}
	if r.err != nil {
		return
	}
	x := &reader{b: r.b[:n]}
	r.b = r.b[n:]
	if len(x.b) > 0 {
		e.State.Version = x.uvarint()
	}
	if len(x.b) > 0 {
		e.State.Origin = x.string()
	}
	if len(x.b) > 0 {
		e.State.Master = x.dpids()
	}
	if len(x.b) > 0 {
		n := x.uvarint()
		for i := uint64(0); i < n && x.err == nil; i++ {
			e.State.ReplicaSet = append(e.State.ReplicaSet, x.string())
		}
	}
	if x.err != nil {
		r.err = x.err
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

func buildVersionEntry() *stateEntry {
	return &stateEntry{Name: "r1", Epoch: 9, Seq: 2, State: LocalState{Revision: 4, Hash: "h", OpenFlow: "x",
		Connected: []uint64{5}, Version: 12, Origin: "r0", Master: []uint64{5}, ReplicaSet: []string{"r0", "r1"},
		BuildVersion: "v1.4.0-3-gabcdef0"}}
}

// The build version travels as the last extension field: a replica of the
// previous vpcflow decodes a newer state (every field it knows, the build
// version skipped), and a newer replica decodes the previous one's state
// with an empty build version. Message and push/pull, both ways.
func TestCodecBuildVersionCompatible(t *testing.T) {
	e := buildVersionEntry()
	prev := *e
	prev.State.BuildVersion = ""

	// New → previous decoder.
	msg := encodeStateMsg(e)
	r := &reader{b: msg[2:]}
	got := r.entry()
	r.extV2(got)
	if r.err != nil || got == nil || !stateEqual(&got.State, &prev.State) {
		t.Fatalf("previous decoder on a new state message: %v %+v", r.err, got)
	}
	pp := encodePushPull([]*stateEntry{e, e})
	r = &reader{b: pp[1:]}
	n := r.uvarint()
	var es []*stateEntry
	for range n {
		es = append(es, r.entry())
	}
	for _, x := range es {
		r.extV2(x)
	}
	if r.err != nil || len(es) != 2 || !stateEqual(&es[1].State, &prev.State) {
		t.Fatalf("previous decoder on a new push/pull: %v %+v", r.err, es)
	}

	// Previous → new decoder.
	old := appendExtV2(appendEntry([]byte{msgState, wireVersion}, e), e)
	got, err := decodeStateMsg(old)
	if err != nil || !stateEqual(&got.State, &prev.State) {
		t.Fatalf("decoding the previous version's state message: %v %+v", err, got)
	}
	oldPP := []byte{wireVersion}
	oldPP = binary.AppendUvarint(oldPP, 2)
	oldPP = appendEntry(appendEntry(oldPP, e), e)
	oldPP = appendExtV2(appendExtV2(oldPP, e), e)
	es, err = decodePushPull(oldPP)
	if err != nil || len(es) != 2 || !stateEqual(&es[0].State, &prev.State) || es[1].State.BuildVersion != "" {
		t.Fatalf("decoding the previous version's push/pull: %v %+v", err, es)
	}

	// New → new.
	got, err = decodeStateMsg(msg)
	if err != nil || got.State.BuildVersion != "v1.4.0-3-gabcdef0" || !stateEqual(&got.State, &e.State) {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	es, err = decodePushPull(pp)
	if err != nil || len(es) != 2 || es[0].State.BuildVersion != e.State.BuildVersion || es[1].State.BuildVersion != e.State.BuildVersion {
		t.Fatalf("push/pull round trip: %v %+v", err, es)
	}
}

// A peer's build version is shown in `vpcflow status`: it is cut to
// maxBuildVersion bytes and control characters are replaced, never refused
// (a refused state would drop the member from the quorum).
func TestCodecBuildVersionCleaned(t *testing.T) {
	e := buildVersionEntry()
	e.State.BuildVersion = "v1\x1b[2J\n" + strings.Repeat("x", 200)
	got, err := decodeStateMsg(encodeStateMsg(e))
	if err != nil {
		t.Fatal(err)
	}
	if bv := got.State.BuildVersion; len(bv) != maxBuildVersion || !strings.HasPrefix(bv, "v1?[2J?x") {
		t.Fatalf("build version %q: want the first %d bytes, control characters replaced", bv, maxBuildVersion)
	}
	if got.State.Revision != 4 || !slices.Equal(got.State.ReplicaSet, []string{"r0", "r1"}) {
		t.Fatalf("other fields lost: %+v", got.State)
	}
}

// Live: replicas gossip their build versions and each sees the others'.
func TestBuildVersionGossiped(t *testing.T) {
	cs := startN(t, 3)
	for i, c := range cs {
		c.SetLocal(LocalState{Revision: 1, Hash: "h", BuildVersion: "build-" + c.Name() + "-" + string(rune('a'+i))})
	}
	waitFor(t, 10*time.Second, "every replica to see every build version", func() bool {
		for _, c := range cs {
			ms := c.Members()
			if len(ms) != 3 {
				return false
			}
			for _, m := range ms {
				if !strings.HasPrefix(m.State.BuildVersion, "build-"+m.Name+"-") {
					return false
				}
			}
		}
		return true
	})
}
