package pgpool

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// What a KubeDB Pgpool says is read from its spec and status, and compared
// with what is live for `tls status`: each disagreement is named, and a
// Pgpool that agrees has none.
func TestOwnerSaysAndDiffers(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "kubedb.com/v1alpha2", "kind": "Pgpool",
		"metadata": map[string]any{"name": "pgpool", "namespace": "demo", "uid": "u1"},
		"spec": map[string]any{"sslMode": "require", "clientAuthMode": "cert", "postgresRef": map[string]any{"name": "ha-postgres"},
			"tls": map[string]any{"issuerRef": map[string]any{"kind": "Issuer", "name": "pgpool-issuer"},
				"certificates": []any{map[string]any{"alias": "server", "secretName": "pgpool-server-cert"}}}},
		"status": map[string]any{"conditions": []any{map[string]any{"type": "Paused", "status": "True", "reason": PauseReason, "message": "kubectl-pgpool tls add by me"}}}}}
	o := ReadOwner(u)
	if !o.PausedByUs() || o.PausedByOther() || o.PostgresRef.Name != "ha-postgres" || o.PostgresRef.Namespace != "demo" {
		t.Fatalf("read: %+v", o)
	}
	if s := o.Spec.Summary(); s != `sslMode require, clientAuthMode cert, spec.tls issuer Issuer "pgpool-issuer" (server: pgpool-server-cert)` {
		t.Fatalf("summary: %s", s)
	}
	live := TLSState{Enabled: true, SSLMode: "require", AuthMode: "cert", Issuer: IssuerRef{Name: "pgpool-issuer", Kind: "Issuer"}}
	if d := o.Spec.Differences(live); len(d) != 0 {
		t.Fatalf("agrees, yet: %v", d)
	}
	live.SSLMode, live.Issuer.Name = "verify-full", "pp-new-issuer"
	if d := strings.Join(o.Spec.Differences(live), "; "); d != `spec.sslMode is require, live verify-full; spec.tls.issuerRef is Issuer "pgpool-issuer", live Issuer "pp-new-issuer"` {
		t.Fatalf("differences: %s", d)
	}
	if d := strings.Join(o.Spec.Differences(TLSState{}), "; "); d != "spec.tls is set, but TLS is off; spec.sslMode is require, but TLS is off" {
		t.Fatalf("TLS off: %s", d)
	}
	if d := strings.Join((OwnerSpec{}).Differences(live), "; "); d != "spec.tls is unset, but TLS is on" {
		t.Fatalf("no spec.tls: %s", d)
	}
}
