package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// provide makes c serve data under hash.
func provide(c *Cluster, hash string, data []byte) {
	c.SetBlueprintProvider(func(h string) []byte {
		if h == hash {
			return data
		}
		return nil
	})
}

func fetch(c *Cluster, from, hash string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.FetchBlueprint(ctx, from, hash)
}

// A replica fetches a blueprint from a member in chunks (reassembled in
// any arrival order); a hash the member does not enforce is refused at
// once.
func TestFetchBlueprintChunks(t *testing.T) {
	cs := startN(t, 3)
	data := bytes.Repeat([]byte("0123456789abcdefghij"), 1000) // 20,000 bytes
	for _, c := range cs {
		c.dist.chunkSize = 999 // 21 chunks, the last one short
	}
	provide(cs[0], "h1", data)
	got, err := fetch(cs[1], "r0", "h1", 10*time.Second)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch: %d bytes, err %v", len(got), err)
	}
	got, err = fetch(cs[2], "r0", "h1", 10*time.Second)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second replica fetch: %d bytes, err %v", len(got), err)
	}
	t0 := time.Now()
	if _, err := fetch(cs[1], "r0", "other", 10*time.Second); err == nil || !strings.Contains(err.Error(), "does not enforce") {
		t.Fatalf("fetch of an unknown hash: %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("refusal took %s", d)
	}
	if _, err := fetch(cs[1], "stranger", "h1", time.Second); !errors.Is(err, ErrNotMember) {
		t.Fatalf("fetch from a non-member: %v", err)
	}
}

// A response larger than the receiver's limit is refused before anything
// is buffered.
func TestFetchBlueprintOversizedRefused(t *testing.T) {
	cs := startN(t, 2)
	for _, c := range cs {
		c.dist.chunkSize = 1000
	}
	provide(cs[0], "big", make([]byte, 50_000))
	cs[1].SetMaxBlueprintBytes(10_000)
	_, err := fetch(cs[1], "r0", "big", 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "more than the limit of 10000") {
		t.Fatalf("oversized fetch: %v", err)
	}
	// Bounded memory: the refusal came from the first chunk's header, the
	// receiver allocated no buffer, and no transfer stays pending.
	cs[1].dist.mu.Lock()
	pending := cs[1].dist.pending
	cs[1].dist.mu.Unlock()
	if pending != nil {
		t.Fatalf("transfer still pending after refusal: %+v", pending)
	}
	// Within the limit it works.
	cs[1].SetMaxBlueprintBytes(50_000)
	if got, err := fetch(cs[1], "r0", "big", 10*time.Second); err != nil || len(got) != 50_000 {
		t.Fatalf("fetch at the limit: %d bytes, %v", len(got), err)
	}
}

// Only members are answered and only members' answers are accepted: a
// member check that rejects the asker gets no answer; chunks that match no
// outstanding request, or claim a non-member sender, are ignored; a chunk
// for another hash fails the transfer.
func TestFetchBlueprintMembersOnly(t *testing.T) {
	cs := startN(t, 3)
	provide(cs[0], "h1", []byte("blueprint"))
	cs[0].SetMemberCheck(func(name string) bool { return name != "r1" })
	if _, err := fetch(cs[1], "r0", "h1", 1500*time.Millisecond); err == nil {
		t.Fatal("a replica the member check rejects was answered")
	}
	cs[0].SetMemberCheck(nil)
	if got, err := fetch(cs[1], "r0", "h1", 10*time.Second); err != nil || string(got) != "blueprint" {
		t.Fatalf("after lifting the check: %q %v", got, err)
	}
	// The receiver refuses answers from a sender its check rejects.
	cs[1].SetMemberCheck(func(name string) bool { return name != "r0" })
	if _, err := fetch(cs[1], "r0", "h1", time.Second); !errors.Is(err, ErrNotMember) {
		t.Fatalf("fetch from a rejected member: %v", err)
	}
	cs[1].SetMemberCheck(nil)

	// Forged chunks straight into r1's handler while a fetch is pending
	// from r0 (which will not answer: its provider is gone).
	cs[0].SetBlueprintProvider(func(string) []byte { time.Sleep(2 * time.Second); return nil })
	done := make(chan error, 1)
	go func() { _, err := fetch(cs[1], "r0", "h1", 5*time.Second); done <- err }()
	var id uint64
	waitFor(t, 5*time.Second, "pending transfer", func() bool {
		cs[1].dist.mu.Lock()
		defer cs[1].dist.mu.Unlock()
		if p := cs[1].dist.pending; p != nil {
			id = p.id
			return true
		}
		return false
	})
	chunk := func(id uint64, from, hash string, data string) []byte {
		b := []byte{msgBPChunk, wireVersion}
		b = binary.AppendUvarint(b, id)
		b = appendString(b, from)
		b = appendString(b, hash)
		b = binary.AppendUvarint(b, uint64(len(data)))
		b = binary.AppendUvarint(b, 0)
		return appendString(b, data)
	}
	for _, m := range [][]byte{
		chunk(id+1, "r0", "h1", "forged"),   // no such request
		chunk(id, "outsider", "h1", "evil"), // not a member
		chunk(id, "r2", "h1", "evil"),       // a member, but not the one asked
	} {
		if !cs[1].dist.handle(m) {
			t.Fatal("transfer message not recognised")
		}
	}
	cs[1].dist.mu.Lock()
	p := cs[1].dist.pending
	cs[1].dist.mu.Unlock()
	if p == nil || p.buf != nil {
		t.Fatalf("forged chunks were accepted: %+v", p)
	}
	cs[1].dist.handle(chunk(id, "r0", "other-hash", "x"))
	if err := <-done; err == nil || !strings.Contains(err.Error(), "asked for") {
		t.Fatalf("chunk for another hash: %v", err)
	}
}

