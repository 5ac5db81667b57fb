package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vpcflow/vpcflow/controller"
)

// TestStatusExitEveryFormat: status's exit code follows the finding, not
// the output format: 1 when a bridge is neither converged nor on standby
// (or is fenced), 0 otherwise, for the table, -o json and -o yaml alike.
func TestStatusExitEveryFormat(t *testing.T) {
	for _, c := range []struct {
		name string
		br   controller.BridgeStatus
		want int
	}{
		{"converged", controller.BridgeStatus{DatapathID: "a1", Known: true, Connected: true, Converged: true}, 0},
		{"standby", controller.BridgeStatus{DatapathID: "a1", Known: true, Connected: true, Standby: "owned by r2"}, 0},
		{"not converged", controller.BridgeStatus{DatapathID: "a1", Known: true, Connected: true}, 1},
		{"not connected", controller.BridgeStatus{DatapathID: "a1", Known: true}, 1},
		{"fenced", controller.BridgeStatus{DatapathID: "a1", Known: true, Connected: true, Converged: true, Fenced: true}, 1},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(controller.APIVersionHeader, "1")
			_ = json.NewEncoder(w).Encode(controller.Status{APIVersion: 1, Revision: 1, Bridges: []controller.BridgeStatus{c.br}})
		}))
		for _, format := range []string{"table", "json", "yaml"} {
			if got := runStatus([]string{"--controller", srv.URL, "-o", format}); got != c.want {
				t.Errorf("%s, -o %s: exit %d, want %d", c.name, format, got, c.want)
			}
		}
		srv.Close()
	}
}
