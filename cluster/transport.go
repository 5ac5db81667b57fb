package cluster

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// filterTransport enforces the peer allowlist on every packet and stream in
// both directions. An empty allowlist denies every peer. It wraps
// memberlist's NetTransport because memberlist's own CIDRsAllowed treats an
// empty list as allow-all.
type filterTransport struct {
	inner    *memberlist.NetTransport
	restrict bool         // enforce allowed (empty = deny all)
	allowed  []*net.IPNet // peer allowlist
	// hook, when set (tests only), additionally drops traffic to or from a
	// peer "IP:PORT" for which it returns false (simulated partitions).
	hook func(addr string) bool
	log  func(format string, a ...any)

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*filterTransport)(nil)

func newFilterTransport(inner *memberlist.NetTransport, restrict bool, allowed []*net.IPNet, hook func(string) bool, logf func(string, ...any)) *filterTransport {
	t := &filterTransport{
		inner:    inner,
		restrict: restrict,
		allowed:  allowed,
		hook:     hook,
		log:      logf,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		done:     make(chan struct{}),
	}
	t.wg.Add(2)
	go t.pumpPackets()
	go t.pumpStreams()
	return t
}

func (t *filterTransport) allowIP(ip net.IP) bool {
	if !t.restrict {
		return true
	}
	for _, n := range t.allowed {
		if n.Contains(ip) {
			return true
		}
	}
	return false // empty list: deny all
}

func (t *filterTransport) allowAddr(a net.Addr) bool {
	return t.allowHostPort(a.String()) == nil && !t.hooked(a.String())
}

func (t *filterTransport) allowHostPort(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	if ip == nil || !t.allowIP(ip) {
		return fmt.Errorf("peer %s is not in the cluster CIDR allowlist", addr)
	}
	return nil
}

// hooked reports whether the test hook cuts addr off.
func (t *filterTransport) hooked(addr string) bool {
	return t.hook != nil && !t.hook(addr)
}

func (t *filterTransport) pumpPackets() {
	defer t.wg.Done()
	for {
		select {
		case p := <-t.inner.PacketCh():
			if !t.allowAddr(p.From) {
				t.log("dropping memberlist packet from %s: not in CIDR allowlist", p.From)
				continue
			}
			select {
			case t.packetCh <- p:
			case <-t.done:
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *filterTransport) pumpStreams() {
	defer t.wg.Done()
	for {
		select {
		case c := <-t.inner.StreamCh():
			if !t.allowAddr(c.RemoteAddr()) {
				t.log("refusing memberlist stream from %s: not in CIDR allowlist", c.RemoteAddr())
				_ = c.Close()
				continue
			}
			select {
			case t.streamCh <- c:
			case <-t.done:
				_ = c.Close()
				return
			}
		case <-t.done:
			return
		}
	}
}

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *filterTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

// WriteTo implements memberlist.Transport.
func (t *filterTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if err := t.allowHostPort(addr); err != nil {
		return time.Time{}, err
	}
	if t.hooked(addr) {
		return time.Now(), nil // a partition loses packets silently
	}
	return t.inner.WriteTo(b, addr)
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *filterTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if err := t.allowHostPort(a.Addr); err != nil {
		return time.Time{}, err
	}
	if t.hooked(a.Addr) {
		return time.Now(), nil
	}
	return t.inner.WriteToAddress(b, a)
}

// PacketCh implements memberlist.Transport.
func (t *filterTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout implements memberlist.Transport.
func (t *filterTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if err := t.allowHostPort(addr); err != nil {
		return nil, err
	}
	if t.hooked(addr) {
		return nil, fmt.Errorf("dial %s: i/o timeout (simulated partition)", addr)
	}
	return t.inner.DialTimeout(addr, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *filterTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if err := t.allowHostPort(a.Addr); err != nil {
		return nil, err
	}
	if t.hooked(a.Addr) {
		return nil, fmt.Errorf("dial %s: i/o timeout (simulated partition)", a.Addr)
	}
	return t.inner.DialAddressTimeout(a, timeout)
}

// StreamCh implements memberlist.Transport.
func (t *filterTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown implements memberlist.Transport. The pumps stop first; then,
// while the inner transport stops its listeners, whatever they still
// deliver is drained: memberlist's NetTransport listeners send on
// unbuffered channels and its Shutdown waits for them, so a packet arriving
// during shutdown with nobody reading would hang it for ever.
func (t *filterTransport) Shutdown() error {
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-t.inner.PacketCh():
			case c := <-t.inner.StreamCh():
				_ = c.Close()
			case <-stop:
				return
			}
		}
	}()
	err := t.inner.Shutdown()
	close(stop)
	<-drained
	return err
}
