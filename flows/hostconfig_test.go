package flows

import (
	"math/rand"
	"regexp"
	"strings"
	"testing"
)

var (
	ipv4Token = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)
	macToken  = regexp.MustCompile(`(?i)\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b`)
)

// tenantInventory is every VM's MAC, IP and name and every VPC and tier
// name of bp: what a host file must never hold.
func tenantInventory(bp *Blueprint) (addrs, macs, names map[string]string) {
	addrs, macs, names = map[string]string{}, map[string]string{}, map[string]string{}
	for _, p := range bp.VPCs {
		names[p.Name] = "vpc " + p.Name
		for _, t := range p.Tiers {
			names[t.Name] = "tier " + p.Name + "/" + t.Name
			for _, m := range t.VMs {
				addrs[m.Addr.String()] = "VM " + m.Name
				macs[m.HW.String()] = "VM " + m.Name
				names[m.Name] = "VM " + m.Name
			}
		}
	}
	return addrs, macs, names
}

// hostConfigRoundTrip extracts host name's file, renders it (YAML and
// JSON) and parses both back strictly; it returns the YAML text and the
// parsed YAML host file.
func hostConfigRoundTrip(t *testing.T, bp *Blueprint, name string) (string, *HostConfig) {
	t.Helper()
	hc, err := HostConfigFor(bp, name)
	if err != nil {
		t.Fatalf("%s: HostConfigFor(%s): %v", bp.Source, name, err)
	}
	y, err := hc.YAML("host file of " + name)
	if err != nil {
		t.Fatalf("%s/%s: YAML: %v", bp.Source, name, err)
	}
	parsed, err := ParseHostConfig(name+".yaml", y)
	if err != nil {
		t.Fatalf("%s/%s: the rendered host file does not parse back: %v\n%s", bp.Source, name, err, y)
	}
	j, err := hc.JSON()
	if err != nil {
		t.Fatalf("%s/%s: JSON: %v", bp.Source, name, err)
	}
	pj, err := ParseHostConfig(name+".json", j)
	if err != nil {
		t.Fatalf("%s/%s: the JSON host file does not parse back: %v\n%s", bp.Source, name, err, j)
	}
	if parsed.Blueprint().Hash() != pj.Blueprint().Hash() || parsed.Blueprint().Hash() != hc.Blueprint().Hash() {
		t.Fatalf("%s/%s: YAML and JSON host files differ:\n%s\n%s", bp.Source, name, y, j)
	}
	return string(y), parsed
}

// TestHostConfigHoldsNoTenantInventory is the property of the host file:
// for every host of the demo and of generated blueprints it holds no VM's
// MAC or IP and no VPC, tier or VM name, while the host-only blueprint it
// turns into compiles exactly the management (bootstrap) flows the full
// blueprint compiles for that host, cookies and notes included.
func TestHostConfigHoldsNoTenantInventory(t *testing.T) {
	bps := []*Blueprint{loadDemo(t)}
	for i := 0; i < genCount()/4; i++ {
		bps = append(bps, genBlueprint(t, rand.New(rand.NewSource(int64(4000+i))), i))
	}
	checked := 0
	for _, bp := range bps {
		addrs, macs, names := tenantInventory(bp)
		for hi := range bp.Hosts {
			h := &bp.Hosts[hi]
			text, hc := hostConfigRoundTrip(t, bp, h.Name)
			for _, tok := range ipv4Token.FindAllString(text, -1) {
				if vm, ok := addrs[tok]; ok {
					t.Errorf("%s: host file of %s holds %s's IP %s:\n%s", bp.Source, h.Name, vm, tok, text)
				}
			}
			for _, tok := range macToken.FindAllString(text, -1) {
				if vm, ok := macs[strings.ToLower(tok)]; ok {
					t.Errorf("%s: host file of %s holds %s's MAC %s:\n%s", bp.Source, h.Name, vm, tok, text)
				}
			}
			for _, key := range []string{"vpcs:", "vms:", "tiers:", "security_groups:", "acls:"} {
				if strings.Contains(text, key) {
					t.Errorf("%s: host file of %s has a tenant key %s:\n%s", bp.Source, h.Name, key, text)
				}
			}
			for _, w := range regexp.MustCompile(`[A-Za-z0-9_.-]+`).FindAllString(text, -1) {
				if what, ok := names[w]; ok && bp.HostByName(w) == nil {
					t.Errorf("%s: host file of %s names %s:\n%s", bp.Source, h.Name, what, text)
				}
			}

			// The same bootstrap flows, from the host file alone.
			rbp := hc.Blueprint()
			rh := rbp.HostByName(h.Name)
			if rh == nil || rh != &rbp.Hosts[0] {
				t.Fatalf("%s: the host-only blueprint of %s does not start with it", bp.Source, h.Name)
			}
			want := Render(CompileManagement(bp, h), true)
			got := Render(CompileManagement(rbp, rh), true)
			if got != want {
				t.Errorf("%s: host %s: the host file's bootstrap flows differ from the blueprint's:\n--- blueprint\n%s\n--- host file\n%s", bp.Source, h.Name, want, got)
			}
			// Compile of the host-only blueprint works and, having no
			// VMs, names none.
			fs, err := Compile(rbp, h.Name)
			if err != nil {
				t.Fatalf("%s: Compile of %s's host-only blueprint: %v", bp.Source, h.Name, err)
			}
			for _, tok := range ipv4Token.FindAllString(Render(fs, true), -1) {
				if vm, ok := addrs[tok]; ok {
					t.Errorf("%s: the host-only blueprint of %s compiles %s's IP %s", bp.Source, h.Name, vm, tok)
				}
			}
			checked++
		}
	}
	t.Logf("%d host files of %d blueprints checked", checked, len(bps))
}

