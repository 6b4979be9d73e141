#!/usr/bin/env bash
# Builds the local test cluster's helper binaries from their own Go modules
# under test/cluster/ and caches them in ~/.cache/kubectl-pgpool/bin/<key>/,
# where <key> is derived from the versions and sources of those modules.
# Prints the directory of the binaries on its last line.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${KUBECTL_PGPOOL_CACHE:-$HOME/.cache/kubectl-pgpool}"
K8S_VERSION=v1.37.2
KEY="$( (go version; cat "$ROOT"/test/cluster/*/go.mod "$ROOT"/test/cluster/*/go.sum \
	"$ROOT"/test/cluster/*/*.go "$ROOT"/test/cluster/kube/cmd/*/*.go "$ROOT"/test/cluster/certmanager/testdata/*/*.go \
	"$0") | sha256sum | cut -c1-16)"
OUT="$CACHE/bin/$KEY"
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok cert-manager-controller cert-manager-webhook)
[ "${REAL_NODE:-}" = 1 ] && want+=(kubelet kube-proxy)
missing=()
for b in "${want[@]}"; do [ -x "$OUT/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then
	echo "cluster binaries: cached in $OUT" >&2
	echo "$OUT"; exit 0
fi
mkdir -p "$OUT"
ts() { date +%H:%M:%S; }
build() { # name dir pkg [ldflags]
	local name=$1 dir=$2 pkg=$3 ld=${4:-}
	[ -x "$OUT/$name" ] && return 0
	local t0=$SECONDS
	echo "$(ts) building $name (first build of the cluster takes about 10 minutes on 2 cores)..." >&2
	(cd "$ROOT/test/cluster/$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ld" -o "$OUT/$name.tmp" "$pkg")
	mv "$OUT/$name.tmp" "$OUT/$name"
	echo "$(ts) built $name in $((SECONDS - t0))s" >&2
}
# cert-manager's webhook is its internal admission chain, which only code
# inside the cert-manager module may import: build our wiring
# (test/cluster/certmanager/testdata/webhook) in a copy of that module.
build_webhook() {
	[ -x "$OUT/cert-manager-webhook" ] && return 0
	local t0=$SECONDS cmdir src="$OUT/cert-manager-src.tmp"
	echo "$(ts) building cert-manager-webhook..." >&2
	cmdir="$(cd "$ROOT/test/cluster/certmanager" && go mod download -json github.com/cert-manager/cert-manager | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
	rm -rf "$src"
	cp -r "$cmdir" "$src"
	chmod -R u+w "$src"
	mkdir -p "$src/internal/localwebhook"
	cp "$ROOT/test/cluster/certmanager/testdata/webhook/main.go" "$src/internal/localwebhook/main.go"
	(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/cert-manager-webhook.tmp" ./internal/localwebhook)
	rm -rf "$src"
	mv "$OUT/cert-manager-webhook.tmp" "$OUT/cert-manager-webhook"
	echo "$(ts) built cert-manager-webhook in $((SECONDS - t0))s" >&2
}
V=k8s.io/component-base/version
CV=k8s.io/client-go/pkg/version
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
VLD="-X $V.gitVersion=$K8S_VERSION -X $V.gitMajor=1 -X $V.gitMinor=$MINOR -X $V.gitTreeState=clean -X $V.buildDate=2026-01-01T00:00:00Z -X $V.gitCommit=0000000000000000000000000000000000000000"
VLD="$VLD -X $CV.gitVersion=$K8S_VERSION -X $CV.gitMajor=1 -X $CV.gitMinor=$MINOR"
for b in "${missing[@]}"; do
	case $b in
	etcd) build etcd etcd . ;;
	kwok) build kwok kwok sigs.k8s.io/kwok/cmd/kwok ;;
	cert-manager-controller) build cert-manager-controller certmanager . ;;
	cert-manager-webhook) build_webhook ;;
	*) build "$b" kube "./cmd/$b" "$VLD" ;;
	esac
done
echo "$OUT"
