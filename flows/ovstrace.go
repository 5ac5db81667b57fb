package flows

// This file compares an explanation with Open vSwitch: it parses the output
// of `ovs-appctl ofproto/trace` and `ovs-appctl dpif/show` (pure functions,
// unit-tested on captured output) and, through a caller-supplied runner that
// executes ovs-appctl on a host, checks that the real bridge takes the same
// flows (cookie rules, tables, priorities) and reaches the same outcome
// (drop, output ports, tunnel push/pop) as the model for every hop.

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// OVSTraceStep is one flow Open vSwitch matched, as ofproto/trace prints it:
// "40. ip,reg0=0x1389,nw_dst=10.10.1.0/24, priority 200, cookie 0xc00001389000001".
type OVSTraceStep struct {
	Section  int // index of the bridge("...") section (0 = the packet itself; native tunnel outputs re-enter the bridge in a new section)
	Table    TableID
	Match    string
	Priority int    // -1 for "No match."
	Cookie   Cookie // 0 when OVS prints no cookie (a flow added without one)
	NoMatch  bool   // "N. No match." (a table miss without any flow)
}

func (s OVSTraceStep) String() string {
	if s.NoMatch {
		return fmt.Sprintf("table %d (%s): no flow matched", s.Table, TableName(s.Table))
	}
	m := s.Match
	if m == "" {
		m = "(any)"
	}
	return fmt.Sprintf("table %d (%s) priority %d cookie %s [%s] match %s", s.Table, TableName(s.Table), s.Priority, s.Cookie, s.Cookie.Category(), m)
}

// OVSTraceActions is the parsed "Datapath actions:" line.
type OVSTraceActions struct {
	Drop    bool         // "drop" (no action at all)
	Outputs []int        // datapath port numbers output to (top level and inside clone())
	Push    []netip.Addr // tnl_push: outer destination of each encapsulation
	PushVNI []uint64     // tnl_push: VXLAN vni / GRE key (0 when absent)
	Pop     []int        // tnl_pop: datapath port of the tunnel that decapsulates
}

// OVSTrace is the parsed output of `ovs-appctl ofproto/trace`.
type OVSTrace struct {
	Flow            string // the "Flow:" line
	Bridges         []string
	Steps           []OVSTraceStep
	FinalFlow       string
	Megaflow        string
	DatapathActions string
	Actions         OVSTraceActions
	// NeighborMiss lists tunnel destinations OVS had no ARP entry for: the
	// trace stops at the tunnel output ("neighbor cache miss").
	NeighborMiss []netip.Addr
	// Messages are the "-> ..." and ">> ..." lines (tunnelling, skipped
	// outputs, errors), in order.
	Messages []string
}

var (
	traceStepRE = regexp.MustCompile(`^\s*(\d+)\.\s+(.*?)(?:,\s*)?priority (\d+)(?:, cookie (0x[0-9a-fA-F]+))?\s*$`)
	noMatchRE   = regexp.MustCompile(`^\s*(\d+)\.\s+No match\.?\s*$`)
	bridgeRE    = regexp.MustCompile(`^bridge\("([^"]*)"\)\s*$`)
	neighMissRE = regexp.MustCompile(`neighbor cache miss for (\S+)`)
	pushDstRE   = regexp.MustCompile(`ipv4\(src=[^,]*,dst=([0-9.]+)`)
	vniRE       = regexp.MustCompile(`(?:vni=|key=)(0x[0-9a-fA-F]+|\d+)`)
)

