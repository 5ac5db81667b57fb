package cluster

import (
	"io"
	"log"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestFilterTransportShutdownUnderTraffic: packets keep arriving while the
// replica shuts down and nobody reads the transport any more (memberlist
// has stopped). Shutdown must still return: the inner NetTransport's
// listeners block on unbuffered channels and its Shutdown waits for them.
func TestFilterTransportShutdownUnderTraffic(t *testing.T) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"}, BindPort: 0, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	_, allowed, _ := net.ParseCIDR("127.0.0.0/8")
	ft := newFilterTransport(nt, true, []*net.IPNet{allowed}, nil, func(string, ...any) {})
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: nt.GetAutoBindPort()}
	conn, err := net.DialUDP("udp", nil, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stopSend := make(chan struct{})
	defer close(stopSend)
	go func() {
		for {
			select {
			case <-stopSend:
				return
			default:
			}
			_, _ = conn.Write([]byte("not memberlist, just traffic"))
			time.Sleep(time.Millisecond)
		}
	}()
	// Nobody reads ft.PacketCh(): a bounded window of traffic (a packet
	// every millisecond) leaves the pump holding one packet and the inner
	// listener blocked on the next.
	time.Sleep(300 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- ft.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("filterTransport.Shutdown hung with packets arriving and nobody reading")
	}
}
