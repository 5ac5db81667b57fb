// Package pki creates the certificate authorities vpcflow's TLS needs, laid
// out as Open vSwitch's ovs-pki does: a controller CA that issues only
// controller (replica) certificates and a switch CA that issues only
// hypervisor certificates (the switch's and ovsdb-server's identity).
// Switches trust only the controller CA, controllers only the switch CA, so
// a hypervisor's certificate is never accepted as a controller's, nor a
// controller's as a switch's. Extended key usages say the same thing a
// second time: a switch certificate is a TLS client certificate only
// (OpenSSL, in every Open vSwitch, refuses it from a controller), a
// controller certificate a server certificate plus a client one (it also
// connects to ovsdb-server over ssl:, which checks clientAuth).
//
// Keys are ECDSA P-256; certificates carry the name as CommonName (the
// controller binds a switch's certificate name to its blueprint host), the
// kind as OrganizationalUnit, and the given IPs as SANs.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names inside a PKI directory: DIR/controllerca/ca.pem (+ ca.key),
// DIR/switchca/ca.pem (+ ca.key), DIR/NAME.pem and DIR/NAME.key.
const (
	CACert       = "ca.pem"
	CAKey        = "ca.key"
	ControllerCA = "controllerca"
	SwitchCA     = "switchca"
)

// Kind is what a certificate is for.
type Kind string

// Certificate kinds.
const (
	// Controller: a vpcflow replica (OpenFlow listener; OVSDB client).
	Controller Kind = "controller"
	// Switch: a hypervisor (its ovs-vswitchd connecting to the controller,
	// its ovsdb-server serving ssl:).
	Switch Kind = "switch"
)

// ParseKind parses "controller" or "switch".
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case Controller, Switch:
		return k, nil
	}
	return "", fmt.Errorf("certificate type %q: want switch (a hypervisor; name it after its blueprint host) or controller (a replica)", s)
}

// caDir is the CA directory that issues certificates of kind k.
func caDir(dir string, k Kind) string {
	if k == Controller {
		return filepath.Join(dir, ControllerCA)
	}
	return filepath.Join(dir, SwitchCA)
}

// TrustFor is the CA certificate that verifies certificates of kind k: the
// file a k certificate's peers must trust (switches trust
// TrustFor(dir, Controller), controllers TrustFor(dir, Switch)).
func TrustFor(dir string, k Kind) string {
	return filepath.Join(caDir(dir, k), CACert)
}

// Init creates DIR/controllerca and DIR/switchca, each with ca.pem and
// ca.key (refusing to overwrite anything).
func Init(dir string, validity time.Duration) error {
	if _, err := os.Stat(filepath.Join(dir, CAKey)); err == nil {
		return fmt.Errorf("%s holds a single-CA PKI of an older vpcflow (%s): create the new layout in another directory and migrate (docs/security.md, \"PKI layout\")",
			dir, filepath.Join(dir, CAKey))
	}
	for _, k := range []Kind{Controller, Switch} {
		if _, err := os.Stat(filepath.Join(caDir(dir, k), CAKey)); err == nil {
			return fmt.Errorf("%s already exists: refusing to replace the CA (remove the directory to start over)", filepath.Join(caDir(dir, k), CAKey))
		}
	}
	for _, k := range []Kind{Controller, Switch} {
		if err := initCA(caDir(dir, k), "vpcflow "+string(k)+" CA", validity); err != nil {
			return err
		}
	}
	return nil
}

func initCA(dir, cn string, validity time.Duration) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"vpcflow"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, CAKey), "EC PRIVATE KEY", mustMarshalKey(key), 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, CACert), "CERTIFICATE", der, 0o644)
}

// CheckName refuses certificate names that are not a plain file name:
// empty, with a path separator, "..", a leading dot or dash, or control
// characters (the name becomes DIR/NAME.pem and DIR/NAME.key).
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("--name is required: the blueprint host name (switch) or the replica's name (controller)")
	case strings.ContainsAny(name, "/\\"):
		return fmt.Errorf("--name %q: contains a path separator: a certificate name is a plain name (it becomes NAME.pem in the PKI directory)", name)
	case strings.Contains(name, ".."):
		return fmt.Errorf("--name %q: contains \"..\": a certificate name is a plain name (it becomes NAME.pem in the PKI directory)", name)
	case name[0] == '.' || name[0] == '-':
		return fmt.Errorf("--name %q: must not start with %q", name, name[0])
	case strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("--name %q: contains a control character", name)
	}
	return nil
}

