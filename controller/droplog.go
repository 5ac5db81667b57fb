package controller

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// Drop logging (Options.DropLog): the security drop flows (spoof-drop,
// mgmt-guard, tunnel-allowlist-drop) and the policy's drops (ACL deny
// rules, an ACL list's ingress no-match, a VM's security-group no-match,
// ct-invalid; the line then names the rule: policy_rule, verdict) also
// send the packet's first
// flows.DropLogMaxLen bytes to the controller through OpenFlow meter
// flows.DropLogMeter, a DROP band of DropLogRate packets/s per bridge: the
// switch rate-limits, allowed traffic never touches the meter, and the
// controller writes one structured log line per event. Events beyond the
// rate are dropped by the meter (counted in its band stats: ovs-ofctl
// meter-stats); events the controller cannot keep up with are counted as
// suppressed.

const (
	ofptMeterMod       = 29
	ofpmcAdd           = 0
	ofpmcModify        = 1
	ofpmfPktps         = 0x2
	ofpmfBurst         = 0x4
	ofpmbtDrop         = 1
	ofpetMeterModFail  = 12
	ofpmmfcMeterExists = 1
)

func meterModMsg(cmd uint16, id, rate, burst uint32) []byte {
	m := make([]byte, 16+16)
	m[0] = 4
	m[1] = ofptMeterMod
	binary.BigEndian.PutUint16(m[2:], uint16(len(m)))
	binary.BigEndian.PutUint16(m[8:], cmd)
	binary.BigEndian.PutUint16(m[10:], ofpmfPktps|ofpmfBurst)
	binary.BigEndian.PutUint32(m[12:], id)
	binary.BigEndian.PutUint16(m[16:], ofpmbtDrop)
	binary.BigEndian.PutUint16(m[18:], 16)
	binary.BigEndian.PutUint32(m[20:], rate)
	binary.BigEndian.PutUint32(m[24:], burst)
	return m
}

// installMeter makes sure the drop-logging meter exists with the configured
// rate (ADD, or MODIFY when it already exists). It runs before any flow
// that references the meter is sent.
func (b *bridge) installMeter(ctx context.Context) error {
	rate := b.c.opts.DropLogRate
	burst := rate
	err := b.conn.Send(ctx, [][]byte{meterModMsg(ofpmcAdd, flows.DropLogMeter, rate, burst)})
	var oe *OFError
	if errors.As(err, &oe) && oe.Type == ofpetMeterModFail && oe.Code == ofpmmfcMeterExists {
		err = b.conn.Send(ctx, [][]byte{meterModMsg(ofpmcModify, flows.DropLogMeter, rate, burst)})
	}
	if err != nil {
		return fmt.Errorf("drop-logging meter: %w", err)
	}
	return nil
}

// packetIn is one decoded OFPT_PACKET_IN.
type packetIn struct {
	cookie flows.Cookie
	table  uint8
	inPort uint32
	data   []byte
}

func parsePacketIn(msg []byte) (*packetIn, error) {
	if len(msg) < 32 {
		return nil, fmt.Errorf("PACKET_IN of %d bytes", len(msg))
	}
	p := &packetIn{table: msg[15], cookie: flows.Cookie(binary.BigEndian.Uint64(msg[16:24]))}
	m := msg[24:]
	ml := int(binary.BigEndian.Uint16(m[2:4]))
	padded := (ml + 7) / 8 * 8
	if ml < 4 || padded+2 > len(m) {
		return nil, fmt.Errorf("PACKET_IN match length %d", ml)
	}
	for f := m[4:ml]; len(f) >= 4; {
		h := binary.BigEndian.Uint32(f)
		l := int(h & 0xff)
		if 4+l > len(f) {
			break
		}
		if h>>16 == 0x8000 && (h>>9)&0x7f == 0 && l == 4 {
			p.inPort = binary.BigEndian.Uint32(f[4:8])
		}
		f = f[4+l:]
	}
	p.data = m[padded+2:]
	return p, nil
}

// frameFields describes an Ethernet frame for a log line.
func frameFields(d []byte) logrus.Fields {
	f := logrus.Fields{}
	if len(d) < 14 {
		return f
	}
	f["eth_dst"] = flows.MAC(d[0:6]).String()
	f["eth_src"] = flows.MAC(d[6:12]).String()
	et := binary.BigEndian.Uint16(d[12:14])
	p := d[14:]
	if et == 0x8100 && len(p) >= 4 {
		f["vlan"] = binary.BigEndian.Uint16(p[0:2]) & 0xfff
		et = binary.BigEndian.Uint16(p[2:4])
		p = p[4:]
	}
	f["eth_type"] = fmt.Sprintf("0x%04x", et)
	switch et {
	case flows.EthIPv4:
		if len(p) < 20 {
			return f
		}
		ihl := int(p[0]&0xf) * 4
		f["src"] = netip.AddrFrom4([4]byte(p[12:16])).String()
		f["dst"] = netip.AddrFrom4([4]byte(p[16:20])).String()
		proto := p[9]
		f["proto"] = map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 47: "gre"}[proto]
		if f["proto"] == "" {
			f["proto"] = proto
		}
		if (proto == 6 || proto == 17) && len(p) >= ihl+4 {
			f["sport"] = binary.BigEndian.Uint16(p[ihl:])
			f["dport"] = binary.BigEndian.Uint16(p[ihl+2:])
		}
	case flows.EthARP:
		if len(p) >= 28 {
			f["arp_op"] = binary.BigEndian.Uint16(p[6:8])
			f["src"] = netip.AddrFrom4([4]byte(p[14:18])).String()
			f["dst"] = netip.AddrFrom4([4]byte(p[24:28])).String()
		}
	case flows.EthIPv6:
		f["proto"] = "ipv6"
	}
	return f
}

// logDrops writes one structured line per dropped packet the switch sent.
// It runs for the life of the connection.
func (b *bridge) logDrops(ctx context.Context) {
	var lastSuppressed uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.conn.Done():
			return
		case msg := <-b.conn.PacketIns():
			pi, err := parsePacketIn(msg)
			if err != nil {
				b.log.WithError(err).Debug("ignoring malformed PACKET_IN")
				continue
			}
			cat := pi.cookie.Category()
			lf := frameFields(pi.data)
			lf["audit"] = "drop"
			lf["rule"] = cat.String()
			lf["cookie"] = pi.cookie.Rule().String()
			lf["table"] = flows.TableName(flows.TableID(pi.table))
			names := flows.PortMap(b.conn.Ports()).Names()
			if n, ok := names[pi.inPort]; ok {
				lf["in_port"] = n
			} else {
				lf["in_port"] = pi.inPort
			}
			if d := b.c.describeRule(b, pi.cookie); d != "" {
				lf["what"] = d
			}
			policyDropFields(b.c.policy().policyRules(), pi, lf)
			if s := b.conn.PacketInsSuppressed(); s != lastSuppressed {
				lf["suppressed_total"] = s
				b.c.metrics.dropSuppressed.WithLabelValues(b.label()).Add(float64(s - lastSuppressed))
				lastSuppressed = s
			}
			b.c.metrics.dropEvents.WithLabelValues(b.label(), cat.String()).Inc()
			b.log.WithFields(lf).Warn("dropped packet")
		}
	}
}

// describeRule names a rule in blueprint terms (cached per policy and host).
func (c *Controller) describeRule(b *bridge, ck flows.Cookie) string {
	p := c.policy()
	h, _ := b.hostFor(p)
	if h == nil {
		return ""
	}
	d, err := p.describe(h.Name)
	if err != nil {
		return ""
	}
	return d[ck.Rule()]
}
