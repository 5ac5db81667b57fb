package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/vpcflow/vpcflow/flows"
)

func init() {
	register("validate", "check a blueprint file; print every error", func(args []string) int {
		return runValidate(args, os.Stdout, os.Stderr)
	})
}

// runValidate implements "vpcflow validate FILE": exit 0 when the blueprint
// is valid, 1 with every error on stderr (one per line), 2 on usage errors.
func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vpcflow validate FILE\n\nCheck a blueprint: print a summary and exit 0, or print every error and exit 1.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "vpcflow validate: want exactly one blueprint FILE")
		fs.Usage()
		return 2
	}
	file := fs.Arg(0)
	bp, err := flows.Load(file)
	if err != nil {
		var ve *flows.ValidationError
		if errors.As(err, &ve) {
			for _, fe := range ve.Errors {
				fmt.Fprintln(stderr, fe.Error())
			}
		} else {
			fmt.Fprintf(stderr, "vpcflow validate: %v\n", err)
		}
		return 1
	}
	tiers, vms := 0, 0
	for _, v := range bp.VPCs {
		tiers += len(v.Tiers)
		for _, t := range v.Tiers {
			vms += len(t.VMs)
		}
	}
	fmt.Fprintf(stdout, "%s: ok (revision %d, %d hosts, %d VPCs, %d tiers, %d VMs)\n",
		file, bp.Revision, len(bp.Hosts), len(bp.VPCs), tiers, vms)
	return 0
}
