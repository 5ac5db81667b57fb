package controller

// The fault suite's gossip network: every replica of one run binds its own
// loopback address (127.A.B.n, unique per run), and a memberlist transport
// wrapper (cluster.Config.TestTransport) consults the run's link table for
// every packet and stream: cut links (symmetric or one-way), delay and
// loss. Traffic from or to an address outside the run is dropped, so
// parallel runs can never gossip with each other.

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

type fsLinkKey struct{ from, to string }

type fsLink struct {
	cut   bool
	delay time.Duration
	loss  float64 // probability a packet is dropped
}

// fsNet is one run's gossip network, keyed by node name.
type fsNet struct {
	mu    sync.Mutex
	byIP  map[string]string // IP -> node name
	links map[fsLinkKey]fsLink
	rng   *rand.Rand // loss decisions (timing dependent, not part of the schedule)
}

func newFSNet(seed uint64) *fsNet {
	return &fsNet{byIP: map[string]string{}, links: map[fsLinkKey]fsLink{}, rng: rand.New(rand.NewPCG(seed, 99))}
}

var fsRunCounter atomic.Uint64

// fsRunIPs returns n loopback addresses unique to one run.
func fsRunIPs(n int) []string {
	k := fsRunCounter.Add(1)
	a, b := 100+(k/200)%100, 1+k%200
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.%d.%d.%d", a, b, i+1)
	}
	return out
}

func (n *fsNet) register(ip, name string) {
	n.mu.Lock()
	n.byIP[ip] = name
	n.mu.Unlock()
}

func (n *fsNet) set(from, to string, f func(l *fsLink)) {
	n.mu.Lock()
	l := n.links[fsLinkKey{from, to}]
	f(&l)
	n.links[fsLinkKey{from, to}] = l
	n.mu.Unlock()
}

// heal removes every cut, delay and loss.
func (n *fsNet) heal() {
	n.mu.Lock()
	clear(n.links)
	n.mu.Unlock()
}

func (n *fsNet) nameOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byIP[host]
}

// packet decides one datagram from -> to.
func (n *fsNet) packet(from, to string) (drop bool, delay time.Duration) {
	if from == "" || to == "" {
		return true, 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.links[fsLinkKey{from, to}]
	if l.cut || (l.loss > 0 && n.rng.Float64() < l.loss) {
		return true, 0
	}
	return false, l.delay
}

// stream decides a TCP stream between a and b: it needs both directions.
func (n *fsNet) stream(a, b string) (ok bool, delay time.Duration) {
	if a == "" || b == "" {
		return false, 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	l1, l2 := n.links[fsLinkKey{a, b}], n.links[fsLinkKey{b, a}]
	if l1.cut || l2.cut {
		return false, 0
	}
	return true, max(l1.delay, l2.delay)
}

// fsTransport wraps one replica's memberlist transport.
type fsTransport struct {
	inner  memberlist.NodeAwareTransport
	net    *fsNet
	self   string
	selfIP net.IP

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*fsTransport)(nil)

func (n *fsNet) wrap(self, ip string) func(memberlist.Transport) memberlist.Transport {
	return func(t memberlist.Transport) memberlist.Transport {
		inner, ok := t.(memberlist.NodeAwareTransport)
		if !ok {
			panic("fault suite: memberlist transport is not node-aware")
		}
		ft := &fsTransport{inner: inner, net: n, self: self, selfIP: net.ParseIP(ip),
			packetCh: make(chan *memberlist.Packet), streamCh: make(chan net.Conn), done: make(chan struct{})}
		ft.wg.Add(2)
		go ft.pumpPackets()
		go ft.pumpStreams()
		return ft
	}
}

func (t *fsTransport) pumpPackets() {
	defer t.wg.Done()
	for {
		select {
		case p := <-t.inner.PacketCh():
			if drop, _ := t.net.packet(t.net.nameOf(p.From.String()), t.self); drop {
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

func (t *fsTransport) pumpStreams() {
	defer t.wg.Done()
	for {
		select {
		case c := <-t.inner.StreamCh():
			if ok, _ := t.net.stream(t.net.nameOf(c.RemoteAddr().String()), t.self); !ok {
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

func (t *fsTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *fsTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *fsTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	drop, delay := t.net.packet(t.self, t.net.nameOf(a.Addr))
	if drop {
		return time.Now(), nil // lost on the wire
	}
	if delay > 0 {
		bc := append([]byte(nil), b...)
		time.AfterFunc(delay, func() {
			select {
			case <-t.done:
			default:
				_, _ = t.inner.WriteToAddress(bc, a)
			}
		})
		return time.Now(), nil
	}
	return t.inner.WriteToAddress(b, a)
}

func (t *fsTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *fsTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	ok, delay := t.net.stream(t.self, t.net.nameOf(addr))
	if !ok {
		return nil, fmt.Errorf("dial %s: i/o timeout (fault suite: link cut)", addr)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-t.done:
			return nil, fmt.Errorf("dial %s: transport shut down", addr)
		}
	}
	// Bind our own loopback address so the peer can tell who is calling.
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: t.selfIP}}
	return d.Dial("tcp", addr)
}

func (t *fsTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

func (t *fsTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown stops the pumps first, then keeps draining the inner transport
// while it shuts down: memberlist's NetTransport listeners block on their
// unbuffered channels, and its Shutdown waits for them (a wrapper that
// stops reading before the inner Shutdown returns can hang it forever).
func (t *fsTransport) Shutdown() error {
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
