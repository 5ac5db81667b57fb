package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The CLI golden test runs this test binary as vpcflow (TestMain below)
// with -h for every command and subcommand and with a few bad invocations,
// and compares the exit code, stdout and stderr with
// testdata/cli/NAME.golden. A changed help text or exit code fails it;
// `go test ./cmd/vpcflow -run TestCLIGolden -update` rewrites the files
// (review the diff: it is the CLI's contract).

var update = flag.Bool("update", false, "rewrite testdata/cli/*.golden")

// TestMain runs main's command line instead of the tests when the golden
// test executes this binary with VPCFLOW_CLI_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("VPCFLOW_CLI_MAIN") == "1" {
		os.Exit(runMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

type cliCase struct {
	name string
	args []string
}

func cliCases() []cliCase {
	cases := []cliCase{
		{"no-args", nil},
		{"h", []string{"-h"}},
		{"help-flag", []string{"--help"}},
		{"help", []string{"help"}},
		{"help-validate", []string{"help", "validate"}},
		{"help-unknown", []string{"help", "frobnicate"}},
		{"unknown-command", []string{"audti"}},
		{"unknown-command-far", []string{"frobnicate"}},
		{"unknown-flag", []string{"validate", "--fromat", "json", "x.yaml"}},
		{"flag-needs-value", []string{"compile", "--blueprint"}},
		{"bad-output", []string{"audit", "-o", "xml"}},
		{"unexpected-argument", []string{"compile", "kvm1"}},
		{"unknown-subcommand", []string{"host", "aply"}},
		{"pki-unknown-subcommand", []string{"pki", "sing"}},
		{"policy-unknown-subcommand", []string{"policy", "lnt"}},
		{"completion-no-shell", []string{"completion"}},
		{"completion-unknown-shell", []string{"completion", "fish"}},
		{"validate-no-file", []string{"validate"}},
		{"validate-missing-file", []string{"validate", "testdata/cli/no-such-file.yaml"}},
		{"validate-syntax-error", []string{"validate", "testdata/cli/syntax-error.yaml"}},
		{"validate-ok-flags-after", []string{"validate", "../../examples/demo/blueprint.yaml", "-o", "yaml"}},
		{"compile-missing-flags", []string{"compile", "--bare"}},
		{"status-unreachable", []string{"status", "--controller", "http://127.0.0.1:1"}},
		{"audit-unreachable", []string{"audit", "--controller", "http://127.0.0.1:1", "-o", "json"}},
		{"version-bad-output", []string{"version", "-o", "xml"}},
		{"pki-sign-slash-name", []string{"pki", "sign", "--dir", "testdata/cli/no-pki", "--type", "switch", "--name", "sub/kvm1"}},
	}
	for _, n := range commandNames() {
		if subs, ok := subcommands[n]; ok && n != "completion" {
			cases = append(cases, cliCase{n + "-h", []string{n, "-h"}})
			for _, s := range subs {
				cases = append(cases, cliCase{n + "-" + s + "-h", []string{n, s, "-h"}})
			}
			continue
		}
		cases = append(cases, cliCase{n + "-h", []string{n, "-h"}}, cliCase{n + "-help", []string{n, "--help"}})
	}
	return cases
}

// unstable hides what differs between machines and runs (the test binary
// is no release build: the version lines stay out of the golden files).
var unstable = regexp.MustCompile(`dial tcp 127\.0\.0\.1:1: connect: [^(]*`)

func TestCLIGolden(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range cliCases() {
		if seen[c.name] {
			t.Fatalf("two cases named %s", c.name)
		}
		seen[c.name] = true
		cmd := exec.Command(self, c.args...)
		cmd.Env = append(os.Environ(), "VPCFLOW_CLI_MAIN=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code := 0
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("%s: %v", c.name, err)
			}
			code = ee.ExitCode()
		}
		got := fmt.Sprintf("$ vpcflow %s\nexit: %d\n--- stdout\n%s--- stderr\n%s", strings.Join(c.args, " "), code,
			unstable.ReplaceAllString(stdout.String(), "dial tcp 127.0.0.1:1: connect: "), unstable.ReplaceAllString(stderr.String(), "dial tcp 127.0.0.1:1: connect: "))
		file := filepath.Join("testdata", "cli", c.name+".golden")
		if *update {
			if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%s: %v (run go test ./cmd/vpcflow -run TestCLIGolden -update)", c.name, err)
			continue
		}
		if got != string(want) {
			t.Errorf("%s: vpcflow %q differs from %s (if intended: go test ./cmd/vpcflow -run TestCLIGolden -update, and review the diff):\n--- got\n%s--- want\n%s", c.name, c.args, file, got, want)
		}
	}
	// Help exits 0 everywhere.
	for _, c := range cliCases() {
		last := ""
		if len(c.args) > 0 {
			last = c.args[len(c.args)-1]
		}
		if (last == "-h" || last == "--help" || c.name == "help" || c.name == "help-validate") && !strings.Contains(mustRead(t, c.name), "\nexit: 0\n") {
			t.Errorf("%s: help does not exit 0", c.name)
		}
	}
	if !*update { // no stale golden files
		files, _ := filepath.Glob(filepath.Join("testdata", "cli", "*.golden"))
		var stale []string
		for _, f := range files {
			if !seen[strings.TrimSuffix(filepath.Base(f), ".golden")] {
				stale = append(stale, f)
			}
		}
		sort.Strings(stale)
		if len(stale) > 0 {
			t.Errorf("golden files without a case (remove them): %v", stale)
		}
	}
}

func mustRead(t *testing.T, name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", "cli", name+".golden"))
	if err != nil {
		return ""
	}
	return string(b)
}
