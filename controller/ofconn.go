package controller

// OFConn: the OpenFlow 1.3 connection runtime.
//
// Concurrency contract:
//   - exactly one reader goroutine per connection reads and dispatches
//     messages in wire order (an OFPT_ERROR that the switch sent before a
//     barrier reply is always seen before that barrier reply);
//   - one keepalive goroutine sends echo requests, answers the switch's echo
//     requests and declares the connection dead after a silence;
//   - writes are serialised by one writer lock that honours the caller's
//     context; every request is registered by xid before it is written;
//   - all exported methods are safe for concurrent use and block only on this
//     connection (a slow or dead switch never blocks another OFConn);
//   - a decode panic is recovered and closes only this connection.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contiv/libOpenflow/openflow13"
	"github.com/sirupsen/logrus"
)

// OFRole is an OpenFlow controller role (ofp_controller_role).
type OFRole uint32

// OpenFlow controller roles.
const (
	OFRoleNoChange OFRole = 0
	OFRoleEqual    OFRole = 1
	OFRoleMaster   OFRole = 2
	OFRoleSlave    OFRole = 3
)

func (r OFRole) String() string {
	switch r {
	case OFRoleNoChange:
		return "NOCHANGE"
	case OFRoleEqual:
		return "EQUAL"
	case OFRoleMaster:
		return "MASTER"
	case OFRoleSlave:
		return "SLAVE"
	}
	return fmt.Sprintf("OFRole(%d)", uint32(r))
}

// Role status reasons (ofp_controller_role_reason / ONF ROLE_STATUS reasons).
const (
	OFRoleReasonMasterRequest uint8 = 0 // another controller asked to be master
	OFRoleReasonConfig        uint8 = 1 // configuration changed on the switch
	OFRoleReasonExperimenter  uint8 = 2
)

// OFRoleStatus is a role change the switch announced on its own (ONF
// ROLE_STATUS experimenter message or OpenFlow 1.4 OFPT_ROLE_STATUS).
type OFRoleStatus struct {
	Role         OFRole
	Reason       uint8
	GenerationID uint64
}

// ErrOFConnClosed is the Err() of a connection closed by Close.
var ErrOFConnClosed = errors.New("openflow: connection closed by controller")

// ofOptions are the runtime knobs; tests shorten the timers.
type ofOptions struct {
	echoInterval time.Duration // send an echo request this often
	deadAfter    time.Duration // close when nothing was received for this long
	// Bounds on one reassembled multipart reply (flow stats): whole
	// messages (headers included) and parts. An empty REPLY_MORE part
	// costs its 16 bytes and one part, so a peer cannot grow the heap with
	// parts that carry nothing. Exceeding a bound closes the connection.
	maxMultipartBytes int
	maxMultipartParts int
	// Bounds on the PORT_DESC reply read during the handshake, before the
	// switch is known to be anyone (1 MiB holds ~16,000 ports).
	maxPortDescBytes int
	maxPortDescParts int
	// maxPreFeatures bounds the messages the switch may send before its
	// FEATURES_REPLY (echo requests are answered, the rest ignored).
	maxPreFeatures int
	// checkDPID, when set, runs as soon as the FEATURES_REPLY names the
	// datapath id, before anything else is read: an error ends the
	// handshake (the identity check runs before PORT_DESC is requested).
	checkDPID func(dpid uint64) error
}

func ofDefaultOptions() ofOptions {
	return ofOptions{echoInterval: 5 * time.Second, deadAfter: 15 * time.Second,
		maxMultipartBytes: 1 << 30, maxMultipartParts: 1 << 16,
		maxPortDescBytes: 1 << 20, maxPortDescParts: 64, maxPreFeatures: 16}
}

// OFConn is one OpenFlow 1.3 connection to a switch, created by OFHandshake.
type OFConn struct {
	nc     net.Conn
	br     *bufio.Reader
	log    logrus.FieldLogger
	opts   ofOptions
	remote string
	dpid   uint64

	xid      atomic.Uint32
	bundleID atomic.Uint32
	lastRecv atomic.Int64 // unix nanos of the last message received
	ready    atomic.Bool  // the handshake completed (PACKET_INs are queued only then)

	wmu   chan struct{} // writer lock (a channel so waiting honours ctx)
	async chan []byte   // echo replies queued by the reader, written by keepalive

	mu      sync.Mutex // guards the fields below
	pending map[uint32]*ofPending
	ports   map[string]uint32
	role    OFRole

	portEv chan struct{}
	roleSt chan OFRoleStatus

	packetIns        chan []byte   // PACKET_IN messages (drop logging), bounded
	packetInsDropped atomic.Uint64 // PACKET_INs discarded because packetIns was full

	done      chan struct{}
	closeOnce sync.Once
	err       error // set before done is closed

	ignored     atomic.Uint64 // unsupported/unsolicited messages dropped
	unsolicited atomic.Uint64 // errors with an unknown xid
	panics      atomic.Uint64 // recovered decode panics (should stay 0)
}

type ofPendKind int

const (
	ofPendReply     ofPendKind = iota // one reply message (or an error)
	ofPendMultipart                   // multipart reply parts until !REPLY_MORE (or an error)
	ofPendBatch                       // member of a batch: errors are collected, no reply expected
)

type ofReply struct {
	msg []byte
	err error
}

type ofPending struct {
	kind   ofPendKind
	op     string
	want   uint8        // ofPendReply: expected reply type
	mpType uint16       // ofPendMultipart: expected multipart type
	ch     chan ofReply // cap 1; receives exactly one value
	parts  [][]byte     // ofPendMultipart: bodies of the parts received so far
	size   int          // ofPendMultipart: bytes of the whole messages received so far
	maxB   int          // ofPendMultipart: bound on size
	maxN   int          // ofPendMultipart: bound on len(parts)
	batch  *ofBatch     // ofPendBatch
	index  int          // ofPendBatch: index in the caller's slice, -1 for control messages
	closes *ofBatch     // ofPendReply (barrier): batch closed when this reply arrives
}

