#!/usr/bin/env bash
# build.sh [CACHE]  (CACHE defaults to <repo>/build/guest)
# Builds Strata's test guest from Debian packages and prints the directory
# holding it: vmlinux (Debian's kernel uncompressed by
# testdata/kernel/build-kernel.sh, so that TCG skips ~4 s of decompression)
# and initramfs.cpio.gz (busybox-static, the virtio NIC and disk modules,
# this directory's init and udhcpc.sh). The directory is named by a hash of
# every input, so a kernel or busybox upgrade or an edit here rebuilds it.
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
modules="virtio_pci virtio_net virtio_blk"

key=$( {
	echo "$ver $modules"
	stat -Lc '%n %s %Y' "/boot/vmlinuz-$ver" "$bb"
	cat "$here/build.sh" "$here/init" "$here/udhcpc.sh" "$repo/testdata/kernel/build-kernel.sh"
} | sha256sum | cut -c1-16)
out=$cache/$ver-$key
if [ -e "$out/initramfs.cpio.gz" ]; then echo "$out"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -e "$out/initramfs.cpio.gz" ]; then echo "$out"; exit 0; fi
work=$(mktemp -d "$cache/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

bash "$repo/testdata/kernel/build-kernel.sh" "$ver" "$work/vmlinux" >&2

root=$work/root
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,etc}
cp "$bb" "$root/bin/busybox"
for a in sh mount cat cut ip udhcpc insmod sleep seq echo ls; do ln -s busybox "$root/bin/$a"; done
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
install -m 0755 "$here/udhcpc.sh" "$root/etc/udhcpc.sh"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -1 >"$work/initramfs.cpio.gz"

mkdir -p "$work/out"
mv "$work/vmlinux" "$work/initramfs.cpio.gz" "$work/out/"
mv "$work/out" "$out"
echo "guest build: $out" >&2
echo "$out"
