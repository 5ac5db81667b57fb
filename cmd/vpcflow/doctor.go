package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vpcflow/vpcflow/flows"
	"github.com/vpcflow/vpcflow/pki"
	"github.com/vpcflow/vpcflow/tunnel"
)

func init() {
	register("doctor", "check this hypervisor against known fault lines (fail_mode, TLS, listeners, MTU, datapath, ...)", runDoctor)
}

const doctorUsage = `usage:
  vpcflow doctor [--host-config FILE | --blueprint FILE [--host NAME]] [--ovsdb unix:PATH|tcp:IP:PORT|ssl:IP:PORT] [--bridge cloudbr0]
                 [--uplink DEV] [--guest-mtu 1500] [--controller-url http://IP:PORT] [-o text|json|yaml]
                 [--tls-cert FILE --tls-key FILE --tls-ca FILE  (ssl: endpoints)]

Runs on a hypervisor and reads (never changes) Open vSwitch, /sys, /proc and the
controller's status API. Each check is PASS, WARN or FAIL with a remediation (SKIP
when it cannot be evaluated).

Exit code: 0 every check passed (warnings allowed), 1 a check failed, 2 usage error
or doctor cannot run.

--host-config FILE (the host file, vpcflow host config) gives the same expectations as
--blueprint FILE --host NAME without the tenant inventory.

OVSDB endpoint: --ovsdb > the host's ovsdb: in the file > unix:$OVS_RUNDIR/db.sock
(OVS_RUNDIR defaults to /var/run/openvswitch; the OVS pidfiles are read from it).`