// ofBatch collects the errors the switch sent for the messages of one call.
// A batch is closed by the reader when its barrier reply arrives: errors
// after that are not part of it (they are logged as unsolicited).
type ofBatch struct {
	mu     sync.Mutex
	errs   []*OFError
	closed bool
}

func (b *ofBatch) add(e *OFError) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.errs = append(b.errs, e)
	return true
}

func (b *ofBatch) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

// first returns the error to report and the number of errors: the first one
// in wire order, except that a commit failure (BEC_MSG_FAILED) yields to the
// error about the inner message that caused it.
func (b *ofBatch) first() (*OFError, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) == 0 {
		return nil, 0
	}
	for _, e := range b.errs {
		if e.Op != "bundle commit" {
			return e, len(b.errs)
		}
	}
	return b.errs[0], len(b.errs)
}

func (b *ofBatch) hasOp(op string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errs {
		if e.Op == op {
			return true
		}
	}
	return false
}

// OFHandshake runs the OpenFlow 1.3 handshake on nc: HELLO (version bitmap
// offering only 1.3; a switch that cannot speak 1.3 gets OFPET_HELLO_FAILED
// and is closed), FEATURES_REQUEST (datapath id) and a PORT_DESC multipart
// request. It then starts the reader goroutine and the echo keepalive (echo
// request every 5 s, connection declared dead after 15 s of silence). On error
// nc is closed.
func OFHandshake(ctx context.Context, nc net.Conn, log logrus.FieldLogger) (*OFConn, error) {
	return ofHandshake(ctx, nc, log, ofDefaultOptions())
}

func ofHandshake(ctx context.Context, nc net.Conn, log logrus.FieldLogger, opts ofOptions) (*OFConn, error) {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	c := newOFConn(nc, log, opts)
	if err := c.syncPhase(ctx, "hello", c.helloExchange); err != nil {
		c.closeWith(err)
		return nil, err
	}
	// FEATURES_REQUEST/REPLY is read here, before the reader and keepalive
	// goroutines exist: the datapath id and the logger are set once and only
	// read afterwards (no data race), and the identity check runs before
	// the switch may send anything bigger.
	var reply []byte
	err := c.syncPhase(ctx, "features request", func() (err error) {
		reply, err = c.featuresExchange()
		return err
	})
	if err != nil {
		err = fmt.Errorf("openflow handshake with %s: %w", c.remote, err)
		c.closeWith(err)
		return nil, err
	}
	c.dpid = binary.BigEndian.Uint64(reply[8:16])
	c.log = c.log.WithField("dpid", fmt.Sprintf("%016x", c.dpid))
	if opts.checkDPID != nil {
		if err := opts.checkDPID(c.dpid); err != nil {
			c.closeWith(err)
			return nil, err
		}
	}
	go c.readLoopRun()
	go c.keepalive()

	p := c.mpPending("port description request", OFPMPPortDesc, opts.maxPortDescBytes, opts.maxPortDescParts)
	parts, err := c.multipartWith(ctx, p, nil)
	if err == nil {
		err = c.loadPortDesc(parts)
	}
	if err != nil {
		err = fmt.Errorf("openflow handshake with %s (dpid %016x): %w", c.remote, c.dpid, err)
		c.closeWith(err)
		return nil, err
	}
	c.ready.Store(true)
	c.log.WithField("ports", len(c.Ports())).Info("OpenFlow 1.3 switch connected")
	return c, nil
}

func newOFConn(nc net.Conn, log logrus.FieldLogger, opts ofOptions) *OFConn {
	c := &OFConn{
		nc:        nc,
		br:        bufio.NewReaderSize(nc, 64<<10),
		opts:      opts,
		wmu:       make(chan struct{}, 1),
		async:     make(chan []byte, 16),
		pending:   make(map[uint32]*ofPending),
		ports:     make(map[string]uint32),
		role:      OFRoleEqual,
		portEv:    make(chan struct{}, 1),
		roleSt:    make(chan OFRoleStatus, 8),
		packetIns: make(chan []byte, 256),
		done:      make(chan struct{}),
	}
	if a := nc.RemoteAddr(); a != nil {
		c.remote = a.String()
	}
	c.log = log.WithField("switch", c.remote)
	c.lastRecv.Store(time.Now().UnixNano())
	return c
}

// syncPhase runs fn, which reads and writes nc directly (before the reader
// goroutine exists), under ctx: its deadline becomes the connection's, and
// its cancellation interrupts fn.
func (c *OFConn) syncPhase(ctx context.Context, what string, fn func() error) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.nc.SetDeadline(dl)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = c.nc.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	err := fn()
	if !stop() {
		<-fired
		if err != nil {
			err = fmt.Errorf("openflow %s with %s: %w (%v)", what, c.remote, ctx.Err(), err)
		}
	}
	if err == nil {
		err = c.nc.SetDeadline(time.Time{})
	}
	return err
}

