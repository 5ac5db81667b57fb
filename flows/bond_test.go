package flows

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const bondBlueprint = "testdata/golden/bond.yaml"

// TestBondUplinkForms: the scalar form is one NIC; the mapping form is a bond
// with defaults (name bond0, lacp off, mode active-backup; with LACP the
// mode defaults to balance-tcp).
func TestBondUplinkForms(t *testing.T) {
	bp, err := Load(bondBlueprint)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host, uplink, lacp, mode string
		ports                    []string
	}{
		{"hv-a", "bond0", LACPOff, BondActiveBackup, []string{"eth0", "eth1"}},
		{"hv-b", "uplink0", LACPActive, BondBalanceTCP, []string{"ens1f0", "ens1f1"}},
		{"hv-c", "eth0", "", "", []string{"eth0"}},
	} {
		h := bp.HostByName(c.host)
		if h.Uplink != c.uplink || h.UplinkSpec.LACP != c.lacp || h.UplinkSpec.Mode != c.mode ||
			strings.Join(h.UplinkPorts(), ",") != strings.Join(c.ports, ",") || h.IsBond() != (len(c.ports) > 1) {
			t.Errorf("%s: uplink %q spec %+v ports %v, want %q lacp %q mode %q ports %v",
				c.host, h.Uplink, h.UplinkSpec, h.UplinkPorts(), c.uplink, c.lacp, c.mode, c.ports)
		}
	}
	a := `
version: 1
hosts:
  - {name: h1, datapath_id: "0000000000000001", tunnel_ip: 198.51.100.1, uplink: {bond: [eth0, eth1], lacp: active}}
`
	bp, err = Parse("lacp.yaml", []byte(a))
	if err != nil {
		t.Fatal(err)
	}
	if h := &bp.Hosts[0]; h.Uplink != DefaultBondName || h.UplinkSpec.Mode != BondBalanceTCP {
		t.Errorf("lacp active defaults: %q %+v, want bond0 balance-tcp", h.Uplink, h.UplinkSpec)
	}
}

// TestBondHash: a bond's members, LACP and mode are part of the blueprint
// hash; single-NIC blueprints hash as before bonds existed (replicas of two
// versions still agree).
func TestBondHash(t *testing.T) {
	for src, want := range map[string]string{
		demoBlueprint:                    "66eee6c34b6ec35d59bd461cb8e3e060086bf52750f46b0712893e33698aaf1e",
		"testdata/golden/gre-peers.yaml": "d638e65aa6ab53e1fded0bac2d50cde0f090ff6d7155da209eda71c3a19112a6",
	} {
		bp, err := Load(src)
		if err != nil {
			t.Fatal(err)
		}
		if got := bp.Hash(); got != want {
			t.Errorf("%s: hash %s, want %s (as before bonded uplinks)", src, got, want)
		}
	}
	base := `
version: 1
hosts:
  - {name: h1, datapath_id: "0000000000000001", tunnel_ip: 198.51.100.1, uplink: %s}
`
	hash := func(uplink string) string {
		bp, err := Parse("h.yaml", []byte(strings.Replace(base, "%s", uplink, 1)))
		if err != nil {
			t.Fatalf("%s: %v", uplink, err)
		}
		return bp.Hash()
	}
	seen := map[string]string{}
	for _, u := range []string{
		"bond0",
		"{bond: [eth0, eth1]}",
		"{bond: [eth1, eth0]}",
		"{bond: [eth0, eth1, eth2]}",
		"{bond: [eth0, eth1], mode: balance-slb}",
		"{bond: [eth0, eth1], lacp: active}",
		"{bond: [eth0, eth1], lacp: active, mode: active-backup}",
	} {
		h := hash(u)
		if o, dup := seen[h]; dup {
			t.Errorf("uplink %s hashes like %s", u, o)
		}
		seen[h] = u
	}
	// Defaults are applied before hashing: spelling them out changes nothing.
	if hash("{bond: [eth0, eth1]}") != hash("{name: bond0, bond: [eth0, eth1], lacp: off, mode: active-backup}") ||
		hash("eth0") != hash("{name: eth0}") {
		t.Errorf("explicit defaults change the hash")
	}
}

