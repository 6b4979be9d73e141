#!/usr/bin/env bash
# Runs a command with KUBECTL_PGPOOL_KUBECONFIG pointing to the local cluster.
# If the cluster is not up, starts it first and stops it afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
started=0
if ! "$ROOT/hack/cluster.sh" status >/dev/null 2>&1; then
	started=1
	trap '"$ROOT/hack/cluster.sh" down' EXIT
fi
"$ROOT/hack/cluster.sh" up >/dev/null
# The tests that roll a PetSet start their own PetSet controller, and the
# others must have none: stop the one `make cluster-up` started.
"$ROOT/hack/cluster.sh" petset-down
# shellcheck source=/dev/null
. "${CLUSTER_DIR:-$ROOT/.cluster}/env"
[ $started = 1 ] || echo "using the running local cluster ($KUBECONFIG)" >&2
KUBECTL_PGPOOL_KUBECONFIG="$KUBECONFIG" "$@"