// Every replica agrees on the newest policy key and on the one fetcher,
// which moves when it leaves.
func TestNewestPolicyAndFetcher(t *testing.T) {
	cs := startN(t, 3)
	cs[0].SetLocal(LocalState{Revision: 3, Hash: "a", Version: 7, Origin: "r2"})
	cs[1].SetLocal(LocalState{Revision: 3, Hash: "b", Version: 7})
	cs[2].SetLocal(LocalState{Revision: 2, Hash: "c", Version: 9})
	waitFor(t, 10*time.Second, "every replica sees r0's key as newest", func() bool {
		for _, c := range cs {
			k, h, _, ok := c.NewestPolicy()
			if !ok || h != "a" || k != (PolicyKey{3, 7, "r2"}) || c.MaxPolicyVersion() != 9 {
				return false
			}
		}
		return true
	})
	if _, _, holders, _ := cs[1].NewestPolicy(); len(holders) != 1 || holders[0] != "r0" {
		t.Fatalf("holders %v", holders)
	}
	f := cs[0].Fetcher()
	for _, c := range cs {
		if c.Fetcher() != f {
			t.Fatalf("fetcher: %s says %s, r0 says %s", c.Name(), c.Fetcher(), f)
		}
	}
	var rest []*Cluster
	for _, c := range cs {
		if c.Name() == f {
			if err := c.Leave(time.Second); err != nil {
				t.Fatal(err)
			}
			continue
		}
		rest = append(rest, c)
	}
	waitFor(t, 10*time.Second, "a new fetcher", func() bool {
		return rest[0].Fetcher() != f && rest[0].Fetcher() != "" && rest[0].Fetcher() == rest[1].Fetcher()
	})
}

func TestPolicyKeyOrder(t *testing.T) {
	ks := []PolicyKey{{0, 0, "a"}, {0, 0, "b"}, {0, 1, "a"}, {0, 2, ""}, {1, 0, "a"}, {2, 0, "a"}}
	for i := range ks {
		for j := range ks {
			if got, want := ks[i].Newer(ks[j]), i > j; got != want {
				t.Errorf("%v.Newer(%v) = %v", ks[i], ks[j], got)
			}
		}
	}
}

// States with the policy extension decode on a replica that does not know
// it (wire version 1 decoders stop after the entries), and states without
// it decode as version 0.
func TestCodecExtensionCompatible(t *testing.T) {
	e := &stateEntry{Name: "r1", Epoch: 9, Seq: 2, State: LocalState{Revision: 4, Hash: "h", OpenFlow: "x",
		Connected: []uint64{5}, Version: 12, Origin: "r0"}}
	old := func(b []byte) *stateEntry { // today's decoder of a state message
		r := &reader{b: b[2:]}
		x := r.entry()
		if r.err != nil {
			t.Fatalf("old decoder: %v", r.err)
		}
		return x
	}
	if got := old(encodeStateMsg(e)); got.State.Revision != 4 || got.State.Hash != "h" || !slices.Equal(got.State.Connected, []uint64{5}) {
		t.Fatalf("old decoder read %+v", got)
	}
	// push/pull: the old decoder reads count entries and ignores the rest.
	pp := encodePushPull([]*stateEntry{e, e})
	r := &reader{b: pp[1:]}
	n := r.uvarint()
	for range n {
		if x := r.entry(); x == nil || x.Name != "r1" || x.State.Revision != 4 {
			t.Fatalf("old push/pull decoder: %v %+v", r.err, x)
		}
	}
	// An old replica's message (no extension).
	got, err := decodeStateMsg(appendEntry([]byte{msgState, wireVersion}, e))
	if err != nil || got.State.Version != 0 || got.State.Origin != "" || got.State.Revision != 4 {
		t.Fatalf("decoding an old message: %v %+v", err, got)
	}
	var ppOld []byte
	ppOld = append(ppOld, wireVersion)
	ppOld = binary.AppendUvarint(ppOld, 1)
	ppOld = appendEntry(ppOld, e)
	es, err := decodePushPull(ppOld)
	if err != nil || len(es) != 1 || es[0].State.Version != 0 {
		t.Fatalf("decoding an old push/pull: %v %+v", err, es)
	}
	es, err = decodePushPull(pp)
	if err != nil || len(es) != 2 || es[1].State.Version != 12 || es[1].State.Origin != "r0" {
		t.Fatalf("push/pull with extension: %v %+v", err, es)
	}
}
