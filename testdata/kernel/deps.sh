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

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -eq 0 ]; then
	echo "kernel harness deps: all installed"
	exit 0
fi

echo "kernel harness deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Another job may hold the dpkg lock; wait for it rather than fail.
apt_opts=(-y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt-get "${apt_opts[@]}" update
# Without systemd, openvswitch-switch's postinst tries to start the service;
# policy-rc.d keeps package scripts from starting daemons on this machine.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod +x "$policy"
	made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}"