// ParseOFProtoTrace parses `ovs-appctl ofproto/trace BRIDGE FLOW` output
// (Open vSwitch 2.x/3.x text format). Lines it does not know are ignored;
// it fails only when the output has no "Datapath actions:" line (an error
// message instead of a trace).
func ParseOFProtoTrace(out string) (*OVSTrace, error) {
	t := &OVSTrace{}
	section := -1
	haveActions := false
	for _, line := range strings.Split(out, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "Flow: "):
			t.Flow = strings.TrimPrefix(line, "Flow: ")
		case strings.HasPrefix(line, "Final flow: "):
			t.FinalFlow = strings.TrimPrefix(line, "Final flow: ")
		case strings.HasPrefix(line, "Megaflow: "):
			t.Megaflow = strings.TrimPrefix(line, "Megaflow: ")
		case strings.HasPrefix(line, "Datapath actions: "):
			t.DatapathActions = strings.TrimSpace(strings.TrimPrefix(line, "Datapath actions: "))
			t.Actions = parseDatapathActions(t.DatapathActions)
			haveActions = true
		case bridgeRE.MatchString(line):
			section++
			t.Bridges = append(t.Bridges, bridgeRE.FindStringSubmatch(line)[1])
		case noMatchRE.MatchString(line):
			m := noMatchRE.FindStringSubmatch(line)
			tb, _ := strconv.Atoi(m[1])
			t.Steps = append(t.Steps, OVSTraceStep{Section: max(section, 0), Table: TableID(tb), Priority: -1, NoMatch: true})
		case traceStepRE.MatchString(line) && !strings.HasPrefix(trimmed, "->"):
			m := traceStepRE.FindStringSubmatch(line)
			tb, _ := strconv.Atoi(m[1])
			prio, _ := strconv.Atoi(m[3])
			var ck uint64
			if m[4] != "" {
				ck, _ = strconv.ParseUint(strings.TrimPrefix(strings.ToLower(m[4]), "0x"), 16, 64)
			}
			t.Steps = append(t.Steps, OVSTraceStep{Section: max(section, 0), Table: TableID(tb),
				Match: strings.TrimSuffix(strings.TrimSpace(m[2]), ","), Priority: prio, Cookie: Cookie(ck)})
		case strings.HasPrefix(trimmed, "->") || strings.HasPrefix(trimmed, ">>"):
			t.Messages = append(t.Messages, trimmed)
			if m := neighMissRE.FindStringSubmatch(trimmed); m != nil {
				if a, err := netip.ParseAddr(m[1]); err == nil {
					t.NeighborMiss = append(t.NeighborMiss, a)
				}
			}
		}
	}
	if !haveActions {
		msg := strings.TrimSpace(out)
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return nil, fmt.Errorf("not an ofproto/trace result (no \"Datapath actions:\" line): %s", msg)
	}
	return t, nil
}

// splitDPActions splits s at commas outside parentheses.
func splitDPActions(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	if rest := strings.TrimSpace(s[start:]); rest != "" {
		parts = append(parts, rest)
	}
	return parts
}

// parseDatapathActions extracts outputs, tunnel pushes and pops.
func parseDatapathActions(s string) OVSTraceActions {
	var a OVSTraceActions
	if s == "drop" || s == "" {
		a.Drop = true
		return a
	}
	var walk func(string)
	walk = func(s string) {
		for _, act := range splitDPActions(s) {
			name, arg := act, ""
			if i := strings.IndexByte(act, '('); i >= 0 && strings.HasSuffix(act, ")") {
				name, arg = act[:i], act[i+1:len(act)-1]
			}
			switch name {
			case "clone":
				walk(arg)
			case "tnl_push":
				dst := netip.Addr{}
				if m := pushDstRE.FindStringSubmatch(arg); m != nil {
					dst, _ = netip.ParseAddr(m[1])
				}
				a.Push = append(a.Push, dst)
				var vni uint64
				if m := vniRE.FindStringSubmatch(arg); m != nil {
					vni, _ = strconv.ParseUint(m[1], 0, 64)
				}
				a.PushVNI = append(a.PushVNI, vni)
			case "tnl_pop":
				n, _ := strconv.Atoi(arg)
				a.Pop = append(a.Pop, n)
			default:
				if n, err := strconv.Atoi(act); err == nil {
					a.Outputs = append(a.Outputs, n)
				}
			}
		}
	}
	walk(s)
	a.Drop = len(a.Outputs) == 0 && len(a.Push) == 0 && len(a.Pop) == 0
	return a
}

// ParseDPIFShow maps datapath port numbers to OpenFlow port names for one
// bridge from `ovs-appctl dpif/show` ("    vnet0 3/4: (system)"); the
// bridge's own internal port (OpenFlow port 65534) is named LOCAL.
func ParseDPIFShow(out, bridge string) (map[int]string, error) {
	ports := map[int]string{}
	in := false
	lineRE := regexp.MustCompile(`^\s+(\S+) (\d+)/(\d+):`)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasSuffix(line, ":") && strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "    ") {
			in = strings.TrimSuffix(strings.TrimSpace(line), ":") == bridge
			continue
		}
		if !in {
			continue
		}
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		dp, _ := strconv.Atoi(m[3])
		name := m[1]
		if m[2] == "65534" {
			name = PortLocal
		}
		ports[dp] = name
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("dpif/show lists no ports of bridge %s", bridge)
	}
	return ports, nil
}

