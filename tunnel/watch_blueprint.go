package tunnel

// This file makes `vpcflow host watch` follow its blueprint: the bootstrap
// management flows it installs when the table is empty (or the controller
// unreachable) are compiled from the blueprint, so they must be the current
// blueprint's, not the one read at start-up (issue 13, defect 8). The file
// is re-read on SIGHUP and when its modification time or size changes (the
// same mtime/size poll as the controller's watcher); a file that does not
// load, validate, name this host, or is older than the one in force is
// rejected with its errors (file:line) logged, and the last good blueprint
// stays in force. A host file (`--host-config`, flows.HostConfig) is
// followed by the same code: it is read as its host-only blueprint.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// WatchConfig is what the watcher takes from the blueprint.
type WatchConfig struct {
	// Uplink is the host's uplink port(s) as OpenFlow sees them, comma-
	// separated (a bond's members): how the management flows are recognised.
	Uplink string
	// Bootstrap are the host's management flows in ovs-ofctl syntax
	// (nil with in-band recovery).
	Bootstrap []string
	Revision  uint32
	Hash      string
	// Endpoint is the host's ovsdb: from the blueprint ("" when unset).
	Endpoint string
}

// SetConfig replaces the watcher's uplink and bootstrap flows; the next
// Step uses them. Safe to call while Run is running.
func (w *Watcher) SetConfig(uplink string, bootstrap []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.Uplink, w.Bootstrap = uplink, bootstrap
}

// config returns the uplink and bootstrap flows in force.
func (w *Watcher) config() (string, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.Uplink, w.Bootstrap
}

// WatchBlueprint follows one host's view of a blueprint file, or of its
// host file.
type WatchBlueprint struct {
	path      string
	host      string
	bootstrap bool // compile bootstrap flows (false: --inband-recovery)
	log       logrus.FieldLogger
	// load reads the file: flows.Load, or for a host file
	// flows.LoadHostConfigBlueprint; what names the file in messages.
	load     func(path string) (*flows.Blueprint, error)
	what     string
	hostFile bool // the host must be the file's own host (Hosts[0]), not a peer

	mu    sync.Mutex // serialises reloads (SIGHUP and the poll)
	stamp string     // mtime/size of the file last read
	cfg   WatchConfig
}

// LoadWatchBlueprint reads path for host. bootstrap selects whether the
// host's bootstrap management flows are compiled. An error here is fatal
// for the watcher (there is no last good blueprint yet).
func LoadWatchBlueprint(path, host string, bootstrap bool, log logrus.FieldLogger) (*WatchBlueprint, error) {
	return loadWatch(&WatchBlueprint{path: path, host: host, bootstrap: bootstrap, log: log, load: flows.Load, what: "blueprint"})
}

// LoadWatchHostConfig is LoadWatchBlueprint for a host file (kind
// vpcflow.host/v1, `vpcflow host config`): the same reload rules, with
// "host file" in the messages; host must be the file's own host.
func LoadWatchHostConfig(path, host string, bootstrap bool, log logrus.FieldLogger) (*WatchBlueprint, error) {
	return loadWatch(&WatchBlueprint{path: path, host: host, bootstrap: bootstrap, log: log, load: flows.LoadHostConfigBlueprint, what: "host file", hostFile: true})
}

func loadWatch(b *WatchBlueprint) (*WatchBlueprint, error) {
	if b.log == nil {
		b.log = logrus.StandardLogger()
	}
	path := b.path
	b.stamp = flows.FileStamp(path)
	bp, err := b.load(path)
	if err != nil {
		return nil, err
	}
	cfg, err := b.compile(bp)
	if err != nil {
		return nil, err
	}
	b.cfg = cfg
	return b, nil
}

// Config returns the configuration in force.
func (b *WatchBlueprint) Config() WatchConfig {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg
}

