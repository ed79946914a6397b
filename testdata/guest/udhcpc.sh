#!/bin/sh
# Applies a udhcpc lease with busybox ip and logs it on the console.
case "$1" in
bound|renew)
	ip addr flush dev "$interface" scope global
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	echo "strata-guest: lease $ip on $interface $(cut -d' ' -f1 /proc/uptime)s" >/dev/console
	;;
esac
exit 0
