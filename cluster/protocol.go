package cluster

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
	"github.com/sirupsen/logrus"
)

// Gossip protocol versions (docs/cluster.md#protocol-versions).
//
// The protocol version is separate from the build version (buildinfo): it
// names the layout of the replica gossip (state messages, push/pull,
// blueprint transfers). Every replica has a protocol range:
//
//	min    the oldest protocol version whose messages it still reads
//	floor  the oldest protocol version that reads what it writes (the byte
//	       after the message type, in every message; "wireVersion" before)
//	max    the protocol version it speaks (written in every state's
//	       extension as protocolVersion)
//
// Replica B's messages are readable by replica A when B.floor ≤ A.max (A
// knows enough to read them) and B.max ≥ A.min (A has not dropped B's
// version). Two replicas are compatible when each reads the other; the
// predicate is symmetric, so both sides of an incompatible pair refuse each
// other. A change that adds an optional field raises max only: the field is
// appended at the end of the state extension, where an older decoder stops
// reading. A change older decoders would misread raises floor.
//
// Each replica advertises its range in its memberlist node meta (meta
// format byte 1, then min, floor, max). An incompatible replica is refused
// at admission (memberlist's alive and merge delegates), exactly like a
// name outside the replica set: it never becomes a member, never counts
// toward the quorum, never owns a bridge, and none of its state is applied.
// A message whose floor is above this replica's max (or whose sender's
// protocol is below its min) is refused as a whole before anything of it
// is applied. Both refusals are logged (once per peer at warning level)
// and counted (Incompatible; vpcflow_cluster_protocol_refused_total).
//
// A replica of a vpcflow older than protocol versioning sends no meta and
// no protocolVersion field: it is protocol 1 (min = floor = max = 1).
const (
	// ProtocolMin is the oldest protocol version this build reads.
	ProtocolMin = 1
	// ProtocolFloor is the oldest protocol version that reads what this
	// build writes: the byte after the message type.
	ProtocolFloor = 1
	// ProtocolMax is the protocol version this build speaks. 2 added the
	// protocolVersion field to the state extension and the node meta.
	ProtocolMax = 2
)

// protocolTest is a build-time knob for the rolling-upgrade tests only
// (examples/e2e/upgrade_test.go); never set it in a release build:
//
//	-ldflags "-X github.com/vpcflow/vpcflow/cluster.protocolTest=next"
//	    the build speaks ProtocolMax+1 and appends one optional extension
//	    field (testField) that builds of ProtocolMax do not know: a
//	    compatible newer build.
//	-ldflags "-X github.com/vpcflow/vpcflow/cluster.protocolTest=incompatible"
//	    min = floor = max = ProtocolMax+1: a build that neither reads nor is
//	    read by this one.
//
// Any other non-empty value makes Start fail.
var protocolTest string

// testField is the optional extension field a "next" build appends.
const testField = "optional field of a newer protocol (test build)"

// protoRange is one replica's protocol range (see the package constants).
type protoRange struct{ min, floor, max uint8 }

var defaultProto = protoRange{min: ProtocolMin, floor: ProtocolFloor, max: ProtocolMax}

// legacyProto is a replica of a vpcflow before protocol versioning.
var legacyProto = protoRange{min: 1, floor: 1, max: 1}

func (p protoRange) String() string {
	return fmt.Sprintf("protocol %d (reads %d..%d, read by %d and later)", p.max, p.min, p.max, p.floor)
}

// buildProtocol is this binary's range, after the test knob.
func buildProtocol() (protoRange, error) {
	switch protocolTest {
	case "":
		return defaultProto, nil
	case "next":
		return protoRange{min: ProtocolMin, floor: ProtocolFloor, max: ProtocolMax + 1}, nil
	case "incompatible":
		return protoRange{min: ProtocolMax + 1, floor: ProtocolMax + 1, max: ProtocolMax + 1}, nil
	}
	return protoRange{}, fmt.Errorf("cluster: this binary was built with an unknown protocol test knob %q (cluster.protocolTest: \"\", next or incompatible): rebuild it without -X …/cluster.protocolTest", protocolTest)
}

// metaFormat is the first byte of the node meta; it never changes (later
// fields are appended).
const metaFormat = 1

// meta is the node meta advertising p.
func (p protoRange) meta() []byte { return []byte{metaFormat, p.min, p.floor, p.max} }

// protoFromMeta reads a peer's range from its node meta; a peer without
// meta (a vpcflow before protocol versioning) is protocol 1. A meta that
// is too short or of another format is not trusted: ok is false.
func protoFromMeta(m []byte) (protoRange, bool) {
	if len(m) == 0 {
		return legacyProto, true
	}
	if len(m) < 4 || m[0] != metaFormat {
		return protoRange{}, false
	}
	p := protoRange{min: m[1], floor: m[2], max: m[3]}
	if p.min == 0 || p.floor == 0 || p.min > p.max || p.floor > p.max {
		return protoRange{}, false
	}
	return p, true
}

// reads reports whether a replica of range p reads messages of a peer of
// range q.
func (p protoRange) reads(q protoRange) bool { return q.floor <= p.max && q.max >= p.min }

