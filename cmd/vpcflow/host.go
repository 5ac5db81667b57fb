package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
	"github.com/vpcflow/vpcflow/pki"
	"github.com/vpcflow/vpcflow/tunnel"
)

func init() {
	register("host", "provision a host's cloudbr0 (host apply) or guard its in-band control (host watch)", runHost)
}

const hostUsage = `usage:
  vpcflow host apply --blueprint FILE --host NAME [--ovsdb unix:PATH|tcp:IP:PORT] [--bridge cloudbr0]
                     [--controllers tcp:A:6653,tcp:B:6653] [--create-bridge [--datapath-type system|netdev]]
  vpcflow host watch --blueprint FILE --host NAME [--ovsdb unix:PATH|tcp:IP:PORT] [--bridge cloudbr0] [--interval 500ms] [--reload-poll 1s]

apply  idempotently provisions the bridge over OVSDB: protocols=OpenFlow13, fail_mode=secure,
       other-config:datapath-id (and hwaddr from tunnel_mac), one Controller row per controller,
       a bonded uplink's bond port (uplink: {bond: [...]}: converts a single-NIC uplink port in place),
       then the flow-based tunnel port vpcflow-vxlan or vpcflow-gre.
watch  runs on the host: opens in-band control while the controller's management flows
       (in_port=LOCAL and in_port=<uplink or a bond member> in table 0) are missing, closes it once they are installed.
       It follows the blueprint: SIGHUP or a file change reloads it (a bad file is logged and the last good one kept).

OVSDB endpoint: --ovsdb > the host's ovsdb: in the blueprint > unix:$OVS_RUNDIR/db.sock
(OVS_RUNDIR defaults to /var/run/openvswitch).`

func runHost(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, hostUsage)
		return 2
	}
	switch args[0] {
	case "apply":
		return runHostApply(args[1:])
	case "watch":
		return runHostWatch(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(os.Stderr, hostUsage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "vpcflow host: unknown subcommand %q\n%s\n", args[0], hostUsage)
		return 2
	}
}

// hostFlags are the flags apply and watch share.
type hostFlags struct {
	blueprint, host, ovsdb, bridge, logFormat, logLevel string
	tlsCert, tlsKey, tlsCA                              string
}

// tlsConfig is the OVSDB client TLS configuration for ssl: endpoints.
func (h *hostFlags) tlsConfig(endpoint string) (*tls.Config, error) {
	if !strings.HasPrefix(endpoint, "ssl:") {
		return nil, nil
	}
	return pki.ClientConfig(h.tlsCert, h.tlsKey, h.tlsCA)
}

func (h *hostFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.blueprint, "blueprint", "", "blueprint file (required)")
	fs.StringVar(&h.host, "host", "", "host name from the blueprint (required)")
	fs.StringVar(&h.ovsdb, "ovsdb", "", "OVSDB endpoint unix:PATH | tcp:IP:PORT (default: the host's ovsdb: from the blueprint, else unix:$OVS_RUNDIR/db.sock)")
	fs.StringVar(&h.bridge, "bridge", tunnel.DefaultBridge, "bridge to manage")
	fs.StringVar(&h.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&h.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&h.tlsCert, "tls-cert", "", "ssl: OVSDB endpoints: client certificate (vpcflow pki sign)")
	fs.StringVar(&h.tlsKey, "tls-key", "", "ssl: OVSDB endpoints: client key")
	fs.StringVar(&h.tlsCA, "tls-ca", "", "ssl: OVSDB endpoints: CA certificate the server must chain to")
}

// parse parses args, checks the required flags and loads the host; it
// returns the exit code to use when it fails (2 usage, 1 error).
func (h *hostFlags) parse(name string, fs *flag.FlagSet, args []string) (*flows.Blueprint, *flows.Host, int) {
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, hostUsage+"\n\nflags of vpcflow host "+name+":")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, 0
		}
		return nil, nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vpcflow host %s: unexpected argument %q (all options are flags)\n", name, fs.Arg(0))
		return nil, nil, 2
	}
	if h.blueprint == "" || h.host == "" {
		fmt.Fprintf(os.Stderr, "vpcflow host %s: --blueprint and --host are required\n", name)
		return nil, nil, 2
	}
	if h.ovsdb != "" {
		if err := tunnel.CheckEndpoint(h.ovsdb); err != nil {
			fmt.Fprintf(os.Stderr, "vpcflow host %s: --ovsdb: %v\n", name, err)
			return nil, nil, 2
		}
	}
	bp, err := flows.Load(h.blueprint)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vpcflow host %s: %v\n", name, err)
		return nil, nil, 1
	}
	host := bp.HostByName(h.host)
	if host == nil {
		var names []string
		for _, x := range bp.Hosts {
			names = append(names, x.Name)
		}
		fmt.Fprintf(os.Stderr, "vpcflow host %s: host %q is not in %s (hosts: %s)\n", name, h.host, h.blueprint, strings.Join(names, ", "))
		return nil, nil, 1
	}
	return bp, host, -1
}

