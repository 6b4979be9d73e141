#!/usr/bin/env bash
# Builds kubeops/petset, the controller that runs KubeDB's PetSets, from the
# source snapshot kept beside the project (../shared/third_party/petset-*.tar.xz,
# or the archive $PETSET_ARCHIVE names) with its vendored modules, and caches
# the binary and its CRDs in ~/.cache/kubectl-pgpool/petset/<key>/ (<key>
# from the archive and the Go version). Prints that directory on its last
# line; when there is no snapshot it says so and prints nothing (the tier
# that needs the controller is then skipped).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${KUBECTL_PGPOOL_CACHE:-$HOME/.cache/kubectl-pgpool}"
ARCHIVE="${PETSET_ARCHIVE:-}"
if [ -z "$ARCHIVE" ]; then
	for a in "$ROOT"/../shared/third_party/petset-*.tar.xz; do
		[ -f "$a" ] && ARCHIVE="$a"
	done
fi
if [ -z "$ARCHIVE" ] || [ ! -f "$ARCHIVE" ]; then
	echo "petset: no source snapshot (../shared/third_party/petset-*.tar.xz, or set PETSET_ARCHIVE): the real PetSet controller's tier is skipped" >&2
	exit 0
fi
KEY="$( (go version; sha256sum "$ARCHIVE" | cut -d' ' -f1; cat "$0") | sha256sum | cut -c1-16)"
OUT="$CACHE/petset/$KEY"
if [ -x "$OUT/petset" ]; then
	echo "petset: cached in $OUT" >&2
	echo "$OUT"
	exit 0
fi
t0=$SECONDS
echo "$(date +%H:%M:%S) building the PetSet controller from $(basename "$ARCHIVE") (about 3-9 minutes on 2 cores, once)..." >&2
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
tar -xJf "$ARCHIVE" -C "$src"
mkdir -p "$OUT.tmp/crds"
(cd "$src/petset" && GOFLAGS=-mod=vendor CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT.tmp/petset" ./cmd/petset)
cp "$src"/petset/crds/*.yaml "$OUT.tmp/crds/"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "$(date +%H:%M:%S) built the PetSet controller in $((SECONDS - t0))s" >&2
echo "$OUT"
