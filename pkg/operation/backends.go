package operation

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
)

// readCAs reads the --backend-ca sources in the pgpool's namespace.
func (r *run) readCAs(ctx context.Context, refs []string) ([]byte, error) {
	ns := r.ref.Namespace
	var parts [][]byte
	for _, ref := range refs {
		src, err := planner.ParseCARef(ref)
		if err != nil {
			return nil, err
		}
		var data []byte
		if src.Secret {
			s, err := r.c.Core.Secrets(ns).Get(ctx, src.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("--backend-ca %s: get Secret %s/%s: %w", ref, ns, src.Name, err)
			}
			data = s.Data[src.Key]
		} else {
			cm, err := r.c.Core.ConfigMaps(ns).Get(ctx, src.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("--backend-ca %s: get ConfigMap %s/%s: %w", ref, ns, src.Name, err)
			}
			data = []byte(cm.Data[src.Key])
		}
		if len(tls.Subjects(data)) == 0 {
			return nil, fmt.Errorf("--backend-ca %s: key %q holds no PEM certificate", ref, src.Key)
		}
		parts = append(parts, data)
	}
	return tls.JoinCAs(parts...), nil
}

// appBindingCA reads the backend's CA from the AppBinding that a KubeDB
// Pgpool's spec.postgresRef names (spec.clientConfig.caBundle), when there
// is one: KubeDB knows the backend's TLS, so the user need not pass
// --backend-ca. No AppBinding, or its API not served: nil.
func (r *run) appBindingCA(ctx context.Context, t *pgpool.Target) ([]byte, string, error) {
	if t.Owner == nil || t.Owner.PostgresRef.Name == "" {
		return nil, "", nil
	}
	ref := t.Owner.PostgresRef
	u, err := r.c.Dynamic.Resource(pgpool.AppBindings).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, "", nil
	case err != nil:
		return nil, "", fmt.Errorf("get AppBinding %s/%s (spec.postgresRef of %s %s/%s): %w", ref.Namespace, ref.Name, t.Owner.Kind, t.Namespace, t.Owner.Name, err)
	}
	b64, _, _ := unstructured.NestedString(u.Object, "spec", "clientConfig", "caBundle")
	if b64 == "" {
		return nil, "", nil
	}
	from := fmt.Sprintf("AppBinding %s/%s (spec.clientConfig.caBundle; spec.postgresRef of %s %s)", ref.Namespace, ref.Name, t.Owner.Kind, t.Owner.Name)
	pem, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(tls.Subjects(pem)) == 0 {
		return nil, "", fmt.Errorf("%s holds no PEM certificate: fix it, or pass --backend-ca", from)
	}
	return pem, from, nil
}

