package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/pki"
)

// cfgStartAPIController runs a controller (no switch) whose API has the given
// token and TLS configuration, and returns its API URL.
func cfgStartAPIController(t *testing.T, token string, tlsCfg *tls.Config) string {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	c, err := controller.New(controller.Options{BlueprintPath: "../../examples/demo/blueprint.yaml", Listen: "tcp:127.0.0.1:0",
		HTTP: "127.0.0.1:0", HTTPToken: token, HTTPTLS: tlsCfg, ReloadPoll: time.Hour, DriftInterval: time.Hour, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, h := c.Addrs(); h != nil {
			scheme := "http://"
			if tlsCfg != nil {
				scheme = "https://"
			}
			return scheme + h.String()
		}
		if time.Now().After(deadline) {
			t.Fatal("no API listener within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cfgCaptureCmd runs a subcommand in-process and returns exit code and stderr.
func cfgCaptureCmd(t *testing.T, run func([]string) int, args ...string) (int, string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	null, _ := os.Open(os.DevNull)
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = null, f
	code := func() int {
		defer func() { os.Stdout, os.Stderr = oldOut, oldErr }()
		return run(args)
	}()
	f.Close()
	null.Close()
	b, _ := os.ReadFile(f.Name())
	return code, string(b)
}

// TestAuditRepairToken: `vpcflow audit --repair` sends POST
// /audit?repair=1 with --token-file; without it, or with a wrong token,
// the controller refuses (the CLI says which flag is missing); plain
// audit and status need no token.
func TestAuditRepairToken(t *testing.T) {
	const tok = "cli-test-token-0123456789"
	url := cfgStartAPIController(t, tok, nil)
	good := cfgWriteTemp(t, "token", tok+"\n")
	bad := cfgWriteTemp(t, "bad", "not-the-token-0123456789\n")
	for _, p := range []string{good, bad} {
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// No bridge is connected: the audit cannot tell (exit 2), but the
	// request itself is what is checked here.
	if code, stderr := cfgCaptureCmd(t, runAudit, "--controller", url, "--repair"); code != 2 || !strings.Contains(stderr, "401") || !strings.Contains(stderr, "--token-file") {
		t.Errorf("audit --repair without a token: exit %d %q", code, stderr)
	}
	if code, stderr := cfgCaptureCmd(t, runAudit, "--controller", url, "--repair", "--token-file", bad); code != 2 || !strings.Contains(stderr, "401") {
		t.Errorf("audit --repair with a wrong token: exit %d %q", code, stderr)
	}
	if code, stderr := cfgCaptureCmd(t, runAudit, "--controller", url, "--repair", "--token-file", good); !strings.Contains(stderr, "repair requested") {
		t.Errorf("audit --repair with the token: exit %d %q", code, stderr)
	}
	if code, stderr := cfgCaptureCmd(t, runAudit, "--controller", url); strings.Contains(stderr, "repair requested") || strings.Contains(stderr, "401") {
		t.Errorf("plain audit: exit %d %q", code, stderr)
	}
	if err := os.Chmod(good, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stderr := cfgCaptureCmd(t, runAudit, "--controller", url, "--repair", "--token-file", good); code != 2 || !strings.Contains(stderr, "chmod") {
		t.Errorf("audit --repair with a world-readable token file: exit %d %q", code, stderr)
	}
	if code, stderr := cfgCaptureCmd(t, runStatus, "--controller", url); code == 2 {
		t.Errorf("status needs no token: exit %d %q", code, stderr)
	}
}

// TestAPIClientCertificates: with --http-tls-cert and --http-client-ca the
// API is HTTPS; a client certificate chaining to the client CA authorizes
// a repair, no certificate or a switch certificate (even from a CA the
// controller trusts) does not.
func TestAPIClientCertificates(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Init(dir, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := pki.Sign(dir, "api", pki.Controller, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	opCert, opKey, err := pki.Sign(dir, "operator", pki.Controller, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	swCert, swKey, err := pki.Sign(dir, "kvm1", pki.Switch, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A client CA file trusting both CAs: the switch certificate chains,
	// and must still be refused.
	ctrlCA, _ := os.ReadFile(pki.TrustFor(dir, pki.Controller))
	swCA, _ := os.ReadFile(pki.TrustFor(dir, pki.Switch))
	both := cfgWriteTemp(t, "both.pem", string(ctrlCA)+string(swCA))
	cfg, err := pki.APIServerConfig(srvCert, srvKey, both)
	if err != nil {
		t.Fatal(err)
	}
	url := cfgStartAPIController(t, "", cfg)
	ca := pki.TrustFor(dir, pki.Controller)
	if code, stderr := cfgCaptureCmd(t, runAudit, "--controller", url, "--ca-file", ca, "--repair", "--cert-file", opCert, "--key-file", opKey); !strings.Contains(stderr, "repair requested") {
		t.Errorf("operator certificate: exit %d %q", code, stderr)
	}
	if code, stderr := cfgCaptureCmd(t, runAudit, "--controller", url, "--ca-file", ca, "--repair"); code != 2 || !strings.Contains(stderr, "401") {
		t.Errorf("no client certificate: exit %d %q", code, stderr)
	}
	if code, stderr := cfgCaptureCmd(t, runAudit, "--controller", url, "--ca-file", ca, "--repair", "--cert-file", swCert, "--key-file", swKey); code != 2 || !strings.Contains(stderr, "401") {
		t.Errorf("switch certificate: exit %d %q", code, stderr)
	}
	// Reads over HTTPS need no client certificate; the server must chain
	// to --ca-file.
	if code, stderr := cfgCaptureCmd(t, runStatus, "--controller", url, "--ca-file", ca); code == 2 {
		t.Errorf("status over https: exit %d %q", code, stderr)
	}
	if code, stderr := cfgCaptureCmd(t, runStatus, "--controller", url, "--ca-file", pki.TrustFor(dir, pki.Switch)); code != 2 || !strings.Contains(stderr, "certificate") {
		t.Errorf("status trusting the wrong CA: exit %d %q", code, stderr)
	}
	if code, stderr := cfgCaptureCmd(t, runStatus, "--controller", strings.Replace(url, "https://", "http://", 1), "--ca-file", ca); code != 2 || !strings.Contains(stderr, "https://") {
		t.Errorf("--ca-file with http://: exit %d %q", code, stderr)
	}
}
