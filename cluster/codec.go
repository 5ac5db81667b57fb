package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Wire format of replica state (all integers unsigned varints, strings
// length-prefixed):
//
//	msgState:    0x01 floor entry
//	push/pull:   floor count entry×count
//	entry:       name epoch seq revision hash maxGeneration openflow
//	             nConnected delta-encoded-sorted-dpids×nConnected
//
// floor is the message's protocol floor (protocol.go): the oldest protocol
// version whose decoder reads it (1: every vpcflow so far; the byte was
// called the wire version before protocol versioning, and decoders of
// protocol 1 accept exactly 1). A decoder refuses a message whose floor is
// above its ProtocolMax, as a whole, before applying anything.
//
// Extensions are appended where a decoder of protocol 1 stops reading
// (it ignores trailing bytes), so older and newer replicas decode each
// other's states without raising the floor:
//
//	msgState:    0x01 floor entry ext
//	push/pull:   floor count entry×count ext×count
//	ext:         length (bytes that follow) policyVersion policyOrigin
//	             nMaster delta-encoded-sorted-dpids×nMaster
//	             nSet name×nSet   (the replica set it enforces)
//	             buildVersion     (its vpcflow version, informational)
//	             protocolVersion  (the protocol it speaks, ≥ 2; 0 = not known,
//	                              a relayed state of a protocol-1 replica)
//	             [later fields]   (a newer protocol's optional fields)
//
// A state without ext (an older replica) has policy version 0, origin ""
// (the member itself) and no MASTER list (its back-off then lasts the
// whole ReclaimBackoff, as before). A state whose ext ends before a field
// (a replica of an older vpcflow) leaves that field empty: no build
// version, protocol 1. A decoder skips ext fields it does not know.
//
// (epoch, seq) orders the states of one replica: epoch is the replica's
// start time in nanoseconds, so a restarted replica's state supersedes its
// previous life's even though seq restarts at 1.
const (
	msgState byte = 0x01
	// wireVersion is the floor this build writes (ProtocolFloor; the test
	// knob may raise it: protoRange.floor).
	wireVersion byte = ProtocolFloor
)

// stateEntry is one replica's versioned state.
type stateEntry struct {
	Name  string
	Epoch uint64
	Seq   uint64
	State LocalState
}

func (e *stateEntry) newerThan(o *stateEntry) bool {
	if e.Epoch != o.Epoch {
		return e.Epoch > o.Epoch
	}
	return e.Seq > o.Seq
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendEntry(b []byte, e *stateEntry) []byte {
	b = appendString(b, e.Name)
	b = binary.AppendUvarint(b, e.Epoch)
	b = binary.AppendUvarint(b, e.Seq)
	b = binary.AppendUvarint(b, uint64(e.State.Revision))
	b = appendString(b, e.State.Hash)
	b = binary.AppendUvarint(b, e.State.MaxGeneration)
	b = appendString(b, e.State.OpenFlow)
	return appendDpids(b, e.State.Connected)
}

// appendDpids appends a count and the sorted, unique dpids delta-encoded.
func appendDpids(b []byte, ds []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ds)))
	prev := uint64(0)
	for _, d := range ds {
		b = binary.AppendUvarint(b, d-prev)
		prev = d
	}
	return b
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated or overlong varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errors.New("truncated string")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) entry() *stateEntry {
	e := &stateEntry{}
	e.Name = r.string()
	e.Epoch = r.uvarint()
	e.Seq = r.uvarint()
	rev := r.uvarint()
	if rev > 1<<32-1 {
		r.err = fmt.Errorf("revision %d overflows uint32", rev)
	}
	e.State.Revision = uint32(rev)
	e.State.Hash = r.string()
	e.State.MaxGeneration = r.uvarint()
	e.State.OpenFlow = r.string()
	e.State.Connected = r.dpids()
	if r.err != nil {
		return nil
	}
	if e.Name == "" {
		r.err = errors.New("state entry without a replica name")
		return nil
	}
	return e
}

// dpids reads appendDpids output.
func (r *reader) dpids() []uint64 {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) { // each dpid takes ≥ 1 byte
		r.err = fmt.Errorf("dpid count %d exceeds message", n)
	}
	if r.err != nil || n == 0 {
		return nil
	}
	out := make([]uint64, 0, n)
	prev := uint64(0)
	for i := uint64(0); i < n && r.err == nil; i++ {
		prev += r.uvarint()
		out = append(out, prev)
	}
	if r.err != nil {
		return nil
	}
	return out
}

// encodeStateMsg encodes one entry as a user message (broadcast or
// reliable send) of this build's default protocol.
func encodeStateMsg(e *stateEntry) []byte { return defaultProto.encodeStateMsg(e) }

// encodeStateMsg encodes one entry as a user message with p's floor.
func (p protoRange) encodeStateMsg(e *stateEntry) []byte {
	return p.appendExt(appendEntry([]byte{msgState, p.floor}, e), e)
}

// appendExt appends the entry's extension fields (see the wire format) as a
// writer of range p.
func (p protoRange) appendExt(b []byte, e *stateEntry) []byte {
	var x []byte
	x = binary.AppendUvarint(x, e.State.Version)
	x = appendString(x, e.State.Origin)
	x = appendDpids(x, e.State.Master)
	x = binary.AppendUvarint(x, uint64(len(e.State.ReplicaSet)))
	for _, n := range e.State.ReplicaSet {
		x = appendString(x, n)
	}
	x = appendString(x, e.State.BuildVersion)
	x = binary.AppendUvarint(x, uint64(e.State.Protocol))
	if p.max > ProtocolMax {
		// Only a test build speaks a protocol above ProtocolMax
		// (protocolTest): its optional field, unknown to this build.
		x = appendString(x, testField)
	}
	b = binary.AppendUvarint(b, uint64(len(x)))
	return append(b, x...)
}

