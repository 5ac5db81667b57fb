package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/examples/lab"
)

// TestClusterOutsiderRefused (issue 13 defect 4, on real OVS): a fourth
// controller that holds the cluster key (a stolen key, a machine set up by
// mistake) and a blueprint of its own listing itself as a replica joins the
// cluster and is even given a Controller row on kvm1's bridge. The three
// replicas refuse it (it is not in their controllers:), report it, never
// count it, and it never becomes MASTER of any bridge: the OVSDB witness
// sees no sample with two masters and none with the outsider as master.
func TestClusterOutsiderRefused(t *testing.T) {
	ce := startCluster(t, clusterBlueprint(t))
	const outsider = "192.0.2.250:6654" // in replica 0's namespace, another port
	bp4 := strings.Replace(clusterBlueprint(t), "tcp:192.0.2.252:6653]", "tcp:192.0.2.252:6653, tcp:"+outsider+"]", 1)
	file := filepath.Join(t.TempDir(), "outsider.yaml")
	if err := os.WriteFile(file, []byte(bp4), 0o644); err != nil {
		t.Fatal(err)
	}
	key, err := ce.lab.ClusterKeyFile()
	if err != nil {
		t.Fatal(err)
	}
	masters := startMasterSampler(ce.ctx, ce.lab, hostNames(ce.bp), 250*time.Millisecond)
	p, err := ce.lab.StartProcess(ce.lab.ReplicaNS(0), "outsider", filepath.Join(ce.lab.Dir(), "outsider.log"),
		vpcflowBin, "controller", "--blueprint", file, "--listen", "tcp:"+outsider, "--http", "127.0.0.1:9654",
		"--cluster-bind", "192.0.2.250:7947", "--join", "192.0.2.251:7946,192.0.2.252:7946", "--cluster-key-file", key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.Running() {
			_ = p.Kill()
		}
	})
	// The switch connects to it too.
	if _, err := ce.lab.OVS(ce.ctx, "kvm1", "ovs-vsctl", "--", "--id=@c", "create", "controller", "target=\"tcp:"+outsider+"\"",
		"connection_mode=out-of-band", "max_backoff=1000", "--", "add", "bridge", "cloudbr0", "controller", "@c"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "every replica refuses and reports the outsider", func() (bool, string) {
		for _, i := range allReplicas {
			st, err := ce.lab.ReplicaStatus(ce.ctx, i)
			if err != nil {
				return false, err.Error()
			}
			if st.Cluster == nil {
				return false, fmt.Sprintf("replica %d: no cluster status", i)
			}
			refused := false
			for _, r := range st.Cluster.Refused {
				refused = refused || r.Name == outsider
			}
			if !refused {
				return false, fmt.Sprintf("replica %d: refused=%+v", i, st.Cluster.Refused)
			}
			for _, m := range st.Cluster.Members {
				if m.Name == outsider {
					return false, fmt.Sprintf("replica %d counts the outsider as a member", i)
				}
			}
		}
		return true, ""
	})
	// The outsider is connected to kvm1 (so it could write if it were MASTER).
	eventually(t, 20*time.Second, "kvm1 connected to the outsider", func() (bool, string) {
		st, err := outsiderStatus(ce, "http://127.0.0.1:9654")
		if err != nil {
			return false, err.Error()
		}
		for _, b := range st.Bridges {
			if b.Host == "kvm1" && b.Connected {
				return true, ""
			}
		}
		return false, "kvm1 not connected to the outsider"
	})
	// Bounded observation window (negative check): the outsider never
	// becomes MASTER and the replicas stay converged.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		st, err := outsiderStatus(ce, "http://127.0.0.1:9654")
		if err == nil {
			for _, b := range st.Bridges {
				if b.Role == "MASTER" {
					t.Fatalf("the outsider is MASTER of %s: %+v", b.Host, b)
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, err := ce.lab.WaitClusterConverged(ce.ctx, allReplicas, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	out, err := ce.lab.OVS(ce.ctx, "kvm1", "ovs-vsctl", "--format=csv", "--data=bare", "--no-headings", "--columns=target,role", "list", "controller")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, outsider) && strings.HasSuffix(strings.TrimSpace(line), "master") {
			t.Errorf("kvm1's Controller row for the outsider is master: %s", line)
		}
	}
	masters.finish(t, "outsider joined")
	// Its own view: the replicas' gossip carries their replica set, which
	// leaves it out, so it counts none of them and has no quorum.
	st, err := outsiderStatus(ce, "http://127.0.0.1:9654")
	if err != nil || st.Cluster == nil {
		t.Fatalf("outsider status: %v", err)
	}
	t.Logf("the outsider's own view: quorum %v, %d members, replica set %v", st.Cluster.Quorum, len(st.Cluster.Members), st.Cluster.Replicas)
	if st.Cluster.Quorum {
		t.Errorf("the outsider believes it has a quorum: %+v", st.Cluster)
	}
}

func outsiderStatus(ce *clusterEnv, url string) (*controller.Status, error) {
	out, err := ce.lab.Exec(ce.ctx, ce.lab.ReplicaNS(0), vpcflowBin, "status", "-o", "json", "--controller", url)
	return lab.ParseStatus(out, err)
}
