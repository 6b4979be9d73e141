package apply

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/target"
	tlspkg "github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
)

// Verify modes (--verify).
const (
	VerifyOn       = "true"
	VerifyOff      = "false"
	VerifyRequired = "required"
)

// pgpoolPort is the port pgpool listens on, from its config (9999 default).
func (r *Runner) pgpoolPort() int {
	if v, ok := conf.ParsePgpoolConf(r.Target.Config.PgpoolConf).Get("port"); ok {
		if p, err := strconv.Atoi(v); err == nil {
			return p
		}
	}
	return 9999
}

func (r *Runner) dialer() verify.Dialer {
	if r.Dial != nil {
		return r.Dial
	}
	return PortForwardDialer(r.Clients.Config, r.Clients.Core, r.Target.Namespace, r.pgpoolPort())
}

// expectation reads what pods must serve from the server (and client) Secret.
func (r *Runner) expectation(ctx context.Context, tlsOn bool) (verify.Expect, error) {
	want := verify.Expect{TLS: tlsOn, ServerName: "localhost"}
	if !tlsOn {
		return want, nil
	}
	ns := r.Target.Namespace
	sec, err := r.Clients.Core.Secrets(ns).Get(ctx, target.ServerCertName(r.Target.Name), metav1.GetOptions{})
	if err != nil {
		return want, fmt.Errorf("read Secret %s/%s: %w", ns, target.ServerCertName(r.Target.Name), err)
	}
	if want.Leaf, err = tlspkg.ParseFirstCert(sec.Data["tls.crt"]); err != nil {
		return want, fmt.Errorf("Secret %s/%s: tls.crt: %w", ns, sec.Name, err)
	}
	want.Roots = x509.NewCertPool()
	if !want.Roots.AppendCertsFromPEM(sec.Data["ca.crt"]) {
		want.Roots = nil
	}
	if cs, err := r.Clients.Core.Secrets(ns).Get(ctx, target.ClientCertName(r.Target.Name), metav1.GetOptions{}); err == nil {
		if kp, err := tls.X509KeyPair(cs.Data["tls.crt"], cs.Data["tls.key"]); err == nil {
			want.ClientCert = &kp
		}
	}
	return want, nil
}

// checkPod proves by a handshake what one pod serves. A pod that cannot be
// reached at all is reported once and skipped, unless --verify=required.
func (r *Runner) checkPod(ctx context.Context, pod string, tlsOn bool, report func(string)) (string, error) {
	if r.Verify == VerifyOff || r.verifyUnavailable {
		return "", nil
	}
	s, err := r.Probe(ctx, pod, tlsOn)
	var de *verify.DialError
	if errors.As(err, &de) {
		if r.Verify == VerifyRequired {
			return "", fmt.Errorf("handshake check (--verify=required): %w", err)
		}
		r.verifyUnavailable = true
		report(fmt.Sprintf("handshake check skipped for every pod: %v (a node without a kubelet, such as kwok's, cannot port-forward; --verify=required makes this an error)", err))
		return "handshake not checked", nil
	}
	if err != nil {
		return "", err
	}
	if !s.TLS {
		return "SSLRequest answered 'N' (no TLS), as expected", nil
	}
	return fmt.Sprintf("serves serial %s over %s", s.Serial, s.Version), nil
}

// Probe handshakes with one pod and compares what it serves with the TLS
// Secret (tlsOn) or expects no TLS at all (!tlsOn). It is the check
// behind `tls status`: the errors are verify's DialError (the pod cannot be
// reached) and MismatchError (it serves something else), or a Secret that
// cannot be read.
func (r *Runner) Probe(ctx context.Context, pod string, tlsOn bool) (*verify.Served, error) {
	want, err := r.expectation(ctx, tlsOn)
	if err != nil {
		return nil, err
	}
	return verify.Check(ctx, r.dialer(), pod, want)
}
