package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPKISignCLI: `pki sign` needs --type, refuses path names (nothing is
// written outside --dir) and refuses to overwrite an issued certificate.
func TestPKISignCLI(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "pki")
	if code := runPKI([]string{"init", "--dir", dir}); code != 0 {
		t.Fatalf("init: exit %d", code)
	}
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"sign", "--dir", dir, "--name", "kvm1"}, 2},                                 // no --type
		{[]string{"sign", "--dir", dir, "--type", "admin", "--name", "kvm1"}, 2},              // bad --type
		{[]string{"sign", "--dir", dir, "--type", "switch", "--name", "../evil"}, 2},          // path
		{[]string{"sign", "--dir", dir, "--type", "controller", "--name", "a/../../evil"}, 2}, // path
		{[]string{"sign", "--dir", dir, "--type", "switch", "--name", "sub/kvm1"}, 2},         // a / alone
		{[]string{"sign", "--dir", dir, "--type", "switch", "--name", `sub\kvm1`}, 2},         // a backslash
		{[]string{"sign", "--dir", dir, "--type", "switch", "--name", "/etc/kvm1"}, 2},        // absolute
		{[]string{"sign", "--dir", dir, "--type", "switch", "--name", ".kvm1"}, 2},            // hidden file
		{[]string{"sign", "--dir", dir, "--type", "switch", "--name", "kvm1"}, 0},             // ok
		{[]string{"sign", "--dir", dir, "--type", "switch", "--name", "kvm1"}, 1},             // exists
		{[]string{"sign", "--dir", dir, "--type", "controller", "--name", "kvm1"}, 1},         // exists
		{[]string{"sign", "--dir", dir, "--type", "controller", "--name", "ctl-1", "--ip", "192.0.2.250"}, 0},
	} {
		if got := runPKI(c.args); got != c.want {
			t.Errorf("vpcflow pki %v: exit %d, want %d", c.args, got, c.want)
		}
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 {
		t.Fatalf("files written outside --dir: %v", ents)
	}
}
