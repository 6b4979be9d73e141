package tls

import (
	"strings"
	"testing"

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
