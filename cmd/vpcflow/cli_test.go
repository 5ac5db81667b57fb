package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func testFlagSet(name string, buf *bytes.Buffer) (*flag.FlagSet, *string, *bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(buf)
	s := fs.String("format", "table", "output format")
	b := fs.Bool("strict", false, "strict")
	return fs, s, b
}

// TestParseFlagsInterleaved: flags before and after positional arguments,
// -flag and --flag, "--" ends the flags, a flag whose value is "--".
func TestParseFlagsInterleaved(t *testing.T) {
	for _, c := range []struct {
		args   []string
		format string
		strict bool
		pos    []string
	}{
		{[]string{"a.yaml", "--format", "json", "--strict"}, "json", true, []string{"a.yaml"}},
		{[]string{"-strict", "a.yaml", "-format=yaml", "b.yaml"}, "yaml", true, []string{"a.yaml", "b.yaml"}},
		{[]string{"a.yaml", "--", "--strict", "-x"}, "table", false, []string{"a.yaml", "--strict", "-x"}},
		{[]string{"--format", "--", "a.yaml", "--strict"}, "--", true, []string{"a.yaml"}},
		{[]string{"--strict", "--", "a.yaml"}, "table", true, []string{"a.yaml"}},
		{nil, "table", false, nil},
	} {
		var buf bytes.Buffer
		fs, format, strict := testFlagSet("validate", &buf)
		code, ok := parseFlags(fs, c.args)
		if !ok || code != 0 {
			t.Errorf("%q: exit %d ok %v: %s", c.args, code, ok, buf.String())
			continue
		}
		if *format != c.format || *strict != c.strict || !slices.Equal(fs.Args(), c.pos) {
			t.Errorf("%q: format %q strict %v args %q, want %q %v %q", c.args, *format, *strict, fs.Args(), c.format, c.strict, c.pos)
		}
	}
}

// TestParseFlagsErrors: help exits 0 and prints the usage; an unknown flag
// exits 2 naming the closest flag; positional arguments are refused by
// commands that take none.
func TestParseFlagsErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"validate", []string{"-h"}, 0, "-format string"},
		{"validate", []string{"a.yaml", "--help"}, 0, "-strict"},
		{"validate", []string{"--fromat", "json"}, 2, "vpcflow validate: unknown flag --fromat: did you mean --format? (vpcflow validate -h lists the flags)"},
		{"validate", []string{"--strikt"}, 2, "did you mean --strict?"},
		{"validate", []string{"--zzzzzz"}, 2, "unknown flag --zzzzzz (vpcflow validate -h"},
		{"validate", []string{"a.yaml", "--format"}, 2, "flag --format needs a value"},
		{"validate", []string{"--strict=maybe"}, 2, "invalid boolean value"},
		{"compile", []string{"kvm1"}, 2, `vpcflow compile: unexpected argument "kvm1": all options are flags`},
	} {
		var buf bytes.Buffer
		fs, _, _ := testFlagSet(c.name, &buf)
		code, ok := parseFlags(fs, c.args)
		if ok || code != c.code || !strings.Contains(buf.String(), c.want) {
			t.Errorf("%s %q: exit %d ok %v, want exit %d and %q in:\n%s", c.name, c.args, code, ok, c.code, c.want, buf.String())
		}
	}
}

func TestSuggest(t *testing.T) {
	cmds := []string{"audit", "compile", "controller", "status", "validate", "version", "explain"}
	for in, want := range map[string]string{
		"audti": "audit", "stat": "status", "valdate": "validate", "versoin": "version",
		"explian": "explain", "contr": "controller", "xyzzy": "", "s": "",
	} {
		if got := suggest(in, cmds); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOutputFlag: -o and --output set the format, the deprecated --format
// and --json aliases still work, an unknown format is a usage error.
func TestOutputFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
		code int
	}{
		{nil, "table", 0},
		{[]string{"-o", "json"}, "json", 0},
		{[]string{"--output=yaml"}, "yaml", 0},
		{[]string{"-o", "text"}, "table", 0},
		{[]string{"--format", "json"}, "json", 0},
		{[]string{"--json"}, "json", 0},
		{[]string{"--json=false"}, "table", 0},
		{[]string{"-o", "xml"}, "", 2},
	} {
		var buf bytes.Buffer
		fs := flag.NewFlagSet("audit", flag.ContinueOnError)
		fs.SetOutput(&buf)
		format := addOutputFlag(fs, "table", "format")
		addDeprecatedJSONFlag(fs, "json", format)
		code, ok := parseFlags(fs, c.args)
		if code != c.code || (ok && *format != c.want) {
			t.Errorf("%q: exit %d format %q, want exit %d format %q: %s", c.args, code, *format, c.code, c.want, buf.String())
		}
	}
	var buf bytes.Buffer
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(&buf)
	addOutputFlag(fs, "table", "format")
	fs.PrintDefaults()
	if !strings.Contains(buf.String(), "deprecated: use -o") || !strings.Contains(buf.String(), "-o format\n    \toutput format: table, json or yaml (default table)") {
		t.Errorf("help text:\n%s", buf.String())
	}
}

