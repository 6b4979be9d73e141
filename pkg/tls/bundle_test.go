package tls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
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
	cm := BundleConfigMap("ns", "pgpool", b, a, append(append([]byte{}, a...), b...))
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
	cm := BundleConfigMap("ns", "pgpool", issuer, prev, nil)
	origins := func(data map[string]string, ca []byte) string {
		var o []string
		for _, c := range AuditBundle(data, ca) {
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
	if got := origins(BundleConfigMap("ns", "pgpool", issuer, nil, nil).Data, prev); got != "CN=second-ca=unknown" {
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
