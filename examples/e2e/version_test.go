package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
)

// TestClusterMemberVersions: three replicas of the binary under test gossip
// their build version; `vpcflow status` on each shows every member's
// version in the member table's VERSION column, and `/status` carries the
// replica's own version.
func TestClusterMemberVersions(t *testing.T) {
	out, err := exec.Command(vpcflowBin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("vpcflow version: %v", err)
	}
	var v struct{ Version string }
	if err := json.Unmarshal(out, &v); err != nil || v.Version == "" {
		t.Fatalf("vpcflow version -o json: %v %s", err, out)
	}
	ce := startCluster(t, clusterBlueprint(t))
	for _, i := range allReplicas {
		var table string
		eventually(t, 15*time.Second, "replica "+ce.lab.ReplicaAddr(i)+" shows every member's version", func() (bool, string) {
			table, _ = ce.lab.Exec(ce.ctx, ce.lab.ReplicaNS(i), vpcflowBin, "status", "--controller", lab.ControllerURL)
			col, rows := -1, 0
			for _, line := range strings.Split(table, "\n") {
				f := strings.Fields(line)
				if len(f) > 2 && f[0] == "MEMBER" {
					for j, h := range f {
						if h == "VERSION" {
							col = j
						}
					}
					continue
				}
				if col < 0 || len(f) == 0 || !strings.HasSuffix(f[0], ":6653") {
					continue // not a member row
				}
				if len(f) > 1 && f[1] == "(self)" {
					f = append(f[:1], f[2:]...)
				}
				if len(f) > col && f[col] == v.Version {
					rows++
				}
			}
			return col >= 0 && rows == 3, table
		})
		if i == 0 {
			t.Logf("vpcflow status on %s:\n%s", ce.lab.ReplicaAddr(i), table)
		}
		st, err := ce.lab.ReplicaStatus(ce.ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if st.Version != v.Version {
			t.Errorf("replica %d: /status version %q, want %q", i, st.Version, v.Version)
		}
	}
}
