package tls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/testfiles"
)

func pemFile(t *testing.T, name string) []byte {
	return testfiles.Read(t, "testdata/"+name)
}

// The bundle keeps the order (the issuer's CA first, as the seed's check of
// ca.pem expects) and drops repeats.
func TestBundleOrder(t *testing.T) {
	a, b := pemFile(t, "old-ca.pem"), pemFile(t, "second-ca.pem")
	cm := BundleConfigMap("ns", "pgpool", BundleParts{Issuer: b, Previous: a, Backend: append(append([]byte{}, a...), b...)})
	got := strings.Join(Subjects([]byte(cm.Data[BundleKey])), ";")
	if got != "CN=second-ca;CN=old-ca" {
		t.Fatalf("bundle subjects %q", got)
	}
	if !Ours(cm, "pgpool") || Ours(cm, "other") || Ours(&metav1.ObjectMeta{Name: cm.Name}, "pgpool") {
		t.Fatal("Ours")
	}
	if Pool(nil, []byte("junk")) != nil {
		t.Fatal("an empty pool must be nil (no trust at all, not an empty trust)")
	}
	if err := (&NotOursError{"ConfigMap", "ns", "x"}).Error(); !strings.Contains(err, "will not change or delete it") {
		t.Fatal(err)
	}
}

// Issue 27, finding 6: every CA of ca.pem gets its origin; one appended to
// ca.pem by hand, or put into issuer-ca.pem in place of the issuer's, is
// unknown.
func TestAuditBundle(t *testing.T) {
	issuer, prev, extra := pemFile(t, "second-ca.pem"), pemFile(t, "old-ca.pem"), selfSigned(t, "intruder-ca")
	cm := BundleConfigMap("ns", "pgpool", BundleParts{Issuer: issuer, Previous: prev})
	origins := func(data map[string]string, ca []byte) string {
		var o []string
		for _, c := range AuditBundle(data, ca, "") {
			o = append(o, c.Subject+"="+c.Origin)
		}
		return strings.Join(o, ";")
	}
	if got := origins(cm.Data, issuer); got != "CN=second-ca=issuer;CN=old-ca=previous" {
		t.Fatalf("%s", got)
	}
	cm.Data[BundleKey] += string(extra)
	if got := origins(cm.Data, issuer); !strings.HasSuffix(got, "=unknown") {
		t.Fatalf("appended to ca.pem: %s", got)
	}
	// The Secret's CA is now another: what issuer-ca.pem holds is not it.
	if got := origins(BundleConfigMap("ns", "pgpool", BundleParts{Issuer: issuer}).Data, prev); got != "CN=second-ca=unknown" {
		t.Fatalf("issuer-ca.pem not the issuer's: %s", got)
	}
}

func selfSigned(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// A CA kept with --keep-ca has its origin; a bundle changed since the
// plugin wrote it proves nothing but the issuer's CA; the digest tells the
// two apart, and PEMOf picks certificates by SHA-256 prefix.
func TestAuditBundleKeptAndChanged(t *testing.T) {
	issuer, prev, extra := pemFile(t, "second-ca.pem"), pemFile(t, "old-ca.pem"), selfSigned(t, "kept-ca")
	cm := BundleConfigMap("ns", "pgpool", BundleParts{Issuer: issuer, Previous: prev, Kept: extra})
	var got []string
	for _, c := range AuditBundle(cm.Data, issuer, "") {
		got = append(got, c.Origin)
	}
	if strings.Join(got, ",") != "issuer,previous,kept" {
		t.Fatalf("origins %v", got)
	}
	got = nil
	for _, c := range AuditBundle(cm.Data, issuer, "it changed") {
		got = append(got, c.Origin)
	}
	if strings.Join(got, ",") != "issuer,unknown,unknown" {
		t.Fatalf("origins of a changed bundle %v", got)
	}
	d := BundleDigest(cm.Data)
	cm.Data[BackendCAKey] = string(extra)
	if BundleDigest(cm.Data) == d {
		t.Fatal("the digest did not change with the data")
	}
	cas := AuditBundle(cm.Data, issuer, "")
	if p := PEMOf([]byte(cm.Data[BundleKey]), []string{cas[2].SHA256[:16]}); !strings.Contains(strings.Join(Subjects(p), ";"), "kept-ca") || len(Subjects(p)) != 1 {
		t.Fatalf("PEMOf: %v", Subjects(p))
	}
}

// Digest is the one digest of backups and bundles; its bytes are fixed
// (digests already recorded on workloads must still match).
func TestDigest(t *testing.T) {
	sum := sha256.Sum256([]byte("1:a1:b2:cd0:"))
	want := "sha256:" + hex.EncodeToString(sum[:])
	if got := Digest(map[string][]byte{"cd": nil, "a": []byte("b")}); got != want {
		t.Fatalf("Digest = %s, want %s", got, want)
	}
	if BundleDigest(map[string]string{"a": "b", "cd": ""}) != want {
		t.Fatal("BundleDigest is not Digest of the same data")
	}
}
