#!/bin/sh
# Entrypoint of kubectl-pgpool/pgpool:local, as KubeDB's and pgpool2_on_k8s's
# images do it: copy the mounted config and TLS files into pgpool's own
# directories, then run pgpool in the foreground as the (non-root) user.
set -eu
ETC=/opt/pgpool-II/etc
TLS=/opt/pgpool-II/tls
mkdir -p "$ETC" "$TLS"
cp /config/pgpool.conf /config/pool_hba.conf "$ETC/"
[ -f /config/pool_passwd ] && cp /config/pool_passwd "$ETC/pool_passwd" && chmod 0600 "$ETC/pool_passwd"
: >"$ETC/pcp.conf"
rm -f "$TLS"/*
if [ -d /config/tls ]; then
	for f in /config/tls/*; do
		[ -e "$f" ] && cp "$f" "$TLS/"
	done
	[ -f "$TLS/tls.key" ] && chmod 0600 "$TLS/tls.key"
fi
exec pgpool -n -f "$ETC/pgpool.conf" -a "$ETC/pool_hba.conf" -F "$ETC/pcp.conf"
