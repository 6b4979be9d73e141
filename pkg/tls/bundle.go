package tls

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"
	"time"

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
	KeptCAKey     = "kept-ca.pem"     // CAs of unknown origin a user chose to keep (--keep-ca)
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

// Origins of a CA in the bundle (BundleCA.Origin).
const (
	OriginIssuer   = "issuer"   // the current issuer's CA
	OriginPrevious = "previous" // the issuer's CA before change-issuer, kept for overlap
	OriginBackend  = "backend"  // a backend's CA (--backend-ca)
	OriginKept     = "kept"     // a CA a user chose to keep (--keep-ca)
	OriginUnknown  = "unknown"  // none of those: someone else put it there
)

// BundleCA is one CA of the bundle pgpool reads as ssl_ca_cert, and where
// it comes from. An unknown CA can sign client certificates that pgpool
// accepts under cert auth (any CN, so any user).
type BundleCA struct {
	Subject  string    `json:"subject"`
	SHA256   string    `json:"sha256"`
	NotAfter time.Time `json:"notAfter"`
	Origin   string    `json:"origin"`
	// Why says where an unknown CA was found.
	Why string `json:"why,omitempty"`
}

// AuditBundle lists every CA of the bundle's ca.pem with its origin:
// issuerCA (ca.crt of the server Secret today; nil when not known) and
// the previous, backend and kept parts the plugin recorded. A CA only in
// ca.pem, or in issuer-ca.pem but not the issuer's, is unknown. changed
// (not "") says the bundle is not as the plugin last wrote it (why): its
// parts prove nothing then, and every CA but the issuer's is unknown.
func AuditBundle(data map[string]string, issuerCA []byte, changed string) []BundleCA {
	in := func(part []byte, c *x509.Certificate) bool {
		certs, _ := ParseCerts(part)
		for _, p := range certs {
			if bytes.Equal(p.Raw, c.Raw) {
				return true
			}
		}
		return false
	}
	certs, _ := ParseCerts([]byte(data[BundleKey]))
	out := make([]BundleCA, 0, len(certs))
	for _, c := range certs {
		sum := sha256.Sum256(c.Raw)
		b := BundleCA{Subject: c.Subject.String(), SHA256: hex.EncodeToString(sum[:]), NotAfter: c.NotAfter}
		switch {
		case issuerCA != nil && in(issuerCA, c):
			b.Origin = OriginIssuer
		case changed != "":
			b.Origin, b.Why = OriginUnknown, changed
		case issuerCA == nil && in([]byte(data[IssuerCAKey]), c):
			b.Origin = OriginIssuer
		case in([]byte(data[KeptCAKey]), c):
			b.Origin = OriginKept
		case in([]byte(data[PreviousCAKey]), c):
			b.Origin = OriginPrevious
		case in([]byte(data[BackendCAKey]), c):
			b.Origin = OriginBackend
		case in([]byte(data[IssuerCAKey]), c):
			b.Origin, b.Why = OriginUnknown, "in "+IssuerCAKey+" but not the issuer's CA (ca.crt of the server Secret)"
		default:
			b.Origin, b.Why = OriginUnknown, "in "+BundleKey+" only: not written by kubectl-pgpool"
		}
		out = append(out, b)
	}
	return out
}

// BundleConfigMap is the desired CA bundle ConfigMap (keptCA: CAs of
// unknown origin the user chose to keep, last).
func BundleConfigMap(ns, pgpool string, issuerCA, previousCA, backendCA, keptCA []byte) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: CABundleName(pgpool), Namespace: ns,
			Labels: map[string]string{LabelManagedBy: ManagerName, LabelInstance: pgpool}},
		Data: map[string]string{
			BundleKey:     string(JoinCAs(issuerCA, previousCA, backendCA, keptCA)),
			IssuerCAKey:   string(issuerCA),
			PreviousCAKey: string(previousCA),
			BackendCAKey:  string(backendCA),
		},
	}
	if len(keptCA) > 0 {
		cm.Data[KeptCAKey] = string(keptCA)
	}
	return cm
}

// PEMOf is the PEM of each certificate in data whose SHA-256 (hex) starts
// with one of the prefixes, in data's order.
func PEMOf(data []byte, prefixes []string) []byte {
	certs, _ := ParseCerts(data)
	var out []byte
	for _, c := range certs {
		sum := sha256.Sum256(c.Raw)
		h := hex.EncodeToString(sum[:])
		for _, p := range prefixes {
			if p != "" && strings.HasPrefix(h, strings.ToLower(p)) {
				out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
				break
			}
		}
	}
	return out
}

// Digest is a digest of a Secret's or ConfigMap's data: every key and
// value, in key order.
func Digest(data map[string][]byte) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s%d:", len(k), k, len(data[k]))
		h.Write(data[k])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// BundleDigest is Digest of a CA bundle's data, recorded on the workload
// when the plugin writes the bundle: a bundle whose data no longer has it
// was changed by someone else since.
func BundleDigest(data map[string]string) string {
	b := make(map[string][]byte, len(data))
	for k, v := range data {
		b[k] = []byte(v)
	}
	return Digest(b)
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

// SignedBy reports whether the first certificate of leafPEM is signed by
// one of the certificates of caPEM (its signature checks out against that
// CA's key): false for a leaf issued before its issuer's CA was renewed
// with a new key.
func SignedBy(leafPEM, caPEM []byte) bool {
	leaf, err := ParseFirstCert(leafPEM)
	if err != nil {
		return false
	}
	cas, _ := ParseCerts(caPEM)
	for _, ca := range cas {
		if leaf.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// InPEM reports whether a PEM text holds the certificate with this
// SHA-256 (hex).
func InPEM(data []byte, sum string) bool {
	certs, _ := ParseCerts(data)
	for _, c := range certs {
		if s := sha256.Sum256(c.Raw); hex.EncodeToString(s[:]) == sum {
			return true
		}
	}
	return false
}