const goodHostFile = `kind: vpcflow.host/v1
revision: 7
encapsulation: vxlan
host:
  name: kvm1
  datapath_id: "00000000000000a1"
  tunnel_ip: 192.0.2.11
  tunnel_mac: "02:00:c0:00:02:0b"
  uplink: {name: bond0, bond: [eth0, eth1], lacp: active}
controllers: [tcp:192.0.2.250:6653]
management:
  cidrs: [192.0.2.0/24]
peers:
  - name: kvm2
    tunnel_ip: 192.0.2.12
trusted_peers: [203.0.113.7]
`

// TestHostConfigStrict: a host file is decoded and validated as strictly
// as a blueprint; every error names file:line:column, the field and the fix.
func TestHostConfigStrict(t *testing.T) {
	hc, err := ParseHostConfig("host.yaml", []byte(goodHostFile))
	if err != nil {
		t.Fatalf("good host file: %v", err)
	}
	if hc.Host.Uplink != "bond0" || hc.Host.UplinkSpec.Mode != BondBalanceTCP || len(hc.Management.HostPorts) != len(DefaultHostPorts) || hc.Host.DPID != 0xa1 {
		t.Errorf("defaults not applied: %+v", hc)
	}
	for _, tc := range []struct{ name, edit, want string }{
		{"unknown top key", "trusted_peers: [203.0.113.7]\nvpcs: []", `host.yaml:17:1: vpcs: unknown key "vpcs"`},
		{"unknown host key", "  uplink: {", `host.yaml:9:3: host.uplinc`},
		{"typo suggestion", "controllers:", `did you mean "controllers"`},
		{"missing kind", "kind: vpcflow.host/v1\n", `kind is missing`},
		{"other kind", "vpcflow.host/v1", `unsupported kind "vpcflow.host/v2"`},
		{"unquoted dpid", `"00000000000000a1"`, `host.yaml:6:16: host.datapath_id: datapath_id 0000000000000161 is unquoted`},
		{"peer is the host", "    tunnel_ip: 192.0.2.12", `host.yaml:15:16: peers[0].tunnel_ip: tunnel_ip 192.0.2.11 is already host.tunnel_ip`},
		{"peer name dup", "  - name: kvm2", `peers[0].name: peer name "kvm1" is already used by host.name`},
		{"trusted peer is a peer", "[203.0.113.7]", `trusted_peers[0]: trusted peer 192.0.2.12 is peers[0].tunnel_ip`},
		{"bad controller", "tcp:192.0.2.250:6653", `host.yaml:10:15: controllers[0]: controller target "tcp:192.0.2.250" has no port`},
		{"relative tls", "management:", `ovsdb_tls.cert: "pki/h.pem" is a relative path`},
		{"blueprint", "kind: vpcflow.host/v1", `this is a blueprint, not a host file: pass it with --blueprint`},
		{"two documents", "trusted_peers: [203.0.113.7]", `more than one YAML document`},
	} {
		text := goodHostFile
		switch tc.name {
		case "unknown top key":
			text = strings.Replace(text, "trusted_peers: [203.0.113.7]", tc.edit, 1)
		case "unknown host key":
			text = strings.Replace(text, "  uplink: {", "  uplinc: {", 1)
		case "typo suggestion":
			text = strings.Replace(text, "controllers:", "controlers:", 1)
		case "missing kind":
			text = strings.Replace(text, tc.edit, "", 1)
		case "other kind":
			text = strings.Replace(text, tc.edit, "vpcflow.host/v2", 1)
		case "unquoted dpid":
			text = strings.Replace(text, tc.edit, "0000000000000161", 1)
		case "peer is the host":
			text = strings.Replace(text, tc.edit, "    tunnel_ip: 192.0.2.11", 1)
		case "peer name dup":
			text = strings.Replace(text, tc.edit, "  - name: kvm1", 1)
		case "trusted peer is a peer":
			text = strings.Replace(text, tc.edit, "[192.0.2.12]", 1)
		case "bad controller":
			text = strings.Replace(text, tc.edit, "tcp:192.0.2.250", 1)
		case "relative tls":
			text = strings.Replace(text, tc.edit, "ovsdb_tls: {cert: pki/h.pem, key: /etc/h.key, ca: /etc/ca.pem}\nmanagement:", 1)
		case "blueprint":
			text = strings.Replace(text, tc.edit, "version: 1\nvpcs: []", 1)
		case "two documents":
			text = text + "---\nkind: vpcflow.host/v1\n"
		}
		if text == goodHostFile {
			t.Fatalf("%s: the edit changed nothing", tc.name)
		}
		_, err := ParseHostConfig("host.yaml", []byte(text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v\nwant an error with %q", tc.name, err, tc.want)
		}
	}
	if _, err := ParseHostConfig("big.yaml", []byte(strings.Repeat("#", MaxHostConfigBytes+1))); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized host file: %v", err)
	}
	// Every problem at once, sorted by position.
	bad := strings.Replace(strings.Replace(goodHostFile, "192.0.2.12", "192.0.2.300", 1), `"02:00:c0:00:02:0b"`, `"01:00:c0:00:02:0b"`, 1)
	_, err = ParseHostConfig("host.yaml", []byte(bad))
	if err == nil || !strings.Contains(err.Error(), "host.yaml:8:15: host.tunnel_mac") || !strings.Contains(err.Error(), "host.yaml:15:16: peers[0].tunnel_ip") {
		t.Errorf("two problems: %v", err)
	}
}
