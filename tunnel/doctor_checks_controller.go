package tunnel

// vpcflow doctor checks 7 and 11: controller targets, TLS, connection and
// in-band mode, and the controller's own view of the bridge (GET /status).

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// 7. Controller targets, TLS, connection, in-band.

func (d *doctor) checkControllerTargets() CheckResult {
	if r, ok := d.needBridge(CheckControllerTargets); !ok {
		return r
	}
	var have []string
	for _, c := range d.br.Controllers {
		have = append(have, c.Target)
	}
	sort.Strings(have)
	fix := fmt.Sprintf("vpcflow host apply%s (sets one Controller row per blueprint controller)", d.hostSuffix())
	if len(have) == 0 {
		return fail(CheckControllerTargets, d.bridge+" has no controller: nothing programs it", fix)
	}
	if d.o.Blueprint != nil && len(d.o.Blueprint.Controllers) > 0 {
		var missing, extra []string
		for _, t := range d.o.Blueprint.Controllers {
			if !slices.Contains(have, t) {
				missing = append(missing, t)
			}
		}
		for _, t := range have {
			if !slices.Contains(d.o.Blueprint.Controllers, t) {
				extra = append(extra, t)
			}
		}
		if len(missing)+len(extra) > 0 {
			return warn(CheckControllerTargets, fmt.Sprintf("targets %s differ from the blueprint (missing: %s; not in the blueprint: %s)",
				strings.Join(have, ","), orNone(missing), orNone(extra)), fix)
		}
	}
	return pass(CheckControllerTargets, "targets "+strings.Join(have, ","))
}

func (d *doctor) checkControllerTLS() CheckResult {
	if r, ok := d.needBridge(CheckControllerTLS); !ok {
		return r
	}
	if len(d.br.Controllers) == 0 {
		return skip(CheckControllerTLS, "no controller targets")
	}
	var plain, ssl []string
	for _, c := range d.br.Controllers {
		switch {
		case strings.HasPrefix(c.Target, "ssl:"):
			ssl = append(ssl, c.Target)
		case strings.HasPrefix(c.Target, "tcp:"):
			plain = append(plain, c.Target)
		}
	}
	if len(ssl) > 0 && (d.db.SSL == nil || d.db.SSL.PrivateKey == "" || d.db.SSL.Certificate == "" || d.db.SSL.CACert == "") {
		return fail(CheckControllerTLS, "ssl: targets "+strings.Join(ssl, ",")+" but no complete SSL configuration (private key, certificate, CA): the switch cannot connect",
			"ovs-vsctl --timeout=10 set-ssl /etc/openvswitch/sc-privkey.pem /etc/openvswitch/sc-cert.pem /etc/openvswitch/cacert.pem")
	}
	if len(plain) > 0 {
		return warn(CheckControllerTLS, "control channel not encrypted: tcp: targets "+strings.Join(plain, ","),
			"use ssl: targets with ovs-vsctl set-ssl KEY CERT CA (mutual TLS) and ssl: controllers in the blueprint")
	}
	if len(ssl) > 0 {
		return pass(CheckControllerTLS, "all TCP targets use TLS (ssl:), set-ssl configured")
	}
	return pass(CheckControllerTLS, "only local (unix:) targets")
}

func (d *doctor) checkControllerConnected(ctx context.Context) CheckResult {
	if r, ok := d.needBridge(CheckControllerConnected); !ok {
		return r
	}
	if len(d.br.Controllers) == 0 {
		return skip(CheckControllerConnected, "no controller targets")
	}
	// is_connected is written only every ~5 s: poll before declaring a
	// connection down.
	br := d.br
	deadline := time.Now().Add(d.o.Wait)
	for !anyConnected(br) && d.o.Wait > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			deadline = time.Now()
		case <-time.After(500 * time.Millisecond):
		}
		if s, err := d.env.ReadOVSDB(ctx, d.o.Endpoint, d.bridge); err == nil && s.Bridge != nil {
			br = s.Bridge
		}
	}
	d.br.Controllers = br.Controllers // the connection-mode check uses the fresh rows
	var conn, down []string
	for _, c := range br.Controllers {
		if c.IsConnected {
			role := c.Role
			if role == "" {
				role = "other"
			}
			conn = append(conn, c.Target+" ("+role+")")
		} else {
			down = append(down, c.Target)
		}
	}
	if len(conn) == 0 {
		return fail(CheckControllerConnected, "no controller connected: "+strings.Join(down, ",")+" (Controller.is_connected lags ~5 s)",
			"start the controller (vpcflow controller) and check the path from "+d.bridge+" to it; re-run doctor after 5 s")
	}
	detail := "connected to " + strings.Join(conn, ", ")
	if len(down) > 0 {
		return warn(CheckControllerConnected, detail+"; not connected: "+strings.Join(down, ","),
			"check the missing replicas (vpcflow status on each)")
	}
	return pass(CheckControllerConnected, detail)
}

