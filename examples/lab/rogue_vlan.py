#!/usr/bin/env python3
"""Underlay node on a physical VLAN: send 802.1Q-tagged frames.

Part of the vpcflow namespace lab (examples/lab). This kernel may have no
VLAN links, so the frame Ether/Dot1Q(vlan)/IP/ICMP is built with scapy and
sent from --iface (the rogue node's underlay NIC). Exit status 0 when every
frame was sent; errors go to stderr.
"""
import argparse
import sys

from scapy.all import ICMP, IP, Dot1Q, Ether, conf, sendp


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--vlan", type=int, required=True, help="802.1Q VLAN id")
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--dst-ip", required=True)
    ap.add_argument("--src-mac", default="02:00:00:00:77:77")
    ap.add_argument("--src-ip", default="10.77.77.77")
    ap.add_argument("--count", type=int, default=1)
    a = ap.parse_args()
    if not 0 <= a.vlan <= 4095:
        sys.exit("VLAN %d out of range 0..4095" % a.vlan)
    conf.verb = 0
    frame = (Ether(src=a.src_mac, dst=a.dst_mac) / Dot1Q(vlan=a.vlan)
             / IP(src=a.src_ip, dst=a.dst_ip) / ICMP(id=0x7777))
    sendp(frame, iface=a.iface, count=a.count)


if __name__ == "__main__":
    main()
