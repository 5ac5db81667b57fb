package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

// An operator changes the blueprint file of ONE replica and that replica
// reloads it: the other two fetch the new policy from it, all three report
// the new revision and hash, and every switch gets the flow the change
// adds (docs/cluster.md, "Blueprint distribution").
func TestClusterReloadOneReplica(t *testing.T) {
	bp := clusterBlueprint(t)
	e := startEnvNoController(t, bp)
	ce := &clusterEnv{env: e, procs: map[int]*lab.Proc{}}
	paths := map[int]string{}
	dir := t.TempDir()
	for _, i := range allReplicas {
		paths[i] = filepath.Join(dir, fmt.Sprintf("replica%d.yaml", i))
		if err := os.WriteFile(paths[i], []byte(bp), 0o644); err != nil {
			t.Fatal(err)
		}
		ce.startReplica(i, "--blueprint", paths[i]) // each replica its own file
	}
	if _, err := ce.lab.WaitClusterConverged(ce.ctx, allReplicas, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	// The change: revision 2 trusts one more tunnel peer, which adds an
	// allowlist flow on every switch.
	changed := strings.Replace(strings.Replace(bp, "revision: 1\n", "revision: 2\n", 1),
		"trusted_peers: []", "trusted_peers: [203.0.113.99]", 1)
	nbp, err := flows.Parse("changed", []byte(changed))
	if err != nil || nbp.Revision != 2 {
		t.Fatalf("changed blueprint: %v", err)
	}
	const editor = 1
	tmp := paths[editor] + ".tmp"
	if err := os.WriteFile(tmp, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, paths[editor]); err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	eventually(t, 60*time.Second, "every replica enforces revision 2", func() (bool, string) {
		var why []string
		ok := true
		for _, i := range allReplicas {
			st, err := ce.lab.ReplicaStatus(ce.ctx, i)
			if err != nil {
				return false, err.Error()
			}
			why = append(why, fmt.Sprintf("replica %d: revision %d %.12s from %s", i, st.Revision, st.BlueprintHash, st.Blueprint))
			if st.Revision != 2 || st.BlueprintHash != nbp.Hash() {
				ok = false
			}
		}
		return ok, strings.Join(why, "; ")
	})
	t.Logf("all three replicas enforce revision 2 %s after the edit on replica %d", time.Since(edited).Round(time.Millisecond), editor)
	for _, i := range without(allReplicas, editor) {
		st, _ := ce.lab.ReplicaStatus(ce.ctx, i)
		want := fmt.Sprintf("peer %s:6653 (revision 2)", ce.lab.ReplicaAddr(editor))
		if st == nil || st.Blueprint != want {
			t.Errorf("replica %d: status blueprint %q, want %q", i, st.Blueprint, want)
		}
	}
	eventually(t, 60*time.Second, "the new allowlist flow on every switch", func() (bool, string) {
		for _, h := range ce.bp.Hosts {
			out, err := ce.lab.OVS(ce.ctx, h.Name, "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", lab.Bridge)
			if err != nil {
				return false, err.Error()
			}
			if !strings.Contains(out, "203.0.113.99") {
				return false, h.Name + " lacks it"
			}
		}
		return true, ""
	})
	t.Logf("the change is on every switch %s after the edit", time.Since(edited).Round(time.Millisecond))
	if _, err := ce.lab.WaitClusterConverged(ce.ctx, allReplicas, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	checkMatrix(t, ce.env)
}
