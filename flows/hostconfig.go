package flows

// The host file (kind vpcflow.host/v1): what one hypervisor needs to be
// provisioned (`vpcflow host apply`) and to guard its management path
// (`vpcflow host watch`), extracted from the blueprint by `vpcflow host
// config`, and nothing about tenants: no VPCs, tiers, VMs or policies.
//
// The watcher's bootstrap flows are flows.CompileManagement, which reads
// the blueprint's revision (cookies), encapsulation, trusted_peers, this
// host (uplink or bond) and every other host's tunnel_ip and tunnel_mac
// (the underlay allowlist and the peers' ARP guard); Apply reads this
// host's datapath_id, tunnel_ip, tunnel_mac, uplink and ovsdb, the
// encapsulation and the controllers. The host file holds exactly those,
// plus the management section (host_ports and cidrs: `vpcflow doctor`'s
// expectations, no tenant data) and two host-side settings a blueprint does
// not carry: the bridge name and the OVSDB client TLS paths. Blueprint()
// turns a host file back into a host-only blueprint that CompileManagement
// and tunnel.Apply read exactly as they read the full one
// (hostconfig_test.go proves the flows and the OVSDB plans identical).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// HostConfigKind is the schema identifier of a host file (its kind: key).
const HostConfigKind = "vpcflow.host/v1"

// MaxHostConfigBytes bounds a host file, checked before it is parsed. A
// host file lists every other host (about 100 bytes each): 4 MiB is room
// for tens of thousands of hypervisors.
const MaxHostConfigBytes = 4 << 20

// HostConfig is one host's file. Field comments name the YAML keys.
type HostConfig struct {
	Kind          string        `yaml:"kind"`          // HostConfigKind
	Revision      uint32        `yaml:"revision"`      // the blueprint's revision: the bootstrap flows' cookies carry it
	Encapsulation Encapsulation `yaml:"encapsulation"` // vxlan (default) or gre
	// Bridge is the bridge to manage ("" = the tools' default, cloudbr0);
	// the tools' --bridge flag overrides it.
	Bridge string `yaml:"bridge,omitempty"`
	// Host is this hypervisor, with the blueprint's host keys.
	Host Host `yaml:"host"`
	// Controllers are the OpenFlow targets of the bridge's Controller rows.
	Controllers []string `yaml:"controllers"`
	// OVSDBTLS are the client certificate files for an ssl: ovsdb endpoint
	// (paths on the host); the tools' --tls-* flags override them.
	OVSDBTLS *HostTLS `yaml:"ovsdb_tls,omitempty"`
	// Management is the blueprint's management section.
	Management Management `yaml:"management"`
	// Peers are the other hosts: tunnel sources of the underlay allowlist
	// (and, with tunnel_mac, of the peer ARP guard).
	Peers []HostPeer `yaml:"peers"`
	// TrustedPeers are the blueprint's extra tunnel sources.
	TrustedPeers []string `yaml:"trusted_peers"`

	// Source is the file the host file came from (not YAML).
	Source string `yaml:"-"`

	// Parsed forms, filled by validation.
	mgmt      []netip.Prefix
	peerAddrs []netip.Addr
	peers     []parsedHost
}

// HostPeer is another host as the allowlist sees it.
type HostPeer struct {
	Name      string `yaml:"name"`
	TunnelIP  string `yaml:"tunnel_ip"`
	TunnelMAC string `yaml:"tunnel_mac,omitempty"`
}

// HostTLS names the client certificate, key and CA files for ssl: OVSDB.
type HostTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
}

