package controller

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testToken = "0123456789abcdef-test-token"

func httpauthDo(t *testing.T, base, method, path, token string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAPIMutatingRefusedWithoutCredential: with no credential configured,
// POST /reload and POST /audit?repair=1 are refused (403) with a message
// naming the flags that enable them; reads still work.
func TestAPIMutatingRefusedWithoutCredential(t *testing.T) {
	c := newTestController(t, httpauthDemoBlueprint(t), Options{})
	srv := httptest.NewServer(c.httpServer().Handler)
	defer srv.Close()
	for _, p := range []string{"/reload", "/audit?repair=1"} {
		code, body := httpauthDo(t, srv.URL, http.MethodPost, p, testToken, nil)
		if code != http.StatusForbidden || !strings.Contains(body, "--http-token-file") || !strings.Contains(body, "--http-client-ca") {
			t.Errorf("POST %s without a configured credential: %d %q, want 403 naming --http-token-file and --http-client-ca", p, code, body)
		}
	}
	if code, _ := httpauthDo(t, srv.URL, http.MethodGet, "/status", "", nil); code != http.StatusOK {
		t.Errorf("GET /status: %d", code)
	}
	if code, _ := httpauthDo(t, srv.URL, http.MethodGet, "/audit", "", nil); code != http.StatusOK {
		t.Errorf("GET /audit: %d", code)
	}
}

// TestAPIToken: with --http-token-file, a mutating request without the
// token or with a wrong one gets 401 and nothing else; the token admits
// it; GET /audit?repair=1 is refused (a GET never repairs); a body above
// the bound is refused before authentication.
func TestAPIToken(t *testing.T) {
	c := newTestController(t, httpauthDemoBlueprint(t), Options{HTTPToken: testToken})
	srv := httptest.NewServer(c.httpServer().Handler)
	defer srv.Close()
	for _, tok := range []string{"", "wrong-token-wrong-token", testToken + "x", strings.ToUpper(testToken)} {
		for _, p := range []string{"/reload", "/audit?repair=1"} {
			code, body := httpauthDo(t, srv.URL, http.MethodPost, p, tok, nil)
			if code != http.StatusUnauthorized || body != "unauthorized\n" {
				t.Errorf("POST %s with token %q: %d %q, want 401 \"unauthorized\"", p, tok, code, body)
			}
		}
	}
	// Basic auth or a token without the Bearer scheme is no credential.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/reload", nil)
	req.Header.Set("Authorization", testToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("token without Bearer: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if code, body := httpauthDo(t, srv.URL, http.MethodPost, "/reload", testToken, nil); code != http.StatusOK || body != "ok\n" {
		t.Errorf("POST /reload with the token: %d %q", code, body)
	}
	code, body := httpauthDo(t, srv.URL, http.MethodPost, "/audit?repair=1", testToken, nil)
	var rep AuditReport
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rep) != nil || !rep.RepairRequested {
		t.Errorf("POST /audit?repair=1 with the token: %d %q", code, body)
	}
	if code, _ := httpauthDo(t, srv.URL, http.MethodPost, "/audit", testToken, nil); code != http.StatusBadRequest {
		t.Errorf("POST /audit without repair=1: %d, want 400", code)
	}
	if code, body := httpauthDo(t, srv.URL, http.MethodGet, "/audit?repair=1", testToken, nil); code != http.StatusMethodNotAllowed || !strings.Contains(body, "POST /audit?repair=1") {
		t.Errorf("GET /audit?repair=1: %d %q, want 405", code, body)
	}
	if code, _ := httpauthDo(t, srv.URL, http.MethodGet, "/reload", testToken, nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /reload: %d, want 405", code)
	}
	// A declared body above the bound: refused before authentication.
	big := strings.NewReader(strings.Repeat("x", maxAPIBody+1))
	if code, _ := httpauthDo(t, srv.URL, http.MethodPost, "/reload", "", big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /reload with a %d-byte body: %d, want 413", maxAPIBody+1, code)
	}
}

// TestReadTokenFile: a token file readable by others is refused (the
// message names chmod), as are short tokens, several words and big files.
func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := ReadTokenFile(write("ok", testToken+"\n", 0o600)); err != nil || tok != testToken {
		t.Errorf("0600 token file: %q %v", tok, err)
	}
	if tok, err := ReadTokenFile(write("group", testToken, 0o640)); err != nil || tok != testToken {
		t.Errorf("0640 token file: %q %v", tok, err)
	}
	for _, c := range []struct {
		name, text string
		mode       os.FileMode
		want       string
	}{
		{"world", testToken, 0o644, "chmod 0640"},
		{"worldw", testToken, 0o602, "chmod 0640"},
		{"short", "abc", 0o600, "shorter than 16"},
		{"two", testToken + " " + testToken, 0o600, "one token"},
		{"big", strings.Repeat("a", maxTokenFile+1), 0o600, "at most"},
	} {
		if _, err := ReadTokenFile(write(c.name, c.text, c.mode)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

// TestMetricsListenerOnlyMetrics: --metrics serves /metrics and nothing
// else (no /status, /audit, /reload), with the main API off.
func TestMetricsListenerOnlyMetrics(t *testing.T) {
	c := newTestController(t, httpauthDemoBlueprint(t), Options{HTTPToken: testToken})
	c.opts.Metrics = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ofWaitFor(t, 10*time.Second, "metrics listener", func() bool { return c.MetricsAddr() != nil })
	base := "http://" + c.MetricsAddr().String()
	if code, body := httpauthDo(t, base, http.MethodGet, "/metrics", "", nil); code != http.StatusOK || !strings.Contains(body, "vpcflow_") {
		t.Errorf("GET /metrics on --metrics: %d", code)
	}
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/status"}, {http.MethodGet, "/audit"}, {http.MethodPost, "/reload"},
		{http.MethodPost, "/audit?repair=1"}, {http.MethodGet, "/healthz"}, {http.MethodGet, "/"},
	} {
		if code, _ := httpauthDo(t, base, r.method, r.path, testToken, nil); code != http.StatusNotFound {
			t.Errorf("%s %s on --metrics: %d, want 404", r.method, r.path, code)
		}
	}
	if _, h := c.Addrs(); h != nil {
		t.Errorf("--http off, but an API listener at %v", h)
	}
}

func httpauthDemoBlueprint(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGETAuditDoesNotRepairOVS: on a real ovs-vswitchd, a flow added and
// one deleted behind the controller's back are reported by GET /audit and
// stay as they are (no flow-mod is sent, however often it is asked); POST
// /audit?repair=1 with the token repairs them.
func TestGETAuditDoesNotRepairOVS(t *testing.T) {
	r := ofStartReloadLab(t, time.Hour)
	st := r.waitRev(1)
	r.c.opts.HTTPToken = testToken
	srv := httptest.NewServer(r.c.httpServer().Handler)
	defer srv.Close()
	mods := st.FlowModsSent
	r.lab.run("ovs-ofctl", "-O", "OpenFlow13", "add-flow", r.br, "table=70,priority=500,reg0=0x1389,actions=drop")
	r.lab.run("ovs-ofctl", "-O", "OpenFlow13", "del-flows", r.br, "--strict", "table=30,priority=100,in_port=vnet0")
	audit := func(method, path, token string) AuditReport {
		code, body := httpauthDo(t, srv.URL, method, path, token, nil)
		var rep AuditReport
		if code != http.StatusOK || json.Unmarshal([]byte(body), &rep) != nil || len(rep.Bridges) != 1 {
			t.Fatalf("%s %s: %d %s", method, path, code, body)
		}
		return rep
	}
	// Observation window: the drift stays, nothing is written.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for n := 0; n < 3 || time.Now().Before(deadline); n++ {
		rep := audit(http.MethodGet, "/audit?host=kvm1", "")
		b := rep.Bridges[0]
		if !b.Audited || !b.Drift || len(b.Extra) != 1 || len(b.Missing) != 1 || rep.RepairRequested {
			t.Fatalf("GET /audit #%d after tampering: audited %v drift %v extra %d missing %d", n, b.Audited, b.Drift, len(b.Extra), len(b.Missing))
		}
		if got := r.bridge().FlowModsSent; got != mods {
			t.Fatalf("GET /audit #%d: %d flow-mods sent (was %d): a read repaired", n, got, mods)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := r.lab.run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", r.br, "table=70"); !strings.Contains(out, "priority=500") {
		t.Fatalf("the foreign flow is gone after GET /audit:\n%s", out)
	}
	// Unauthenticated repair: refused, nothing written.
	if code, _ := httpauthDo(t, srv.URL, http.MethodPost, "/audit?repair=1", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("POST /audit?repair=1 without the token: %d", code)
	}
	if rep := audit(http.MethodPost, "/audit?repair=1&host=kvm1", testToken); !rep.RepairRequested || !rep.Bridges[0].Drift {
		t.Fatalf("POST /audit?repair=1: %+v", rep)
	}
	// The status counts the repair's flow-mods after its read-back, a moment
	// after the switch's table is already in sync: wait for both.
	ofWaitFor(t, 30*time.Second, "drift repaired after POST /audit?repair=1, with its flow-mods counted", func() bool {
		rep := r.c.Audit(context.Background(), "kvm1")
		return rep.InSync && r.bridge().FlowModsSent > mods
	})
	r.audit("after the repair")
}
