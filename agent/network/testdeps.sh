#!/bin/sh
# Installs what the agent/network root tests need: dnsmasq (DHCP/DNS per
# network) and dnsmasq-utils (dhcp_release), busybox-static (udhcpc client, ping), iproute2 (ip, bridge).
# Idempotent; safe to run on every CI run. Debian's dnsmasq package may try to
# start its service: harmless without systemd, and the tests never use or
# signal a dnsmasq they did not start.
set -eu
pkgs="dnsmasq dnsmasq-utils busybox-static iproute2"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
