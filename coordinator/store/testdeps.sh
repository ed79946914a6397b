#!/usr/bin/env bash
# Installs what the store's etcd tests (and the HA coordinator test) need:
# Debian's etcd server and etcdctl. The tests start their own members on
# loopback and stop them by PID; the package scripts start nothing.
set -euo pipefail
. "$(dirname "$0")/../../testdata/apt.sh"
apt_install_missing "store test deps" etcd-server etcd-client
