package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updateConfig = flag.Bool("update-config", false, "rewrite packaging/etc/controller.yaml from vpcflow controller --print-config")

// packagedConfigArgs are the flags the packaged controller.yaml sets.
var packagedConfigArgs = []string{"--print-config", "--blueprint", "/etc/vpcflow/blueprint.yaml", "--listen", "tcp:127.0.0.1:6653", "--http", "127.0.0.1:9653"}

// cfgCaptureController runs `vpcflow controller ARGS` in-process and returns
// its exit code, stdout and stderr.
func cfgCaptureController(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	errf, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = out, errf
	code := func() int {
		defer func() { os.Stdout, os.Stderr = oldOut, oldErr }()
		return runController(args)
	}()
	out.Close()
	errf.Close()
	o, _ := os.ReadFile(out.Name())
	e, _ := os.ReadFile(errf.Name())
	return code, string(o), string(e)
}

func cfgWriteTemp(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestControllerConfigExample: the packaged /etc/vpcflow/controller.yaml
// is exactly what --print-config prints for the packaged settings, so it
// lists every flag (with its current usage and default) and cannot drift
// from them. go test ./cmd/vpcflow -run TestControllerConfigExample
// -update-config rewrites it.
func TestControllerConfigExample(t *testing.T) {
	code, out, stderr := cfgCaptureController(t, packagedConfigArgs...)
	if code != 0 {
		t.Fatalf("--print-config: exit %d\n%s", code, stderr)
	}
	path := "../../packaging/etc/controller.yaml"
	if *updateConfig {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != out {
		t.Fatalf("%s differs from `vpcflow controller %s`: a flag changed; run go test ./cmd/vpcflow -run TestControllerConfigExample -update-config", path, strings.Join(packagedConfigArgs, " "))
	}
	// The example loads as it is and gives what it says.
	code, again, stderr := cfgCaptureController(t, "--config", path, "--print-config")
	if code != 0 || again != out {
		t.Fatalf("--config %s --print-config: exit %d\n%s\n%s", path, code, stderr, again)
	}
}

var cfgCommentedKey = regexp.MustCompile(`(?m)^#([a-z0-9-]+): `)

// TestConfigEveryFlagAccepted: every controller flag is a key of the
// file: the file with every key of --print-config uncommented (each flag
// at its default) loads, and --print-config then shows every key as set,
// with the same values.
func TestConfigEveryFlagAccepted(t *testing.T) {
	code, defaults, stderr := cfgCaptureController(t, "--print-config")
	if code != 0 {
		t.Fatalf("--print-config: exit %d %s", code, stderr)
	}
	keys := cfgCommentedKey.FindAllStringSubmatch(defaults, -1)
	if len(keys) < 40 {
		t.Fatalf("--print-config lists %d keys; the controller has more flags than that:\n%s", len(keys), defaults)
	}
	for _, must := range []string{"listen", "http", "blueprint", "cluster-bind", "drift-interval", "http-token-file", "metrics", "cloudstack-url", "log-level"} {
		if !strings.Contains(defaults, "\n#"+must+": ") {
			t.Errorf("--print-config has no key %q", must)
		}
	}
	if strings.Contains(defaults, "\n#config: ") || strings.Contains(defaults, "\n#print-config: ") {
		t.Errorf("--config/--print-config listed as keys")
	}
	all := cfgCommentedKey.ReplaceAllString(defaults, "$1: ")
	p := cfgWriteTemp(t, "all.yaml", all)
	code, out, stderr := cfgCaptureController(t, "--config", p, "--print-config")
	if code != 0 {
		t.Fatalf("every key at its default: exit %d\n%s", code, stderr)
	}
	if out != all {
		t.Errorf("every key set: --print-config differs from the file:\n%s", out)
	}
}

// TestConfigOverride: flags on the command line win over the file; keys
// the file sets apply; list keys take YAML sequences.
func TestConfigOverride(t *testing.T) {
	p := cfgWriteTemp(t, "c.yaml", "listen: tcp:192.0.2.250:6653\nhttp: 192.0.2.250:9653\ndrift-interval: 10s\ndrop-log: true\nmax-handshakes: 7\njoin: [192.0.2.251, \"192.0.2.252:7946\"]\n")
	code, out, stderr := cfgCaptureController(t, "--config", p, "--listen", "tcp:127.0.0.1:1", "--print-config")
	if code != 0 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	for _, want := range []string{"\nlisten: \"tcp:127.0.0.1:1\"\n", "\nhttp: \"192.0.2.250:9653\"\n", "\ndrift-interval: \"10s\"\n",
		"\ndrop-log: true\n", "\nmax-handshakes: 7\n", "\njoin: \"192.0.2.251,192.0.2.252:7946\"\n", "\n#log-level: \"info\"\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", strings.TrimSpace(want), out)
		}
	}
}

