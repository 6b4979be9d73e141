#!/usr/bin/env bash
# `make krew-validate`: krew's own checks of the plugin's packaging.
#  1. validate-krew-manifest on krew-manifest.yaml (the repo's manifest; its
#     sha256 are placeholders until a release, so no install from its URIs),
#     and krew-index review's lengths (shortDescription, description width);
#  2. hack/dist.sh for this machine's platform, validate-krew-manifest on the
#     resulting dist/pgpool.yaml;
#  3. a real `kubectl krew install --manifest --archive` of that archive into
#     a temporary KREW_ROOT, the installed plugin run, then `krew uninstall`.
# krew and its validator are built from sigs.k8s.io/krew and cached.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
KREW_VERSION="${KREW_VERSION:-v0.4.3}"
TOOLS="$HOME/.cache/kubectl-pgpool/tools"
mkdir -p "$TOOLS"
for t in validate-krew-manifest krew; do
	if [ ! -x "$TOOLS/$t-$KREW_VERSION" ]; then
		echo "building $t $KREW_VERSION" >&2
		GOBIN="$TOOLS/krew-build" go install "sigs.k8s.io/krew/cmd/$t@$KREW_VERSION"
		mv "$TOOLS/krew-build/$t" "$TOOLS/$t-$KREW_VERSION"
	fi
done
VALIDATE="$TOOLS/validate-krew-manifest-$KREW_VERSION" KREW="$TOOLS/krew-$KREW_VERSION"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

validate() { # krew wants the file named after the plugin
	mkdir -p "$work/$1" && cp "$2" "$work/$1/pgpool.yaml"
	"$VALIDATE" -manifest "$work/$1/pgpool.yaml" -skip-install >"$work/$1.log" 2>&1 ||
		{ cat "$work/$1.log" >&2; echo "$2: krew's validate-krew-manifest failed" >&2; return 1; }
	echo "$2: valid (validate-krew-manifest)" >&2
}
validate repo krew-manifest.yaml

# What krew-index review asks beyond the validator: a shortDescription of at
# most 50 characters, a description wrapped at 80 columns.
short="$(sed -n 's/^  shortDescription: *//p' krew-manifest.yaml)"
if [ "${#short}" -gt 50 ]; then
	echo "krew-manifest.yaml: shortDescription is ${#short} characters (krew-index wants at most 50): $short" >&2
	exit 1
fi
if sed -n '/^  description: |/,/^  [a-z]*:/p' krew-manifest.yaml | awk 'length > 80 { bad = 1; print "krew-manifest.yaml: description line over 80 columns: " $0 > "/dev/stderr" } END { exit bad }'; then :; else exit 1; fi

platform="$(go env GOOS)/$(go env GOARCH)"
PLATFORMS="$platform" hack/dist.sh
validate dist dist/pgpool.yaml
version="$(sed -n 's/^  version: *//p' dist/pgpool.yaml)"
archive="dist/kubectl-pgpool_${version}_$(go env GOOS)_$(go env GOARCH).tar.gz"
export KREW_ROOT="$work/krew"
"$KREW" install --manifest=dist/pgpool.yaml --archive="$archive" </dev/null >"$work/install.log" 2>&1 ||
	{ cat "$work/install.log" >&2; echo "krew install failed" >&2; exit 1; }
got="$("$KREW_ROOT/bin/kubectl-pgpool" version)"
case "$got" in
"kubectl-pgpool $version "*) echo "krew installed $archive; it runs: $got" >&2 ;;
*) echo "the plugin krew installed says \"$got\", want version $version" >&2; exit 1 ;;
esac
# krew's other commands want a local index (a git clone of krew-index);
# an empty local repository stands in for it, nothing is fetched.
mkdir -p "$KREW_ROOT/index/default/plugins"
git init -q "$KREW_ROOT/index/default"
"$KREW" list 2>/dev/null | grep -qE "^(detached/)?pgpool$" || { echo "krew list does not show pgpool" >&2; exit 1; }
"$KREW" uninstall pgpool >"$work/uninstall.log" 2>&1 ||
	{ cat "$work/uninstall.log" >&2; echo "krew uninstall failed" >&2; exit 1; }
[ ! -e "$KREW_ROOT/bin/kubectl-pgpool" ] || { echo "krew uninstall left the plugin behind" >&2; exit 1; }
echo "krew uninstall removed it" >&2
