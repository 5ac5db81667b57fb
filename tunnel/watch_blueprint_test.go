package tunnel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// watchBP is a small two-host blueprint for host kvm1 (uplink up); peers
// are extra trusted_peers.
func watchBP(revision int, up string, peers ...string) string {
	return fmt.Sprintf(`version: 1
revision: %d
management:
  cidrs: [192.0.2.0/24]
trusted_peers: [%s]
controllers: [tcp:192.0.2.250:6653]
hosts:
  - name: kvm1
    datapath_id: "00000000000000a1"
    tunnel_ip: 198.51.100.11
    uplink: %s
  - name: kvm2
    datapath_id: "00000000000000a2"
    tunnel_ip: 198.51.100.12
    uplink: eth0
vpcs: []
`, revision, strings.Join(peers, ", "), up)
}

// writeBP writes text to path and moves its mtime forward (a rewrite within
// the file system's timestamp granularity must still be seen).
func writeBP(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mt := st.ModTime().Add(time.Second)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

// syncBuf is a log sink safe for concurrent writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func bufLogger() (logrus.FieldLogger, *syncBuf) {
	buf := &syncBuf{}
	l := logrus.New()
	l.SetOutput(buf)
	l.SetLevel(logrus.DebugLevel)
	return l, buf
}

func hasPeerFlow(bootstrap []string, peer string) bool {
	for _, f := range bootstrap {
		if strings.Contains(f, "nw_src="+peer+",") || strings.HasSuffix(f, "nw_src="+peer) {
			return true
		}
	}
	return false
}

// TestWatchBlueprintReload: the watcher's blueprint is reloaded, validated,
// and a bad file keeps the last good one (issue 13, defect 8).
func TestWatchBlueprintReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blueprint.yaml")
	writeBP(t, path, watchBP(1, "eth0"))
	log, buf := bufLogger()
	b, err := LoadWatchBlueprint(path, "kvm1", true, log)
	if err != nil {
		t.Fatal(err)
	}
	c0 := b.Config()
	if c0.Uplink != "eth0" || c0.Revision != 1 || len(c0.Bootstrap) == 0 || !hasPeerFlow(c0.Bootstrap, "198.51.100.12") || hasPeerFlow(c0.Bootstrap, "203.0.113.7") {
		t.Fatalf("initial config %+v", c0)
	}
	// Nothing changed on disk: a poll-triggered reload does nothing.
	if changed, err := b.Reload("file changed"); changed || err != nil {
		t.Fatalf("unchanged file: %v %v", changed, err)
	}

	// A new trusted peer and revision: new bootstrap flows.
	writeBP(t, path, watchBP(2, "eth0", "203.0.113.7"))
	changed, err := b.Reload("file changed")
	if err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	c1 := b.Config()
	if c1.Revision != 2 || !hasPeerFlow(c1.Bootstrap, "203.0.113.7") {
		t.Fatalf("after reload %+v", c1)
	}

	// Bad files: each rejected with a clear error, the last good kept.
	for _, bad := range []struct{ name, text, want string }{
		{"unknown key", strings.Replace(watchBP(3, "eth0"), "uplink: eth0", "uplink: eth0\n    uplinc: eth1", 1), path + ":"},
		{"host gone", strings.Replace(watchBP(3, "eth0"), "name: kvm1", "name: kvm9", 1), `host "kvm1" is not in the blueprint (hosts: kvm9, kvm2)`},
		{"older revision", watchBP(1, "eth0", "203.0.113.9"), "revision 1 is older than the revision in force 2"},
		{"same revision, other content", watchBP(2, "eth0", "203.0.113.9"), "revision 2 has different content"},
		{"not yaml", "version: [", path},
	} {
		writeBP(t, path, bad.text)
		changed, err := b.Reload("SIGHUP")
		if err == nil || changed || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: changed=%v err=%v, want an error with %q", bad.name, changed, err, bad.want)
		}
		if got := b.Config(); got.Hash != c1.Hash || strings.Join(got.Bootstrap, "\n") != strings.Join(c1.Bootstrap, "\n") {
			t.Errorf("%s: last good blueprint not kept: %+v", bad.name, got)
		}
	}
	if out := buf.String(); !strings.Contains(out, "blueprint rejected, last good bootstrap flows kept: "+path+":") {
		t.Errorf("rejections not logged with file:line:\n%s", out)
	}
	// An unknown-key error names the line.
	writeBP(t, path, strings.Replace(watchBP(3, "eth0"), "uplink: eth0", "uplink: eth0\n    uplinc: eth1", 1))
	if _, err := b.Reload("SIGHUP"); err == nil || !strings.Contains(err.Error(), path+":12") {
		t.Errorf("unknown key: %v, want %s:12", err, path)
	}

	// A good file again, with another uplink: taken.
	writeBP(t, path, watchBP(4, "eth9", "203.0.113.7"))
	if changed, err := b.Reload("SIGHUP"); err != nil || !changed || b.Config().Uplink != "eth9" {
		t.Fatalf("recovered: %v %v %+v", changed, err, b.Config())
	}

	// Without bootstrap flows (--inband-recovery) only the uplink matters.
	nb, err := LoadWatchBlueprint(path, "kvm1", false, log)
	if err != nil || nb.Config().Bootstrap != nil || nb.Config().Uplink != "eth9" {
		t.Fatalf("inband-recovery: %+v %v", nb.Config(), err)
	}
	if _, err := LoadWatchBlueprint(path, "kvm7", true, log); err == nil || !strings.Contains(err.Error(), `host "kvm7" is not in the blueprint`) {
		t.Fatalf("unknown host at start: %v", err)
	}
}

