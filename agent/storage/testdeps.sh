#!/usr/bin/env bash
# testdeps.sh installs what the storage subsystem builds against and what its
# tests run: the Ceph daemons for the single-node test cluster (ceph-mon,
# ceph-osd, ceph-mgr), the ceph and rbd tools (ceph-common), the librados
# and librbd headers go-ceph's cgo build needs (Ceph 16.2, build tag
# `pacific`), qemu-img for image conversion and qemu's rbd block driver
# (qemu-block-extra) so libvirt can open <source protocol='rbd'> disks.
# Idempotent; the tests start their own cluster, by PID.
set -euo pipefail
. "$(dirname "$0")/../../testdata/apt.sh"
apt_install_missing "storage test deps" ceph-mon ceph-osd ceph-mgr ceph-common \
	librados-dev librbd-dev qemu-utils qemu-block-extra gcc pkg-config