// HostConfigFor extracts the host file of host name from a validated
// blueprint. The result is validated (its parsed forms filled).
func HostConfigFor(bp *Blueprint, name string) (*HostConfig, error) {
	self := bp.HostByName(name)
	if self == nil {
		return nil, fmt.Errorf("host %q is not in the blueprint %s (hosts: %s)", name, bp.Source, hostList(bp.Hosts))
	}
	c := &HostConfig{
		Kind:          HostConfigKind,
		Revision:      bp.Revision,
		Encapsulation: bp.Encapsulation,
		Host:          hostKeys(self),
		Controllers:   append([]string{}, bp.Controllers...),
		Management: Management{
			CIDRs:     append([]string{}, bp.Management.CIDRs...),
			HostPorts: append([]uint16{}, bp.Management.HostPorts...),
		},
		Peers:        []HostPeer{},
		TrustedPeers: append([]string{}, bp.TrustedPeers...),
		Source:       bp.Source,
	}
	if bp.Management.HostPorts == nil {
		c.Management.HostPorts = append([]uint16{}, DefaultHostPorts...)
	}
	if c.Encapsulation == "" {
		c.Encapsulation = EncapVXLAN
	}
	for i := range bp.Hosts {
		if o := &bp.Hosts[i]; o.Name != name {
			c.Peers = append(c.Peers, HostPeer{Name: o.Name, TunnelIP: o.TunnelIP, TunnelMAC: o.TunnelMAC})
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// hostKeys copies a host's YAML keys (the parsed forms are filled again by
// validation).
func hostKeys(h *Host) Host {
	u := h.UplinkSpec
	u.Members = append([]string(nil), u.Members...)
	if u.Name == "" {
		u.Name = h.Uplink
	}
	return Host{Name: h.Name, DatapathID: h.DatapathID, TunnelIP: h.TunnelIP, TunnelMAC: h.TunnelMAC,
		Uplink: h.Uplink, UplinkSpec: u, OVSDB: h.OVSDB}
}

// Blueprint returns the host-only blueprint of a validated host file: the
// host first, then every peer as a host with only its name, tunnel_ip and
// tunnel_mac; no VPCs. CompileManagement and tunnel.Apply read it as they
// read the full blueprint; Compile of it gives the host's flows without
// any VM. Its Hash identifies the host file's content.
func (c *HostConfig) Blueprint() *Blueprint {
	bp := &Blueprint{
		Version: 1, Revision: c.Revision, Encapsulation: c.Encapsulation,
		Management:   Management{CIDRs: c.Management.CIDRs, HostPorts: c.Management.HostPorts},
		TrustedPeers: c.TrustedPeers, Controllers: c.Controllers,
		Source: c.Source, MgmtPrefixes: c.mgmt, PeerAddrs: c.peerAddrs,
	}
	h := hostKeys(&c.Host)
	h.DPID, h.Addr, h.MAC, h.HasMAC = c.Host.DPID, c.Host.Addr, c.Host.MAC, c.Host.HasMAC
	bp.Hosts = append(bp.Hosts, h)
	for i, p := range c.Peers {
		pp := c.peers[i]
		bp.Hosts = append(bp.Hosts, Host{Name: p.Name, TunnelIP: p.TunnelIP, TunnelMAC: p.TunnelMAC,
			Addr: pp.addr, MAC: pp.mac, HasMAC: pp.hasMAC})
	}
	return bp
}

// LoadHostConfig reads, parses and validates the host file at path; files
// larger than MaxHostConfigBytes are refused before they are parsed.
func LoadHostConfig(path string) (*HostConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read host file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxHostConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read host file: %w", err)
	}
	return ParseHostConfig(path, data)
}

// LoadHostConfigBlueprint is LoadHostConfig followed by Blueprint: the
// loader `vpcflow host watch --host-config` follows.
func LoadHostConfigBlueprint(path string) (*Blueprint, error) {
	c, err := LoadHostConfig(path)
	if err != nil {
		return nil, err
	}
	return c.Blueprint(), nil
}

// ParseHostConfig decodes a host file strictly, as Parse decodes a
// blueprint: one YAML (or JSON) document, unknown and duplicate keys
// refused, every problem reported as a *ValidationError with
// file:line:column and the field path (e.g. "peers[2].tunnel_ip").
func ParseHostConfig(name string, data []byte) (c *HostConfig, err error) {
	defer func() {
		if r := recover(); r != nil { // third-party decoder fed with untrusted input
			c = nil
			err = &ValidationError{Errors: []FieldError{{File: name, Msg: fmt.Sprintf("cannot parse host file: internal YAML decoder failure: %v", r)}}}
		}
	}()
	one := func(line, col int, format string, args ...any) error {
		return &ValidationError{Errors: []FieldError{{File: name, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}}}
	}
	if len(data) > MaxHostConfigBytes {
		return nil, one(0, 0, "host file is larger than %d bytes: it is not a host file (make one with vpcflow host config)", MaxHostConfigBytes)
	}
	if fe := checkBytes(name, data); fe != nil {
		return nil, &ValidationError{Errors: []FieldError{*fe}}
	}
	const empty = "host file is empty: it must hold one YAML mapping starting with \"kind: " + HostConfigKind + "\" (make one with vpcflow host config)"
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, one(0, 0, empty)
		}
		return nil, &ValidationError{Errors: yamlErrors(name, data, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, one(extra.Line, 0, "file holds more than one YAML document: a host file is exactly one document (one host); remove the extra \"---\" and what follows")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].ShortTag() == "!!null" {
		return nil, one(doc.Line, doc.Column, empty)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, one(root.Line, root.Column, "the top level of a host file must be a mapping (kind:, host:, peers:, ...), not %s", kindName(root))
	}
	if k := mappingKey(root, "kind"); k == nil && (mappingKey(root, "version") != nil || mappingKey(root, "vpcs") != nil) {
		return nil, one(root.Line, root.Column, "this is a blueprint, not a host file: pass it with --blueprint, or make this host's file with vpcflow host config --blueprint %s --host NAME", name)
	}

	c = &HostConfig{}
	d := &nodeDecoder{file: name, pos: map[string]position{}}
	d.pos[""] = position{root.Line, root.Column}
	d.decode(root, reflect.ValueOf(c).Elem(), "")
	if d.budget > maxNodes {
		return nil, &ValidationError{Errors: d.errs}
	}
	if len(d.errs) == 0 {
		// The YAML library's strict decoder as a cross-check (as Parse).
		var strict HostConfig
		sd := yaml.NewDecoder(bytes.NewReader(data))
		sd.KnownFields(true)
		if err := sd.Decode(&strict); err != nil {
			d.errs = append(d.errs, yamlErrors(name, data, err)...)
		}
	}
	c.Source = name
	errs := d.placeValidation(name, d.errs, c.validate())
	if len(errs) > 0 {
		sortFieldErrors(errs)
		return nil, &ValidationError{Errors: errs}
	}
	return c, nil
}

// mappingKey returns the key node named key of mapping n, or nil.
func mappingKey(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Kind == yaml.ScalarNode && n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return nil
}

// Validate applies the defaults and checks every rule of the host file,
// collecting all problems (field paths only; ParseHostConfig adds
// positions). On success it fills the parsed forms.
func (c *HostConfig) Validate() error {
	if errs := c.validate(); len(errs) > 0 {
		for i := range errs {
			errs[i].File = c.Source
		}
		return &ValidationError{Errors: errs}
	}
	return nil
}

func (c *HostConfig) setDefaults() {
	if c.Encapsulation == "" {
		c.Encapsulation = EncapVXLAN
	}
	if c.Management.HostPorts == nil {
		c.Management.HostPorts = append([]uint16(nil), DefaultHostPorts...)
	}
	c.Host.setUplinkDefaults()
}

// validate checks c (applying defaults first) and, when it is valid, fills
// the parsed forms of the host and the peers.
func (c *HostConfig) validate() []FieldError {
	c.setDefaults()
	// The blueprint's own checks for the parts the two share.
	v := &validator{b: &Blueprint{Management: c.Management, Controllers: c.Controllers}}
	switch c.Kind {
	case HostConfigKind:
	case "":
		v.errorf("kind", "kind is missing: a host file starts with \"kind: %s\" (make one with vpcflow host config)", HostConfigKind)
	default:
		v.errorf("kind", "unsupported kind %q: this vpcflow reads host files of kind %s (regenerate it with this vpcflow's host config)", c.Kind, HostConfigKind)
	}
	if c.Revision > MaxRevision {
		v.errorf("revision", "revision %d is too large: the maximum is %d (it is carried in 24 cookie bits)", c.Revision, MaxRevision)
	}
	switch c.Encapsulation {
	case EncapVXLAN, EncapGRE:
	default:
		v.errorf("encapsulation", "unknown encapsulation %q: use vxlan or gre", string(c.Encapsulation))
	}
	if c.Bridge != "" {
		if msg := checkBridgeName(c.Bridge); msg != "" {
			v.errorf("bridge", "bridge %s", msg)
		}
	}
	v.management()
	v.controllers()

	// This host: the blueprint's host rules.
	h := &c.Host
	var self parsedHost
	if msg := checkName(h.Name); msg != "" {
		v.errorf("host.name", "host %s", msg)
	}
	if id, msg := parseDPID(h.DatapathID); msg != "" {
		v.errorf("host.datapath_id", "%s", msg)
	} else {
		self.dpid = id
	}
	if h.TunnelIP == "" {
		v.errorf("host.tunnel_ip", "tunnel_ip is missing: set the host's underlay IPv4 address (the address on the bridge)")
	} else if a, msg := parseUnicast4(h.TunnelIP); msg != "" {
		v.errorf("host.tunnel_ip", "tunnel_ip %s", msg)
	} else {
		self.addr = a
	}
	if h.TunnelMAC != "" {
		if m, msg := parseUnicastMAC(h.TunnelMAC); msg != "" {
			v.errorf("host.tunnel_mac", "tunnel_mac %s", msg)
		} else {
			self.mac, self.hasMAC = m, true
		}
	}
	v.uplink("host", h)
	if h.OVSDB != "" {
		if _, msg := parseTarget(h.OVSDB, true); msg != "" {
			v.errorf("host.ovsdb", "ovsdb %s", msg)
		}
	}
	if t := c.OVSDBTLS; t != nil {
		for _, f := range []struct{ key, val string }{{"cert", t.Cert}, {"key", t.Key}, {"ca", t.CA}} {
			switch {
			case f.val == "":
				v.errorf("ovsdb_tls."+f.key, "ovsdb_tls.%s is missing: give the cert, key and ca files together (absolute paths on the host), or remove ovsdb_tls", f.key)
			case !strings.HasPrefix(f.val, "/"):
				v.errorf("ovsdb_tls."+f.key, "%q is a relative path: write the absolute path of the file on the host", f.val)
			}
		}
	}

	// Peers: unique names and addresses, none of them this host's.
	names := map[string]string{h.Name: "host.name"}
	addrs := map[netip.Addr]string{}
	if self.addr.IsValid() {
		addrs[self.addr] = "host.tunnel_ip"
	}
	macs := map[MAC]string{}
	if self.hasMAC {
		macs[self.mac] = "host.tunnel_mac"
	}
	peers := make([]parsedHost, len(c.Peers))
	for i, p := range c.Peers {
		f := fmt.Sprintf("peers[%d]", i)
		if msg := checkName(p.Name); msg != "" {
			v.errorf(f+".name", "peer %s", msg)
		} else if other, dup := names[p.Name]; dup {
			v.errorf(f+".name", "peer name %q is already used by %s: names must be unique", p.Name, other)
		} else {
			names[p.Name] = f + ".name"
		}
		if p.TunnelIP == "" {
			v.errorf(f+".tunnel_ip", "tunnel_ip is missing: give the peer's underlay IPv4 address")
		} else if a, msg := parseUnicast4(p.TunnelIP); msg != "" {
			v.errorf(f+".tunnel_ip", "tunnel_ip %s", msg)
		} else if other, dup := addrs[a]; dup {
			v.errorf(f+".tunnel_ip", "tunnel_ip %s is already %s: every host needs its own underlay address", a, other)
		} else {
			addrs[a] = f + ".tunnel_ip"
			peers[i].addr = a
		}
		if p.TunnelMAC != "" {
			if m, msg := parseUnicastMAC(p.TunnelMAC); msg != "" {
				v.errorf(f+".tunnel_mac", "tunnel_mac %s", msg)
			} else if other, dup := macs[m]; dup {
				v.errorf(f+".tunnel_mac", "tunnel_mac %s is already %s: MACs must be unique", m, other)
			} else {
				macs[m] = f + ".tunnel_mac"
				peers[i].mac, peers[i].hasMAC = m, true
			}
		}
	}
	var trusted []netip.Addr
	seen := map[netip.Addr]int{}
	for i, s := range c.TrustedPeers {
		f := fmt.Sprintf("trusted_peers[%d]", i)
		a, msg := parseUnicast4(s)
		switch {
		case msg != "":
			v.errorf(f, "trusted peer %s", msg)
		case addrs[a] != "":
			v.errorf(f, "trusted peer %s is %s: hosts are trusted already, remove it", a, addrs[a])
		default:
			if j, dup := seen[a]; dup {
				v.errorf(f, "trusted peer %s is already listed as trusted_peers[%d]: remove the duplicate", a, j)
				continue
			}
			seen[a] = i
			trusted = append(trusted, a)
		}
	}
	if len(v.errs) > 0 {
		return v.errs
	}
	h.DPID, h.Addr, h.MAC, h.HasMAC = self.dpid, self.addr, self.mac, self.hasMAC
	c.mgmt, c.peerAddrs, c.peers = v.mgmt, trusted, peers
	return nil
}

// checkBridgeName checks a bridge name (a Linux interface name).
func checkBridgeName(s string) string {
	if len(s) > 15 {
		return fmt.Sprintf("%q is too long for an interface name (%d bytes): Linux allows at most 15", s, len(s))
	}
	if s == "." || s == ".." || strings.HasPrefix(s, tunnelPortPrefix) {
		return fmt.Sprintf("%q is not a valid bridge name", s)
	}
	for _, r := range reservedPortNames {
		if strings.EqualFold(s, r) {
			return fmt.Sprintf("%q is a reserved OpenFlow port name: name the real bridge", s)
		}
	}
	for _, ch := range s {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			return fmt.Sprintf("%q contains %q: interface names here use letters, digits, '-', '_' and '.'", s, ch)
		}
	}
	return ""
}

// YAML renders the host file with header as leading comment lines (each
// line prefixed with "# "). Datapath ids and MACs are quoted, scalar lists
// written inline, so the file reads like a blueprint; ParseHostConfig
// reads it back to the same HostConfig.
func (c *HostConfig) YAML(header string) ([]byte, error) {
	n, err := c.node()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		if header == "" {
			break
		}
		buf.WriteString(strings.TrimRight("# "+l, " ") + "\n")
	}
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// JSON renders the host file as one JSON object with the YAML keys, in the
// same order (a JSON host file is valid YAML: ParseHostConfig reads it).
func (c *HostConfig) JSON() ([]byte, error) {
	n, err := c.node()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := nodeJSON(&buf, n); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// node encodes c as a YAML node tree with the host file's styles.
func (c *HostConfig) node() (*yaml.Node, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, err
	}
	styleNode(&n, "")
	dropEmpty(&n)
	return &n, nil
}

// dropEmpty removes the optional keys left empty (tunnel_mac, ovsdb).
func dropEmpty(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if (k.Value == "tunnel_mac" || k.Value == "ovsdb") && val.Kind == yaml.ScalarNode && val.Value == "" {
				continue
			}
			kept = append(kept, k, val)
		}
		n.Content = kept
	}
	for _, ch := range n.Content {
		dropEmpty(ch)
	}
}

