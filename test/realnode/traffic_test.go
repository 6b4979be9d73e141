package realnode

import (
	"strings"
	"testing"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// Clients that reach pgpool through its Service (kube-proxy on the host)
// keep working through the seed's four operations on 3 replicas with the
// setting the README recommends (a preStop sleep, so that a pod keeps
// serving until kube-proxy stops sending it new connections): a client
// that reconnects and retries once after an error sees no failed query; a
// client that does not retry sees its failures reported.
func TestServiceTrafficDuringRolls(t *testing.T) {
	if !env.Cluster.RealNode {
		t.Fatal("the cluster has no real node: start it with REAL_NODE=1 make cluster-up")
	}
	const replicas, clients = 3, 4
	ns := env.RealPgpool(t, replicas, testenv.PreStopSleep(5))
	addr := env.ServiceAddr(t, ns, "pgpool")
	login := env.PgpoolLogin(ns)

	// Before anything: the Service answers through kube-proxy.
	warm := testenv.StartLoad(addr, 1, true, login)
	ok := warm.WaitFirst(time.Minute)
	if r := warm.Stop(); !ok {
		t.Fatalf("no query through Service pgpool at %s within a minute: %s; %s", addr, r, strings.Join(r.Errors, "; "))
	}

	for _, op := range testenv.SeedOperations() {
		load := testenv.StartLoad(addr, clients, true, login)
		roll(t, ns, replicas, op...)
		r := load.Stop()
		t.Logf("%s: %s", op[1], r)
		if r.Failed > 0 {
			t.Errorf("%s: %d queries failed even after a reconnect and a retry: %s", op[1], r.Failed, strings.Join(r.Errors, "; "))
		}
		if r.Queries == 0 {
			t.Errorf("%s: no query succeeded during the roll", op[1])
		}
	}

	// A client that does not retry: the roll breaks its connections, and
	// the failures are reported, not hidden.
	load := testenv.StartLoad(addr, clients, false, login)
	roll(t, ns, replicas, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--backend-ca", "secret/pgpool-backend-cert")
	r := load.Stop()
	t.Logf("add, clients without retry: %s", r)
	if r.Dropped == 0 || r.Failed == 0 {
		t.Errorf("clients without retry through a roll of every pod: %s, want dropped connections and failed queries reported", r)
	}
}
