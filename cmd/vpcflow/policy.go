package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/vpcflow/vpcflow/flows"
)

func init() {
	register("policy", "network ACLs and security groups: lint finds shadowed rules, open admin ports, unused groups", func(args []string) int {
		return runPolicy(args, os.Stdout, os.Stderr)
	})
}

const policyUsage = "usage: vpcflow policy lint [--json] [--strict] BLUEPRINT"

func runPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "lint" {
		if len(args) > 0 && !isHelp(args[0]) {
			return unknownSub(stderr, "policy", args[0])
		}
		fmt.Fprintln(stderr, policyUsage)
		if len(args) > 0 {
			return 0 // -h
		}
		return 2
	}
	return runPolicyLint(args[1:], stdout, stderr)
}

// Exit codes of vpcflow policy lint (README, docs/policy.md "Lint").
const (
	lintExitClean    = 0 // no finding, or info only (without --strict)
	lintExitFindings = 1 // a warning or an error (with --strict: any finding)
	lintExitInvalid  = 2 // invalid or unreadable blueprint, or usage
)

// lintReport is the --json output. Its field names are stable.
type lintReport struct {
	File string `json:"file"`
	// Valid is false when the blueprint does not load; Errors then holds
	// every validation error and Findings is empty.
	Valid    bool                `json:"valid"`
	Errors   []lintLoadError     `json:"errors,omitempty"`
	Findings []flows.LintFinding `json:"findings"`
	Summary  lintSummary         `json:"summary"`
	Exit     int                 `json:"exit"`
}

type lintLoadError struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

type lintSummary struct {
	Errors   int `json:"errors"`
	Warnings int `json:"warnings"`
	Info     int `json:"info"`
}

func (s lintSummary) String() string {
	if s == (lintSummary{}) {
		return "no findings"
	}
	plural := func(n int, word string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, word)
		}
		return fmt.Sprintf("%d %ss", n, word)
	}
	return fmt.Sprintf("%s, %s, %d info", plural(s.Errors, "error"), plural(s.Warnings, "warning"), s.Info)
}

// runPolicyLint implements "vpcflow policy lint": load the blueprint as
// validate does, print every finding and a summary.
func runPolicyLint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON document (file, valid, errors, findings, summary, exit)")
	strict := fs.Bool("strict", false, "exit 1 on info findings too (by default only warnings and errors fail)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, policyUsage+"\n\nFind policy mistakes validation cannot refuse: shadowed ACL rules, redundant security group rules,\nadministrative ports open to wide prefixes, host service ports mgmt_guard drops anyway, unused lists\nand groups, references to empty groups (docs/policy.md, \"Lint\").\nExit: 0 no finding or info only, 1 a warning or an error (--strict: any finding), 2 invalid blueprint or usage.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	pos := fs.Args()
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "vpcflow policy lint: want exactly one BLUEPRINT file")
		fs.Usage()
		return lintExitInvalid
	}
	file := pos[0]
	rep := lintReport{File: file, Findings: []flows.LintFinding{}}
	bp, err := flows.LoadForLint(file)
	if err != nil {
		rep.Exit = lintExitInvalid
		var ve *flows.ValidationError
		if errors.As(err, &ve) {
			for _, fe := range ve.Errors {
				rep.Errors = append(rep.Errors, lintLoadError{File: fe.File, Line: fe.Line, Column: fe.Column, Field: fe.Field, Message: fe.Msg})
			}
		} else {
			rep.Errors = []lintLoadError{{File: file, Message: err.Error()}}
		}
		if *asJSON {
			return writeLintJSON(stdout, stderr, rep)
		}
		for _, e := range rep.Errors {
			fmt.Fprintln(stderr, flows.FieldError{File: e.File, Line: e.Line, Column: e.Column, Field: e.Field, Msg: e.Message}.Error())
		}
		fmt.Fprintf(stderr, "vpcflow policy lint: %s is not a valid blueprint: nothing linted (fix the errors above; vpcflow validate prints the same)\n", file)
		return lintExitInvalid
	}
	rep.Valid = true
	rep.Findings = append(rep.Findings, flows.LintPolicy(bp)...)
	for _, f := range rep.Findings {
		switch f.Severity {
		case flows.LintError:
			rep.Summary.Errors++
		case flows.LintWarning:
			rep.Summary.Warnings++
		default:
			rep.Summary.Info++
		}
	}
	if rep.Summary.Errors+rep.Summary.Warnings > 0 || (*strict && rep.Summary.Info > 0) {
		rep.Exit = lintExitFindings
	}
	if *asJSON {
		return writeLintJSON(stdout, stderr, rep)
	}
	for _, f := range rep.Findings {
		fmt.Fprintln(stdout, f.String())
	}
	fmt.Fprintf(stdout, "%s: %s\n", file, rep.Summary)
	return rep.Exit
}

func writeLintJSON(stdout, stderr io.Writer, rep lintReport) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		fmt.Fprintf(stderr, "vpcflow policy lint: %v\n", err)
		return lintExitInvalid
	}
	return rep.Exit
}