func runDoctor(args []string) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, doctorUsage+"\n\nflags:")
		fs.PrintDefaults()
	}
	bpPath := fs.String("blueprint", "", "blueprint file: adds the host's expectations and the management CIDRs")
	hostName := fs.String("host", "", "this host's name in the blueprint (needs --blueprint)")
	hostConfig := fs.String("host-config", "", "the host file (vpcflow host config): the host's expectations and the management CIDRs, without the tenant inventory")
	endpoint := fs.String("ovsdb", "", "OVSDB endpoint unix:PATH | tcp:IP:PORT | ssl:IP:PORT (default: the host's ovsdb: from the blueprint, else unix:$OVS_RUNDIR/db.sock)")
	bridge := fs.String("bridge", tunnel.DefaultBridge, "bridge to examine")
	uplink := fs.String("uplink", "", "uplink NIC (default: the host's uplink from the blueprint, else the bridge's only NIC port)")
	guestMTU := fs.Int("guest-mtu", tunnel.DefaultGuestMTU, "guest MTU the uplink must carry after encapsulation")
	ctlURL := fs.String("controller-url", tunnel.DefaultControllerURL, "controller status API (the default is checked only if it answers)")
	format := addOutputFlag(fs, "text", "format")
	tlsCert := fs.String("tls-cert", "", "ssl: OVSDB endpoints: client certificate (vpcflow pki sign)")
	tlsKey := fs.String("tls-key", "", "ssl: OVSDB endpoints: client key")
	tlsCA := fs.String("tls-ca", "", "ssl: OVSDB endpoints: CA certificate the server must chain to")
	wait := fs.Duration("wait", tunnel.DefaultDoctorWait, "how long to poll values OVS writes lazily (Controller.is_connected lags ~5 s); 0 = no polling")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vpcflow doctor: unexpected argument %q (all options are flags)\n", fs.Arg(0))
		return 2
	}
	if *hostConfig != "" && (*bpPath != "" || *hostName != "") {
		fmt.Fprintln(os.Stderr, "vpcflow doctor: --host-config is the alternative to --blueprint FILE --host NAME: give one")
		return 2
	}
	if *hostName != "" && *bpPath == "" {
		fmt.Fprintln(os.Stderr, "vpcflow doctor: --host needs --blueprint")
		return 2
	}
	if *guestMTU < 68 || *guestMTU > 65535 {
		fmt.Fprintf(os.Stderr, "vpcflow doctor: --guest-mtu %d: want 68..65535\n", *guestMTU)
		return 2
	}
	if *wait < 0 {
		fmt.Fprintln(os.Stderr, "vpcflow doctor: --wait must not be negative")
		return 2
	}
	if *endpoint != "" {
		if err := tunnel.CheckEndpoint(*endpoint); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow doctor: --ovsdb:", err)
			return 2
		}
	}
	urlSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "controller-url" {
			urlSet = true
		}
	})
	if !strings.HasPrefix(*ctlURL, "http://") && !strings.HasPrefix(*ctlURL, "https://") {
		fmt.Fprintf(os.Stderr, "vpcflow doctor: --controller-url %q: want http://HOST:PORT\n", *ctlURL)
		return 2
	}

	opts := tunnel.DoctorOptions{Bridge: *bridge, Uplink: *uplink, GuestMTU: *guestMTU,
		ControllerURL: *ctlURL, ControllerURLSet: urlSet, Wait: *wait}
	if *wait == 0 {
		opts.Wait = -1 // DoctorOptions: negative = no polling
	}
	if *hostConfig != "" {
		hc, err := flows.LoadHostConfig(*hostConfig)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow doctor:", err)
			return 2
		}
		bp := hc.Blueprint() // the host first
		opts.Blueprint, opts.Host = bp, &bp.Hosts[0]
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if hc.Bridge != "" && !set["bridge"] { // the file's settings; flags override them
			opts.Bridge = hc.Bridge
		}
		if t := hc.OVSDBTLS; t != nil && !set["tls-cert"] && !set["tls-key"] && !set["tls-ca"] {
			*tlsCert, *tlsKey, *tlsCA = t.Cert, t.Key, t.CA
		}
	}
	if *bpPath != "" {
		bp, err := flows.Load(*bpPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow doctor:", err)
			return 2
		}
		opts.Blueprint = bp
		if *hostName != "" {
			h := bp.HostByName(*hostName)
			if h == nil {
				var names []string
				for _, x := range bp.Hosts {
					names = append(names, x.Name)
				}
				fmt.Fprintf(os.Stderr, "vpcflow doctor: host %q is not in %s (hosts: %s)\n", *hostName, *bpPath, strings.Join(names, ", "))
				return 2
			}
			opts.Host = h
		}
	}
	switch {
	case *endpoint != "":
		opts.Endpoint = *endpoint
	case opts.Host != nil && opts.Host.OVSDB != "":
		opts.Endpoint = opts.Host.OVSDB
	default:
		opts.Endpoint = tunnel.DefaultEndpoint()
	}

	if strings.HasPrefix(opts.Endpoint, "ssl:") {
		cfg, err := pki.ClientConfig(*tlsCert, *tlsKey, *tlsCA)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vpcflow doctor: OVSDB endpoint %s: %v\n", opts.Endpoint, err)
			return 2
		}
		opts.Env = tunnel.SystemEnv{TLS: cfg}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	results := tunnel.Doctor(ctx, opts)
	if errors.Is(ctx.Err(), context.Canceled) {
		fmt.Fprintln(os.Stderr, "vpcflow doctor: interrupted")
		return 2
	}
	if *format != "text" {
		if err := writeStructured(os.Stdout, *format, results); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow doctor:", err)
			return 2
		}
		return tunnel.DoctorExitCode(results)
	}
	printDoctor(results, opts)
	return tunnel.DoctorExitCode(results)
}

func printDoctor(results []tunnel.CheckResult, o tunnel.DoctorOptions) {
	host := ""
	if o.Host != nil {
		host = " (host " + o.Host.Name + ")"
	}
	fmt.Printf("vpcflow doctor: bridge %s%s, ovsdb %s\n", o.Bridge, host, o.Endpoint)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	counts := map[tunnel.CheckStatus]int{}
	for _, r := range results {
		counts[r.Status]++
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Status, r.Check, r.Detail)
		if r.Remediation != "" && (r.Status == tunnel.StatusFail || r.Status == tunnel.StatusWarn) {
			fmt.Fprintf(tw, "\t\t-> %s\n", r.Remediation)
		}
	}
	tw.Flush()
	fmt.Printf("%d passed, %d warnings, %d failed, %d skipped\n",
		counts[tunnel.StatusPass], counts[tunnel.StatusWarn], counts[tunnel.StatusFail], counts[tunnel.StatusSkip])
}
