package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	nextProto   = protoRange{min: ProtocolMin, floor: ProtocolFloor, max: ProtocolMax + 1}
	incompProto = protoRange{min: ProtocolMax + 1, floor: ProtocolMax + 1, max: ProtocolMax + 1}
)

// The compatibility rule: each replica reads the other (floor ≤ the
// reader's max, max ≥ the reader's min), symmetric.
func TestProtocolCompatibility(t *testing.T) {
	for _, tc := range []struct {
		a, b protoRange
		want bool
	}{
		{defaultProto, defaultProto, true},
		{defaultProto, legacyProto, true}, // a vpcflow before protocol versioning
		{defaultProto, nextProto, true},   // N+1 adds an optional field
		{legacyProto, nextProto, true},
		{defaultProto, incompProto, false}, // N+1 raised the floor
		{legacyProto, incompProto, false},
		{nextProto, incompProto, true}, // each reads the other: floors 1 and 3 ≤ 3, both speak 3
		{protoRange{min: 2, floor: 2, max: 2}, legacyProto, false},
	} {
		want := tc.want
		if got := tc.a.compatible(tc.b); got != want {
			t.Errorf("%v compatible with %v = %v, want %v", tc.a, tc.b, got, want)
		}
		if got := tc.b.compatible(tc.a); got != want {
			t.Errorf("not symmetric: %v compatible with %v = %v, want %v", tc.b, tc.a, got, want)
		}
	}
}

func TestProtocolMeta(t *testing.T) {
	for _, p := range []protoRange{defaultProto, nextProto, incompProto} {
		got, ok := protoFromMeta(p.meta())
		if !ok || got != p {
			t.Errorf("meta round trip of %v: %v %v", p, got, ok)
		}
	}
	if got, ok := protoFromMeta(nil); !ok || got != legacyProto {
		t.Errorf("no meta (older vpcflow) = %v %v, want protocol 1", got, ok)
	}
	// A longer meta of the same format (a later vpcflow appends fields) is read.
	if got, ok := protoFromMeta(append(defaultProto.meta(), 9, 9)); !ok || got != defaultProto {
		t.Errorf("meta with appended fields: %v %v", got, ok)
	}
	for _, bad := range [][]byte{{1}, {1, 1, 1}, {2, 1, 1, 1}, {1, 0, 1, 1}, {1, 3, 1, 2}, {1, 1, 3, 2}} {
		if _, ok := protoFromMeta(bad); ok {
			t.Errorf("meta %v accepted", bad)
		}
	}
}

// A build of protocol max+1 with an added optional field: this build
// decodes its state (the unknown field skipped, its protocol recorded), and
// so does the frozen decoder of the vpcflow before protocol versioning.
// Message and push/pull.
func TestCodecNewerProtocolOptionalField(t *testing.T) {
	e := buildVersionEntry()
	e.State.Protocol = nextProto.max
	msg := nextProto.encodeStateMsg(e)
	if !strings.Contains(string(msg), testField) {
		t.Fatal("the next protocol's optional field is not in the message")
	}
	got, err := defaultProto.decodeStateMsg(msg)
	if err != nil || !stateEqual(&got.State, &e.State) {
		t.Fatalf("decoding a protocol %d state: %v %+v", nextProto.max, err, got)
	}
	es, err := defaultProto.decodePushPull(nextProto.encodePushPull([]*stateEntry{e, buildVersionEntry()}))
	if err != nil || len(es) != 2 || es[0].State.Protocol != nextProto.max || es[0].State.Revision != 4 {
		t.Fatalf("decoding a protocol %d push/pull: %v %+v", nextProto.max, err, es)
	}
	// The previous vpcflow (protocol 1) reads it too.
	r := &reader{b: msg[2:]}
	old := r.entry()
	r.extV2(old)
	if r.err != nil || old == nil || old.State.Revision != 4 || old.State.BuildVersion != "" {
		t.Fatalf("protocol 1 decoder: %v %+v", r.err, old)
	}
	if msg[1] != 1 {
		t.Fatalf("floor byte %d: protocol 1 decoders accept only 1", msg[1])
	}
	// A state of protocol 1 (no protocolVersion field) decodes as 0 (= 1).
	e1 := buildVersionEntry()
	got, err = defaultProto.decodeStateMsg(appendExtV2(appendEntry([]byte{msgState, 1}, e1), e1))
	if err != nil || got.State.Protocol != 0 {
		t.Fatalf("protocol 1 state: %v %+v", err, got)
	}
}

