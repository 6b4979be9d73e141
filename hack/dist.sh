#!/usr/bin/env bash
# Builds the release archives krew installs and a krew manifest that names
# them with their real sha256:
#   dist/kubectl-pgpool_VERSION_OS_ARCH.tar.gz   (kubectl-pgpool, kubectl_complete-pgpool, LICENSE)
#   dist/pgpool.yaml                             (krew-manifest.yaml with the sha256 filled in)
# VERSION defaults to the manifest's spec.version; PLATFORMS to every
# platform the manifest lists. Archives are reproducible (sorted, owner 0,
# mtime of the commit, gzip -n, -trimpath).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
MANIFEST_VERSION="$(sed -n 's/^  version: *//p' krew-manifest.yaml)"
VERSION="${VERSION:-$MANIFEST_VERSION}"
PLATFORMS="${PLATFORMS:-$(awk '/os:/{os=$2} /arch:/{print os "/" $2}' krew-manifest.yaml | tr '\n' ' ')}"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
DATE="$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p dist
cp krew-manifest.yaml dist/pgpool.yaml.tmp
sed -i "s/^  version: .*/  version: $VERSION/; s#/download/$MANIFEST_VERSION/kubectl-pgpool_${MANIFEST_VERSION}_#/download/$VERSION/kubectl-pgpool_${VERSION}_#" dist/pgpool.yaml.tmp
for p in $PLATFORMS; do
	os="${p%/*}" arch="${p#*/}"
	stage="$(mktemp -d)"
	echo "building $os/$arch" >&2
	CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" go build -trimpath \
		-ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT -X main.date=$DATE" \
		-o "$stage/kubectl-pgpool" ./cmd/kubectl-pgpool
	install -m 0755 kubectl_complete-pgpool "$stage/"
	install -m 0644 LICENSE "$stage/"
	out="dist/kubectl-pgpool_${VERSION}_${os}_${arch}.tar.gz"
	tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
		-cf - kubectl-pgpool kubectl_complete-pgpool LICENSE | gzip -n >"$out"
	if [ "$os" = linux ]; then
		# The image `tls schedule` runs: the same binary on a scratch base,
		# an OCI layout tarball (push it with skopeo copy oci-archive:...).
		img="dist/kubectl-pgpool-image_${VERSION}_${os}_${arch}.tar"
		(cd hack/image && SOURCE_DATE_EPOCH="$EPOCH" go run . -binary "$stage/kubectl-pgpool" -name "${IMAGE_REPO:-localhost/kubectl-pgpool}:$VERSION" \
			-platform "$os/$arch" -out "$ROOT/$img" >/dev/null)
		echo "$img sha256 $(sha256sum "$img" | cut -d' ' -f1)" >&2
	fi
	rm -rf "$stage"
	sha="$(sha256sum "$out" | cut -d' ' -f1)"
	awk -v sha="$sha" -v suffix="_${os}_${arch}.tar.gz" '
		index($0, "uri:") && index($0, suffix) { f = 1 }
		f && /sha256:/ { sub(/"[0-9a-f]+"/, "\"" sha "\""); f = 0 }
		{ print }' dist/pgpool.yaml.tmp >dist/pgpool.yaml.next
	mv dist/pgpool.yaml.next dist/pgpool.yaml.tmp
	echo "$out sha256 $sha" >&2
done
mv dist/pgpool.yaml.tmp dist/pgpool.yaml
echo "dist/pgpool.yaml" >&2
