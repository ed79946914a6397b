# apt.sh: sourced by every subsystem's testdeps.sh / deps.sh.
#
# apt_install_missing LABEL PKG...  installs the packages not yet installed,
# non-interactively, waiting for another job's dpkg lock rather than
# failing, with a policy-rc.d in place so that package scripts start no
# daemon on this machine (dnsmasq, openvswitch, libvirtd: the tests start
# their own, by PID). Does nothing, and says so, when all are installed.
apt_install_missing() {
	local label=$1 p policy=/usr/sbin/policy-rc.d made=0
	shift
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		echo "$label: all installed"
		return 0
	fi
	echo "$label: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	local opts=(-y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
	apt-get "${opts[@]}" update
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod +x "$policy"
		made=1
	fi
	local rc=0
	apt-get "${opts[@]}" install --no-install-recommends "${missing[@]}" || rc=$?
	[ "$made" = 1 ] && rm -f "$policy"
	return "$rc"
}
