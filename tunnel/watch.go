package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// ManagementFlowsInstalled reports whether a table-0 dump (the output of
// `ovs-ofctl --names dump-flows BRIDGE table=0`) holds the controller's
// management flows: at least one flow matching in_port=LOCAL and one
// matching in_port=<uplink>, whatever their cookie, priority or actions.
// uplink may list several ports separated by commas (a bond's members): a
// flow for any of them counts. Flows of other tables in the dump are ignored.
func ManagementFlowsInstalled(dump, uplink string) bool {
	local, up := false, false
	uplinks := strings.Split(uplink, ",")
	for _, line := range strings.Split(dump, "\n") {
		line = strings.TrimSpace(line)
		i := strings.Index(line, "actions=")
		if i < 0 {
			continue // header (OFPST_FLOW reply ...) or blank
		}
		match := line[:i]
		inTable0 := true
		for _, tok := range strings.FieldsFunc(match, func(r rune) bool { return r == ',' || r == ' ' }) {
			k, v, ok := strings.Cut(tok, "=")
			if !ok {
				continue
			}
			switch k {
			case "table":
				if v != "0" {
					inTable0 = false
				}
			case "in_port":
				if uq, err := strconv.Unquote(v); err == nil {
					v = uq
				}
				if v == "LOCAL" {
					local = local || inTable0
				}
				if uplink != "" && slices.Contains(uplinks, v) {
					up = up || inTable0
				}
			}
		}
	}
	return local && up
}

// DecideConnectionMode is the watcher's decision. With the management flows
// installed every Controller row must be out-of-band (closing the hidden
// in-band flows that let guests reach the controller); without them (a
// fresh or restarted ovs-vswitchd with an empty table) in-band must be open
// so the switch can reach the controller at all. modes maps target to
// effective mode (as ConnectionModes returns). It returns the mode to set
// and whether any row needs it; no rows means nothing to do.
func DecideConnectionMode(installed bool, modes map[string]string) (mode string, change bool) {
	mode = ModeInBand
	if installed {
		mode = ModeOutOfBand
	}
	for _, m := range modes {
		if m != mode {
			return mode, true
		}
	}
	return mode, false
}

