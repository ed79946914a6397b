#!/usr/bin/env bash
# Installs what the ovs driver's root tests need: Open vSwitch (ovsdb-server,
# ovs-vswitchd, ovsdb-tool, ovs-vsctl, ovs-ofctl and the vswitch schema).
# The tests start their own daemons per test host; nothing is started here.
set -euo pipefail
. "$(dirname "$0")/../../../testdata/apt.sh"
apt_install_missing "ovs test deps" openvswitch-switch openvswitch-common
