package gen

import (
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vpcflow/vpcflow/flows"
)

// TestPolicyYAML: the compact YAML of the policy blueprint parses to the
// same blueprint (same hash) as a plain yaml.Marshal of it, so the bench's
// file carries every ACL rule, tier acl, VM group and security group.
func TestPolicyYAML(t *testing.T) {
	raw, err := Build(Spec{Hosts: 20, VMsPerHost: 5, Tiers: 10})
	if err != nil {
		t.Fatal(err)
	}
	AddPolicy(raw)
	raw.SecurityGroups[0].Ingress[0].ICMP = nil
	code := -1
	raw.SecurityGroups[1].Ingress = append(raw.SecurityGroups[1].Ingress, flows.SGRule{Protocol: "icmp", ICMP: &flows.ICMPSpec{Code: &code}, CIDRs: []string{"10.0.0.0/8"}})
	compact, _, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	// yaml.Marshal writes an unset host_ports as [] (no ports), the compact
	// YAML leaves it out (the default list): give both the default.
	raw.Management.HostPorts = compact.Management.HostPorts
	data, err := yaml.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	full, err := flows.Parse("marshalled.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if compact.Hash() != full.Hash() {
		t.Fatalf("compact YAML parses to hash %s, yaml.Marshal to %s:\n%s", compact.Hash()[:12], full.Hash()[:12], YAML(raw)[:2000])
	}
	if len(compact.VPCs[0].ACLs) != 1 || len(compact.VPCs[0].ACLs[0].Rules) != PolicyRulesPerList || len(compact.SecurityGroups) != 4-1 {
		t.Fatalf("policy lost: %d lists, %d groups", len(compact.VPCs[0].ACLs), len(compact.SecurityGroups))
	}
	// One rule's edit changes the hash.
	if err := EditACLRule(raw, 1, 5, 4444); err != nil {
		t.Fatal(err)
	}
	edited, _, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if edited.Hash() == compact.Hash() {
		t.Fatal("EditACLRule changed nothing")
	}
	if err := EditACLRule(raw, 99, 5, 1); err == nil {
		t.Fatal("EditACLRule accepted a VPC that does not exist")
	}
}
