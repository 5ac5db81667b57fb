package flows

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const fixtureDir = "testdata/blueprints"

// want is one expected error, written in an invalid fixture as a comment
// `# want FIELD "MSG SUBSTRING"` on the line the error must name (or
// `# want@LINE ...`); FIELD "-" means no field.
type want struct {
	line  int
	field string
	msg   string
}

var wantRE = regexp.MustCompile(`want(?:@(\d+))?\s+(\S+)\s+"((?:[^"\\]|\\.)*)"`)

func parseWants(t *testing.T, data []byte) []want {
	t.Helper()
	var ws []want
	for i, line := range strings.Split(string(data), "\n") {
		_, comment, ok := strings.Cut(line, "# ")
		if !ok {
			continue
		}
		for _, m := range wantRE.FindAllStringSubmatch(comment, -1) {
			w := want{line: i + 1, field: m[2], msg: strings.ReplaceAll(m[3], `\"`, `"`)}
			if m[1] != "" {
				w.line, _ = strconv.Atoi(m[1])
			}
			if w.field == "-" {
				w.field = ""
			}
			ws = append(ws, w)
		}
	}
	return ws
}

func fixtures(t testing.TB, pattern string) []string {
	t.Helper()
	return fixturesIn(t, fixtureDir, pattern)
}

func fixturesIn(t testing.TB, dir, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures %s in %s (err %v)", pattern, dir, err)
	}
	return files
}

func validationErrors(t *testing.T, err error) []FieldError {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error is %T, want *ValidationError: %v", err, err)
	}
	if len(ve.Errors) == 0 {
		t.Fatalf("ValidationError with no entries")
	}
	return ve.Errors
}

// TestParseInvalidFixtures loads every invalid-*.yaml fixture and checks
// that exactly the errors announced by its "# want" comments are reported,
// each with its field path and line.
func TestParseInvalidFixtures(t *testing.T) {
	for _, file := range fixtures(t, "invalid-*.yaml") {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(file), "invalid-"), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			wants := parseWants(t, data)
			if len(data) == 0 {
				wants = []want{{line: 0, msg: "blueprint is empty"}}
			}
			if len(wants) == 0 {
				t.Fatalf("fixture has no '# want' comment")
			}
			bp, err := Load(file)
			if err == nil {
				t.Fatalf("Load succeeded, want errors %+v", wants)
			}
			if bp != nil {
				t.Errorf("Load returned a blueprint along with an error")
			}
			got := validationErrors(t, err)
			matched := make([]bool, len(got))
			for _, w := range wants {
				found := false
				for i, fe := range got {
					if fe.Field == w.field && fe.Line == w.line && strings.Contains(fe.Msg, w.msg) {
						matched[i], found = true, true
					}
				}
				if !found {
					t.Errorf("missing error: line %d field %q msg containing %q\ngot:\n%v", w.line, w.field, w.msg, err)
				}
			}
			for i, fe := range got {
				if !matched[i] {
					t.Errorf("unexpected error: %v", fe)
				}
				if fe.File != file {
					t.Errorf("error names file %q, want %q", fe.File, file)
				}
				if !strings.HasPrefix(fe.Error(), file+":") {
					t.Errorf("error %q does not start with the file name", fe.Error())
				}
			}
		})
	}
}

// TestParseValidFixtures checks every valid-*.yaml fixture loads, fills the
// parsed fields, and agrees with the YAML library's own strict decoder.
func TestParseValidFixtures(t *testing.T) {
	files := append(fixtures(t, "valid-*.yaml"), "../examples/demo/blueprint.yaml")
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			bp, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if bp.Source != file {
				t.Errorf("Source = %q, want %q", bp.Source, file)
			}
			checkParsedFields(t, bp)

			data, _ := os.ReadFile(file)
			var strict Blueprint
			dec := yaml.NewDecoder(bytes.NewReader(data))
			dec.KnownFields(true)
			if err := dec.Decode(&strict); err != nil {
				t.Fatalf("strict yaml decode: %v", err)
			}
			strict.SetDefaults()
			if strict.Hash() != bp.Hash() {
				t.Errorf("Parse and yaml.Decoder disagree on the content:\nparse:  %+v\nstrict: %+v", bp, &strict)
			}
		})
	}
}

