#!/usr/bin/env bash
# The project's local Kubernetes cluster: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok (one fake node) and
# cert-manager's controllers, all built from the Go module proxy by
# hack/build-cluster-bins.sh and bound to 127.0.0.1.
#
#   hack/cluster.sh up            start it (or report that it is up), print the kubeconfig path
#   hack/cluster.sh down          stop exactly the processes it started (by PID), remove the state
#   hack/cluster.sh status        say whether it is up
#   hack/cluster.sh port-offsets  the offsets from PORT_BASE of every port it binds
#
# Environment: CLUSTER_DIR (state, default .cluster in the repo), PORT_BASE
# (default 16400: etcd +0/+1, apiserver +43, kubelet healthz +48, kubelet
# +50, kube-proxy healthz +52 and metrics +53, controller-manager +57,
# scheduler +59, kwok +80, cert-manager's webhook +90).
#
# The contract with tests and scripts is the file $CLUSTER_DIR/env, written
# by `up`: KUBECONFIG, CLUSTER_DIR, BIN_DIR, PORT_BASE and REAL_NODE (0 or 1)
# as shell assignments, read with `. "$CLUSTER_DIR/env"` or testenv.ReadEnv.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${CLUSTER_DIR:-$ROOT/.cluster}"
mkdir -p "$(dirname "$DIR")"
DIR="$(cd "$(dirname "$DIR")" && pwd)/$(basename "$DIR")"
BASE="${PORT_BASE:-16400}"
# Every port the cluster binds, as an offset from PORT_BASE (port-offsets).
PORT_OFFSETS="0 1 43 48 50 52 53 57 59 80 90"
ETCD_PORT=$((BASE + 0)) ETCD_PEER=$((BASE + 1)) API_PORT=$((BASE + 43))
KCM_PORT=$((BASE + 57)) SCHED_PORT=$((BASE + 59)) KWOK_PORT=$((BASE + 80))
WEBHOOK_PORT=$((BASE + 90))
KUBECONFIG_OUT="$DIR/kubeconfig"
NODE=kwok-node-0