// ext reads one extension into e; absent (nothing left) is not an error.
func (r *reader) ext(e *stateEntry) {
	if r.err != nil || len(r.b) == 0 || e == nil {
		return
	}
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		r.err = fmt.Errorf("state extension of %d bytes exceeds message", n)
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
		if x.err == nil && n > uint64(len(x.b)) { // each name takes ≥ 1 byte
			x.err = fmt.Errorf("replica set of %d names exceeds message", n)
		}
		for i := uint64(0); i < n && x.err == nil; i++ {
			e.State.ReplicaSet = append(e.State.ReplicaSet, x.string())
		}
	}
	if len(x.b) > 0 {
		e.State.BuildVersion = cleanBuildVersion(x.string())
	}
	if len(x.b) > 0 {
		v := x.uvarint()
		if x.err == nil && v > 255 { // 0: not known (a relayed protocol-1 state)
			x.err = fmt.Errorf("protocol version %d out of range 0..255", v)
		}
		e.State.Protocol = uint8(v)
	}
	// Fields of a newer protocol follow: skipped (x is dropped).
	if x.err != nil {
		r.err = fmt.Errorf("state extension: %w", x.err)
	}
}

// decodeStateMsg decodes a user message (this build's default protocol).
func decodeStateMsg(b []byte) (*stateEntry, error) { return defaultProto.decodeStateMsg(b) }

// decodeStateMsg decodes a user message for a replica of range p: a
// message p does not read is refused whole with an *IncompatibleError.
func (p protoRange) decodeStateMsg(b []byte) (*stateEntry, error) {
	if len(b) < 2 || b[0] != msgState {
		return nil, fmt.Errorf("unknown cluster message type")
	}
	if b[1] == 0 || b[1] > p.max {
		return nil, &IncompatibleError{Peer: peekName(b[2:]), Floor: b[1], Local: p}
	}
	r := &reader{b: b[2:]}
	e := r.entry()
	r.ext(e)
	if r.err != nil {
		return nil, fmt.Errorf("decoding cluster state: %w", r.err)
	}
	if err := p.checkSender(e, b[1]); err != nil {
		return nil, err
	}
	return e, nil
}

// checkSender refuses a decoded state whose sender speaks a protocol below
// p.min (absent = protocol 1).
func (p protoRange) checkSender(e *stateEntry, floor byte) error {
	if pv := max(e.State.Protocol, 1); pv < p.min {
		return &IncompatibleError{Peer: e.Name, Floor: floor, Protocol: pv, Local: p}
	}
	return nil
}

// encodePushPull encodes the full state exchanged by push/pull.
func encodePushPull(es []*stateEntry) []byte { return defaultProto.encodePushPull(es) }

// encodePushPull encodes the full state with p's floor.
func (p protoRange) encodePushPull(es []*stateEntry) []byte {
	b := []byte{p.floor}
	b = binary.AppendUvarint(b, uint64(len(es)))
	for _, e := range es {
		b = appendEntry(b, e)
	}
	for _, e := range es {
		b = p.appendExt(b, e)
	}
	return b
}

// decodePushPull decodes encodePushPull output (default protocol).
func decodePushPull(b []byte) ([]*stateEntry, error) { return defaultProto.decodePushPull(b) }

// decodePushPull decodes encodePushPull output for a replica of range p: a
// state p does not read is refused whole with an *IncompatibleError (the
// sender's own entry comes first and names it).
func (p protoRange) decodePushPull(b []byte) ([]*stateEntry, error) {
	if len(b) < 1 {
		return nil, errors.New("empty cluster push/pull state")
	}
	if b[0] == 0 || b[0] > p.max {
		name := ""
		if r := (&reader{b: b[1:]}); r.uvarint() > 0 && r.err == nil {
			name = peekName(r.b)
		}
		return nil, &IncompatibleError{Peer: name, Floor: b[0], Local: p}
	}
	r := &reader{b: b[1:]}
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		return nil, fmt.Errorf("cluster push/pull: %d entries exceed message", n)
	}
	var out []*stateEntry
	for i := uint64(0); i < n && r.err == nil; i++ {
		if e := r.entry(); e != nil {
			out = append(out, e)
		}
	}
	for i := 0; i < len(out) && r.err == nil && len(r.b) > 0; i++ {
		r.ext(out[i])
	}
	if r.err != nil {
		return nil, fmt.Errorf("decoding cluster push/pull state: %w", r.err)
	}
	if len(out) > 0 {
		if err := p.checkSender(out[0], b[0]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// normalizeConnected returns a sorted, de-duplicated copy.
func normalizeConnected(in []uint64) []uint64 {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

// maxBuildVersion bounds a gossiped build version (informational: longer
// ones are cut, never refused, so a future replica's state still decodes).
const maxBuildVersion = 64

// cleanBuildVersion keeps a peer's build version printable and short: it is
// shown in `vpcflow status`, so control characters become '?'.
func cleanBuildVersion(v string) string {
	if len(v) > maxBuildVersion {
		v = v[:maxBuildVersion]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return '?'
		}
		return r
	}, v)
}
