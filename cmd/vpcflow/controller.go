package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vpcflow/vpcflow/cluster"
	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/pki"
)

// readClusterKey reads a memberlist key: raw 16/24/32 bytes, or base64 of them.
func readClusterKey(path string) (primary []byte, accept [][]byte, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	// One raw key (the whole file), or base64 keys one per line: the first
	// encrypts, every line decrypts (rotation: docs/security.md).
	if n := len(b); (n == 16 || n == 24 || n == 32) && !isBase64Lines(b) {
		return b, nil, nil
	}
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		d, err := base64.StdEncoding.DecodeString(t)
		if err != nil || (len(d) != 16 && len(d) != 24 && len(d) != 32) {
			return nil, nil, fmt.Errorf("%s:%d: want a base64 16, 24 or 32 byte key per line (head -c 32 /dev/urandom | base64), or one raw key as the whole file", path, i+1)
		}
		keys = append(keys, d)
	}
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("%s: no key: want a base64 16, 24 or 32 byte key per line (head -c 32 /dev/urandom | base64)", path)
	}
	return keys[0], keys[1:], nil
}

func isBase64Lines(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(line)
		if t == "" {
			continue
		}
		if _, err := base64.StdEncoding.DecodeString(t); err != nil {
			return false
		}
	}
	return true
}

