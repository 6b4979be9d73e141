package tls

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Clients get the issuer's CA and the previous one, never the backends'
// or a kept CA (those make pgpool trust a client certificate; a client
// that trusted them would trust a server certificate they sign).
func TestClientTrust(t *testing.T) {
	issuer, previous, backend, kept := selfSigned(t, "issuer"), selfSigned(t, "previous"), selfSigned(t, "backend"), selfSigned(t, "kept")
	cm := BundleConfigMap("demo", "pgpool", BundleParts{Issuer: issuer, Previous: previous, Backend: backend, Kept: kept})
	if got := strings.Join(Subjects(ClientTrust(cm.Data)), "; "); got != "CN=issuer; CN=previous" {
		t.Fatalf("client trust holds %q", got)
	}
	// The marks: only a copy for this pgpool (namespace and name) is ours.
	c := TrustConfigMap("shop", "pgpool-ca", "demo", "pgpool", issuer)
	if !CarriesCAOf(c, "demo", "pgpool") || CarriesCAOf(c, "other", "pgpool") {
		t.Fatal("CarriesCAOf does not tell the pgpool by namespace and name")
	}
	// A Bundle: the namespaces by name, sorted; a selector's own terms.
	b := TrustBundle("pgpool-ca", "demo", "pgpool", issuer, []string{"shop", "billing"}, nil)
	vals, _, _ := unstructured.NestedSlice(b.Object, "spec", "target", "namespaceSelector", "matchExpressions")
	if len(vals) != 1 || vals[0].(map[string]any)["operator"] != "In" || fmt.Sprint(vals[0].(map[string]any)["values"]) != "[billing shop]" {
		t.Fatalf("namespaceSelector by names: %v", vals)
	}
	b = TrustBundle("pgpool-ca", "demo", "pgpool", issuer, nil, &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}})
	if ml, _, _ := unstructured.NestedStringMap(b.Object, "spec", "target", "namespaceSelector", "matchLabels"); ml["team"] != "shop" {
		t.Fatalf("namespaceSelector by labels: %v", ml)
	}
	if !CarriesCAOf(b, "demo", "pgpool") {
		t.Fatal("a Bundle does not carry its marks")
	}
}
