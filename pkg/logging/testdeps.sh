#!/usr/bin/env bash
# Installs what pkg/logging's journald test needs: systemd (systemd-journald
# and journalctl; installing it where systemd is not PID 1 starts nothing)
# and util-linux (unshare, for the journald's private mount namespace).
set -euo pipefail
. "$(dirname "$0")/../../testdata/apt.sh"
apt_install_missing "logging test deps" systemd util-linux
