#!/bin/sh
# strata-agent preinst / %pre: each tenant network's dnsmasq drops to the
# system user "strata-dnsmasq" (never root). Idempotent; runs on install
# and upgrade alike.
set -e
if ! getent passwd strata-dnsmasq >/dev/null; then
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	useradd --system --user-group --home-dir / --no-create-home \
		--shell "$nologin" --comment "Strata dnsmasq (tenant DHCP and DNS)" strata-dnsmasq
fi
exit 0
