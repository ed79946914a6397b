#!/usr/bin/env bash
# Installs everything the build, the lab and the test suite need on a fresh
# Debian 12 machine (as root), then fetches the Go modules. Each subsystem
# keeps its own list in a testdeps.sh (or testdata/*/deps.sh) beside its
# code; this runs all of them. Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
export DEBIAN_FRONTEND=noninteractive

command -v go >/dev/null || { echo "deps: Go 1.26 or newer is required at /usr/local/go/bin" >&2; exit 1; }

base=(iproute2 git make ca-certificates)
missing=()
for p in "${base[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi

shopt -s nullglob
for s in agent/*/testdeps.sh agent/*/*/testdeps.sh agent/*/*/*/testdeps.sh coordinator/*/testdeps.sh pkg/*/testdeps.sh lab/testdeps.sh internal/*/testdeps.sh packaging/testdeps.sh testdata/*/deps.sh; do
	[ -f "$s" ] || continue # a literal name (no wildcard) that is absent
	echo "deps: $s"
	bash "$s"
done

go mod download
echo "deps: done"
