#!/usr/bin/env bash
# Installs the Debian packages vpcflow's lab, demo and tests need (systemd:
# systemd-analyze for the package test; prometheus: promtool for the metrics
# and alert-rule tests, its daemon is not needed), if any is
# missing. Idempotent; non-interactive (CI has no stdin).
set -euo pipefail
pkgs="openvswitch-switch iproute2 iputils-ping tcpdump ethtool python3-scapy nftables make systemd prometheus"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages:$missing (run as root, or install them yourself)" >&2
  exit 1
fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q $missing
