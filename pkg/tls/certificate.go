// Package tls owns pgpool's certificates as data: the desired server and
// client Certificates, reading a Certificate's conditions and revision, the
// CA bundle pgpool reads, and what a TLS Secret holds (subject, issuer, SANs,
// serial, expiry, fingerprint) without ever exposing its private key. It
// does no I/O; talking to cert-manager is pkg/tls/issuing's.
package tls

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels put on every object kubectl-pgpool creates.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelInstance  = "kubectl-pgpool.io/instance"
	ManagerName    = "kubectl-pgpool"
)

// Params are the inputs of the desired Certificates.
type Params struct {
	Namespace   string
	Name        string // the pgpool
	Issuer      cmmeta.IssuerReference
	Services    []string // Services that select the pgpool pods
	Headless    string   // the headless Service, for pod DNS names
	PodNames    []string
	ExtraDNS    []string
	ExtraIPs    []string // IP SANs of the server certificate beside 127.0.0.1
	ClientUser  string
	ClientOrgs  []string
	ClientOUs   []string
	Duration    time.Duration
	RenewBefore time.Duration
	// Duration and RenewBefore are the server certificate's,
	// ClientDuration and ClientRenewBefore the client certificate's (0:
	// cert-manager's default).
	ClientDuration    time.Duration
	ClientRenewBefore time.Duration
	ServerSecret      string
	ClientSecret      string
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

// durations sets the lifetime and renewal of a Certificate (0: cert-manager's
// defaults).
func durations(c *cmapi.CertificateSpec, duration, renewBefore time.Duration) {
	if duration > 0 {
		c.Duration = &metav1.Duration{Duration: duration}
	}
	if renewBefore > 0 {
		c.RenewBefore = &metav1.Duration{Duration: renewBefore}
	}
}

// ServerCertificate is the Certificate pgpool serves.
func ServerCertificate(p Params, name string) *cmapi.Certificate {
	c := certificate(p, name, cmapi.CertificateSpec{
		SecretName:  p.ServerSecret,
		CommonName:  p.Name,
		DNSNames:    ServerDNSNames(p),
		IPAddresses: serverIPs(p),
		Subject:     &cmapi.X509Subject{Organizations: []string{"kubedb"}},
		Usages:      []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageServerAuth},
		IssuerRef:   p.Issuer,
		PrivateKey:  &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048, RotationPolicy: cmapi.RotationPolicyAlways},
	})
	durations(&c.Spec, p.Duration, p.RenewBefore)
	return c
}

// certificate is a Certificate of pgpool with spec.
func certificate(p Params, name string, spec cmapi.CertificateSpec) *cmapi.Certificate {
	// The Secret carries the same labels, so that it is known as ours even
	// after its Certificate is gone (a remove that stopped in between).
	spec.SecretTemplate = &cmapi.CertificateSecretTemplate{Labels: map[string]string{LabelManagedBy: ManagerName, LabelInstance: p.Name}}
	c := &cmapi.Certificate{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: "Certificate"},
		ObjectMeta: meta(p, name),
		Spec:       spec,
	}
	return c
}

// ClientCertificate is the certificate clients (and the seed's psql) use for
// cert auth: CN is the pgpool user, the subject comes from the flags.
func ClientCertificate(p Params, name string) *cmapi.Certificate {
	c := certificate(p, name, cmapi.CertificateSpec{
		SecretName: p.ClientSecret,
		CommonName: p.ClientUser,
		Subject:    &cmapi.X509Subject{Organizations: p.ClientOrgs, OrganizationalUnits: p.ClientOUs},
		Usages:     []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageClientAuth},
		IssuerRef:  p.Issuer,
		PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048, RotationPolicy: cmapi.RotationPolicyAlways},
	})
	durations(&c.Spec, p.ClientDuration, p.ClientRenewBefore)
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

// IssuerKind is an issuerRef's kind as cert-manager reads it: empty means
// Issuer.
func IssuerKind(k string) string {
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

// serverIPs are the server certificate's IP SANs: 127.0.0.1 (port-forwards
// and pgpool's own health checks), then the extras.
func serverIPs(p Params) []string {
	out := []string{"127.0.0.1"}
	for _, ip := range p.ExtraIPs {
		if ip != "127.0.0.1" {
			out = append(out, ip)
		}
	}
	return out
}

// InvalidCertificateError is a Certificate the plugin would write that
// cert-manager's webhook refuses: found before any write.
type InvalidCertificateError struct {
	Namespace, Name string
	Problems        []string
}

func (e *InvalidCertificateError) Error() string {
	return fmt.Sprintf("Certificate %s/%s would be refused by cert-manager: %s; nothing was changed", e.Namespace, e.Name, strings.Join(e.Problems, "; "))
}

// Validate checks c against the rules of cert-manager's webhook that what
// the user gives can break (a common name of at most 64 characters, the
// minimum duration and renewBefore, renewBefore shorter than the duration),
// so that a cluster without the webhook refuses it as one with it does, and
// before the first write. what names the flag or field behind the common
// name.
func Validate(c *cmapi.Certificate, what string) error {
	var problems []string
	if n := len(c.Spec.CommonName); n > 64 {
		problems = append(problems, fmt.Sprintf("spec.commonName (%s) is %d characters long, at most 64 are allowed", what, n))
	}
	duration := 90 * 24 * time.Hour // cert-manager's default
	if c.Spec.Duration != nil {
		duration = c.Spec.Duration.Duration
	}
	if duration < cmapi.MinimumCertificateDuration {
		problems = append(problems, fmt.Sprintf("spec.duration %s is shorter than the minimum %s", duration, cmapi.MinimumCertificateDuration))
	}
	if rb := c.Spec.RenewBefore; rb != nil {
		if rb.Duration < cmapi.MinimumRenewBefore {
			problems = append(problems, fmt.Sprintf("spec.renewBefore %s is shorter than the minimum %s", rb.Duration, cmapi.MinimumRenewBefore))
		}
		if rb.Duration >= duration {
			problems = append(problems, fmt.Sprintf("spec.renewBefore %s is not shorter than the duration %s", rb.Duration, duration))
		}
	}
	if len(problems) > 0 {
		return &InvalidCertificateError{Namespace: c.Namespace, Name: c.Name, Problems: problems}
	}
	return nil
}
