package lab

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vpcflow/vpcflow/controller"
)

// ControllerURL is the status API address the lab's controller serves inside
// the management namespace.
const ControllerURL = "http://127.0.0.1:9653"

// ControllerArgs are the controller arguments the demo and the e2e tests use:
// OpenFlow on the management address (reached by every host through its
// cloudbr0), status API on the management namespace's loopback.
func (l *Lab) ControllerArgs(extra ...string) []string {
	return l.ReplicaArgs(0, extra...)
}

// ReplicaArgs are replica i's controller arguments: OpenFlow on its
// management address, status API on its namespace's loopback, and (with more
// than one replica) memberlist on its address port 7946 joining the others.
func (l *Lab) ReplicaArgs(i int, extra ...string) []string {
	a := l.ReplicaAddr(i)
	args := []string{"--blueprint", l.opts.BlueprintPath, "--listen", "tcp:" + a + ":6653", "--http", "127.0.0.1:9653"}
	if len(l.mgmtAddrs) > 1 {
		var peers []string
		for j, p := range l.mgmtAddrs {
			if j != i {
				peers = append(peers, p+":7946")
			}
		}
		args = append(args, "--cluster-bind", a+":7946", "--join", strings.Join(peers, ","))
		if !slices.Contains(extra, "--cluster-key-file") && !slices.Contains(extra, "--cluster-insecure") {
			if key, err := l.ClusterKeyFile(); err == nil {
				args = append(args, "--cluster-key-file", key)
			} else {
				// The controller then refuses to start, naming the flag.
				args = append(args, "--cluster-key-file", filepath.Join(l.dir, "cluster.key"))
			}
		}
	}
	return append(args, extra...)
}

// ClusterKeyFile returns the lab's shared cluster key file (Dir/cluster.key),
// making it on first use: replica mode refuses to start without a key.
func (l *Lab) ClusterKeyFile() (string, error) {
	p := filepath.Join(l.dir, "cluster.key")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, p)
}

// ControllerStatus reads the controller's /status from inside the management
// namespace (through `vpcflow status --json`).
func (l *Lab) ControllerStatus(ctx context.Context) (*controller.Status, error) {
	return l.ReplicaStatus(ctx, 0)
}

// ReplicaStatus reads replica i's /status.
func (l *Lab) ReplicaStatus(ctx context.Context, i int) (*controller.Status, error) {
	out, err := l.Exec(ctx, l.ReplicaNS(i), l.opts.VPCFlowBin, "status", "-o", "json", "--controller", ControllerURL)
	return ParseStatus(out, err)
}

// ParseStatus reads the output of `vpcflow status -o json`: exit 0 (every
// bridge converged or on standby) and exit 1 (some bridge is not: a
// finding, the document is still printed) both carry the document; any
// other failure is an error.
func ParseStatus(out string, err error) (*controller.Status, error) {
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1) {
		return nil, err
	}
	var st controller.Status
	if jerr := json.Unmarshal([]byte(out), &st); jerr != nil {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("status: %w: %s", jerr, out)
	}
	return &st, nil
}