// TraceRunner runs `ovs-appctl ARGS...` against host's ovs-vswitchd and
// returns its output. The CLI runs the local ovs-appctl (per-host
// OVS_RUNDIR or a command prefix); tests run it in the lab's namespaces.
type TraceRunner func(ctx context.Context, host string, args ...string) (string, error)

// TraceCheck is the comparison of one ofproto/trace run with the model
// hops it covers.
type TraceCheck struct {
	Host string `json:"host"`
	// Hops are the indexes (0-based) into Explanation.Hops this trace
	// covers: a sent/underlay/decapsulated hop and its encapsulated hops.
	Hops    []int  `json:"hops"`
	Command string `json:"command"` // the ovs-appctl command line
	Agree   bool   `json:"agree"`
	// Model and OVS are the compared sequences: one "table/priority/rule"
	// entry per flow, then the outcome.
	ModelFlows   []string `json:"model_flows"`
	OVSFlows     []string `json:"ovs_flows"`
	ModelOutcome []string `json:"model_outcome"` // sorted: drop | port NAME | tunnel DST key K | decapsulate
	OVSOutcome   []string `json:"ovs_outcome"`
	// DatapathActions is OVS's "Datapath actions:" line, verbatim.
	DatapathActions string `json:"datapath_actions"`
	// Diff explains every disagreement (empty when Agree).
	Diff []string `json:"diff,omitempty"`
	// Warnings are conditions that limit the comparison without being a
	// disagreement (a tunnel neighbour not yet resolved).
	Warnings []string `json:"warnings,omitempty"`
	// Adjusted says how the traced packet differs from the model's hop
	// packet and why (an underlay hop to a host without tunnel_mac is
	// traced with the MAC Open vSwitch decapsulates on).
	Adjusted []string `json:"adjusted,omitempty"`
	// Raw is the ofproto/trace output.
	Raw string `json:"-"`
}

// TraceReport is the result of CheckTrace.
type TraceReport struct {
	Bridge string       `json:"bridge"`
	Agree  bool         `json:"agree"`
	Checks []TraceCheck `json:"checks"`
}

// Text renders the report.
func (r *TraceReport) Text() string {
	var b strings.Builder
	if r.Agree {
		fmt.Fprintf(&b, "ofproto/trace: Open vSwitch AGREES with the model on every hop (%d traces)\n", len(r.Checks))
	} else {
		b.WriteString("ofproto/trace: Open vSwitch DISAGREES with the model\n")
	}
	for _, c := range r.Checks {
		hops := make([]string, len(c.Hops))
		for i, h := range c.Hops {
			hops[i] = strconv.Itoa(h + 1)
		}
		state := "agrees"
		if !c.Agree {
			state = "DISAGREES"
		}
		fmt.Fprintf(&b, "  host %s, hop %s: %s (%d flows, outcome %s)\n", c.Host, strings.Join(hops, "+"), state, len(c.OVSFlows), strings.Join(c.OVSOutcome, ", "))
		fmt.Fprintf(&b, "    %s\n", c.Command)
		fmt.Fprintf(&b, "    datapath actions: %s\n", c.DatapathActions)
		for _, d := range c.Diff {
			fmt.Fprintf(&b, "    DIFF %s\n", d)
		}
		for _, a := range c.Adjusted {
			fmt.Fprintf(&b, "    traced with %s\n", a)
		}
		for _, w := range c.Warnings {
			fmt.Fprintf(&b, "    warning: %s\n", w)
		}
	}
	return b.String()
}

