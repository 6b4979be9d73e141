package tls

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
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
// that serve TLS from another CA. While the issuer's CA is renewed in place
// (same issuer, a new key), the renewed CA comes second, as the next CA:
// every pod trusts it before any certificate it signs is issued.

// Keys of the CA bundle ConfigMap.
const (
	BundleKey     = "ca.pem"          // what pgpool reads: the others joined in this order
	IssuerCAKey   = "issuer-ca.pem"   // the current issuer's CA (ca.crt of the server Secret)
	NextCAKey     = "next-ca.pem"     // the issuer's renewed CA, before the certificates it signs are issued
	PreviousCAKey = "previous-ca.pem" // the issuer's CA before change-issuer or its renewal
	RecordKey     = "ca-record.json"  // when the next and previous CAs came, and when each may go (CARecord)
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
	OriginNext     = "next"     // the issuer's renewed CA, trusted before it signs what pgpool serves
	OriginPrevious = "previous" // the issuer's CA before change-issuer or its renewal, kept for overlap
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
	// Since and Until are the bundle's record of a next or previous CA
	// (CARecord): when it came, and when it may go.
	Since *time.Time `json:"since,omitempty"`
	Until string     `json:"mayGo,omitempty"`
}

// CARecord is what the bundle records of a CA that is there for a while
// only (the next and the previous CA): when it came, and when it may go.
type CARecord struct {
	SHA256  string    `json:"sha256"`
	Subject string    `json:"subject"`
	Origin  string    `json:"origin"`
	Since   time.Time `json:"since"`
	// After: it may go from then on (--ca-overlap). Zero with
	// UntilReissued.
	After time.Time `json:"after,omitzero"`
	// UntilReissued: it may go once no client certificate the plugin
	// issued is signed by it any more (the default overlap); Expires is
	// the last of those certificates' expiry when it was recorded.
	UntilReissued bool      `json:"untilReissued,omitempty"`
	Expires       time.Time `json:"expires,omitzero"`
}

// MayGo says when the CA may go, for plans and status.
func (r CARecord) MayGo() string {
	switch {
	case r.Origin == OriginNext:
		return "becomes the issuer's CA when the certificates are re-issued"
	case !r.After.IsZero():
		return "after " + r.After.UTC().Format(time.RFC3339) + " (--ca-overlap)"
	case r.UntilReissued && !r.Expires.IsZero():
		return "when every client certificate of the plugin's it signed is re-issued, at the latest " + r.Expires.UTC().Format(time.RFC3339)
	case r.UntilReissued:
		return "when every client certificate of the plugin's it signed is re-issued"
	}
	return "at the next tls rotate"
}

// Records reads the bundle's CA record (nil when it has none or it does
// not parse).
func Records(data map[string]string) []CARecord {
	var out []CARecord
	if data[RecordKey] == "" || json.Unmarshal([]byte(data[RecordKey]), &out) != nil {
		return nil
	}
	return out
}

// RecordOf is the record of the CA with this SHA-256, if any.
func RecordOf(recs []CARecord, sum string) (CARecord, bool) {
	for _, r := range recs {
		if r.SHA256 == sum {
			return r, true
		}
	}
	return CARecord{}, false
}

// Fingerprint is the SHA-256 (hex) of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
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
	var recs []CARecord
	if changed == "" {
		recs = Records(data)
	}
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
		case in([]byte(data[NextCAKey]), c):
			b.Origin = OriginNext
		case in([]byte(data[PreviousCAKey]), c):
			b.Origin = OriginPrevious
		case in([]byte(data[BackendCAKey]), c):
			b.Origin = OriginBackend
		case in([]byte(data[IssuerCAKey]), c):
			b.Origin, b.Why = OriginUnknown, "in "+IssuerCAKey+" but not the issuer's CA (ca.crt of the server Secret)"
		default:
			b.Origin, b.Why = OriginUnknown, "in "+BundleKey+" only: not written by kubectl-pgpool"
		}
		if r, ok := RecordOf(recs, b.SHA256); ok && r.Origin == b.Origin {
			since := r.Since
			b.Since, b.Until = &since, r.MayGo()
		}
		out = append(out, b)
	}
	return out
}

// BundleParts are the parts of the CA bundle, in the order pgpool reads
// them: the issuer's CA, the next one (its renewal in place, before the
// certificates it signs are issued), the previous one, the backends', and
// CAs of unknown origin a user chose to keep. Records are the record of
// the next and previous CAs.
type BundleParts struct {
	Issuer, Next, Previous, Backend, Kept []byte
	Records                               []CARecord
}

// BundleConfigMap is the desired CA bundle ConfigMap.
func BundleConfigMap(ns, pgpool string, p BundleParts) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: CABundleName(pgpool), Namespace: ns,
			Labels: map[string]string{LabelManagedBy: ManagerName, LabelInstance: pgpool}},
		Data: map[string]string{
			BundleKey:     string(JoinCAs(p.Issuer, p.Next, p.Previous, p.Backend, p.Kept)),
			IssuerCAKey:   string(p.Issuer),
			PreviousCAKey: string(p.Previous),
			BackendCAKey:  string(p.Backend),
		},
	}
	if len(p.Next) > 0 {
		cm.Data[NextCAKey] = string(p.Next)
	}
	if len(p.Kept) > 0 {
		cm.Data[KeptCAKey] = string(p.Kept)
	}
	if len(p.Records) > 0 {
		b, _ := json.Marshal(p.Records)
		cm.Data[RecordKey] = string(b)
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