// featuresExchange sends FEATURES_REQUEST and reads until its reply:
// echo requests are answered, anything else is ignored, and at most
// maxPreFeatures messages are read.
func (c *OFConn) featuresExchange() ([]byte, error) {
	x := c.nextXid()
	if _, err := c.nc.Write(ofSimple(OFPTFeaturesRequest, x, nil)); err != nil {
		return nil, fmt.Errorf("sending FEATURES_REQUEST: %w", err)
	}
	for i := 0; i < c.opts.maxPreFeatures; i++ {
		h, msg, err := c.readMsg(c.br, true)
		if err != nil {
			return nil, fmt.Errorf("waiting for FEATURES_REPLY: %w", err)
		}
		switch {
		case h.Type == OFPTFeaturesReply && h.Xid == x:
			if len(msg) < 16 {
				return nil, fmt.Errorf("FEATURES_REPLY too short (%d bytes)", len(msg))
			}
			return msg, nil
		case h.Type == OFPTError && h.Xid == x:
			e, err := ofParseError(msg)
			if err != nil {
				return nil, fmt.Errorf("features request: %w", err)
			}
			e.Op = "features request"
			return nil, e
		case h.Type == OFPTEchoRequest:
			if _, err := c.nc.Write(ofSimple(OFPTEchoReply, h.Xid, msg[ofHeaderLen:])); err != nil {
				return nil, fmt.Errorf("answering an echo request: %w", err)
			}
		default:
			c.ignored.Add(1)
		}
	}
	return nil, fmt.Errorf("no FEATURES_REPLY among the first %d messages", c.opts.maxPreFeatures)
}

func (c *OFConn) helloExchange() error {
	// Write our HELLO concurrently with reading theirs: on an unbuffered
	// transport neither side may insist on writing first.
	werr := make(chan error, 1)
	go func() {
		_, err := c.nc.Write(ofHelloMsg(c.nextXid()))
		werr <- err
	}()
	h, msg, err := c.readMsg(c.br, false)
	if err != nil { // the writer goroutine ends when the caller closes nc
		return fmt.Errorf("openflow hello with %s: reading HELLO: %w", c.remote, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("openflow hello with %s: sending HELLO: %w", c.remote, err)
	}
	if h.Type != OFPTHello {
		return fmt.Errorf("openflow hello with %s: first message is type %d, not HELLO", c.remote, h.Type)
	}
	if !ofHelloOffers13(h, msg) {
		text := "vpcflow speaks only OpenFlow 1.3 (wire version 0x04); enable protocols=OpenFlow13 on the bridge"
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.nc.Write(ofErrorMsg(h.Xid, OFPETHelloFailed, OFPHFCIncompatible, []byte(text)))
		return fmt.Errorf("openflow hello with %s: switch offers version 0x%02x without OpenFlow 1.3: sent OFPET_HELLO_FAILED; %s", c.remote, h.Version, text)
	}
	return nil
}

// ofHelloOffers13 reports whether a HELLO (header h, whole message msg)
// allows OpenFlow 1.3: via its version bitmap if present, else its version.
func ofHelloOffers13(h ofHeader, msg []byte) bool {
	body := msg[ofHeaderLen:]
	for len(body) >= 4 {
		typ := binary.BigEndian.Uint16(body[0:2])
		l := int(binary.BigEndian.Uint16(body[2:4]))
		if l < 4 || l > len(body) {
			break
		}
		if typ == 1 { // OFPHET_VERSIONBITMAP
			bm := body[4:l]
			if len(bm) < 4 {
				return false
			}
			return binary.BigEndian.Uint32(bm[0:4])&(1<<OFVersion13) != 0
		}
		adv := (l + 7) / 8 * 8 // elements are padded to 8 bytes
		if adv > len(body) {
			break
		}
		body = body[adv:]
	}
	return h.Version >= OFVersion13
}

// DatapathID returns the datapath id from the FEATURES_REPLY.
func (c *OFConn) DatapathID() uint64 { return c.dpid }

// RemoteAddr returns the switch's address.
func (c *OFConn) RemoteAddr() string { return c.remote }

// Ports returns a copy of the port name -> ofport map. The LOCAL port appears
// both under the bridge name and as "LOCAL" (0xfffffffe).
func (c *OFConn) Ports() map[string]uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]uint32, len(c.ports))
	for k, v := range c.ports {
		m[k] = v
	}
	return m
}

// PortEvents is signalled (coalesced, buffer 1) after every PORT_STATUS;
// Ports() already reflects the change when it fires.
func (c *OFConn) PortEvents() <-chan struct{} { return c.portEv }

// RoleStatus delivers role changes the switch announced (e.g. a demotion to
// SLAVE because another controller became MASTER). Bounded: when the reader
// is slow the oldest status is dropped; Role() is always current.
func (c *OFConn) RoleStatus() <-chan OFRoleStatus { return c.roleSt }

// Role returns this connection's role as the switch last told us (EQUAL
// until a role request succeeds).
func (c *OFConn) Role() OFRole {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.role
}