// compatible: each of p and q reads the other (symmetric).
func (p protoRange) compatible(q protoRange) bool { return p.reads(q) && q.reads(p) }

// IncompatibleError is a message or member refused for its protocol
// version.
type IncompatibleError struct {
	Peer string // the sender, when its name could be read ("" otherwise)
	// Floor and Protocol are the peer's (0 = not known).
	Floor, Protocol uint8
	Local           protoRange
}

func (e *IncompatibleError) Error() string {
	peer := e.Peer
	if peer == "" {
		peer = "(name unreadable)"
	}
	var what string
	switch {
	case e.Protocol != 0 && e.Floor != 0:
		what = fmt.Sprintf("speaks cluster protocol %d, readable by protocol %d and later", e.Protocol, e.Floor)
	case e.Floor != 0:
		what = fmt.Sprintf("sends cluster messages readable by protocol %d and later", e.Floor)
	default:
		what = fmt.Sprintf("speaks cluster protocol %d", e.Protocol)
	}
	return fmt.Sprintf("replica %s %s; this replica speaks %s: the two vpcflow versions cannot form one cluster, upgrade or roll back one of them (docs/upgrade.md)",
		peer, what, e.Local)
}

// admitProtocol checks a node's advertised range against ours (NotifyAlive);
// nil when compatible.
func (c *Cluster) admitProtocol(n *memberlist.Node) error {
	q, ok := protoFromMeta(n.Meta)
	if !ok {
		return &IncompatibleError{Peer: n.Name, Local: c.proto}
	}
	if c.proto.compatible(q) {
		return nil
	}
	return &IncompatibleError{Peer: n.Name, Floor: q.floor, Protocol: q.max, Local: c.proto}
}

// protoStats counts refusals for protocol reasons.
type protoStats struct {
	messages atomic.Uint64 // state, push/pull and transfer messages refused
	members  atomic.Uint64 // alive messages (members) refused
}

// Incompatible returns how many messages and member (alive) announcements
// this replica refused because of their protocol version.
func (c *Cluster) Incompatible() (messages, members uint64) {
	return c.pstats.messages.Load(), c.pstats.members.Load()
}

// Protocol returns this replica's protocol version and the range it reads.
func (c *Cluster) Protocol() (version, readsFrom uint8) { return c.proto.max, c.proto.min }

// maxWarnedPeers bounds the set of peers whose protocol refusal was logged
// at warning level (later ones are logged at debug level).
const maxWarnedPeers = 64

// noteIncompatible counts a refusal and logs it: at warning level the first
// time for a peer, at debug level after. member: an alive message (member
// admission) rather than a gossip message.
func (c *Cluster) noteIncompatible(err *IncompatibleError, member bool) {
	if member {
		c.pstats.members.Add(1)
	} else {
		c.pstats.messages.Add(1)
	}
	key := err.Peer + "/" + fmt.Sprint(err.Floor, err.Protocol)
	c.mu.Lock()
	first := false
	if c.protoWarned == nil {
		c.protoWarned = map[string]bool{}
	}
	if !c.protoWarned[key] && len(c.protoWarned) < maxWarnedPeers {
		c.protoWarned[key] = true
		first = true
	}
	c.mu.Unlock()
	l := c.log.WithFields(logrus.Fields{"peer": err.Peer, "peer_protocol": err.Protocol, "peer_floor": err.Floor,
		"protocol": c.proto.max, "reads_from": c.proto.min})
	what := "refused a cluster message of an incompatible protocol version: nothing of it is applied"
	if member {
		what = "refused a cluster member of an incompatible protocol version: it neither counts toward the quorum nor owns bridges"
	}
	if first {
		l.WithError(err).Warn(what)
	} else {
		l.WithError(err).Debug(what)
	}
}

// peekName reads the sender's name from a message whose layout this
// replica may not know: every protocol version starts a state entry with
// the replica's name (a length-prefixed string), bounded here to 256 bytes
// and cleaned for the log.
func peekName(b []byte) string {
	r := &reader{b: b}
	n := r.uvarint()
	if r.err != nil || n > 256 || n > uint64(len(r.b)) {
		return ""
	}
	return cleanBuildVersion(strings.ToValidUTF8(string(r.b[:n]), "?"))
}

// refusedMessage logs a gossip message that was not applied: a protocol
// refusal is counted, marks its sender (if named) as not counting, and is
// logged at warning level once per peer; anything else (malformed) at
// debug level.
func (c *Cluster) refusedMessage(err error, what string) {
	var ie *IncompatibleError
	if !errors.As(err, &ie) {
		c.log.WithError(err).Debug(what)
		return
	}
	if ie.Peer != "" {
		c.mu.Lock()
		if _, live := c.live[ie.Peer]; live || c.memberLocked(ie.Peer) {
			if !c.incompat[ie.Peer] {
				c.incompat[ie.Peer] = true
				defer c.signal()
			}
		}
		c.mu.Unlock()
	}
	c.noteIncompatible(ie, false)
}

// readable records that a message of peer was read: it counts again if a
// protocol refusal had excluded it. Caller holds c.mu.
func (c *Cluster) readable(peer string) {
	delete(c.incompat, peer)
}
