#!/bin/sh
# Prints the package version derived from git, one that sorts upward with
# every commit for both dpkg and rpm:
#   on tag v1.2.3                 -> 1.2.3
#   5 commits after tag v1.2.3    -> 1.2.3+git5.gabc1234
#   no tag (22 commits in total)  -> 0.0.0+git22.gabc1234
#   uncommitted changes           -> ... with ".dirty" appended
# dpkg and rpm both order "1.2.3+git5" after "1.2.3"; no "-", which both
# formats reserve for the release.
set -eu
cd "$(dirname "$0")/.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo 0.0.0+unknown
	exit 0
fi
sha=$(git rev-parse --short=7 HEAD)
if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
	base=${tag#v}
	n=$(git rev-list --count "$tag"..HEAD)
else
	base=0.0.0
	n=$(git rev-list --count HEAD)
fi
v=$base
[ "$n" -gt 0 ] || [ "$base" = 0.0.0 ] && v="$base+git$n.g$sha"
git diff --quiet HEAD -- 2>/dev/null || v="$v.dirty"
echo "$v"
