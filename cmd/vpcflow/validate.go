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
	format := addOutputFlag(fs, "text")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vpcflow validate [-o text|json|yaml] FILE\n\nCheck a blueprint: print a summary and exit 0, or print every error and exit 1\n(2: usage, or the file cannot be read). -o json|yaml prints one document\n(file, valid, counts, errors) on stdout instead.\n\nflags:")
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
	doc := validateDoc{File: file}
	bp, err := flows.Load(file)
	code := 0
	if err != nil {
		code = loadExit(err)
		doc.Errors = loadErrors(file, err)
		if *format == "text" {
			var ve *flows.ValidationError
			if errors.As(err, &ve) {
				for _, fe := range ve.Errors {
					fmt.Fprintln(stderr, fe.Error())
				}
			} else {
				fmt.Fprintf(stderr, "vpcflow validate: %v\n", err)
			}
			return code
		}
	} else {
		doc.Valid, doc.Revision, doc.Hosts, doc.VPCs = true, bp.Revision, len(bp.Hosts), len(bp.VPCs)
		for _, v := range bp.VPCs {
			doc.Tiers += len(v.Tiers)
			for _, t := range v.Tiers {
				doc.VMs += len(t.VMs)
			}
		}
	}
	if *format != "text" {
		if err := writeStructured(stdout, *format, doc); err != nil {
			fmt.Fprintf(stderr, "vpcflow validate: %v\n", err)
			return 2
		}
		return code
	}
	fmt.Fprintf(stdout, "%s: ok (revision %d, %d hosts, %d VPCs, %d tiers, %d VMs)\n",
		file, doc.Revision, doc.Hosts, doc.VPCs, doc.Tiers, doc.VMs)
	return 0
}