// A message of a protocol this replica does not read is refused whole with
// an IncompatibleError naming the sender; a truncated or hostile one never
// panics.
func TestCodecIncompatibleRefused(t *testing.T) {
	e := buildVersionEntry()
	e.State.Protocol = incompProto.max
	var ie *IncompatibleError
	got, err := defaultProto.decodeStateMsg(incompProto.encodeStateMsg(e))
	if got != nil || !errors.As(err, &ie) || ie.Peer != "r1" || ie.Floor != incompProto.floor {
		t.Fatalf("state of floor %d: %v %v", incompProto.floor, got, err)
	}
	for _, want := range []string{"replica r1", "readable by protocol 3", "upgrade or roll back", "docs/upgrade.md"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	es, err := defaultProto.decodePushPull(incompProto.encodePushPull([]*stateEntry{e, buildVersionEntry()}))
	if es != nil || !errors.As(err, &ie) || ie.Peer != "r1" {
		t.Fatalf("push/pull of floor %d: %v %v", incompProto.floor, es, err)
	}
	// A sender below this replica's min (it dropped protocol 1 and 2).
	old := buildVersionEntry()
	old.State.Protocol = ProtocolMax
	if _, err := incompProto.decodeStateMsg(defaultProto.encodeStateMsg(old)); !errors.As(err, &ie) || ie.Protocol != ProtocolMax {
		t.Fatalf("state of protocol %d read by min %d: %v", ProtocolMax, incompProto.min, err)
	}
	if _, err := incompProto.decodePushPull(defaultProto.encodePushPull([]*stateEntry{old})); !errors.As(err, &ie) {
		t.Fatalf("push/pull of protocol %d read by min %d: %v", ProtocolMax, incompProto.min, err)
	}
	// Floor 0, truncated names, huge lengths: errors, no panic.
	for _, b := range [][]byte{{msgState, 0}, {msgState, 200}, {msgState, 200, 0xff, 0xff, 0xff, 0xff, 0x0f}, {msgState, 9, 5, 'a'}} {
		if _, err := defaultProto.decodeStateMsg(b); err == nil {
			t.Errorf("message %v accepted", b)
		}
	}
	for _, b := range [][]byte{{0}, {200}, {200, 1}, {200, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		if _, err := defaultProto.decodePushPull(b); err == nil {
			t.Errorf("push/pull %v accepted", b)
		}
	}
	// A protocol version field above 255 is malformed.
	bad := buildVersionEntry()
	x := appendString(nil, "")                   // policy origin
	x = append([]byte{0}, x...)                  // policy version
	x = appendDpids(x, nil)                      // master
	x = append(x, 0)                             // replica set
	x = appendString(x, "v")                     // build version
	x = append(x, 0x80, 0x02)                    // protocol 256
	msg := appendEntry([]byte{msgState, 1}, bad) // the extension by hand
	msg = append(append(msg, byte(len(x))), x...)
	if _, err := defaultProto.decodeStateMsg(msg); err == nil || !strings.Contains(err.Error(), "protocol version 256") {
		t.Errorf("protocol version 256: %v", err)
	}
}

func startProto(t *testing.T, name string, n int, p protoRange, join ...string) *Cluster {
	cfg := testConfig(name, n, join...)
	cfg.testProto = &p
	return start(t, cfg)
}

// Live, real memberlist: replicas of protocol max and max+1 (with its
// optional field) form one cluster, see each other's protocol and agree on
// ownership.
func TestMixedProtocolCluster(t *testing.T) {
	r0 := startProto(t, "r0", 3, defaultProto)
	r1 := startProto(t, "r1", 3, nextProto, r0.addr())
	r2 := startProto(t, "r2", 3, defaultProto, r0.addr())
	cs := []*Cluster{r0, r1, r2}
	for i, c := range cs {
		c.SetLocal(LocalState{Revision: 1, Hash: "h", Connected: []uint64{uint64(i + 1)}})
	}
	waitFor(t, 10*time.Second, "every replica sees three members and their protocols", func() bool {
		for _, c := range cs {
			ms := c.Members()
			if len(ms) != 3 || !c.HasQuorum() {
				return false
			}
			for _, m := range ms {
				want := uint8(ProtocolMax)
				if m.Name == "r1" {
					want = ProtocolMax + 1
				}
				if m.State.Protocol != want || len(m.State.Connected) != 1 {
					return false
				}
			}
		}
		return true
	})
	if !agree(cs, []uint64{1, 2, 3, 77}, []string{"r0", "r1", "r2"}) {
		t.Fatal("replicas of two protocols disagree on ownership")
	}
	for _, c := range cs {
		if msgs, mem := c.Incompatible(); msgs != 0 || mem != 0 {
			t.Errorf("%s refused %d messages, %d members of a compatible protocol", c.Name(), msgs, mem)
		}
	}
}

// Live: a replica of an incompatible protocol is refused by both others
// (and refuses them): it never becomes their member, never counts toward
// their quorum, and the refusals are counted; nothing crashes.
func TestIncompatibleReplicaRefused(t *testing.T) {
	r0 := startProto(t, "r0", 3, defaultProto)
	r1 := startProto(t, "r1", 3, defaultProto, r0.addr())
	waitMembers(t, 5*time.Second, []*Cluster{r0, r1}, 2)
	r2 := startProto(t, "r2", 3, incompProto, r0.addr(), r1.addr())
	waitFor(t, 10*time.Second, "the refusal of r2 counted on r0 and r1", func() bool {
		_, a := r0.Incompatible()
		_, b := r1.Incompatible()
		_, c := r2.Incompatible()
		return a > 0 && b > 0 && c > 0
	})
	assertStays(t, 1500*time.Millisecond, "r0 and r1 see two members, r2 sees only itself", func() bool {
		return len(r0.Members()) == 2 && len(r1.Members()) == 2 && len(r2.Members()) == 1 &&
			r0.HasQuorum() && r1.HasQuorum() && !r2.HasQuorum()
	})
	for _, c := range []*Cluster{r0, r1} {
		for _, m := range c.Members() {
			if m.Name == "r2" {
				t.Fatalf("%s lists the incompatible replica: %+v", c.Name(), m)
			}
		}
	}
	if got := fmt.Sprint(memberNames(r2)); got != "[r2]" {
		t.Fatalf("r2 members %s", got)
	}
}

// FuzzDecodeState: hostile state messages and push/pull states, read by
// replicas of every protocol range, never panic, and a decoded state always
// names its replica.
func FuzzDecodeState(f *testing.F) {
	e := buildVersionEntry()
	for _, p := range []protoRange{defaultProto, nextProto, incompProto} {
		e.State.Protocol = p.max
		f.Add(p.encodeStateMsg(e))
		f.Add(p.encodePushPull([]*stateEntry{e, e}))
	}
	f.Add([]byte{msgState, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range []protoRange{legacyProto, defaultProto, nextProto, incompProto} {
			if e, err := p.decodeStateMsg(b); err == nil && (e == nil || e.Name == "") {
				t.Fatalf("decoded a state without a name: %+v", e)
			}
			if es, err := p.decodePushPull(b); err == nil {
				for _, e := range es {
					if e == nil || e.Name == "" {
						t.Fatalf("decoded a push/pull entry without a name: %+v", es)
					}
				}
			}
		}
	})
}
