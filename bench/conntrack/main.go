// Command conntrack measures what the stateful policy stage costs the
// userspace datapath (issue 12, docs/performance.md "Policy"): TCP
// throughput (iperf3) and the new-connection rate between two VMs of one
// tier on different hosts of the demo lab, without policy and with
// security groups on both VMs (every packet through conntrack at both ends
// and through the checks).
//
//	apt-get install -y iperf3
//	go build -o /tmp/vpcflow ./cmd/vpcflow && go run ./bench/conntrack -bin /tmp/vpcflow -runs 5
//
// Each variant brings up its own lab and controller; each run is one
// iperf3 of -seconds and one connection loop of -seconds; the report is
// the median of -runs and every run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vpcflow/vpcflow/examples/demo"
	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

const connLoopPy = `
import socket, sys, time
ip, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
n, fail, end = 0, 0, time.time() + secs
while time.time() < end:
    try:
        s = socket.create_connection((ip, port), timeout=1)
        s.recv(8)
        s.close()
        n += 1
    except OSError:
        fail += 1
print(n, fail)
`

const policyText = `security_groups:
  - name: bench-sg
    ingress:
      - {protocol: tcp, ports: 5201, cidrs: [10.10.0.0/16]}
      - {protocol: tcp, ports: 7000, cidrs: [10.10.0.0/16]}
`

func main() {
	bin := flag.String("bin", "", "vpcflow binary (required)")
	runs := flag.Int("runs", 5, "runs per variant")
	secs := flag.Int("seconds", 5, "seconds per iperf3 run and per connection loop")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "usage: conntrack -bin PATH [-runs N] [-seconds S]")
		os.Exit(2)
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		fmt.Fprintln(os.Stderr, "iperf3 not found: apt-get install -y iperf3")
		os.Exit(2)
	}
	base := string(demo.Blueprint)
	pol := strings.Replace(base, "ip: 10.10.1.11}", "ip: 10.10.1.11, security_groups: [bench-sg]}", 1)
	pol = strings.Replace(pol, "ip: 10.10.1.12}", "ip: 10.10.1.12, security_groups: [bench-sg]}", 1) + policyText
	out := map[string][2][]float64{}
	for _, v := range []struct{ name, text string }{{"no policy", base}, {"security groups, stateful", pol}} {
		tp, cr, err := measure(*bin, v.text, *runs, *secs)
		if err != nil {
			fmt.Fprintln(os.Stderr, v.name+":", err)
			os.Exit(1)
		}
		out[v.name] = [2][]float64{tp, cr}
		fmt.Printf("%-26s throughput Mbit/s %v  new connections/s %v\n", v.name, tp, cr)
	}
	a, b := out["no policy"], out["security groups, stateful"]
	fmt.Printf("\nmedians: throughput %.0f -> %.0f Mbit/s (ratio %.2f), new connections %.0f -> %.0f /s (ratio %.2f)\n",
		median(a[0]), median(b[0]), median(b[0])/median(a[0]), median(a[1]), median(b[1]), median(b[1])/median(a[1]))
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func measure(bin, text string, runs, secs int) (tp, cr []float64, err error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "vpcflow-ctbench-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "blueprint.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return nil, nil, err
	}
	bp, err := flows.Load(path)
	if err != nil {
		return nil, nil, err
	}
	l, err := lab.Up(ctx, lab.Options{Blueprint: bp, BlueprintPath: path, VPCFlowBin: bin, Watch: true, Dir: filepath.Join(dir, "lab")})
	if err != nil {
		return nil, nil, err
	}
	defer l.Down()
	ctl, err := l.StartController(l.ControllerArgs()...)
	if err != nil {
		return nil, nil, err
	}
	defer ctl.Stop()
	if _, err := l.WaitConverged(ctx, 60*time.Second, 0); err != nil {
		return nil, nil, err
	}
	srvNS, cliNS, srvIP := l.VMNS("blue-web-2"), l.VMNS("blue-web-1"), "10.10.1.12"
	srv, err := l.StartProcess(srvNS, "iperf3", filepath.Join(dir, "iperf3.log"), "iperf3", "-s", "-p", "5201")
	if err != nil {
		return nil, nil, err
	}
	defer srv.Stop()
	ln, err := l.Listen("blue-web-2", "tcp", 7000)
	if err != nil {
		return nil, nil, err
	}
	defer ln.Stop()
	py, err := exec.LookPath("python3")
	if err != nil {
		return nil, nil, err
	}
	// The server may need a moment; warm up (ARP, tunnel neighbour).
	for i := 0; i < 50; i++ {
		if _, err := l.Exec(ctx, cliNS, "iperf3", "-c", srvIP, "-p", "5201", "-t", "1"); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for r := 0; r < runs; r++ {
		o, err := l.Exec(ctx, cliNS, "iperf3", "-c", srvIP, "-p", "5201", "-t", strconv.Itoa(secs), "-f", "m")
		if err != nil {
			return nil, nil, fmt.Errorf("iperf3: %v: %s", err, o)
		}
		tp = append(tp, receiverMbit(o))
		o, err = l.Exec(ctx, cliNS, py, "-c", connLoopPy, srvIP, "7000", strconv.Itoa(secs))
		if err != nil {
			return nil, nil, fmt.Errorf("connection loop: %v: %s", err, o)
		}
		f := strings.Fields(o)
		n, _ := strconv.Atoi(f[0])
		cr = append(cr, float64(n)/float64(secs))
	}
	return tp, cr, nil
}

// receiverMbit reads iperf3's receiver summary line.
func receiverMbit(out string) float64 {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "receiver") {
			f := strings.Fields(line)
			for i, x := range f {
				if x == "Mbits/sec" && i > 0 {
					v, _ := strconv.ParseFloat(f[i-1], 64)
					return v
				}
			}
		}
	}
	return 0
}
