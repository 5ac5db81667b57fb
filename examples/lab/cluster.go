package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/vpcflow/vpcflow/controller"
)

// ClusterView is every running replica's status at one moment.
type ClusterView struct {
	// ByReplica is keyed by replica index.
	ByReplica map[int]*controller.Status
	// Masters maps each blueprint host to the replica indexes that report
	// MASTER and converged for its bridge.
	Masters map[string][]int
	// Owners maps each host to the owner names the replicas report.
	Owners map[string][]string
}

// ReadCluster reads the status of the given replicas (errors for replicas
// that do not answer are returned in the map as nil entries).
func (l *Lab) ReadCluster(ctx context.Context, replicas []int) (*ClusterView, error) {
	v := &ClusterView{ByReplica: map[int]*controller.Status{}, Masters: map[string][]int{}, Owners: map[string][]string{}}
	for _, i := range replicas {
		st, err := l.ReplicaStatus(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("replica %d: %w", i, err)
		}
		v.ByReplica[i] = st
		for _, b := range st.Bridges {
			if !b.Known {
				continue
			}
			if b.Connected && b.Role == "MASTER" && b.Converged && b.Standby == "" {
				v.Masters[b.Host] = append(v.Masters[b.Host], i)
			}
			v.Owners[b.Host] = append(v.Owners[b.Host], b.Owner)
		}
	}
	return v, nil
}

// Converged reports whether every host has exactly one MASTER among the
// replicas, all replicas agree on its owner, and the owner is that master.
func (v *ClusterView) Converged(hosts []string) (bool, string) {
	for _, h := range hosts {
		m := v.Masters[h]
		if len(m) != 1 {
			return false, fmt.Sprintf("host %s: masters %v", h, m)
		}
		self := ""
		if st := v.ByReplica[m[0]]; st.Cluster != nil {
			self = st.Cluster.Self
		}
		for _, o := range v.Owners[h] {
			if o != self {
				return false, fmt.Sprintf("host %s: owners %v, master %s", h, v.Owners[h], self)
			}
		}
	}
	return true, ""
}

// OwnerOf returns the replica index mastering a host's bridge.
func (v *ClusterView) OwnerOf(host string) int {
	if m := v.Masters[host]; len(m) == 1 {
		return m[0]
	}
	return -1
}

// WaitClusterConverged polls the given replicas until Converged holds.
func (l *Lab) WaitClusterConverged(ctx context.Context, replicas []int, timeout time.Duration) (*ClusterView, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var hosts []string
	for _, h := range l.bp.Hosts {
		hosts = append(hosts, h.Name)
	}
	last := ""
	for {
		v, err := l.ReadCluster(ctx, replicas)
		if err == nil {
			ok, why := v.Converged(hosts)
			if ok {
				return v, nil
			}
			last = why
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster not converged within %s: %s", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ownership renders which replica masters which host.
func (v *ClusterView) Ownership() string {
	var parts []string
	for h, m := range v.Masters {
		parts = append(parts, fmt.Sprintf("%s->replica%v", h, m))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// JSON renders the view for failure messages.
func (v *ClusterView) JSON() string {
	b, _ := json.Marshal(v.ByReplica)
	return string(b)
}

// Partition drops memberlist traffic (port 7946, tcp and udp) between
// replica i and every address in others, with nftables inside replica i's
// namespace. Heal undoes it.
func (l *Lab) Partition(ctx context.Context, i int, others []string) error {
	ns := l.ReplicaNS(i)
	set := strings.Join(others, ", ")
	script := fmt.Sprintf(`table inet vpcflowpart {
  chain in { type filter hook input priority 0; policy accept;
    ip saddr { %[1]s } tcp dport 7946 drop
    ip saddr { %[1]s } udp dport 7946 drop
    ip saddr { %[1]s } tcp sport 7946 drop
    ip saddr { %[1]s } udp sport 7946 drop
  }
  chain out { type filter hook output priority 0; policy accept;
    ip daddr { %[1]s } tcp dport 7946 drop
    ip daddr { %[1]s } udp dport 7946 drop
    ip daddr { %[1]s } tcp sport 7946 drop
    ip daddr { %[1]s } udp sport 7946 drop
  }
}
`, set)
	f := l.uniq("nft")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		return err
	}
	_, err := l.Exec(ctx, ns, "nft", "-f", f)
	return err
}

// Heal removes the partition rules of replica i.
func (l *Lab) Heal(ctx context.Context, i int) error {
	_, err := l.Exec(ctx, l.ReplicaNS(i), "nft", "delete", "table", "inet", "vpcflowpart")
	return err
}
