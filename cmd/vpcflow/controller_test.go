package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadClusterKey(t *testing.T) {
	k1, k2 := []byte("0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210")
	b64 := base64.StdEncoding.EncodeToString
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	raw := string([]byte{0xff, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, '\n'})
	for _, c := range []struct {
		name, content string
		primary       []byte
		accept        int
		err           string
	}{
		{"raw", raw, []byte(raw), 0, ""},
		{"one", b64(k1) + "\n", k1, 0, ""},
		{"rotation", "# new key first\n" + b64(k2) + "\n\n" + b64(k1) + "\n", k2, 1, ""},
		{"bad", b64(k1) + "\nnot a key\n", nil, 0, "bad:2: want a base64"},
		{"empty", "\n# nothing\n", nil, 0, "no key"},
	} {
		p, acc, err := readClusterKey(write(c.name, c.content))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || string(p) != string(c.primary) || len(acc) != c.accept {
			t.Errorf("%s: got %q + %d accepted, %v; want %q + %d", c.name, p, len(acc), err, c.primary, c.accept)
		}
	}
}

// TestReplicaModeNeedsKey: replica mode without --cluster-key-file refuses
// to start (exit 2) unless --cluster-insecure is given.
func TestReplicaModeNeedsKey(t *testing.T) {
	bp := "../../examples/demo/blueprint.yaml"
	args := []string{"--blueprint", bp, "--listen", "tcp:192.0.2.250:6653", "--http", "off", "--cluster-bind", "127.0.0.1:0"}
	if rc := runController(args); rc != 2 {
		t.Fatalf("replica mode without a key: exit %d, want 2", rc)
	}
	// A name outside controllers: is refused too, before anything starts.
	if rc := runController(append(args, "--cluster-insecure", "--cluster-name", "192.0.2.99:6653")); rc != 2 {
		t.Fatalf("replica name outside controllers: exit %d, want 2", rc)
	}
}
