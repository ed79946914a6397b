#!/usr/bin/env bash
# build-initramfs.sh -k VERSION -o OUT [-m "MODULE ..."] [-l "MODULE ..."]
#                    [-t "TOOL ..."] [-f "FILE ..."]
# Builds the guest's base initramfs (an uncompressed newc cpio): busybox with
# its applet links, the /init from this directory, the kernel modules named
# with -m and their dependencies (/init loads crc32c_generic, the virtio NIC
# drivers and the modules named with -l at boot; tests modprobe the rest),
# the host tools named with -t (a name found
# in PATH or an absolute path) with their shared libraries, and any extra
# data files named with -f. The test binary is packed separately by
# pack-test.sh and concatenated, so this archive can be cached.
set -euo pipefail
# Some tools (modprobe, depmod, dmsetup) live in sbin, which a CI PATH may lack.
export PATH="$PATH:/usr/sbin:/usr/bin:/sbin:/bin"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

ver= out= modules= preload= tools= files=
while getopts k:o:m:l:t:f: opt; do
	case $opt in
	k) ver=$OPTARG ;;
	o) out=$OPTARG ;;
	m) modules=$OPTARG ;;
	l) preload=$OPTARG ;;
	t) tools=$OPTARG ;;
	f) files=$OPTARG ;;
	*) exit 2 ;;
	esac
done
[ -n "$ver" ] && [ -n "$out" ] || { echo "usage: $0 -k VERSION -o OUT [-m MODULES] [-l MODULES] [-t TOOLS] [-f FILES]" >&2; exit 2; }
[ -d "/lib/modules/$ver" ] || { echo "build-initramfs: /lib/modules/$ver not found" >&2; exit 1; }

root=$(mktemp -d "${TMPDIR:-/tmp}/strata-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,test,var/log}
ln -s /run "$root/var/run" # ip netns keeps its mounts in /var/run/netns

# Real tools first, so that busybox applets never shadow them (busybox has
# its own ip, losetup, modprobe...).
for t in $tools; do
	case $t in
	/*) p=$t ;;
	*) p=$(command -v "$t" 2>/dev/null) || { echo "build-initramfs: tool $t not found in PATH" >&2; exit 1; } ;;
	esac
	add_binary "$root" "$(readlink -f "$p")"
	# Keep the name the tool is called by when it is a symlink on the host.
	if [ "$(readlink -f "$p")" != "$p" ]; then
		mkdir -p "$root$(dirname "$p")"
		[ -e "$root$p" ] || ln -s "$(readlink -f "$p")" "$root$p"
	fi
done
for f in $files; do
	copy_file "$root" "$f"
done

bb=$(command -v busybox) || { echo "build-initramfs: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$bb" >/dev/null 2>&1; then
	echo "build-initramfs: $bb is dynamic; install busybox-static" >&2
	exit 1
fi
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list-full); do
	# Skip applets whose name a real tool already has anywhere in PATH.
	name=${applet##*/}
	skip=0
	for d in bin sbin usr/bin usr/sbin; do
		[ -e "$root/$d/$name" ] && skip=1
	done
	[ "$skip" = 1 ] || [ -e "$root/$applet" ] || { mkdir -p "$root/$(dirname "$applet")"; ln -s /bin/busybox "$root/$applet"; }
done

# The guest's own needs: crc32c for libcrc32c, the virtio NIC.
boot_modules="virtio_pci virtio_net $preload"
modules="crc32c_generic $boot_modules $modules"

# Modules and everything they depend on, at their host paths, then depmod
# inside the tree so that modprobe in the guest finds them.
for m in $modules; do
	modprobe -S "$ver" --show-depends "$m" | while read -r kind path _; do
		case $kind in
		insmod) copy_file "$root" "$path" ;;
		builtin) ;;
		*) echo "build-initramfs: unexpected modprobe output for $m: $kind $path" >&2; exit 1 ;;
		esac
	done
done
mkdir -p "$root/lib/modules/$ver"
for f in modules.order modules.builtin modules.builtin.modinfo; do
	[ -e "/lib/modules/$ver/$f" ] && cp "/lib/modules/$ver/$f" "$root/lib/modules/$ver/"
done
depmod -b "$root" "$ver"

install -m 0755 "$here/init" "$root/init"
echo "$ver" >"$root/etc/kerneltest-version"
echo "$boot_modules" >"$root/etc/kerneltest-modules"

tmp=$(mktemp "$out.XXXXXX")
pack_cpio "$root" "$tmp"
chmod 0644 "$tmp"
mv "$tmp" "$out"
echo "build-initramfs: $out ($(du -h "$out" | cut -f1)), kernel $ver, modules: $modules"
