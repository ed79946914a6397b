#!/bin/sh
# strata-coordinator preinst / %pre: the service runs as the system user
# "strata". Idempotent; runs on install and upgrade alike.
set -e
if ! getent passwd strata >/dev/null; then
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	useradd --system --user-group --home-dir /var/lib/strata --no-create-home \
		--shell "$nologin" --comment "Strata coordinator" strata
fi
exit 0
