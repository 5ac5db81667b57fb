package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vpcflow/vpcflow/controller"
)

func init() {
	register("status", "show each bridge: connected, role, converged, flows, revision", runStatus)
}

func fetchStatus(url string, api *apiClientFlags) (*controller.Status, error) {
	resp, err := api.do(http.MethodGet, strings.TrimRight(url, "/")+"/status", 5*time.Second, false)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the controller at %s: %w (is it running? pass --controller URL)", url, err)
	}
	defer resp.Body.Close()
	if err := checkAPIVersion(resp, url); err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("controller at %s answered %s", url, resp.Status)
	}
	var st controller.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("controller at %s: bad status document: %w", url, err)
	}
	return &st, nil
}

func runStatus(args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	url := fs.String("controller", "http://127.0.0.1:9653", "controller status API URL")
	format := addOutputFlag(fs, "table")
	addDeprecatedJSONFlag(fs, "json", format)
	api := addAPIClientFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	st, err := fetchStatus(*url, api)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow status:", err)
		return 2
	}
	if *format != "table" { // the document as the controller sent it; the exit code as for the table
		if err := writeStructured(os.Stdout, *format, st); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow status:", err)
			return 2
		}
		return statusExit(st)
	}
	fmt.Printf("blueprint %s revision %d (%s)\n", st.Blueprint, st.Revision, short(st.BlueprintHash))
	if st.LastReloadError != "" {
		fmt.Printf("last reload REJECTED (last good policy kept):\n  %s\n", strings.ReplaceAll(st.LastReloadError, "\n", "\n  "))
	}
	if cs := st.Cluster; cs != nil {
		fmt.Printf("cluster: this replica %s, quorum %v\n", cs.Self, cs.Quorum)
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  MEMBER\tADDRESS\tVERSION\tREVISION\tBLUEPRINT\tCONNECTED\tOWNS")
		for _, m := range cs.Members {
			name := m.Name
			if m.Self {
				name += " (self)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%d\t%s\n", name, m.Addr, dash(m.Version), m.Revision, short(m.Hash), m.Connected, strings.Join(m.Owned, ","))
		}
		tw.Flush()
		if !cs.Quorum {
			fmt.Println("NO QUORUM: this replica writes to no bridge")
		}
		printProtocolRefusals(cs) // apiversion.go
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tDATAPATH\tCONNECTED\tROLE\tOWNER\tCONVERGED\tFLOWS\tREVISION\tNOTE")
	for _, b := range st.Bridges {
		host := b.Host
		if !b.Known {
			host = "(unknown)"
		}
		note := b.LastError
		if len(b.MissingPorts) > 0 {
			note = strings.TrimSpace(note + " missing ports: " + strings.Join(b.MissingPorts, ","))
		}
		converged := fmt.Sprint(b.Converged)
		if b.Standby != "" {
			converged = "standby"
			note = strings.TrimSpace(b.Standby + " " + note)
		}
		if b.Fenced { // a newer policy is installed: someone must load it
			converged = "fenced"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%d/%d\t%d\t%s\n", host, b.DatapathID, b.Connected, dash(b.Role), dash(b.Owner), converged,
			b.FlowsInstalled, b.FlowsIntended, b.Revision, note)
	}
	tw.Flush()
	return statusExit(st)
}

// statusExit is status's exit code, the same for every output format: 1
// when a bridge (of the blueprint or an unknown datapath) is neither
// converged nor on standby, or is fenced; else 0.
func statusExit(st *controller.Status) int {
	for _, b := range st.Bridges {
		if b.Fenced || (b.Standby == "" && !b.Converged) {
			return 1
		}
	}
	return 0
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
