#!/bin/sh
# A stand-in for Bitnami's pgpool image (bitnami/pgpool, what the
# postgresql-ha chart runs), for the real node: it reads the same
# environment variables and follows the same file rules, written here from
# the image's documented behaviour, then runs the real pgpool-II of this
# image in the foreground.
#  - pgpool.conf is generated at every start: port PGPOOL_PORT_NUMBER
#    (5432), enable_pool_hba from PGPOOL_ENABLE_POOL_HBA (yes), backends
#    from PGPOOL_BACKEND_NODES (num:host:port,...); with PGPOOL_ENABLE_TLS=yes
#    ssl = on with PGPOOL_TLS_CERT_FILE, PGPOOL_TLS_KEY_FILE (both must
#    exist, or the container stops) and PGPOOL_TLS_CA_FILE when set;
#    PGPOOL_USER_CONF_FILE is appended.
#  - pool_hba.conf is generated (local trust; with a CA file, hostssl cert
#    lines for any address first; the replication-check user by password; the
#    admin user and everyone else with PGPOOL_AUTHENTICATION_METHOD), or
#    replaced by PGPOOL_USER_HBA_FILE.
#  - pool_passwd holds PGPOOL_POSTGRES_USERNAME/PASSWORD and the custom
#    users (as TEXT entries here; the image encrypts them).
set -eu
B=/opt/bitnami/pgpool
CONF=$B/conf/pgpool.conf
HBA=$B/conf/pool_hba.conf
mkdir -p "$B/conf" "$B/tmp" "$B/logs" "$B/etc"
yes() { case "$1" in yes | true | 1) return 0 ;; esac; return 1; }
onoff() { if yes "$1"; then echo on; else echo off; fi; }
: "${PGPOOL_PORT_NUMBER:=5432}" "${PGPOOL_ENABLE_POOL_HBA:=yes}" "${PGPOOL_ENABLE_POOL_PASSWD:=yes}"
: "${PGPOOL_ENABLE_TLS:=no}" "${PGPOOL_TLS_CA_FILE:=}" "${PGPOOL_TLS_PREFER_SERVER_CIPHERS:=yes}"
: "${PGPOOL_AUTHENTICATION_METHOD:=scram-sha-256}" "${PGPOOL_POSTGRES_USERNAME:=postgres}"
: "${PGPOOL_SR_CHECK_USER:=}" "${PGPOOL_SR_CHECK_PERIOD:=30}" "${PGPOOL_HEALTH_CHECK_PERIOD:=30}"
: "${PGPOOL_USER_CONF_FILE:=}" "${PGPOOL_USER_HBA_FILE:=}"
if yes "$PGPOOL_ENABLE_TLS"; then
	for f in "${PGPOOL_TLS_CERT_FILE:-}" "${PGPOOL_TLS_KEY_FILE:-}"; do
		[ -n "$f" ] && [ -f "$f" ] || { echo "pgpool: TLS is enabled but the file '$f' does not exist" >&2; exit 1; }
	done
	[ -z "$PGPOOL_TLS_CA_FILE" ] || [ -f "$PGPOOL_TLS_CA_FILE" ] || { echo "pgpool: the CA file $PGPOOL_TLS_CA_FILE does not exist" >&2; exit 1; }
	chmod 600 "$PGPOOL_TLS_KEY_FILE" 2>/dev/null || echo "pgpool: could not make $PGPOOL_TLS_KEY_FILE 0600" >&2
