#!/bin/sh
# Installs what the router and secgroup root tests and benchmarks need on
# top of agent/network/testdeps.sh: nftables (nft, to dump tables in tests),
# iptables (iptables-restore baseline in the benchmarks), iproute2 and
# busybox-static. Idempotent.
set -eu
pkgs="nftables iptables iproute2 busybox-static"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
