package cloudstack

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vpcflow/vpcflow/cloudstack/cstest"
	"github.com/vpcflow/vpcflow/flows"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func fetchFixture(t *testing.T) (*Objects, *cstest.Server) {
	t.Helper()
	srv := cstest.New(t, "testdata/cloud", testAPIKey, testSecret)
	o, err := newTestClient(t, srv, nil).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return o, srv
}

func loadTestBase(t *testing.T) *Base {
	t.Helper()
	b, err := LoadBase("testdata/base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The fixture cloud (2 VPCs with the same web CIDR and addresses, 4 hosts,
// VMs with one and two NICs, a migrating VM, a stopped VM, a VM on a
// non-VPC network, two VPC routers, network ACL lists and security groups)
// builds into the golden blueprint, and that YAML is a valid blueprint
// file by itself.
func TestBuildGolden(t *testing.T) {
	o, _ := fetchFixture(t)
	res, err := Build(o, loadTestBase(t), BuildOptions{Endpoint: "http://cloudstack.test/client/api"})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "golden", "cloud.yaml")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, res.YAML, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./cloudstack -run TestBuildGolden -update)", err)
	}
	if string(res.YAML) != string(want) {
		t.Errorf("built YAML differs from %s (run with -update and review the diff):\n%s", golden, res.YAML)
	}
	// The export is a blueprint file like any other.
	bp, err := flows.Parse("export.yaml", res.YAML)
	if err != nil {
		t.Fatal(err)
	}
	if bp.Hash() != res.Blueprint.Hash() {
		t.Error("re-parsed export hashes differently from the built blueprint")
	}

	bp = res.Blueprint
	if len(bp.Hosts) != 3 || bp.HostByName("kvm4") != nil {
		t.Errorf("hosts %v: want kvm1..3 (kvm4 is Down)", hostNames(bp))
	}
	if h := bp.HostByName("kvm1"); h.DatapathID != "00000000000000a1" || h.TunnelMAC != "02:00:c0:00:02:0b" || h.TunnelIP != "192.0.2.11" || h.Uplink != "eth0" {
		t.Errorf("kvm1 = %+v: want the base file's datapath_id and tunnel_mac, CloudStack's ipaddress, the default uplink", h)
	}
	if h := bp.HostByName("kvm2"); h.DatapathID != "b1b2c3d400004000" {
		t.Errorf("kvm2 datapath_id %s: want the first 16 hex digits of its uuid", h.DatapathID)
	}
	vms := map[string]flows.VM{}
	for _, v := range bp.VPCs {
		for _, tr := range v.Tiers {
			for _, m := range tr.VMs {
				vms[v.Name+"/"+tr.Name+"/"+m.Name] = m
			}
		}
	}
	for name, want := range map[string]flows.VM{
		"blue/web/blue-web-1":      {Host: "kvm1", Port: "vm02000b01010b", IP: "10.10.1.11"},
		"red/web/red-web-1":        {Host: "kvm1", Port: "vm02000e01010b", IP: "10.10.1.11"},
		"blue/db/blue-multi-db":    {Host: "kvm1", Port: "vm02000b01020d", IP: "10.10.2.13"},
		"blue/db/blue-db-1":        {Host: "kvm3", Port: "vm02000b01020b", IP: "10.10.2.11"}, // Migrating: still on its source host
		"blue/web/r-20-VM-web":     {Host: "kvm3", Port: "vm02000b010101", IP: "10.10.1.1", Role: "router"},
		"red/app/r-21-VM-app":      {Host: "kvm2", Port: "vm02000e010201", IP: "10.20.2.1", Role: "router"},
		"red/app/red-app-1":        {Host: "kvm2", Port: "vm02000e01020b", IP: "10.20.2.11"},
		"blue/web/blue-multi":      {Host: "kvm1", Port: "vm02000b01010d", IP: "10.10.1.13"},
		"red/web/red-web-2":        {Host: "kvm3", Port: "vm02000e01010c", IP: "10.10.1.12"},
		"blue/web/blue-web-2":      {Host: "kvm2", Port: "vm02000b01010c", IP: "10.10.1.12"},
		"ops/mon/ops-mon-1":        {}, // a project's VM (projectid=-1), left out: its security group is unknown (TestBuildPolicy)
		"red/web/r-21-VM-web":      {Host: "kvm2", Port: "vm02000e010101", IP: "10.10.1.1", Role: "router"},
		"blue/db/r-20-VM-db":       {Host: "kvm3", Port: "vm02000b010201", IP: "10.10.2.1", Role: "router"},
		"red/app/vm-not-expected":  {},
		"blue/web/vm-not-expected": {},
	} {
		got, ok := vms[name]
		if want.Host == "" {
			if ok {
				t.Errorf("%s is in the blueprint", name)
			}
			continue
		}
		if !ok || got.Host != want.Host || got.Port != want.Port || got.IP != want.IP || got.Role != want.Role {
			t.Errorf("%s = %+v (present %v), want %+v", name, got, ok, want)
		}
	}
	if len(vms) != 12 {
		t.Errorf("%d VM NICs, want 12: %v", len(vms), vms)
	}
	// Every object left out is listed with its reason.
	skipped := map[string]string{}
	for _, s := range res.Skipped {
		skipped[s.Object] = s.Reason
	}
	for obj, reason := range map[string]string{
		`host "kvm4" (id d1b2c3d4-0000-4000-8000-000000000004)`:                                                                      "state Down",
		`network "legacy" (id 1e710000-0000-4000-8000-000000000006)`:                                                                 "not a VPC tier",
		`network "staging" (id 1e710000-0000-4000-8000-000000000005)`:                                                                "no broadcasturi yet",
		`vm "red-old" (id 0f000000-0000-4000-8000-000000000008)`:                                                                     "state Stopped",
		`vm "legacy-1" (id 0f000000-0000-4000-8000-000000000009) nic 41c00000-0000-4000-8000-000000000010`:                           "is not represented",
		`router "r-20-VM" (id 0f000000-0000-4000-8000-000000000020) nic 1`:                                                           "not a VPC tier in listNetworks",
		`vm "red-app-1" (id 0f000000-0000-4000-8000-000000000007) nic 41c00000-0000-4000-8000-000000000008 ip6address fd00:20:2::11`: "IPv6 is not represented",
		`base file host "kvm9"`: "overrides are unused",
		`router "r-22-VM" (id 0f000000-0000-4000-8000-000000000022)`: "redundant router in state BACKUP",
	} {
		if !strings.Contains(skipped[obj], reason) {
			t.Errorf("skipped[%s] = %q, want it to say %q", obj, skipped[obj], reason)
		}
	}
	if !strings.Contains(string(res.YAML), "#   vm \"red-old\"") {
		t.Error("the YAML does not list the skipped objects as comments")
	}
}

