#!/usr/bin/env bash
# Builds DIST/vpcflow_<version>_<arch>.deb with dpkg-deb (make package):
# the static binary in /usr/bin, the systemd units in /lib/systemd/system,
# commented examples in /etc/vpcflow (conffiles), docs in
# /usr/share/doc/vpcflow, the Grafana dashboard and Prometheus alert rules
# in /usr/share/vpcflow. No network, no packaging tool beyond dpkg-deb.
#
#   scripts/package-deb.sh BIN DIST            VERSION (git describe --tags
#                                              --always --dirty) from the
#                                              environment, else git;
#                                              DEB_COMPRESS: xz (default),
#                                              gzip (the test: 4x faster)
#   scripts/package-deb.sh --deb-version DESCRIBE [COMMITS]
#                                              print the Debian version for
#                                              a git describe string
#
# Debian versions: v1.2.3 -> 1.2.3; v1.2.3-4-gabc1234 -> 1.2.3+4.gabc1234;
# v1.2.3-rc1 -> 1.2.3~rc1; untagged abc1234 -> 0.0.0+<commits>.gabc1234;
# -dirty -> +dirty (or .dirty after a +).
set -euo pipefail

die() { echo "package-deb: $*" >&2; exit 1; }

debversion() {
	local v=${1#v} commits=${2:-0} dirty="" out
	if [[ $v == *-dirty ]]; then dirty=1; v=${v%-dirty}; fi
	if [[ $v =~ ^([0-9].*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		out="${BASH_REMATCH[1]//-/\~}+${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
	elif [[ $1 != v* && $v =~ ^[0-9a-f]{7,40}$ ]]; then
		out="0.0.0+${commits}.g$v" # no tag: git describe --always printed the hash
	elif [[ $v =~ ^[0-9] ]]; then
		out=${v//-/\~}
	else
		return 1
	fi
	if [[ -n $dirty ]]; then
		if [[ $out == *+* ]]; then out+=".dirty"; else out+="+dirty"; fi
	fi
	[[ $out =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || return 1
	echo "$out"
}

if [[ ${1:-} == --deb-version ]]; then
	[[ $# -ge 2 ]] || die "usage: $0 --deb-version DESCRIBE [COMMITS]"
	debversion "$2" "${3:-0}" || die "version \"$2\" cannot be made a Debian version: tag releases vMAJOR.MINOR.PATCH"
	exit 0
fi

[[ $# -eq 2 ]] || die "usage: $0 BIN DIST (make package runs it)"
bin=$1 dist=$2
top=$(cd "$(dirname "$0")/.." && pwd)
pkg=$top/packaging
[[ -x $bin ]] || die "$bin: no such executable: run make build first (make package does)"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
command -v dpkg-deb >/dev/null || die "dpkg-deb not found: apt-get install dpkg"

# Only the static binary is packaged: it must run on any host of the
# architecture, whatever its glibc.
info=$("$bin" version -o json) || die "$bin version failed"
grep -q '"cgo": false' <<<"$info" || die "$bin is dynamically linked (cgo): build it with make build (CGO_ENABLED=0)"

describe=${VERSION:-$(git -C "$top" describe --tags --always --dirty 2>/dev/null || true)}
[[ -n $describe ]] || die "no version: set VERSION (e.g. VERSION=v1.0.0) or build from a git clone"
commits=$(git -C "$top" rev-list --count HEAD 2>/dev/null || echo 0)
version=$(debversion "$describe" "$commits") ||
	die "VERSION \"$describe\" cannot be made a Debian version: tag releases vMAJOR.MINOR.PATCH"
case ${ARCH:=$(${GO:-go} env GOARCH)} in
amd64 | arm64 | riscv64 | ppc64el | s390x) ;;
386) ARCH=i386 ;;
arm) ARCH=armhf ;;
ppc64le) ARCH=ppc64el ;;
*) die "GOARCH $ARCH: no Debian architecture known (set ARCH)" ;;
esac

root=$(mktemp -d "${TMPDIR:-/tmp}/vpcflow-deb.XXXXXX")
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/vpcflow" "$root/usr/share/doc/vpcflow"
install -m 0755 "$bin" "$root/usr/bin/vpcflow"
install -m 0644 "$pkg/systemd/vpcflow-controller.service" "$pkg/systemd/vpcflow-host-watch.service" "$root/lib/systemd/system/"
install -m 0644 "$pkg/etc/controller.yaml" "$pkg/etc/host-watch.env" "$pkg/etc/blueprint.example.yaml" "$root/etc/vpcflow/"
# The example host file is made from the example blueprint by the binary
# itself, so the two always agree.
{
	echo "# /etc/vpcflow/host.example.yaml: the host file of kvm1 in blueprint.example.yaml."
	echo "# Make each hypervisor's own on a controller machine and install it as"
	echo "# /etc/vpcflow/host.yaml (host-watch.env reads it):"
	echo "#   vpcflow host config --blueprint /etc/vpcflow/blueprint.yaml --host kvm1 --output-file kvm1.yaml"
	(cd "$pkg/etc" && "$bin" host config --blueprint blueprint.example.yaml --host kvm1)
} >"$root/etc/vpcflow/host.example.yaml" || die "vpcflow host config on the example blueprint failed"
chmod 0644 "$root/etc/vpcflow/host.example.yaml"
install -m 0644 "$top/README.md" "$top/docs/operations.md" "$top/docs/upgrade.md" "$top/docs/cli.md" "$root/usr/share/doc/vpcflow/"
# Monitoring (docs/metrics.md): the metrics reference, the Grafana
# dashboard and the Prometheus alert rules (to import, or to name in
# prometheus.yml's rule_files).
install -m 0644 "$top/docs/metrics.md" "$root/usr/share/doc/vpcflow/"
install -d -m 0755 "$root/usr/share/vpcflow/grafana" "$root/usr/share/vpcflow/prometheus"
install -m 0644 "$pkg/grafana/vpcflow.json" "$root/usr/share/vpcflow/grafana/"
install -m 0644 "$pkg/prometheus/vpcflow-alerts.yaml" "$root/usr/share/vpcflow/prometheus/"
install -m 0644 "$top/LICENSE" "$root/usr/share/doc/vpcflow/copyright"
install -m 0755 "$pkg/deb/postinst" "$pkg/deb/prerm" "$pkg/deb/postrm" "$root/DEBIAN/"
printf '/etc/vpcflow/%s\n' controller.yaml host-watch.env blueprint.example.yaml host.example.yaml >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$size/" \
	-e "s/@MAINTAINER@/${MAINTAINER:-vpcflow maintainers <vpcflow@localhost>}/" \
	"$pkg/deb/control.in" >"$root/DEBIAN/control"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

mkdir -p "$dist"
out=$dist/vpcflow_${version}_${ARCH}.deb
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$out" >/dev/null
echo "$out"