// Sign issues DIR/NAME.pem and DIR/NAME.key for name (CommonName) with the
// given IP SANs, from the CA of its kind: a Switch certificate is a TLS
// client certificate only (extended key usage clientAuth); a Controller
// certificate is a server certificate (serverAuth, the OpenFlow listener)
// that is also a client one (clientAuth, for ssl: OVSDB). Sign refuses to
// overwrite existing files.
func Sign(dir, name string, kind Kind, ips []net.IP, validity time.Duration) (certPath, keyPath string, err error) {
	if err := CheckName(name); err != nil {
		return "", "", err
	}
	if _, err := ParseKind(string(kind)); err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s already exists: refusing to overwrite it (remove it first to re-issue %s's certificate)", p, name)
		}
	}
	caCert, caKey, err := loadCA(dir, kind)
	if err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if kind == Controller {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"vpcflow"}, OrganizationalUnit: []string{string(kind)}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  eku,
		IPAddresses:  ips,
		DNSNames:     []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", err
	}
	if err := writePEM(keyPath, "EC PRIVATE KEY", mustMarshalKey(key), 0o600); err != nil {
		return "", "", err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		_ = os.Remove(keyPath)
		return "", "", err
	}
	return certPath, keyPath, nil
}

// isControllerCert reports whether c was issued as a controller
// certificate (OrganizationalUnit "controller").
func isControllerCert(c *x509.Certificate) bool {
	return slices.Contains(c.Subject.OrganizationalUnit, string(Controller))
}

// ServerConfig is the controller's TLS configuration: its own certificate,
// and client certificates REQUIRED and verified against caFile (the switch
// CA) with extended key usage clientAuth (mutual TLS). A certificate issued
// as a controller's is refused even if caFile trusts its CA (e.g. a bundle
// during a migration).
func ServerConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, pool, err := load(certFile, keyFile, caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 && isControllerCert(cs.PeerCertificates[0]) {
				return fmt.Errorf("tls: client certificate %q is a controller certificate (OU=controller): a switch needs a switch certificate (vpcflow pki sign --type switch)",
					cs.PeerCertificates[0].Subject.CommonName)
			}
			return nil
		}}, nil
}

// ClientConfig is a TLS client configuration presenting certFile and
// trusting only caFile (used for OVSDB over ssl:). Server names are not
// checked against DNS (OVS endpoints are IPs); the CA is private.
func ClientConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, pool, err := load(certFile, keyFile, caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by VerifyPeerCertificate below: chain to our CA, any name
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(raw, pool)
		}}, nil
}

func verifyChain(raw [][]byte, pool *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("tls: peer presented no certificate")
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

func load(certFile, keyFile, caFile string) (tls.Certificate, *x509.CertPool, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return tls.Certificate{}, nil, errors.New("TLS needs a certificate, a key and a CA certificate (--tls-cert, --tls-key, --tls-ca)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load %s / %s: %w", certFile, keyFile, err)
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return tls.Certificate{}, nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	return cert, pool, nil
}

func loadCA(dir string, kind Kind) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cd := caDir(dir, kind)
	cb, err := os.ReadFile(filepath.Join(cd, CACert))
	if err != nil {
		if _, lerr := os.Stat(filepath.Join(dir, CAKey)); lerr == nil {
			return nil, nil, fmt.Errorf("%s holds a single-CA PKI of an older vpcflow: run vpcflow pki init in a new directory and migrate (docs/security.md, \"PKI layout\")", dir)
		}
		return nil, nil, fmt.Errorf("no %s CA in %s (run vpcflow pki init --dir %s): %w", kind, cd, dir, err)
	}
	kb, err := os.ReadFile(filepath.Join(cd, CAKey))
	if err != nil {
		return nil, nil, err
	}
	cp, _ := pem.Decode(cb)
	kp, _ := pem.Decode(kb)
	if cp == nil || kp == nil {
		return nil, nil, fmt.Errorf("%s: bad PEM", dir)
	}
	cert, err := x509.ParseCertificate(cp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func mustMarshalKey(k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err) // cannot happen for a P-256 key we just generated
	}
	return b
}

// writePEM creates path (never overwriting: O_EXCL, so a symlink planted
// there is not followed either).
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	p, _ := pem.Decode(b)
	if p == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParseCertificate(p.Bytes)
}
