package main

import (
	"context"
	"crypto/tls"
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
	register("host", "host-side tools: print a host's file (host config), provision its cloudbr0 (host apply), guard its management path (host watch)", runHost)
}

const hostUsage = `usage:
  vpcflow host config --blueprint FILE --host NAME [-o yaml|json] [--output-file FILE] [--bridge NAME]
                      [--tls-cert FILE --tls-key FILE --tls-ca FILE]
  vpcflow host apply (--host-config FILE | --blueprint FILE) [--host NAME] [--ovsdb unix:PATH|tcp:IP:PORT]
                     [--bridge cloudbr0] [--controllers tcp:A:6653,tcp:B:6653] [--create-bridge [--datapath-type system|netdev]]
  vpcflow host watch (--host-config FILE | --blueprint FILE) [--host NAME] [--ovsdb unix:PATH|tcp:IP:PORT]
                     [--bridge cloudbr0] [--interval 500ms] [--reload-poll 1s]

config prints the host file of one host (kind vpcflow.host/v1): its bridge settings, uplink,
       tunnel IP/MAC, datapath id, controllers, management section, the other hosts' tunnel
       IPs/MACs and trusted_peers, and nothing about tenants (no VPCs, tiers, VMs, policies).
       Install it on the host as /etc/vpcflow/host.yaml.
apply  idempotently provisions the bridge over OVSDB: protocols=OpenFlow13, fail_mode=secure,
       other-config:datapath-id (and hwaddr from tunnel_mac), one Controller row per controller,
       a bonded uplink's bond port (uplink: {bond: [...]}: converts a single-NIC uplink port in place),
       then the flow-based tunnel port vpcflow-vxlan or vpcflow-gre.
watch  runs on the host: keeps the Controller rows out-of-band (in-band control closed) and installs
       the host's bootstrap management flows when they are missing (an empty table) or no controller
       has been reachable for 10 s. It follows its file: SIGHUP or a file change reloads it (a bad
       file is logged and the last good one kept).

--host-config FILE is the host file (the fleet way: hosts never hold the tenant inventory);
--blueprint FILE reads the whole blueprint (single-node and lab use). Without --host the host is
this machine's hostname (or its first label) when the file names it, else the one whose
datapath_id is the bridge's datapath id; anything else is an error.

OVSDB endpoint: --ovsdb > the host's ovsdb: in the file > unix:$OVS_RUNDIR/db.sock
(OVS_RUNDIR defaults to /var/run/openvswitch).`

func runHost(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, hostUsage)
		return 2
	}
	switch args[0] {
	case "config":
		return runHostConfig(args[1:], os.Stdout, os.Stderr)
	case "apply":
		return runHostApply(args[1:])
	case "watch":
		return runHostWatch(args[1:])
	}
	if isHelp(args[0]) {
		fmt.Fprintln(os.Stderr, hostUsage)
		return 0
	}
	return unknownSub(os.Stderr, "host", args[0])
}

// hostFlags are the flags apply and watch share.
type hostFlags struct {
	blueprint, hostConfig, host, ovsdb, bridge, logFormat, logLevel string
	tlsCert, tlsKey, tlsCA                                          string

	// Filled by parse.
	src string // the file read (--host-config or --blueprint)
	by  string // how the host was chosen: flag, hostname or datapath-id
	// hostname and bridgeDPID are overridden by tests.
	hostname   func() (string, error)
	bridgeDPID func(ctx context.Context, endpoint string, tcfg *tls.Config, bridge string) (uint64, error)
	// waitHost (host watch): without --host, retry finding the host every
	// waitEvery until it is found or waitHost is done, instead of failing.
	// A watcher started before host apply has set the bridge's datapath id
	// (or while ovs-vswitchd is down) then waits, rather than exiting into
	// a service manager's restart limit.
	waitHost  context.Context
	waitEvery time.Duration
}

// tlsConfig is the OVSDB client TLS configuration for ssl: endpoints.
func (h *hostFlags) tlsConfig(endpoint string) (*tls.Config, error) {
	if !strings.HasPrefix(endpoint, "ssl:") {
		return nil, nil
	}
	return pki.ClientConfig(h.tlsCert, h.tlsKey, h.tlsCA)
}

