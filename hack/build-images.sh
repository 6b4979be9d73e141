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
#               pgpool2_on_k8s's, and PostgreSQL's); it stops on SIGINT
#               (pgpool and PostgreSQL: fast shutdown; SIGTERM would wait
#               for clients to leave).
#               The same tarball also holds kubectl-pgpool/bitnami-pgpool:local:
#               the same layer, run as Bitnami's pgpool image runs it
#               (ENTRYPOINT entrypoint.sh, CMD run.sh, USER 1001, its ENV,
#               SIGTERM), with Bitnami's real container scripts from
#               ../shared/third_party/bitnami-pgpool-scripts-*.tar.xz (or
#               BITNAMI_SCRIPTS_ARCHIVE) put where the image's Dockerfile puts
#               them and its postunpack.sh run at build time. Without the
#               archive that tag is left out and the Bitnami real-node test
#               says so and is skipped.
# Prints the directory on its last line.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${KUBECTL_PGPOOL_CACHE:-$HOME/.cache/kubectl-pgpool}"
BITNAMI="${BITNAMI_SCRIPTS_ARCHIVE:-}"
if [ -z "$BITNAMI" ]; then
	for a in "$ROOT"/../shared/third_party/bitnami-pgpool-scripts-*.tar.xz; do
		[ -f "$a" ] && BITNAMI="$a"
	done
fi
KEY="$( (cat "$0" "$ROOT"/test/cluster/images/*.sh "$ROOT"/test/cluster/images/pause/*; [ -z "$BITNAMI" ] || cat "$BITNAMI"; go version) | sha256sum | cut -c1-16)"
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

# archive NAME TAG ROOTFS ENTRYPOINT USER [TAG2 CONFIG2]: a one-layer
# docker-archive tarball; with TAG2, a second image of the same layer whose
# "config" object is CONFIG2.
archive() {
	local name=$1 tag=$2 rootfs=$3 entry=$4 user=$5 tag2=${6:-} config2=${7:-} d="$WORK/$1-img"
	mkdir -p "$d"
	tar --numeric-owner -C "$rootfs" -cf "$d/layer.tar" .
	local diff
	diff="sha256:$(sha256sum "$d/layer.tar" | cut -d' ' -f1)"
	cat >"$d/config.json" <<-JSON
		{"architecture":"amd64","os":"linux","config":{"Entrypoint":["$entry"],"User":"$user","StopSignal":"SIGINT","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["$diff"]}}
	JSON
	local manifest="{\"Config\":\"config.json\",\"RepoTags\":[\"$tag\"],\"Layers\":[\"layer.tar\"]}" files=(manifest.json config.json layer.tar)
	if [ -n "$tag2" ]; then
		echo "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":$config2,\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"$diff\"]}}" >"$d/config2.json"
		manifest="$manifest,{\"Config\":\"config2.json\",\"RepoTags\":[\"$tag2\"],\"Layers\":[\"layer.tar\"]}"
		files+=(config2.json)
	fi
	echo "[$manifest]" >"$d/manifest.json"
	tar -C "$d" -cf "$OUT/$name.tar.tmp" "${files[@]}"
	mv "$OUT/$name.tar.tmp" "$OUT/$name.tar"
	echo "$(ts) image $tag${tag2:+ and $tag2}: $(du -h "$OUT/$name.tar" | cut -f1)" >&2
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
	# (not "$R/var/run/...": /var/run is an absolute symlink to /run)
	mkdir -p "$R/opt/pgpool-II/etc" "$R/opt/pgpool-II/tls" "$R/run/pgpool"
	chown -R 70:70 "$R/opt/pgpool-II" "$R/run/pgpool"
	if [ -z "$BITNAMI" ]; then
		echo "$(ts) no Bitnami pgpool scripts (../shared/third_party/bitnami-pgpool-scripts-*.tar.xz, or set BITNAMI_SCRIPTS_ARCHIVE): image kubectl-pgpool/bitnami-pgpool:local left out" >&2
		archive pgpool kubectl-pgpool/pgpool:local "$R" /usr/local/bin/pgpool-entrypoint 70
	else
		# What Bitnami's Dockerfile does, with Debian's pgpool2 and
		# postgresql-client in place of Bitnami's builds of them: COPY
		# prebuildfs / and rootfs /, pgpool's programs on the PATH under
		# /opt/bitnami/pgpool/bin, the sample config in pgpool/etc, then RUN
		# postunpack.sh (directories, group-writable, the log to stdout) and
		# chmod g+rwX /opt/bitnami.
		tar -xJf "$BITNAMI" -C "$WORK"
		cp -a "$WORK/bitnami-pgpool/prebuildfs/." "$WORK/bitnami-pgpool/rootfs/." "$R/"
		mkdir -p "$R/opt/bitnami/pgpool/bin" "$R/opt/bitnami/pgpool/etc"
		for b in pgpool pg_md5 pg_enc pcp_attach_node pcp_node_info; do ln -sf "/usr/sbin/$b" "$R/opt/bitnami/pgpool/bin/$b"; done
		install -m 0644 "$R/etc/pgpool2/pgpool.conf" "$R/opt/bitnami/pgpool/etc/pgpool.conf.sample"
		chroot "$R" env -i HOME=/ OS_ARCH=amd64 OS_FLAVOUR=debian-12 OS_NAME=linux PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			/opt/bitnami/scripts/pgpool/postunpack.sh >"$WORK/postunpack.log" 2>&1 || { cat "$WORK/postunpack.log" >&2; exit 1; }
		chmod g+rwX "$R/opt/bitnami"
		version="$(chroot "$R" dpkg-query -W -f '${Version}' pgpool2 | cut -d- -f1)"
		bitnami_path=/opt/bitnami/common/bin:/opt/bitnami/postgresql/bin:/opt/bitnami/pgpool/bin:/opt/bitnami/common/sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		archive pgpool kubectl-pgpool/pgpool:local "$R" /usr/local/bin/pgpool-entrypoint 70 kubectl-pgpool/bitnami-pgpool:local \
			"{\"Entrypoint\":[\"/opt/bitnami/scripts/pgpool/entrypoint.sh\"],\"Cmd\":[\"/opt/bitnami/scripts/pgpool/run.sh\"],\"User\":\"1001\",\"ExposedPorts\":{\"5432/tcp\":{}},\"Env\":[\"HOME=/\",\"OS_ARCH=amd64\",\"OS_FLAVOUR=debian-12\",\"OS_NAME=linux\",\"APP_VERSION=$version\",\"BITNAMI_APP_NAME=pgpool\",\"IMAGE_REVISION=0\",\"LD_LIBRARY_PATH=/opt/bitnami/common/lib:/opt/bitnami/common/lib64:\",\"PATH=$bitnami_path\"]}"
	fi
fi
echo "$OUT"