// TestWriteYAML: the YAML document has the JSON keys in the JSON order,
// in block style, with strings quoted only where YAML needs it.
func TestWriteYAML(t *testing.T) {
	v := struct {
		Name   string   `json:"name"`
		DPID   string   `json:"datapath_id"`
		Yes    string   `json:"flag"`
		Count  int      `json:"count"`
		Hosts  []string `json:"hosts"`
		Absent string   `json:"absent,omitempty"`
	}{"kvm1", "00000000000000a1", "yes", 3, []string{"a", "b"}, ""}
	var buf bytes.Buffer
	if err := writeYAML(&buf, v); err != nil {
		t.Fatal(err)
	}
	want := "name: kvm1\ndatapath_id: \"00000000000000a1\"\nflag: \"yes\"\ncount: 3\nhosts:\n  - a\n  - b\n"
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// TestBashCompletion sources the generated script in bash and completes
// command names, subcommands, flags and -o values.
func TestBashCompletion(t *testing.T) { testCompletion(t, "bash") }

// TestZshCompletion does the same in zsh (fails without zsh unless VPCFLOW_E2E=0): the script
// through zsh's bashcompinit, called as its _bash_complete calls it.
func TestZshCompletion(t *testing.T) { testCompletion(t, "zsh") }

func testCompletion(t *testing.T, shell string) {
	bash, err := exec.LookPath(shell)
	if err != nil {
		if os.Getenv("VPCFLOW_E2E") == "0" {
			t.Skipf("no %s (VPCFLOW_E2E=0)", shell)
		}
		t.Fatalf("no %s: scripts/install-deps.sh installs it", shell)
	}
	var script bytes.Buffer
	writeBashCompletion(&script, shell == "zsh")
	file := filepath.Join(t.TempDir(), "vpcflow."+shell)
	if err := os.WriteFile(file, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{"vpcflow", "aud"}, "audit"},
		{[]string{"vpcflow", "comp"}, "compile completion"},
		{[]string{"vpcflow", "host", "w"}, "watch"},
		{[]string{"vpcflow", "audit", "--fo"}, "--format"},
		{[]string{"vpcflow", "host", "watch", "--inband"}, "--inband-recovery"},
		{[]string{"vpcflow", "policy", "lint", "--st"}, "--strict"},
		{[]string{"vpcflow", "status", "-o", ""}, "table json yaml"},
		{[]string{"vpcflow", "explain", "--format", "y"}, "yaml"},
		{[]string{"vpcflow", "completion", ""}, "bash zsh"},
		{[]string{"vpcflow", "help", "vali"}, "validate"},
	} {
		words := make([]string, len(c.words))
		for i, w := range c.words {
			words[i] = "'" + w + "'"
		}
		drv := fmt.Sprintf(`source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _vpcflow; echo "${COMPREPLY[*]}"`, file, strings.Join(words, " "), len(words)-1)
		args := []string{"--norc", "-c", drv}
		if shell == "zsh" {
			args = []string{"-f", "-c", drv}
		}
		out, err := exec.Command(bash, args...).CombinedOutput()
		got := strings.TrimSpace(string(out))
		if shell == "zsh" && err == nil {
			// bashcompinit's compgen leaves the prefix matching to zsh's
			// compadd: the candidates must include the wanted words.
			have := strings.Fields(got)
			got = c.want
			for _, w := range strings.Fields(c.want) {
				if !slices.Contains(have, w) {
					got = string(out)
				}
			}
		}
		if err != nil || got != c.want {
			t.Errorf("complete %q: %q (%v), want %q", c.words, out, err, c.want)
		}
	}
}

// TestCompletionKnowsEveryCommand: every registered command is either in
// completionFlags (it parses with parseFlags first, so completion may run
// it in collection mode) or is completion itself.
func TestCompletionKnowsEveryCommand(t *testing.T) {
	for _, n := range commandNames() {
		if !completionFlags[n] && n != "completion" {
			t.Errorf("command %q is not in completionFlags: make it parse with parseFlags (cli.go) before it does anything, then add it", n)
		}
	}
	for n := range completionFlags {
		if _, ok := commands[n]; !ok {
			t.Errorf("completionFlags names %q, which is no command", n)
		}
	}
}
