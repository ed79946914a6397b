#!/usr/bin/env bash
# Installs what the router and secgroup root tests and benchmarks need on
# top of agent/network/testdeps.sh: nftables (nft, to dump tables in tests),
# iptables (iptables-restore baseline in the benchmarks), iproute2 and
# busybox-static. Idempotent.
set -euo pipefail
. "$(dirname "$0")/../../../testdata/apt.sh"
apt_install_missing "router test deps" nftables iptables iproute2 busybox-static
