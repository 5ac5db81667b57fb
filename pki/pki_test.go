package pki

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMutualTLS(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, other} {
		if err := Init(d, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := Init(dir, time.Hour); err == nil {
		t.Fatal("Init over an existing CA must fail")
	}
	sc, sk, err := Sign(dir, "controller", []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cc, ck, _ := Sign(dir, "kvm1", nil, time.Hour)
	rc, rk, _ := Sign(other, "kvm1", nil, time.Hour) // same name, foreign CA
	srv, err := ServerConfig(sc, sk, filepath.Join(dir, CACert))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	names := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err != nil {
				names <- "error: " + err.Error()
			} else {
				names <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
			}
			c.Close()
		}
	}()
	dial := func(cfg *tls.Config) string {
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err == nil {
			c.Read(make([]byte, 1))
			c.Close()
		}
		return <-names
	}
	good, _ := ClientConfig(cc, ck, filepath.Join(dir, CACert))
	if got := dial(good); got != "kvm1" {
		t.Fatalf("valid client: %s", got)
	}
	bad, _ := ClientConfig(rc, rk, filepath.Join(dir, CACert))
	if got := dial(bad); !strings.HasPrefix(got, "error:") {
		t.Fatalf("client with a foreign CA's certificate accepted: %s", got)
	}
	none := &tls.Config{InsecureSkipVerify: true}
	if got := dial(none); !strings.HasPrefix(got, "error:") {
		t.Fatalf("client without a certificate accepted: %s", got)
	}
}