ts() { date +%H:%M:%S; }
say() { echo "$(ts) $*" >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

is_up() {
	[ -f "$KUBECONFIG_OUT" ] || return 1
	for p in "$DIR"/pids/*.pid; do alive "$p" || return 1; done
	"$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" get --raw /readyz >/dev/null 2>&1
}

# start NAME BINARY ARGS...: run a daemon in its own session; record its own PID.
start() {
	local name=$1
	shift
	setsid "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$DIR/pids/$name.pid"
	say "started $name (pid $!, log $DIR/logs/$name.log)"
}

# wait_for WHAT SECONDS COMMAND...: poll a readiness probe with a deadline.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs)) n=0
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then
			say "timed out after ${secs}s waiting for $what; last lines of the logs:"
			tail -n 5 "$DIR"/logs/*.log >&2 || true
			return 1
		fi
		n=$((n + 1))
		[ $((n % 20)) -eq 0 ] && say "still waiting for $what ($((SECONDS + secs - deadline))s)..."
		sleep 0.25
	done
	say "$what is ready"
}

pki() {
	local d="$DIR/pki"
	mkdir -p "$d"
	cd "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kubectl-pgpool-local-ca" \
		-keyout ca.key -out ca.crt 2>/dev/null
	cat >server.ext <<-EOF
		subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
		extendedKeyUsage=serverAuth
	EOF
	openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
	openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
		-extfile server.ext -out apiserver.crt 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=cert-manager-webhook" -keyout webhook.key -out webhook.csr 2>/dev/null
	openssl x509 -req -in webhook.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
		-extfile server.ext -out webhook.crt 2>/dev/null
	echo "extendedKeyUsage=clientAuth" >client.ext
	openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kubernetes-admin" -keyout admin.key -out admin.csr 2>/dev/null
	openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
		-extfile client.ext -out admin.crt 2>/dev/null
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
	cd - >/dev/null
}

kubeconfig() {
	cat >"$KUBECONFIG_OUT" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		- name: kubectl-pgpool-local
		  cluster:
		    server: https://127.0.0.1:$API_PORT
		    certificate-authority: $DIR/pki/ca.crt
		users:
		- name: admin
		  user:
		    client-certificate: $DIR/pki/admin.crt
		    client-key: $DIR/pki/admin.key
		contexts:
		- name: kubectl-pgpool-local
		  context: {cluster: kubectl-pgpool-local, user: admin}
		current-context: kubectl-pgpool-local
	EOF
}

kwok_stages() {
	local kdir
	kdir="$(cd "$ROOT/test/cluster/kwok" && go mod download -json sigs.k8s.io/kwok | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
	{
		for f in "$kdir"/kustomize/stage/node/fast/*.yaml "$kdir"/kustomize/stage/node/heartbeat-with-lease/*.yaml \
			"$kdir"/kustomize/stage/pod/fast/*.yaml; do
			case "$(basename "$f")" in kustomization.yaml | pod-delete.yaml) continue ;; esac
			echo "---"
			cat "$f"
		done
		# kwok's pod-delete, with the one second of graceful termination a
		# kubelet would take at least: without it a StatefulSet pod is gone
		# and back before the disruption controller sees it go, and the PDB
		# keeps it as "disrupted" for two minutes (DeletionTimeout).
		cat <<-EOF
			---
			apiVersion: kwok.x-k8s.io/v1alpha1
			kind: Stage
			metadata:
			  name: pod-delete
			spec:
			  resourceRef:
			    apiGroup: v1
			    kind: Pod
			  selector:
			    matchExpressions:
			    - key: '.metadata.deletionTimestamp'
			      operator: 'Exists'
			  delay:
			    durationMilliseconds: 1000
			  next:
			    delete: true
		EOF
	} | grep -v '^#' >"$DIR/kwok-stages.yaml"
}

# --- the optional real node (REAL_NODE=1): containerd + runc + CNI bridge + kubelet ---
REAL_NODE_NAME=localhost
KUBELET_PORT=$((BASE + 50)) KUBELET_HEALTHZ=$((BASE + 48))
PROXY_HEALTHZ=$((BASE + 52)) PROXY_METRICS=$((BASE + 53))
# Service ClusterIPs come from a range no usual cluster uses; the real
# node's pods from its bridge.
SVC_CIDR=10.251.0.0/16 POD_CIDR=10.244.77.0/24
# Our iptables rules carry this comment, so that down removes exactly them.
RULE_TAG=kubectl-pgpool-local-cluster

# guard_rules: ClusterIP traffic never leaves the machine. A ClusterIP that
# kube-proxy has not programmed is refused at once; one whose endpoint is
# not a pod of the real node (a kwok pod's made-up address) is refused
# instead of following the default route; routing the range to the bridge
# keeps the lookup local (an "unreachable" route would refuse connections
# before kube-proxy's DNAT runs).
guard_rules() { # -I to add, -D to delete (every copy)
	local op=$1 r c=(-m comment --comment "$RULE_TAG" -j REJECT)
	for r in "OUTPUT -d $SVC_CIDR" \
		"OUTPUT -m conntrack --ctstate DNAT --ctorigdst $SVC_CIDR ! -d $POD_CIDR" \
		"FORWARD -m conntrack --ctstate DNAT --ctorigdst $SVC_CIDR ! -d $POD_CIDR"; do
		# shellcheck disable=SC2086 # r is words on purpose
		if [ "$op" = -I ]; then
			iptables -I $r "${c[@]}"
		else
			while iptables -D $r "${c[@]}" 2>/dev/null; do :; done
		fi
	done
}

# proxy_up starts kube-proxy (iptables mode) for the real node, so that a
# client on the host reaches a pgpool Service's ClusterIP.
proxy_up() {
	ip link show kpgpool0 >/dev/null 2>&1 || ip link add kpgpool0 type bridge
	ip link set kpgpool0 up
	ip route replace "$SVC_CIDR" dev kpgpool0
	guard_rules -I
	start kube-proxy "$BIN/kube-proxy" --kubeconfig "$KUBECONFIG_OUT" --hostname-override "$REAL_NODE_NAME" \
		--proxy-mode iptables --cluster-cidr "$POD_CIDR" --nodeport-addresses "$POD_CIDR" \
		--healthz-bind-address "127.0.0.1:$PROXY_HEALTHZ" --metrics-bind-address "127.0.0.1:$PROXY_METRICS" \
		--conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
		--iptables-localhost-nodeports=false
	wait_for kube-proxy 60 curl -sf "http://127.0.0.1:$PROXY_HEALTHZ/healthz"
}

# proxy_down stops kube-proxy and removes its chains, our rules and route
# (also after a kube-proxy that died or a down that stopped half-way).
proxy_down() {
	stop_one kube-proxy
	local bin
	bin="$(cat "$DIR/bin-dir" 2>/dev/null || true)"
	if [ -x "$bin/kube-proxy" ]; then
		"$bin/kube-proxy" --cleanup --proxy-mode iptables >/dev/null 2>&1 || true
	fi
	guard_rules -D
	ip route delete "$SVC_CIDR" dev kpgpool0 >/dev/null 2>&1 || true
}

real_node_check() {
	local missing=()
	for b in containerd ctr runc iptables; do command -v "$b" >/dev/null || missing+=("$b"); done
	[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
	command -v debootstrap >/dev/null || missing+=(debootstrap)
	if [ ${#missing[@]} -gt 0 ]; then
		say "the real node needs Debian's containerd, runc, containernetworking-plugins, iptables and debootstrap (missing: ${missing[*]})"
		return 1
	fi
}

real_node_up() {
	real_node_check
	local IMG N="$DIR/node"
	IMG="$("$ROOT/hack/build-images.sh" | tail -n 1)"
	mkdir -p "$N/containerd" "$N/cni/net.d" "$N/cni/ipam" "$N/kubelet"
	# Two paths are fixed outside our directory: the kubelet's device-plugin
	# socket (/var/lib/kubelet/device-plugins) and libcni's result cache
	# (/var/lib/cni/results). Remember which of them we create, so that
	# cluster-down removes exactly those.
	for d in /var/lib/kubelet /var/lib/cni /var/lib/kubelet/device-plugins/kubelet.sock; do
		[ -e "$d" ] || echo "$d" >>"$N/created-paths"
	done
	cat >"$N/containerd/config.toml" <<-EOF
		version = 2
		root = "$N/containerd/root"
		state = "$N/containerd/state"
		[grpc]
		  address = "$N/containerd/containerd.sock"
		[ttrpc]
		  address = "$N/containerd/containerd.sock.ttrpc"
		[plugins."io.containerd.internal.v1.opt"]
		  path = "$N/containerd/opt"
		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = "docker.io/kubectl-pgpool/pause:local"
		  restrict_oom_score_adj = true
		  netns_mounts_under_state_dir = true
		  enable_selinux = false
		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        SystemdCgroup = false
		        BinaryName = "$(command -v runc)"
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "/usr/lib/cni"
		    conf_dir = "$N/cni/net.d"
	EOF
	cat >"$N/cni/net.d/10-kubectl-pgpool.conflist" <<-EOF
		{"cniVersion": "0.4.0", "name": "kubectl-pgpool", "plugins": [
		  {"type": "bridge", "bridge": "kpgpool0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
		   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.77.0/24"}]], "dataDir": "$N/cni/ipam"}},
		  {"type": "portmap", "capabilities": {"portMappings": true}},
		  {"type": "loopback"}]}
	EOF
	start containerd containerd --config "$N/containerd/config.toml"
	wait_for containerd 30 ctr --address "$N/containerd/containerd.sock" version
	for i in pause pgpool; do
		say "importing image $i into containerd"
		ctr --address "$N/containerd/containerd.sock" -n k8s.io images import --no-unpack=false "$IMG/$i.tar" >/dev/null
	done
	cat >"$N/kubelet/config.yaml" <<-EOF
		apiVersion: kubelet.config.k8s.io/v1beta1
		kind: KubeletConfiguration
		address: 127.0.0.1
		port: $KUBELET_PORT
		readOnlyPort: 0
		healthzBindAddress: 127.0.0.1
		healthzPort: $KUBELET_HEALTHZ
		authentication:
		  anonymous: {enabled: false}
		  webhook: {enabled: false}
		  x509: {clientCAFile: $DIR/pki/ca.crt}
		authorization: {mode: AlwaysAllow}
		cgroupDriver: cgroupfs
		failCgroupV1: false
		cgroupsPerQOS: false
		enforceNodeAllocatable: []
		failSwapOn: false
		containerRuntimeEndpoint: unix://$N/containerd/containerd.sock
		volumePluginDir: $N/kubelet/volume-plugins
		podLogsDir: $N/kubelet/pod-logs
		resolvConf: ""
		registerWithTaints:
		- {key: kubectl-pgpool.io/real-node, value: "true", effect: NoSchedule}
		evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
		imageGCHighThresholdPercent: 100
		imageGCLowThresholdPercent: 99
		serializeImagePulls: false
		localStorageCapacityIsolation: false
		shutdownGracePeriod: 0s
	EOF
	# The kubelet adds iptables chains of its own (KUBE-FIREWALL and the
	# KUBE-KUBELET-CANARY chains): down removes them if they were not here.
	iptables -S KUBE-FIREWALL >/dev/null 2>&1 || touch "$N/created-kubelet-chains"
	start kubelet "$BIN/kubelet" --config "$N/kubelet/config.yaml" --kubeconfig "$KUBECONFIG_OUT" \
		--root-dir "$N/kubelet/root" --cert-dir "$N/kubelet/pki" --hostname-override "$REAL_NODE_NAME" \
		--node-labels kubectl-pgpool.io/real-node=true
	wait_for "node $REAL_NODE_NAME Ready" 120 "$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" wait --for condition=Ready --timeout 1s node/$REAL_NODE_NAME
	proxy_up
}

# real_node_down removes the real node's containers (their shims outlive
# containerd otherwise), its mounts and its bridge.
real_node_down() {
	local N="$DIR/node" sock="$DIR/node/containerd/containerd.sock"
	[ -d "$N" ] || return 0
	proxy_down
	if [ -f "$DIR/pids/kubelet.pid" ]; then stop_one kubelet; fi
	if [ -S "$sock" ] && alive "$DIR/pids/containerd.pid"; then
		say "removing the real node's containers"
		for t in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
		done
		for t in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr --address "$sock" -n k8s.io tasks rm -f "$t" >/dev/null 2>&1 || true
		done
		for c in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
			ctr --address "$sock" -n k8s.io containers rm "$c" >/dev/null 2>&1 || true
			# The sandboxes' loopback results, named after the sandbox's ID.
			rm -f /var/lib/cni/results/cni-loopback-"$c"-* 2>/dev/null || true
		done
	fi
	stop_one containerd
	{ grep -o " $N[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	ip link delete kpgpool0 >/dev/null 2>&1 || true
	# libcni caches results outside containerd's dirs, named after our network.
	rm -f /var/lib/cni/results/kubectl-pgpool-* 2>/dev/null || true
	if [ -f "$N/created-kubelet-chains" ]; then
		say "removing the kubelet's iptables chains"
		local ipt
		for ipt in iptables ip6tables; do
			$ipt -D INPUT -j KUBE-FIREWALL 2>/dev/null || true
			$ipt -D OUTPUT -j KUBE-FIREWALL 2>/dev/null || true
			$ipt -F KUBE-FIREWALL 2>/dev/null || true
			$ipt -X KUBE-FIREWALL 2>/dev/null || true
			for t in filter nat mangle; do $ipt -t "$t" -X KUBE-KUBELET-CANARY 2>/dev/null || true; done
			$ipt -t mangle -X KUBE-IPTABLES-HINT 2>/dev/null || true
		done
	fi
	if [ -f "$N/created-paths" ]; then
		while read -r d; do
			say "removing $d (created by the real node)"
			rm -rf "$d"
		done <"$N/created-paths"
	fi
}

up() {
	local t0=$SECONDS
	BIN="$("$ROOT/hack/build-cluster-bins.sh")"
	if is_up; then
		if [ "${REAL_NODE:-}" = 1 ] && [ ! -f "$DIR/pids/kubelet.pid" ]; then
			say "cluster is up; adding the real node"
			real_node_up
		elif [ "${PETSET:-}" != 1 ] || [ -f "$DIR/pids/petset.pid" ]; then
			say "cluster is already up; nothing to do"
		fi
		if [ "${PETSET:-}" = 1 ] && [ ! -f "$DIR/pids/petset.pid" ]; then
			petset_up
		fi
		write_env
		echo "$KUBECONFIG_OUT"
		return 0
	fi
	if [ -d "$DIR/pids" ]; then
		say "found a stopped or half-started cluster in $DIR; cleaning it up first"
		down
	fi
	mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/etcd"
	echo "$BIN" >"$DIR/bin-dir"
	say "generating certificates"
	pki
	kubeconfig
	local K=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT")

	start etcd "$BIN/etcd" --name default --data-dir "$DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
		--initial-cluster "default=http://127.0.0.1:$ETCD_PEER" --unsafe-no-fsync --log-level warn
	wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

	start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
		--tls-cert-file "$DIR/pki/apiserver.crt" --tls-private-key-file "$DIR/pki/apiserver.key" \
		--client-ca-file "$DIR/pki/ca.crt" \
		--kubelet-client-certificate "$DIR/pki/admin.crt" --kubelet-client-key "$DIR/pki/admin.key" \
		--kubelet-preferred-address-types Hostname,InternalIP \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$DIR/pki/sa.pub" --service-account-signing-key-file "$DIR/pki/sa.key" \
		--service-cluster-ip-range "$SVC_CIDR" --authorization-mode RBAC --allow-privileged \
		--endpoint-reconciler-type none --cert-dir "$DIR/pki/apiserver-certs"
	wait_for kube-apiserver 90 "${K[@]}" get --raw /readyz

	start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG_OUT" \
		--authentication-kubeconfig "$KUBECONFIG_OUT" --authorization-kubeconfig "$KUBECONFIG_OUT" \
		--bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
		--controllers '*,-node-ipam-controller' \
		--service-account-private-key-file "$DIR/pki/sa.key" --root-ca-file "$DIR/pki/ca.crt" \
		--use-service-account-credentials=false --cert-dir "$DIR/pki/kcm-certs"
	start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$KUBECONFIG_OUT" \
		--authentication-kubeconfig "$KUBECONFIG_OUT" --authorization-kubeconfig "$KUBECONFIG_OUT" \
		--bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --cert-dir "$DIR/pki/sched-certs"

	say "installing cert-manager's CRDs"
	local cmdir
	cmdir="$(cd "$ROOT/test/cluster/certmanager" && go mod download -json github.com/cert-manager/cert-manager | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
	"${K[@]}" apply --server-side -f "$cmdir/deploy/crds/" >/dev/null
	"${K[@]}" wait --for condition=established --timeout 60s -f "$cmdir/deploy/crds/" >/dev/null
	"${K[@]}" create namespace cert-manager >/dev/null
	start cert-manager "$BIN/cert-manager-controller" --kubeconfig "$KUBECONFIG_OUT"
	webhook_up

	kwok_stages
	start kwok "$BIN/kwok" --kubeconfig "$KUBECONFIG_OUT" --config "$DIR/kwok-stages.yaml" \
		--manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
		--node-ip 127.0.0.1 --node-port "$KWOK_PORT" --node-lease-duration-seconds 40 --server-address "127.0.0.1:$KWOK_PORT"
	"${K[@]}" apply -f - >/dev/null <<-EOF
		apiVersion: v1
		kind: Node
		metadata:
		  name: $NODE
		  annotations: {kwok.x-k8s.io/node: fake}
		  labels: {type: kwok, kubernetes.io/hostname: $NODE, kubernetes.io/os: linux}
		status:
		  allocatable: {cpu: "64", memory: 256Gi, pods: "500"}
		  capacity: {cpu: "64", memory: 256Gi, pods: "500"}
	EOF
	wait_for "node $NODE Ready" 60 "${K[@]}" wait --for condition=Ready --timeout 1s node/$NODE
	wait_for "node $NODE without the not-ready taint" 60 \
		bash -c "! '$BIN/kubectl' --kubeconfig '$KUBECONFIG_OUT' get node $NODE -o jsonpath='{.spec.taints[*].key}' | grep -q not-ready"
	wait_for "default ServiceAccount" 60 "${K[@]}" -n default get serviceaccount default

	"${K[@]}" apply -f - >/dev/null <<-EOF
		apiVersion: cert-manager.io/v1
		kind: Issuer
		metadata: {name: cluster-up-probe, namespace: cert-manager}
		spec: {selfSigned: {}}
	EOF
	wait_for "cert-manager" 60 "${K[@]}" -n cert-manager wait --for condition=Ready --timeout 1s issuer/cluster-up-probe
	"${K[@]}" -n cert-manager delete issuer cluster-up-probe >/dev/null
	if [ "${REAL_NODE:-}" = 1 ]; then
		real_node_up
	fi
	if [ "${PETSET:-}" = 1 ]; then
		petset_up
	fi
	write_env
	say "cluster is up in $((SECONDS - t0))s; use it with: export KUBECONFIG=$KUBECONFIG_OUT"
	echo "$KUBECONFIG_OUT"
}

# webhook_up starts cert-manager's admission webhook on 127.0.0.1 and
# registers it as cert-manager's chart does (validation of every
# cert-manager resource, the identity of CertificateRequests; failurePolicy
# Fail), then waits until the API server refuses an invalid Certificate
# through it.
webhook_up() {
	start cert-manager-webhook "$BIN/cert-manager-webhook" --kubeconfig "$KUBECONFIG_OUT" \
		--listen "127.0.0.1:$WEBHOOK_PORT" --tls-cert-file "$DIR/pki/webhook.crt" --tls-private-key-file "$DIR/pki/webhook.key"
	local ca
	ca="$(base64 -w0 <"$DIR/pki/ca.crt")"
	"${K[@]}" apply --server-side -f - >/dev/null <<-EOF
		apiVersion: admissionregistration.k8s.io/v1
		kind: ValidatingWebhookConfiguration
		metadata: {name: cert-manager-webhook}
		webhooks:
		- name: webhook.cert-manager.io
		  namespaceSelector:
		    matchExpressions: [{key: cert-manager.io/disable-validation, operator: NotIn, values: ["true"]}]
		  rules:
		  - apiGroups: [cert-manager.io, acme.cert-manager.io]
		    apiVersions: [v1]
		    operations: [CREATE, UPDATE]
		    resources: ["*/*"]
		  admissionReviewVersions: [v1]
		  matchPolicy: Equivalent
		  timeoutSeconds: 30
		  failurePolicy: Fail
		  sideEffects: None
		  clientConfig: {url: "https://127.0.0.1:$WEBHOOK_PORT/validate", caBundle: "$ca"}
		---
		apiVersion: admissionregistration.k8s.io/v1
		kind: MutatingWebhookConfiguration
		metadata: {name: cert-manager-webhook}
		webhooks:
		- name: webhook.cert-manager.io
		  rules:
		  - apiGroups: [cert-manager.io]
		    apiVersions: [v1]
		    operations: [CREATE]
		    resources: [certificaterequests]
		  admissionReviewVersions: [v1]
		  matchPolicy: Equivalent
		  timeoutSeconds: 30
		  failurePolicy: Fail
		  sideEffects: None
		  clientConfig: {url: "https://127.0.0.1:$WEBHOOK_PORT/mutate", caBundle: "$ca"}
	EOF
	wait_for "cert-manager's webhook" 60 webhook_refuses
}

# webhook_refuses succeeds when the webhook refuses an invalid Certificate
# (a common name over 64 characters, which the CRD's schema allows) in a
# server-side dry run.
webhook_refuses() {
	local out
	out="$("${K[@]}" -n cert-manager create --dry-run=server -f - 2>&1 <<-EOF
		apiVersion: cert-manager.io/v1
		kind: Certificate
		metadata: {name: webhook-probe}
		spec: {secretName: webhook-probe, issuerRef: {name: probe}, commonName: $(printf 'c%.0s' {1..65})}
	EOF
	)" || true
	grep -q 'admission webhook "webhook.cert-manager.io" denied' <<<"$out"
}

