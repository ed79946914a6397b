# lib.sh: helpers shared by build-initramfs.sh and pack-test.sh. Source it.

# copy_file ROOT PATH: copy PATH (following symlinks) to ROOT/PATH.
copy_file() {
	local root=$1 path=$2
	[ -e "$root$path" ] && return 0
	mkdir -p "$root$(dirname "$path")"
	cp -L "$path" "$root$path"
}

# add_binary ROOT PATH: copy an executable and every shared library that ldd
# lists for it to the same paths under ROOT.
add_binary() {
	[ -x "$2" ] || { echo "add_binary: $2 is not an executable" >&2; return 1; }
	copy_file "$1" "$2"
	add_libs "$1" "$2"
}

# add_libs ROOT PATH: copy every shared library that ldd lists for PATH (the
# dynamic loader included) to the same paths under ROOT. A static binary has
# none.
add_libs() {
	local root=$1 bin=$2 lib
	# ldd prints "name => /path (addr)" and "/lib64/ld-linux-x86-64.so.2 (addr)";
	# take every field that is an absolute path. A static binary makes ldd
	# exit 1 ("not a dynamic executable"): nothing more to copy.
	for lib in $(ldd "$bin" 2>/dev/null | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i}'); do
		copy_file "$root" "$lib"
	done
}

# pack_cpio ROOT OUT: write ROOT as an uncompressed newc cpio archive. The
# kernel accepts several archives concatenated into one initrd.
pack_cpio() {
	local root=$1 out=$2
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$out"
}
