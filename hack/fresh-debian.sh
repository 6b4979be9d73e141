#!/usr/bin/env bash
# Proves that the README's two commands set a fresh machine up by
# themselves: a Debian root made by debootstrap (the host's release, from
# the host's apt mirror) with only git, make and Go in it, a clone of this
# repository's HEAD, and then `make demo` and `make test` run inside, as
# root, in mount, pid and network namespaces of their own. The network
# namespace has loopback only; the one way out is an HTTP proxy
# (hack/fresh) reached through a unix socket, which apt and Go use for
# Debian's archive and the Go module proxy (http_proxy/https_proxy, with
# no_proxy for loopback and the cluster's addresses, as a machine behind a
# proxy has them).
#
#   hack/fresh-debian.sh            # cold: nothing cached (about 1-1.5 h on 2 cores)
#   hack/fresh-debian.sh --warm     # with a copy of this machine's module cache and
#                                   # ~/.cache/kubectl-pgpool (the cluster's binaries,
#                                   # images and tools): the Debian set-up is still fresh
#   hack/fresh-debian.sh --demo     # only `make demo`
#
# Root only. Leaves its root in $FRESH_DIR (default /var/tmp/kubectl-pgpool-fresh)
# for a look, and writes the outcome and times to $FRESH_DIR/result.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${FRESH_DIR:-/var/tmp/kubectl-pgpool-fresh}"
warm=0 targets="demo test"
for a in "$@"; do
	case $a in
	--warm) warm=1 ;;
	--demo) targets=demo ;;
	*) echo "usage: $0 [--warm] [--demo]" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "fresh-debian: run as root (debootstrap, namespaces, mounts)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "fresh-debian: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }
ts() { date +%H:%M:%S; }
t0=$SECONDS
R="$DIR/root"
# Unmount what an earlier run left, then start from nothing.
if [ -d "$R" ]; then
	{ grep -o " $R[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
	rm -rf "$DIR"
fi
mkdir -p "$DIR"

# The host's release and mirror (read from its apt sources, not written here).
. /etc/os-release
SUITE="$VERSION_CODENAME"
MIRROR="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
[ -n "$MIRROR" ] || MIRROR="$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)"
echo "$(ts) debootstrap $SUITE (minbase + git, make) into $R" >&2
debootstrap --variant=minbase --include=git,make "$SUITE" "$R" "$MIRROR" >"$DIR/debootstrap.log" 2>&1 ||
	{ tail -n 20 "$DIR/debootstrap.log" >&2; exit 1; }
t_boot=$((SECONDS - t0))

GOROOT_HOST="$(go env GOROOT)"
echo "$(ts) Go $(go env GOVERSION) from $GOROOT_HOST into /usr/local/go" >&2
mkdir -p "$R/usr/local"
cp -a "$GOROOT_HOST" "$R/usr/local/go"
CGO_ENABLED=0 go build -C "$ROOT/hack/fresh" -o "$DIR/fresh" .
cp "$DIR/fresh" "$R/usr/local/bin/fresh-bridge"

echo "$(ts) clone $(git -C "$ROOT" rev-parse --short HEAD) into /src/kubectl-pgpool" >&2
mkdir -p "$R/src/shared"
git clone -q "$ROOT" "$R/src/kubectl-pgpool"
if [ $warm = 1 ]; then
	echo "$(ts) --warm: copying the module cache and ~/.cache/kubectl-pgpool" >&2
	mkdir -p "$R/root/go/pkg" "$R/root/.cache"
	cp -a "$(go env GOMODCACHE)" "$R/root/go/pkg/mod"
	cp -a "$HOME/.cache/kubectl-pgpool" "$R/root/.cache/kubectl-pgpool"
fi

# The proxy outside; it stops with this script.
"$DIR/fresh" -serve "$DIR/proxy.sock" 2>"$DIR/proxy.log" &
proxy_pid=$!
trap 'kill $proxy_pid 2>/dev/null || true' EXIT

# Inside: new mount, pid and network namespaces; loopback up; the usual
# file systems (sysfs mounted from inside, so that it shows this network
# namespace; the host's cgroup hierarchy as it is); the third-party snapshots
# read-only beside the clone; then the two commands.
cat >"$DIR/inside.sh" <<EOF
set -euo pipefail
R="$R"
mount --make-rprivate /
# The root a mount point of its own, as on a machine: the kubelet looks
# its directories' mount points up in /proc/self/mountinfo.
mount --bind "\$R" "\$R"
ip link set lo up
mount -t proc proc "\$R/proc"
mount -t sysfs sysfs "\$R/sys"
mount --rbind /sys/fs/cgroup "\$R/sys/fs/cgroup"   # the host's hierarchy, v1 or v2, with its controllers
mount --rbind /dev "\$R/dev"
mount -t tmpfs tmpfs "\$R/tmp"
mount -t tmpfs tmpfs "\$R/run"
mount --bind "$DIR" "\$R/mnt"
if [ -d "$ROOT/../shared/third_party" ]; then
	mkdir -p "\$R/src/shared/third_party"
	mount --bind -o ro "$ROOT/../shared/third_party" "\$R/src/shared/third_party"
fi
exec chroot "\$R" /usr/bin/env -i HOME=/root TERM=dumb PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	http_proxy=http://127.0.0.1:3128 https_proxy=http://127.0.0.1:3128 HTTP_PROXY=http://127.0.0.1:3128 HTTPS_PROXY=http://127.0.0.1:3128 \
	no_proxy=127.0.0.1,localhost,::1,10.0.0.0/8 NO_PROXY=127.0.0.1,localhost,::1,10.0.0.0/8 \
	/bin/bash -c 'set -eo pipefail
		fresh-bridge -bridge /mnt/proxy.sock -listen 127.0.0.1:3128 2>/tmp/bridge.log &
		cd /src/kubectl-pgpool
		for t in $targets; do
			s=\$(date +%s)
			echo "\$(date +%H:%M:%S) make \$t" >&2
			if make \$t > /mnt/make-\$t.log 2>&1; then r=ok; else r=FAILED; fi
			echo "make \$t: \$r in \$((\$(date +%s) - s))s" | tee -a /mnt/inside.txt
			if [ \$r != ok ]; then
				tail -n 40 /mnt/make-\$t.log
				# What the local cluster looked like, before the namespaces go.
				if [ -f .cluster/env ]; then
					. .cluster/env
					for a in "get nodes -o wide" "get pods -A -o wide" "get events -A" "get petsets.apps.k8s.appscode.com -A -o yaml" "get nodes -o yaml"; do
						echo "\$ kubectl \$a"; \$BIN_DIR/kubectl --kubeconfig \$KUBECONFIG \$a 2>&1
					done > /mnt/diagnostics.txt
				fi
				exit 1
			fi
		done'
EOF
echo "$(ts) entering the namespaces: make ${targets// / then make } (logs: $DIR/make-*.log)" >&2
rc=0
unshare --mount --pid --net --fork bash "$DIR/inside.sh" || rc=$?
{
	echo "fresh Debian $SUITE (minbase + git, make; Go $(go env GOVERSION)), commit $(git -C "$ROOT" rev-parse --short HEAD), warm=$warm"
	echo "debootstrap: ${t_boot}s"
	cat "$DIR/inside.txt" 2>/dev/null || true
	echo "exit $rc, ${SECONDS}s in all"
} | tee "$DIR/result.txt"
exit $rc