# established: CRD $1 is served (its Established condition is True).
established() {
	[ "$("${K[@]}" get crd "$1" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')" = True ]
}

# petset_up starts the real PetSet controller (KubeDB's PetSets; built
# once from ../shared/third_party/petset-*.tar.xz by hack/build-petset.sh)
# and installs its CRDs, as the tests that roll a PetSet do: a KubeDB
# layout tried on this cluster then has a controller that replaces an
# evicted PetSet pod. Without the snapshot it says so and goes on.
petset_up() {
	local pdir
	pdir="$("$ROOT/hack/build-petset.sh" | tail -n 1)"
	if [ -z "$pdir" ]; then
		say "no PetSet controller (its source snapshot is missing): PetSets are not served"
		return 0
	fi
	"${K[@]}" apply --server-side --force-conflicts -f "$pdir/crds/apps.k8s.appscode.com_petsets.yaml" -f "$pdir/crds/apps.k8s.appscode.com_placementpolicies.yaml" >/dev/null
	# Not `kubectl wait --for condition=Established`: on a CRD the API
	# server has not given a status yet it fails at once (".status.conditions
	# accessor error"), as it did on a loaded machine.
	wait_for "the PetSet CRD to be established" 60 established petsets.apps.k8s.appscode.com
	(cd "$ROOT" && go build -o "$DIR/petset-run" ./hack/petset)
	start petset "$DIR/petset-run" --kubeconfig "$KUBECONFIG_OUT" --dir "$pdir" --log "$DIR/logs/petset-controller.log"
	wait_for "the PetSet controller" 60 grep -q "Starting workers" "$DIR/logs/petset-controller.log"
}

