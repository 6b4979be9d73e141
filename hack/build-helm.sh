#!/usr/bin/env bash
# Builds Helm at a pinned version from the Go module proxy and caches it in
# ~/.cache/kubectl-pgpool/tools/helm-<version>/ (about 8 minutes on 2 cores,
# once), with the postgresql-ha chart snapshot unpacked beside it when
# ../shared/third_party/bitnami-postgresql-ha-*.tar.xz (or the archive
# $BITNAMI_CHART_ARCHIVE names) is present. Prints two lines on stdout: the
# helm binary, then the chart's directory ("" when there is no snapshot: the
# test that installs the chart is then skipped).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${KUBECTL_PGPOOL_CACHE:-$HOME/.cache/kubectl-pgpool}"
HELM_VERSION=v4.3.2
DIR="$CACHE/tools/helm-$HELM_VERSION"
if [ ! -x "$DIR/helm" ]; then
	t0=$SECONDS
	echo "$(date +%H:%M:%S) building helm $HELM_VERSION from the Go module proxy (about 8 minutes on 2 cores, once)..." >&2
	rm -rf "$DIR.tmp"
	mkdir -p "$DIR.tmp"
	GOBIN="$DIR.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
	rm -rf "$DIR"
	mv "$DIR.tmp" "$DIR"
	echo "$(date +%H:%M:%S) built helm in $((SECONDS - t0))s" >&2
fi
echo "$DIR/helm"
ARCHIVE="${BITNAMI_CHART_ARCHIVE:-}"
if [ -z "$ARCHIVE" ]; then
	for a in "$ROOT"/../shared/third_party/bitnami-postgresql-ha-*.tar.xz; do
		[ -f "$a" ] && ARCHIVE="$a"
	done
fi
if [ -z "$ARCHIVE" ] || [ ! -f "$ARCHIVE" ]; then
	echo "helm: no snapshot of Bitnami's postgresql-ha chart (../shared/third_party/bitnami-postgresql-ha-*.tar.xz, or set BITNAMI_CHART_ARCHIVE)" >&2
	echo ""
	exit 0
fi
KEY="$(sha256sum "$ARCHIVE" | cut -c1-16)"
CHART="$CACHE/charts/$KEY"
if [ ! -f "$CHART/postgresql-ha/Chart.yaml" ]; then
	rm -rf "$CHART.tmp"
	mkdir -p "$CHART.tmp"
	tar -xJf "$ARCHIVE" -C "$CHART.tmp" --strip-components=1
	rm -rf "$CHART"
	mv "$CHART.tmp" "$CHART"
fi
echo "$CHART/postgresql-ha"