// styleNode quotes datapath ids and MACs and writes lists of scalars inline.
func styleNode(n *yaml.Node, key string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, ch := range n.Content {
			styleNode(ch, key)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			styleNode(n.Content[i+1], n.Content[i].Value)
		}
	case yaml.SequenceNode:
		inline := true
		for _, ch := range n.Content {
			if ch.Kind != yaml.ScalarNode {
				inline = false
			}
			styleNode(ch, key)
		}
		if inline {
			n.Style = yaml.FlowStyle
		}
	case yaml.ScalarNode:
		if key == "datapath_id" || key == "tunnel_mac" {
			n.Style = yaml.DoubleQuotedStyle
		}
	}
}

// nodeJSON writes a YAML node tree as JSON, keeping the mapping order.
func nodeJSON(w *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return errors.New("host file: not one document")
		}
		return nodeJSON(w, n.Content[0])
	case yaml.MappingNode:
		w.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				w.WriteByte(',')
			}
			k, _ := json.Marshal(n.Content[i].Value)
			w.Write(k)
			w.WriteByte(':')
			if err := nodeJSON(w, n.Content[i+1]); err != nil {
				return err
			}
		}
		w.WriteByte('}')
	case yaml.SequenceNode:
		w.WriteByte('[')
		for i, ch := range n.Content {
			if i > 0 {
				w.WriteByte(',')
			}
			if err := nodeJSON(w, ch); err != nil {
				return err
			}
		}
		w.WriteByte(']')
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int":
			if _, err := strconv.ParseInt(n.Value, 10, 64); err != nil {
				return fmt.Errorf("host file: number %q", n.Value)
			}
			w.WriteString(n.Value)
		case "!!null":
			w.WriteString("null")
		default:
			s, _ := json.Marshal(n.Value)
			w.Write(s)
		}
	default:
		return fmt.Errorf("host file: unexpected YAML node kind %d", n.Kind)
	}
	return nil
}
