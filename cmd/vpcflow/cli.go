package main

// The command-line conventions every command shares (docs/cli.md):
//
//   - flags are POSIX-style: --flag and -flag, --flag=value and --flag value;
//     flags may follow positional arguments; "--" ends the flags;
//   - an unknown command or flag is a usage error (exit 2) that names the
//     closest command or flag ("did you mean");
//   - exit codes: 0 ok, 1 a finding (drift, lint findings, validation errors,
//     doctor failures, not converged), 2 usage or cannot tell; -h, --help and
//     "help" exit 0 everywhere.
//
// Each command builds its own flag.FlagSet and calls parseFlags instead of
// fs.Parse.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/vpcflow/vpcflow/flows"
)

// Exit codes of every command.
const (
	exitOK      = 0
	exitFinding = 1
	exitUsage   = 2
)

// subcommands lists the second word of the commands that dispatch on it
// (for "did you mean" and shell completion).
var subcommands = map[string][]string{
	"host":       {"config", "apply", "watch"},
	"pki":        {"init", "sign"},
	"policy":     {"lint"},
	"blueprint":  {"export"},
	"completion": {"bash", "zsh"},
}

// takesArguments names the flag sets (by fs.Name()) that accept positional
// arguments; parseFlags refuses positional arguments for every other one.
var takesArguments = map[string]bool{"validate": true, "policy lint": true}

// flagCollector, when set, makes parseFlags hand the command's flag set to
// it instead of parsing: completion uses it to learn each command's flags
// from the commands themselves (the command then returns at once).
var flagCollector func(fs *flag.FlagSet)

// parseFlags parses args into fs with interleaved flags and positional
// arguments; afterwards fs.Args() holds the positional arguments in order.
// It returns ok=false with the exit code when the command must stop: 0
// after -h/--help (the command's usage printed), 2 after a bad flag (the
// error and, for an unknown flag, the closest flag name printed on
// stderr).
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if flagCollector != nil {
		flagCollector(fs)
		return exitOK, false
	}
	out := fs.Output()
	usage := fs.Usage
	fs.SetOutput(io.Discard) // errors are printed here, with a hint
	fs.Usage = func() {}
	defer func() { fs.SetOutput(out); fs.Usage = usage }()

	var pos []string
	rest := args
	for {
		err := fs.Parse(rest)
		if err != nil {
			fs.SetOutput(out)
			fs.Usage = usage
			if errors.Is(err, flag.ErrHelp) {
				printUsage(fs, usage)
				return exitOK, false
			}
			fmt.Fprintf(out, "vpcflow %s: %s\n", fs.Name(), flagErrorHint(fs, err))
			return exitUsage, false
		}
		left := fs.Args()
		if len(left) == 0 {
			break
		}
		if terminated(fs, rest, left) {
			pos = append(pos, left...)
			break
		}
		pos = append(pos, left[0])
		rest = left[1:]
	}
	if len(pos) > 0 && !takesArguments[fs.Name()] {
		fmt.Fprintf(out, "vpcflow %s: unexpected argument %q: all options are flags (vpcflow %s -h lists them)\n", fs.Name(), pos[0], fs.Name())
		return exitUsage, false
	}
	// Leave the positional arguments in fs.Args(): parsing "--" followed
	// by them sets no flag and keeps the values already set.
	if err := fs.Parse(append([]string{"--"}, pos...)); err != nil {
		fmt.Fprintf(out, "vpcflow %s: %v\n", fs.Name(), err)
		return exitUsage, false
	}
	return exitOK, true
}

// terminated reports whether fs.Parse(args) stopped at "--" (all of left
// is positional) rather than at the first non-flag argument.
func terminated(fs *flag.FlagSet, args, left []string) bool {
	used := len(args) - len(left)
	if used == 0 || args[used-1] != "--" {
		return false
	}
	// "--" was consumed: the terminator, unless it was a flag's value
	// ("--name --").
	if used >= 2 {
		prev := args[used-2]
		if name, ok := flagName(prev); ok && !strings.Contains(prev, "=") {
			if f := fs.Lookup(name); f != nil && !isBoolFlag(f) {
				return false
			}
		}
	}
	return true
}

