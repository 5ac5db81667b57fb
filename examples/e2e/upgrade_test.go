package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/cluster"
	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

// Two builds in one cluster (docs/upgrade.md). The test links the binary
// twice with different -X versions: build N as released, and build N+1
// with the test knob cluster.protocolTest=next, so that it speaks gossip
// protocol ProtocolMax+1 and sends an optional state field build N does not
// know. A third link (protocolTest=incompatible) raises the protocol floor
// for the incompatible-mix check.
const (
	versionN    = "e2e-upgrade-N"
	versionNext = "e2e-upgrade-N+1"
	versionBad  = "e2e-upgrade-incompatible"
)

// buildVariant links cmd/vpcflow with the given build version and protocol
// test knob (CGO_ENABLED=0 as `make build`).
func buildVariant(t *testing.T, dir, version, knob string) string {
	t.Helper()
	out := filepath.Join(dir, "vpcflow-"+strings.NewReplacer("+", "plus").Replace(version))
	ld := "-X github.com/vpcflow/vpcflow/buildinfo.version=" + version
	if knob != "" {
		ld += " -X github.com/vpcflow/vpcflow/cluster.protocolTest=" + knob
	}
	cmd := exec.Command("go", "build", "-ldflags", ld, "-o", out, "github.com/vpcflow/vpcflow/cmd/vpcflow")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", version, err, b)
	}
	return out
}

// startReplicaBin runs replica i from binary bin (the lab's ReplicaArgs,
// its own blueprint file), appending to the replica's usual log file.
func (ce *clusterEnv) startReplicaBin(i int, bin, blueprint string) {
	ce.t.Helper()
	log := filepath.Join(ce.lab.Dir(), "controller.log")
	if i > 0 {
		log = filepath.Join(ce.lab.Dir(), fmt.Sprintf("controller-%d.log", i+1))
	}
	argv := append([]string{bin, "controller"}, ce.lab.ReplicaArgs(i, "--drift-interval", "5s", "--blueprint", blueprint)...)
	p, err := ce.lab.StartProcess(ce.lab.ReplicaNS(i), fmt.Sprintf("controller-%d", i+1), log, argv...)
	if err != nil {
		ce.t.Fatal(err)
	}
	ce.procs[i] = p
	ce.t.Cleanup(func() {
		if p.Running() {
			_ = p.Kill()
		}
	})
}

// waitVersions waits until every replica in rs lists exactly the members
// of rs with the wanted build versions and protocols (by replica index).
func (ce *clusterEnv) waitVersions(rs []int, version map[int]string, protocol map[int]uint8) {
	ce.t.Helper()
	eventually(ce.t, 30*time.Second, fmt.Sprintf("replicas %v list each other with versions %v, protocols %v", rs, version, protocol), func() (bool, string) {
		for _, i := range rs {
			st, err := ce.lab.ReplicaStatus(ce.ctx, i)
			if err != nil {
				return false, err.Error()
			}
			if st.Cluster == nil || len(st.Cluster.Members) != len(rs) {
				return false, fmt.Sprintf("replica %d: %+v", i, st.Cluster)
			}
			if st.Version != version[i] || st.Cluster.Protocol != protocol[i] {
				return false, fmt.Sprintf("replica %d: version %s protocol %d", i, st.Version, st.Cluster.Protocol)
			}
			for _, m := range st.Cluster.Members {
				j := slices.IndexFunc(rs, func(j int) bool { return m.Name == ce.lab.ReplicaAddr(j)+":6653" })
				if j < 0 || m.Version != version[rs[j]] || m.Protocol != protocol[rs[j]] {
					return false, fmt.Sprintf("replica %d sees member %s version %q protocol %d", i, m.Name, m.Version, m.Protocol)
				}
			}
		}
		return true, ""
	})
}