func checkParsedFields(t *testing.T, bp *Blueprint) {
	t.Helper()
	if len(bp.MgmtPrefixes) != len(bp.Management.CIDRs) {
		t.Errorf("MgmtPrefixes = %v for cidrs %v", bp.MgmtPrefixes, bp.Management.CIDRs)
	}
	for i, s := range bp.Management.CIDRs {
		if i < len(bp.MgmtPrefixes) && bp.MgmtPrefixes[i].String() != s {
			t.Errorf("MgmtPrefixes[%d] = %v, want %s", i, bp.MgmtPrefixes[i], s)
		}
	}
	if len(bp.PeerAddrs) != len(bp.TrustedPeers) {
		t.Errorf("PeerAddrs = %v for trusted_peers %v", bp.PeerAddrs, bp.TrustedPeers)
	}
	for _, h := range bp.Hosts {
		id, _ := strconv.ParseUint(h.DatapathID, 16, 64)
		if h.DPID == 0 || h.DPID != id {
			t.Errorf("host %s: DPID = %x, want %s", h.Name, h.DPID, h.DatapathID)
		}
		if h.Addr.String() != h.TunnelIP {
			t.Errorf("host %s: Addr = %v, want %s", h.Name, h.Addr, h.TunnelIP)
		}
		if h.HasMAC != (h.TunnelMAC != "") || (h.HasMAC && !strings.EqualFold(h.MAC.String(), h.TunnelMAC)) {
			t.Errorf("host %s: MAC = %v HasMAC = %v, want %q", h.Name, h.MAC, h.HasMAC, h.TunnelMAC)
		}
		if bp.HostByName(h.Name) == nil || bp.HostByName(h.Name).Name != h.Name {
			t.Errorf("HostByName(%q) failed", h.Name)
		}
		if got := bp.HostByDPID(h.DPID); got == nil || got.Name != h.Name {
			t.Errorf("HostByDPID(%x) = %v, want %s", h.DPID, got, h.Name)
		}
	}
	for _, v := range bp.VPCs {
		for _, tr := range v.Tiers {
			if tr.Prefix.String() != tr.CIDR {
				t.Errorf("tier %s/%s: Prefix = %v, want %s", v.Name, tr.Name, tr.Prefix, tr.CIDR)
			}
			for _, vm := range tr.VMs {
				if vm.Addr.String() != vm.IP || !tr.Prefix.Contains(vm.Addr) {
					t.Errorf("vm %s: Addr = %v, want %s", vm.Name, vm.Addr, vm.IP)
				}
				if !strings.EqualFold(vm.HW.String(), vm.MAC) {
					t.Errorf("vm %s: HW = %v, want %s", vm.Name, vm.HW, vm.MAC)
				}
			}
		}
	}
}

func TestLoadDemoBlueprint(t *testing.T) {
	bp, err := Load("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatalf("demo blueprint must validate: %v", err)
	}
	if bp.Revision != 1 || len(bp.Hosts) != 3 || len(bp.VPCs) != 2 {
		t.Errorf("demo: revision %d, %d hosts, %d VPCs; want 1, 3, 2", bp.Revision, len(bp.Hosts), len(bp.VPCs))
	}
	if bp.Encapsulation != EncapVXLAN {
		t.Errorf("Encapsulation = %q", bp.Encapsulation)
	}
	if h := bp.HostByDPID(0xa2); h == nil || h.Name != "kvm2" {
		t.Errorf("HostByDPID(0xa2) = %v, want kvm2", h)
	}
	if h := bp.HostByDPID(0xff); h != nil {
		t.Errorf("HostByDPID(0xff) = %v, want nil", h)
	}
	if h := bp.HostByName("kvm9"); h != nil {
		t.Errorf("HostByName(kvm9) = %v, want nil", h)
	}
	// HostByName returns a pointer into the blueprint, not a copy.
	if h := bp.HostByName("kvm3"); h != &bp.Hosts[2] {
		t.Errorf("HostByName does not point into Hosts")
	}
}