// issuerCA returns the CA an issuer signs with, when it can be read: a CA
// Issuer's Secret in the pgpool's namespace (ca.crt, else tls.crt). Other
// issuers give nil (a ClusterIssuer's Secret lives elsewhere: not asked).
func (r *run) issuerCA(ctx context.Context, spec cmapi.IssuerSpec) []byte {
	ns := r.ref.Namespace
	if spec.CA == nil {
		return nil
	}
	s, err := r.c.Core.Secrets(ns).Get(ctx, spec.CA.SecretName, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	if len(tls.Subjects(s.Data["ca.crt"])) > 0 {
		return s.Data["ca.crt"]
	}
	return s.Data[corev1.TLSCertKey]
}

// checkBackends reaches every backend of pgpool.conf the way pgpool does
// (127.0.0.1/localhost through a pgpool pod itself, a Service or pod DNS
// name through one of its pods, both by port-forward), sends the
// SSLRequest and checks a served chain against trust, the CAs pgpool will
// read. It only reads.
func (c *Clients) checkBackends(ctx context.Context, t *pgpool.Target, trust *x509.CertPool, timeout time.Duration) []status.BackendStatus {
	backends := conf.ParsePgpoolConf(t.Config.PgpoolConf).Backends()
	out := make([]status.BackendStatus, len(backends))
	_ = parallel.Each(len(backends), func(i int) error {
		out[i] = c.checkBackend(ctx, t, backends[i], trust, timeout)
		return nil
	})
	return out
}

// checkBackend reaches one backend (checkBackends does all at once).
func (c *Clients) checkBackend(ctx context.Context, t *pgpool.Target, b conf.Backend, trust *x509.CertPool, timeout time.Duration) status.BackendStatus {
	st := status.BackendStatus{Backend: b}
	pod, port, ns, why := c.backendPod(ctx, t, b)
	if pod == "" {
		st.Check, st.Detail = "not-checked", why
		return st
	}
	st.Via = ns + "/" + pod
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := verify.PortForwardDialer(c.Config, c.Core, ns, port)(cctx, pod)
	var s *verify.Served
	if err == nil {
		s, err = verify.Probe(cctx, conn, trust, "", nil)
	}
	switch {
	case err != nil:
		st.Check, st.Detail = "not-checked", fmt.Sprintf("cannot reach it through pod %s port %d: %v", st.Via, port, err)
	case !s.TLS:
		st.Check, st.Detail = "plain", "answers the SSLRequest with 'N': pgpool talks to it without TLS"
	case s.Verified:
		st.Check, st.Issuer, st.Subject = "tls-trusted", s.Issuer, s.Subject
	default:
		st.Check, st.Issuer, st.Subject = "tls-untrusted", s.Issuer, s.Subject
		st.Detail = "its certificate does not verify against the CAs pgpool will read"
	}
	return st
}

// backendPod finds the pod and port through which a backend is reached as
// pgpool reaches it, or says why it cannot.
func (c *Clients) backendPod(ctx context.Context, t *pgpool.Target, b conf.Backend) (pod string, port int, ns, why string) {
	h := strings.TrimSuffix(b.Host, ".")
	if h == "" || strings.HasPrefix(h, "/") {
		return "", 0, "", "a Unix socket: no TLS"
	}
	if h == "localhost" || (net.ParseIP(h) != nil && net.ParseIP(h).IsLoopback()) {
		for i := range t.Pods {
			if pgpool.PodReady(&t.Pods[i]) {
				return t.Pods[i].Name, b.Port, t.Namespace, ""
			}
		}
		return "", 0, "", "no Ready pgpool pod to reach it from"
	}
	if net.ParseIP(h) != nil {
		return "", 0, "", "an IP address, not a Service name: not checked"
	}
	h = strings.TrimSuffix(strings.TrimSuffix(h, ".cluster.local"), ".svc")
	f := strings.Split(h, ".")
	var podName, svcName string
	ns = t.Namespace
	switch len(f) {
	case 1:
		svcName = f[0]
	case 2:
		svcName, ns = f[0], f[1]
	case 3:
		podName, svcName, ns = f[0], f[1], f[2]
	default:
		return "", 0, "", "not a Service name of this cluster: not checked"
	}
	svc, err := c.Core.Services(ns).Get(ctx, svcName, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return "", 0, "", fmt.Sprintf("no Service %s/%s in this cluster: not checked", ns, svcName)
		}
		return "", 0, "", fmt.Sprintf("get Service %s/%s: %v", ns, svcName, err)
	}
	var chosen corev1.Pod
	if podName != "" {
		p, err := c.Core.Pods(ns).Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			return "", 0, "", fmt.Sprintf("get pod %s/%s: %v", ns, podName, err)
		}
		return p.Name, b.Port, ns, ""
	}
	if len(svc.Spec.Selector) == 0 {
		return "", 0, "", fmt.Sprintf("Service %s/%s has no selector: not checked", ns, svcName)
	}
	pods, err := c.Core.Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return "", 0, "", fmt.Sprintf("list the pods of Service %s/%s: %v", ns, svcName, err)
	}
	found := false
	for i := range pods.Items {
		if pgpool.PodReady(&pods.Items[i]) {
			chosen, found = pods.Items[i], true
			break
		}
	}
	if !found {
		return "", 0, "", fmt.Sprintf("Service %s/%s has no Ready pod", ns, svcName)
	}
	port = b.Port
	for _, sp := range svc.Spec.Ports {
		if int(sp.Port) != b.Port {
			continue
		}
		switch {
		case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0:
			port = int(sp.TargetPort.IntVal)
		case sp.TargetPort.Type == intstr.String:
			for _, c := range chosen.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == sp.TargetPort.StrVal {
						port = int(cp.ContainerPort)
					}
				}
			}
		}
	}
	return chosen.Name, port, ns, ""
}

// backendProblems turns untrusted TLS backends into the preflight error
// (nothing has been written yet), naming the backend, its issuer and the
// flag that fixes it.
func backendProblems(bs []status.BackendStatus) error {
	var msgs []string
	for _, b := range bs {
		if b.Check == "tls-untrusted" {
			msgs = append(msgs, fmt.Sprintf("backend %d (%s:%d, reached through pod %s) serves TLS with a certificate issued by %q, which the CAs pgpool would read do not verify: pgpool verifies its backends against ssl_ca_cert, so every login would fail with \"backend authentication failed\"", b.Index, b.Host, b.Port, b.Via, b.Issuer))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%s; nothing was changed: pass the backend's CA with --backend-ca secret/NAME[/KEY] or configmap/NAME[/KEY] (for a KubeDB Postgres, its CA Secret), so that pgpool trusts it", strings.Join(msgs, "; "))
}
