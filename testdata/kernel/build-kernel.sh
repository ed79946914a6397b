#!/usr/bin/env bash
# build-kernel.sh VERSION OUT
# Extracts the uncompressed ELF vmlinux from Debian's /boot/vmlinuz-VERSION
# (an xz-compressed bzImage). Booting the ELF directly under TCG skips the
# in-guest decompression, which costs ~4 s per boot.
set -euo pipefail
# Some tools (modprobe, depmod, dmsetup) live in sbin, which a CI PATH may lack.
export PATH="$PATH:/usr/sbin:/usr/bin:/sbin:/bin"

ver=${1:?usage: build-kernel.sh VERSION OUT}
out=${2:?usage: build-kernel.sh VERSION OUT}
src=/boot/vmlinuz-$ver
[ -r "$src" ] || { echo "build-kernel: $src not found (apt-get install linux-image-amd64)" >&2; exit 1; }

# The payload starts at the xz stream magic FD 37 7A 58 5A 00.
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$src" | head -n1 | cut -d: -f1)
[ -n "$off" ] || { echo "build-kernel: no xz stream in $src" >&2; exit 1; }

tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# xz exits 1 complaining about the trailing data after the stream; the
# ELF check below is what tells us the extraction worked.
tail -c +"$((off + 1))" "$src" | xz -dc >"$tmp" 2>/dev/null || true
if [ "$(head -c 4 "$tmp" | od -An -c | tr -d ' ')" != '177ELF' ]; then
	echo "build-kernel: extracted image from $src is not an ELF file" >&2
	exit 1
fi
chmod 0644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "build-kernel: $out ($(du -h "$out" | cut -f1)) from $src"