// endpoint applies the precedence --ovsdb > host's ovsdb: > local socket.
func (h *hostFlags) endpoint(host *flows.Host) string {
	switch {
	case h.ovsdb != "":
		return h.ovsdb
	case host.OVSDB != "":
		return host.OVSDB
	}
	return tunnel.DefaultEndpoint()
}

func runHostApply(args []string) int {
	fs := flag.NewFlagSet("host apply", flag.ContinueOnError)
	var hf hostFlags
	hf.register(fs)
	controllers := fs.String("controllers", "", "comma-separated OpenFlow targets, e.g. tcp:192.0.2.250:6653,tcp:192.0.2.251:6653 (default: the blueprint's controllers:)")
	create := fs.Bool("create-bridge", false, "create the bridge (with the uplink, or the bond, as a port) when it does not exist")
	dpType := fs.String("datapath-type", tunnel.DefaultDatapathType, "datapath of a bridge created with --create-bridge: system (kernel) or netdev (userspace); an existing bridge's datapath is never changed")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	bp, host, code := hf.parse("apply", fs, args)
	if code >= 0 {
		return code
	}
	if *dpType != "system" && *dpType != "netdev" {
		fmt.Fprintf(os.Stderr, "vpcflow host apply: --datapath-type %q: want system or netdev\n", *dpType)
		return 2
	}
	log, err := newLogger(hf.logFormat, hf.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow host apply:", err)
		return 2
	}
	targets := bp.Controllers
	if *controllers != "" {
		targets = nil
		for _, t := range strings.Split(*controllers, ",") {
			if t = strings.TrimSpace(t); t != "" {
				targets = append(targets, t)
			}
		}
	}
	// The changes are printed on stdout; the library's per-change log lines
	// would repeat them on a terminal, so they show only at debug level.
	if hf.logFormat != "json" && log.GetLevel() == logrus.InfoLevel {
		log.SetLevel(logrus.WarnLevel)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tcfg, err := hf.tlsConfig(hf.endpoint(host))
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow host apply:", err)
		return 2
	}
	res, err := tunnel.Apply(ctx, tunnel.ApplyOptions{
		TLS:           tcfg,
		Endpoint:      hf.endpoint(host),
		Bridge:        hf.bridge,
		Host:          host,
		Encapsulation: bp.Encapsulation,
		Controllers:   targets,
		DatapathType:  *dpType,
		CreateBridge:  *create,
		Logger:        log,
	})
	if res != nil {
		for _, c := range res.Changes {
			fmt.Println(c)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vpcflow host apply: %s on %s: %v\n", hf.bridge, host.Name, err)
		return 1
	}
	if !res.Changed() {
		fmt.Printf("%s on %s: already provisioned, nothing changed\n", hf.bridge, host.Name)
	}
	return 0
}

func runHostWatch(args []string) int {
	fs := flag.NewFlagSet("host watch", flag.ContinueOnError)
	var hf hostFlags
	hf.register(fs)
	interval := fs.Duration("interval", 500*time.Millisecond, "how often to read table 0 and the Controller rows")
	inbandRecovery := fs.Bool("inband-recovery", false, "recover by opening OVS in-band control instead of installing bootstrap management flows (weaker: in-band rules expose the controller to guests while open)")
	reloadPoll := fs.Duration("reload-poll", time.Second, "how often to check the blueprint file for changes (mtime/size); SIGHUP reloads at once")
	// SIGHUP is caught before the blueprint is read, so a reload signal
	// sent during start-up is not lost (and does not kill the process).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	_, host, code := hf.parse("watch", fs, args)
	if code >= 0 {
		return code
	}
	if *interval <= 0 {
		fmt.Fprintln(os.Stderr, "vpcflow host watch: --interval must be positive")
		return 2
	}
	if *reloadPoll <= 0 {
		fmt.Fprintln(os.Stderr, "vpcflow host watch: --reload-poll must be positive")
		return 2
	}
	if host.Uplink == "" {
		fmt.Fprintf(os.Stderr, "vpcflow host watch: host %s has no uplink in %s: the management flows cannot be recognised\n", host.Name, hf.blueprint)
		return 1
	}
	log, err := newLogger(hf.logFormat, hf.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow host watch:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	src, err := tunnel.LoadWatchBlueprint(hf.blueprint, host.Name, !*inbandRecovery, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vpcflow host watch: %v\n", err)
		return 1
	}
	cfg := src.Config()
	ep := hf.endpoint(host)
	log.WithFields(logrus.Fields{"bridge": hf.bridge, "host": host.Name, "uplink": host.Uplink, "ovsdb": ep, "interval": interval.String()}).
		Info("watching management flows to manage in-band control")
	tcfg, err := hf.tlsConfig(ep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow host watch:", err)
		return 2
	}
	w := &tunnel.Watcher{Endpoint: ep, TLS: tcfg, Bridge: hf.bridge, Uplink: cfg.Uplink, Bootstrap: cfg.Bootstrap, Logger: log}
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		src.Follow(ctx, *reloadPoll, hup, func(c tunnel.WatchConfig) { w.SetConfig(c.Uplink, c.Bootstrap) })
	}()
	defer func() { stop(); <-followed }()
	if err := w.Run(ctx, *interval); err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow host watch:", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
