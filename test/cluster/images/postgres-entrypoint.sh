#!/bin/sh
# The pgpool pod's PostgreSQL backend (a second container): a fresh cluster
# in /var/lib/postgresql/data (an emptyDir), listening on the pod's
# 127.0.0.1:5432 and trusting logins from there (pgpool logs in itself).
set -eu
BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
D=/var/lib/postgresql/data/pg
if [ ! -f "$D/PG_VERSION" ]; then
	"$BIN/initdb" -D "$D" -U postgres --auth=trust >/dev/null
fi
exec "$BIN/postgres" -D "$D" -c listen_addresses=127.0.0.1 -c port=5432 -c unix_socket_directories=/tmp
