package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/vpcflow/vpcflow/flows"
)

func init() {
	register("compile", "print a host's intended flows (ovs-ofctl syntax, annotated)", runCompile)
}

func runCompile(args []string) int {
	fs := flag.NewFlagSet("compile", flag.ContinueOnError)
	bpPath := fs.String("blueprint", "", "blueprint file (required)")
	host := fs.String("host", "", "host name from the blueprint (required)")
	bare := fs.Bool("bare", false, "print only flows, no rule annotations")
	format := addOutputFlag(fs, "text")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *bpPath == "" || *host == "" {
		fmt.Fprintln(os.Stderr, "vpcflow compile: --blueprint and --host are required")
		return 2
	}
	bp, err := flows.Load(*bpPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return loadExit(err)
	}
	fl, err := flows.Compile(bp, *host)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow compile:", err)
		return 1
	}
	if *format != "text" {
		if err := writeStructured(os.Stdout, *format, newCompileDoc(*bpPath, *host, bp, fl)); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow compile:", err)
			return 2
		}
		return 0
	}
	fmt.Print(flows.Render(fl, !*bare))
	return 0
}
