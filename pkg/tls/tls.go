// Package tls owns pgpool's cert-manager side: the desired server and client
// Certificates, triggering a re-issue the way `cmctl renew` does, waiting by
// watch for a Certificate's new revision to be Ready, checking that an issuer
// is Ready, and reading what a TLS Secret holds (subject, issuer, SANs,
// serial, expiry, fingerprint) without ever exposing its private key.
package tls

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/typed/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/retry"
)

// Labels put on every object kubectl-pgpool creates.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelInstance  = "kubectl-pgpool.io/instance"
	ManagerName    = "kubectl-pgpool"
)

// Params are the inputs of the desired Certificates.
type Params struct {
	Namespace    string
	Name         string // the pgpool
	Issuer       cmmeta.IssuerReference
	Services     []string // Services that select the pgpool pods
	Headless     string   // the headless Service, for pod DNS names
	PodNames     []string
	ExtraDNS     []string
	ClientUser   string
	ClientOrgs   []string
	ClientOUs    []string
	Duration     time.Duration
	RenewBefore  time.Duration
	ServerSecret string
	ClientSecret string
}

// ServerDNSNames are the names a client may use to reach pgpool: each
// Service in its short, namespaced, .svc and .svc.cluster.local forms, each
// pod under the headless Service, localhost (for port-forwards), and extras.
func ServerDNSNames(p Params) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	svcs := append([]string{p.Name}, p.Services...)
	for _, s := range svcs {
		add(s)
		add(s + "." + p.Namespace)
		add(s + "." + p.Namespace + ".svc")
		add(s + "." + p.Namespace + ".svc.cluster.local")
	}
	if p.Headless != "" {
		for _, pod := range p.PodNames {
			add(pod + "." + p.Headless + "." + p.Namespace + ".svc")
			add(pod + "." + p.Headless + "." + p.Namespace + ".svc.cluster.local")
		}
	}
	add("localhost")
	for _, d := range p.ExtraDNS {
		add(d)
	}
	return out
}

func meta(p Params, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: name, Namespace: p.Namespace,
		Labels: map[string]string{LabelManagedBy: ManagerName, LabelInstance: p.Name},
	}
}

func durations(p Params, c *cmapi.CertificateSpec) {
	if p.Duration > 0 {
		c.Duration = &metav1.Duration{Duration: p.Duration}
	}
	if p.RenewBefore > 0 {
		c.RenewBefore = &metav1.Duration{Duration: p.RenewBefore}
	}
}

// ServerCertificate is the Certificate pgpool serves.
func ServerCertificate(p Params, name string) *cmapi.Certificate {
	c := &cmapi.Certificate{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: "Certificate"},
		ObjectMeta: meta(p, name),
		Spec: cmapi.CertificateSpec{
			SecretName:  p.ServerSecret,
			CommonName:  p.Name,
			DNSNames:    ServerDNSNames(p),
			IPAddresses: []string{"127.0.0.1"},
			Subject:     &cmapi.X509Subject{Organizations: []string{"kubedb"}},
			Usages:      []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageServerAuth},
			IssuerRef:   p.Issuer,
			PrivateKey:  &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048, RotationPolicy: cmapi.RotationPolicyAlways},
		},
	}
	durations(p, &c.Spec)
	return c
}

// ClientCertificate is the certificate clients (and the seed's psql) use for
// cert auth: CN is the pgpool user, the subject comes from the flags.
func ClientCertificate(p Params, name string) *cmapi.Certificate {
	c := &cmapi.Certificate{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: "Certificate"},
		ObjectMeta: meta(p, name),
		Spec: cmapi.CertificateSpec{
			SecretName: p.ClientSecret,
			CommonName: p.ClientUser,
			Subject:    &cmapi.X509Subject{Organizations: p.ClientOrgs, OrganizationalUnits: p.ClientOUs},
			Usages:     []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageClientAuth},
			IssuerRef:  p.Issuer,
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048, RotationPolicy: cmapi.RotationPolicyAlways},
		},
	}
	durations(p, &c.Spec)
	return c
}

// Condition returns a Certificate condition.
func Condition(c *cmapi.Certificate, t cmapi.CertificateConditionType) *cmapi.CertificateCondition {
	for i := range c.Status.Conditions {
		if c.Status.Conditions[i].Type == t {
			return &c.Status.Conditions[i]
		}
	}
	return nil
}

// IsReady reports whether the Certificate is Ready for its current spec.
func IsReady(c *cmapi.Certificate) bool {
	r := Condition(c, cmapi.CertificateConditionReady)
	return r != nil && r.Status == cmmeta.ConditionTrue && r.ObservedGeneration == c.Generation
}

// Revision returns status.revision, 0 when unset.
func Revision(c *cmapi.Certificate) int {
	if c.Status.Revision == nil {
		return 0
	}
	return *c.Status.Revision
}

// TriggerIssuance sets the Issuing condition through the status subresource,
// as `cmctl renew` does; cert-manager then issues a new revision.
func TriggerIssuance(ctx context.Context, cm cmclient.CertmanagerV1Interface, ns, name string, dryRun []string) error {
	// cert-manager writes the status concurrently: re-read and retry on 409.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		crt, err := cm.Certificates(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get Certificate %s/%s: %w", ns, name, err)
		}
		if c := Condition(crt, cmapi.CertificateConditionIssuing); c != nil && c.Status == cmmeta.ConditionTrue {
			return nil // already issuing
		}
		now := metav1.Now()
		crt.Status.Conditions = append(crt.Status.Conditions, cmapi.CertificateCondition{
			Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue, Reason: "ManuallyTriggered",
			Message: "Certificate re-issuance manually triggered by kubectl-pgpool", LastTransitionTime: &now,
			ObservedGeneration: crt.Generation,
		})
		_, err = cm.Certificates(ns).UpdateStatus(ctx, crt, metav1.UpdateOptions{FieldManager: ManagerName, DryRun: dryRun})
		if err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("set Issuing condition on Certificate %s/%s: %w", ns, name, err)
		}
		return err
	})
}

