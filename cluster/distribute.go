package cluster

// Blueprint distribution between replicas.
//
// Every replica gossips the key of the policy it enforces: (Revision,
// Version, Origin). The newest key wins, compared in that order, so all
// replicas agree on one policy without clocks: Revision is the blueprint's
// own, Version is assigned by the replica that accepted a change locally
// (the highest version it sees in the cluster + 1), Origin is that replica's
// name and breaks ties between concurrent changes. A replica that sees a
// newer key with other content fetches the blueprint bytes from a member
// that holds it (FetchBlueprint) and verifies and applies them (package
// controller).
//
// Transfers use memberlist reliable user messages (a TCP stream per
// message; encrypted and authenticated by the keyring when the cluster has
// a key). memberlist v0.7.0 reads a whole stream message into memory before
// it hands it over (maxUserMsgBytes and, for encrypted streams,
// maxPushStateBytes: 20 MiB each), so a blueprint is sent in chunks of
// chunkSize and the receiver accepts at most maxBlueprintBytes for the one
// request it has outstanding, from the member it asked. Requests and chunks
// name their sender; a name that is not a member (IsMember) is ignored, and
// answers go to the member's memberlist address, never to an address taken
// from a message.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

const (
	msgBPRequest byte = 0x02 // wireVersion id from hash
	msgBPChunk   byte = 0x03 // wireVersion id from hash total index data
	msgBPRefuse  byte = 0x04 // wireVersion id from reason
)

const (
	// DefaultMaxBlueprintBytes bounds a blueprint fetched from a peer: the
	// receiver never buffers more for one transfer.
	DefaultMaxBlueprintBytes = 32 << 20
	// defaultChunkSize keeps every message far below memberlist's 20 MiB
	// stream limit, so a chunk costs each side at most about 2 MiB
	// (ciphertext + plaintext) in memberlist's buffers.
	defaultChunkSize = 1 << 20
	// serveConcurrency bounds the transfers this replica sends at once;
	// further requests are refused ("busy") and retried by the asker.
	serveConcurrency = 2
)

// PolicyKey orders the policies replicas enforce: the newest key wins.
type PolicyKey struct {
	Revision uint32
	Version  uint64
	Origin   string
}

// Newer reports whether k is newer than o: a higher revision, else a higher
// version, else the greater origin name.
func (k PolicyKey) Newer(o PolicyKey) bool {
	if k.Revision != o.Revision {
		return k.Revision > o.Revision
	}
	if k.Version != o.Version {
		return k.Version > o.Version
	}
	return k.Origin > o.Origin
}

func (k PolicyKey) String() string {
	return fmt.Sprintf("revision %d, version %d from %s", k.Revision, k.Version, k.Origin)
}

// KeyOf is the policy key that member name gossips in s (Origin "" means
// the member itself, as older replicas gossip no origin).
func KeyOf(name string, s *LocalState) PolicyKey {
	o := s.Origin
	if o == "" {
		o = name
	}
	return PolicyKey{Revision: s.Revision, Version: s.Version, Origin: o}
}

// NewestPolicy returns the newest policy key among the live members (this
// replica included, unless it left), the blueprint hash enforced under it,
// and the live members (not this one) that enforce that hash, the key's
// origin first when it is one of them. ok is false without any state.
func (c *Cluster) NewestPolicy() (key PolicyKey, hash string, holders []string, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, n := range c.liveNamesLocked() {
		s := c.stateLocked(n)
		if s == nil || s.Hash == "" || !c.dist.accepts(n) {
			continue
		}
		k := KeyOf(n, s)
		if !ok || k.Newer(key) {
			key, hash, ok = k, s.Hash, true
		}
	}
	if !ok {
		return key, hash, nil, false
	}
	for _, n := range c.liveNamesLocked() {
		if s := c.stateLocked(n); n != c.name && s != nil && s.Hash == hash && c.dist.accepts(n) {
			if n == key.Origin {
				holders = append([]string{n}, holders...)
			} else {
				holders = append(holders, n)
			}
		}
	}
	return key, hash, holders, true
}

