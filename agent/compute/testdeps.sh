#!/usr/bin/env bash
# testdeps.sh installs what the compute driver's root tests need: libvirtd
# (libvirt-daemon-system also creates the libvirt-qemu user the QEMU driver
# wants), virsh, qemu (TCG), qemu-img, Debian's kernel and busybox-static
# for the test guest, cpio/gzip/xz to pack it, kmod for modprobe -S.
# Idempotent; the tests start their own libvirtd.
set -euo pipefail
. "$(dirname "$0")/../../testdata/apt.sh"
apt_install_missing "compute test deps" libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils \
	linux-image-amd64 busybox-static cpio gzip xz-utils kmod iproute2 dnsmasq
