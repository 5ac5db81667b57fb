// Command vpcflow is the OpenFlow controller and host tool of vpcflow.
// Each subcommand lives in its own file and registers itself in commands.
package main

import (
	"fmt"
	"io"
	"os"
)

// command is one subcommand: it parses its own flags from args and returns
// the process exit code.
type command struct {
	summary string
	run     func(args []string) int
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string) int) {
	commands[name] = command{summary: summary, run: run}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: vpcflow COMMAND [flags] [arguments]\n\ncommands:")
	for _, n := range commandNames() {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nFlags are --flag or -flag, before or after the arguments; -- ends them.\nExit codes: 0 ok, 1 a finding (drift, lint findings, invalid blueprint, ...), 2 usage or cannot tell.\nRun 'vpcflow COMMAND -h' (or 'vpcflow help COMMAND') for a command's flags.")
}

func main() {
	os.Exit(runMain(os.Args[1:]))
}
