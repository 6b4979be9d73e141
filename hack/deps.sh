#!/usr/bin/env bash
# Installs what `make demo` and `make test` need from Debian's archive, and
# only what is missing: it checks each package first, says what it
# installs, and changes nothing when everything is there. Run by both make
# targets (and by .ci/run) before any build.
#
# Not root and something is missing: it prints the one command to run as
# root and exits 2. Go itself is not installed here (the module wants a
# newer Go than Debian ships): without it, it says so and exits 2.
set -euo pipefail

# package: what of it the tests and the local cluster use
packages=(
	make                        # the two commands
	git                         # the version stamped into the plugin
	ca-certificates             # the Go module proxy over https
	curl                        # the local cluster's readiness checks
	openssl                     # certificates in the fixtures and the image
	xz-utils                    # the third-party source snapshots (.tar.xz)
	pgpool2                     # real pgpool-II for the pgpool tier
	postgresql                  # real PostgreSQL behind it
	postgresql-client           # psql for the login checks
	containerd                  # the real node's container runtime
	runc                        #   and its OCI runtime
	containernetworking-plugins # the real node's pod network (bridge, host-local, loopback)
	iptables                    # kube-proxy and the pod network
	iproute2                    # network namespaces for the real node
	debootstrap                 # the real node's pgpool image, built from Debian's archive
	util-linux                  # unshare for the pid-namespace tests
)

missing=()
for p in "${packages[@]}"; do
	if [ "$(dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
		missing+=("$p")
	fi
done

if ! command -v go >/dev/null 2>&1; then
	echo "deps: Go is not on the PATH; install Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod") or newer (https://go.dev/dl/) and run again" >&2
	exit 2
fi

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#packages[@]} Debian packages present" >&2
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing Debian packages: ${missing[*]}" >&2
	echo "deps: install them as root, then run again:" >&2
	echo "  sudo $0" >&2
	exit 2
fi

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The tests start pgpool, PostgreSQL and containerd themselves: keep the
# packages from starting their own services while they install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${#missing[@]} packages" >&2