# write_env writes the contract with tests and scripts: $DIR/env.
write_env() {
	local real=0
	[ -f "$DIR/pids/kubelet.pid" ] && real=1
	cat >"$DIR/env" <<-EOF
		KUBECONFIG=$KUBECONFIG_OUT
		CLUSTER_DIR=$DIR
		BIN_DIR=$BIN
		PORT_BASE=$BASE
		REAL_NODE=$real
	EOF
}

# stop_one NAME stops one process this script started, by its PID.
stop_one() {
	local name=$1
	local f="$DIR/pids/$name.pid"
	[ -f "$f" ] || return 0
	{
		local pid
		pid="$(cat "$f")"
		if kill -0 "$pid" 2>/dev/null; then
			say "stopping $name (pid $pid)"
			kill -TERM "$pid" 2>/dev/null || true
			local deadline=$((SECONDS + 15))
			while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
			if kill -0 "$pid" 2>/dev/null; then
				say "$name did not stop in 15s; killing it"
				kill -KILL "$pid" 2>/dev/null || true
			fi
		fi
		rm -f "$f"
	}
}

# stop_processes stops exactly the processes this script started, by PID.
stop_processes() {
	real_node_down
	for name in petset kwok cert-manager cert-manager-webhook kube-scheduler kube-controller-manager kube-apiserver etcd; do
		stop_one "$name"
	done
}

