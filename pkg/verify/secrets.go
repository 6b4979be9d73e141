package verify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	tlspkg "github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// Expectation reads what the pods of pgpool name in ns must serve: with TLS,
// the server Secret's certificate verified against its ca.crt for
// "localhost", presenting the client Secret's certificate if pgpool asks;
// without, the plain 'N'.
func Expectation(ctx context.Context, core corev1client.CoreV1Interface, ns, name string, tlsOn bool) (Expect, error) {
	want := Expect{TLS: tlsOn, ServerName: "localhost"}
	if !tlsOn {
		return want, nil
	}
	// Both Secrets at once; the client one is optional.
	var sec, cs *corev1.Secret
	var err, cerr error
	_ = parallel.All(func() error {
		sec, err = core.Secrets(ns).Get(ctx, pgpool.ServerCertName(name), metav1.GetOptions{})
		return nil
	}, func() error {
		cs, cerr = core.Secrets(ns).Get(ctx, pgpool.ClientCertName(name), metav1.GetOptions{})
		return nil
	})
	if err != nil {
		return want, fmt.Errorf("read Secret %s/%s: %w", ns, pgpool.ServerCertName(name), err)
	}
	if want.Leaf, err = tlspkg.ParseFirstCert(sec.Data["tls.crt"]); err != nil {
		return want, fmt.Errorf("Secret %s/%s: tls.crt: %w", ns, sec.Name, err)
	}
	want.Roots = x509.NewCertPool()
	if !want.Roots.AppendCertsFromPEM(sec.Data["ca.crt"]) {
		want.Roots = nil
	}
	if cerr == nil {
		if kp, err := tls.X509KeyPair(cs.Data["tls.crt"], cs.Data["tls.key"]); err == nil {
			want.ClientCert = &kp
		}
	}
	return want, nil
}
