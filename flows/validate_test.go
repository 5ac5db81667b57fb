package flows

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// goodBlueprint builds a small valid blueprint in code (no YAML).
func goodBlueprint() *Blueprint {
	return &Blueprint{
		Version:      1,
		Revision:     3,
		Management:   Management{CIDRs: []string{"192.0.2.0/24"}},
		TrustedPeers: []string{"203.0.113.9"},
		Controllers:  []string{"tcp:192.0.2.250:6653"},
		Hosts: []Host{
			{Name: "kvm1", DatapathID: "00000000000000a1", TunnelIP: "198.51.100.11", TunnelMAC: "02:00:c6:33:64:0b", Uplink: "eth0"},
			{Name: "kvm2", DatapathID: "00000000000000A2", TunnelIP: "198.51.100.12", Uplink: "eth0", OVSDB: "ssl:192.0.2.12:6640"},
		},
		VPCs: []VPC{
			{Name: "blue", Tiers: []Tier{{Name: "web", VNI: 5001, CIDR: "10.10.1.0/24", VMs: []VM{
				{Name: "blue-web-1", Host: "kvm1", Port: "vnet0", MAC: "52:54:00:0a:01:01", IP: "10.10.1.11"},
			}}}},
			{Name: "red", Tiers: []Tier{{Name: "web", VNI: 6001, CIDR: "10.10.1.0/24", VMs: []VM{
				{Name: "red-web-1", Host: "kvm2", Port: "vnet0", MAC: "52:54:00:0b:01:01", IP: "10.10.1.11"},
			}}}},
		},
	}
}

func TestValidateFillsParsedFields(t *testing.T) {
	b := goodBlueprint()
	if err := b.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if b.Encapsulation != EncapVXLAN || len(b.Management.HostPorts) != len(DefaultHostPorts) {
		t.Errorf("defaults not applied: %q %v", b.Encapsulation, b.Management.HostPorts)
	}
	if b.Hosts[1].DPID != 0xa2 || b.Hosts[0].Addr != netip.MustParseAddr("198.51.100.11") {
		t.Errorf("host parse: %x %v", b.Hosts[1].DPID, b.Hosts[0].Addr)
	}
	if !b.Hosts[0].HasMAC || b.Hosts[0].MAC != (MAC{2, 0, 0xc6, 0x33, 0x64, 0x0b}) || b.Hosts[1].HasMAC {
		t.Errorf("host MAC: %v %v %v", b.Hosts[0].MAC, b.Hosts[0].HasMAC, b.Hosts[1].HasMAC)
	}
	tr := b.VPCs[1].Tiers[0]
	if tr.Prefix != netip.MustParsePrefix("10.10.1.0/24") || tr.VMs[0].Addr != netip.MustParseAddr("10.10.1.11") || tr.VMs[0].HW != (MAC{0x52, 0x54, 0, 0x0b, 1, 1}) {
		t.Errorf("tier/vm parse: %v %v %v", tr.Prefix, tr.VMs[0].Addr, tr.VMs[0].HW)
	}
	if len(b.MgmtPrefixes) != 1 || len(b.PeerAddrs) != 1 || b.PeerAddrs[0] != netip.MustParseAddr("203.0.113.9") {
		t.Errorf("MgmtPrefixes %v PeerAddrs %v", b.MgmtPrefixes, b.PeerAddrs)
	}
}

func TestValidateFailureLeavesParsedFieldsUnset(t *testing.T) {
	b := goodBlueprint()
	b.VPCs[0].Tiers[0].VMs[0].IP = "10.10.9.1"
	if b.Validate() == nil {
		t.Fatal("Validate accepted an IP outside its tier")
	}
	if b.Hosts[0].DPID != 0 || b.VPCs[0].Tiers[0].Prefix.IsValid() || b.MgmtPrefixes != nil {
		t.Errorf("parsed fields filled on failure")
	}
}

