#!/usr/bin/env bash
# The main job on the local cluster's real node: a KubeDB pgpool with 3
# replicas as KubeDB runs it (a PetSet owned by a Pgpool object; real
# pgpool-II pods with a PostgreSQL backend that serves TLS from its own CA)
# and the seed's issuers in namespace demo, then tls add (sslMode
# require, clientAuthMode cert, the backend's CA trusted) and a psql login with the client certificate through
# `kubectl port-forward`, as the seed does; then rotate, change-issuer and
# remove, each with live progress.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export REAL_NODE=1 PETSET=1
"$ROOT/hack/cluster.sh" up >/dev/null
# shellcheck source=/dev/null
. "${CLUSTER_DIR:-$ROOT/.cluster}/env"
export KUBECONFIG
K="$BIN_DIR/kubectl"
P="$ROOT/bin/kubectl-pgpool"
if [ -t 2 ]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
step() { printf '\n%s$ %s%s\n' "$B" "$*" "$N" >&2; "$@"; }
WORK="$(mktemp -d)"
PF=""
cleanup() { [ -n "$PF" ] && kill "$PF" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

if $K get namespace demo >/dev/null 2>&1; then
	echo "deleting the namespace demo of an earlier demo" >&2
	$K delete namespace demo --wait=true >/dev/null
fi
$K create namespace demo >/dev/null
$K wait -n demo --for=create serviceaccount/default --timeout=60s >/dev/null
step $K apply -n demo -f "$ROOT/test/fixtures/issuers.yaml"
step $K apply -n demo -f "$ROOT/test/fixtures/backend-tls.yaml"
step $K wait -n demo --for=condition=Ready certificate/pgpool-backend-cert --timeout=120s
# As KubeDB runs it: KubeDB's Pgpool API (its CRD, AppBinding's, and the
# admission policy), the pgpool as a PetSet (rolled by the PetSet
# controller `make cluster-up` started) with its PodDisruptionBudget as
# KubeDB writes it (minAvailable: a PetSet has no scale subresource for
# maxUnavailable), and a Pgpool object that controls the PetSet and its
# config Secret.
step $K apply --server-side -f "$ROOT/test/fixtures/kubedb-pgpool-crd.yaml" >/dev/null
# (`kubectl wait --for=condition=Established` fails at once on a CRD that
# has no status yet: poll, with a deadline.)
for crd in pgpools.kubedb.com petsets.apps.k8s.appscode.com; do
	for i in $(seq 240); do
		[ "$($K get crd "$crd" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ] && break
		[ "$i" = 240 ] && { echo "CRD $crd was not established in 60s" >&2; exit 1; }
		sleep 0.25
	done
done
awk '/^apiVersion: apps\/v1$/ {held = $0; next}
	held != "" && /^kind: StatefulSet$/ {print "apiVersion: apps.k8s.appscode.com/v1"; print "kind: PetSet"; held = ""; next}
	held != "" {print held; held = ""}
	/^  maxUnavailable: 1$/ {print "  minAvailable: 2"; next}
	{print}' "$ROOT/test/fixtures/kubedb-real.yaml" >"$WORK/kubedb-petset.yaml"
step $K apply -n demo -f "$WORK/kubedb-petset.yaml"
cat >"$WORK/pgpool.yaml" <<'PG'
apiVersion: kubedb.com/v1alpha2
kind: Pgpool
metadata: {name: pgpool}
spec: {version: 4.5.0, replicas: 3, deletionPolicy: WipeOut, postgresRef: {name: ha-postgres, namespace: demo}}
PG
step $K apply -n demo -f "$WORK/pgpool.yaml"
UID_="$($K get pgpool.kubedb.com -n demo pgpool -o jsonpath='{.metadata.uid}')"
OWNER='{"metadata":{"ownerReferences":[{"apiVersion":"kubedb.com/v1alpha2","kind":"Pgpool","name":"pgpool","uid":"'"$UID_"'","controller":true}]}}'
step $K patch -n demo petset.apps.k8s.appscode.com/pgpool --type=merge -p "$OWNER"
step $K patch -n demo secret/pgpool-config --type=merge -p "$OWNER"
step $K wait -n demo --for=condition=Ready issuer/pgpool-issuer issuer/pp-new-issuer --timeout=120s
step $K wait -n demo --for=jsonpath='{.status.readyReplicas}'=3 petset.apps.k8s.appscode.com/pgpool --timeout=180s

step "$P" tls add pgpool -n demo --issuer pgpool-issuer --ssl-mode require --client-auth-mode cert \
	--client-org pgpool --client-ou client --backend-ca secret/pgpool-backend-cert --yes
step $K exec -n demo pgpool-0 -c pgpool -- grep '^ssl' /opt/pgpool-II/etc/pgpool.conf

# As the seed: save the client certificate, port-forward, connect with psql.
$K get secret -n demo pgpool-client-cert -o jsonpath='{.data.tls\.crt}' | base64 -d >"$WORK/client.crt"
$K get secret -n demo pgpool-client-cert -o jsonpath='{.data.tls\.key}' | base64 -d >"$WORK/client.key"
$K get secret -n demo pgpool-server-cert -o jsonpath='{.data.ca\.crt}' | base64 -d >"$WORK/ca.crt"
chmod 0600 "$WORK/client.key"
$K port-forward -n demo --address 127.0.0.1 svc/pgpool 0:9999 >"$WORK/pf.log" 2>&1 &
PF=$!
for _ in $(seq 100); do grep -q Forwarding "$WORK/pf.log" && break; sleep 0.1; done
PORT="$(sed -n 's/Forwarding from 127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/pf.log" | head -n 1)"
step psql "sslmode=verify-ca port=$PORT host=localhost dbname=postgres user=postgres sslrootcert=$WORK/ca.crt sslcert=$WORK/client.crt sslkey=$WORK/client.key" \
	-c "select 'logged in with the client certificate, no password' as result"
kill "$PF" 2>/dev/null || true
PF=""

step "$P" tls rotate pgpool -n demo --yes
step $K exec -n demo pgpool-0 -c pgpool -- openssl x509 -in /opt/pgpool-II/tls/tls.crt -enddate -noout
step "$P" tls change-issuer pgpool -n demo --issuer pp-new-issuer --yes
step $K exec -n demo pgpool-0 -c pgpool -- openssl x509 -in /opt/pgpool-II/tls/ca.pem -subject -nameopt RFC2253 -noout
step "$P" tls status pgpool -n demo
step "$P" tls remove pgpool -n demo --yes
step $K exec -n demo pgpool-0 -c pgpool -- grep '^ssl' /opt/pgpool-II/etc/pgpool.conf
# What the demo leaves running, and how to remove it: its 3 real pgpool
# pods (with 1-second exec probes) and the backend slow down whatever runs
# on this machine next, benchmarks included.
{
	printf '\nLeft running:\n'
	printf '  the local cluster (%s): etcd, kube-apiserver, controllers, cert-manager, kwok,\n' "$(dirname "$KUBECONFIG")"
	printf '    containerd, the kubelet and kube-proxy of the real node\n'
	printf '  namespace demo: %s\n' "$($K get pods -n demo --no-headers -o custom-columns=:metadata.name | tr '\n' ' ')"
	printf 'Use it:       export KUBECONFIG=%s\n' "$KUBECONFIG"
	printf 'Remove demo:  KUBECONFIG=%s %s delete namespace demo\n' "$KUBECONFIG" "$K"
	printf 'Stop it all:  make cluster-down\n'
} >&2