// TestWatchBlueprintFollow: SIGHUP and a file change both reach the
// watcher (SetConfig), a bad file does not.
func TestWatchBlueprintFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blueprint.yaml")
	writeBP(t, path, watchBP(1, "eth0"))
	log, _ := bufLogger()
	b, err := LoadWatchBlueprint(path, "kvm1", true, log)
	if err != nil {
		t.Fatal(err)
	}
	c := b.Config()
	w := &Watcher{Uplink: c.Uplink, Bootstrap: c.Bootstrap}
	var mu sync.Mutex
	applied := 0
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Follow(ctx, 20*time.Millisecond, hup, func(c WatchConfig) {
			w.SetConfig(c.Uplink, c.Bootstrap)
			mu.Lock()
			applied++
			mu.Unlock()
		})
	}()
	defer func() { cancel(); <-done }()
	count := func() int { mu.Lock(); defer mu.Unlock(); return applied }

	// A file change, noticed by the poll.
	writeBP(t, path, watchBP(2, "eth0", "203.0.113.7"))
	waitFor(t, "the new peer's bootstrap flow in the watcher", 10*time.Second, func() (bool, string) {
		_, bs := w.config()
		return hasPeerFlow(bs, "203.0.113.7"), fmt.Sprint(count())
	})
	// A bad file: nothing applied, the watcher keeps its flows.
	n := count()
	writeBP(t, path, "version: [")
	hup <- nil
	time.Sleep(200 * time.Millisecond) // a bounded window: nothing may be applied
	if _, bs := w.config(); count() != n || !hasPeerFlow(bs, "203.0.113.7") {
		t.Fatalf("bad file applied (%d -> %d)", n, count())
	}
	// SIGHUP with a good file (same size and mtime as a file the poll
	// might not notice: the signal alone must reload).
	text := watchBP(3, "eth0", "203.0.113.8")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	hup <- nil
	waitFor(t, "the SIGHUP reload in the watcher", 10*time.Second, func() (bool, string) {
		_, bs := w.config()
		return hasPeerFlow(bs, "203.0.113.8"), fmt.Sprint(count())
	})
}

// TestWatcherFollowsBlueprintAgainstSwitch: on a real ovs-vswitchd, the
// watcher installs the bootstrap flows of the blueprint in force when the
// table empties, and after the blueprint changes (a new trusted peer, a
// new revision) the new ones, not those it read at start.
func TestWatcherFollowsBlueprintAgainstSwitch(t *testing.T) {
	l := startOVS(t, true)
	t.Setenv("OVS_RUNDIR", l.dir)
	br, up := randName("vft"), randName("vfu")
	l.addBridge(br, up)
	ctx := ctxT(t)
	if _, err := Apply(ctx, applyOpts(l, br, testHost(up))); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "blueprint.yaml")
	writeBP(t, path, watchBP(1, up))
	log, buf := bufLogger()
	b, err := LoadWatchBlueprint(path, "kvm1", true, log)
	if err != nil {
		t.Fatal(err)
	}
	c := b.Config()
	w := &Watcher{Endpoint: l.endpoint, Bridge: br, Uplink: c.Uplink, Bootstrap: c.Bootstrap, Logger: log}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	hup := make(chan os.Signal, 1)
	go func() { _ = w.Run(rctx, 50*time.Millisecond); done <- struct{}{} }()
	go func() {
		b.Follow(rctx, 50*time.Millisecond, hup, func(c WatchConfig) { w.SetConfig(c.Uplink, c.Bootstrap) })
		done <- struct{}{}
	}()
	defer func() { cancel(); <-done; <-done }()

	table10 := func() string {
		out, _ := l.try("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", br, "table=10")
		return out
	}
	waitFor(t, "revision 1 bootstrap flows", 10*time.Second, func() (bool, string) {
		d := table10()
		return strings.Contains(d, "nw_src=198.51.100.12"), d
	})
	if d := table10(); strings.Contains(d, "nw_src=203.0.113.7") {
		t.Fatalf("new peer before the change:\n%s", d)
	}

	// The blueprint changes (a new trusted peer, revision 2); the watcher
	// must take it before it next needs its bootstrap flows.
	writeBP(t, path, watchBP(2, up, "203.0.113.7"))
	waitFor(t, "the watcher reloading the blueprint", 10*time.Second, func() (bool, string) {
		return strings.Contains(buf.String(), "blueprint loaded"), ""
	})
	l.ofctl("del-flows", br) // what a restarted ovs-vswitchd looks like
	waitFor(t, "revision 2 bootstrap flows after the table emptied", 10*time.Second, func() (bool, string) {
		d := table10()
		return strings.Contains(d, "nw_src=203.0.113.7") && strings.Contains(d, "cookie=0x4cb007107000002"), d
	})
}