func hostNames(bp *flows.Blueprint) []string {
	var out []string
	for _, h := range bp.Hosts {
		out = append(out, h.Name)
	}
	return out
}

// Validation runs on the generated YAML exactly as on a file, and every
// error names the CloudStack object it came from.
func TestBuildErrorsNameTheObject(t *testing.T) {
	o, _ := fetchFixture(t)
	for i := range o.VMs {
		if o.VMs[i].Name == "blue-web-2" {
			o.VMs[i].NICs[0].IPAddress = "10.10.1.11" // blue-web-1's address in the same VPC
		}
		if o.VMs[i].Name == "red-web-2" {
			o.VMs[i].NICs[0].MACAddress = "02:00:0b:01:01:0b" // blue-web-1's MAC
		}
	}
	base := loadTestBase(t)
	base.Management.CIDRs = append(base.Management.CIDRs, "10.20.0.0/16") // overlaps red's app tier
	_, err := Build(o, base, BuildOptions{})
	var ve *flows.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Build error %v, want a *flows.ValidationError", err)
	}
	for _, want := range []string{
		`cloudstack: vm "blue-web-2" (id 0f000000-0000-4000-8000-000000000002) nic 41c00000-0000-4000-8000-000000000002 (vpcs[0].tiers[1].vms[2].ip): ip 10.10.1.11 is already used by`,
		`cloudstack: vm "red-web-2" (id 0f000000-0000-4000-8000-000000000006) nic 41c00000-0000-4000-8000-000000000007 (vpcs[2].tiers[2].vms[2].mac): mac 02:00:0b:01:01:0b is already used by`,
		`cloudstack: network "app" (id 1e710000-0000-4000-8000-000000000004) of vpc "red" (id 0ed00000-0000-4000-8000-000000000002) (vpcs[2].tiers[0].cidr): tier cidr 10.20.2.0/24 overlaps management cidr 10.20.0.0/16`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors\n%s\ndo not contain\n%s", err, want)
		}
	}
}

// A Running VM without hostid (a key that is not a root admin's gets no
// hostid) fails the build instead of skipping every VM.
func TestBuildNoHostID(t *testing.T) {
	o, _ := fetchFixture(t)
	for i := range o.VMs {
		if o.VMs[i].Name == "blue-web-1" {
			o.VMs[i].HostID = ""
		}
	}
	_, err := Build(o, loadTestBase(t), BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), `vm "blue-web-1" (id 0f000000-0000-4000-8000-000000000001) is Running but CloudStack did not say on which host (no hostid): the API key must be a root admin's`) {
		t.Fatalf("Build: %v", err)
	}
}

func TestParseBaseErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"version: 1\nrevision: 7\n", "revision: 7: a blueprint built from CloudStack has no revision"},
		{"version: 1\nvpcs: []\n", "field vpcs not found"},
		{"version: 1\nhost_defaults: {tunnel_ip: 192.0.2.1}\n", "only uplink and ovsdb may have defaults"},
		{"version: 1\nhosts: [{name: kvm1}, {name: kvm1}]\n", `hosts[1].name: host "kvm1" is already listed as hosts[0]`},
	} {
		_, err := ParseBase("base.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "base.yaml") {
			t.Errorf("ParseBase(%q) = %v, want an error naming base.yaml with %q", tc.yaml, err, tc.want)
		}
	}
}

func TestPortTemplate(t *testing.T) {
	o, _ := fetchFixture(t)
	tpl, err := ParsePortTemplate("{{.InstanceName}}-{{.Tier}}")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Build(o, loadTestBase(t), BuildOptions{PortTemplate: tpl})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.YAML), `{name: "blue-multi-db", host: "kvm1", port: "i-2-104-VM-db"`) {
		t.Errorf("template not applied:\n%s", res.YAML)
	}
	if _, err := ParsePortTemplate("{{.Nope}}"); err == nil || !strings.Contains(err.Error(), "fields: .VM") {
		t.Errorf("unknown field: %v", err)
	}
}

func TestDatapathIDFromUUID(t *testing.T) {
	if got := DatapathIDFromUUID("A1B2C3D4-0000-4000-8000-000000000001"); got != "a1b2c3d400004000" {
		t.Errorf("uuid: %s", got)
	}
	if got := DatapathIDFromUUID("42"); len(got) != 16 || got == DatapathIDFromUUID("43") {
		t.Errorf("non-uuid id: %s", got)
	}
}
