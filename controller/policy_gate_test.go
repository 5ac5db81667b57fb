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

// TestPolicyKeysRefusedUntilEnforced: while the compiler does not enforce
// network ACLs and security groups, a blueprint using them is refused at
// start and on reload (the last good policy stays): never accepted and
// silently run without its policy.
func TestPolicyKeysRefusedUntilEnforced(t *testing.T) {
	demo, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withPolicy := strings.Replace(string(demo), "revision: 1", "revision: 2", 1) +
		"security_groups:\n  - {name: sg, ingress: [{protocol: tcp, ports: 22, cidrs: [10.0.0.0/8]}]}\n"
	dir := t.TempDir()
	log := logrus.New()
	log.SetOutput(io.Discard)
	opts := func(p string) Options {
		return Options{BlueprintPath: p, Listen: "tcp:127.0.0.1:0", HTTP: "off", ReloadPoll: time.Hour, DriftInterval: time.Hour, Log: log}
	}

	bad := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(bad, []byte(withPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(opts(bad)); err == nil || !strings.Contains(err.Error(), "not enforced yet") {
		t.Fatalf("New with a policy blueprint: err = %v, want a refusal saying not enforced yet", err)
	}

	good := filepath.Join(dir, "blueprint.yaml")
	if err := os.WriteFile(good, demo, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := New(opts(good))
	if err != nil {
		t.Fatal(err)
	}
	hash := c.policy().hash
	if err := os.WriteFile(good, []byte(withPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload("test"); err == nil || !strings.Contains(err.Error(), "not enforced yet") {
		t.Fatalf("Reload to a policy blueprint: err = %v, want a refusal saying not enforced yet", err)
	}
	if c.policy().hash != hash {
		t.Errorf("the refused blueprint replaced the enforced one")
	}
}