down() {
	if [ ! -d "$DIR" ]; then
		say "no cluster state in $DIR; nothing to do"
		return 0
	fi
	stop_processes
	rm -rf "$DIR"
	say "cluster stopped and $DIR removed"
}

case "${1:-}" in
up)
	# Not `if ! (up)`: bash ignores set -e in a command whose status is
	# tested, so a failed step inside up would not stop it.
	set +e
	(
		set -e
		up
	)
	rc=$?
	set -e
	if [ $rc -ne 0 ]; then
		say "cluster-up failed; stopping what it started (logs kept in $DIR/logs)"
		stop_processes
		exit 1
	fi
	;;
down) down ;;
petset-down)
	if [ -f "$DIR/pids/petset.pid" ]; then
		stop_one petset
		say "stopped the PetSet controller cluster-up started (the tests start their own)"
	fi
	;;
port-offsets) echo "$PORT_OFFSETS" ;;
status)
	BIN="$(cat "$DIR/bin-dir" 2>/dev/null || echo /nonexistent)"
	if is_up; then echo "up: export KUBECONFIG=$KUBECONFIG_OUT"; else
		echo "down"
		exit 1
	fi
	;;
*)
	echo "usage: $0 up|down|petset-down|status|port-offsets (PETSET=1 up: with the real PetSet controller)" >&2
	exit 2
	;;
esac
