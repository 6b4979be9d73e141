#!/usr/bin/env bash
# Builds the real node's images without a registry and caches them by
# content under ~/.cache/kubectl-pgpool/images/<key>/ as docker-archive
# tarballs (manifest.json, config.json, one layer) that `ctr images import`
# takes:
#   pause.tar   kubectl-pgpool/pause:local   a static Go pause (test/cluster/images/pause)
#   pgpool.tar  kubectl-pgpool/pgpool:local  Debian trixie minbase with pgpool2 (4.6,
#               the generation KubeDB and Bitnami ship), postgresql-17 and openssl
#               (debootstrap from the machine's apt mirror),
#               entrypoints from test/cluster/images/ (KubeDB's and
#               pgpool2_on_k8s's, PostgreSQL's, and a stand-in for Bitnami's)
# Both stop on SIGINT (pgpool and PostgreSQL: fast shutdown; SIGTERM would
# wait for clients to leave). Prints the directory on its last line.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${KUBECTL_PGPOOL_CACHE:-$HOME/.cache/kubectl-pgpool}"
KEY="$( (cat "$0" "$ROOT"/test/cluster/images/*.sh "$ROOT"/test/cluster/images/pause/*; go version) | sha256sum | cut -c1-16)"
OUT="$CACHE/images/$KEY"
ts() { date +%H:%M:%S; }
if [ -f "$OUT/pause.tar" ] && [ -f "$OUT/pgpool.tar" ]; then
	echo "images: cached in $OUT" >&2
	echo "$OUT"
	exit 0
fi
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# archive NAME TAG ROOTFS ENTRYPOINT USER: a one-layer docker-archive tarball.
archive() {
	local name=$1 tag=$2 rootfs=$3 entry=$4 user=$5 d="$WORK/$1-img"
	mkdir -p "$d"
	tar --numeric-owner -C "$rootfs" -cf "$d/layer.tar" .
	local diff
	diff="sha256:$(sha256sum "$d/layer.tar" | cut -d' ' -f1)"
	cat >"$d/config.json" <<-JSON
		{"architecture":"amd64","os":"linux","config":{"Entrypoint":["$entry"],"User":"$user","StopSignal":"SIGINT","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["$diff"]}}
	JSON
	echo "[{\"Config\":\"config.json\",\"RepoTags\":[\"$tag\"],\"Layers\":[\"layer.tar\"]}]" >"$d/manifest.json"
	tar -C "$d" -cf "$OUT/$name.tar.tmp" manifest.json config.json layer.tar
	mv "$OUT/$name.tar.tmp" "$OUT/$name.tar"
	echo "$(ts) image $tag: $(du -h "$OUT/$name.tar" | cut -f1)" >&2
}

if [ ! -f "$OUT/pause.tar" ]; then
	echo "$(ts) building the pause image" >&2
	mkdir -p "$WORK/pause/rootfs"
	(cd "$ROOT/test/cluster/images/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$WORK/pause/rootfs/pause" .)
	archive pause kubectl-pgpool/pause:local "$WORK/pause/rootfs" /pause 65535
fi

if [ ! -f "$OUT/pgpool.tar" ]; then
	MIRROR="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)"
	[ -n "$MIRROR" ] || MIRROR="$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
	[ -n "$MIRROR" ] || { echo "no Debian mirror in the apt sources" >&2; exit 1; }
	R="$WORK/pgpool/rootfs"
	echo "$(ts) debootstrap trixie with pgpool2, postgresql-17, openssl (about a minute)" >&2
	debootstrap --variant=minbase --include=pgpool2,postgresql-17,openssl trixie "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$WORK/debootstrap.log" >&2; exit 1; }
	# KubeDB's images run as UID/GID 70; give the postgres user that id.
	chroot "$R" sh -c 'groupmod -g 70 postgres && usermod -u 70 -g 70 postgres' >/dev/null
	chroot "$R" sh -c 'chown -R 70:70 /var/lib/postgresql /run/postgresql /etc/postgresql /var/log/postgresql 2>/dev/null || true'
	rm -rf "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/var/cache/apt/archives/*.deb \
		"$R"/var/lib/apt/lists/* "$R"/usr/share/locale/*
	install -m 0755 "$ROOT/test/cluster/images/pgpool-entrypoint.sh" "$R/usr/local/bin/pgpool-entrypoint"
	install -m 0755 "$ROOT/test/cluster/images/postgres-entrypoint.sh" "$R/usr/local/bin/postgres-entrypoint"
	install -m 0755 "$ROOT/test/cluster/images/bitnami-pgpool-entrypoint.sh" "$R/usr/local/bin/bitnami-pgpool-entrypoint"
	# (not "$R/var/run/...": /var/run is an absolute symlink to /run)
	mkdir -p "$R/opt/pgpool-II/etc" "$R/opt/pgpool-II/tls" "$R/run/pgpool" "$R/opt/bitnami/pgpool"
	chown -R 70:70 "$R/opt/pgpool-II" "$R/run/pgpool" "$R/opt/bitnami/pgpool"
	archive pgpool kubectl-pgpool/pgpool:local "$R" /usr/local/bin/pgpool-entrypoint 70
fi
echo "$OUT"