func (h *hostFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.hostConfig, "host-config", "", "the host file (vpcflow host config): what this host needs, without the tenant inventory")
	fs.StringVar(&h.blueprint, "blueprint", "", "the whole blueprint instead of a host file (single-node and lab use)")
	fs.StringVar(&h.host, "host", "", "this host's name (default: the hostname, else the host whose datapath_id is the bridge's)")
	fs.StringVar(&h.ovsdb, "ovsdb", "", "OVSDB endpoint unix:PATH | tcp:IP:PORT (default: the host's ovsdb: from the file, else unix:$OVS_RUNDIR/db.sock)")
	fs.StringVar(&h.bridge, "bridge", tunnel.DefaultBridge, "bridge to manage (default: the host file's bridge:, else cloudbr0)")
	fs.StringVar(&h.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&h.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&h.tlsCert, "tls-cert", "", "ssl: OVSDB endpoints: client certificate (vpcflow pki sign; default: the host file's ovsdb_tls)")
	fs.StringVar(&h.tlsKey, "tls-key", "", "ssl: OVSDB endpoints: client key")
	fs.StringVar(&h.tlsCA, "tls-ca", "", "ssl: OVSDB endpoints: CA certificate the server must chain to")
}

// parse parses args, checks the flags, loads the blueprint or host file
// and finds this host; it returns the exit code to use when it fails (2
// usage, 1 error). For a host file the blueprint returned is its host-only
// blueprint (flows.HostConfig.Blueprint).
func (h *hostFlags) parse(name string, fs *flag.FlagSet, args []string) (*flows.Blueprint, *flows.Host, int) {
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, hostUsage+"\n\nflags of vpcflow host "+name+":")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return nil, nil, code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vpcflow host %s: unexpected argument %q (all options are flags)\n", name, fs.Arg(0))
		return nil, nil, 2
	}
	switch {
	case h.blueprint != "" && h.hostConfig != "":
		fmt.Fprintf(os.Stderr, "vpcflow host %s: --host-config and --blueprint are alternatives: give one (the host file on a fleet host)\n", name)
		return nil, nil, 2
	case h.blueprint == "" && h.hostConfig == "":
		fmt.Fprintf(os.Stderr, "vpcflow host %s: --host-config FILE (this host's file, from vpcflow host config) or --blueprint FILE is required\n", name)
		return nil, nil, 2
	}
	if h.ovsdb != "" {
		if err := tunnel.CheckEndpoint(h.ovsdb); err != nil {
			fmt.Fprintf(os.Stderr, "vpcflow host %s: --ovsdb: %v\n", name, err)
			return nil, nil, 2
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var bp *flows.Blueprint
	candidates := 0 // how many leading hosts may be this host (a host file's peers may not)
	if h.hostConfig != "" {
		h.src = h.hostConfig
		hc, err := flows.LoadHostConfig(h.hostConfig)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vpcflow host %s: %v\n", name, err)
			return nil, nil, loadExit(err) // 1 invalid, 2 unreadable
		}
		// The host file's own settings; flags override them.
		if hc.Bridge != "" && !set["bridge"] {
			h.bridge = hc.Bridge
		}
		if t := hc.OVSDBTLS; t != nil && !set["tls-cert"] && !set["tls-key"] && !set["tls-ca"] {
			h.tlsCert, h.tlsKey, h.tlsCA = t.Cert, t.Key, t.CA
		}
		bp, candidates = hc.Blueprint(), 1
	} else {
		h.src = h.blueprint
		var err error
		if bp, err = flows.Load(h.blueprint); err != nil {
			fmt.Fprintf(os.Stderr, "vpcflow host %s: %v\n", name, err)
			return nil, nil, loadExit(err) // 1 invalid, 2 unreadable
		}
		candidates = len(bp.Hosts)
	}
	hostname := ""
	if h.host == "" {
		get := h.hostname
		if get == nil {
			get = os.Hostname
		}
		hostname, _ = get()
	}
	readDPID := func() (uint64, error) {
		ep := h.ovsdb
		if ep == "" && h.hostConfig != "" {
			ep = bp.Hosts[0].OVSDB
		}
		if ep == "" {
			ep = tunnel.DefaultEndpoint()
		}
		tcfg, err := h.tlsConfig(ep)
		if err != nil {
			return 0, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		read := h.bridgeDPID
		if read == nil {
			read = tunnel.BridgeDatapathID
		}
		return read(ctx, ep, tcfg, h.bridge)
	}
	choice, err := tunnel.SelectHost(bp.Hosts[:candidates], h.src, h.host, hostname, readDPID)
	for last := ""; err != nil && h.host == "" && h.waitHost != nil; {
		if err.Error() != last {
			fmt.Fprintf(os.Stderr, "vpcflow host %s: %v; retrying every %s (vpcflow host apply sets the bridge's datapath id)\n", name, err, h.waitEvery)
			last = err.Error()
		}
		select {
		case <-h.waitHost.Done():
			return nil, nil, 0 // stopped (SIGINT/SIGTERM) while waiting
		case <-time.After(h.waitEvery):
		}
		choice, err = tunnel.SelectHost(bp.Hosts[:candidates], h.src, h.host, hostname, readDPID)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vpcflow host %s: %v\n", name, err)
		return nil, nil, 1
	}
	h.by = choice.By
	return bp, choice.Host, -1
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
	controllers := fs.String("controllers", "", "comma-separated OpenFlow targets, e.g. tcp:192.0.2.250:6653,tcp:192.0.2.251:6653 (default: the file's controllers:)")
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
	opts := tunnel.HostApplyOptions(bp, host)
	if *controllers != "" {
		var targets []string
		for _, t := range strings.Split(*controllers, ",") {
			if t = strings.TrimSpace(t); t != "" {
				targets = append(targets, t)
			}
		}
		opts.Controllers = targets
	}
	if hf.by != "flag" {
		fmt.Fprintf(os.Stderr, "vpcflow host apply: host %s (chosen by %s) from %s\n", host.Name, hf.by, hf.src)
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
	opts.TLS, opts.Endpoint, opts.Bridge = tcfg, hf.endpoint(host), hf.bridge
	opts.DatapathType, opts.CreateBridge, opts.Logger = *dpType, *create, log
	res, err := tunnel.Apply(ctx, opts)
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
	reloadPoll := fs.Duration("reload-poll", time.Second, "how often to check the host file (or blueprint) for changes (mtime/size); SIGHUP reloads at once")
	// SIGHUP is caught before the blueprint is read, so a reload signal
	// sent during start-up is not lost (and does not kill the process).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hf.waitHost, hf.waitEvery = ctx, 2*time.Second
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
		fmt.Fprintf(os.Stderr, "vpcflow host watch: host %s has no uplink in %s: the management flows cannot be recognised\n", host.Name, hf.src)
		return 1
	}
	log, err := newLogger(hf.logFormat, hf.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow host watch:", err)
		return 2
	}
	load := tunnel.LoadWatchBlueprint
	if hf.hostConfig != "" {
		load = tunnel.LoadWatchHostConfig
	}
	src, err := load(hf.src, host.Name, !*inbandRecovery, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vpcflow host watch: %v\n", err)
		return 1
	}
	cfg := src.Config()
	ep := hf.endpoint(host)
	log.WithFields(logrus.Fields{"bridge": hf.bridge, "host": host.Name, "host_by": hf.by, "file": hf.src, "uplink": host.Uplink, "ovsdb": ep, "interval": interval.String()}).
		Info(watchStartMessage(*inbandRecovery))
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

// watchStartMessage says what the watcher does about in-band control: by
// default it never opens it (it installs the bootstrap management flows
// itself and keeps every Controller row out-of-band); only
// --inband-recovery opens it, while the management flows are missing or no
// controller is reachable (tunnel.DecideMode).
func watchStartMessage(inbandRecovery bool) string {
	if inbandRecovery {
		return "watching the management flows: in-band control is opened only while they are missing or no controller is reachable (--inband-recovery), closed otherwise"
	}
	return "watching the management flows: in-band control kept closed (Controller rows out-of-band); missing management flows are reinstalled from the bootstrap flows"
}
