package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/vpcflow/vpcflow/buildinfo"
	"github.com/vpcflow/vpcflow/controller"
)

// captureStdout runs f with os.Stdout redirected and returns what it wrote.
func captureStdout(t *testing.T, f func() int) (string, int) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	rc := f()
	os.Stdout = old
	w.Close()
	return string(<-done), rc
}

func TestVersionCommand(t *testing.T) {
	out, rc := captureStdout(t, func() int { return runVersion([]string{"-o", "json"}) })
	var doc map[string]any
	if rc != 0 || json.Unmarshal([]byte(out), &doc) != nil {
		t.Fatalf("version -o json: exit %d\n%s", rc, out)
	}
	for _, k := range []string{"version", "commit", "date", "go_version", "platform", "cgo", "openflow", "ovsdb", "encapsulations"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("version -o json: no %q in %s", k, out)
		}
	}
	out, rc = captureStdout(t, func() int { return runVersion(nil) })
	if rc != 0 || !strings.HasPrefix(out, "vpcflow "+buildinfo.Get().Version+"\n") || !strings.Contains(out, "\nopenflow:  1.3: ") {
		t.Errorf("version: exit %d\n%s", rc, out)
	}
	for _, c := range []struct {
		args []string
		rc   int
	}{{[]string{"-o", "yaml"}, 2}, {[]string{"extra"}, 2}, {[]string{"-h"}, 0}, {[]string{"--output", "json"}, 0}} {
		if _, rc := captureStdout(t, func() int { return runVersion(c.args) }); rc != c.rc {
			t.Errorf("version %v: exit %d, want %d", c.args, rc, c.rc)
		}
	}
}

// `vpcflow status` shows each member's gossiped version; a member of an
// older vpcflow (no version gossiped) shows "-".
func TestStatusMemberVersion(t *testing.T) {
	st := controller.Status{Version: "v1.5.0", Revision: 1, Blueprint: "bp.yaml", Cluster: &controller.ClusterStatus{
		Self: "192.0.2.250:6653", Quorum: true, Members: []controller.ClusterMember{
			{Name: "192.0.2.250:6653", Addr: "192.0.2.250:7946", Self: true, Revision: 1, Version: "v1.5.0"},
			{Name: "192.0.2.251:6653", Addr: "192.0.2.251:7946", Revision: 1},
		}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	out, rc := captureStdout(t, func() int { return runStatus([]string{"--controller", srv.URL}) })
	if rc != 0 {
		t.Fatalf("status: exit %d\n%s", rc, out)
	}
	lines := strings.Split(out, "\n")
	find := func(prefix string) []string {
		for _, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), prefix) {
				return strings.Fields(l)
			}
		}
		t.Fatalf("no line %q in\n%s", prefix, out)
		return nil
	}
	if h := find("MEMBER"); len(h) < 3 || h[2] != "VERSION" {
		t.Fatalf("member header %v: want VERSION third\n%s", h, out)
	}
	if f := find("192.0.2.250:6653 (self)"); len(f) < 4 || f[3] != "v1.5.0" {
		t.Errorf("self member %v: want version v1.5.0\n%s", f, out)
	}
	if f := find("192.0.2.251:6653"); len(f) < 3 || f[2] != "-" {
		t.Errorf("older member %v: want version -\n%s", f, out)
	}
}