// Done is closed when the connection is gone.
func (c *OFConn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, or nil while it is up.
func (c *OFConn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Close closes the connection; pending calls fail.
func (c *OFConn) Close() error {
	c.closeWith(ErrOFConnClosed)
	return nil
}

// PacketIns delivers PACKET_IN messages (complete, header included). The
// channel holds at most 256; more are counted by PacketInsSuppressed.
func (c *OFConn) PacketIns() <-chan []byte { return c.packetIns }

// PacketInsSuppressed counts PACKET_INs discarded because nobody kept up.
func (c *OFConn) PacketInsSuppressed() uint64 { return c.packetInsDropped.Load() }

// IgnoredMessages returns how many unsupported or unsolicited messages
// (PACKET_IN, FLOW_REMOVED, unknown experimenter, late replies, ...) were
// dropped.
func (c *OFConn) IgnoredMessages() uint64 { return c.ignored.Load() }

func (c *OFConn) closeWith(err error) {
	c.closeOnce.Do(func() {
		c.err = err
		close(c.done)
		_ = c.nc.Close()
		if !errors.Is(err, ErrOFConnClosed) {
			c.log.WithError(err).Warn("OpenFlow connection closed")
		}
	})
}

func (c *OFConn) closedErr() error {
	<-c.done
	return fmt.Errorf("openflow: connection to %s (dpid %016x) is gone: %w", c.remote, c.dpid, c.err)
}

func (c *OFConn) nextXid() uint32 {
	for {
		if x := c.xid.Add(1); x != 0 {
			return x
		}
	}
}

// ---------------------------------------------------------------- reading

// readMsg reads one framed message. post-handshake messages must carry
// version 1.3.
func (c *OFConn) readMsg(r *bufio.Reader, strictVersion bool) (ofHeader, []byte, error) {
	var hb [ofHeaderLen]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return ofHeader{}, nil, err
	}
	h := ofDecodeHeader(hb[:])
	if h.Length < ofHeaderLen {
		return h, nil, fmt.Errorf("malformed message: length %d < 8 (type %d, xid %d)", h.Length, h.Type, h.Xid)
	}
	if strictVersion && h.Version != OFVersion13 {
		return h, nil, fmt.Errorf("malformed message: version 0x%02x on an OpenFlow 1.3 connection (type %d, length %d)", h.Version, h.Type, h.Length)
	}
	msg := make([]byte, h.Length)
	copy(msg, hb[:])
	if _, err := io.ReadFull(r, msg[ofHeaderLen:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, fmt.Errorf("truncated message (type %d, length %d): %w", h.Type, h.Length, err)
	}
	c.lastRecv.Store(time.Now().UnixNano())
	return h, msg, nil
}

func (c *OFConn) readLoopRun() {
	err := c.readLoop(c.br)
	c.closeWith(fmt.Errorf("openflow: reading from switch %s (dpid %016x): %w", c.remote, c.dpid, err))
}

// readLoop reads and dispatches until an error; it never panics.
func (c *OFConn) readLoop(r *bufio.Reader) error {
	for {
		h, msg, err := c.readMsg(r, true)
		if err != nil {
			return err
		}
		if err := c.dispatchSafe(h, msg); err != nil {
			return err
		}
	}
}

func (c *OFConn) dispatchSafe(h ofHeader, msg []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.panics.Add(1)
			err = fmt.Errorf("panic decoding message type %d (length %d, xid %d): %v", h.Type, h.Length, h.Xid, p)
		}
	}()
	return c.dispatch(h, msg)
}

func (c *OFConn) dispatch(h ofHeader, msg []byte) error {
	switch h.Type {
	case OFPTEchoRequest:
		select {
		case c.async <- ofSimple(OFPTEchoReply, h.Xid, msg[ofHeaderLen:]):
		default: // keepalive writer is behind; the switch will ask again
		}
		return nil
	case OFPTEchoReply:
		return nil // liveness is tracked for every message
	case OFPTHello:
		c.ignored.Add(1)
		return nil
	case OFPTPortStatus:
		return c.handlePortStatus(msg)
	case OFPTPacketIn:
		// Only drop logging sends packets here (flows are proactive). The
		// channel is bounded: when the consumer is behind, the event is
		// counted as suppressed, never queued without limit. Nothing is
		// queued before the handshake completed.
		if !c.ready.Load() {
			c.ignored.Add(1)
			return nil
		}
		select {
		case c.packetIns <- append([]byte(nil), msg...):
		default:
			c.packetInsDropped.Add(1)
		}
		return nil
	case OFPTRoleStatus14:
		if len(msg) < 24 {
			return fmt.Errorf("malformed ROLE_STATUS: %d bytes", len(msg))
		}
		c.handleRoleStatus(OFRoleStatus{
			Role:         OFRole(binary.BigEndian.Uint32(msg[8:12])),
			Reason:       msg[12],
			GenerationID: binary.BigEndian.Uint64(msg[16:24]),
		})
		return nil
	case OFPTExperimenter:
		if len(msg) < 16 {
			return fmt.Errorf("malformed EXPERIMENTER message: %d bytes", len(msg))
		}
		exp := binary.BigEndian.Uint32(msg[8:12])
		expType := binary.BigEndian.Uint32(msg[12:16])
		if exp == ONFExperimenterID && expType == ONFETRoleStatus {
			if len(msg) < 32 {
				return fmt.Errorf("malformed ONF ROLE_STATUS: %d bytes", len(msg))
			}
			c.handleRoleStatus(OFRoleStatus{
				Role:         OFRole(binary.BigEndian.Uint32(msg[16:20])),
				Reason:       msg[20],
				GenerationID: binary.BigEndian.Uint64(msg[24:32]),
			})
			return nil
		}
		// bundle control replies carry our xid: fall through to correlation
	}
	if ok, err := c.deliver(h, msg); ok {
		return err
	}
	if h.Type == OFPTError {
		c.unsolicited.Add(1)
		if e, err := ofParseError(msg); err == nil {
			e.Op = "an unknown request"
			c.log.WithField("xid", h.Xid).WithField("error", e.Name()).Warn("unsolicited OpenFlow error from switch")
		} else {
			c.log.WithError(err).Warn("malformed unsolicited OpenFlow error from switch")
		}
		return nil
	}
	c.ignored.Add(1)
	return nil
}

