#!/usr/bin/env bash
# The main job on the local cluster: a KubeDB-layout pgpool with 3 replicas and
# the seed's issuers in namespace demo, then tls add (sslMode require,
# clientAuthMode cert), rotate, change-issuer and remove, with live progress.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export KUBECONFIG="$("$ROOT/hack/cluster.sh" up | tail -n 1)"
BIN="$(cat "$ROOT/.cluster/bin-dir")"
K="$BIN/kubectl"
P="$ROOT/bin/kubectl-pgpool"
if [ -t 2 ]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
step() { printf '\n%s$ %s%s\n' "$B" "$*" "$N" >&2; "$@"; }

if $K get namespace demo >/dev/null 2>&1; then
	echo "deleting the namespace demo of an earlier demo" >&2
	$K delete namespace demo --wait=true >/dev/null
fi
$K create namespace demo >/dev/null
$K wait -n demo --for=jsonpath='{.metadata.name}'=default serviceaccount/default --timeout=60s >/dev/null 2>&1 ||
	$K wait -n demo --for=create serviceaccount/default --timeout=60s >/dev/null
step $K apply -n demo -f "$ROOT/test/fixtures/issuers.yaml"
step $K apply -n demo -f "$ROOT/test/fixtures/kubedb.yaml"
step $K wait -n demo --for=condition=Ready issuer/pgpool-issuer issuer/pp-new-issuer --timeout=120s
step $K wait -n demo --for=jsonpath='{.status.readyReplicas}'=3 statefulset/pgpool --timeout=120s

step "$P" tls add pgpool -n demo --issuer pgpool-issuer --ssl-mode require --client-auth-mode cert \
	--client-org pgpool --client-ou client --yes
step "$P" tls status pgpool -n demo
step $K get secret -n demo pgpool-config -o jsonpath='{.data.pgpool\.conf}' | base64 -d | grep '^ssl'
step "$P" tls rotate pgpool -n demo --yes
step "$P" tls change-issuer pgpool -n demo --issuer pp-new-issuer --yes
step "$P" tls status pgpool -n demo
step "$P" tls remove pgpool -n demo --yes
step "$P" tls status pgpool -n demo
printf '\nThe cluster is still up: export KUBECONFIG=%s (make cluster-down stops it)\n' "$KUBECONFIG" >&2
