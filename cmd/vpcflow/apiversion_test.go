package main

import (
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vpcflow/vpcflow/controller"
)

// The CLI reads servers of API versions APIVersionMin..APIVersion (and a
// server without the header, an older vpcflow: version 1); anything else
// is refused with an error naming the server's version, the range and the
// fix, and status/audit exit 2.
func TestCLIChecksAPIVersion(t *testing.T) {
	for _, tc := range []struct {
		header string
		ok     bool
	}{
		{"", true},
		{strconv.Itoa(controller.APIVersion), true},
		{strconv.Itoa(controller.APIVersion + 1), false},
		{"0", false},
		{"two", false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.header != "" {
				w.Header().Set(controller.APIVersionHeader, tc.header)
			}
			if r.URL.Path == "/audit" {
				_ = json.NewEncoder(w).Encode(controller.AuditReport{Complete: true, InSync: true})
				return
			}
			_ = json.NewEncoder(w).Encode(controller.Status{APIVersion: 1, Revision: 1})
		}))
		_, err := fetchStatus(srv.URL, addAPIClientFlags(flag.NewFlagSet("t", flag.ContinueOnError)))
		if tc.ok != (err == nil) {
			t.Errorf("header %q: fetchStatus error %v, want ok=%v", tc.header, err, tc.ok)
		}
		if !tc.ok && tc.header == strconv.Itoa(controller.APIVersion+1) {
			for _, want := range []string{srv.URL, "API version " + tc.header, "reads API versions 1..1", "vpcflow version", "docs/upgrade.md"} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v lacks %q", err, want)
				}
			}
		}
		wantRC := 0
		if !tc.ok {
			wantRC = 2
		}
		devnull, _ := os.Open(os.DevNull)
		oldErr := os.Stderr
		os.Stderr = devnull
		_, rc := captureStdout(t, func() int { return runStatus([]string{"--controller", srv.URL}) })
		_, arc := captureStdout(t, func() int { return runAudit([]string{"--controller", srv.URL}) })
		os.Stderr = oldErr
		devnull.Close()
		if rc != wantRC || arc != wantRC {
			t.Errorf("header %q: status exit %d, audit exit %d, want %d", tc.header, rc, arc, wantRC)
		}
		srv.Close()
	}
}

// `vpcflow status` warns when the replica refused gossip of an
// incompatible protocol version, and says nothing otherwise.
func TestStatusShowsProtocolRefusals(t *testing.T) {
	for _, refused := range []uint64{0, 3} {
		st := controller.Status{Revision: 1, Cluster: &controller.ClusterStatus{Self: "a:6653", Quorum: true, Protocol: 2, ProtocolReadsFrom: 1,
			ProtocolRefused: controller.ProtocolRefused{Members: refused}}}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(st)
		}))
		out, _ := captureStdout(t, func() int { return runStatus([]string{"--controller", srv.URL}) })
		srv.Close()
		has := strings.Contains(out, "INCOMPATIBLE REPLICA: this replica (protocol 2, reads 1..2) refused 3 announcements")
		if has != (refused > 0) {
			t.Errorf("refused %d: warning shown %v:\n%s", refused, has, out)
		}
	}
}
