#!/usr/bin/env bash
# testdeps.sh installs what the krbd/cache guest tests and benchmark need
# beyond the Ceph cluster (agent/storage/testdeps.sh) and the kernel-test
# guest (testdata/kernel/deps.sh): fio, packed into the guest by
# BenchmarkCachedVolumeFio, and lvm2, whose lvm TestCachedVolumesInGuest
# packs for the volume group cache. Idempotent.
set -euo pipefail
. "$(dirname "$0")/../../../testdata/apt.sh"
apt_install_missing "cached volume test deps" fio lvm2