// WaitReady waits, by watch, until the Certificate is Ready for its current
// generation with a revision greater than afterRevision, and returns it. A
// Certificate whose issuance failed (Issuing False with reason Failed, or a
// Ready False condition naming a failure) fails the wait at once.
func WaitReady(ctx context.Context, cm cmclient.CertmanagerV1Interface, ns, name string, afterRevision int, report func(string)) (*cmapi.Certificate, error) {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			return cm.Certificates(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			return cm.Certificates(ns).Watch(ctx, o)
		},
	}
	var last *cmapi.Certificate
	lastMsg := ""
	ev, err := watchtools.UntilWithSync(ctx, lw, &cmapi.Certificate{}, nil, func(e watch.Event) (bool, error) {
		if e.Type == watch.Deleted {
			return false, fmt.Errorf("Certificate %s/%s was deleted while waiting for it", ns, name)
		}
		c, ok := e.Object.(*cmapi.Certificate)
		if !ok {
			return false, nil
		}
		last = c
		if IsReady(c) && Revision(c) > afterRevision {
			return true, nil
		}
		if is := Condition(c, cmapi.CertificateConditionIssuing); is != nil && is.Status == cmmeta.ConditionFalse && is.Reason == "Failed" {
			return false, fmt.Errorf("cert-manager failed to issue Certificate %s/%s: %s", ns, name, is.Message)
		}
		msg := "waiting for cert-manager"
		if r := Condition(c, cmapi.CertificateConditionReady); r != nil {
			msg = fmt.Sprintf("Ready=%s %s: %s", r.Status, r.Reason, r.Message)
		}
		if msg != lastMsg && report != nil {
			report(msg)
			lastMsg = msg
		}
		return false, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			state := "it does not exist yet"
			if last != nil {
				state = fmt.Sprintf("revision %d, last status: %s", Revision(last), lastMsg)
			}
			return nil, fmt.Errorf("timed out waiting for Certificate %s/%s to be Ready (%s); check the issuer and `kubectl describe certificate -n %s %s`: %w", ns, name, state, ns, name, context.DeadlineExceeded)
		}
		return nil, err
	}
	return ev.Object.(*cmapi.Certificate), nil
}

// IssuerReady checks that the issuer exists and is Ready.
func IssuerReady(ctx context.Context, cm cmclient.CertmanagerV1Interface, ns string, ref cmmeta.IssuerReference) error {
	var conds []cmapi.IssuerCondition
	switch ref.Kind {
	case "ClusterIssuer":
		ci, err := cm.ClusterIssuers().Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("ClusterIssuer %q not found: create it, or name an existing one with --issuer (list them with: kubectl get clusterissuers)", ref.Name)
		} else if err != nil {
			return fmt.Errorf("get ClusterIssuer %s: %w", ref.Name, err)
		}
		conds = ci.Status.Conditions
	default:
		is, err := cm.Issuers(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("Issuer %q not found in namespace %q: create it, or name an existing one with --issuer (list them with: kubectl get issuers -n %s; for a ClusterIssuer add --issuer-kind ClusterIssuer)", ref.Name, ns, ns)
		} else if err != nil {
			return fmt.Errorf("get Issuer %s/%s: %w", ns, ref.Name, err)
		}
		conds = is.Status.Conditions
	}
	for _, c := range conds {
		if c.Type == cmapi.IssuerConditionReady {
			if c.Status == cmmeta.ConditionTrue {
				return nil
			}
			return fmt.Errorf("%s %q is not Ready (%s: %s): fix it before changing TLS", kindOr(ref.Kind), ref.Name, c.Reason, c.Message)
		}
	}
	return fmt.Errorf("%s %q has no Ready condition yet: is cert-manager running?", kindOr(ref.Kind), ref.Name)
}

func kindOr(k string) string {
	if k == "" {
		return "Issuer"
	}
	return k
}

// CertInfo is what a TLS Secret's certificate says; never the key.
type CertInfo struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	DNSNames  []string  `json:"dnsNames,omitempty"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	SHA256    string    `json:"sha256"`
	CASubject string    `json:"caSubject,omitempty"`
}

// ReadSecret parses tls.crt (and ca.crt) of a TLS Secret.
func ReadSecret(s *corev1.Secret) (*CertInfo, error) {
	leaf, err := ParseFirstCert(s.Data[corev1.TLSCertKey])
	if err != nil {
		return nil, fmt.Errorf("Secret %s/%s: %s: %w", s.Namespace, s.Name, corev1.TLSCertKey, err)
	}
	info := Info(leaf)
	if ca, err := ParseFirstCert(s.Data["ca.crt"]); err == nil {
		info.CASubject = ca.Subject.String()
	}
	return info, nil
}

// Info summarises a certificate.
func Info(c *x509.Certificate) *CertInfo {
	sum := sha256.Sum256(c.Raw)
	dns := append([]string(nil), c.DNSNames...)
	sort.Strings(dns)
	return &CertInfo{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), DNSNames: dns,
		Serial: c.SerialNumber.Text(16), NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		SHA256: hex.EncodeToString(sum[:]),
	}
}

// ParseFirstCert parses the first PEM certificate of data.
func ParseFirstCert(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM certificate")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}
