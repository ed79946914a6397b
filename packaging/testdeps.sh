#!/usr/bin/env bash
# Installs what the packaging tests need: lintian (deb lint), rpm and
# rpmlint (rpm scriptlets and lint), debootstrap (the Debian 12 chroot of
# TestDebInstallUpgradeRemove), ansible-core and ansible-lint (role and
# playbook checks), dpkg-dev (dpkg-scanpackages for the rolling upgrade's
# apt repository), systemd (for systemd-analyze only: installing it on a
# machine where systemd is not PID 1 starts nothing), and the nfpm binary
# into $(go env GOPATH)/bin. Idempotent: a second run installs nothing.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
export DEBIAN_FRONTEND=noninteractive
NFPM_VERSION=v2.45.2

pkgs=(lintian rpm rpmlint debootstrap dpkg-dev ansible-core ansible-lint systemd)
. "$(dirname "$0")/../testdata/apt.sh"
apt_install_missing "packaging deps" "${pkgs[@]}"

gobin="$(go env GOPATH)/bin"
if ! "$gobin/nfpm" --version 2>/dev/null | grep -q "${NFPM_VERSION#v}"; then
	echo "packaging deps: go install nfpm ${NFPM_VERSION}"
	GOFLAGS=-mod=mod go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@${NFPM_VERSION}"
fi
echo "packaging deps: done (nfpm at $gobin/nfpm)"