// TestParseOverlappingVPCs: two VPCs with the same tier CIDR and the same
// VM IPs are legal (tenant address spaces overlap; isolation is by VPC).
func TestParseOverlappingVPCs(t *testing.T) {
	bp, err := Load(filepath.Join(fixtureDir, "valid-base.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	blue, red := bp.VPCs[0].Tiers[0], bp.VPCs[1].Tiers[0]
	if blue.Prefix != red.Prefix || blue.VMs[0].Addr != red.VMs[0].Addr {
		t.Fatalf("fixture no longer overlaps: %v %v / %v %v", blue.Prefix, blue.VMs[0].Addr, red.Prefix, red.VMs[0].Addr)
	}
}

const minimal = `version: 1
hosts:
  - {name: kvm1, datapath_id: "00000000000000a1", tunnel_ip: 198.51.100.11, uplink: eth0}
`

func TestParseDefaults(t *testing.T) {
	tests := []struct {
		name      string
		extra     string
		encap     Encapsulation
		hostPorts []uint16
	}{
		{"absent", "", EncapVXLAN, DefaultHostPorts},
		{"null host_ports", "management:\n  host_ports:\n", EncapVXLAN, DefaultHostPorts},
		{"empty host_ports", "management:\n  host_ports: []\n", EncapVXLAN, []uint16{}},
		{"explicit", "encapsulation: gre\nmanagement:\n  host_ports: [22]\n", EncapGRE, []uint16{22}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bp, err := Parse("t.yaml", []byte(minimal+tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			if bp.Encapsulation != tt.encap {
				t.Errorf("Encapsulation = %q, want %q", bp.Encapsulation, tt.encap)
			}
			if !reflect.DeepEqual(bp.Management.HostPorts, tt.hostPorts) {
				t.Errorf("HostPorts = %#v, want %#v", bp.Management.HostPorts, tt.hostPorts)
			}
			if bp.Hosts[0].OVSDB != "" {
				t.Errorf("OVSDB defaulted to %q, want empty", bp.Hosts[0].OVSDB)
			}
			if bp.Hosts[0].HasMAC {
				t.Errorf("HasMAC set without tunnel_mac")
			}
		})
	}
	// The default must be a copy: mutating one blueprint must not change
	// the package default.
	bp, _ := Parse("t.yaml", []byte(minimal))
	bp.Management.HostPorts[0] = 1
	if DefaultHostPorts[0] != 22 {
		t.Fatalf("SetDefaults aliases DefaultHostPorts")
	}
}

func TestParseUnknownKeyLine(t *testing.T) {
	_, err := Parse("bp.yaml", []byte(minimal+"vpcs:\n  - name: blue\n    teirs: []\n"))
	got := validationErrors(t, err)
	if len(got) != 1 {
		t.Fatalf("want 1 error, got %v", err)
	}
	fe := got[0]
	if fe.Line != 6 || fe.Column != 5 || fe.Field != "vpcs[0].teirs" || !strings.Contains(fe.Msg, `did you mean "tiers"`) {
		t.Errorf("got %+v", fe)
	}
	if want := `bp.yaml:6:5: vpcs[0].teirs: unknown key "teirs": did you mean "tiers"?`; fe.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", fe.Error(), want)
	}
}

func TestParseTypeErrorLine(t *testing.T) {
	src := minimal + "vpcs:\n  - name: blue\n    tiers:\n      - {name: web, vni: abc, cidr: 10.0.0.0/24}\n"
	_, err := Parse("bp.yaml", []byte(src))
	got := validationErrors(t, err)
	if len(got) != 1 || got[0].Line != 7 || got[0].Field != "vpcs[0].tiers[0].vni" {
		t.Fatalf("got %v", err)
	}
	if !strings.HasPrefix(got[0].Error(), "bp.yaml:7:") {
		t.Errorf("Error() = %q", got[0].Error())
	}
}

// TestParseCollectsAllErrors: decoding and validation problems in one file
// are all reported in one run, in file order.
func TestParseCollectsAllErrors(t *testing.T) {
	src := `version: 3
revision: abc
hosts:
  - {name: kvm1, datapath_id: 161, tunnel_ip: 1.2.3, uplink: eth0, extra: 1}
vpcs:
  - name: blue
    tiers:
      - {name: web, vni: 0, cidr: 10.0.0.1/24}
`
	_, err := Parse("bp.yaml", []byte(src))
	got := validationErrors(t, err)
	wantFields := []string{"version", "revision", "hosts[0].datapath_id", "hosts[0].tunnel_ip", "hosts[0].extra", "vpcs[0].tiers[0].vni", "vpcs[0].tiers[0].cidr"}
	var fields []string
	for _, fe := range got {
		fields = append(fields, fe.Field)
	}
	if !reflect.DeepEqual(fields, wantFields) {
		t.Errorf("fields = %v\nwant     %v\n%v", fields, wantFields, err)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Line < got[i-1].Line {
			t.Errorf("errors not in file order: %v", err)
		}
	}
	if n := strings.Count(err.Error(), "\n"); n != len(got)-1 {
		t.Errorf("ValidationError.Error() has %d newlines for %d errors", n, len(got))
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want a not-exist error", err)
	}
}

// TestParseAliasBomb: aliases that expand to billions of nodes are
// rejected quickly instead of exhausting memory.
func TestParseAliasBomb(t *testing.T) {
	rep := func(s string, n int) string { return strings.TrimSuffix(strings.Repeat(s+", ", n), ", ") }
	src := "version: 1\n" +
		"hosts: [{name: kvm1, datapath_id: \"00000000000000a1\", tunnel_ip: 198.51.100.11, uplink: eth0}]\n" +
		"vpcs:\n" +
		"  - name: a\n" +
		"    tiers:\n" +
		"      - name: t\n" +
		"        vms: &v [" + rep("&m {name: x, host: kvm1, port: p, mac: \"52:54:00:00:00:01\", ip: 10.0.0.1}", 1) + ", " + rep("*m", 999) + "]\n" +
		"  - {name: b, tiers: &t [" + rep("{name: t, vms: *v}", 1000) + "]}\n" +
		"  - {name: c, tiers: *t}\n"
	src += strings.Repeat("  - {name: d, tiers: *t}\n", 1000)
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(src))
	if err == nil {
		t.Fatal("alias bomb accepted")
	}
	if !strings.Contains(err.Error(), "aliases expand too far") {
		t.Errorf("error does not name the alias expansion: %.300s", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("alias bomb took %v", d)
	}
}

func TestHash(t *testing.T) {
	load := func(src string) *Blueprint {
		t.Helper()
		bp, err := Parse("a.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return bp
	}
	a := load(minimal)
	if len(a.Hash()) != 64 {
		t.Fatalf("Hash() = %q, want 64 hex digits", a.Hash())
	}
	b, _ := Parse("elsewhere/b.yaml", []byte(minimal))
	if a.Hash() != b.Hash() {
		t.Errorf("Hash depends on Source")
	}
	// Comments, formatting and explicit defaults are not content.
	c := load("# comment\nversion: 1\nencapsulation: vxlan\nmanagement:\n  host_ports: [22, 8250, 16509, 16514, 6640, 6653]\nhosts:\n- name: kvm1\n  datapath_id: \"00000000000000a1\"\n  tunnel_ip: 198.51.100.11\n  uplink: eth0\n")
	if a.Hash() != c.Hash() {
		t.Errorf("Hash differs for the same content written differently")
	}
	for _, change := range []string{"revision: 2\n", "encapsulation: gre\n", "management:\n  host_ports: []\n", "trusted_peers: [203.0.113.1]\n"} {
		if d := load(minimal + change); d.Hash() == a.Hash() {
			t.Errorf("Hash unchanged after adding %q", change)
		}
	}
	e := load(strings.Replace(minimal, "eth0", "eth1", 1))
	if e.Hash() == a.Hash() {
		t.Errorf("Hash unchanged after changing a host's uplink")
	}
}

// FuzzParse checks Parse never panics and that whatever it accepts is
// valid and hashable.
func FuzzParse(f *testing.F) {
	for _, file := range fixtures(f, "*.yaml") {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	demo, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(demo)
	// The policy keys (acls, acl, security_groups): seeds, so mutations of
	// valid policy blueprints reach commit, Hash and the policy compile.
	for _, file := range fixturesIn(f, "testdata/policy", "*.yaml") {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		bp, err := Parse("fuzz.yaml", data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("error is not a non-empty *ValidationError: %T %v", err, err)
			}
			_ = err.Error()
			return
		}
		if err := bp.Validate(); err != nil {
			t.Fatalf("Parse accepted a blueprint that Validate rejects: %v", err)
		}
		_ = bp.Hash()
		for _, h := range bp.Hosts { // whatever validates compiles (contracts included)
			if _, err := Compile(bp, h.Name); err != nil {
				t.Fatalf("a valid blueprint does not compile for %s: %v", h.Name, err)
			}
		}
	})
}
