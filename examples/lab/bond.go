package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Bonded uplinks. A host whose blueprint uplink is a bond gets one underlay
// link per member:
//
//   - lacp off: every member's veth ends on the underlay Linux bridge (which
//     speaks no LACP). Active-backup keeps one member in use, so the
//     learning bridge sees the host's MAC on one port at a time;
//   - lacp active: the members end on a per-host partner switch (the "ToR":
//     namespace <prefix><host>-tor with its own ovsdb-server and
//     ovs-vswitchd, bridge tor0 in standalone mode) that bonds them with
//     LACP and joins the underlay bridge with one more veth.
//
// Only the first member is added to cloudbr0 by hand; `vpcflow host apply`
// converts it into the bond.

// Partner switch names.
const (
	partnerBridge = "tor0"
	partnerBond   = "lag0"
	partnerUplink = "up0" // the partner's link into the underlay bridge
)

// partnerKey is the state-directory key (and namespace suffix) of a host's
// LACP partner.
func partnerKey(host string) string { return host + "-tor" }

// PartnerNS returns the namespace of a host's LACP partner switch ("" when
// the host has none).
func (l *Lab) PartnerNS(host string) string {
	hi, err := l.host(host)
	if err != nil || !hi.lacp {
		return ""
	}
	return l.prefix + partnerKey(host)
}

// BondLink is one member link of a bonded uplink.
type BondLink struct {
	Member string // the NIC in the host namespace (a port of cloudbr0's bond)
	Peer   string // the other end of its veth
	PeerNS string // where Peer lives: the underlay, or the LACP partner
}

// BondLinks returns a host's bond member links (none for a single NIC).
func (l *Lab) BondLinks(host string) ([]BondLink, error) {
	hi, err := l.host(host)
	if err != nil {
		return nil, err
	}
	ns := l.UnderlayNS()
	if hi.lacp {
		ns = l.PartnerNS(host)
	}
	var out []BondLink
	for i, m := range hi.members {
		out = append(out, BondLink{Member: m, Peer: hi.memberPeers[i], PeerNS: ns})
	}
	return out, nil
}

// SetBondLink cuts (up=false) or restores a member link of a host's bond:
// both veth ends go down (or up), as a pulled cable or a failed switch port
// would look from either side.
func (l *Lab) SetBondLink(ctx context.Context, host, member string, up bool) error {
	links, err := l.BondLinks(host)
	if err != nil {
		return err
	}
	state := "down"
	if up {
		state = "up"
	}
	for _, b := range links {
		if b.Member != member {
			continue
		}
		if err := l.ip(ctx, b.PeerNS, "link", "set", b.Peer, state); err != nil {
			return err
		}
		return l.ip(ctx, l.HostNS(host), "link", "set", b.Member, state)
	}
	return fmt.Errorf("lab: host %s has no bond member %q", host, member)
}

// attachBond creates a host's member links (the host namespace exists).
func (l *Lab) attachBond(ctx context.Context, hi *hostInfo) error {
	ns := l.HostNS(hi.h.Name)
	if !hi.lacp {
		for i, m := range hi.members {
			if err := l.attach(ctx, ns, m, hi.memberPeers[i]); err != nil {
				return err
			}
		}
		return nil
	}
	key := partnerKey(hi.h.Name)
	pns := l.prefix + key
	if err := l.addNS(ctx, pns); err != nil {
		return err
	}
	mtu := strconv.Itoa(UnderlayMTU)
	for i, m := range hi.members {
		if err := l.veth(ctx, ns, m, pns, hi.memberPeers[i], mtu); err != nil {
			return err
		}
	}
	// The partner's own link into the underlay bridge.
	if err := l.attach(ctx, pns, partnerUplink, hi.partnerPeer); err != nil {
		return err
	}
	if err := l.startPartner(ctx, key, pns); err != nil {
		return err
	}
	// A standalone (NORMAL) switch: the LACP bond is one logical port, so
	// two links to the same host never loop.
	args := []string{"add-br", partnerBridge, "--", "set", "bridge", partnerBridge, "datapath_type=netdev",
		"--", "add-bond", partnerBridge, partnerBond}
	args = append(args, hi.memberPeers...)
	args = append(args, "lacp=active", "bond_mode=balance-tcp", "other_config:lacp-time=fast",
		"--", "add-port", partnerBridge, partnerUplink)
	_, err := l.partnerVsctl(ctx, key, pns, args...)
	return err
}

// veth creates a veth between two namespaces with TX checksum offload off
// on both ends (see attach) and brings both up.
func (l *Lab) veth(ctx context.Context, ns1, dev1, ns2, dev2, mtu string) error {
	if err := l.ip(ctx, "", "link", "add", dev2, "netns", ns2, "mtu", mtu, "type", "veth", "peer", "name", dev1, "netns", ns1, "mtu", mtu); err != nil {
		return err
	}
	for _, end := range []struct{ ns, dev string }{{ns1, dev1}, {ns2, dev2}} {
		if _, err := l.Exec(ctx, end.ns, ethtoolBin(), "-K", end.dev, "tx", "off"); err != nil {
			return err
		}
		if err := l.ip(ctx, end.ns, "link", "set", end.dev, "up"); err != nil {
			return err
		}
	}
	return nil
}

// startPartner starts the partner switch's ovsdb-server and ovs-vswitchd
// (state in Dir/<host>-tor; Down stops them by pid).
func (l *Lab) startPartner(ctx context.Context, key, ns string) error {
	d := l.hostDir(key)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("lab: partner %s: state directory: %w", key, err)
	}
	if _, err := run(ctx, nil, "ovsdb-tool", "create", filepath.Join(d, "conf.db"), ovsSchema); err != nil {
		return err
	}
	if err := l.startOVSDB(ctx, key); err != nil {
		return err
	}
	if _, err := l.partnerVsctl(ctx, key, ns, "--no-wait", "init"); err != nil {
		return err
	}
	return l.runVSwitchd(ctx, key, ns)
}

func (l *Lab) partnerVsctl(ctx context.Context, key, ns string, args ...string) (string, error) {
	return l.execEnv(ctx, ns, l.OVSEnv(key), append([]string{ovsBin("ovs-vsctl"), "--timeout=10"}, args...)...)
}

// PartnerVsctl runs ovs-vsctl against a host's LACP partner switch (e.g.
// "set", "port", "lag0", "lacp=off" to make the partner stop LACP).
func (l *Lab) PartnerVsctl(ctx context.Context, host string, args ...string) (string, error) {
	ns := l.PartnerNS(host)
	if ns == "" {
		return "", fmt.Errorf("lab: host %s has no LACP partner", host)
	}
	return l.partnerVsctl(ctx, partnerKey(host), ns, args...)
}

// PartnerBond is the name of the LACP partner's bond port.
const PartnerBond = partnerBond

// PartnerAppctl runs ovs-appctl against a host's LACP partner switch (e.g.
// "lacp/show", "bond/show").
func (l *Lab) PartnerAppctl(ctx context.Context, host string, args ...string) (string, error) {
	ns := l.PartnerNS(host)
	if ns == "" {
		return "", fmt.Errorf("lab: host %s has no LACP partner", host)
	}
	return l.execEnv(ctx, ns, l.OVSEnv(partnerKey(host)), append([]string{ovsBin("ovs-appctl")}, args...)...)
}
