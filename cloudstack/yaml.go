package cloudstack

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/vpcflow/vpcflow/flows"
)

// emit writes bp as blueprint YAML: one line per VM, each object's
// CloudStack origin as a comment at the end of its line, and a header that
// lists every skipped object. Strings are double-quoted (YAML reads them
// as strings whatever they look like).
func (b *builder) emit(bp *flows.Blueprint) []byte {
	var w bytes.Buffer
	fmt.Fprintf(&w, "# vpcflow blueprint built from CloudStack %s and the base file %s.\n", orDash(b.opts.Endpoint), orDash(b.base.Source))
	if b.opts.Ports != nil {
		w.WriteString("# Ports are the hosts' cloudbr0 ports whose external_ids:attached-mac is the NIC's MAC (read from OVSDB).\n")
	} else {
		fmt.Fprintf(&w, "# Ports are named by the template %q.\n", b.opts.PortTemplate.Root.String())
	}
	if len(b.skipped) == 0 {
		w.WriteString("# Skipped CloudStack objects: none.\n")
	} else {
		fmt.Fprintf(&w, "# Skipped CloudStack objects (%d), not in this blueprint:\n", len(b.skipped))
		for _, s := range b.skipped {
			fmt.Fprintf(&w, "#   %s\n", oneLine(s.String()))
		}
	}
	fmt.Fprintf(&w, "version: %d\n", bp.Version)
	fmt.Fprintf(&w, "revision: %d\n", bp.Revision)
	if bp.Encapsulation != "" {
		fmt.Fprintf(&w, "encapsulation: %s\n", q(string(bp.Encapsulation)))
	}
	w.WriteString("management:\n")
	fmt.Fprintf(&w, "  cidrs: %s\n", qlist(bp.Management.CIDRs))
	if bp.Management.HostPorts != nil {
		ports := make([]string, len(bp.Management.HostPorts))
		for i, p := range bp.Management.HostPorts {
			ports[i] = strconv.Itoa(int(p))
		}
		fmt.Fprintf(&w, "  host_ports: [%s]\n", strings.Join(ports, ", "))
	}
	fmt.Fprintf(&w, "trusted_peers: %s\n", qlist(bp.TrustedPeers))
	fmt.Fprintf(&w, "controllers: %s\n", qlist(bp.Controllers))
	listKey(&w, "", "hosts", len(bp.Hosts))
	for i, h := range bp.Hosts {
		fmt.Fprintf(&w, "  - name: %s%s\n", q(h.Name), b.note(fmt.Sprintf("hosts[%d]", i)))
		fmt.Fprintf(&w, "    datapath_id: %s\n", q(h.DatapathID))
		fmt.Fprintf(&w, "    tunnel_ip: %s\n", q(h.TunnelIP))
		if h.TunnelMAC != "" {
			fmt.Fprintf(&w, "    tunnel_mac: %s\n", q(h.TunnelMAC))
		}
		if u := h.UplinkSpec; u.IsBond() {
			ms := make([]string, len(u.Members))
			for k, m := range u.Members {
				ms[k] = q(m)
			}
			fmt.Fprintf(&w, "    uplink: {name: %s, bond: [%s]", q(u.Name), strings.Join(ms, ", "))
			if u.LACP != "" {
				fmt.Fprintf(&w, ", lacp: %s", q(u.LACP))
			}
			if u.Mode != "" {
				fmt.Fprintf(&w, ", mode: %s", q(u.Mode))
			}
			w.WriteString("}\n")
		} else {
			name := u.Name
			if name == "" {
				name = h.Uplink
			}
			fmt.Fprintf(&w, "    uplink: %s\n", q(name))
		}
		if h.OVSDB != "" {
			fmt.Fprintf(&w, "    ovsdb: %s\n", q(h.OVSDB))
		}
	}
	listKey(&w, "", "vpcs", len(bp.VPCs))
	for i, v := range bp.VPCs {
		fmt.Fprintf(&w, "  - name: %s%s\n", q(v.Name), b.note(fmt.Sprintf("vpcs[%d]", i)))
		if v.Routing != "" {
			fmt.Fprintf(&w, "    routing: %s\n", q(v.Routing))
		}
		b.emitACLs(&w, i, &v)
		listKey(&w, "    ", "tiers", len(v.Tiers))
		for j, t := range v.Tiers {
			fmt.Fprintf(&w, "      - name: %s%s\n", q(t.Name), b.note(fmt.Sprintf("vpcs[%d].tiers[%d]", i, j)))
			if t.IsVLAN() {
				fmt.Fprintf(&w, "        type: vlan\n        vlan: %d\n", t.VLAN)
			} else {
				fmt.Fprintf(&w, "        vni: %d\n", t.VNI)
			}
			fmt.Fprintf(&w, "        cidr: %s\n", q(t.CIDR))
			if t.Gateway != "" {
				fmt.Fprintf(&w, "        gateway: %s\n", q(t.Gateway))
			}
			if t.ACL != "" {
				fmt.Fprintf(&w, "        acl: %s\n", q(t.ACL))
			}
			listKey(&w, "        ", "vms", len(t.VMs))
			for k, m := range t.VMs {
				role := ""
				if m.Role != "" {
					role = ", role: " + q(m.Role)
				}
				if len(m.SecurityGroups) > 0 {
					role += ", security_groups: " + qlist(m.SecurityGroups)
				}
				fmt.Fprintf(&w, "          - {name: %s, host: %s, port: %s, mac: %s, ip: %s%s}%s\n",
					q(m.Name), q(m.Host), q(m.Port), q(m.MAC), q(m.IP), role, b.note(fmt.Sprintf("vpcs[%d].tiers[%d].vms[%d]", i, j, k)))
			}
		}
	}
	b.emitSecurityGroups(&w, bp)
	return w.Bytes()
}

// listKey writes a list's key: "key:" before its items, "key: []" when
// it has none.
func listKey(w *bytes.Buffer, indent, key string, n int) {
	if n == 0 {
		fmt.Fprintf(w, "%s%s: []\n", indent, key)
		return
	}
	fmt.Fprintf(w, "%s%s:\n", indent, key)
}

func (b *builder) note(path string) string {
	if n := b.notes[path]; n != "" {
		return "  # " + oneLine(n)
	}
	return ""
}

// q double-quotes s for YAML (Go's escapes are a subset of YAML's).
func q(s string) string { return strconv.Quote(s) }

func qlist(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = q(s)
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// oneLine keeps a comment on one line.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}