// MaxPolicyVersion returns the highest policy version gossiped by a live
// member (this one included): a local change takes the next one.
func (c *Cluster) MaxPolicyVersion() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var v uint64
	for _, n := range c.liveNamesLocked() {
		if s := c.stateLocked(n); s != nil && s.Version > v && c.dist.accepts(n) {
			v = s.Version
		}
	}
	return v
}

// fetcherKey is the constant rendezvous key that picks the replica polling
// an external blueprint source.
const fetcherKey uint64 = 0x7670_6366_6574_6368 // "vpcfetch"

// Fetcher returns the live member that polls an external blueprint source
// (CloudStack): the rendezvous hash of a constant key over the live members
// (this one included) that IsMember accepts. When it dies or leaves, the
// next one by the same hash takes over. "" after Leave or Shutdown.
func (c *Cluster) Fetcher() string {
	c.mu.RLock()
	names := c.liveNamesLocked()
	c.mu.RUnlock()
	best, bestW := "", uint64(0)
	for _, n := range names {
		if !c.IsMember(n) {
			continue
		}
		w := weight(fetcherKey, n)
		if best == "" || w > bestW || (w == bestW && n < best) {
			best, bestW = n, w
		}
	}
	return best
}

// IsMember reports whether name is a replica this one exchanges blueprints
// with: itself or a live memberlist member, and accepted by the member
// check (SetMemberCheck; the replica set of the blueprint's controllers:
// when membership is restricted to it).
func (c *Cluster) IsMember(name string) bool {
	if name == "" {
		return false
	}
	c.mu.RLock()
	_, live := c.live[name]
	self := name == c.name
	c.mu.RUnlock()
	if !live && !self {
		return false
	}
	return c.dist.accepts(name)
}

// accepts applies the member check alone (no lock taken).
func (d *distributor) accepts(name string) bool {
	if name == d.c.name {
		return true
	}
	if f := d.memberCheck.Load(); f != nil {
		return (*f)(name)
	}
	return true
}

// SetMemberCheck installs an additional test every IsMember answer must
// pass (nil removes it).
func (c *Cluster) SetMemberCheck(f func(name string) bool) {
	if f == nil {
		c.dist.memberCheck.Store(nil)
		return
	}
	c.dist.memberCheck.Store(&f)
}

// SetBlueprintProvider sets the function that returns the bytes of the
// blueprint this replica enforces when its hash is hash (nil: not
// available). Requests from members are answered from it.
func (c *Cluster) SetBlueprintProvider(f func(hash string) []byte) {
	c.dist.provider.Store(&f)
}

// SetMaxBlueprintBytes bounds a fetched blueprint (0: the default).
func (c *Cluster) SetMaxBlueprintBytes(n int) {
	if n <= 0 {
		n = DefaultMaxBlueprintBytes
	}
	c.dist.maxBytes.Store(int64(n))
}

// distributor is the transfer state of one replica.
type distributor struct {
	c           *Cluster
	provider    atomic.Pointer[func(hash string) []byte]
	memberCheck atomic.Pointer[func(name string) bool]
	maxBytes    atomic.Int64
	chunkSize   int // tests lower it

	fetchSem chan struct{} // one outstanding fetch
	serveSem chan struct{} // bounded concurrent answers

	mu      sync.Mutex
	pending *transfer
}

// transfer is the one outstanding fetch.
type transfer struct {
	id       uint64
	from     string
	hash     string
	total    int
	buf      []byte
	got      []bool
	received int
	done     chan error // buffered 1; receives once
	finished bool
}

func newDistributor(c *Cluster) *distributor {
	d := &distributor{c: c, chunkSize: defaultChunkSize,
		fetchSem: make(chan struct{}, 1), serveSem: make(chan struct{}, serveConcurrency)}
	d.maxBytes.Store(DefaultMaxBlueprintBytes)
	return d
}

