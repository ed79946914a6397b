#!/usr/bin/env bash
# build.sh [CACHE]  (CACHE defaults to <repo>/build/guest)
# Builds Strata's test guest from Debian packages and prints the directory
# holding it:
#   vmlinux            Debian's kernel uncompressed by
#                      testdata/kernel/build-kernel.sh (TCG skips ~4 s of
#                      decompression);
#   initramfs.cpio.gz  busybox-static, the drivers (virtio disk and NIC,
#                      ext4, IDE CD-ROM, ISO 9660) and this directory's init,
#                      which mounts the root filesystem from /dev/vda and
#                      switches to it;
#   root.img           the guest IMAGE: a raw 16 MiB ext2 filesystem made
#                      with mke2fs -d (no loop mount) holding busybox,
#                      sbin-init as /sbin/init (reads the NoCloud seed from
#                      the CD-ROM and prints it, then DHCP) and udhcpc.sh.
# The directory is named by a hash of every input, so a kernel or busybox
# upgrade or an edit here rebuilds it.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/usr/bin:/sbin:/bin"
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/testdata/kernel/lib.sh"
cache=${1:-$repo/build/guest}

ver=${STRATA_KERNEL_VERSION:-$(ls /boot | sed -n 's/^vmlinuz-//p' | sort -V | tail -n1)}
[ -n "$ver" ] && [ -r "/boot/vmlinuz-$ver" ] || { echo "guest build: no /boot/vmlinuz-* (apt-get install linux-image-amd64)" >&2; exit 1; }
bb=$(command -v busybox) || { echo "guest build: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$bb" >/dev/null 2>&1; then echo "guest build: $bb is dynamic (apt-get install busybox-static)" >&2; exit 1; fi
modules="virtio_pci virtio_net virtio_blk crc32c_generic ext4 ata_piix sr_mod isofs"
mke2fs=$(command -v mke2fs) || { echo "guest build: mke2fs not found (apt-get install e2fsprogs)" >&2; exit 1; }

key=$( {
	echo "$ver $modules"
	stat -Lc '%n %s %Y' "/boot/vmlinuz-$ver" "$bb"
	cat "$here/build.sh" "$here/init" "$here/sbin-init" "$here/udhcpc.sh" "$repo/testdata/kernel/build-kernel.sh"
} | sha256sum | cut -c1-16)
out=$cache/$ver-$key
if [ -e "$out/root.img" ]; then echo "$out"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -e "$out/root.img" ]; then echo "$out"; exit 0; fi
work=$(mktemp -d "$cache/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

bash "$repo/testdata/kernel/build-kernel.sh" "$ver" "$work/vmlinux" >&2

# The image: the guest's root filesystem.
img=$work/image
mkdir -p "$img"/{bin,sbin,proc,sys,dev,tmp,etc,run,mnt}
cp "$bb" "$img/bin/busybox"
for a in sh mount umount cat cut ip udhcpc sleep seq echo ls sed grep hostname mkdir poweroff; do ln -s busybox "$img/bin/$a"; done
install -m 0755 "$here/sbin-init" "$img/sbin/init"
install -m 0755 "$here/udhcpc.sh" "$img/etc/udhcpc.sh"
echo "strata test image $key" >"$img/etc/strata-image"
"$mke2fs" -q -F -t ext2 -L strata-root -E root_owner=0:0 -d "$img" "$work/root.img" 16M >&2 # stdout carries only the result dir

# The initramfs: drivers, then switch_root to /dev/vda.
root=$work/root
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,etc,newroot}
cp "$bb" "$root/bin/busybox"
for a in sh mount umount cat insmod sleep seq echo mkdir switch_root poweroff; do ln -s busybox "$root/bin/$a"; done
: >"$root/etc/guest-modules"
for m in $modules; do
	modprobe -S "$ver" --show-depends "$m" | while read -r kind path _; do
		case $kind in
		insmod)
			copy_file "$root" "$path"
			grep -qxF "$path" "$root/etc/guest-modules" || echo "$path" >>"$root/etc/guest-modules"
			;;
		builtin) ;;
		*) echo "guest build: unexpected modprobe output for $m: $kind $path" >&2; exit 1 ;;
		esac
	done
done
install -m 0755 "$here/init" "$root/init"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -1 >"$work/initramfs.cpio.gz"

mkdir -p "$work/out"
mv "$work/vmlinux" "$work/initramfs.cpio.gz" "$work/root.img" "$work/out/"
mv "$work/out" "$out"
echo "guest build: $out" >&2
echo "$out"
