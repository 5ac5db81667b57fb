package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vpcflow/vpcflow/buildinfo"
)

func init() {
	register("version", "print the version, commit, Go version and the OpenFlow/OVSDB features (also --version)", runVersion)
}

// versionDoc is `vpcflow version -o json`.
type versionDoc struct {
	buildinfo.Info
	buildinfo.Protocols
}

func runVersion(args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	var out string
	fs.StringVar(&out, "o", "text", "output format: text or json")
	fs.StringVar(&out, "output", "text", "output format: text or json (same as -o)")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: vpcflow version [-o text|json]   (or vpcflow --version [-o text|json])")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vpcflow version: unexpected argument %q (usage: vpcflow version [-o text|json])\n", fs.Arg(0))
		return 2
	}
	switch out {
	case "text", "json":
	default:
		fmt.Fprintf(os.Stderr, "vpcflow version: -o %q: want text or json\n", out)
		return 2
	}
	if err := writeVersion(os.Stdout, out); err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow version:", err)
		return 1
	}
	return 0
}

func writeVersion(w io.Writer, format string) error {
	doc := versionDoc{buildinfo.Get(), buildinfo.Features()}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	link := "static (CGO_ENABLED=0)"
	if doc.CGO {
		link = "dynamic (cgo: needs the build host's glibc; build with make build for a static binary)"
	}
	_, err := fmt.Fprintf(w, "vpcflow %s\ncommit:    %s\nbuilt:     %s\ngo:        %s %s, %s\nopenflow:  %s: %s\novsdb:     %s: %s\ntunnels:   %s\n",
		doc.Version, doc.Commit, doc.Date, doc.GoVersion, doc.Platform, link,
		doc.OpenFlow.Version, strings.Join(doc.OpenFlow.Features, ", "),
		doc.OVSDB.Version, strings.Join(doc.OVSDB.Features, ", "),
		strings.Join(doc.Encapsulations, ", "))
	return err
}
