package micro

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vpcflow/vpcflow/bench/gen"
	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/flows"
)

// The policy benchmark (issue 12, docs/performance.md "Policy"): the
// realistic 200-host blueprint (4,000 VMs, 50 tiers in 10 VPCs) with
// 1,000 ACL rules (100 per VPC list, every tier under its VPC's list) and
// security groups on every VM (web/app/db roles by tier position, db
// rules that reference the web group: 400 members per VPC).
//
//	go test -run x -bench Policy -benchtime 5x ./bench/micro/

// policyBlueprint returns the blueprint; rule, when >= 0, changes that
// rule of VPC 0's list (its port) to measure one rule's change.
func policyBlueprint(tb testing.TB, rule int) *flows.Blueprint {
	tb.Helper()
	raw, err := gen.Build(gen.Realistic(200))
	if err != nil {
		tb.Fatal(err)
	}
	raw.Revision = 1
	gen.AddPolicy(raw)
	if rule >= 0 {
		if err := gen.EditACLRule(raw, 0, rule, 4444); err != nil {
			tb.Fatal(err)
		}
	}
	data, err := yaml.Marshal(raw)
	if err != nil {
		tb.Fatal(err)
	}
	bp, err := flows.Parse("policy-bench.yaml", data)
	if err != nil {
		tb.Fatal(err)
	}
	return bp
}

// BenchmarkPolicyCompile200: compile all 200 hosts of the policy
// blueprint (index included), with flows per host.
func BenchmarkPolicyCompile200(b *testing.B) {
	bp := policyBlueprint(b, -1)
	b.ResetTimer()
	var total, policyFlows, maxHost int
	for i := 0; i < b.N; i++ {
		total, policyFlows, maxHost = 0, 0, 0
		ix := flows.NewIndex(bp)
		for _, h := range bp.Hosts {
			c, err := flows.CompileHost(ix, h.Name, flows.CompileOptions{NoNotes: true})
			if err != nil {
				b.Fatal(err)
			}
			fs, err := c.Flows()
			if err != nil {
				b.Fatal(err)
			}
			total += len(fs)
			maxHost = max(maxHost, len(fs))
			for j := range fs {
				if flows.IsPolicyTable(fs[j].Table) {
					policyFlows++
				}
			}
		}
	}
	b.ReportMetric(float64(total)/float64(len(bp.Hosts)), "flows/host")
	b.ReportMetric(float64(policyFlows)/float64(len(bp.Hosts)), "policy-flows/host")
	b.ReportMetric(float64(maxHost), "max-flows/host")
}

// TestPolicyRuleChangeScope: one ACL rule changed in VPC 0 rewrites only
// that rule's flows, only on the hosts carrying VPC 0's policy VMs; every
// other host gets 0 flow changes. Also reports the flows per rule.
func TestPolicyRuleChangeScope(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the 200-host policy blueprint takes a few seconds")
	}
	before, after := policyBlueprint(t, -1), policyBlueprint(t, 5)
	ixb, ixa := flows.NewIndex(before), flows.NewIndex(after)
	start := time.Now()
	touched, mods, untouched := 0, 0, 0
	var perHost []int
	for _, h := range after.Hosts {
		pb, err := flows.CompileHost(ixb, h.Name, flows.CompileOptions{NoNotes: true})
		if err != nil {
			t.Fatal(err)
		}
		pa, err := flows.CompileHost(ixa, h.Name, flows.CompileOptions{NoNotes: true})
		if err != nil {
			t.Fatal(err)
		}
		fb, fa, err := flows.ChangedSegments(pb, pa)
		if err != nil {
			t.Fatal(err)
		}
		d := controller.DiffFlows(fa, fb)
		n := len(d.Missing) + len(d.Extra) + len(d.Modified)
		carries := false
		for _, r := range ixa.Blueprint().VPCs[0].Tiers {
			for _, vm := range r.VMs {
				carries = carries || vm.Host == h.Name
			}
		}
		switch {
		case n > 0 && !carries:
			t.Errorf("host %s carries no VM of vpc0 but gets %d flow changes", h.Name, n)
		case n > 0:
			touched++
			mods += n
			perHost = append(perHost, n)
		default:
			untouched++
		}
	}
	sort.Ints(perHost)
	t.Logf("one ACL rule changed (tcp 1005 -> 4444): %d hosts rewritten (%d flow changes, per host %v..%v), %d hosts untouched; planned+diffed in %s",
		touched, mods, perHost[0], perHost[len(perHost)-1], untouched, time.Since(start).Round(time.Millisecond))
	if touched == 0 || untouched == 0 {
		t.Errorf("the change touched %d hosts and spared %d: the bench does not measure scope", touched, untouched)
	}
}

// BenchmarkPolicyLoad200 is what a reload of the policy blueprint costs
// before any bridge is touched (the controller's write -> "blueprint
// loaded"): read, parse and validate the file (compact YAML, as the
// bridges bench writes it), hash it and index it.
func BenchmarkPolicyLoad200(b *testing.B) {
	raw, err := gen.Build(gen.Realistic(200))
	if err != nil {
		b.Fatal(err)
	}
	gen.AddPolicy(raw)
	p := filepath.Join(b.TempDir(), "bp.yaml")
	if err := os.WriteFile(p, gen.YAML(raw), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bp, err := flows.Load(p)
		if err != nil {
			b.Fatal(err)
		}
		_ = bp.Hash()
		_ = flows.NewIndex(bp)
	}
}
