#!/usr/bin/env python3
"""Rogue underlay node: send crafted VXLAN packets to a hypervisor.

Part of the vpcflow namespace lab (examples/lab). Builds
Ether/IP/UDP(dport=4789)/VXLAN(vni)/Ether/IP/ICMP and sends it from --iface.
The outer destination MAC is --dst-mac, or resolved by ARP for --dst.
Exit status 0 when every packet was sent; errors go to stderr.
"""
import argparse
import sys

from scapy.all import ICMP, IP, UDP, Ether, conf, get_if_addr, get_if_hwaddr, getmacbyip, sendp
from scapy.layers.vxlan import VXLAN


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--dst", required=True, help="target host tunnel IP")
    ap.add_argument("--dst-mac", help="target host MAC (default: ARP for --dst)")
    ap.add_argument("--src", help="outer source IP (default: the interface's address)")
    ap.add_argument("--src-mac", help="outer source MAC (default: the interface's MAC)")
    ap.add_argument("--key", type=int, required=True, help="VXLAN VNI")
    ap.add_argument("--inner-dst-mac", required=True)
    ap.add_argument("--inner-dst-ip", required=True)
    ap.add_argument("--inner-src-mac", default="02:00:00:00:66:66")
    ap.add_argument("--inner-src-ip", default="10.66.66.66")
    ap.add_argument("--sport", type=int, default=40000)
    ap.add_argument("--count", type=int, default=1)
    a = ap.parse_args()
    if not 0 <= a.key < 1 << 24:
        sys.exit("VNI %d out of range 0..16777215" % a.key)
    conf.verb = 0
    src = a.src or get_if_addr(a.iface)
    src_mac = a.src_mac or get_if_hwaddr(a.iface)
    dst_mac = a.dst_mac or getmacbyip(a.dst)
    if not dst_mac:
        sys.exit("no ARP reply from %s on %s: pass --dst-mac" % (a.dst, a.iface))
    inner = (Ether(src=a.inner_src_mac, dst=a.inner_dst_mac)
             / IP(src=a.inner_src_ip, dst=a.inner_dst_ip) / ICMP(id=0x6666))
    pkt = (Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=a.dst)
           / UDP(sport=a.sport, dport=4789) / VXLAN(vni=a.key, flags=0x08) / inner)
    sendp(pkt, iface=a.iface, count=a.count, verbose=False)
    print("sent %d vxlan vni=%d %s -> %s (%s) inner %s" % (a.count, a.key, src, a.dst, dst_mac, a.inner_dst_ip))


if __name__ == "__main__":
    main()