// TestBondMarshalRoundTrip: a marshalled blueprint (scalar form for a NIC,
// mapping for a bond; Go callers that set only Host.Uplink) parses back to
// the same content.
func TestBondMarshalRoundTrip(t *testing.T) {
	bp, err := Load(bondBlueprint)
	if err != nil {
		t.Fatal(err)
	}
	bp.Hosts = append(bp.Hosts, Host{Name: "hv-d", DatapathID: "00000000000000c4", TunnelIP: "198.51.100.24", Uplink: "eno1"})
	data, err := yaml.Marshal(bp)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "uplink: eno1\n") {
		t.Errorf("a single NIC is not written in the scalar form:\n%s", data)
	}
	back, err := Parse("marshalled.yaml", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	bp.SetDefaults()
	for i := range bp.Hosts {
		w, g := &bp.Hosts[i], &back.Hosts[i]
		wu, gu := w.UplinkSpec, g.UplinkSpec
		if w.Uplink != g.Uplink || wu.Name != gu.Name || !slices.Equal(wu.Members, gu.Members) || wu.LACP != gu.LACP || wu.Mode != gu.Mode {
			t.Errorf("%s: round trip gives uplink %q %+v, want %q %+v", w.Name, g.Uplink, g.UplinkSpec, w.Uplink, w.UplinkSpec)
		}
	}
}

// TestBondEval: underlay traffic is accepted from either bond member;
// traffic to the uplink leaves by a live member, by the other one when the
// first loses its link, and by none when both are down.
func TestBondEval(t *testing.T) {
	bp, err := Load(bondBlueprint)
	if err != nil {
		t.Fatal(err)
	}
	c := newCloud(t, bp)
	a, hc := bp.HostByName("hv-a"), bp.HostByName("hv-c")
	web1, web3 := findVM(t, bp, "acme-web-1"), findVM(t, bp, "acme-web-3")
	ping := func() Journey {
		return c.Trace("hv-a", ICMPPacket(web1.Port, web1.HW, web3.HW, web1.Addr, web3.Addr))
	}
	leftBy := func(j Journey) string {
		for _, h := range j.Hops {
			if h.Host == "hv-a" && h.Stage == "encapsulated" {
				for _, o := range h.Trace.Outputs {
					return o.Port
				}
			}
		}
		return ""
	}
	delivered := func(j Journey) bool {
		for _, ar := range j.Arrivals {
			if ar.Host == "hv-c" && ar.VM == "acme-web-3" {
				return true
			}
		}
		return false
	}
	if j := ping(); !delivered(j) || leftBy(j) != "eth0" {
		t.Fatalf("both members up: left by %q, want eth0 and delivery:\n%s", leftBy(j), j)
	}
	c.SetLinkDown("hv-a", "eth0", true)
	if j := ping(); !delivered(j) || leftBy(j) != "eth1" {
		t.Fatalf("eth0 down: left by %q, want eth1 and delivery:\n%s", leftBy(j), j)
	}
	c.SetLinkDown("hv-a", "eth1", true)
	if j := ping(); delivered(j) || len(j.Lost) == 0 {
		t.Fatalf("both members down: the packet still left:\n%s", j)
	}
	c.SetLinkDown("hv-a", "eth0", false)
	c.SetLinkDown("hv-a", "eth1", false)

	// From hv-c to hv-a: the outer packet may arrive on either member.
	for _, member := range a.UplinkPorts() {
		outer := c.OuterPacket(hc, a.Addr, uint64(300))
		outer.InPort = member
		tr, err := c.Evaluate("hv-a", outer)
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.Outputs) != 1 || tr.Outputs[0].Port != PortLocal {
			t.Errorf("tunnel packet from hv-c on member %s: %s, want LOCAL (decapsulation)", member, tr.Verdict())
		}
		// A VM never receives anything straight from a member.
		p := ICMPPacket(member, MAC{0x0e, 0, 0, 0, 0, 1}, web1.HW, hc.Addr, web1.Addr)
		for _, ar := range c.Send("hv-a", p) {
			if ar.Port != PortLocal {
				t.Errorf("plain packet on member %s reached %s", member, ar)
			}
		}
	}
	c.SetLinkDown("hv-a", "eth0", true)
	j := c.Trace("hv-c", ICMPPacket(web3.Port, web3.HW, web1.HW, web3.Addr, web1.Addr))
	ok := false
	for _, ar := range j.Arrivals {
		ok = ok || ar.VM == "acme-web-1"
	}
	if !ok {
		t.Errorf("hv-c to hv-a with eth0 down: not delivered:\n%s", j)
	}
	for _, h := range j.Hops {
		if h.Host == "hv-a" && h.Stage == "underlay" && h.Trace.Input.InPort != "eth1" {
			t.Errorf("with eth0 down the outer packet entered hv-a on %s, want eth1", h.Trace.Input.InPort)
		}
	}
}

