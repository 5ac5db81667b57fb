package flows

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestYAMLSyntaxPositions: a YAML syntax error names file:line:column of
// its cause and quotes the line, in blueprints and host files.
func TestYAMLSyntaxPositions(t *testing.T) {
	for _, c := range []struct {
		doc  string
		want string // the whole first error
	}{
		{"version: 1\nhosts:\n  - name: kvm1\n    tunnel_ip: [1.2\n  foo: bar\n",
			`bp.yaml:4:16: invalid YAML: did not find expected ',' or ']': the [ list that starts here is not closed; line 4 reads "    tunnel_ip: [1.2"`},
		{"version: 1\nhosts: {a: 1\nvpcs: []\n",
			`bp.yaml:2:8: invalid YAML: did not find expected ',' or '}': the { mapping that starts here is not closed; line 2 reads "hosts: {a: 1"`},
		{"version: 1\n\thosts: 3\n",
			`bp.yaml:2:1: invalid YAML: found a tab character that violates indentation: indent with spaces, not tabs; line 2 reads "\thosts: 3"`},
		{"version: 1\nrevision: 2: 3\n",
			`bp.yaml:2:12: invalid YAML: mapping values are not allowed in this context: a value containing ": " must be quoted; line 2 reads "revision: 2: 3"`},
		{"version: 1\nhosts:\n  - name: \"kvm1\n",
			`bp.yaml:3:11: invalid YAML: found unexpected end of stream: the quoted string that starts here is not closed; line 3 reads "  - name: \"kvm1"`},
		{"version: 1\nname: @foo\n",
			`bp.yaml:2:7: invalid YAML: found character that cannot start any token: quote the value; line 2 reads "name: @foo"`},
		{"version: 1\nhosts:\n  - name: kvm1\n   uplink: eth0\n",
			`bp.yaml:3:3: invalid YAML: did not find expected '-' indicator: an entry of the block that starts here is indented differently from its siblings (or a line below is not a key: value); line 3 reads "  - name: kvm1"`},
		{"version: 1\nmanagement: {cidrs: [" + strings.Repeat("192.0.2.0/24, ", 20) + "x]  # " + strings.Repeat("comment ", 10) + "\n",
			`bp.yaml:2:13: invalid YAML: did not find expected ',' or '}': the { mapping that starts here is not closed; line 2 reads "management: {cidrs: [192.0.2.0/24, 192.0.2.0/24, 192.0.2.0/2"...`},
	} {
		_, err := Parse("bp.yaml", []byte(c.doc))
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Errors) == 0 {
			t.Errorf("%q: %v", c.doc, err)
			continue
		}
		if got := ve.Errors[0].Error(); got != c.want {
			t.Errorf("%q:\n got: %s\nwant: %s", c.doc, got, c.want)
		}
	}
	_, err := ParseHostConfig("host.yaml", []byte("kind: vpcflow.host/v1\nhost: {name: kvm1\n"))
	if err == nil || !strings.Contains(err.Error(), `host.yaml:2:7: invalid YAML: did not find expected ',' or '}': the { mapping that starts here is not closed; line 2 reads "host: {name: kvm1"`) {
		t.Errorf("host file: %v", err)
	}
}

// TestBlueprintSizeLimit: a file over MaxBlueprintBytes is refused before
// parsing, by Load (which reads at most one byte more) and by Parse.
func TestBlueprintSizeLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// Valid YAML all the way (a comment), so only the size can refuse it.
	line := []byte("#" + strings.Repeat("x", 1022) + "\n")
	for n := 0; n <= MaxBlueprintBytes; n += len(line) {
		if _, err := f.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	for name, load := range map[string]func(string) (*Blueprint, error){"Load": Load, "LoadForLint": LoadForLint} {
		_, err := load(path)
		var ve *ValidationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), "huge.yaml: blueprint is larger than 64 MiB") {
			t.Errorf("%s: %v", name, err)
		}
	}
	data, err := ReadFile(path)
	if err != nil || len(data) != MaxBlueprintBytes+1 {
		t.Errorf("ReadFile read %d bytes (%v), want at most the limit + 1", len(data), err)
	}
	// At the limit a file is parsed (and here fails as empty).
	if _, err := Parse("big.yaml", data[:MaxBlueprintBytes]); err == nil || strings.Contains(err.Error(), "larger than") {
		t.Errorf("at the limit: %v", err)
	}
}
