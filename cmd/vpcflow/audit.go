package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vpcflow/vpcflow/controller"
)

func init() {
	register("audit", "intended vs installed flows per bridge, per-rule counters (exit 0 in sync, 1 drift, 2 cannot tell)", runAudit)
}

func runAudit(args []string) int {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	ctl := fs.String("controller", "http://127.0.0.1:9653", "controller API URL")
	host := fs.String("host", "", "audit only this host")
	format := addOutputFlag(fs, "table", "format") // json is the stable compliance format, docs/audit.md
	all := fs.Bool("all-rules", false, "table format: list every rule's counters, not only drop rules that matched packets")
	repair := fs.Bool("repair", false, "also ask the controller to repair the drift it finds now (POST /audit?repair=1; needs --token-file or a client certificate); the report shows the state before the repair. Without it audit only reads")
	api := addAPIClientFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	q := url.Values{}
	if *host != "" {
		q.Set("host", *host)
	}
	method := http.MethodGet
	if *repair {
		method = http.MethodPost
		q.Set("repair", "1")
	}
	u := strings.TrimRight(*ctl, "/") + "/audit"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := api.do(method, u, 2*time.Minute, *repair)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vpcflow audit: cannot reach the controller at %s: %v (is it running? pass --controller URL)\n", *ctl, err)
		return 2
	}
	defer resp.Body.Close()
	if err := checkAPIVersion(resp, *ctl); err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow audit:", err)
		return 2
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if why := apiRefusal(resp.StatusCode, string(b)); why != "" {
			fmt.Fprintf(os.Stderr, "vpcflow audit --repair: %s\n", why)
		} else {
			fmt.Fprintf(os.Stderr, "vpcflow audit: controller answered %s\n", resp.Status)
		}
		return 2
	}
	var rep controller.AuditReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		fmt.Fprintf(os.Stderr, "vpcflow audit: bad audit document: %v\n", err)
		return 2
	}
	if *host != "" && len(rep.Bridges) == 0 {
		fmt.Fprintf(os.Stderr, "vpcflow audit: no bridge for host %q\n", *host)
		return 2
	}
	if rep.RepairRequested {
		fmt.Fprintln(os.Stderr, "vpcflow audit: repair requested for the bridges with drift; the report shows the state before it (run vpcflow audit again to confirm)")
	}
	if *format != "table" {
		if err := writeStructured(os.Stdout, *format, rep); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow audit:", err)
			return 2
		}
	} else {
		printAudit(&rep, *all)
	}
	switch {
	case !rep.Complete:
		return 2
	case !rep.InSync:
		return 1
	}
	return 0
}

func printAudit(rep *controller.AuditReport, all bool) {
	fmt.Printf("audit at %s: blueprint revision %d (%s)", rep.GeneratedAt.Format(time.RFC3339), rep.Revision, short(rep.BlueprintHash))
	if rep.Replica != "" {
		fmt.Printf(", replica %s", rep.Replica)
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tDATAPATH\tROLE\tSTATE\tINTENDED\tINSTALLED\tIN-SYNC\tMISSING\tEXTRA\tMODIFIED")
	for _, b := range rep.Bridges {
		state := "in sync"
		switch {
		case !b.Audited:
			state = "CANNOT TELL: " + b.Error
		case b.Drift:
			state = "DRIFT"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", dash(b.Host), b.DatapathID, dash(b.Role), state,
			b.Intended, b.Installed, b.InSync, len(b.Missing), len(b.Extra), len(b.Modified))
	}
	tw.Flush()
	for _, b := range rep.Bridges {
		if !b.Audited {
			continue
		}
		for _, f := range b.Missing {
			fmt.Printf("%s MISSING  [%s] %s\n    %s\n", b.Host, f.Rule, f.Describe, f.Flow)
		}
		for _, f := range b.Extra {
			fmt.Printf("%s EXTRA    [%s] %s\n    %s\n", b.Host, f.Rule, f.Describe, f.Flow)
		}
		for _, f := range b.Modified {
			fmt.Printf("%s MODIFIED [%s] %s\n    intended:  %s\n    installed: %s\n", b.Host, f.Rule, f.Describe, f.Flow, f.Installed)
		}
	}
	fmt.Println("\nrule counters (drop rules with matches; --all-rules for every rule):")
	tw = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tRULE\tCOOKIE\tFLOWS\tPACKETS\tBYTES\tWHAT")
	for _, b := range rep.Bridges {
		for _, r := range b.Rules {
			if !all && !(r.Drop && r.Packets > 0) {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", b.Host, r.Rule, r.Cookie, r.Flows, r.Packets, r.Bytes, r.Describe)
		}
	}
	tw.Flush()
	printPolicyRules(rep)
}

// printPolicyRules lists the network ACL and security group rules, summed
// over the audited bridges: the flows that decide (installed/intended),
// their counters, and the hosts where a rule's flows differ.
func printPolicyRules(rep *controller.AuditReport) {
	if len(rep.PolicyRules) == 0 {
		return
	}
	drift := map[string][]string{}
	for _, b := range rep.Bridges {
		for _, r := range b.PolicyRules {
			if !r.InSync {
				drift[r.Rule] = append(drift[r.Rule], dash(b.Host))
			}
		}
	}
	fmt.Println("\npolicy rules (the flows that decide, installed/intended; packets and bytes summed over the audited hosts):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tVERDICT\tFLOWS\tPACKETS\tBYTES\tSTATE")
	for _, r := range rep.PolicyRules {
		state := "in sync"
		if h := drift[r.Rule]; len(h) > 0 {
			state = "DRIFT on " + strings.Join(h, ", ")
		} else if !r.InSync {
			state = "DRIFT"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%d\t%s\n", r.Rule, r.Verdict, r.FlowsInstalled, r.FlowsIntended, r.Packets, r.Bytes, state)
	}
	tw.Flush()
}
