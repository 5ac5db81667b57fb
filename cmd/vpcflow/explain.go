package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

func init() {
	register("explain", "explain why a packet is delivered or dropped (rules, flows, optional ofproto/trace check)", runExplain)
}

// Exit codes of explain (docs/explain.md), by the CLI's convention
// (docs/cli.md): 0 ok, 1 a finding (dropped, or a disagreement with Open
// vSwitch or the policy model: Explanation.ExitCode), 2 usage or cannot
// tell (the blueprint unreadable or invalid, an unknown VM, --trace cannot
// run).
const (
	explainDelivered = 0
	explainDropped   = 1
	explainUsage     = 2
	explainError     = 2
)

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func runExplain(args []string) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: vpcflow explain --blueprint FILE --from VM|underlay:IP --to VM|IP [flags]

Explains, in blueprint terms and in flows, whether the packet is delivered or
dropped and by which rule; with ACLs or security groups, also the policy
model's verdict next to the flows'. Exit: 0 delivered (or forwarded with
--host), 1 dropped, ofproto/trace disagreement or flows disagreeing with the
policy model, 2 usage or cannot tell (blueprint unreadable or invalid,
unknown VM, --trace cannot run).

flags:`)
		fs.PrintDefaults()
	}
	bpPath := fs.String("blueprint", "", "blueprint file (required)")
	from := fs.String("from", "", "source: a VM name, or underlay:IPv4 for an underlay node (required)")
	to := fs.String("to", "", "destination: a VM name or an IPv4 address (resolved inside the source VM's VPC) (required)")
	proto := fs.String("proto", "icmp", "icmp, tcp or udp")
	dport := fs.Uint("dport", 0, "destination port (tcp/udp)")
	sport := fs.Uint("sport", 0, "source port (tcp/udp; default 40000)")
	arp := fs.Bool("arp", false, "explain an ARP request who-has --to's address instead")
	host := fs.String("host", "", "evaluate on this host only (the source's host: stop where the packet leaves it; another host: the packet as it arrives there by the tunnel; the receiving host of an underlay source)")
	spoofMAC := fs.String("spoof-mac", "", "source MAC to send with instead of the VM's (underlay source: the outer source MAC)")
	spoofIP := fs.String("spoof-ip", "", "source IPv4 to send with instead of the VM's (underlay source: the inner source address)")
	vni := fs.Uint("vni", 0, "underlay source: tunnel key of the encapsulated packet (default: the destination VM's tier)")
	state := fs.String("state", "new", "the packet's conntrack state: new, established (a later packet of a connection), reply (a reply of the connection opened the other way: --from/--to/--sport/--dport describe the reply itself) or invalid")
	format := addOutputFlag(fs, "text", "format")
	trace := fs.Bool("trace", false, "also run ovs-appctl ofproto/trace for every hop on the real bridge and compare (needs the hosts' ovs-vswitchd)")
	bridge := fs.String("bridge", "cloudbr0", "bridge to trace")
	var rundirs, traceCmds multiFlag
	fs.Var(&rundirs, "rundir", "HOST=DIR: OVS_RUNDIR of a host's ovs-vswitchd for --trace (repeatable; default: the environment's OVS_RUNDIR for every host)")
	fs.Var(&traceCmds, "trace-cmd", "[HOST=]PREFIX: command prefix that runs ovs-appctl for a host, {host} is replaced by the host name, e.g. 'ssh root@{host}' or 'ip netns exec lab-{host}' (repeatable)")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each ovs-appctl call")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vpcflow explain: unexpected argument %q\n", fs.Arg(0))
		return explainUsage
	}
	if *bpPath == "" || *from == "" || *to == "" {
		fmt.Fprintln(os.Stderr, "vpcflow explain: --blueprint, --from and --to are required (see vpcflow explain -h)")
		return explainUsage
	}
	if *dport > 65535 || *sport > 65535 {
		fmt.Fprintln(os.Stderr, "vpcflow explain: --dport/--sport must be 0..65535")
		return explainUsage
	}
	if _, err := flows.ParseConnState(*state); err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow explain:", err)
		return explainUsage
	}
	if *vni > 16777215 {
		fmt.Fprintln(os.Stderr, "vpcflow explain: --vni must be 1..16777215")
		return explainUsage
	}
	runner, err := explainRunner(rundirs, traceCmds, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow explain:", err)
		return explainUsage
	}
	bp, err := flows.Load(*bpPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return explainError
	}
	cloud, err := flows.NewCloud(bp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow explain:", err)
		return explainError
	}
	q := flows.ExplainQuery{From: *from, To: *to, Proto: *proto, DPort: uint16(*dport), SPort: uint16(*sport),
		ARP: *arp, Host: *host, SpoofMAC: *spoofMAC, SpoofIP: *spoofIP, VNI: uint32(*vni)}
	if *state != "new" {
		q.State = *state
	}
	e, err := flows.Explain(cloud, q)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow explain:", err)
		return explainError
	}
	if *trace {
		if _, err := e.CheckTrace(context.Background(), *bridge, runner); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow explain: --trace:", err)
			return explainError
		}
	}
	if *format == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(e); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow explain:", err)
			return explainError
		}
	} else if *format == "yaml" {
		if err := writeYAML(os.Stdout, e); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow explain:", err)
			return explainError
		}
	} else {
		fmt.Print(e.Text())
	}
	if e.Trace != nil && !e.Trace.Agree {
		fmt.Fprintln(os.Stderr, "vpcflow explain: Open vSwitch disagrees with the model (see the DIFF lines): the installed flows do not implement the blueprint; run `vpcflow audit` for drift")
	}
	if e.Policy != nil && !e.Policy.Agree {
		fmt.Fprintf(os.Stderr, "vpcflow explain: the compiled flows disagree with the policy model: %s (a compiler bug: please report it with the blueprint)\n", e.Policy.Diff)
	}
	return e.ExitCode()
}

// explainRunner builds the ovs-appctl runner of --trace from --rundir
// HOST=DIR and --trace-cmd [HOST=]PREFIX.
func explainRunner(rundirs, prefixes []string, timeout time.Duration) (flows.TraceRunner, error) {
	dirs := map[string]string{}
	for _, r := range rundirs {
		h, d, ok := strings.Cut(r, "=")
		if !ok || h == "" || d == "" {
			return nil, fmt.Errorf("--rundir %q: want HOST=DIR", r)
		}
		dirs[h] = d
	}
	cmds := map[string]string{}
	for _, c := range prefixes {
		h, p, ok := strings.Cut(c, "=")
		// "HOST=PREFIX" only when HOST looks like a name (no spaces), so a
		// prefix containing '=' (env OVS_RUNDIR=...) works without HOST=.
		if !ok || strings.ContainsAny(h, " \t/") {
			h, p = "", c
		}
		cmds[h] = p
	}
	return func(ctx context.Context, host string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		prefix, ok := cmds[host]
		if !ok {
			prefix = cmds[""]
		}
		argv := strings.Fields(strings.ReplaceAll(prefix, "{host}", host))
		if d, ok := dirs[host]; ok {
			argv = append(argv, "env", "OVS_RUNDIR="+d)
		}
		argv = append(argv, "ovs-appctl", fmt.Sprintf("--timeout=%d", max(1, int(timeout.Seconds()+0.5))))
		argv = append(argv, args...)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return out.String(), fmt.Errorf("`%s`: %w: %s (is ovs-vswitchd running there? set --rundir %s=DIR or --trace-cmd)", strings.Join(argv, " "), err, strings.TrimSpace(out.String()), host)
		}
		return out.String(), nil
	}, nil
}