// ErrNotMember is returned for a fetch from a name that is not a member.
var ErrNotMember = errors.New("not a live member of the replica set")

// FetchBlueprint asks member from for the blueprint whose hash is hash and
// returns its bytes. The caller must parse, validate and check the hash
// itself (package cluster knows no blueprints). One fetch runs at a time;
// a second one waits for the first. The answer is bounded by
// SetMaxBlueprintBytes and accepted only from from, for this request.
func (c *Cluster) FetchBlueprint(ctx context.Context, from, hash string) ([]byte, error) {
	d := c.dist
	select {
	case d.fetchSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-d.fetchSem }()
	if from == c.name || !c.IsMember(from) {
		return nil, fmt.Errorf("fetch blueprint from %s: %w", from, ErrNotMember)
	}
	c.mu.RLock()
	m, ok := c.live[from]
	c.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("fetch blueprint from %s: %w", from, ErrNotMember)
	}
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, err
	}
	t := &transfer{id: binary.LittleEndian.Uint64(idb[:]), from: from, hash: hash, done: make(chan error, 1)}
	d.mu.Lock()
	d.pending = t
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		if d.pending == t {
			d.pending = nil
		}
		d.mu.Unlock()
	}()
	msg := []byte{msgBPRequest, d.c.proto.floor}
	msg = binary.AppendUvarint(msg, t.id)
	msg = appendString(msg, c.name)
	msg = appendString(msg, hash)
	if err := c.ml.SendReliable(&m.node, msg); err != nil {
		return nil, fmt.Errorf("fetch blueprint from %s: sending the request: %w", from, err)
	}
	select {
	case err := <-t.done:
		if err != nil {
			return nil, fmt.Errorf("fetch blueprint from %s: %w", from, err)
		}
		d.mu.Lock()
		buf := t.buf
		d.mu.Unlock()
		return buf, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("fetch blueprint from %s: %w", from, ctx.Err())
	}
}

// handle dispatches a transfer message; false if b is not one.
func (d *distributor) handle(b []byte) bool {
	if len(b) < 1 || (b[0] != msgBPRequest && b[0] != msgBPChunk && b[0] != msgBPRefuse) {
		return false
	}
	if len(b) < 2 {
		d.c.log.Debug("ignoring a truncated blueprint transfer message")
		return true
	}
	if b[1] == 0 || b[1] > d.c.proto.max { // a protocol this replica does not read
		r := &reader{b: b[2:]}
		r.uvarint()
		d.c.noteIncompatible(&IncompatibleError{Peer: peekName(r.b), Floor: b[1], Local: d.c.proto}, false)
		return true
	}
	r := &reader{b: b[2:]}
	id := r.uvarint()
	from := r.string()
	if r.err != nil {
		d.c.log.WithError(r.err).Debug("ignoring malformed blueprint transfer message")
		return true
	}
	if !d.c.IsMember(from) || from == d.c.name {
		d.c.log.WithField("claimed_sender", from).Warn("ignoring a blueprint transfer message from a sender that is not a member of the replica set")
		return true
	}
	switch b[0] {
	case msgBPRequest:
		hash := r.string()
		if r.err != nil {
			return true
		}
		d.serve(id, from, hash)
	case msgBPChunk:
		hash := r.string()
		total := r.uvarint()
		index := r.uvarint()
		data := r.bytes()
		if r.err != nil {
			d.fail(id, from, fmt.Errorf("malformed chunk: %w", r.err))
			return true
		}
		d.chunk(id, from, hash, total, index, data)
	case msgBPRefuse:
		reason := r.string()
		if r.err != nil {
			reason = "refused"
		}
		d.fail(id, from, fmt.Errorf("peer refused: %s", reason))
	}
	return true
}

// bytes reads a length-prefixed byte slice without copying.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errors.New("truncated data")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// fail ends the pending transfer id from from with err.
func (d *distributor) fail(id uint64, from string, err error) {
	d.mu.Lock()
	t := d.pending
	if t == nil || t.id != id || t.from != from || t.finished {
		d.mu.Unlock()
		return
	}
	t.finished, t.buf = true, nil
	d.mu.Unlock()
	t.done <- err
}

