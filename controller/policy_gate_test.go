package controller

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestPolicyBlueprintAccepted: a blueprint with network ACLs and security
// groups runs (the compiler enforces them, flows/policy_compile.go), and a
// reload to an invalid policy is refused with the last good one kept.
func TestPolicyBlueprintAccepted(t *testing.T) {
	demo, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withPolicy := strings.Replace(string(demo), "revision: 1", "revision: 2", 1) +
		"security_groups:\n  - {name: sg, ingress: [{protocol: tcp, ports: 22, cidrs: [10.0.0.0/8]}]}\n"
	badPolicy := strings.Replace(string(demo), "revision: 1", "revision: 3", 1) +
		"security_groups:\n  - {name: sg, ingress: [{protocol: tcp, ports: 22, groups: [nope]}]}\n"
	dir := t.TempDir()
	log := logrus.New()
	log.SetOutput(io.Discard)
	opts := func(p string) Options {
		return Options{BlueprintPath: p, Listen: "tcp:127.0.0.1:0", HTTP: "off", ReloadPoll: time.Hour, DriftInterval: time.Hour, Log: log}
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(withPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := New(opts(path))
	if err != nil {
		t.Fatalf("New with a policy blueprint: %v", err)
	}
	hash := c.policy().hash
	if err := os.WriteFile(path, []byte(badPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload("test"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Reload to an invalid policy: err = %v, want a refusal naming the unknown group", err)
	}
	if c.policy().hash != hash {
		t.Errorf("the refused blueprint replaced the enforced one")
	}
}
