#!/usr/bin/env bash
# pack-test.sh TESTBIN OUT [FILE ...]
# Packs a compiled Go test binary as /test/test.bin (with its shared
# libraries, if it is dynamic) plus the given files (copied into /test/ by
# base name: args, env) into an uncompressed cpio archive. The runner
# concatenates it after the cached base archive from build-initramfs.sh.
set -euo pipefail
# Some tools (modprobe, depmod, dmsetup) live in sbin, which a CI PATH may lack.
export PATH="$PATH:/usr/sbin:/usr/bin:/sbin:/bin"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

bin=${1:?usage: pack-test.sh TESTBIN OUT [FILE ...]}
out=${2:?usage: pack-test.sh TESTBIN OUT [FILE ...]}
shift 2

root=$(mktemp -d "${TMPDIR:-/tmp}/strata-testpack.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/test"
cp -L "$bin" "$root/test/test.bin"
add_libs "$root" "$bin"
for f in "$@"; do
	cp "$f" "$root/test/$(basename "$f")"
done
pack_cpio "$root" "$out"
