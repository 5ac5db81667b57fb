package cloudstack

import (
	"context"
	"strings"
	"testing"

	"github.com/vpcflow/vpcflow/cloudstack/cstest"
	"github.com/vpcflow/vpcflow/flows"
)

// buildFixture builds the fixture cloud.
func buildFixture(t *testing.T) (*Objects, *Result) {
	t.Helper()
	o, _ := fetchFixture(t)
	res, err := Build(o, loadTestBase(t), BuildOptions{Endpoint: "http://cloudstack.test/client/api"})
	if err != nil {
		t.Fatal(err)
	}
	return o, res
}

func skippedByObject(res *Result) map[string]string {
	out := map[string]string{}
	for _, s := range res.Skipped {
		out[s.Object] += s.Reason
	}
	return out
}

// The fixture cloud's network ACL lists and security groups (in the golden
// blueprint of TestBuildGolden): every field mapped, what cannot be
// expressed left out and listed, a list with a deny that cannot be written
// replaced by default_deny.
func TestBuildPolicy(t *testing.T) {
	_, res := buildFixture(t)
	bp := res.Blueprint
	vpc := func(name string) *flows.VPC {
		for i := range bp.VPCs {
			if bp.VPCs[i].Name == name {
				return &bp.VPCs[i]
			}
		}
		t.Fatalf("no vpc %s", name)
		return nil
	}
	tier := func(v, name string) *flows.Tier {
		p := vpc(v)
		for i := range p.Tiers {
			if p.Tiers[i].Name == name {
				return &p.Tiers[i]
			}
		}
		t.Fatalf("no tier %s/%s", v, name)
		return nil
	}
	for tr, acl := range map[[2]string]string{
		{"blue", "web"}: "web-acl",      // its own list
		{"blue", "db"}:  "db-acl",       // "db acl", sanitised
		{"red", "web"}:  "global-ssh",   // a global list, copied into the VPC
		{"red", "app"}:  "default_deny", // app-acl has a deny that cannot be written: fail closed
		{"red", "pub"}:  "default_deny", // no aclid
		{"ops", "mon"}:  "default_allow",
	} {
		if got := tier(tr[0], tr[1]).ACL; got != acl {
			t.Errorf("tier %s/%s acl %q, want %q", tr[0], tr[1], got, acl)
		}
	}
	if vpc("red").ACLByName("app-acl") != nil {
		t.Error("app-acl (a deny that cannot be written) is in the blueprint")
	}
	if vpc("red").ACLByName("default_allow-ac100000") == nil {
		t.Error("red's custom list named default_allow is not kept under another name")
	}
	web := vpc("blue").ACLByName("web-acl")
	rules := map[int]flows.ACLRule{}
	for _, r := range web.Rules {
		rules[r.Number] = r
	}
	for _, n := range []int{90, 100, 130} {
		if _, ok := rules[n]; ok {
			t.Errorf("web-acl #%d is in the blueprint (deleting allow, ICMPv6 allow, IPv6-only deny)", n)
		}
	}
	for n, want := range map[int]string{
		10:  "allow ingress tcp 80 [0.0.0.0/0]",
		20:  "deny ingress tcp 1-1023 [10.10.2.0/24]",
		30:  "allow ingress icmp type 8 [10.10.2.0/24 198.51.100.0/24]",
		40:  "deny egress all [203.0.113.0/24]",
		50:  "allow ingress udp 53 [10.10.0.0/16]",
		60:  "allow ingress tcp 8080-8081 [0.0.0.0/0]", // protocol 6: the allow keeps its ports
		70:  "deny ingress udp [198.51.100.0/24]",      // protocol 17: the deny covers every port
		80:  "allow ingress 47 [198.51.100.7/32]",
		110: "allow ingress tcp 443 [0.0.0.0/0]", // no endport, empty cidrlist
		120: "deny ingress icmp [10.20.0.0/16]",  // type -1 code 3: widened to any ICMP
		140: "allow ingress tcp [10.10.2.0/24]",  // TCP 0-65535 from 10.10.2.5/24
	} {
		r, ok := rules[n]
		got := ""
		if ok {
			got = r.Action + " " + r.Direction + " " + r.Match.String() + " [" + strings.Join(r.CIDRs, " ") + "]"
		}
		if got != want {
			t.Errorf("web-acl #%d = %q, want %q", n, got, want)
		}
	}
	if db := vpc("blue").ACLByName("db-acl"); len(db.Rules) != 2 || db.Rules[1].Number != 2 || db.Rules[1].Action != flows.ActionDeny {
		t.Errorf("db-acl %+v: want #10 and #40000 renumbered 1 and 2", db)
	}

	// Security groups: on the default NIC only, by unique names; a NIC
	// whose group is unknown is left out (its traffic dropped).
	vms := map[string]flows.VM{}
	for _, v := range bp.VPCs {
		for _, tr := range v.Tiers {
			for _, m := range tr.VMs {
				vms[m.Name] = m
			}
		}
	}
	for name, want := range map[string]string{
		"blue-web-1":    "default-5e000000-0000-4000-8000-000000000001 web-sg",
		"blue-multi":    "web-sg",
		"blue-multi-db": "", // not the default NIC
		"blue-db-1":     "db-sg",
		"red-app-1":     "app-sg",
		"r-20-VM-web":   "",
		"red-web-1":     "default-5e000000-0000-4000-8000-000000000004",
		"red-web-2":     "",
	} {
		if got := strings.Join(vms[name].SecurityGroups, " "); got != want {
			t.Errorf("%s security_groups %q, want %q", name, got, want)
		}
	}
	if _, ok := vms["ops-mon-1"]; ok {
		t.Error("ops-mon-1 (in a security group listSecurityGroups does not show) is in the blueprint")
	}
	app := bp.SecurityGroupByName("app-sg")
	if len(app.Ingress) != 1 || strings.Join(app.Ingress[0].Groups, ",") != "web-sg" {
		t.Errorf("app-sg ingress %+v: want one rule from web-sg (another account, same domain)", app.Ingress)
	}
	if len(app.Egress) != 1 || strings.Join(app.Egress[0].CIDRs, ",") != "0.0.0.0/32" {
		t.Errorf("app-sg egress %+v: want the placeholder that keeps egress restricted", app.Egress)
	}
	if bp.SecurityGroupByName("unused") != nil || bp.SecurityGroupByName("monitoring") == nil {
		t.Error("want the groups in use and the groups their rules name, and only those")
	}

	skipped := skippedByObject(res)
	for obj, reason := range map[string]string{
		`network ACL list "app-acl" (id ac100000-0000-4000-8000-000000000020)`:                                                                "whole list is left out and its tiers (red/app) get default_deny (fail closed)",
		`network ACL item #90 (id a1700000-0000-4000-8000-000000000013) of list "web-acl"`:                                                    "state Deleting",
		`network ACL item #130 (id a1700000-0000-4000-8000-000000000017) of list "web-acl"`:                                                   "leaving out this deny widens nothing",
		`network ACL item #70 (id a1700000-0000-4000-8000-000000000011) of list "web-acl"`:                                                    "the deny covers every port",
		`network ACL item #50 (id a1700000-0000-4000-8000-000000000009) of list "web-acl"`:                                                    "IPv6 cidrs fd00::/8 left out",
		`network "pub" (id 1e710000-0000-4000-8000-000000000077)`:                                                                             "no aclid: the tier gets default_deny",
		`vm "ops-mon-1" (id 0f000000-0000-4000-8000-000000000030) nic 41c00000-0000-4000-8000-000000000030`:                                   "is not in listSecurityGroups",
		`security group "app-sg" (id 5e000000-0000-4000-8000-000000000005, account globex) ingress rule 5e700000-0000-4000-8000-000000000010`: `names security group "nosuch" of account "globex"`,
		`security group "app-sg" (id 5e000000-0000-4000-8000-000000000005, account globex)`:                                                   "egress stays restricted",
		`network ACL list "orphan" (id ac100000-0000-4000-8000-000000000040)`:                                                                 "not in listVPCs",
		`network ACL item #5 (id a1700000-0000-4000-8000-000000000024)`:                                                                       "not in listNetworkACLLists",
	} {
		if !strings.Contains(skipped[obj], reason) {
			t.Errorf("skipped[%s] = %q, want it to say %q", obj, skipped[obj], reason)
		}
	}
}

