package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

func init() {
	register("blueprint", "blueprint sources: export builds the blueprint from CloudStack and writes it as YAML", func(args []string) int {
		return runBlueprint(args, os.Stdout, os.Stderr)
	})
}

func runBlueprint(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "export" {
		fmt.Fprintln(stderr, "usage: vpcflow blueprint export --source cloudstack --cloudstack-url URL --cloudstack-base FILE [keys] [-o FILE]")
		if len(args) > 0 && isHelp(args[0]) {
			return 0
		}
		if len(args) > 0 {
			return unknownSub(stderr, "blueprint", args[0])
		}
		return 2
	}
	return runBlueprintExport(args[1:], stdout, stderr)
}

// runBlueprintExport implements "vpcflow blueprint export": fetch, build
// and validate the blueprint, write it as YAML (skipped CloudStack objects
// as comments at the top). Exit 0 written, 1 fetch or validation errors
// (every one on stderr), 2 usage errors.
func runBlueprintExport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("blueprint export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	source := fs.String("source", "cloudstack", "where the blueprint comes from: cloudstack")
	out := fs.String("o", "", "write the YAML to this file (default: stdout)")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound of the whole fetch")
	logFormat := fs.String("log-format", "text", "text or json")
	logLevel := fs.String("log-level", "warn", "debug, info, warn, error (skipped objects are logged at info; they are also listed in the YAML)")
	cs := addCloudStackFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vpcflow blueprint export --source cloudstack --cloudstack-url URL --cloudstack-base FILE [keys] [-o FILE]\n\nBuild the blueprint from CloudStack, validate it like a file, and write it as YAML for review.\nKeys: --api-key-file/--secret-key-file, CLOUDSTACK_API_KEY/CLOUDSTACK_SECRET_KEY, or --api-key/--secret-key.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "vpcflow blueprint export: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *source != "cloudstack" {
		fmt.Fprintf(stderr, "vpcflow blueprint export: --source %q: only cloudstack can be exported (a blueprint file already is one: check it with vpcflow validate)\n", *source)
		return 2
	}
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "vpcflow blueprint export:", err)
		return 2
	}
	log.SetOutput(stderr)
	src, err := cs.source(log, nil)
	if err != nil {
		fmt.Fprintln(stderr, "vpcflow blueprint export:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res, err := src.Build(ctx)
	if err != nil {
		var ve *flows.ValidationError
		if errors.As(err, &ve) {
			fmt.Fprintf(stderr, "vpcflow blueprint export: the blueprint built from %s is invalid (%d problems):\n", src.Name(), len(ve.Errors))
			for _, fe := range ve.Errors {
				fmt.Fprintln(stderr, fe.Error())
			}
		} else {
			fmt.Fprintf(stderr, "vpcflow blueprint export: %v\n", err)
		}
		return 1
	}
	if *out == "" {
		if _, err := stdout.Write(res.YAML); err != nil {
			fmt.Fprintln(stderr, "vpcflow blueprint export:", err)
			return 1
		}
	} else if err := writeFileAtomic(*out, res.YAML); err != nil {
		fmt.Fprintln(stderr, "vpcflow blueprint export:", err)
		return 1
	}
	vms := 0
	for _, v := range res.Blueprint.VPCs {
		for _, t := range v.Tiers {
			vms += len(t.VMs)
		}
	}
	where := *out
	if where == "" {
		where = "stdout"
	}
	fmt.Fprintf(stderr, "%s: ok (%d hosts, %d VPCs, %d VM NICs; %d CloudStack objects skipped, listed at the top)\n",
		where, len(res.Blueprint.Hosts), len(res.Blueprint.VPCs), vms, len(res.Skipped))
	return 0
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so a reader (the controller's file watcher) never sees half a
// blueprint.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".vpcflow-export-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
