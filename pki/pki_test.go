package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI creates a PKI with a controller certificate "controller" and
// switch certificates kvm1, kvm2.
func testPKI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := Init(dir, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Sign(dir, "controller", Controller, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"kvm1", "kvm2"} {
		if _, _, err := Sign(dir, n, Switch, nil, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tlsServer accepts TLS connections with cfg and reports each handshake's
// outcome: the client's certificate name or "error: ...".
func tlsServer(t *testing.T, cfg *tls.Config) (addr string, results <-chan string) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					ch <- "error: " + err.Error()
					return
				}
				name := "(none)"
				if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
					name = st.PeerCertificates[0].Subject.CommonName
				}
				ch <- name
			}()
		}
	}()
	return ln.Addr().String(), ch
}

func dialResult(t *testing.T, addr string, cfg *tls.Config, results <-chan string) (server string, client error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1)) // TLS 1.3: the server's verdict arrives after the client's handshake
		c.Close()
	}
	select {
	case s := <-results:
		return s, err
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake result from the server")
	}
	return "", nil
}

func TestMutualTLS(t *testing.T) {
	dir := testPKI(t)
	other := t.TempDir()
	if err := Init(other, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir, time.Hour); err == nil {
		t.Fatal("Init over an existing CA must fail")
	}
	rc, rk, _ := Sign(other, "kvm1", Switch, nil, time.Hour) // same name, foreign CA
	p := func(f string) string { return filepath.Join(dir, f) }
	srv, err := ServerConfig(p("controller.pem"), p("controller.key"), TrustFor(dir, Switch))
	if err != nil {
		t.Fatal(err)
	}
	addr, res := tlsServer(t, srv)
	good, _ := ClientConfig(p("kvm1.pem"), p("kvm1.key"), TrustFor(dir, Controller))
	if got, _ := dialResult(t, addr, good, res); got != "kvm1" {
		t.Fatalf("valid switch: %s", got)
	}
	bad, _ := ClientConfig(rc, rk, TrustFor(dir, Controller))
	if got, _ := dialResult(t, addr, bad, res); !strings.HasPrefix(got, "error:") {
		t.Fatalf("client with a foreign CA's certificate accepted: %s", got)
	}
	none := &tls.Config{InsecureSkipVerify: true}
	if got, _ := dialResult(t, addr, none, res); !strings.HasPrefix(got, "error:") {
		t.Fatalf("client without a certificate accepted: %s", got)
	}
}

