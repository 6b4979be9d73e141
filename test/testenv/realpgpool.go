package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
)

// PgpoolSelector selects the pods of the KubeDB-layout fixtures.
const PgpoolSelector = "app.kubernetes.io/instance=pgpool,app.kubernetes.io/name=pgpools.kubedb.com"

// RealPgpool puts the KubeDB-layout pgpool with real pods (the real node)
// into a new namespace, with its issuers and a backend serving TLS from its
// own CA, the fixture's objects changed by mutate first (nil: as they are),
// and waits until replicas pods are Ready.
func (e *Env) RealPgpool(t testing.TB, replicas int, mutate func(*unstructured.Unstructured)) string {
	t.Helper()
	ns := e.Namespace(t)
	e.Apply(t, ns, e.Fixture(t, "issuers.yaml"), 0)
	e.Apply(t, ns, e.Fixture(t, "backend-tls.yaml"), 0)
	ctx := Context(t, 2*time.Minute)
	if _, err := issuing.WaitReady(ctx, e.CertMgr.CertmanagerV1(), ns, "pgpool-backend-cert", 0, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	objs := e.Fixture(t, "kubedb-real.yaml")
	if mutate != nil {
		for _, o := range objs {
			mutate(o)
		}
	}
	e.Apply(t, ns, objs, replicas)
	e.WaitIssuerReady(t, ctx, ns, "pgpool-issuer")
	e.WaitIssuerReady(t, ctx, ns, "pp-new-issuer")
	e.WaitPodsReady(t, ns, PgpoolSelector, replicas, 3*time.Minute)
	return ns
}

// PreStopSleep gives every container of the pgpool StatefulSet a preStop
// sleep of secs seconds (the grace period stays longer): the pod keeps
// serving while its endpoint leaves the Services and kube-proxy reprograms.
func PreStopSleep(secs int64) func(*unstructured.Unstructured) {
	return func(o *unstructured.Unstructured) {
		eachContainer(o, func(c map[string]any) {
			c["lifecycle"] = map[string]any{"preStop": map[string]any{"sleep": map[string]any{"seconds": secs}}}
		})
	}
}

// PreStopFastShutdown is PreStopSleep, after which the pgpool container
// stops pgpool itself with a fast shutdown (pgpool -m fast stop: clients are
// disconnected at once) instead of the smart one the kubelet's SIGTERM asks
// for (wait for clients to leave, until the grace period ends).
func PreStopFastShutdown(secs int64) func(*unstructured.Unstructured) {
	return func(o *unstructured.Unstructured) {
		PreStopSleep(secs)(o)
		eachContainer(o, func(c map[string]any) {
			if c["name"] == "pgpool" {
				c["lifecycle"] = map[string]any{"preStop": map[string]any{"exec": map[string]any{"command": []any{"sh", "-c",
					fmt.Sprintf("sleep %d; pgpool -f /opt/pgpool-II/etc/pgpool.conf -m fast stop || true", secs)}}}}
			}
		})
	}
}

// eachContainer changes each container of o's pod template with f, when o
// is a StatefulSet.
func eachContainer(o *unstructured.Unstructured, f func(c map[string]any)) {
	if o.GetKind() != "StatefulSet" {
		return
	}
	cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		f(c.(map[string]any))
	}
	_ = unstructured.SetNestedSlice(o.Object, cs, "spec", "template", "spec", "containers")
}

// ServiceAddr is ClusterIP:port of Service name in ns (kube-proxy programs
// it on the host).
func (e *Env) ServiceAddr(t testing.TB, ns, name string) string {
	t.Helper()
	svc, err := e.Kube.CoreV1().Services(ns).Get(Context(t, time.Minute), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(svc.Spec.ClusterIP, fmt.Sprint(svc.Spec.Ports[0].Port))
}

// PgpoolLogin logs in as postgres: with the client certificate the Secret
// pgpool-client-cert holds at that moment (cert auth, once add made one),
// and the fixture's password (md5 before add and after remove).
func (e *Env) PgpoolLogin(ns string) LoadLogin {
	return func(ctx context.Context) (string, string, *tls.Certificate) {
		var cert *tls.Certificate
		if s, err := e.Kube.CoreV1().Secrets(ns).Get(ctx, "pgpool-client-cert", metav1.GetOptions{}); err == nil {
			if kp, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"]); err == nil {
				cert = &kp
			}
		}
		return "postgres", "pgpool-demo-password", cert
	}
}

// SeedOperations are the seed's four operations on the real fixture, in
// order: add (sslMode require, clientAuthMode cert, trusting the backend's
// CA), rotate, change-issuer, remove.
func SeedOperations() [][]string {
	return [][]string{
		{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert",
			"--client-org", "pgpool", "--client-ou", "client", "--backend-ca", "secret/pgpool-backend-cert"},
		{"tls", "rotate", "pgpool"},
		{"tls", "change-issuer", "pgpool", "--issuer", "pp-new-issuer"},
		{"tls", "remove", "pgpool"},
	}
}