// WaitConverged polls the controller until every blueprint bridge is
// connected and converged (and, when minRevision > 0, at that revision).
func (l *Lab) WaitConverged(ctx context.Context, timeout time.Duration, minRevision uint32) (*controller.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *controller.Status
	var lastErr error
	for {
		st, err := l.ControllerStatus(ctx)
		if err == nil {
			last, lastErr = st, nil
			ok := len(st.Bridges) > 0
			for _, b := range st.Bridges {
				if b.Known && (!b.Connected || !b.Converged || b.Revision < minRevision) {
					ok = false
				}
			}
			if ok {
				return st, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				b, _ := json.Marshal(last.Bridges)
				return last, fmt.Errorf("bridges not converged within %s: %s", timeout, b)
			}
			return nil, fmt.Errorf("controller not reachable within %s: %v", timeout, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PairResult is one cell of the reachability matrix.
type PairResult struct {
	From, To string
	Expected bool // same VPC and tier
	Reached  bool
	// How: "ping" (ARP answered by the switch), "ping-mac" (the destination
	// IP also exists in the source's VPC, so the frame is addressed to the
	// destination's own MAC with a static neighbour entry), or "same-ip"
	// (identical address as the source: not pingable, left out).
	How string
}

// Matrix pings every ordered pair of VMs (1 s timeout, sources in parallel,
// each source's destinations in turn) and reports which pairs reached each
// other. A pair is expected to reach iff both VMs are in the same tier of
// the same VPC. With overlapping VPC CIDRs an IP alone does not name a VM,
// so such pairs address the destination's MAC explicitly.
func (l *Lab) Matrix(ctx context.Context) []PairResult {
	type vmi struct{ name, vpc, tier, ip, mac string }
	var vms []vmi
	for _, p := range l.bp.VPCs {
		for _, t := range p.Tiers {
			for _, v := range t.VMs {
				vms = append(vms, vmi{v.Name, p.Name, p.Name + "/" + t.Name, v.IP, strings.ToLower(v.MAC)})
			}
		}
	}
	res := make([][]PairResult, len(vms))
	var wg sync.WaitGroup
	for i := range vms {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a := vms[i]
			for _, b := range vms {
				if a.name == b.name {
					continue
				}
				r := PairResult{From: a.name, To: b.name, Expected: a.tier == b.tier, How: "ping"}
				if b.ip == a.ip {
					r.How = "same-ip"
					res[i] = append(res[i], r)
					continue
				}
				for _, c := range vms {
					if c.vpc == a.vpc && c.name != b.name && c.ip == b.ip {
						r.How = "ping-mac"
					}
				}
				ns := l.VMNS(a.name)
				if r.How == "ping-mac" {
					_ = l.ip(ctx, ns, "neigh", "replace", b.ip, "lladdr", b.mac, "dev", VMIface, "nud", "permanent")
				}
				// A pair that should reach gets up to 4 one-second tries (the
				// first packet of a pair waits for ARP and the tunnel
				// neighbour); a pair that must not reach gets one bounded
				// 1 s observation window.
				tries := 1
				if r.Expected {
					tries = 4
				}
				for try := 0; try < tries && !r.Reached; try++ {
					_, recv, err := l.Ping(ctx, a.name, b.ip, 1, 200*time.Millisecond, time.Second)
					r.Reached = err == nil && recv > 0
				}
				if r.How == "ping-mac" {
					_ = l.ip(ctx, ns, "neigh", "del", b.ip, "dev", VMIface)
				}
				res[i] = append(res[i], r)
			}
		}(i)
	}
	wg.Wait()
	var out []PairResult
	for _, r := range res {
		out = append(out, r...)
	}
	return out
}

// FormatMatrix renders the matrix: rows are sources, columns destinations;
// "ok" reached, "--" blocked, "!!" a result that contradicts the policy,
// "=" same address as the source (not pingable).
func FormatMatrix(res []PairResult) string {
	names := map[string]bool{}
	for _, r := range res {
		names[r.From] = true
	}
	var order []string
	for n := range names {
		order = append(order, n)
	}
	sort.Strings(order)
	cell := map[[2]string]PairResult{}
	for _, r := range res {
		cell[[2]string{r.From, r.To}] = r
	}
	w := 0
	for _, n := range order {
		if len(n) > w {
			w = len(n)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s", w+2, "from \\ to")
	for i := range order {
		fmt.Fprintf(&b, " %3d", i+1)
	}
	b.WriteString("\n")
	for i, a := range order {
		fmt.Fprintf(&b, "%-*s", w+2, fmt.Sprintf("%d %s", i+1, a))
		for _, z := range order {
			if a == z {
				b.WriteString("   .")
				continue
			}
			r := cell[[2]string{a, z}]
			if r.How == "same-ip" {
				b.WriteString("   =")
				continue
			}
			s := "--"
			if r.Reached {
				s = "ok"
			}
			if r.Reached != r.Expected {
				s = "!!"
			}
			fmt.Fprintf(&b, " %3s", s)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// MatrixViolations lists the pairs whose result contradicts the policy.
func MatrixViolations(res []PairResult) []string {
	var v []string
	for _, r := range res {
		if r.How != "same-ip" && r.Reached != r.Expected {
			what := "unexpectedly reached"
			if r.Expected {
				what = "could not reach"
			}
			v = append(v, fmt.Sprintf("%s %s %s", r.From, what, r.To))
		}
	}
	return v
}

// TCPOpen reports whether a TCP connection from ns to ip:port is accepted
// within timeout (no greeting needed: for probing real services such as the
// controller's OpenFlow port).
func (l *Lab) TCPOpen(ctx context.Context, ns, ip string, port int, timeout time.Duration) bool {
	n, err := l.nsOf(ns)
	if err != nil {
		return false
	}
	script := `import socket,sys
s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=float(sys.argv[3]))
print("open")`
	ctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	out, err := l.Exec(ctx, n, l.python, "-c", script, ip, fmt.Sprint(port), secs(timeout))
	return err == nil && strings.Contains(out, "open")
}

// GuestRouteToUnderlay makes a VM try hard to reach the underlay: an on-link
// route to every management/underlay address and permanent neighbour entries
// with the real MACs of the management node, every host's cloudbr0 and the
// rogue node. Without this a guest could not even address those packets (no
// router exists yet); with it the only thing in the way is the pipeline.
func (l *Lab) GuestRouteToUnderlay(ctx context.Context, vm string) error {
	ns := l.VMNS(vm)
	if err := l.ip(ctx, ns, "route", "replace", "192.0.2.0/24", "dev", VMIface); err != nil {
		return err
	}
	neigh := func(ip, mac string) error {
		return l.ip(ctx, ns, "neigh", "replace", ip, "lladdr", mac, "dev", VMIface, "nud", "permanent")
	}
	mgmtMAC, err := l.linkMAC(ctx, l.MgmtNS(), NodeIface)
	if err != nil {
		return err
	}
	if err := neigh(l.MgmtAddr(), mgmtMAC); err != nil {
		return err
	}
	for _, h := range l.hosts {
		mac, err := l.linkMAC(ctx, l.HostNS(h.h.Name), Bridge)
		if err != nil {
			return err
		}
		if err := neigh(h.addr.String(), mac); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) linkMAC(ctx context.Context, ns, dev string) (string, error) {
	out, err := l.Exec(ctx, ns, "cat", "/sys/class/net/"+dev+"/address")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// FlowPackets sums n_packets of the flows on host's cloudbr0 whose cookie
// has the given category (by dumping with a cookie mask).
func (l *Lab) FlowPackets(ctx context.Context, host string, cookie, mask uint64) (uint64, error) {
	out, err := l.OVS(ctx, host, "ovs-ofctl", "dump-flows", Bridge, fmt.Sprintf("cookie=0x%x/0x%x", cookie, mask))
	if err != nil {
		return 0, err
	}
	var total uint64
	for _, line := range strings.Split(out, "\n") {
		i := strings.Index(line, "n_packets=")
		if i < 0 {
			continue
		}
		var n uint64
		fmt.Sscanf(line[i+len("n_packets="):], "%d", &n)
		total += n
	}
	return total, nil
}

// FlowCount counts the flows on host's cloudbr0.
func (l *Lab) FlowCount(ctx context.Context, host string) (int, error) {
	out, err := l.OVS(ctx, host, "ovs-ofctl", "dump-flows", Bridge)
	if err != nil {
		return 0, err
	}
	return strings.Count(out, "cookie="), nil
}