// TestControllerCertRefusedAsSwitch: a controller's certificate presented
// to a controller as a switch's is refused: by the CA (controllers trust
// only the switch CA) and, when the trust file also holds the controller CA
// (a bundle during a migration), by the certificate's kind.
func TestControllerCertRefusedAsSwitch(t *testing.T) {
	dir := testPKI(t)
	p := func(f string) string { return filepath.Join(dir, f) }
	bundle := filepath.Join(t.TempDir(), "both.pem")
	a, _ := os.ReadFile(TrustFor(dir, Switch))
	b, _ := os.ReadFile(TrustFor(dir, Controller))
	if err := os.WriteFile(bundle, append(a, b...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ca := range []string{TrustFor(dir, Switch), bundle} {
		srv, err := ServerConfig(p("controller.pem"), p("controller.key"), ca)
		if err != nil {
			t.Fatal(err)
		}
		addr, res := tlsServer(t, srv)
		impostor, _ := ClientConfig(p("controller.pem"), p("controller.key"), TrustFor(dir, Controller))
		got, _ := dialResult(t, addr, impostor, res)
		if !strings.HasPrefix(got, "error:") {
			t.Fatalf("trusting %s: a controller certificate was accepted as a switch (%s)", filepath.Base(ca), got)
		}
		t.Logf("trusting %s: refused: %s", filepath.Base(ca), got)
	}
}

// ovsLikeClient verifies a server certificate the way Open vSwitch does
// when it connects to an ssl: controller (OpenSSL, purpose "ssl_server"):
// the chain must end at the CA file's certificates, and a certificate with
// extended key usages must include serverAuth. The host name is not
// checked (OVS does not either).
func ovsLikeClient(t *testing.T, certFile, keyFile, caFile string) *tls.Config {
	t.Helper()
	cert, pool, err := load(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		}}
}

// TestSwitchCertRefusedAsController: a hypervisor's certificate offered by
// a rogue controller is refused by a switch: by the CA (switches trust only
// the controller CA) and, even when the switch's CA file holds both CAs,
// by its key usage (clientAuth only). The genuine controller is accepted.
func TestSwitchCertRefusedAsController(t *testing.T) {
	dir := testPKI(t)
	p := func(f string) string { return filepath.Join(dir, f) }
	bundle := filepath.Join(t.TempDir(), "both.pem")
	a, _ := os.ReadFile(TrustFor(dir, Switch))
	b, _ := os.ReadFile(TrustFor(dir, Controller))
	if err := os.WriteFile(bundle, append(a, b...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ca := range []string{TrustFor(dir, Controller), bundle} {
		sw := ovsLikeClient(t, p("kvm1.pem"), p("kvm1.key"), ca)
		// The rogue "controller" presents kvm2's certificate.
		rogue := &tls.Config{Certificates: []tls.Certificate{mustPair(t, p("kvm2.pem"), p("kvm2.key"))}, ClientAuth: tls.RequestClientCert}
		addr, res := tlsServer(t, rogue)
		if _, err := dialResult(t, addr, sw, res); err == nil {
			t.Fatalf("trusting %s: the switch accepted a hypervisor's certificate from a controller", filepath.Base(ca))
		} else {
			t.Logf("trusting %s: refused: %v", filepath.Base(ca), err)
		}
		genuine, err := ServerConfig(p("controller.pem"), p("controller.key"), TrustFor(dir, Switch))
		if err != nil {
			t.Fatal(err)
		}
		addr, res = tlsServer(t, genuine)
		if got, err := dialResult(t, addr, sw, res); got != "kvm1" || (err != nil && !isTimeout(err) && !errors.Is(err, io.EOF)) {
			t.Fatalf("trusting %s: genuine controller: server %q, client %v", filepath.Base(ca), got, err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func mustPair(t *testing.T, c, k string) tls.Certificate {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestCertificateUsages(t *testing.T) {
	dir := testPKI(t)
	parse := func(name string) *x509.Certificate {
		b, _ := os.ReadFile(filepath.Join(dir, name+".pem"))
		c, err := parseCertPEM(b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	sw, ct := parse("kvm1"), parse("controller")
	if len(sw.ExtKeyUsage) != 1 || sw.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("switch certificate usages %v, want clientAuth only", sw.ExtKeyUsage)
	}
	if len(ct.ExtKeyUsage) != 2 || ct.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || ct.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("controller certificate usages %v, want serverAuth, clientAuth", ct.ExtKeyUsage)
	}
	if sw.Issuer.CommonName != "vpcflow switch CA" || ct.Issuer.CommonName != "vpcflow controller CA" {
		t.Errorf("issuers: switch %q, controller %q", sw.Issuer.CommonName, ct.Issuer.CommonName)
	}
}

// TestSignRefusesOverwrite: signing a name twice fails and leaves the
// first certificate and key untouched.
func TestSignRefusesOverwrite(t *testing.T) {
	dir := testPKI(t)
	before, _ := os.ReadFile(filepath.Join(dir, "kvm1.key"))
	for _, k := range []Kind{Switch, Controller} {
		if _, _, err := Sign(dir, "kvm1", k, nil, time.Hour); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
			t.Fatalf("second sign of kvm1 (%s): %v", k, err)
		}
	}
	after, _ := os.ReadFile(filepath.Join(dir, "kvm1.key"))
	if string(before) != string(after) {
		t.Fatal("kvm1.key was replaced")
	}
	// A key left alone (e.g. a failed earlier run) also blocks.
	if err := os.WriteFile(filepath.Join(dir, "kvm3.key"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Sign(dir, "kvm3", Switch, nil, time.Hour); err == nil {
		t.Fatal("sign over an existing key succeeded")
	}
}

// TestSignRejectsPathNames: a name is a plain file name; nothing is
// written outside the PKI directory.
func TestSignRejectsPathNames(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "pki")
	if err := Init(dir, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"../evil", "..", "a/b", "/tmp/evil", `a\b`, ".hidden", "-rf", "", "x..y", "a\nb"} {
		if _, _, err := Sign(dir, n, Switch, nil, time.Hour); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 {
		t.Fatalf("files written outside the PKI directory: %v", ents)
	}
	if _, _, err := Sign(dir, "kvm1.example", Switch, nil, time.Hour); err != nil {
		t.Fatalf("plain name refused: %v", err)
	}
}

// TestLegacyLayout: a directory of the old single-CA layout is not signed
// from (its certificates have both usages) and not initialised over.
func TestLegacyLayout(t *testing.T) {
	dir := t.TempDir()
	if err := initCA(dir, "vpcflow CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Sign(dir, "kvm1", Switch, nil, time.Hour); err == nil || !strings.Contains(err.Error(), "older vpcflow") {
		t.Fatalf("sign in a legacy directory: %v", err)
	}
	if err := Init(dir, time.Hour); err == nil || !strings.Contains(err.Error(), "older vpcflow") {
		t.Fatalf("init over a legacy directory: %v", err)
	}
}