// compile checks that bp can drive this host's watcher and compiles it.
func (b *WatchBlueprint) compile(bp *flows.Blueprint) (WatchConfig, error) {
	h := bp.HostByName(b.host)
	if b.hostFile && (len(bp.Hosts) == 0 || &bp.Hosts[0] != h) {
		of := "no host"
		if len(bp.Hosts) > 0 {
			of = bp.Hosts[0].Name
		}
		return WatchConfig{}, fmt.Errorf("%s: this is the host file of %s, not of %s: install %s's own file (vpcflow host config --host %s)", b.path, of, b.host, b.host, b.host)
	}
	if h == nil {
		var names []string
		for _, x := range bp.Hosts {
			names = append(names, x.Name)
		}
		return WatchConfig{}, fmt.Errorf("%s: host %q is not in the blueprint (hosts: %s): keep this host in hosts: or stop its watcher", b.path, b.host, strings.Join(names, ", "))
	}
	if h.Uplink == "" {
		return WatchConfig{}, fmt.Errorf("%s: host %s has no uplink: the management flows cannot be recognised: set hosts[].uplink", b.path, h.Name)
	}
	cfg := WatchConfig{Uplink: strings.Join(h.UplinkPorts(), ","), Revision: bp.Revision, Hash: bp.Hash(), Endpoint: h.OVSDB}
	if b.bootstrap {
		cfg.Bootstrap = strings.Split(strings.TrimSpace(flows.Render(flows.CompileManagement(bp, h), false)), "\n")
	}
	return cfg, nil
}

// Reload re-reads the file. It returns whether the configuration in force
// changed (uplink or bootstrap flows) and the reason a file was rejected;
// a rejected file is logged line by line and the last good configuration
// stays in force. Like the controller, it refuses a lower revision and the
// same non-zero revision with other content. With reason "file changed"
// it does nothing when the file has not changed since it was last read
// (a SIGHUP may have read this version meanwhile).
func (b *WatchBlueprint) Reload(reason string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	stamp := flows.FileStamp(b.path)
	if reason == "file changed" && stamp == b.stamp {
		return false, nil
	}
	b.stamp = stamp
	cfg, err := b.read()
	log := b.log.WithFields(logrus.Fields{"reason": reason, strings.ReplaceAll(b.what, " ", "_"): b.path})
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			log.Error(b.what + " rejected, last good bootstrap flows kept: " + line)
		}
		return false, err
	}
	if cfg.Hash == b.cfg.Hash {
		log.WithField("revision", cfg.Revision).Info(b.what + " unchanged")
		return false, nil
	}
	old := b.cfg
	b.cfg = cfg
	changed := cfg.Uplink != old.Uplink || strings.Join(cfg.Bootstrap, "\n") != strings.Join(old.Bootstrap, "\n")
	f := log.WithFields(logrus.Fields{"revision": cfg.Revision, "hash": cfg.Hash[:12], "bootstrap_flows": len(cfg.Bootstrap), "bootstrap_changed": changed})
	if cfg.Endpoint != old.Endpoint {
		f.WithFields(logrus.Fields{"ovsdb_was": old.Endpoint, "ovsdb": cfg.Endpoint}).Warn("the host's ovsdb: changed in the " + b.what + ": the watcher keeps its OVSDB session; restart it to use the new endpoint")
	}
	f.Info(b.what + " loaded: the watcher uses its bootstrap flows from now on")
	return changed, nil
}

func (b *WatchBlueprint) read() (WatchConfig, error) {
	bp, err := b.load(b.path)
	if err != nil {
		return WatchConfig{}, err
	}
	cfg, err := b.compile(bp)
	if err != nil {
		return WatchConfig{}, err
	}
	if err := flows.CheckSuccessor(b.cfg.Revision, b.cfg.Hash, bp); err != nil {
		return WatchConfig{}, fmt.Errorf("%s: %w", b.path, err)
	}
	return cfg, nil
}

// Follow reloads on every value from hup and whenever the file's mtime or
// size changes (checked every poll), calling apply with the new
// configuration after each accepted change, until ctx is done.
func (b *WatchBlueprint) Follow(ctx context.Context, poll time.Duration, hup <-chan os.Signal, apply func(WatchConfig)) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		var changed bool
		select {
		case <-ctx.Done():
			return
		case <-hup:
			changed, _ = b.Reload("SIGHUP")
		case <-t.C:
			b.mu.Lock()
			seen := flows.FileStamp(b.path) == b.stamp
			b.mu.Unlock()
			if seen {
				continue
			}
			changed, _ = b.Reload("file changed")
		}
		if changed {
			apply(b.Config())
		}
	}
}
