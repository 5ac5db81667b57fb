package pki

import (
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOVSRefusesSwitchCertAsController runs Open vSwitch's own TLS client
// (ovs-ofctl connecting to an ssl: target: the stream-ssl code that
// ovs-vswitchd uses to reach its controller) against a TLS server that
// presents a hypervisor's certificate: OVS refuses it, whether its CA file
// is the controller CA alone or (a misconfiguration) both CAs; it accepts
// the genuine controller certificate.
func TestOVSRefusesSwitchCertAsController(t *testing.T) {
	if os.Getenv("VPCFLOW_E2E") == "0" {
		t.Skip("VPCFLOW_E2E=0")
	}
	ofctl, err := exec.LookPath("ovs-ofctl")
	if err != nil {
		t.Fatalf("ovs-ofctl not found (install openvswitch-common or set VPCFLOW_E2E=0): %v", err)
	}
	dir := testPKI(t)
	p := func(f string) string { return filepath.Join(dir, f) }
	bundle := filepath.Join(t.TempDir(), "both.pem")
	a, _ := os.ReadFile(TrustFor(dir, Switch))
	b, _ := os.ReadFile(TrustFor(dir, Controller))
	if err := os.WriteFile(bundle, append(a, b...), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(serverCert, serverKey, ca string) (string, string) {
		srv := &tls.Config{Certificates: []tls.Certificate{mustPair(t, serverCert, serverKey)}, ClientAuth: tls.RequestClientCert}
		addr, res := tlsServer(t, srv)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, ofctl, "-O", "OpenFlow13", "--timeout=5",
			"--private-key="+p("kvm1.key"), "--certificate="+p("kvm1.pem"), "--ca-cert="+ca,
			"show", "ssl:"+addr)
		cmd.Env = append(os.Environ(), "OVS_RUNDIR="+t.TempDir(), "OVS_LOGDIR="+t.TempDir())
		out, _ := cmd.CombinedOutput()
		var got string
		select {
		case got = <-res:
		case <-time.After(10 * time.Second):
			got = "(no handshake)"
		}
		return got, strings.TrimSpace(string(out))
	}
	for _, ca := range []string{TrustFor(dir, Controller), bundle} {
		got, out := run(p("kvm2.pem"), p("kvm2.key"), ca)
		if got == "kvm1" {
			t.Fatalf("CA file %s: Open vSwitch accepted a hypervisor's certificate from a controller (ovs-ofctl: %s)", filepath.Base(ca), out)
		}
		t.Logf("CA file %s, server presents kvm2 (switch): server sees %q; ovs-ofctl: %s", filepath.Base(ca), got, out)
		got, out = run(p("controller.pem"), p("controller.key"), ca)
		if got != "kvm1" {
			t.Fatalf("CA file %s: Open vSwitch refused the genuine controller certificate: server %q; ovs-ofctl: %s", filepath.Base(ca), got, out)
		}
	}
}
