package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
)

// TestHostWatchFollowsBlueprint: `vpcflow host watch` follows its blueprint
// file (issue 13, defect 8). After the blueprint changes (a new trusted
// peer, revision 2), the watcher on kvm1, when it next needs its bootstrap
// flows (the table emptied as by an ovs-vswitchd restart, no controller
// running), installs the new blueprint's bootstrap flows, not the ones it
// read at start; a bad file afterwards is rejected with file:line and the
// last good bootstrap flows stay in force.
func TestHostWatchFollowsBlueprint(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, nil))
	// Only the watcher may write flows from now on.
	if err := e.ctl.Stop(); err != nil {
		t.Fatalf("stop controller: %v", err)
	}
	watchLog := filepath.Join(e.lab.Dir(), "kvm1", "watch.log")
	const peer = "198.51.100.77"
	// kvm1's tunnel allowlist flow for the new peer, revision 2:
	// category tunnel-allowlist (0x04), object 198.51.100.77 (0xc633644d).
	const peerCookie = "cookie=0x4c633644d000002"
	table10 := func() string {
		out, _ := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", lab.Bridge, "table=10")
		return out
	}
	emptyTable := func() {
		t.Helper()
		if _, err := e.lab.OVS(e.ctx, "kvm1", "ovs-ofctl", "-O", "OpenFlow13", "del-flows", lab.Bridge); err != nil {
			t.Fatal(err)
		}
	}
	if d := table10(); strings.Contains(d, "nw_src="+peer) {
		t.Fatalf("the new peer is trusted before the change:\n%s", d)
	}

	bp2 := demoBlueprint(t, func(s string) string {
		s = strings.Replace(s, "revision: 1", "revision: 2", 1)
		return strings.Replace(s, "trusted_peers: []", "trusted_peers: ["+peer+"]", 1)
	})
	writeAtomic(t, e.bpPath, bp2)
	// Empty the table (as an ovs-vswitchd restart does) until the watcher
	// has put bootstrap flows back that trust the new peer: flows of the
	// old blueprint mean it has not followed the file (yet).
	eventually(t, 20*time.Second, "kvm1's watcher installs the revision 2 bootstrap flows (new trusted peer) into an emptied table", func() (bool, string) {
		emptyTable()
		d := ""
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if d = table10(); strings.Contains(d, "tunnel-allowlist") || strings.Contains(d, "nw_src=") {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		return strings.Contains(d, "nw_src="+peer) && strings.Contains(d, peerCookie), d
	})
	if l := readFile(watchLog); !strings.Contains(l, "blueprint loaded") || !strings.Contains(l, "revision=2") {
		t.Errorf("the watcher's log does not show the reload:\n%s", tailLines(l, 5))
	}
	t.Logf("bootstrap flows of revision 2 installed by the watcher:\n%s", grepLines(table10(), peer, 3))

	// A bad file: rejected (file:line), the revision 2 flows stay in force.
	writeAtomic(t, e.bpPath, strings.Replace(bp2, "    uplink: eth0", "    uplink: eth0\n    uplinc: eth1", 1))
	eventually(t, 15*time.Second, "kvm1's watcher rejects the bad blueprint with file:line", func() (bool, string) {
		l := readFile(watchLog)
		return strings.Contains(l, "blueprint rejected, last good bootstrap flows kept: "+e.bpPath+":"), tailLines(l, 3)
	})
	emptyTable()
	eventually(t, 15*time.Second, "kvm1's watcher reinstalls the last good (revision 2) bootstrap flows", func() (bool, string) {
		d := table10()
		return strings.Contains(d, "nw_src="+peer) && strings.Contains(d, peerCookie), d
	})
	t.Logf("kvm1 watcher log:\n%s", grepLines(readFile(watchLog), "blueprint", 6))
}