fi
{
	echo "listen_addresses = '*'"
	echo "port = $PGPOOL_PORT_NUMBER"
	echo "unix_socket_directories = '$B/tmp'"
	echo "pcp_socket_dir = '$B/tmp'"
	echo "pid_file_name = '$B/tmp/pgpool.pid'"
	echo "logdir = '$B/logs'"
	echo "backend_clustering_mode = 'streaming_replication'"
	echo "enable_pool_hba = '$(onoff "$PGPOOL_ENABLE_POOL_HBA")'"
	if yes "$PGPOOL_ENABLE_POOL_PASSWD"; then echo "pool_passwd = 'pool_passwd'"; else echo "pool_passwd = ''"; fi
	echo "sr_check_period = $PGPOOL_SR_CHECK_PERIOD"
	echo "sr_check_user = '$PGPOOL_SR_CHECK_USER'"
	echo "health_check_period = $PGPOOL_HEALTH_CHECK_PERIOD"
	echo "num_init_children = ${PGPOOL_NUM_INIT_CHILDREN:-32}"
	echo "max_pool = ${PGPOOL_MAX_POOL:-2}"
	echo "failover_on_backend_error = off"
	if yes "$PGPOOL_ENABLE_TLS"; then
		echo "ssl = on"
		if ! yes "$PGPOOL_TLS_PREFER_SERVER_CIPHERS"; then echo "ssl_prefer_server_ciphers = off"; fi
		if [ -n "$PGPOOL_TLS_CA_FILE" ]; then echo "ssl_ca_cert = '$PGPOOL_TLS_CA_FILE'"; fi
		echo "ssl_cert = '$PGPOOL_TLS_CERT_FILE'"
		echo "ssl_key = '$PGPOOL_TLS_KEY_FILE'"
	fi
	echo "${PGPOOL_BACKEND_NODES:-}" | tr ',;' '\n\n' | while IFS=: read -r num host port; do
		[ -n "$host" ] || continue
		echo "backend_hostname$num = '$host'"
		echo "backend_port$num = ${port:-5432}"
		echo "backend_weight$num = 1"
		echo "backend_flag$num = 'ALLOW_TO_FAILOVER'"
	done
	if [ -n "$PGPOOL_USER_CONF_FILE" ] && [ -f "$PGPOOL_USER_CONF_FILE" ]; then cat "$PGPOOL_USER_CONF_FILE"; fi
} >"$CONF"
if [ -n "$PGPOOL_USER_HBA_FILE" ] && [ -f "$PGPOOL_USER_HBA_FILE" ]; then
	cat "$PGPOOL_USER_HBA_FILE" >"$HBA"
else
	{
		echo "local    all    all                  trust"
		if [ -n "$PGPOOL_TLS_CA_FILE" ]; then
			echo "hostssl  all    all    0.0.0.0/0     cert"
			echo "hostssl  all    all    ::/0          cert"
		fi
		# The image never trusts these two users (scram-sha-256, or md5).
		users=scram-sha-256
		[ "$PGPOOL_AUTHENTICATION_METHOD" = md5 ] && users=md5
		if [ -n "$PGPOOL_SR_CHECK_USER" ]; then echo "host     all    $PGPOOL_SR_CHECK_USER    all    $users"; fi
		if yes "$PGPOOL_ENABLE_POOL_PASSWD"; then echo "host     all    $PGPOOL_POSTGRES_USERNAME    all    $users"; fi
		echo "host     all    all    all    $PGPOOL_AUTHENTICATION_METHOD"
	} >"$HBA"
fi
: >"$B/conf/pool_passwd"
if yes "$PGPOOL_ENABLE_POOL_PASSWD"; then
	echo "$PGPOOL_POSTGRES_USERNAME:TEXT${PGPOOL_POSTGRES_PASSWORD:-}" >>"$B/conf/pool_passwd"
	if [ -n "$PGPOOL_SR_CHECK_USER" ]; then echo "$PGPOOL_SR_CHECK_USER:TEXT${PGPOOL_SR_CHECK_PASSWORD:-}" >>"$B/conf/pool_passwd"; fi
fi
chmod 0600 "$B/conf/pool_passwd"
: >"$B/etc/pcp.conf"
exec pgpool -n -f "$CONF" -a "$HBA" -F "$B/etc/pcp.conf"
