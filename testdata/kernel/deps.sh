#!/usr/bin/env bash
# deps.sh installs what the kernel-test harness needs: qemu (TCG), Debian's
# kernel package, and the tools that go into the guest's initramfs.
# Idempotent: it only calls apt-get when a package is missing.
set -euo pipefail

pkgs=(
	qemu-system-x86    # qemu-system-x86_64, qboot.rom (via qemu-system-data)
	linux-image-amd64  # the guest kernel and its modules
	busybox-static     # the guest's shell and applets
	cpio xz-utils gzip # unpack vmlinuz, pack the initramfs
	kmod               # modprobe --show-depends, depmod -b
	dmsetup            # dm-writecache and dm-cache targets
	openvswitch-switch # ovs-vsctl, ovsdb-server, ovs-vswitchd
	nftables iproute2  # nft, ip
)

. "$(dirname "$0")/../apt.sh"
apt_install_missing "kernel harness deps" "${pkgs[@]}"
