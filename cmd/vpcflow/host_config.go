package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/vpcflow/vpcflow/flows"
)

// runHostConfig implements `vpcflow host config`: print (or write) one
// host's file, kind vpcflow.host/v1. Exit 0 written, 1 invalid blueprint
// or unknown host or write error, 2 usage or unreadable blueprint.
func runHostConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("host config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bpPath := fs.String("blueprint", "", "the blueprint (required)")
	host := fs.String("host", "", "the host whose file to print (required)")
	format := fs.String("o", "yaml", "output format: yaml or json (both load with --host-config)")
	outFile := fs.String("output-file", "", "write the host file to this path, atomically (default: stdout)")
	bridge := fs.String("bridge", "", "write bridge: into the file (default: none, the tools then use cloudbr0)")
	tlsCert := fs.String("tls-cert", "", "write ovsdb_tls: the client certificate file on the host, for an ssl: ovsdb endpoint")
	tlsKey := fs.String("tls-key", "", "write ovsdb_tls: the client key file on the host")
	tlsCA := fs.String("tls-ca", "", "write ovsdb_tls: the CA file on the host")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: vpcflow host config --blueprint FILE --host NAME [-o yaml|json] [--output-file FILE]

Print the host file of one host (kind vpcflow.host/v1): what vpcflow host apply and
vpcflow host watch need on that hypervisor, without the tenant inventory. Install it as
/etc/vpcflow/host.yaml and run the host tools with --host-config /etc/vpcflow/host.yaml.`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "vpcflow host config: unexpected argument %q (all options are flags)\n", fs.Arg(0))
		return 2
	}
	if *bpPath == "" || *host == "" {
		fmt.Fprintln(stderr, "vpcflow host config: --blueprint FILE and --host NAME are required")
		return 2
	}
	if *format != "yaml" && *format != "json" {
		fmt.Fprintf(stderr, "vpcflow host config: -o %q: want yaml or json\n", *format)
		return 2
	}
	tlsSet := *tlsCert != "" || *tlsKey != "" || *tlsCA != ""
	if tlsSet && (*tlsCert == "" || *tlsKey == "" || *tlsCA == "") {
		fmt.Fprintln(stderr, "vpcflow host config: --tls-cert, --tls-key and --tls-ca go together: give all three (paths on the host) or none")
		return 2
	}
	bp, err := flows.Load(*bpPath)
	if err != nil {
		fmt.Fprintf(stderr, "vpcflow host config: %v\n", err)
		return loadExit(err) // 1 invalid, 2 unreadable
	}
	hc, err := flows.HostConfigFor(bp, *host)
	if err != nil {
		fmt.Fprintf(stderr, "vpcflow host config: %v\n", err)
		return 1
	}
	hc.Bridge = *bridge
	if tlsSet {
		hc.OVSDBTLS = &flows.HostTLS{Cert: *tlsCert, Key: *tlsKey, CA: *tlsCA}
	}
	if err := hc.Validate(); err != nil { // the flags' values: the rest came from a valid blueprint
		flagOf := map[string]string{"bridge": "--bridge", "ovsdb_tls.cert": "--tls-cert", "ovsdb_tls.key": "--tls-key", "ovsdb_tls.ca": "--tls-ca"}
		var ve *flows.ValidationError
		if !errors.As(err, &ve) {
			fmt.Fprintf(stderr, "vpcflow host config: %v\n", err)
			return 1
		}
		for _, fe := range ve.Errors {
			name := flagOf[fe.Field]
			if name == "" {
				name = fe.Field
			}
			fmt.Fprintf(stderr, "vpcflow host config: %s: %s\n", name, fe.Msg)
		}
		return 2
	}
	var data []byte
	if *format == "json" {
		data, err = hc.JSON()
	} else {
		data, err = hc.YAML(fmt.Sprintf(`vpcflow host file of %s: what vpcflow host apply and vpcflow host watch need on
this hypervisor, and nothing about tenants (no VPCs, tiers, VMs or policies).
Made by vpcflow host config from %s (revision %d, blueprint hash %s).
Use it with --host-config; regenerate it when the blueprint's hosts, trusted_peers,
controllers, management, encapsulation or revision change.`, hc.Host.Name, *bpPath, bp.Revision, bp.Hash()[:12]))
	}
	if err != nil {
		fmt.Fprintf(stderr, "vpcflow host config: %v\n", err)
		return 1
	}
	if *outFile == "" {
		if _, err := stdout.Write(data); err != nil {
			fmt.Fprintf(stderr, "vpcflow host config: %v\n", err)
			return 1
		}
		return 0
	}
	if err := writeFileAtomic(*outFile, data); err != nil {
		fmt.Fprintf(stderr, "vpcflow host config: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "%s: host file of %s written (revision %d, %d peers, %d trusted peers)\n", *outFile, hc.Host.Name, hc.Revision, len(hc.Peers), len(hc.TrustedPeers))
	return 0
}
