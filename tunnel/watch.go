package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// ManagementFlowsInstalled reports whether a table-0 dump (the output of
// `ovs-ofctl --names dump-flows BRIDGE table=0`) holds the controller's
// management flows: at least one flow matching in_port=LOCAL and one
// matching in_port=<uplink>, whatever their cookie, priority or actions.
// Flows of other tables in the dump are ignored.
func ManagementFlowsInstalled(dump, uplink string) bool {
	local, up := false, false
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
				if uplink != "" && v == uplink {
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
type Watcher struct {
	// Endpoint is the local ovsdb-server (unix: socket recommended: it
	// does not depend on the bridge's flows).
	Endpoint string
	// Bridge is the provisioned bridge (cloudbr0).
	Bridge string
	// Uplink is the bridge's uplink port name.
	Uplink string
	// Dump reads table 0 (default DumpTable0).
	Dump func(ctx context.Context, bridge string) (string, error)
	// Logger (default: logrus standard logger).
	Logger logrus.FieldLogger

	client *Client
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
	installed := ManagementFlowsInstalled(out, w.Uplink)
	if w.client == nil || !w.client.Connected() {
		if w.client != nil {
			w.client.Close()
			w.client = nil
		}
		c, err := Dial(ctx, w.Endpoint)
		if err != nil {
			return "", err
		}
		w.client = c
	}
	modes, err := w.client.ConnectionModes(ctx, w.Bridge)
	if err != nil {
		return "", err
	}
	mode, change := DecideConnectionMode(installed, modes)
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
	f := log.WithFields(logrus.Fields{"bridge": w.Bridge, "connection_mode": mode})
	if mode == ModeOutOfBand {
		f.Info("in-band control closed: management flows installed")
	} else {
		f.Warn("management flows missing: in-band control opened so the controller can be reached")
	}
	return mode, nil
}

// Run calls Step every interval until ctx ends; errors are logged (once
// per distinct message) and retried. It returns nil when ctx is cancelled.
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