// chunk stores one chunk of the pending transfer.
func (d *distributor) chunk(id uint64, from, hash string, total, index uint64, data []byte) {
	d.mu.Lock()
	t := d.pending
	if t == nil || t.id != id || t.from != from || t.finished {
		d.mu.Unlock()
		d.c.log.WithField("peer", from).Debug("ignoring a blueprint chunk for no outstanding request")
		return
	}
	cs := uint64(d.chunkSize)
	var err error
	switch {
	case hash != t.hash:
		err = fmt.Errorf("answered hash %.12s, asked for %.12s", hash, t.hash)
	case total > uint64(d.maxBytes.Load()):
		err = fmt.Errorf("offered a blueprint of %d bytes, more than the limit of %d", total, d.maxBytes.Load())
	case total == 0:
		err = errors.New("offered an empty blueprint")
	case t.buf != nil && total != uint64(t.total):
		err = fmt.Errorf("chunks disagree on the size (%d, then %d bytes)", t.total, total)
	case index >= (total+cs-1)/cs:
		err = fmt.Errorf("chunk %d beyond the %d bytes offered", index, total)
	case uint64(len(data)) != min(cs, total-index*cs):
		err = fmt.Errorf("chunk %d has %d bytes, want %d", index, len(data), min(cs, total-index*cs))
	}
	if err != nil {
		t.finished, t.buf = true, nil
		d.mu.Unlock()
		t.done <- err
		return
	}
	if t.buf == nil {
		t.total = int(total)
		t.buf = make([]byte, total)
		t.got = make([]bool, (total+cs-1)/cs)
	}
	if !t.got[index] {
		t.got[index] = true
		copy(t.buf[index*cs:], data)
		t.received++
	}
	complete := t.received == len(t.got)
	if complete {
		t.finished = true
	}
	d.mu.Unlock()
	if complete {
		t.done <- nil
	}
}

// serve answers a request from member from, unless too many answers are
// being sent already. It never blocks the caller (a memberlist goroutine).
func (d *distributor) serve(id uint64, from, hash string) {
	select {
	case d.serveSem <- struct{}{}:
	default:
		d.c.log.WithField("peer", from).Debug("blueprint request dropped: too many transfers in progress")
		return
	}
	go func() {
		defer func() { <-d.serveSem }()
		d.c.mu.RLock()
		m, ok := d.c.live[from]
		closed := d.c.closed
		d.c.mu.RUnlock()
		if !ok || closed {
			return
		}
		var data []byte
		if f := d.provider.Load(); f != nil {
			data = (*f)(hash)
		}
		lg := d.c.log.WithFields(logrus.Fields{"peer": from, "hash": short(hash)})
		head := func(t byte) []byte {
			b := []byte{t, d.c.proto.floor}
			b = binary.AppendUvarint(b, id)
			return appendString(b, d.c.name)
		}
		if len(data) == 0 {
			msg := appendString(head(msgBPRefuse), "this replica does not enforce blueprint "+short(hash)+" (any more)")
			_ = d.c.ml.SendReliable(&m.node, msg)
			return
		}
		cs := d.chunkSize
		for i := 0; i*cs < len(data); i++ {
			part := data[i*cs : min(len(data), (i+1)*cs)]
			msg := appendString(head(msgBPChunk), hash)
			msg = binary.AppendUvarint(msg, uint64(len(data)))
			msg = binary.AppendUvarint(msg, uint64(i))
			msg = binary.AppendUvarint(msg, uint64(len(part)))
			msg = append(msg, part...)
			if err := d.c.ml.SendReliable(&m.node, msg); err != nil {
				lg.WithError(err).Warn("sending a blueprint to a replica failed")
				return
			}
		}
		lg.WithField("bytes", len(data)).Info("sent the blueprint to a replica")
	}()
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