// traceGroups groups hops the way Open vSwitch traces them: every hop that
// enters a bridge from a port (sent, underlay, decapsulated) starts a trace;
// encapsulated hops belong to the latest sent/decapsulated hop of the same
// host (native tunnelling re-enters the bridge from LOCAL inside the same
// ofproto/trace).
func (e *Explanation) traceGroups() [][]int {
	var groups [][]int
	last := map[string]int{} // host -> group index of the latest tunnelling hop
	for i, h := range e.Hops {
		if h.Stage == "encapsulated" {
			if g, ok := last[h.Host]; ok {
				groups[g] = append(groups[g], i)
				continue
			}
		}
		groups = append(groups, []int{i})
		if h.Stage == "sent" || h.Stage == "decapsulated" {
			last[h.Host] = len(groups) - 1
		}
	}
	return groups
}

func traceFlowKey(t TableID, prio int, c Cookie) string {
	return fmt.Sprintf("table %d/priority %d/%s %s", t, prio, c.Category(), c.Rule())
}

// CheckTrace runs ofproto/trace on bridge for every hop (through run) and
// compares the flows taken (table, priority and cookie rule bits: category
// and object, not the revision) and the outcome with the model. It fills
// e.Trace; a runner failure is an error.
func (e *Explanation) CheckTrace(ctx context.Context, bridge string, run TraceRunner) (*TraceReport, error) {
	rep := &TraceReport{Bridge: bridge, Agree: true, Checks: []TraceCheck{}}
	portMaps := map[string]map[int]string{}
	tp := &tnlPorts{run: run}
	for _, g := range e.traceGroups() {
		first := &e.Hops[g[0]]
		if first.TraceFlow == "" {
			continue
		}
		flow := first.TraceFlow
		var ut underlayTrace
		if first.Stage == "underlay" {
			var err error
			if ut, err = e.underlayFlow(ctx, first, tp); err != nil {
				return nil, err
			}
			flow = ut.flow
		}
		// One --ct-next per conntrack lookup on the way: the state the
		// model assumed (explain --state), so policy packets are traced
		// as new, established, reply or invalid alike.
		args := []string{"ofproto/trace"}
		opts := ""
		for _, f := range e.ctNext(g) {
			args = append(args, "--ct-next", f)
			opts += "--ct-next " + f + " "
		}
		args = append(args, bridge, flow)
		chk := TraceCheck{Host: first.Host, Hops: g, Adjusted: ut.adjusted,
			Command: fmt.Sprintf("ovs-appctl ofproto/trace %s%s '%s'", opts, bridge, flow)}
		out, err := run(ctx, first.Host, args...)
		if err != nil {
			return nil, fmt.Errorf("host %s: %s: %w", first.Host, chk.Command, err)
		}
		chk.Raw = out
		ot, err := ParseOFProtoTrace(out)
		if err != nil {
			return nil, fmt.Errorf("host %s: %s: %w", first.Host, chk.Command, err)
		}
		pm, ok := portMaps[first.Host]
		if !ok {
			show, err := run(ctx, first.Host, "dpif/show")
			if err != nil {
				return nil, fmt.Errorf("host %s: ovs-appctl dpif/show: %w", first.Host, err)
			}
			if pm, err = ParseDPIFShow(show, bridge); err != nil {
				return nil, fmt.Errorf("host %s: %w", first.Host, err)
			}
			portMaps[first.Host] = pm
		}
		e.compare(&chk, g, ot, pm)
		if !chk.Agree {
			rep.Agree = false
			if first.Stage == "underlay" {
				for _, h := range append(ut.hints, e.decapHints(ctx, first, tp)...) {
					chk.Diff = append(chk.Diff, "hint: "+h)
				}
			}
		}
		rep.Checks = append(rep.Checks, chk)
	}
	e.Trace = rep
	return rep, nil
}

