package realnode

import (
	"context"
	cryptotls "crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// serviceLogin logs in as postgres: with the client certificate the Secret
// holds at that moment (cert auth, once add made one), and the password
// (md5 before add and after remove).
func serviceLogin(ns string) testenv.LoadLogin {
	return func(ctx context.Context) (string, string, *cryptotls.Certificate) {
		var cert *cryptotls.Certificate
		if s, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, "pgpool-client-cert", metav1.GetOptions{}); err == nil {
			if kp, err := cryptotls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"]); err == nil {
				cert = &kp
			}
		}
		return "postgres", "pgpool-demo-password", cert
	}
}

// clusterIP is the address of Service pgpool (kube-proxy programs it on the
// host).
func clusterIP(t *testing.T, ns string) string {
	t.Helper()
	svc, err := env.Kube.CoreV1().Services(ns).Get(testenv.Context(t, time.Minute), "pgpool", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(svc.Spec.ClusterIP, fmt.Sprint(svc.Spec.Ports[0].Port))
}

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
	ns := realPgpoolWith(t, replicas, PreStopSleep(5))
	addr := clusterIP(t, ns)
	login := serviceLogin(ns)

	// Before anything: the Service answers through kube-proxy.
	warm := testenv.StartLoad(addr, 1, true, login)
	ok := warm.WaitFirst(time.Minute)
	if r := warm.Stop(); !ok {
		t.Fatalf("no query through Service pgpool at %s within a minute: %s; %s", addr, r, strings.Join(r.Errors, "; "))
	}

	for _, op := range [][]string{
		{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert",
			"--client-org", "pgpool", "--client-ou", "client", "--backend-ca", "secret/pgpool-backend-cert"},
		{"tls", "rotate", "pgpool"},
		{"tls", "change-issuer", "pgpool", "--issuer", "pp-new-issuer"},
		{"tls", "remove", "pgpool"},
	} {
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

// PreStopSleep gives every container of the pgpool StatefulSet a preStop
// sleep of secs seconds (the grace period stays longer): the pod keeps
// serving while its endpoint leaves the Services and kube-proxy reprograms.
func PreStopSleep(secs int64) func(*unstructured.Unstructured) {
	return func(o *unstructured.Unstructured) {
		if o.GetKind() != "StatefulSet" {
			return
		}
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for i := range cs {
			c := cs[i].(map[string]any)
			c["lifecycle"] = map[string]any{"preStop": map[string]any{"sleep": map[string]any{"seconds": secs}}}
		}
		_ = unstructured.SetNestedSlice(o.Object, cs, "spec", "template", "spec", "containers")
	}
}
