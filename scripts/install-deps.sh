#!/usr/bin/env bash
# Installs the Debian packages vpcflow's lab, demo and tests need (systemd:
# systemd-analyze for the package test; zsh for the completion test), if any is
# missing. Idempotent; non-interactive (CI has no stdin).
set -euo pipefail
pkgs="openvswitch-switch iproute2 iputils-ping tcpdump ethtool python3-scapy nftables make systemd zsh"
# Installed without their recommends: prometheus for promtool (the metrics
# and alert-rule tests use only promtool; the node exporter it recommends
# is left out. Where systemd runs, Debian starts the Prometheus daemon too).
norec="prometheus"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
missing_norec=""
for p in $norec; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_norec="$missing_norec $p"
done
if [ -z "$missing" ] && [ -z "$missing_norec" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages:$missing$missing_norec (run as root, or install them yourself)" >&2
  exit 1
fi
echo "install-deps: installing:$missing$missing_norec"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
if [ -n "$missing" ]; then
  apt-get install -y -q $missing
fi
if [ -n "$missing_norec" ]; then
  apt-get install -y -q --no-install-recommends $missing_norec
fi
