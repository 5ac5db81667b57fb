package controller

import (
	"strings"
	"testing"
	"time"
)

// TestDriftFingerprintOVS: on a real ovs-vswitchd, a drift check of an
// unchanged table takes the fingerprint path (no full decode), counters
// that move with traffic are still read on that path and are not drift,
// and a flow whose actions are rewritten behind the controller's back
// (same match, priority and cookie, so the same flow count) is detected
// and repaired.
func TestDriftFingerprintOVS(t *testing.T) {
	r := ofStartReloadLab(t, 300*time.Millisecond)
	r.waitRev(1)
	fast := func() int { return r.hook.count("reconciled: in sync", "fingerprint", true) }
	ofWaitFor(t, 15*time.Second, "a drift check on the fingerprint path", func() bool { return fast() > 0 })

	const driftMsg = "drift detected: installed flows differ from the intended flows; repairing"
	drift0 := r.hook.count(driftMsg, "", nil)
	if drift0 != 0 {
		t.Fatalf("%d drift repairs before the test changed anything", drift0)
	}
	packets := func() uint64 { // vpcflow_rule_packets_total of the bridge, all categories
		rc := r.c.metrics.rules
		rc.mu.Lock()
		defer rc.mu.Unlock()
		var n uint64
		for _, v := range rc.m[0xa1] {
			n += v
		}
		return n
	}
	// Traffic moves counters: a spoofed ARP from blue-web-1's port (dropped
	// and counted by the port security flows).
	pk0 := packets()
	for i := 0; i < 5; i++ {
		r.lab.run("ovs-appctl", "netdev-dummy/receive", "vnet0",
			"eth(src=02:00:00:00:00:99,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0806),arp(sip=10.10.1.99,tip=10.10.1.12,op=1,sha=02:00:00:00:00:99,tha=00:00:00:00:00:00)")
	}
	n := fast()
	ofWaitFor(t, 15*time.Second, "the injected packets counted by a fingerprint-path drift check", func() bool {
		return fast() > n && packets() >= pk0+5
	})
	if d := r.hook.count(driftMsg, "", nil) - drift0; d != 0 {
		t.Fatalf("moving counters were taken for drift %d times", d)
	}

	// Rewrite one flow's output port, keeping its match, priority, cookie
	// and even its length (one output action for another): only the
	// action's bytes differ.
	var table, rest, to string
	for _, line := range strings.Split(r.lab.run("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", r.br), "\n") {
		i, j := strings.Index(line, "table="), strings.Index(line, " actions=")
		if i < 0 || j < 0 || !strings.Contains(line, "priority=") {
			continue
		}
		acts := line[j+len(" actions="):]
		if strings.Contains(acts, ",") || (acts != "LOCAL" && !strings.HasPrefix(acts, "output:")) {
			continue // a single output action only
		}
		to = "output:vnet4"
		if acts == to {
			continue
		}
		// "cookie=0x..., table=T, priority=P,MATCH actions=..." (no stats).
		f := strings.SplitN(line[i:j], ", ", 2)
		if len(f) == 2 && strings.HasPrefix(f[1], "priority=") {
			table, rest = f[0], f[1]
			break
		}
	}
	if table == "" {
		t.Fatal("no single-output flow to rewrite in the dump")
	}
	r.lab.run("ovs-ofctl", "-O", "OpenFlow13", "--strict", "mod-flows", r.br, table+","+rest+" actions="+to)
	repaired := r.hook.count("reconciled", "reason", "drift check")
	ofWaitFor(t, 15*time.Second, "the rewritten flow detected as drift and repaired", func() bool {
		return r.hook.count(driftMsg, "modified", 1) > drift0 && r.hook.count("reconciled", "reason", "drift check") > repaired
	})
	r.waitRev(1)
	r.audit("after the repair")
	if out := r.lab.run("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", r.br); strings.Contains(out, rest+" actions="+to) {
		t.Fatalf("the rewritten flow %s was not repaired:\n%s", rest, out)
	}
	// And the repaired table is clean again: the fingerprint path resumes.
	n = fast()
	ofWaitFor(t, 15*time.Second, "the fingerprint path after the repair", func() bool { return fast() > n })

	// A reload's delta keeps the table proven (the fingerprint is updated
	// with what the delta deleted and read back): the drift checks after it
	// stay on the fingerprint path, no full decode in between.
	full := func() int { return r.hook.count("reconciled: in sync", "reason", "drift check") - fast() }
	full0, inc0 := full(), r.hook.count("reconciled", "incremental", true)
	anchor := "          - {name: blue-web-2, host: kvm2, port: vnet0, mac: \"52:54:00:b1:01:0c\", ip: 10.10.1.12}"
	r.extra[anchor] = []string{"          - {name: blue-web-3, host: kvm2, port: vnet5, mac: \"52:54:00:b1:01:0d\", ip: 10.10.1.13}"}
	r.write(2)
	if err := r.c.Reload("test"); err != nil {
		t.Fatal(err)
	}
	r.waitRev(2)
	if r.hook.count("reconciled", "incremental", true) == inc0 {
		t.Fatal("the reload was not applied as a delta")
	}
	n = fast()
	ofWaitFor(t, 15*time.Second, "two fingerprint-path drift checks after the delta", func() bool { return fast() > n+1 })
	if f := full() - full0; f != 0 {
		t.Errorf("%d full drift checks after the delta, want 0 (the fingerprint was not carried over)", f)
	}
	r.audit("after the delta")
}