// flagName returns NAME for "-NAME" or "--NAME[=VALUE]".
func flagName(arg string) (string, bool) {
	if len(arg) < 2 || arg[0] != '-' || arg == "--" {
		return "", false
	}
	name := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
	name, _, _ = strings.Cut(name, "=")
	return name, name != ""
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// printUsage prints the command's usage. A command without a Usage of its
// own (the flag package's "Usage of NAME:") gets a header in the
// conventions' words: the usage line and the command's summary. What a
// Usage writes to the flag set's output is collected first, so it stays
// after what it writes to stderr directly (its header).
func printUsage(fs *flag.FlagSet, usage func()) {
	out := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	if usage != nil {
		usage()
	} else {
		fs.PrintDefaults()
	}
	fs.SetOutput(out)
	text := buf.String()
	if rest, ok := strings.CutPrefix(text, "Usage of "+fs.Name()+":\n"); ok || usage == nil {
		head := "usage: vpcflow " + fs.Name() + " [flags]\n"
		if c, ok := commands[fs.Name()]; ok {
			head += "\n" + c.summary + "\n"
		}
		text = head + "\nflags:\n" + rest
	}
	io.WriteString(out, text)
}

// flagErrorHint rewrites a flag package error in the conventions' words,
// with the closest flag for an unknown one.
func flagErrorHint(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	help := fmt.Sprintf("(vpcflow %s -h lists the flags)", fs.Name())
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		if s := suggest(name, names); s != "" {
			return fmt.Sprintf("unknown flag %s: did you mean %s? %s", dashes(name), dashes(s), help)
		}
		return fmt.Sprintf("unknown flag %s %s", dashes(name), help)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Sprintf("flag %s needs a value (%s VALUE or %s=VALUE) %s", dashes(name), dashes(name), dashes(name), help)
	}
	return msg + " " + help
}

// dashes spells a flag as it is documented: -o for one letter, --name else.
func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// suggest returns the candidate closest to s: an edit distance of at most
// 2, or a unique candidate that s is a prefix of (or that is a prefix of
// s); "" when none is close.
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := flows.EditDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if best != "" {
		return best
	}
	var pre []string
	for _, c := range candidates {
		if len(s) >= 2 && (strings.HasPrefix(c, s) || strings.HasPrefix(s, c) && len(c) >= 3) {
			pre = append(pre, c)
		}
	}
	sort.Strings(pre)
	if len(pre) >= 1 {
		return pre[0]
	}
	return ""
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// unknownSub prints the error for an unknown subcommand of cmd, with the
// closest one, and returns the usage exit code.
func unknownSub(w io.Writer, cmd, sub string) int {
	known := subcommands[cmd]
	hint := ""
	if s := suggest(sub, known); s != "" {
		hint = fmt.Sprintf(": did you mean %q?", s)
	}
	fmt.Fprintf(w, "vpcflow %s: unknown subcommand %q%s (known: %s; vpcflow %s -h)\n", cmd, sub, hint, strings.Join(known, ", "), cmd)
	return exitUsage
}

// commandNames returns the registered command names, sorted.
func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// runMain is the whole command line: vpcflow [COMMAND [args]].
func runMain(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return exitUsage
	}
	switch a := args[0]; {
	case isHelp(a):
		if len(args) > 1 && a == "help" { // vpcflow help COMMAND [SUB]
			if c, ok := commands[args[1]]; ok {
				return c.run(append(args[2:], "-h"))
			}
			return unknownCommand(args[1])
		}
		usage(os.Stdout)
		return exitOK
	case a == "--version" || a == "-version":
		return runVersion(args[1:])
	}
	c, ok := commands[args[0]]
	if !ok {
		return unknownCommand(args[0])
	}
	return c.run(args[1:])
}

func unknownCommand(name string) int {
	hint := ""
	if s := suggest(name, commandNames()); s != "" {
		hint = fmt.Sprintf(": did you mean %q?", s)
	}
	fmt.Fprintf(os.Stderr, "vpcflow: unknown command %q%s (vpcflow -h lists the commands)\n", name, hint)
	return exitUsage
}

// parseExit maps a flag.Parse error to the exit code: 0 for -h, 2 else.
// Kept for code that still calls fs.Parse itself; commands use parseFlags.
func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}
