// Command blueprint writes a generated benchmark blueprint (see bench/gen)
// and prints the compiled flow count of a few hosts.
//
//	go run ./bench/blueprint -hosts 200 -vms 20 -tiers 50 -o /tmp/bp.yaml
//	go run ./bench/blueprint -bighost 100000 -o /tmp/big.yaml
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/vpcflow/vpcflow/bench/gen"
	"github.com/vpcflow/vpcflow/flows"
)

func main() {
	hosts := flag.Int("hosts", 200, "hosts (bridges)")
	vms := flag.Int("vms", 20, "VMs per host")
	tiers := flag.Int("tiers", 50, "tiers (spread)")
	peers := flag.Int("trusted-peers", 0, "trusted_peers")
	big := flag.Int("bighost", 0, "instead: one big host h0 compiling to about this many flows")
	out := flag.String("o", "", "write the YAML here (default: stdout)")
	flag.Parse()
	s := gen.Spec{Hosts: *hosts, VMsPerHost: *vms, Tiers: *tiers, TrustedPeers: *peers}
	if *big > 0 {
		var err error
		if s, _, err = gen.BigHost(*big); err != nil {
			fail(err)
		}
	}
	bp, err := gen.Build(s)
	if err != nil {
		fail(err)
	}
	v, y, err := gen.Parse(bp)
	if err != nil {
		fail(err)
	}
	if *out == "" {
		os.Stdout.Write(y)
	} else if err := os.WriteFile(*out, y, 0o644); err != nil {
		fail(err)
	}
	for _, i := range []int{0, len(v.Hosts) / 2, len(v.Hosts) - 1} {
		t0 := time.Now()
		fs, err := flows.Compile(v, gen.HostName(i))
		if err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "host %s: %d flows (compiled in %s)\n", gen.HostName(i), len(fs), time.Since(t0).Round(time.Microsecond))
	}
	fmt.Fprintf(os.Stderr, "spec %+v, %d bytes of YAML\n", s, len(y))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/blueprint:", err)
	os.Exit(1)
}
