#!/usr/bin/env bash
# Installs what the agent/network root tests need: dnsmasq (DHCP/DNS per
# network), dnsmasq-utils (dhcp_release), busybox-static (udhcpc client,
# ping), iproute2 (ip, bridge). Idempotent.
set -euo pipefail
. "$(dirname "$0")/../../testdata/apt.sh"
apt_install_missing "network test deps" dnsmasq dnsmasq-utils busybox-static iproute2