func anyConnected(b *BridgeState) bool {
	for _, c := range b.Controllers {
		if c.IsConnected {
			return true
		}
	}
	return false
}

func (d *doctor) checkConnectionMode() CheckResult {
	if r, ok := d.needBridge(CheckConnectionMode); !ok {
		return r
	}
	if len(d.br.Controllers) == 0 {
		return skip(CheckConnectionMode, "no controller targets")
	}
	var inband []string
	for _, c := range d.br.Controllers {
		if c.ConnectionMode == "" || c.ConnectionMode == ModeInBand {
			inband = append(inband, c.Target)
		}
	}
	switch {
	case len(inband) > 0 && anyConnected(d.br):
		return warn(CheckConnectionMode, "in-band control while the controller is connected ("+strings.Join(inband, ",")+"): OVS's hidden in-band flows let guests reach the controller",
			fmt.Sprintf("run vpcflow host watch%s on the host (it switches to out-of-band once the management flows are installed)", d.hostSuffix()))
	case len(inband) > 0:
		return pass(CheckConnectionMode, "in-band while no controller is connected (how a fresh or restarted switch reaches the controller)")
	}
	return pass(CheckConnectionMode, "out-of-band: no hidden in-band flows")
}

// 11. The controller's view of this bridge.

// doctorStatus is the part of the controller's GET /status doctor reads.
type doctorStatus struct {
	Revision uint32 `json:"revision"`
	Bridges  []struct {
		DatapathID string `json:"datapath_id"`
		Host       string `json:"host"`
		Known      bool   `json:"known"`
		Connected  bool   `json:"connected"`
		Role       string `json:"role"`
		Converged  bool   `json:"converged"`
		Owner      string `json:"owner"`
		Standby    string `json:"standby"`
		LastError  string `json:"last_error"`
	} `json:"bridges"`
}

func (d *doctor) bridgeDPID() string {
	if d.o.Host != nil && d.o.Host.DPID != 0 {
		return fmt.Sprintf("%016x", d.o.Host.DPID)
	}
	if d.br != nil {
		if v := d.br.OtherConfig["datapath-id"]; v != "" {
			return strings.ToLower(v)
		}
		return strings.ToLower(d.br.DatapathID)
	}
	return ""
}

func (d *doctor) checkControllerStatus(ctx context.Context) CheckResult {
	url := strings.TrimRight(d.o.ControllerURL, "/") + "/status"
	body, err := d.env.HTTPGet(ctx, url)
	if err != nil {
		if !d.o.ControllerURLSet {
			return skip(CheckControllerStatus, "no controller status API at "+d.o.ControllerURL+" (pass --controller-url to check convergence)")
		}
		return fail(CheckControllerStatus, fmt.Sprintf("cannot read %s: %v", url, err), "check --controller-url and that vpcflow controller runs with --http")
	}
	var st doctorStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return fail(CheckControllerStatus, fmt.Sprintf("%s is not a vpcflow status document: %v", url, err), "check --controller-url")
	}
	dpid := d.bridgeDPID()
	if dpid == "" {
		return skip(CheckControllerStatus, "datapath id unknown: pass --blueprint FILE --host NAME")
	}
	for _, b := range st.Bridges {
		if strings.ToLower(b.DatapathID) != dpid {
			continue
		}
		fix := "see vpcflow status --controller " + d.o.ControllerURL + " and the controller log"
		switch {
		case !b.Known:
			return fail(CheckControllerStatus, "the controller does not know datapath "+dpid+": it gets no guest flows", "add the host to the blueprint with datapath_id "+dpid)
		case !b.Connected && b.Owner == "":
			return fail(CheckControllerStatus, "datapath "+dpid+" is not connected to the controller at "+d.o.ControllerURL, fix)
		case strings.EqualFold(b.Role, "MASTER") && b.Converged:
			return pass(CheckControllerStatus, fmt.Sprintf("datapath %s converged, role MASTER, revision %d", dpid, st.Revision))
		case strings.EqualFold(b.Role, "MASTER"):
			detail := "datapath " + dpid + " mastered but not converged"
			if b.LastError != "" {
				detail += ": " + b.LastError
			}
			return fail(CheckControllerStatus, detail, fix)
		case b.Owner != "":
			return pass(CheckControllerStatus, fmt.Sprintf("datapath %s is mastered by replica %s (this replica: %s%s); its convergence is on the owner's /status", dpid, b.Owner, orDash(b.Role), standbyNote(b.Standby)))
		}
		return fail(CheckControllerStatus, fmt.Sprintf("no replica holds role MASTER for datapath %s (role here %s%s)", dpid, orDash(b.Role), standbyNote(b.Standby)), fix)
	}
	return fail(CheckControllerStatus, "the controller at "+d.o.ControllerURL+" does not list datapath "+dpid, "check that this host is in the controller's blueprint")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func standbyNote(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}