// compare fills chk from the model hops g and OVS's trace.
func (e *Explanation) compare(chk *TraceCheck, g []int, ot *OVSTrace, ports map[int]string) {
	chk.DatapathActions = ot.DatapathActions
	missed := map[netip.Addr]bool{}
	for _, a := range ot.NeighborMiss {
		missed[a] = true
		chk.Warnings = append(chk.Warnings, fmt.Sprintf("Open vSwitch on %s has no ARP entry yet for tunnel destination %s: ofproto/trace stops at the tunnel output (the datapath would send an ARP request and drop this first packet); compared up to the tunnel output only. Send one packet between the hosts (e.g. ping) and rerun for a full comparison.", chk.Host, a))
	}
	var modelFlows, modelOut []string
	// A bond member is any member: the switch hashes (balance-slb/tcp)
	// where the model takes the first live one.
	bondPort := func(port string) string {
		if bh := e.cloud.Blueprint.HostByName(chk.Host); bh != nil && bh.IsBond() && bh.IsUplinkPort(port) {
			return "bond " + bh.Uplink + " (a member)"
		}
		return port
	}
	for _, i := range g {
		h := &e.Hops[i]
		if h.Stage == "encapsulated" && missed[h.trace.Input.IPDst] {
			continue
		}
		for _, s := range h.trace.Steps {
			modelFlows = append(modelFlows, traceFlowKey(s.Table, int(s.Flow.Priority), s.Cookie))
		}
		for k, o := range h.Outputs {
			switch o.Kind {
			case "tunnel":
				dst := h.trace.Outputs[k].Packet.TunDst
				if missed[dst] {
					continue
				}
				modelOut = append(modelOut, fmt.Sprintf("tunnel %s key %d", dst, o.TunnelKey))
			case "decapsulate":
				modelOut = append(modelOut, "decapsulate")
			default:
				modelOut = append(modelOut, "port "+bondPort(o.Port))
			}
		}
	}
	if len(modelOut) == 0 {
		modelOut = []string{"drop"}
	}
	var ovsFlows, ovsOut []string
	for _, s := range ot.Steps {
		if s.NoMatch {
			ovsFlows = append(ovsFlows, fmt.Sprintf("table %d/no match", s.Table))
			continue
		}
		ovsFlows = append(ovsFlows, traceFlowKey(s.Table, s.Priority, s.Cookie))
	}
	for _, p := range ot.Actions.Outputs {
		name, ok := ports[p]
		if !ok {
			name = fmt.Sprintf("datapath port %d (unknown)", p)
		}
		ovsOut = append(ovsOut, "port "+bondPort(name))
	}
	for i, d := range ot.Actions.Push {
		ovsOut = append(ovsOut, fmt.Sprintf("tunnel %s key %d", d, ot.Actions.PushVNI[i]))
	}
	for range ot.Actions.Pop {
		ovsOut = append(ovsOut, "decapsulate")
	}
	if len(ovsOut) == 0 {
		ovsOut = []string{"drop"}
	}
	// The outer packet of a tunnel output leaves by the uplink: OVS shows
	// it as a plain output after tnl_push, the model as the encapsulated
	// hop's output. Both are "port <uplink>" entries: nothing to adjust.
	sort.Strings(modelOut)
	sort.Strings(ovsOut)
	chk.ModelFlows, chk.OVSFlows, chk.ModelOutcome, chk.OVSOutcome = modelFlows, ovsFlows, modelOut, ovsOut
	chk.Agree = true
	n := max(len(modelFlows), len(ovsFlows))
	for i := 0; i < n; i++ {
		var m, o string
		if i < len(modelFlows) {
			m = modelFlows[i]
		}
		if i < len(ovsFlows) {
			o = ovsFlows[i]
		}
		if m == o {
			continue
		}
		chk.Agree = false
		d := fmt.Sprintf("flow %d: model takes %s", i+1, orNone(m))
		if i < len(ovsFlows) {
			d += fmt.Sprintf(", Open vSwitch takes %s", ot.Steps[i])
			if !ot.Steps[i].NoMatch {
				d += " (" + DescribeRule(e.cloud.Blueprint, ot.Steps[i].Cookie) + ")"
			}
		} else {
			d += ", Open vSwitch takes nothing"
		}
		chk.Diff = append(chk.Diff, d)
		break // later flows follow from the first difference
	}
	if strings.Join(modelOut, "|") != strings.Join(ovsOut, "|") {
		chk.Agree = false
		mv, ov := "delivers", "delivers"
		if modelOut[0] == "drop" {
			mv = "drops"
		}
		if ovsOut[0] == "drop" {
			ov = "drops"
		}
		chk.Diff = append(chk.Diff, fmt.Sprintf("outcome: model %s [%s], Open vSwitch %s [%s] (datapath actions: %s)",
			mv, strings.Join(modelOut, ", "), ov, strings.Join(ovsOut, ", "), ot.DatapathActions))
	}
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}
