package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

// The demo's second act: a policy on VPC blue (docs/policy.md), loaded by
// editing the blueprint file the controller watches, then probed with
// real TCP connections and shown with the rules' own flow counters.
//
//	blue  routing: distributed (gateways 10.10.1.1, 10.10.2.1)
//	web   web-sg: tcp 80 from anywhere, icmp echo from the VPC
//	db    db-sg: tcp 5432 only from members of web-sg
//	      db-acl: #10 deny tcp 22 (ssh) from anywhere, #20 allow the rest from web
//	red   no policy: unchanged

const demoPolicyText = `security_groups:
  - name: web-sg
    ingress:
      - {protocol: tcp, ports: 80, cidrs: [0.0.0.0/0]}
      - {protocol: icmp, icmp: {type: 8}, cidrs: [10.10.0.0/16]}
  - name: db-sg
    ingress:
      - {protocol: tcp, ports: 5432, groups: [web-sg]}
`

// demoPolicyBlueprint returns the demo blueprint text with the policy.
func demoPolicyBlueprint(base string) (string, error) {
	text := base
	for _, r := range [][2]string{
		{"revision: 1", "revision: 2"},
		{"  - name: blue\n    tiers:\n", `  - name: blue
    routing: distributed
    acls:
      - name: db-acl
        rules:
          - {number: 10, action: deny, direction: ingress, protocol: tcp, ports: 22, cidrs: [0.0.0.0/0]}
          - {number: 20, action: allow, direction: ingress, protocol: all, cidrs: [10.10.1.0/24]}
    tiers:
`},
		{"        vni: 5001\n        cidr: 10.10.1.0/24\n", "        vni: 5001\n        cidr: 10.10.1.0/24\n        gateway: 10.10.1.1\n"},
		{"        vni: 5002\n        cidr: 10.10.2.0/24\n", "        vni: 5002\n        cidr: 10.10.2.0/24\n        gateway: 10.10.2.1\n        acl: db-acl\n"},
		{"ip: 10.10.1.11}", "ip: 10.10.1.11, security_groups: [web-sg]}"},
		{"ip: 10.10.1.12}", "ip: 10.10.1.12, security_groups: [web-sg]}"},
		{"ip: 10.10.2.11}", "ip: 10.10.2.11, security_groups: [db-sg]}"},
		{"ip: 10.10.2.12}", "ip: 10.10.2.12, security_groups: [db-sg]}"},
	} {
		if !strings.Contains(text, r[0]) {
			return "", fmt.Errorf("demo policy: %q is not in the blueprint (run the policy act with the built-in demo blueprint)", r[0])
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	return text + demoPolicyText, nil
}

// demoPolicy loads the policy and probes it; lines starting "WRONG" are
// failures.
func demoPolicy(ctx context.Context, l *lab.Lab, bpPath string) ([]string, error) {
	base, err := os.ReadFile(bpPath)
	if err != nil {
		return nil, err
	}
	text, err := demoPolicyBlueprint(string(base))
	if err != nil {
		return nil, err
	}
	bp, err := flows.Parse(bpPath, []byte(text))
	if err != nil {
		return nil, err
	}
	tmp := bpPath + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, bpPath); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if _, err := l.WaitConverged(ctx, 30*time.Second, 2); err != nil {
		return nil, fmt.Errorf("policy blueprint: %w", err)
	}
	fmt.Printf("policy loaded (revision 2) and on every bridge in %s\n", time.Since(t0).Round(time.Millisecond))
	for vm, gw := range map[string]string{"blue-web-1": "10.10.1.1", "blue-web-2": "10.10.1.1", "blue-db-1": "10.10.2.1", "blue-db-2": "10.10.2.1"} {
		if out, err := l.Exec(ctx, l.VMNS(vm), "ip", "route", "replace", "default", "via", gw); err != nil {
			return nil, fmt.Errorf("%s: default route via %s: %v: %s", vm, gw, err, out)
		}
	}
	var stop []*lab.Proc
	defer func() {
		for _, p := range stop {
			_ = p.Stop()
		}
	}()
	for _, x := range []struct {
		vm   string
		port int
	}{{"blue-web-2", 80}, {"blue-web-2", 22}, {"blue-db-1", 5432}, {"blue-db-1", 22}, {"red-web-2", 22}} {
		p, err := l.Listen(x.vm, "tcp", x.port)
		if err != nil {
			return nil, err
		}
		stop = append(stop, p)
	}
	var out []string
	probe := func(from, to, ip string, port int, want bool, why string) {
		// An allowed connection may need a moment (ARP, the first reconcile
		// after the route change): retry it for up to 5 s; a denied one gets
		// a bounded 1 s window.
		got := false
		deadline := time.Now().Add(5 * time.Second)
		for {
			got = l.TCPConnect(ctx, from, ip, port, time.Second) == nil
			if got || !want || time.Now().After(deadline) {
				break
			}
		}
		verdict := "denied "
		if got {
			verdict = "allowed"
		}
		mark := "  "
		if got != want {
			mark = "WRONG "
		}
		out = append(out, fmt.Sprintf("%s%s %-10s -> %-10s tcp %-4d  %s", mark, verdict, from, to, port, why))
	}
	probe("blue-db-1", "blue-web-2", "10.10.1.12", 80, true, "web-sg: tcp 80 from anywhere")
	probe("blue-db-1", "blue-web-2", "10.10.1.12", 22, false, "web-sg allows no ssh")
	probe("blue-web-1", "blue-db-1", "10.10.2.11", 5432, true, "db-acl #20, then db-sg: 5432 from web-sg members")
	probe("blue-db-2", "blue-db-1", "10.10.2.11", 5432, false, "db-sg: 5432 only from web-sg (blue-db-2 is not in it)")
	probe("blue-web-1", "blue-db-1", "10.10.2.11", 22, false, "db-acl #10 denies ssh before #20")
	probe("red-web-1", "red-web-2", "10.10.1.12", 22, true, "vpc red has no policy: unchanged")

	// The rules' own counters, summed over the hosts.
	count := func(c flows.Cookie) uint64 {
		var n uint64
		for _, h := range bp.Hosts {
			v, _ := l.FlowPackets(ctx, h.Name, uint64(c), uint64(flows.RuleMask))
			n += v
		}
		return n
	}
	out = append(out, "", "rule counters (packets, all hosts):")
	for _, r := range []struct {
		c    flows.Cookie
		name string
	}{
		{flows.MakeCookie(flows.CatSGRule, flows.SGRuleObject("web-sg", flows.DirIngress, 0), 0), "sg web-sg ingress[0] (tcp 80)"},
		{flows.MakeCookie(flows.CatSGRule, flows.SGRuleObject("db-sg", flows.DirIngress, 0), 0), "sg db-sg ingress[0] (tcp 5432 from web-sg)"},
		{flows.MakeCookie(flows.CatACLRule, flows.ACLRuleObject("blue", "db-acl", 10), 0), "acl blue/db-acl #10 (deny ssh)"},
		{flows.MakeCookie(flows.CatACLRule, flows.ACLRuleObject("blue", "db-acl", 20), 0), "acl blue/db-acl #20 (allow from web)"},
		{flows.MakeCookie(flows.CatSGDefault, flows.VMObject("blue-web-2"), 0), "blue-web-2: nothing of its groups allowed it"},
		{flows.MakeCookie(flows.CatSGDefault, flows.VMObject("blue-db-1"), 0), "blue-db-1: nothing of its groups allowed it"},
	} {
		out = append(out, fmt.Sprintf("  %6d  %s", count(r.c), r.name))
	}
	return out, nil
}