// TestBondBind: a bond member missing from the bridge is left out of the
// bundle (and reported); with no member left the output is removed.
func TestBondBind(t *testing.T) {
	bp, err := Load(bondBlueprint)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := Compile(bp, "hv-a")
	if err != nil {
		t.Fatal(err)
	}
	hostOut := func(bound []Flow) *Flow {
		for i := range bound {
			if bound[i].Cookie.Category() == CatHostOut {
				return &bound[i]
			}
		}
		t.Fatal("no host_out flow")
		return nil
	}
	all := PortMap{"eth0": 1, "eth1": 2, "vnet0": 3, TunnelPortVXLAN: 4}
	bound, missing := Bind(fs, all)
	if len(missing) != 0 || hostOut(bound).ActionsString() != "bundle(eth_src,0,active_backup,ofport,members:eth0,eth1)" {
		t.Errorf("all ports: missing %v, host_out %s", missing, hostOut(bound))
	}
	one := PortMap{"eth0": 1, "vnet0": 3, TunnelPortVXLAN: 4}
	bound, missing = Bind(fs, one)
	if strings.Join(missing, ",") != "eth1" || hostOut(bound).ActionsString() != "bundle(eth_src,0,active_backup,ofport,members:eth0)" {
		t.Errorf("eth1 missing: missing %v, host_out %s", missing, hostOut(bound))
	}
	if hostOut(fs).ActionsString() != "bundle(eth_src,0,active_backup,ofport,members:eth0,eth1)" {
		t.Errorf("Bind modified the compiled flow: %s", hostOut(fs))
	}
	bound, missing = Bind(fs, PortMap{"vnet0": 3, TunnelPortVXLAN: 4})
	if strings.Join(missing, ",") != "eth0,eth1" || hostOut(bound).ActionsString() != "drop" {
		t.Errorf("no member: missing %v, host_out %s", missing, hostOut(bound))
	}
}

func findVM(t *testing.T, bp *Blueprint, name string) *VM {
	t.Helper()
	for pi := range bp.VPCs {
		for ti := range bp.VPCs[pi].Tiers {
			for mi := range bp.VPCs[pi].Tiers[ti].VMs {
				if m := &bp.VPCs[pi].Tiers[ti].VMs[mi]; m.Name == name {
					return m
				}
			}
		}
	}
	t.Fatalf("no VM %s", name)
	return nil
}

// TestBondExplain: explain on a bond host — a VM's packet leaves by the
// bond (a live member, named in the hops), an underlay peer's tunnel
// packet enters by a member and is delivered, also with the first member
// down, and a rogue underlay source is still dropped by the allowlist.
func TestBondExplain(t *testing.T) {
	bp, err := Load(bondBlueprint)
	if err != nil {
		t.Fatal(err)
	}
	c := newCloud(t, bp)
	e := mustExplain(t, c, ExplainQuery{From: "acme-web-1", To: "acme-web-3"})
	wantDelivered(t, e, "hv-c", "acme-web-3")
	if !strings.Contains(e.Text(), "eth0") {
		t.Errorf("explain does not name the bond member the packet left by:\n%s", e.Text())
	}
	wantDelivered(t, mustExplain(t, c, ExplainQuery{From: "underlay:198.51.100.23", To: "acme-web-1"}), "hv-a", "acme-web-1")
	c.SetLinkDown("hv-a", "eth0", true)
	e = mustExplain(t, c, ExplainQuery{From: "underlay:198.51.100.23", To: "acme-web-1"})
	wantDelivered(t, e, "hv-a", "acme-web-1")
	if !strings.Contains(e.Text(), "in_port=eth1") {
		t.Errorf("with eth0 down the underlay packet does not enter by eth1:\n%s", e.Text())
	}
	wantDrop(t, mustExplain(t, c, ExplainQuery{From: "underlay:198.51.100.66", To: "acme-web-1", Host: "hv-a"}), "hv-a", CatTunnelDrop, TUnderlayIn)
}
