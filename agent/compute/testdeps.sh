#!/usr/bin/env bash
# testdeps.sh installs what the compute driver's root tests need: libvirtd
# (libvirt-daemon-system also creates the libvirt-qemu user the QEMU driver
# wants), virsh, qemu (TCG), qemu-img, Debian's kernel and busybox-static
# for the test guest, cpio/gzip/xz to pack it, kmod for modprobe -S.
# Idempotent: apt-get runs only when a package is missing. Daemons are not
# started by the packages (policy-rc.d); the tests start their own libvirtd.
set -euo pipefail
pkgs=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
	linux-image-amd64 busybox-static cpio gzip xz-utils kmod iproute2 dnsmasq)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
	echo "compute test deps: all installed"
	exit 0
fi
echo "compute test deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt-get "${apt_opts[@]}" update
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod +x "$policy"
	made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}"
