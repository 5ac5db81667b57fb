package main

import (
	"testing"
)

// TestPolicyObserveFlags: a bad --state or --policy-metric-rules is a usage
// error (exit 2) before anything runs.
func TestPolicyObserveFlags(t *testing.T) {
	bp := "../../examples/demo/blueprint.yaml"
	if rc := runExplain([]string{"--blueprint", bp, "--from", "blue-web-1", "--to", "blue-web-2", "--state", "related"}); rc != explainUsage {
		t.Errorf("explain --state related: exit %d, want %d", rc, explainUsage)
	}
	if rc := runExplain([]string{"--blueprint", bp, "--from", "blue-web-1", "--to", "blue-web-2", "--state", "established"}); rc != explainDelivered {
		t.Errorf("explain --state established (no policy: the state does not matter): exit %d, want %d", rc, explainDelivered)
	}
	// (10001 first: were -1 accepted, the controller would start and run.)
	for _, n := range []string{"10001", "-1"} {
		if rc := runController([]string{"--blueprint", bp, "--http", "off", "--policy-metric-rules", n}); rc != 2 {
			t.Fatalf("controller --policy-metric-rules %s: exit %d, want 2", n, rc)
		}
	}
}
