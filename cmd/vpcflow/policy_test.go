package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vpcflow/vpcflow/flows"
)

const (
	lintFindings = "../../flows/testdata/lint/findings.yaml"  // 1 error, 10 warnings, 2 info
	lintExample  = "../../flows/testdata/policy/example.yaml" // 1 info
	lintDemo     = "../../examples/demo/blueprint.yaml"       // no policy
	lintInvalid  = "../../flows/testdata/blueprints/invalid-policy-acl-port-range.yaml"
)

func runLint(args ...string) (int, string, string) {
	var so, se bytes.Buffer
	code := runPolicy(args, &so, &se)
	return code, so.String(), se.String()
}

// TestPolicyLintText: one line per finding (the flows rendering), the
// summary last, and the documented exit codes.
func TestPolicyLintText(t *testing.T) {
	code, out, errOut := runLint("lint", lintFindings)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (warnings and an error)\n%s%s", code, out, errOut)
	}
	bp, err := flows.LoadForLint(lintFindings)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range flows.LintPolicy(bp) {
		want = append(want, f.String())
	}
	want = append(want, lintFindings+": 1 error, 10 warnings, 2 info")
	if got := strings.TrimSuffix(out, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("output:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if !strings.Contains(out, lintFindings+":15:13: error[acl-shadowed-deny]: vpcs[0].acls[0].rules[1]: rule #20 (deny tcp 22 from 203.0.113.0/24) can never match") {
		t.Errorf("the shadowed deny line is missing:\n%s", out)
	}
	if errOut != "" {
		t.Errorf("stderr: %q", errOut)
	}

	// Info only: 0, and 1 with --strict (flags after the file too).
	if code, out, _ := runLint("lint", lintExample); code != 0 || !strings.HasSuffix(out, lintExample+": 0 errors, 0 warnings, 1 info\n") || !strings.Contains(out, "info[acl-no-ingress-allow]") {
		t.Errorf("info only: exit %d\n%s", code, out)
	}
	if code, _, _ := runLint("lint", lintExample, "--strict"); code != 1 {
		t.Errorf("--strict with an info finding: exit %d, want 1", code)
	}
	if code, _, _ := runLint("lint", "--strict", lintExample); code != 1 {
		t.Errorf("--strict before the file: exit %d, want 1", code)
	}
	// Warnings only: 1.
	data, err := os.ReadFile(lintExample)
	if err != nil {
		t.Fatal(err)
	}
	warn := filepath.Join(t.TempDir(), "warn.yaml")
	if err := os.WriteFile(warn, append(data, "  - {name: spare-sg, ingress: []}\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runLint("lint", warn); code != 1 || !strings.HasSuffix(out, warn+": 0 errors, 1 warning, 1 info\n") || !strings.Contains(out, "warning[sg-unused]: security_groups[3]") {
		t.Errorf("warnings only: exit %d, want 1\n%s", code, out)
	}
	// No policy: no findings, no note.
	if code, out, errOut := runLint("lint", "--strict", lintDemo); code != 0 || out != lintDemo+": no findings\n" || errOut != "" {
		t.Errorf("policy-free blueprint: exit %d\n%s%s", code, out, errOut)
	}
}

// TestPolicyLintInvalid: an invalid or unreadable blueprint and usage
// errors exit 2 and say why.
func TestPolicyLintInvalid(t *testing.T) {
	code, out, errOut := runLint("lint", lintInvalid)
	if code != 2 || out != "" || !strings.Contains(errOut, lintInvalid+":10:83: vpcs[0].acls[0].rules[0].ports: port range \"1023-1\" is out of order: write 1-1023") ||
		!strings.Contains(errOut, "is not a valid blueprint: nothing linted") {
		t.Errorf("invalid: exit %d\n%s%s", code, out, errOut)
	}
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if code, _, errOut := runLint("lint", missing); code != 2 || !strings.Contains(errOut, "read blueprint") {
		t.Errorf("missing file: exit %d %s", code, errOut)
	}
	for _, args := range [][]string{{}, {"lint"}, {"lint", lintExample, lintDemo}, {"check", lintExample}, {"lint", "--bogus", lintExample}} {
		if code, _, errOut := runLint(args...); code != 2 || !strings.Contains(errOut, "usage: vpcflow policy lint") && !strings.Contains(errOut, "unknown flag --bogus") && !strings.Contains(errOut, `unknown subcommand "check"`) {
			t.Errorf("%q: exit %d %s", args, code, errOut)
		}
	}
	if code, _, errOut := runLint("lint", "-h"); code != 0 || !strings.Contains(errOut, "Exit: 0 no finding or info only, 1 a warning or an error (--strict: any finding), 2 invalid blueprint or usage") {
		t.Errorf("-h: exit %d %s", code, errOut)
	}
}

// TestPolicyLintJSON: the JSON document, its stable keys, the findings as
// flows reports them, and the same exit codes.
func TestPolicyLintJSON(t *testing.T) {
	code, out, _ := runLint("lint", lintFindings, "--json")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	for _, k := range []string{"file", "valid", "findings", "summary", "exit"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("key %q missing: %v", k, keys)
		}
	}
	var rep lintReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	bp, _ := flows.LoadForLint(lintFindings)
	if want := flows.LintPolicy(bp); !reflect.DeepEqual(rep.Findings, want) || !rep.Valid || rep.Exit != 1 || rep.File != lintFindings ||
		rep.Summary != (lintSummary{Errors: 1, Warnings: 10, Info: 2}) {
		t.Errorf("report: %+v", rep)
	}
	if !strings.Contains(out, `"code": "acl-shadowed-deny",
      "severity": "error",
      "file": "`+lintFindings+`",
      "line": 15,
      "column": 13,
      "field": "vpcs[0].acls[0].rules[1]",`) || !strings.Contains(out, `"related": [
        "vpcs[0].acls[0].rules[0]"
      ]`) {
		t.Errorf("finding keys:\n%s", out)
	}

	// No findings: an empty list, not null.
	code, out, _ = runLint("lint", "--json", lintDemo)
	if code != 0 || !strings.Contains(out, `"findings": [],`) || !strings.Contains(out, `"summary": {
    "errors": 0,
    "warnings": 0,
    "info": 0
  },`) {
		t.Errorf("no findings: exit %d\n%s", code, out)
	}
	// Invalid: valid false, every error, exit 2.
	code, out, _ = runLint("lint", "--json", lintInvalid)
	rep = lintReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 2 || rep.Valid || rep.Exit != 2 || len(rep.Errors) != 5 ||
		rep.Errors[0] != (lintLoadError{File: lintInvalid, Line: 10, Column: 83, Field: "vpcs[0].acls[0].rules[0].ports", Message: `port range "1023-1" is out of order: write 1-1023`}) {
		t.Errorf("invalid: exit %d %v %+v\n%s", code, err, rep, out)
	}
}

// TestPolicyLintDocs: the output shown in docs/policy.md ("Lint") is what
// the lint prints for its fixture today.
func TestPolicyLintDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	const start = "$ vpcflow policy lint findings.yaml\n"
	i := strings.Index(string(doc), start)
	if i < 0 {
		t.Fatal("docs/policy.md has no lint output block")
	}
	block := string(doc[i+len(start):])
	block = block[:strings.Index(block, "```")]
	t.Chdir("../../flows/testdata/lint")
	if code, out, _ := runLint("lint", "findings.yaml"); code != 1 || out != block {
		t.Errorf("docs/policy.md shows:\n%s\nthe lint prints (exit %d):\n%s", block, code, out)
	}
}