// DumpTable0 runs `ovs-ofctl -O OpenFlow13 --timeout=5 --names dump-flows
// BRIDGE table=0` through the bridge's local management socket (found via
// OVS_RUNDIR like every OVS tool) and returns its output.
func DumpTable0(ctx context.Context, bridge string) (string, error) {
	cmd := exec.CommandContext(ctx, "ovs-ofctl", "-O", "OpenFlow13", "--timeout=5", "--names", "dump-flows", bridge, "table=0")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ovs-ofctl dump-flows %s: %v: %s", bridge, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Watcher is the host-side in-band control loop (vpcflow host watch): it
// keeps in-band control open exactly while the controller's management
// flows are missing from table 0. It never touches flows itself.
// WatchInput is what one watcher step observed.
type WatchInput struct {
	Installed       bool          // management flows present in table 0
	Connected       bool          // some Controller row is_connected
	DisconnectedFor time.Duration // how long no row has been connected (0 if connected)
	ConnectedFor    time.Duration // how long some row has been connected (0 if not)
	Current         string        // the rows' current mode (ModeInBand if any row is in-band)
	// OpenedUnreachable: in-band is open because the controller was
	// unreachable although management flows were installed.
	OpenedUnreachable bool
}

// Watcher timing defaults.
const (
	// DefaultDisconnectGrace: with management flows installed but no
	// controller connected for this long, in-band control is opened — the
	// management path itself may be broken (e.g. a foreign flow), and only
	// the controller can repair it.
	DefaultDisconnectGrace = 10 * time.Second
	// DefaultConnectedHold: in-band opened for an unreachable controller is
	// closed only after the controller has been connected this long (time
	// to reconcile and repair the management flows).
	DefaultConnectedHold = 3 * time.Second
)

// DecideMode is the watcher's policy, a pure function:
//   - management flows missing (fresh or restarted ovs-vswitchd): in-band,
//     so the controller behind cloudbr0 can be reached;
//   - flows installed but no controller connected for grace: in-band (the
//     management path is broken; the controller repairs it when it connects);
//   - in-band opened for missing flows: closed as soon as the flows are back;
//   - in-band opened for an unreachable controller: closed once the
//     controller has been connected for hold;
//   - otherwise out-of-band.
//
// It returns the wanted mode and why.
func DecideMode(in WatchInput, grace, hold time.Duration) (mode, reason string) {
	switch {
	case !in.Installed:
		return ModeInBand, "management flows missing: in-band control opened so the controller can be reached"
	case !in.Connected && in.DisconnectedFor >= grace:
		return ModeInBand, fmt.Sprintf("no controller connected for %s although management flows are installed: in-band control opened so the controller can repair the management path", in.DisconnectedFor.Round(time.Second))
	case in.Current == ModeInBand && in.OpenedUnreachable && !(in.Connected && in.ConnectedFor >= hold):
		return ModeInBand, "waiting for the controller to reconnect and repair the management flows"
	}
	return ModeOutOfBand, "in-band control closed: management flows installed"
}

type Watcher struct {
	// Endpoint is the local ovsdb-server (unix: socket recommended: it
	// does not depend on the bridge's flows).
	Endpoint string
	// Bridge is the provisioned bridge (cloudbr0).
	Bridge string
	// Uplink is the bridge's uplink port name (for a bond: its members,
	// comma-separated, as OpenFlow sees them).
	Uplink string
	// Dump reads table 0 (default DumpTable0).
	Dump func(ctx context.Context, bridge string) (string, error)
	// Logger (default: logrus standard logger).
	Logger logrus.FieldLogger

	// TLS is the client configuration for an ssl: Endpoint.
	TLS *tls.Config
	// Bootstrap, when set, are the host's management flows in ovs-ofctl
	// syntax (flows.CompileManagement rendered: LOCAL<->uplink, the tunnel
	// allowlist, every table's drop), with the controller's own cookies.
	// The watcher then recovers by installing them itself — an empty table
	// after an ovs-vswitchd restart, or a management path cut by a foreign
	// flow — and keeps in-band control closed at all times: OVS's hidden
	// in-band rules would otherwise flood management frames to guests and
	// let guests reach the controller while recovering. Without Bootstrap
	// the watcher falls back to opening in-band control (DecideMode).
	Bootstrap []string
	// Install applies flows (default: ovs-ofctl --bundle add-flows).
	Install func(ctx context.Context, bridge string, flows []string) error
	// DelFlows deletes flows matching a spec (default: ovs-ofctl del-flows).
	DelFlows   func(ctx context.Context, bridge, spec string) error
	lastRepair time.Time
	// DisconnectGrace and ConnectedHold tune DecideMode (defaults above).
	DisconnectGrace, ConnectedHold time.Duration

	// mu guards Uplink and Bootstrap once Run runs (SetConfig: the
	// blueprint was reloaded).
	mu sync.Mutex

	client            *Client
	connectedSince    time.Time
	disconnectedSince time.Time
	openedUnreachable bool
}

// Step reads table 0 and the Controller rows once and switches the
// connection mode when DecideConnectionMode says so. It returns the mode it
// set, or "" when nothing changed.
func (w *Watcher) Step(ctx context.Context) (string, error) {
	log := w.logger()
	dump := w.Dump
	if dump == nil {
		dump = DumpTable0
	}
	out, err := dump(ctx, w.Bridge)
	if err != nil {
		// ovs-vswitchd down or the bridge gone: nothing can be decided
		// (and the rows are moot until the switch is back).
		return "", err
	}
	uplink, bootstrap := w.config()
	installed := ManagementFlowsInstalled(out, uplink)
	if w.client == nil || !w.client.Connected() {
		if w.client != nil {
			w.client.Close()
			w.client = nil
		}
		c, err := DialTLS(ctx, w.Endpoint, w.TLS)
		if err != nil {
			return "", err
		}
		w.client = c
	}
	modes, err := w.client.ConnectionModes(ctx, w.Bridge)
	if err != nil {
		return "", err
	}
	connected, err := w.client.ControllerConnected(ctx, w.Bridge)
	if err != nil {
		return "", err
	}
	now := time.Now()
	in := WatchInput{Installed: installed, Connected: connected, Current: ModeOutOfBand, OpenedUnreachable: w.openedUnreachable}
	if connected {
		w.disconnectedSince = time.Time{}
		if w.connectedSince.IsZero() {
			w.connectedSince = now
		}
		in.ConnectedFor = now.Sub(w.connectedSince)
	} else {
		w.connectedSince = time.Time{}
		if w.disconnectedSince.IsZero() {
			w.disconnectedSince = now
		}
		in.DisconnectedFor = now.Sub(w.disconnectedSince)
	}
	for _, m := range modes {
		if m == ModeInBand {
			in.Current = ModeInBand
		}
	}
	grace, hold := w.DisconnectGrace, w.ConnectedHold
	if grace <= 0 {
		grace = DefaultDisconnectGrace
	}
	if hold <= 0 {
		hold = DefaultConnectedHold
	}
	if len(bootstrap) > 0 {
		return w.stepBootstrap(ctx, in, modes, grace, bootstrap)
	}
	mode, reason := DecideMode(in, grace, hold)
	change := false
	for _, m := range modes {
		if m != mode {
			change = true
		}
	}
	if !change {
		return "", nil
	}
	changed, err := w.client.SetConnectionMode(ctx, w.Bridge, mode)
	if err != nil {
		return "", err
	}
	if !changed {
		return "", nil
	}
	w.openedUnreachable = mode == ModeInBand && installed
	f := log.WithFields(logrus.Fields{"bridge": w.Bridge, "connection_mode": mode})
	if mode == ModeOutOfBand {
		f.Info(reason)
	} else {
		f.Warn(reason)
	}
	return mode, nil
}

func (w *Watcher) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return errors.New("watch interval must be positive")
	}
	defer w.Close()
	log := w.logger()
	t := time.NewTicker(interval)
	defer t.Stop()
	lastErr := ""
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second+interval)
		_, err := w.Step(sctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && err.Error() != lastErr:
			log.WithField("bridge", w.Bridge).WithError(err).Warn("watch step failed; retrying")
			lastErr = err.Error()
		case err == nil && lastErr != "":
			log.WithField("bridge", w.Bridge).Info("watch step recovered")
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Close ends the watcher's OVSDB session.
func (w *Watcher) Close() {
	if w.client != nil {
		w.client.Close()
		w.client = nil
	}
}

func (w *Watcher) logger() logrus.FieldLogger {
	if w.Logger == nil {
		return logrus.StandardLogger()
	}
	return w.Logger
}

// stepBootstrap is Step with bootstrap flows: in-band control stays closed;
// missing management flows are installed by the watcher; a controller
// unreachable past grace although the flows are present gets them
// re-installed and foreign flows removed from the management tables
// (classify, underlay_in, host_out), at most once per grace period.
func (w *Watcher) stepBootstrap(ctx context.Context, in WatchInput, modes map[string]string, grace time.Duration, bootstrap []string) (string, error) {
	log := w.logger().WithField("bridge", w.Bridge)
	install, del := w.Install, w.DelFlows
	if install == nil {
		install = installFlows
	}
	if del == nil {
		del = delFlows
	}
	did := ""
	switch {
	case !in.Installed:
		if err := install(ctx, w.Bridge, bootstrap); err != nil {
			return "", err
		}
		log.WithField("flows", len(bootstrap)).Warn("management flows missing: bootstrap management flows installed (LOCAL<->uplink, tunnel allowlist; guests stay dropped); in-band control stays closed")
		did = "bootstrap"
	case !in.Connected && in.DisconnectedFor >= grace && time.Since(w.lastRepair) >= grace:
		for _, t := range []string{"0", "10", "20"} {
			if err := del(ctx, w.Bridge, "table="+t+",cookie=0/0xff00000000000000"); err != nil {
				return "", err
			}
		}
		if err := install(ctx, w.Bridge, bootstrap); err != nil {
			return "", err
		}
		w.lastRepair = time.Now()
		log.Warnf("no controller connected for %s although management flows are installed: management flows re-installed and foreign flows removed from the management tables", in.DisconnectedFor.Round(time.Second))
		did = "repair"
	}
	for _, m := range modes {
		if m != ModeOutOfBand {
			if _, err := w.client.SetConnectionMode(ctx, w.Bridge, ModeOutOfBand); err != nil {
				return did, err
			}
			log.WithField("connection_mode", ModeOutOfBand).Info("in-band control closed: the watcher recovers with bootstrap flows instead")
			if did == "" {
				did = ModeOutOfBand
			}
			break
		}
	}
	return did, nil
}

func installFlows(ctx context.Context, bridge string, fs []string) error {
	cmd := exec.CommandContext(ctx, "ovs-ofctl", "-O", "OpenFlow13", "--timeout=10", "--bundle", "add-flows", bridge, "-")
	cmd.Stdin = strings.NewReader(strings.Join(fs, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ovs-ofctl add-flows %s: %v: %s", bridge, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func delFlows(ctx context.Context, bridge, spec string) error {
	cmd := exec.CommandContext(ctx, "ovs-ofctl", "-O", "OpenFlow13", "--timeout=10", "del-flows", bridge, spec)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ovs-ofctl del-flows %s %s: %v: %s", bridge, spec, err, strings.TrimSpace(string(out)))
	}
	return nil
}