// TestConfigStrict: every kind of mistake stops the controller (exit 2)
// with FILE:LINE:COLUMN, the key and the fix.
func TestConfigStrict(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       []string
	}{
		{"unknown", "listen: tcp:127.0.0.1:6653\nlsten: x\n", []string{":2:1: unknown key \"lsten\"", "did you mean \"listen\""}},
		{"dashes", "--listen: x\n", []string{":1:1:", "without dashes (listen:)"}},
		{"duplicate", "http: off\nhttp: 127.0.0.1:1\n", []string{":2:1: key \"http\" given twice (first on line 1)"}},
		{"bool", "drop-log: yes\n", []string{":1:11: key \"drop-log\": want true or false"}},
		{"int", "max-handshakes: \"12\"\n", []string{":1:17: key \"max-handshakes\": want a whole number"}},
		{"int range", "max-handshakes: 99999999999999999999\n", []string{":1:17: key \"max-handshakes\""}},
		{"duration unit", "drift-interval: 30\n", []string{":1:17: key \"drift-interval\": 30 has no unit", "\"30s\""}},
		{"duration bad", "drift-interval: 30 seconds\n", []string{":1:17: key \"drift-interval\"", "unknown unit", "Go duration"}},
		{"string not number", "listen: 6653\n", []string{":1:9: key \"listen\": want a string, not a number: quote it (\"6653\")"}},
		{"null", "blueprint:\n", []string{":1:11: key \"blueprint\": no value"}},
		{"mapping value", "http:\n  addr: x\n", []string{":2:3: key \"http\": want a string, not a mapping"}},
		{"list not list flag", "listen: [a, b]\n", []string{":1:9: key \"listen\": want a string, not a list"}},
		{"not a mapping", "- listen\n", []string{":1:1: the file must be a mapping"}},
		{"config key", "config: other.yaml\n", []string{":1:1: key \"config\" is a command-line flag only"}},
		{"syntax", "listen: [\n", []string{"invalid YAML"}},
		{"two docs", "http: off\n---\nhttp: on\n", []string{"more than one YAML document"}},
	} {
		p := cfgWriteTemp(t, c.name+".yaml", c.text)
		code, _, stderr := cfgCaptureController(t, "--config", p, "--print-config")
		if code != 2 {
			t.Errorf("%s: exit %d, want 2 (%s)", c.name, code, stderr)
		}
		for _, w := range append([]string{"--config: " + p}, c.want...) {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr %q lacks %q", c.name, stderr, w)
			}
		}
	}
	// An empty file (or only comments) sets nothing.
	p := cfgWriteTemp(t, "empty.yaml", "# nothing yet\n")
	if code, out, stderr := cfgCaptureController(t, "--config", p, "--print-config"); code != 0 || !strings.Contains(out, "\n#listen: ") {
		t.Errorf("comment-only file: exit %d %s", code, stderr)
	}
	if code, _, stderr := cfgCaptureController(t, "--config", filepath.Join(t.TempDir(), "missing.yaml")); code != 2 || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing file: exit %d %s", code, stderr)
	}
	big := cfgWriteTemp(t, "big.yaml", "# "+strings.Repeat("x", maxConfigFile)+"\n")
	if code, _, stderr := cfgCaptureController(t, "--config", big); code != 2 || !strings.Contains(stderr, "larger than") {
		t.Errorf("big file: exit %d %s", code, stderr)
	}
}

// TestControllerRefusesReadableTokenFile: the controller does not start
// when --http-token-file is readable by others, and names the fix.
func TestControllerRefusesReadableTokenFile(t *testing.T) {
	tok := cfgWriteTemp(t, "token", "0123456789abcdef0123\n")
	if err := os.Chmod(tok, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := cfgWriteTemp(t, "c.yaml", "blueprint: ../../examples/demo/blueprint.yaml\nlisten: tcp:127.0.0.1:0\nhttp: off\nhttp-token-file: "+tok+"\n")
	code, _, stderr := cfgCaptureController(t, "--config", cfg)
	if code != 2 || !strings.Contains(stderr, "--http-token-file") || !strings.Contains(stderr, "chmod 0640") {
		t.Fatalf("world-readable token file: exit %d, %q", code, stderr)
	}
	if err := os.Chmod(tok, 0o640); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = cfgCaptureController(t, "--config", cfg, "--http-client-ca", tok)
	if code != 2 || !strings.Contains(stderr, "--http-tls-cert") {
		t.Fatalf("--http-client-ca without --http-tls-cert: exit %d, %q", code, stderr)
	}
}