// deliver hands a message to the request registered under its xid. It
// reports whether a request took the message, and an error that must close
// the connection (a multipart reply over its bounds).
func (c *OFConn) deliver(h ofHeader, msg []byte) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pending[h.Xid]
	if !ok {
		return false, nil
	}
	if h.Type == OFPTError {
		delete(c.pending, h.Xid)
		e, err := ofParseError(msg)
		if err != nil {
			ofSend(p, ofReply{err: fmt.Errorf("%s: %w", p.op, err)})
			return true, nil
		}
		e.Op = p.op
		if p.kind == ofPendBatch {
			e.Index = p.index
			return p.batch.add(e), nil // false: late error, reported as unsolicited
		}
		ofSend(p, ofReply{err: e})
		return true, nil
	}
	switch p.kind {
	case ofPendBatch:
		// bundle control reply (OPEN_REPLY, DISCARD_REPLY, ...): nothing to do
		delete(c.pending, h.Xid)
	case ofPendReply:
		delete(c.pending, h.Xid)
		if p.closes != nil {
			p.closes.close()
		}
		if h.Type != p.want {
			ofSend(p, ofReply{err: fmt.Errorf("%s: switch replied with message type %d, expected %d", p.op, h.Type, p.want)})
			return true, nil
		}
		ofSend(p, ofReply{msg: msg})
	case ofPendMultipart:
		if h.Type != OFPTMultipartReply || len(msg) < 16 {
			delete(c.pending, h.Xid)
			ofSend(p, ofReply{err: fmt.Errorf("%s: unexpected reply type %d (length %d)", p.op, h.Type, len(msg))})
			return true, nil
		}
		mpType := binary.BigEndian.Uint16(msg[8:10])
		flags := binary.BigEndian.Uint16(msg[10:12])
		if mpType != p.mpType {
			delete(c.pending, h.Xid)
			ofSend(p, ofReply{err: fmt.Errorf("%s: multipart reply of type %d, expected %d", p.op, mpType, p.mpType)})
			return true, nil
		}
		p.size += len(msg)
		if p.size > p.maxB || len(p.parts) >= p.maxN {
			delete(c.pending, h.Xid)
			err := fmt.Errorf("%s: multipart reply exceeds its bound (%d parts, %d bytes so far; at most %d parts and %d bytes): closing the connection",
				p.op, len(p.parts)+1, p.size, p.maxN, p.maxB)
			ofSend(p, ofReply{err: err})
			return true, err
		}
		p.parts = append(p.parts, msg[16:])
		if flags&OFPMPFReplyMore == 0 {
			delete(c.pending, h.Xid)
			ofSend(p, ofReply{})
		}
	}
	return true, nil
}

func ofSend(p *ofPending, r ofReply) {
	select {
	case p.ch <- r:
	default:
	}
}

func (c *OFConn) handlePortStatus(msg []byte) error {
	if len(msg) < 16+ofpPortLen {
		return fmt.Errorf("malformed PORT_STATUS: %d bytes", len(msg))
	}
	reason := msg[8]
	port := msg[16 : 16+ofpPortLen]
	no := binary.BigEndian.Uint32(port[0:4])
	name := ofPortName(port[16:32])
	c.mu.Lock()
	for n, v := range c.ports {
		if v == no && n != name && n != "LOCAL" {
			delete(c.ports, n) // renamed or stale
		}
	}
	switch reason {
	case ofpPRDelete:
		if v, ok := c.ports[name]; ok && v == no {
			delete(c.ports, name)
		}
		if no == OFPPLocal {
			delete(c.ports, "LOCAL")
		}
	default: // add, modify (and unknown reasons: the port exists)
		if old, ok := c.ports[name]; ok && old != no {
			c.log.WithField("port", name).WithField("old", old).WithField("new", no).Info("port renumbered")
		}
		c.ports[name] = no
		if no == OFPPLocal {
			c.ports["LOCAL"] = no
		}
	}
	c.mu.Unlock()
	c.log.WithField("port", name).WithField("ofport", no).WithField("reason", reason).Debug("PORT_STATUS")
	select {
	case c.portEv <- struct{}{}:
	default:
	}
	return nil
}

func (c *OFConn) loadPortDesc(parts [][]byte) error {
	ports := make(map[string]uint32)
	for _, body := range parts {
		if len(body)%ofpPortLen != 0 {
			return fmt.Errorf("malformed PORT_DESC reply: body of %d bytes is not a multiple of %d", len(body), ofpPortLen)
		}
		for off := 0; off < len(body); off += ofpPortLen {
			no := binary.BigEndian.Uint32(body[off : off+4])
			ports[ofPortName(body[off+16:off+32])] = no
			if no == OFPPLocal {
				ports["LOCAL"] = no
			}
		}
	}
	c.mu.Lock()
	c.ports = ports
	c.mu.Unlock()
	return nil
}

func (c *OFConn) handleRoleStatus(st OFRoleStatus) {
	c.mu.Lock()
	prev := c.role
	if st.Role != OFRoleNoChange {
		c.role = st.Role
	}
	c.mu.Unlock()
	c.log.WithField("role", st.Role.String()).WithField("previous", prev.String()).
		WithField("reason", st.Reason).WithField("generation", st.GenerationID).Info("switch announced role change")
	for {
		select {
		case c.roleSt <- st:
			return
		default:
		}
		select { // full: drop the oldest
		case <-c.roleSt:
		default:
		}
	}
}

// ---------------------------------------------------------------- writing

// write writes b under the writer lock, honouring ctx. An interrupted or
// failed write leaves the stream unusable, so it closes the connection.
func (c *OFConn) write(ctx context.Context, b []byte) error {
	select {
	case c.wmu <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.closedErr()
	}
	defer func() { <-c.wmu }()
	select {
	case <-c.done:
		return c.closedErr()
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dl, _ := ctx.Deadline()
	_ = c.nc.SetWriteDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = c.nc.SetWriteDeadline(time.Unix(1, 0))
		close(fired)
	})
	_, err := c.nc.Write(b)
	if !stop() {
		<-fired
	}
	if err != nil {
		err = fmt.Errorf("openflow: writing to switch %s (dpid %016x): %w", c.remote, c.dpid, err)
		c.closeWith(err)
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		if !dl.IsZero() && !time.Now().Before(dl) {
			return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
		}
		return err
	}
	return nil
}