// TestValidateRules exercises rules on code-built blueprints (no
// positions): each mutation must produce an error on exactly that field.
func TestValidateRules(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(b *Blueprint)
		field  string
		msg    string
	}{
		{"version", func(b *Blueprint) { b.Version = 0 }, "version", "version is missing"},
		{"revision", func(b *Blueprint) { b.Revision = MaxRevision + 1 }, "revision", "too large"},
		{"encapsulation", func(b *Blueprint) { b.Encapsulation = "VXLAN" }, "encapsulation", "use vxlan or gre"},
		{"mgmt cidr", func(b *Blueprint) { b.Management.CIDRs = []string{"192.0.2.7/24"} }, "management.cidrs[0]", "did you mean 192.0.2.0/24"},
		{"host port zero", func(b *Blueprint) { b.Management.HostPorts = []uint16{0} }, "management.host_ports[0]", "1..65535"},
		{"host port dup", func(b *Blueprint) { b.Management.HostPorts = []uint16{22, 22} }, "management.host_ports[1]", "duplicate"},
		{"peer is host", func(b *Blueprint) { b.TrustedPeers = []string{"198.51.100.11"} }, "trusted_peers[0]", "tunnel_ip of hosts[0]"},
		{"controller", func(b *Blueprint) { b.Controllers = []string{"tcp:192.0.2.250:http"} }, "controllers[0]", "port 1..65535"},
		{"no hosts", func(b *Blueprint) { b.Hosts = nil; b.VPCs = nil }, "hosts", "at least one host"},
		{"dpid", func(b *Blueprint) { b.Hosts[0].DatapathID = "a1" }, "hosts[0].datapath_id", "16 hex digits"},
		{"dpid dup case", func(b *Blueprint) { b.Hosts[0].DatapathID = "00000000000000a2" }, "hosts[1].datapath_id", "already used by hosts[0]"},
		{"tunnel mac", func(b *Blueprint) { b.Hosts[1].TunnelMAC = "02:00:C6:33:64:0B" }, "hosts[1].tunnel_mac", "already used"},
		{"ovsdb", func(b *Blueprint) { b.Hosts[0].OVSDB = "ptcp:6640" }, "hosts[0].ovsdb", "unknown method"},
		{"vni", func(b *Blueprint) { b.VPCs[1].Tiers[0].VNI = 5001 }, "vpcs[1].tiers[0].vni", "already used by vpcs[0].tiers[0]"},
		{"vm host", func(b *Blueprint) { b.VPCs[0].Tiers[0].VMs[0].Host = "kvm3" }, "vpcs[0].tiers[0].vms[0].host", "not defined"},
		{"vm port per host", func(b *Blueprint) { b.VPCs[1].Tiers[0].VMs[0].Host = "kvm1" }, "vpcs[1].tiers[0].vms[0].port", "already used by vpcs[0].tiers[0].vms[0]"},
		{"vm mac", func(b *Blueprint) { b.VPCs[0].Tiers[0].VMs[0].MAC = "02:00:c6:33:64:0b" }, "vpcs[0].tiers[0].vms[0].mac", "tunnel_mac of hosts[0]"},
		{"vm ip", func(b *Blueprint) { b.VPCs[0].Tiers[0].VMs[0].IP = "10.10.2.5" },
			"vpcs[0].tiers[0].vms[0].ip", "ip 10.10.2.5 is outside tier cidr 10.10.1.0/24: pick an address inside the tier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := goodBlueprint()
			b.Source = "code"
			tt.mutate(b)
			err := b.Validate()
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want *ValidationError", err)
			}
			if len(ve.Errors) != 1 {
				t.Errorf("want exactly 1 error, got:\n%v", err)
			}
			fe := ve.Errors[0]
			if fe.Field != tt.field || !strings.Contains(fe.Msg, tt.msg) || fe.File != "code" || fe.Line != 0 {
				t.Errorf("got %+v, want field %q msg containing %q", fe, tt.field, tt.msg)
			}
		})
	}
}

func TestValidateCollectsAll(t *testing.T) {
	b := goodBlueprint()
	b.Version = 2
	b.Hosts[1].TunnelIP = "198.51.100.11"
	b.VPCs[0].Tiers[0].VMs[0].MAC = "ff:ff:ff:ff:ff:ff"
	err := b.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		fe   FieldError
		want string
	}{
		{FieldError{File: "bp.yaml", Line: 3, Column: 7, Field: "hosts[0].name", Msg: "bad"}, "bp.yaml:3:7: hosts[0].name: bad"},
		{FieldError{File: "bp.yaml", Line: 3, Field: "hosts", Msg: "bad"}, "bp.yaml:3: hosts: bad"},
		{FieldError{File: "bp.yaml", Msg: "bad"}, "bp.yaml: bad"},
		{FieldError{Field: "version", Msg: "bad"}, "version: bad"},
		{FieldError{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.fe.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	ve := &ValidationError{Errors: []FieldError{tests[0].fe, tests[4].fe}}
	if got, want := ve.Error(), "bp.yaml:3:7: hosts[0].name: bad\nbad"; got != want {
		t.Errorf("ValidationError.Error() = %q, want %q", got, want)
	}
}

func TestLastAddr(t *testing.T) {
	for p, want := range map[string]string{"10.0.0.0/24": "10.0.0.255", "10.0.0.0/30": "10.0.0.3", "10.0.0.0/8": "10.255.255.255", "10.0.0.128/25": "10.0.0.255"} {
		if got := lastAddr(netip.MustParsePrefix(p)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", p, got, want)
		}
	}
}
