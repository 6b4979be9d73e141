package tls

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pgpool reads one file, ssl_ca_cert, both to verify client certificates and
// to verify its backends' certificates. The plugin keeps that file as a CA
// bundle in a ConfigMap it owns (CA certificates are public), mounted with
// the server certificate: the current issuer's CA first, then, during and
// after change-issuer, the previous issuer's CA, then the CAs of backends
// that serve TLS from another CA.

// Keys of the CA bundle ConfigMap.
const (
	BundleKey     = "ca.pem"          // what pgpool reads: the others joined in this order
	IssuerCAKey   = "issuer-ca.pem"   // the current issuer's CA (ca.crt of the server Secret)
	PreviousCAKey = "previous-ca.pem" // the issuer's CA before change-issuer
	BackendCAKey  = "backend-ca.pem"  // CAs of the backends (--backend-ca)
)

// CABundleName is the ConfigMap with pgpool's CA bundle.
func CABundleName(pgpool string) string { return pgpool + "-kubectl-pgpool-ca" }

// ParseCerts returns every certificate of a PEM text.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

// JoinCAs concatenates PEM certificates in order, dropping repeats, so the
// first certificate of the first part stays first.
func JoinCAs(parts ...[]byte) []byte {
	var buf bytes.Buffer
	seen := map[string]bool{}
	for _, p := range parts {
		certs, _ := ParseCerts(p)
		for _, c := range certs {
			if seen[string(c.Raw)] {
				continue
			}
			seen[string(c.Raw)] = true
			_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
	}
	return buf.Bytes()
}

// Subjects names the certificates of a PEM text, for plans and status.
func Subjects(data []byte) []string {
	certs, _ := ParseCerts(data)
	out := make([]string, 0, len(certs))
	for _, c := range certs {
		out = append(out, c.Subject.String())
	}
	return out
}

// Pool returns the certificates of PEM texts as a pool (nil when empty).
func Pool(parts ...[]byte) *x509.CertPool {
	p := x509.NewCertPool()
	n := 0
	for _, d := range parts {
		certs, _ := ParseCerts(d)
		for _, c := range certs {
			p.AddCert(c)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return p
}

// BundleConfigMap is the desired CA bundle ConfigMap.
func BundleConfigMap(ns, pgpool string, issuerCA, previousCA, backendCA []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: CABundleName(pgpool), Namespace: ns,
			Labels: map[string]string{LabelManagedBy: ManagerName, LabelInstance: pgpool}},
		Data: map[string]string{
			BundleKey:     string(JoinCAs(issuerCA, previousCA, backendCA)),
			IssuerCAKey:   string(issuerCA),
			PreviousCAKey: string(previousCA),
			BackendCAKey:  string(backendCA),
		},
	}
}

// Ours reports whether an object carries the plugin's managed-by label for
// this pgpool.
func Ours(m metav1.Object, pgpool string) bool {
	l := m.GetLabels()
	return l[LabelManagedBy] == ManagerName && l[LabelInstance] == pgpool
}

// NotOursError refuses to change or delete an object someone else owns.
type NotOursError struct{ Kind, Namespace, Name string }

func (e *NotOursError) Error() string {
	return fmt.Sprintf("%s %s/%s exists but was not created by kubectl-pgpool (no label %s=%s): kubectl-pgpool will not change or delete it; rename or remove it, then run the command again", e.Kind, e.Namespace, e.Name, LabelManagedBy, ManagerName)
}