// reloadOn writes revision rev (trusting one more tunnel peer, which adds
// an allowlist flow on every switch) into replica i's file only, and waits
// until every replica enforces it and every switch has the flow.
func (ce *clusterEnv) reloadOn(i int, paths map[int]string, rev int, peer string) {
	t := ce.t
	t.Helper()
	old, err := os.ReadFile(paths[i])
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(old), "\n")
	for k, l := range lines {
		if strings.HasPrefix(l, "revision:") {
			lines[k] = fmt.Sprintf("revision: %d", rev)
		}
		if strings.HasPrefix(l, "trusted_peers:") {
			lines[k] = strings.Replace(l, "]", ", "+peer+"]", 1)
			lines[k] = strings.Replace(lines[k], "[, ", "[", 1)
		}
	}
	changed := strings.Join(lines, "\n")
	nbp, err := flows.Parse("changed", []byte(changed))
	if err != nil || nbp.Revision != uint32(rev) {
		t.Fatalf("blueprint revision %d: %v", rev, err)
	}
	tmp := paths[i] + ".tmp"
	if err := os.WriteFile(tmp, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, paths[i]); err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	eventually(t, 60*time.Second, fmt.Sprintf("every replica enforces revision %d", rev), func() (bool, string) {
		for _, j := range allReplicas {
			st, err := ce.lab.ReplicaStatus(ce.ctx, j)
			if err != nil {
				return false, err.Error()
			}
			if st.Revision != uint32(rev) || st.BlueprintHash != nbp.Hash() {
				return false, fmt.Sprintf("replica %d: revision %d from %s", j, st.Revision, st.Blueprint)
			}
		}
		return true, ""
	})
	eventually(t, 60*time.Second, fmt.Sprintf("the allowlist flow for %s on every switch", peer), func() (bool, string) {
		for _, h := range ce.bp.Hosts {
			out, err := ce.lab.OVS(ce.ctx, h.Name, "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", lab.Bridge)
			if err != nil {
				return false, err.Error()
			}
			if !strings.Contains(out, peer) {
				return false, h.Name + " lacks it"
			}
		}
		return true, ""
	})
	t.Logf("revision %d, reloaded on replica %d only, is on every switch %s after the edit", rev, i, time.Since(edited).Round(time.Millisecond))
	if _, err := ce.lab.WaitClusterConverged(ce.ctx, allReplicas, 60*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestClusterRollingUpgrade: replicas of build N and N+1 (a newer gossip
// protocol with an optional field N does not know) form one cluster; each
// bridge has exactly one MASTER; a blueprint change reloaded on a replica
// of either build reaches every bridge; `vpcflow status` shows both
// versions; a replica of an incompatible protocol is refused by both
// others, which keep their quorum and every bridge; and a rolling
// replacement (replica 0, then replica 1, stopped and restarted as N+1)
// loses no packet of a continuous cross-host ping.
func TestClusterRollingUpgrade(t *testing.T) {
	dir := t.TempDir()
	binN := buildVariant(t, dir, versionN, "")
	binNext := buildVariant(t, dir, versionNext, "next")
	binBad := buildVariant(t, dir, versionBad, "incompatible")

	bp := clusterBlueprint(t)
	e := startEnvNoController(t, bp)
	ce := &clusterEnv{env: e, procs: map[int]*lab.Proc{}}
	paths := map[int]string{}
	for _, i := range allReplicas {
		paths[i] = filepath.Join(dir, fmt.Sprintf("replica%d.yaml", i))
		if err := os.WriteFile(paths[i], []byte(bp), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const pN, pNext = cluster.ProtocolMax, cluster.ProtocolMax + 1
	version := map[int]string{0: versionN, 1: versionN, 2: versionNext}
	protocol := map[int]uint8{0: pN, 1: pN, 2: pNext}
	for _, i := range allReplicas {
		bin := binN
		if version[i] == versionNext {
			bin = binNext
		}
		ce.startReplicaBin(i, bin, paths[i])
	}

	// 1. The mixed cluster: one membership, one MASTER per bridge.
	ce.waitVersions(allReplicas, version, protocol)
	v := ce.settledView()
	t.Logf("mixed cluster (N, N, N+1) converged: %s", v.Ownership())
	for _, i := range []int{0, 2} {
		out, _ := ce.lab.Exec(ce.ctx, ce.lab.ReplicaNS(i), vpcflowBin, "status", "--controller", lab.ControllerURL)
		if !strings.Contains(out, versionN) || !strings.Contains(out, versionNext) {
			t.Fatalf("vpcflow status on replica %d does not show both versions:\n%s", i, out)
		}
		if i == 0 {
			t.Logf("vpcflow status on replica 0 (build N) during the mix:\n%s", out)
		}
	}

	// 2. A blueprint change reloaded on either build reaches every bridge.
	ce.reloadOn(2, paths, 2, "203.0.113.98") // on the N+1 replica
	ce.reloadOn(0, paths, 3, "203.0.113.99") // on an N replica
	newest, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2} { // every file at the newest revision for the restarts
		if err := os.WriteFile(paths[i], newest, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// 3. An incompatible build in replica 2's place is refused by both
	// N replicas: they keep the quorum and every bridge, without loss.
	ce.pingStrict("an incompatible build replacing replica 2", func() {
		if err := ce.procs[2].Stop(); err != nil {
			t.Fatal(err)
		}
		ce.startReplicaBin(2, binBad, paths[2])
		eventually(t, 30*time.Second, "replicas 0 and 1 count a refused member, replica 2 sees no quorum", func() (bool, string) {
			for _, i := range []int{0, 1} {
				st, err := ce.lab.ReplicaStatus(ce.ctx, i)
				if err != nil {
					return false, err.Error()
				}
				if st.Cluster == nil || st.Cluster.ProtocolRefused.Members == 0 || len(st.Cluster.Members) != 2 || !st.Cluster.Quorum {
					return false, fmt.Sprintf("replica %d: %+v", i, st.Cluster)
				}
			}
			st, err := ce.lab.ReplicaStatus(ce.ctx, 2)
			if err != nil {
				return false, err.Error()
			}
			return st.Cluster != nil && !st.Cluster.Quorum && len(st.Cluster.Members) == 1, fmt.Sprintf("replica 2: %+v", st.Cluster)
		})
		if _, err := ce.lab.WaitClusterConverged(ce.ctx, []int{0, 1}, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		assertNoMaster(t, ce, 2, 2*time.Second)
	})
	if log := readFile(filepath.Join(ce.lab.Dir(), "controller.log")); !strings.Contains(log, "refused a cluster member of an incompatible protocol version") {
		t.Fatalf("replica 0 logged no protocol refusal:\n%s", tailLines(log, 30))
	}
	if out, _ := ce.lab.Exec(ce.ctx, ce.lab.ReplicaNS(0), vpcflowBin, "status", "--controller", lab.ControllerURL); !strings.Contains(out, "INCOMPATIBLE REPLICA") {
		t.Errorf("vpcflow status on replica 0 does not warn about the incompatible replica:\n%s", out)
	} else {
		t.Logf("vpcflow status on replica 0 with the incompatible replica:\n%s", out)
	}
	metrics, _ := ce.lab.Exec(ce.ctx, ce.lab.ReplicaNS(0), "curl", "-s", lab.ControllerURL+"/metrics")
	if !strings.Contains(metrics, `vpcflow_cluster_protocol_refused_total{kind="member"}`) {
		t.Errorf("replica 0 /metrics lacks vpcflow_cluster_protocol_refused_total:\n%s", metrics)
	}
	// Roll replica 2 back to N+1.
	ce.pingStrict("replica 2 back to N+1", func() {
		if err := ce.procs[2].Stop(); err != nil {
			t.Fatal(err)
		}
		ce.startReplicaBin(2, binNext, paths[2])
		ce.waitVersions(allReplicas, version, protocol)
		ce.waitConnected(2)
		ce.settledView()
	})

	// 4. Rolling replacement: replica 0, then replica 1, to N+1.
	for _, i := range []int{0, 1} {
		ce.pingStrict(fmt.Sprintf("replacing replica %d (N) by N+1", i), func() {
			stopped := time.Now()
			if err := ce.procs[i].Stop(); err != nil {
				t.Fatal(err)
			}
			ce.startReplicaBin(i, binNext, paths[i])
			version[i], protocol[i] = versionNext, pNext
			ce.waitVersions(allReplicas, version, protocol)
			// Every switch reconnects to the new replica (OVS backs off up
			// to max_backoff): ownership moves back to it inside the ping.
			ce.waitConnected(i)
			v := ce.settledView()
			t.Logf("replica %d replaced: cluster converged %s after its stop: %s", i, time.Since(stopped).Round(time.Millisecond), v.Ownership())
		})
	}

	// 5. The hosts' watchers restart (as a package upgrade's try-restart
	// does) without touching a flow: the same flows before and after, none
	// re-added (no duration went back), no packet lost.
	ce.pingStrict("a restart of every host's watcher", func() {
		for _, h := range ce.bp.Hosts {
			before := ce.flowSnapshot(h.Name)
			logFile := filepath.Join(ce.lab.Dir(), h.Name, "watch.log")
			starts := strings.Count(readFile(logFile), "watching the management flows")
			restarted := time.Now()
			p, err := ce.lab.RestartWatcher(h.Name)
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, h.Name+"'s new watcher runs its first steps", func() (bool, string) {
				log := readFile(p.LogFile)
				return p.Running() && strings.Count(log, "watching the management flows") > starts, tailLines(log, 5)
			})
			time.Sleep(2 * time.Second) // a bounded window: the watcher steps every 500 ms
			after := ce.flowSnapshot(h.Name)
			if len(after) != len(before) {
				t.Fatalf("%s: %d flows before the watcher restart, %d after", h.Name, len(before), len(after))
			}
			for k, d := range before {
				if d2, ok := after[k]; !ok || d2 < d {
					t.Fatalf("%s: flow changed by the watcher restart (duration %.3f -> %.3f, present %v):\n%s", h.Name, d, d2, ok, k)
				}
			}
			t.Logf("%s: watcher restarted, %d flows untouched over %s", h.Name, len(after), time.Since(restarted).Round(time.Millisecond))
		}
	})

	for _, i := range allReplicas {
		st, err := ce.lab.ReplicaStatus(ce.ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if st.Revision != 3 || st.Cluster.ProtocolRefused.Messages != 0 {
			t.Errorf("replica %d after the upgrade: revision %d, protocol refusals %+v", i, st.Revision, st.Cluster.ProtocolRefused)
		}
	}
	checkMatrix(t, ce.env)
}

// waitConnected waits until every blueprint bridge is connected to replica i.
func (ce *clusterEnv) waitConnected(i int) {
	ce.t.Helper()
	eventually(ce.t, 30*time.Second, fmt.Sprintf("every switch connected to replica %d", i), func() (bool, string) {
		st, err := ce.lab.ReplicaStatus(ce.ctx, i)
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, b := range st.Bridges {
			if b.Known && b.Connected {
				n++
			}
		}
		return n == len(ce.bp.Hosts), fmt.Sprintf("%d connected", n)
	})
}

// assertNoMaster fails if replica i reports MASTER of any bridge within the
// window (a replica without quorum must not claim).
func assertNoMaster(t *testing.T, ce *clusterEnv, i int, window time.Duration) {
	t.Helper()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		st, err := ce.lab.ReplicaStatus(ce.ctx, i)
		if err == nil {
			for _, b := range st.Bridges {
				if b.Role == "MASTER" {
					t.Fatalf("replica %d (refused) is MASTER of %s", i, b.Host)
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var flowStats = regexp.MustCompile(`\b(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ?`)

// flowSnapshot maps each flow of host's bridge (without its statistics) to
// its duration in seconds.
func (ce *clusterEnv) flowSnapshot(host string) map[string]float64 {
	ce.t.Helper()
	out, err := ce.lab.OVS(ce.ctx, host, "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", lab.Bridge)
	if err != nil {
		ce.t.Fatal(err)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		i := strings.Index(line, "duration=")
		if i < 0 {
			continue
		}
		var d float64
		if _, err := fmt.Sscanf(line[i:], "duration=%fs", &d); err != nil {
			ce.t.Fatalf("%s: cannot read the duration of %q: %v", host, line, err)
		}
		m[strings.TrimSpace(flowStats.ReplaceAllString(line, ""))] = d
	}
	if len(m) == 0 {
		ce.t.Fatalf("%s: no flows:\n%s", host, out)
	}
	return m
}

var pingReplySeq = regexp.MustCompile(`bytes from .*icmp_seq=(\d+)`)

// pingStrict is pingDuring (a continuous 50 ms ping from blue-web-1 on kvm1
// to blue-web-2 on kvm2 around f) with an exact account: every icmp_seq
// sent must have its reply, except the last one if it was still in flight
// when the ping was stopped. Missing sequence numbers are named.
func (ce *clusterEnv) pingStrict(what string, f func()) {
	t := ce.t
	t.Helper()
	ce.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	ping, err := ce.lab.StartPing("blue-web-1", "10.10.1.12", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	waitReplies(t, ping, 5)
	f()
	waitReplies(t, ping, replies(ping)+20)
	_ = ping.Stop()
	tx, rx := ping.PingStats()
	replied := map[int]bool{}
	for _, m := range pingReplySeq.FindAllStringSubmatch(ping.Log(), -1) {
		n, _ := strconv.Atoi(m[1])
		replied[n] = true
	}
	var missing []int
	for seq := 1; seq < tx; seq++ { // seq tx may be in flight at the stop
		if !replied[seq] {
			missing = append(missing, seq)
		}
	}
	t.Logf("ping during %s: %d transmitted, %d received, missing icmp_seq %v", what, tx, rx, missing)
	if tx < 20 || len(missing) > 0 {
		t.Fatalf("packet loss during %s: %d transmitted, %d received, missing icmp_seq %v", what, tx, rx, missing)
	}
}
