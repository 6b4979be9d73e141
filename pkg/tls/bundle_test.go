package tls

import (
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pemFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
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