// splitHostPortDefault parses IP[:PORT].
func splitHostPortDefault(s string, def int) (string, int, error) {
	if !strings.Contains(s, ":") {
		return s, def, nil
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, n, nil
}

func init() {
	register("controller", "run the OpenFlow controller", runController)
}

func runController(args []string) int {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	bpPath := fs.String("blueprint", "", "--source file: the blueprint file (required); SIGHUP or a file change reloads it")
	source := fs.String("source", "file", "where the blueprint comes from: file (--blueprint) or cloudstack (the CloudStack API, polled every --cloudstack-interval; SIGHUP and POST /reload fetch at once)")
	csInterval := fs.Duration("cloudstack-interval", 60*time.Second, "--source cloudstack: fetch the blueprint this often")
	cs := addCloudStackFlags(fs)
	listen := fs.String("listen", "tcp:127.0.0.1:6653", "OpenFlow listen address tcp:HOST:PORT (set the management address)")
	httpAddr := fs.String("http", "127.0.0.1:9653", "status API address (off = disabled)")
	drift := fs.Duration("drift-interval", 30*time.Second, "re-read installed flows and repair drift this often")
	fullReconciles := fs.Int("full-reconciles", 0, "bridges reconciled in full (table dump + diff) at once (0 = 64)")
	noPeerFetch := fs.Bool("cluster-no-fetch", false, "replica mode: never take a newer blueprint from a peer (each replica reads only its own file; stand by while a peer enforces a newer one)")
	maxHandshakes := fs.Int("max-handshakes", 128, "switch connections allowed between accept and a completed handshake (TLS, OpenFlow, identity check); more are closed at once")
	reloadGather := fs.Duration("reload-gather", 100*time.Millisecond, "how long a reload's bridges wait for each other to write their deltas together (0 = no waiting)")
	dropLog := fs.Bool("drop-log", false, "log packets dropped by the security rules (spoofing, management guard, tunnel allowlist) and by the policy (ACL denies, security groups, conntrack invalid) via rate-limited packet-ins")
	policyMetricRules := fs.Int("policy-metric-rules", controller.DefaultPolicyMetricRules, fmt.Sprintf("policy rules (ACLs, security groups) with their own vpcflow_policy_rule_* series, 0..%d; the others are counted as rule=\"other\" (0: every rule as \"other\")", controller.MaxPolicyMetricRules))
	dropLogRate := fs.Uint("drop-log-rate", 20, "drop logging: packets/s per bridge the switch sends at most (OpenFlow meter)")
	provision := fs.Bool("provision", false, "provision hosts that have an ovsdb: endpoint (cloudbr0 settings, controller targets, tunnel port); in replica mode only each host's owner does")
	clusterBind := fs.String("cluster-bind", "", "replica mode: memberlist bind address IP[:PORT] (port default 7946); use the management address")
	join := fs.String("join", "", "replica mode: comma-separated peers IP[:PORT] to join")
	clusterName := fs.String("cluster-name", "", "this replica's name: its entry in the blueprint's controllers: as HOST:PORT (default: the --listen address without tcp:/ssl:)")
	probeInterval := fs.Duration("probe-interval", 0, "memberlist probe interval, 20ms-10s (default 200ms); the quorum lease is derived from it")
	probeTimeout := fs.Duration("probe-timeout", 0, "memberlist probe timeout, shorter than --probe-interval (default 100ms)")
	suspicionMult := fs.Int("suspicion-mult", 0, "memberlist suspicion multiplier, 1-20 (default 3)")
	clusterInsecure := fs.Bool("cluster-insecure", false, "replica mode: run without --cluster-key-file (unauthenticated, unencrypted gossip: anyone who reaches --cluster-bind can forge replica state); for labs only")
	tlsCert := fs.String("tls-cert", "", "ssl: listener and ssl: OVSDB endpoints: this controller's certificate (vpcflow pki sign)")
	tlsKey := fs.String("tls-key", "", "ssl: this controller's key")
	tlsCA := fs.String("tls-ca", "", "ssl: the CA that switch (and ovsdb-server) certificates must chain to")
	clusterKeyFile := fs.String("cluster-key-file", "", "replica mode: memberlist encryption keys, base64 one per line (16, 24 or 32 bytes; the first encrypts, all decrypt: rotation) or one raw key; replicas without a shared key cannot join")
	clusterAllow := fs.String("cluster-allow", "", "replica mode: comma-separated CIDRs replicas may connect from (set = only these; an empty value given explicitly with --cluster-restrict denies every peer)")
	clusterRestrict := fs.Bool("cluster-restrict", false, "replica mode: enforce --cluster-allow (empty list = deny all)")
	logFormat := fs.String("log-format", "text", "text or json")
	logLevel := fs.String("log-level", "info", "debug, info, warn, error")
	// The configuration file and the API's safety (config.go, controller_api.go).
	configPath := fs.String("config", "", "YAML file holding these flags: keys are the flag names without dashes (listen: tcp:192.0.2.250:6653); flags on the command line override it; read once at start")
	printConfig := fs.Bool("print-config", false, "print the configuration that --config and the flags give, as YAML (every key with its usage; keys not set commented out with their default), and exit")
	httpTokenFile := fs.String("http-token-file", "", "file holding the bearer token that authorizes POST /reload and POST /audit?repair=1 (one line, not readable by others; without it and without --http-client-ca they are refused)")
	httpTLSCert := fs.String("http-tls-cert", "", "serve the --http API over HTTPS with this certificate (vpcflow pki sign --type controller --ip ADDR)")
	httpTLSKey := fs.String("http-tls-key", "", "the key of --http-tls-cert")
	httpClientCA := fs.String("http-client-ca", "", "with --http-tls-cert: client certificates that chain to this CA authorize POST /reload and POST /audit?repair=1 (DIR/controllerca/ca.pem; switch certificates are refused)")
	metricsAddr := fs.String("metrics", "off", "serve /metrics alone on this address, for Prometheus (no /status, /audit or /reload there); off = disabled (/metrics stays on --http too)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if code, ok := applyControllerConfig(fs, *configPath, *printConfig); !ok {
		return code
	}
	switch *source {
	case "file":
		if *bpPath == "" {
			fmt.Fprintln(os.Stderr, "vpcflow controller: --blueprint is required")
			return 2
		}
	case "cloudstack":
		if *bpPath != "" {
			fmt.Fprintln(os.Stderr, "vpcflow controller: --blueprint and --source cloudstack exclude each other: the blueprint comes from CloudStack and --cloudstack-base")
			return 2
		}
	default:
		fmt.Fprintf(os.Stderr, "vpcflow controller: --source %q: want file or cloudstack\n", *source)
		return 2
	}
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow controller:", err)
		return 2
	}
	if *policyMetricRules < 0 || *policyMetricRules > controller.MaxPolicyMetricRules {
		fmt.Fprintf(os.Stderr, "vpcflow controller: --policy-metric-rules %d: want 0..%d (rules with their own vpcflow_policy_rule_* series; the rest are counted as rule=\"other\")\n", *policyMetricRules, controller.MaxPolicyMetricRules)
		return 2
	}
	pmr := *policyMetricRules
	if pmr == 0 {
		pmr = -1 // Options: negative = every rule under "other"
	}
	opts := controller.Options{PolicyMetricRules: pmr, BlueprintPath: *bpPath, Listen: *listen, HTTP: *httpAddr,
		DriftInterval: *drift, FullReconciles: *fullReconciles, ReloadGather: gatherOption(*reloadGather), Provision: *provision, DropLog: *dropLog, DropLogRate: uint32(*dropLogRate), NoPeerFetch: *noPeerFetch, Log: log}
	if err := apiOptions(&opts, *httpTokenFile, *httpTLSCert, *httpTLSKey, *httpClientCA, *metricsAddr); err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow controller:", err)
		return 2
	}
	if *maxHandshakes < 1 {
		fmt.Fprintf(os.Stderr, "vpcflow controller: --max-handshakes %d: must be at least 1 (default 128)\n", *maxHandshakes)
		return 2
	}
	opts.MaxHandshakes = *maxHandshakes
	if *tlsCert != "" || *tlsKey != "" || *tlsCA != "" || strings.HasPrefix(*listen, "ssl:") {
		if opts.TLS, err = pki.ServerConfig(*tlsCert, *tlsKey, *tlsCA); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow controller:", err)
			return 2
		}
		if opts.OVSDBTLS, err = pki.ClientConfig(*tlsCert, *tlsKey, *tlsCA); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow controller:", err)
			return 2
		}
	}
	if *source == "cloudstack" {
		src, err := cs.source(log.WithField("component", "cloudstack"), opts.OVSDBTLS)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow controller:", err)
			return 2
		}
		if *csInterval <= 0 {
			fmt.Fprintln(os.Stderr, "vpcflow controller: --cloudstack-interval must be positive")
			return 2
		}
		opts.Source, opts.SourceInterval = src, *csInterval
	}
	c, err := controller.New(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow controller: cannot start:")
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if *clusterBind != "" {
		cfg := cluster.DefaultConfig()
		host, port, err := splitHostPortDefault(*clusterBind, cfg.BindPort)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow controller: --cluster-bind:", err)
			return 2
		}
		cfg.BindAddr, cfg.BindPort = host, port
		cfg.Name = *clusterName
		if cfg.Name == "" {
			cfg.Name = controller.ReplicaName(*listen)
		}
		cfg.ReplicaSet = controller.ReplicaNames(c.Blueprint().Controllers)
		if !slices.Contains(cfg.ReplicaSet, cfg.Name) {
			fmt.Fprintf(os.Stderr, "vpcflow controller: this replica's name %q is not in the blueprint's controllers: %v: only listed replicas may count toward the quorum or own bridges; set --listen (or --cluster-name) to this replica's entry there (HOST:PORT)\n", cfg.Name, cfg.ReplicaSet)
			return 2
		}
		if *join != "" {
			cfg.Join = strings.Split(*join, ",")
		}
		if *probeInterval != 0 {
			cfg.ProbeInterval = *probeInterval
		}
		if *probeTimeout != 0 {
			cfg.ProbeTimeout = *probeTimeout
		}
		if *suspicionMult != 0 {
			cfg.SuspicionMult = *suspicionMult
		}
		cfg.Log = log.WithField("component", "cluster")
		if *clusterKeyFile == "" && !*clusterInsecure {
			fmt.Fprintln(os.Stderr, "vpcflow controller: replica mode needs --cluster-key-file: without a key any host that reaches --cluster-bind can join and forge replica state. Make a key once and give every replica the same file: head -c 32 /dev/urandom | base64 > key (or pass --cluster-insecure for a lab)")
			return 2
		}
		if *clusterInsecure && *clusterKeyFile == "" {
			log.Warn("replica mode without a cluster key (--cluster-insecure): gossip is unauthenticated and unencrypted")
		}
		if *clusterKeyFile != "" {
			key, accept, err := readClusterKey(*clusterKeyFile)
			if err != nil {
				fmt.Fprintln(os.Stderr, "vpcflow controller: --cluster-key-file:", err)
				return 2
			}
			cfg.SecretKey, cfg.AcceptKeys = key, accept
		}
		if *clusterRestrict || *clusterAllow != "" {
			cfg.RestrictCIDRs = true
			if *clusterAllow != "" {
				cfg.CIDRsAllowed = strings.Split(*clusterAllow, ",")
			}
		}
		if err := cfg.Validate(); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow controller:", err)
			return 2
		}
		cl, err := cluster.Start(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow controller: cluster:", err)
			return 1
		}
		c.SetCluster(cl)
		log.WithFields(map[string]interface{}{"name": cl.Name(), "bind": *clusterBind, "join": *join, "replicas": cfg.ReplicaSet}).Info("replica mode")
	} else if *join != "" {
		fmt.Fprintln(os.Stderr, "vpcflow controller: --join needs --cluster-bind")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			_ = c.Reload("SIGHUP")
		}
	}()
	if err := c.Run(ctx); err != nil {
		log.WithError(err).Error("controller failed")
		return 1
	}
	return 0
}

// gatherOption maps --reload-gather to Options.ReloadGather (0 there means
// the default; off is negative).
func gatherOption(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