// writeMsgs writes complete messages in chunks of about 64 KiB, taking the
// writer lock per chunk so echo traffic can interleave with a big batch.
func (c *OFConn) writeMsgs(ctx context.Context, msgs [][]byte) error {
	const chunk = 64 << 10
	buf := make([]byte, 0, chunk+ofMaxMsgLen)
	for _, m := range msgs {
		buf = append(buf, m...)
		if len(buf) >= chunk {
			if err := c.write(ctx, buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if len(buf) > 0 {
		return c.write(ctx, buf)
	}
	return nil
}

func (c *OFConn) keepalive() {
	tick := c.opts.echoInterval / 5
	if tick < 5*time.Millisecond {
		tick = 5 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	lastEcho := time.Now()
	for {
		select {
		case <-c.done:
			return
		case m := <-c.async:
			ctx, cancel := context.WithTimeout(context.Background(), c.opts.deadAfter)
			_ = c.write(ctx, m)
			cancel()
		case now := <-t.C:
			silent := now.Sub(time.Unix(0, c.lastRecv.Load()))
			if silent > c.opts.deadAfter {
				c.closeWith(fmt.Errorf("openflow: switch %s (dpid %016x) silent for %s (no echo reply): declaring the connection dead", c.remote, c.dpid, silent.Round(time.Millisecond)))
				return
			}
			if now.Sub(lastEcho) >= c.opts.echoInterval {
				lastEcho = now
				ctx, cancel := context.WithTimeout(context.Background(), c.opts.deadAfter)
				_ = c.write(ctx, ofSimple(OFPTEchoRequest, c.nextXid(), nil))
				cancel()
			}
		}
	}
}

// ---------------------------------------------------------------- requests

func (c *OFConn) register(xid uint32, p *ofPending) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return c.closedErr()
	default:
	}
	c.pending[xid] = p
	return nil
}

func (c *OFConn) unregister(xids ...uint32) {
	c.mu.Lock()
	for _, x := range xids {
		delete(c.pending, x)
	}
	c.mu.Unlock()
}

func (c *OFConn) wait(ctx context.Context, p *ofPending) (ofReply, error) {
	select {
	case r := <-p.ch:
		return r, nil
	case <-ctx.Done():
		return ofReply{}, fmt.Errorf("openflow: %s to switch %s (dpid %016x): %w", p.op, c.remote, c.dpid, ctx.Err())
	case <-c.done:
		return ofReply{}, c.closedErr()
	}
}

// roundTrip sends msg (xid already set to xid) and waits for its reply of
// type want; an OFPT_ERROR reply is returned as *OFError.
func (c *OFConn) roundTrip(ctx context.Context, op string, xid uint32, msg []byte, want uint8) ([]byte, error) {
	p := &ofPending{kind: ofPendReply, op: op, want: want, ch: make(chan ofReply, 1)}
	if err := c.register(xid, p); err != nil {
		return nil, err
	}
	defer c.unregister(xid)
	if err := c.write(ctx, msg); err != nil {
		return nil, err
	}
	r, err := c.wait(ctx, p)
	if err != nil {
		return nil, err
	}
	return r.msg, r.err
}

// mpPending is a pending multipart request bounded by maxBytes (whole
// messages) and maxParts.
func (c *OFConn) mpPending(op string, mpType uint16, maxBytes, maxParts int) *ofPending {
	return &ofPending{kind: ofPendMultipart, op: op, mpType: mpType, ch: make(chan ofReply, 1), maxB: maxBytes, maxN: maxParts}
}

// multipart sends a multipart request and returns the bodies of all reply
// parts (REPLY_MORE reassembled), within the connection's multipart bounds.
func (c *OFConn) multipart(ctx context.Context, op string, mpType uint16, body []byte) ([][]byte, error) {
	return c.multipartWith(ctx, c.mpPending(op, mpType, c.opts.maxMultipartBytes, c.opts.maxMultipartParts), body)
}

func (c *OFConn) multipartWith(ctx context.Context, p *ofPending, body []byte) ([][]byte, error) {
	xid := c.nextXid()
	mpType := p.mpType
	if err := c.register(xid, p); err != nil {
		return nil, err
	}
	defer c.unregister(xid)
	if err := c.write(ctx, ofMultipartRequest(xid, mpType, body)); err != nil {
		return nil, err
	}
	r, err := c.wait(ctx, p)
	if err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, r.err
	}
	return p.parts, nil
}

// RequestRole sends OFPT_ROLE_REQUEST and returns the role and generation id
// from the ROLE_REPLY. A stale MASTER/SLAVE claim fails with an error for
// which errors.Is(err, ErrStaleGeneration) is true (the role is unchanged).
// OFRoleNoChange reads the current role and generation id.
func (c *OFConn) RequestRole(ctx context.Context, role OFRole, generationID uint64) (OFRole, uint64, error) {
	if role > OFRoleSlave {
		return 0, 0, fmt.Errorf("openflow: invalid role %d", uint32(role))
	}
	x := c.nextXid()
	reply, err := c.roundTrip(ctx, "role request "+role.String(), x, ofRoleRequestMsg(x, role, generationID), OFPTRoleReply)
	if err != nil {
		return 0, 0, err
	}
	if len(reply) < 24 {
		return 0, 0, fmt.Errorf("openflow: ROLE_REPLY from %s too short (%d bytes)", c.remote, len(reply))
	}
	got := OFRole(binary.BigEndian.Uint32(reply[8:12]))
	gen := binary.BigEndian.Uint64(reply[16:24])
	c.mu.Lock()
	if got != OFRoleNoChange {
		c.role = got
	}
	c.mu.Unlock()
	c.log.WithField("role", got.String()).WithField("generation", gen).Info("role reply")
	return got, gen, nil
}

// Barrier sends OFPT_BARRIER_REQUEST and waits for its reply.
func (c *OFConn) Barrier(ctx context.Context) error {
	x := c.nextXid()
	_, err := c.roundTrip(ctx, "barrier", x, ofSimple(OFPTBarrierRequest, x, nil), OFPTBarrierReply)
	return err
}

// DumpFlows reads every flow of every table (OFPMP_FLOW, table OFPTT_ALL,
// out_port/out_group ANY, cookie mask 0, empty match), reassembling all
// REPLY_MORE parts, and returns each raw ofp_flow_stats entry (starting with
// its length field). The entries are not copied further; the caller owns them.
func (c *OFConn) DumpFlows(ctx context.Context) ([][]byte, error) {
	parts, err := c.multipart(ctx, "flow stats request", OFPMPFlow, ofFlowStatsAllBody())
	if err != nil {
		return nil, err
	}
	return ofSplitFlowStats(parts)
}

func ofSplitFlowStats(parts [][]byte) ([][]byte, error) {
	var out [][]byte
	for pi, body := range parts {
		for off := 0; off < len(body); {
			if len(body)-off < 2 {
				return nil, fmt.Errorf("openflow: flow stats part %d: %d trailing bytes", pi, len(body)-off)
			}
			l := int(binary.BigEndian.Uint16(body[off : off+2]))
			if l < 48 || off+l > len(body) {
				return nil, fmt.Errorf("openflow: flow stats part %d: bad entry length %d at offset %d of %d", pi, l, off, len(body))
			}
			out = append(out, body[off:off+l:off+l])
			off += l
		}
	}
	return out, nil
}

// ofPrepare validates the caller's messages and returns copies stamped with
// version 1.3 and fresh xids.
func (c *OFConn) ofPrepare(msgs [][]byte, maxLen int) ([][]byte, []uint32, error) {
	out := make([][]byte, len(msgs))
	xids := make([]uint32, len(msgs))
	for i, m := range msgs {
		if len(m) < ofHeaderLen || len(m) > maxLen {
			return nil, nil, fmt.Errorf("openflow: message %d is %d bytes (must be 8..%d)", i, len(m), maxLen)
		}
		if l := int(binary.BigEndian.Uint16(m[2:4])); l != len(m) {
			return nil, nil, fmt.Errorf("openflow: message %d: header length %d but %d bytes given", i, l, len(m))
		}
		cp := append([]byte(nil), m...)
		cp[0] = OFVersion13
		xids[i] = c.nextXid()
		binary.BigEndian.PutUint32(cp[4:8], xids[i])
		out[i] = cp
	}
	return out, xids, nil
}

// ofReg registers one xid of a batch: op and the caller's message index.
type ofReg struct {
	xid   uint32
	op    string
	index int
}

// sendBatch registers regs as members of a new batch, writes msgs followed by
// a barrier and waits for the barrier reply. The batch holds exactly the
// errors for regs that arrived before the barrier reply. The returned error
// is a transport/context error or an error for the barrier itself.
func (c *OFConn) sendBatch(ctx context.Context, regs []ofReg, msgs [][]byte) (*ofBatch, error) {
	return c.sendBatchTail(ctx, regs, msgs, nil)
}

// sendBatchTail is sendBatch writing tail (already registered by the
// caller) right after the barrier, in the same write: the switch answers it
// once the batch is done, without another round trip.
func (c *OFConn) sendBatchTail(ctx context.Context, regs []ofReg, msgs [][]byte, tail [][]byte) (*ofBatch, error) {
	b := &ofBatch{}
	xids := make([]uint32, 0, len(regs)+1)
	defer func() { c.unregister(xids...) }()
	for _, r := range regs {
		if err := c.register(r.xid, &ofPending{kind: ofPendBatch, op: r.op, batch: b, index: r.index}); err != nil {
			return b, err
		}
		xids = append(xids, r.xid)
	}
	bx := c.nextXid()
	p := &ofPending{kind: ofPendReply, op: "barrier", want: OFPTBarrierReply, ch: make(chan ofReply, 1), closes: b}
	if err := c.register(bx, p); err != nil {
		return b, err
	}
	xids = append(xids, bx)
	out := append(append(msgs, ofSimple(OFPTBarrierRequest, bx, nil)), tail...)
	if err := c.writeMsgs(ctx, out); err != nil {
		return b, err
	}
	r, err := c.wait(ctx, p)
	if err != nil {
		return b, err
	}
	return b, r.err
}

func ofBatchErr(what string, n int, dpid uint64, b *ofBatch) error {
	e, count := b.first()
	if e == nil {
		return nil
	}
	more := ""
	if count > 1 {
		more = fmt.Sprintf(" (+%d more errors)", count-1)
	}
	return fmt.Errorf("openflow: %s of %d messages to dpid %016x failed%s: %w", what, n, dpid, more, e)
}

// Send writes msgs (complete OpenFlow 1.3 messages; version and xid are
// overwritten) without a bundle, then a barrier, and waits for the barrier
// reply. Any OFPT_ERROR for one of the messages that arrives before the
// barrier reply fails the call; the error (errors.As *OFError) names the
// message index. Messages before and after a failing one may have been
// applied. Empty msgs is a no-op.
func (c *OFConn) Send(ctx context.Context, msgs [][]byte) error {
	if len(msgs) == 0 {
		return nil
	}
	prep, xids, err := c.ofPrepare(msgs, ofMaxMsgLen)
	if err != nil {
		return err
	}
	regs := make([]ofReg, len(prep))
	for i := range prep {
		regs[i] = ofReg{xid: xids[i], op: "message", index: i}
	}
	b, err := c.sendBatch(ctx, regs, prep)
	if err != nil {
		return err
	}
	return ofBatchErr("send", len(msgs), c.dpid, b)
}

// Bundle applies msgs atomically with an ONF OpenFlow 1.3 bundle (flags
// ATOMIC|ORDERED): open, one bundle-add per message (inner and outer xid are
// the same fresh xid), then a barrier; only when no error arrived before that
// barrier reply is the bundle committed (commit + barrier). Any error for the
// open, an add or the commit fails the call with an error (errors.As
// *OFError) naming the failing message index, type/code and name; the bundle
// is then not committed (it is discarded if still open). Empty msgs is a
// no-op. If ctx ends midway, the bundle is discarded best-effort.
func (c *OFConn) Bundle(ctx context.Context, msgs [][]byte) error {
	_, err := c.bundle(ctx, msgs, nil)
	return err
}

// CookieRead selects flows by cookie: those whose cookie agrees with Cookie
// on the bits of Mask. An all-ones mask is an exact match, which the switch
// answers from its cookie index; any other mask makes it check every flow.
type CookieRead struct{ Cookie, Mask uint64 }

// BundleDump is Bundle followed by one flow-stats request per read, sent
// in the same write as the commit and its barrier, so the committed flows
// are read back without another round trip. The flows found are returned
// only when the commit succeeded.
func (c *OFConn) BundleDump(ctx context.Context, msgs [][]byte, reads []CookieRead) ([][]byte, error) {
	bodies := make([][]byte, len(reads))
	for i, r := range reads {
		bodies[i] = ofFlowStatsCookieBody(r.Cookie, r.Mask)
	}
	return c.bundle(ctx, msgs, bodies)
}

func (c *OFConn) bundle(ctx context.Context, msgs [][]byte, dumps [][]byte) ([][]byte, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	prep, xids, err := c.ofPrepare(msgs, OFMaxBundleItem)
	if err != nil {
		return nil, err
	}
	const flags = openflow13.OFPBCT_ATOMIC | openflow13.OFPBCT_ORDERED
	bid := c.bundleID.Add(1)
	start := time.Now()

	out := make([][]byte, 0, len(prep)+1)
	regs := make([]ofReg, 0, len(prep)+1)
	ox := c.nextXid()
	out = append(out, ofBundleCtrlMsg(ox, bid, openflow13.OFPBCT_OPEN_REQUEST, flags))
	regs = append(regs, ofReg{xid: ox, op: "bundle open", index: -1})
	for i, m := range prep {
		add, err := ofBundleAddMsg(xids[i], bid, flags, m)
		if err != nil {
			return nil, fmt.Errorf("openflow: encoding bundle add for message %d: %w", i, err)
		}
		out = append(out, add)
		regs = append(regs, ofReg{xid: xids[i], op: "bundle add", index: i})
	}
	// Phase 1: open + adds + barrier. Commit only if nothing was refused.
	b, err := c.sendBatch(ctx, regs, out)
	if err != nil {
		if ctx.Err() != nil {
			go c.discardBundle(ctx, bid) // the caller's time is up: don't make it wait
		} else {
			c.discardBundle(ctx, bid)
		}
		return nil, fmt.Errorf("%w; bundle %d not committed", err, bid)
	}
	if e := ofBatchErr("bundle", len(msgs), c.dpid, b); e != nil {
		if !b.hasOp("bundle open") {
			c.discardBundle(ctx, bid)
		}
		return nil, fmt.Errorf("%w; bundle %d not committed", e, bid)
	}
	// Phase 2: commit + barrier. At commit the switch reports a failing
	// inner message under its own xid, then BEC_MSG_FAILED for the commit.
	cx := c.nextXid()
	regs[0] = ofReg{xid: cx, op: "bundle commit", index: -1}
	var tail [][]byte
	pend := make([]*ofPending, len(dumps))
	for i, body := range dumps {
		dx := c.nextXid()
		pend[i] = c.mpPending("flow stats request", OFPMPFlow, c.opts.maxMultipartBytes, c.opts.maxMultipartParts)
		if err := c.register(dx, pend[i]); err != nil {
			return nil, err
		}
		defer c.unregister(dx)
		tail = append(tail, ofMultipartRequest(dx, OFPMPFlow, body))
	}
	b, err = c.sendBatchTail(ctx, regs, [][]byte{ofBundleCtrlMsg(cx, bid, openflow13.OFPBCT_COMMIT_REQUEST, flags)}, tail)
	if err != nil {
		return nil, fmt.Errorf("%w; outcome of bundle %d commit unknown (read the flows back)", err, bid)
	}
	if e := ofBatchErr("bundle", len(msgs), c.dpid, b); e != nil {
		return nil, fmt.Errorf("%w; bundle %d rejected at commit, nothing applied", e, bid)
	}
	c.log.WithField("messages", len(msgs)).WithField("bundle", bid).
		WithField("duration", time.Since(start).Round(time.Microsecond)).Debug("bundle committed")
	var found [][]byte
	for _, p := range pend {
		r, err := c.wait(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("read back after bundle %d: %w", bid, err)
		}
		if r.err != nil {
			return nil, fmt.Errorf("read back after bundle %d: %w", bid, r.err)
		}
		fs, err := ofSplitFlowStats(p.parts)
		if err != nil {
			return nil, err
		}
		found = append(found, fs...)
	}
	return found, nil
}

// discardBundle discards an open bundle, best effort, waiting at most a few
// seconds for the switch to confirm (ctx values are kept, its end is not).
func (c *OFConn) discardBundle(ctx context.Context, bid uint32) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	x := c.nextXid()
	msg := ofBundleCtrlMsg(x, bid, openflow13.OFPBCT_DISCARD_REQUEST, openflow13.OFPBCT_ATOMIC|openflow13.OFPBCT_ORDERED)
	if _, err := c.sendBatch(dctx, []ofReg{{xid: x, op: "bundle discard", index: -1}}, [][]byte{msg}); err != nil {
		c.log.WithError(err).WithField("bundle", bid).Debug("bundle discard not confirmed")
	}
}