// A deny rule's list that fails closed sends every tier using it to
// default_deny; a list whose only problem is an allow keeps its other
// rules.
func TestBuildPolicyFailClosed(t *testing.T) {
	o, _ := fetchFixture(t)
	// Make web-acl's #20 (deny tcp 1-1023) unwritable: protocol 58.
	for i := range o.ACLItems {
		if o.ACLItems[i].ID == "a1700000-0000-4000-8000-000000000006" {
			o.ACLItems[i].Protocol = "58"
		}
	}
	res, err := Build(o, loadTestBase(t), BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blue := &res.Blueprint.VPCs[0]
	if blue.ACLByName("web-acl") != nil || blue.Tiers[1].ACL != flows.ACLDefaultDeny {
		t.Errorf("web-acl with an unwritable deny: list kept %v, tier web acl %q (want left out, default_deny)", blue.ACLByName("web-acl") != nil, blue.Tiers[1].ACL)
	}
	if blue.Tiers[0].ACL != "db-acl" {
		t.Errorf("tier db acl %q: another list's failure must not touch it", blue.Tiers[0].ACL)
	}
	if !strings.Contains(skippedByObject(res)[`network ACL list "web-acl" (id ac100000-0000-4000-8000-000000000010)`], "item #20 (id a1700000-0000-4000-8000-000000000006) cannot be written: protocol 58") {
		t.Errorf("the failure is not listed: %v", res.Skipped)
	}

	// The same item as an allow is only left out.
	for i := range o.ACLItems {
		if o.ACLItems[i].ID == "a1700000-0000-4000-8000-000000000006" {
			o.ACLItems[i].Action = "Allow"
		}
	}
	res, err = Build(o, loadTestBase(t), BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blue = &res.Blueprint.VPCs[0]
	if l := blue.ACLByName("web-acl"); l == nil || len(l.Rules) != 10 || blue.Tiers[1].ACL != "web-acl" {
		t.Errorf("web-acl with an unwritable allow: %+v, tier acl %q (want 10 rules kept)", l, blue.Tiers[1].ACL)
	}

	// Two items with one number: their order is undefined, fail closed.
	for i := range o.ACLItems {
		if o.ACLItems[i].ID == "a1700000-0000-4000-8000-000000000006" {
			o.ACLItems[i].Protocol, o.ACLItems[i].Number = "tcp", some(10)
		}
	}
	res, err = Build(o, loadTestBase(t), BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Blueprint.VPCs[0].Tiers[1].ACL != flows.ACLDefaultDeny {
		t.Error("two items numbered 10 did not fail web-acl closed")
	}

	// A list named default_allow without the built-in's items is not
	// taken for the built-in: its tier (ops/mon) gets default_deny.
	for i := range o.ACLItems {
		if o.ACLItems[i].ID == "a1700000-0000-4000-8000-000000000001" {
			o.ACLItems[i].Protocol = "tcp"
		}
	}
	res, err = Build(o, loadTestBase(t), BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if acl := res.Blueprint.VPCs[1].Tiers[0].ACL; acl != flows.ACLDefaultDeny {
		t.Errorf("ops/mon acl %q with a default_allow that is not the built-in: want default_deny", acl)
	}
	if !strings.Contains(skippedByObject(res)[`network "mon" (id 1e710000-0000-4000-8000-000000000007)`], "has the built-in's name but not its items") {
		t.Errorf("not listed: %v", res.Skipped)
	}
}

// Fetch reads every list, item and group (accounts' and projects', the
// built-in lists once), asks listVirtualMachines for the VMs' groups, and
// decodes CloudStack's numbers whether sent as strings or numbers; a
// failure of any policy call fails the whole fetch.
func TestFetchPolicy(t *testing.T) {
	srv := cstest.New(t, "testdata/cloud", testAPIKey, testSecret)
	c := newTestClient(t, srv, nil) // page size 3: several pages each
	o, err := c.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(o.ACLLists) != 8 || len(o.ACLItems) != 24 || len(o.SecurityGroups) != 7 {
		t.Fatalf("got %d lists, %d items, %d groups; want 8, 24, 7", len(o.ACLLists), len(o.ACLItems), len(o.SecurityGroups))
	}
	if q := srv.LastQuery("listVirtualMachines"); q.Get("details") != "nics,secgrp" {
		t.Errorf("listVirtualMachines details=%q: without secgrp CloudStack leaves the VMs' groups out", q.Get("details"))
	}
	for _, cmd := range []string{"listNetworkACLLists", "listNetworkACLs", "listSecurityGroups"} {
		if q := srv.LastQuery(cmd); q.Get("listall") != "true" || q.Get("projectid") != "-1" {
			t.Errorf("%s: last request %v, want listall=true and a projectid=-1 pass", cmd, q)
		}
	}
	var it *ACLItem
	for i := range o.ACLItems {
		if o.ACLItems[i].ID == "a1700000-0000-4000-8000-000000000007" {
			it = &o.ACLItems[i]
		}
	}
	if it == nil || it.Number != some(30) || it.ICMPType != some(8) || it.ICMPCode != some(-1) || it.StartPort.set || it.CIDRList != "10.10.2.0/24, 198.51.100.0/24" || it.ACLID != "ac100000-0000-4000-8000-000000000010" {
		t.Errorf("item #30 decoded as %+v", it)
	}
	for i := range o.ACLItems {
		if o.ACLItems[i].ID == "a1700000-0000-4000-8000-000000000010" && (o.ACLItems[i].StartPort != some(8080) || o.ACLItems[i].EndPort != some(8081)) {
			t.Errorf("item #60 ports %s-%s: want 8080-8081 from the strings", o.ACLItems[i].StartPort, o.ACLItems[i].EndPort)
		}
	}
	for i := range o.VMs {
		if o.VMs[i].Name == "blue-web-1" && (len(o.VMs[i].SecurityGroups) != 2 || o.VMs[i].SecurityGroups[0].ID != "5e000000-0000-4000-8000-000000000002") {
			t.Errorf("blue-web-1 groups %+v", o.VMs[i].SecurityGroups)
		}
	}

	for _, tc := range []struct {
		cmd   string
		page  int
		fault cstest.Fault
		want  string
	}{
		{"listNetworkACLLists", 1, cstest.HTTP500, "cloudstack listNetworkACLLists page 1: HTTP 500"},
		{"listNetworkACLs", 2, cstest.EmptyPage, "cloudstack listNetworkACLs: partial list"},
		{"listSecurityGroups", 1, cstest.APIError, "cloudstack listSecurityGroups page 1: HTTP 431"},
	} {
		srv.Inject(func(command string, page int) cstest.Fault {
			if command == tc.cmd && page == tc.page {
				return tc.fault
			}
			return cstest.None
		})
		if _, err := c.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s fault %d: Fetch error %v, want %q", tc.cmd, tc.fault, err, tc.want)
		}
	}
	srv.Inject(nil)
}
