#!/usr/bin/env bash
# Builds strata-agent, strata-coordinator and stratactl as .deb and .rpm
# into OUT (default build/packages): six files.
#   packaging/build.sh [OUT]
# VERSION (default: packaging/version.sh, from git) is both the package
# version and the version the binaries report (version.Version). NFPM names
# the nfpm binary (default: on PATH, else $(go env GOPATH)/bin/nfpm).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export PATH=/usr/local/go/bin:$PATH
out=$(mkdir -p "${1:-$repo/build/packages}" && cd "${1:-$repo/build/packages}" && pwd)
export VERSION=${VERSION:-$("$repo/packaging/version.sh")}
export ARCH=${ARCH:-$(go env GOARCH)}
export REPO=$repo
nfpm=${NFPM:-$(command -v nfpm || echo "$(go env GOPATH)/bin/nfpm")}
[ -x "$nfpm" ] || { echo "build.sh: nfpm not found; run packaging/testdeps.sh" >&2; exit 1; }

# Only this build's six files end up in OUT.
rm -f "$out"/strata-agent[_-]*.deb "$out"/strata-agent-*.rpm "$out"/strata-coordinator[_-]*.deb \
	"$out"/strata-coordinator-*.rpm "$out"/stratactl[_-]*.deb "$out"/stratactl-*.rpm
stage=$out/.stage
rm -rf "$stage"
mkdir -p "$stage/bin"
(cd "$repo" && CGO_ENABLED=${CGO_ENABLED:-1} GOARCH=$ARCH go build -tags "${GOTAGS-pacific}" -trimpath -buildmode=pie \
	-ldflags "-s -w -X github.com/strata-infra/strata/pkg/version.Version=$VERSION" \
	-o "$stage/bin/" ./agent/cmd/strata-agent ./agent/cmd/strata-rbd ./coordinator/cmd/strata-coordinator ./coordinator/cmd/stratactl)

# Man pages and shell completions from the binaries' own cobra commands
# (hidden gen-docs), dated by the commit for reproducible packages. A
# cross build makes them with a host build of the same source.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(cd "$repo" && git log -1 --format=%ct 2>/dev/null || date +%s)}
docbin=$stage/bin
if [ "$ARCH" != "$(go env GOHOSTARCH)" ]; then
	docbin=$stage/hostbin
	(cd "$repo" && go build -tags "${GOTAGS-pacific}" -o "$docbin/" ./agent/cmd/strata-agent ./coordinator/cmd/strata-coordinator ./coordinator/cmd/stratactl)
fi
for b in strata-agent:8 strata-coordinator:8 stratactl:1; do
	"$docbin/${b%:*}" gen-docs --man-dir "$stage/man/${b%:*}" --completion-dir "$stage/completions/${b%:*}"
	gzip -9n "$stage/man/${b%:*}"/*."${b#*:}"
done
rm -rf "$stage/hostbin"

# render PKG UNIT PURGE_WHAT PURGE: the maintainer scripts of one package
# from the templates, for both formats.
render() {
	local pkg=$1 unit=$2 what=$3 purge=$4 d=$stage/scripts/$1 f
	mkdir -p "$d"
	for f in deb/postinst deb/prerm deb/postrm rpm/post rpm/preun rpm/postun; do
		sed -e "s|@PKG@|$pkg|g" -e "s|@UNIT@|$unit|g" -e "s|@PURGE_WHAT@|$what|g" \
			-e "s|^@PURGE@\$|$purge|" "$repo/packaging/scripts/$f.in" >"$d/$(basename "$f")"
		chmod 0755 "$d/$(basename "$f")"
	done
}
render strata-agent strata-agent.service "the agent state" \
	'	rm -rf /var/lib/strata/agent'
render strata-coordinator strata-coordinator.service "nothing else: the cluster store stays" \
	'	echo "strata-coordinator: the cluster store in /var/lib/strata/coordinator is kept" >\&2'
cp "$repo/packaging/scripts/coordinator-user.sh" "$stage/scripts/strata-coordinator/preinst"
cp "$repo/packaging/scripts/agent-user.sh" "$stage/scripts/strata-agent/preinst"

# The changelog, in nfpm's (chglog) format, which it renders as
# changelog.Debian.gz and as the rpm %changelog: one entry for this build
# and one per earlier release tag (v*), newest first, each listing the
# commits it brought. Outside a git checkout, one entry says so.
git_changelog() {
	local refs=() i from to ver
	mapfile -t refs < <(git tag --list 'v[0-9]*' --sort=-creatordate)
	refs=(HEAD "${refs[@]}")
	for ((i = 0; i < ${#refs[@]}; i++)); do
		to=${refs[$i]} from=${refs[$((i + 1))]:-}
		ver=$VERSION
		[ "$to" = HEAD ] || ver=${to#v}
		# HEAD on a tag: that release's entry is this build's.
		[ "$to" != HEAD ] || [ -z "$from" ] || [ -n "$(git rev-list "$from..HEAD")" ] || continue
		printf -- '- semver: %s-1\n  date: %s\n' "$ver" "$(git log -1 --format=%cI "$to")"
		printf '  packager: Strata maintainers <strata@example.org>\n'
		printf '  deb:\n    urgency: medium\n    distributions: [unstable]\n  changes:\n'
		# Subjects as YAML single-quoted strings, cut at a word to fit a
		# changelog line (a cut word reads as a misspelling to lintian).
		git log --no-merges --format='%h %s' ${from:+"$from.."}"$to" |
			awk '{ h = $1; $1 = ""; s = substr($0, 2); if (length(s) > 72) { s = substr(s, 1, 70); sub(/ [^ ]*$/, "", s); s = s "..." }
				gsub(/\x27/, "\x27\x27", s); printf "    - commit: %s\n      note: \x27%s\x27\n", h, s }'
	done
}
if (cd "$repo" && git rev-parse --git-dir >/dev/null 2>&1); then
	(cd "$repo" && git_changelog) >"$stage/changelog.yml"
else
	cat >"$stage/changelog.yml" <<YAML
- semver: $VERSION-1
  date: $(date -u +%Y-%m-%dT%H:%M:%SZ)
  packager: Strata maintainers <strata@example.org>
  deb:
    urgency: medium
    distributions: [unstable]
  changes:
    - note: Built outside a git checkout; no history.
YAML
fi

for pkg in strata-agent strata-coordinator stratactl; do
	d=$stage/doc/$pkg
	mkdir -p "$d"
	cp "$repo/packaging/copyright" "$d/copyright"
	for fmt in deb rpm; do
		(cd "$stage" && "$nfpm" package --config "$repo/packaging/nfpm/$pkg.yaml" --packager "$fmt" --target "$out/" >/dev/null)
	done
done
rm -rf "$stage"
ls -1 "$out"
