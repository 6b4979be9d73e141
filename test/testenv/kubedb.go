package testenv

// KubeDB's Pgpool API in the local cluster: the fixture's CRDs and
// admission policy, a Pgpool object that controls a pgpool, and what it
// says.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// waitEstablished waits until the CRD name is Established.
func (e *Env) waitEstablished(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		u, err := e.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("CRD %s never Established: %v", name, err)
	}
}

// InstallArgoCDAPI installs the stand-in of Argo CD's Application CRD
// (test/fixtures/argocd-application-crd.yaml) and waits until it is served.
func (e *Env) InstallArgoCDAPI(t testing.TB) {
	t.Helper()
	crds := e.Fixture(t, "argocd-application-crd.yaml")
	e.Apply(t, "", crds, 0)
	e.waitEstablished(t, Context(t, 2*time.Minute), crds[0].GetName())
}

// InstallFluxHelmAPI installs the stand-in of Flux's HelmRelease CRD
// (test/fixtures/flux-helmrelease-crd.yaml) and waits until it is served.
func (e *Env) InstallFluxHelmAPI(t testing.TB) {
	t.Helper()
	crds := e.Fixture(t, "flux-helmrelease-crd.yaml")
	e.Apply(t, "", crds, 0)
	e.waitEstablished(t, Context(t, 2*time.Minute), crds[0].GetName())
}

// InstallKubeDBAPI applies test/fixtures/kubedb-pgpool-crd.yaml (the Pgpool
// CRD, the PgpoolOpsRequest and AppBinding stand-ins, KubeDB's admission
// rules as a ValidatingAdmissionPolicy; idempotent) and waits until the
// policy refuses what KubeDB's webhook refuses.
func (e *Env) InstallKubeDBAPI(t testing.TB) {
	t.Helper()
	ctx := Context(t, 2*time.Minute)
	var crds, rest []*unstructured.Unstructured
	for _, o := range e.Fixture(t, "kubedb-pgpool-crd.yaml") {
		if o.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, o)
		} else {
			rest = append(rest, o)
		}
	}
	e.Apply(t, "", crds, 0)
	for _, c := range crds {
		e.waitEstablished(t, ctx, c.GetName())
	}
	e.Apply(t, "", rest, 0)
	// The policy takes effect once the API server has compiled it: poll a
	// server dry run of what it refuses.
	bad := PgpoolObject("default", "ha-postgres")
	_ = unstructured.SetNestedField(bad.Object, "require", "spec", "sslMode")
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := e.Dynamic.Resource(pgpool.KubeDBPgpools).Namespace("default").Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "KubeDB: spec.sslMode other than disable needs spec.tls"), nil
	}); err != nil {
		t.Fatalf("the KubeDB admission policy never took effect: %v", err)
	}
}

// PgpoolObject is the seed's Pgpool object named pgpool in ns, before TLS,
// its backend the AppBinding postgres in ns.
func PgpoolObject(ns, postgres string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubedb.com/v1alpha2", "kind": "Pgpool",
		"metadata": map[string]any{"name": "pgpool", "namespace": ns},
		"spec": map[string]any{"version": "4.5.0", "replicas": int64(1), "deletionPolicy": "WipeOut",
			"postgresRef": map[string]any{"name": postgres, "namespace": ns}},
	}}
}

// KubeDBOwned makes the pgpool in ns (its workload of workload's resource,
// its config Secret pgpool-config) what KubeDB's provisioner makes: a
// Pgpool object that controls both.
func (e *Env) KubeDBOwned(t testing.TB, ns string, workload schema.GroupVersionResource) {
	t.Helper()
	ctx := Context(t, time.Minute)
	pg, err := e.Dynamic.Resource(pgpool.KubeDBPgpools).Namespace(ns).Create(ctx, PgpoolObject(ns, "ha-postgres"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := unstructured.NestedString(pg.Object, "spec", "clientAuthMode"); got != "md5" {
		t.Fatalf("the CRD's default clientAuthMode: %q", got)
	}
	patch := []byte(`{"metadata":{"ownerReferences":[{"apiVersion":"kubedb.com/v1alpha2","kind":"Pgpool","name":"pgpool","uid":"` + string(pg.GetUID()) + `","controller":true}]}}`)
	if _, err := e.Dynamic.Resource(workload).Namespace(ns).Patch(ctx, "pgpool", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Kube.CoreV1().Secrets(ns).Patch(ctx, "pgpool-config", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// KubeDBOwner reads the Pgpool in ns as the plugin does, and checks that
// it is still valid under the CRD's schema and the admission policy (a
// strict server dry run of an update with it as it is).
func (e *Env) KubeDBOwner(t testing.TB, ns string) *pgpool.Owner {
	t.Helper()
	ctx := Context(t, time.Minute)
	res := e.Dynamic.Resource(pgpool.KubeDBPgpools).Namespace(ns)
	u, err := res.Get(ctx, "pgpool", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := res.Update(ctx, u, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}); err != nil {
		t.Fatalf("the Pgpool as the plugin left it is refused by the schema or KubeDB's rules: %v", err)
	}
	return pgpool.ReadOwner(u)
}

// CheckKubeDBSays checks, after operation op, that the Pgpool in ns is not
// paused and says sslMode ssl, clientAuthMode auth and, unless issuer is
// "" (no spec.tls), spec.tls on that issuer with the server and client
// certificates of the plugin's names; and that it is valid (KubeDBOwner).
func (e *Env) CheckKubeDBSays(t testing.TB, ns, op, ssl, auth, issuer string) {
	t.Helper()
	o := e.KubeDBOwner(t, ns)
	name, _, _ := unstructured.NestedString(o.Spec.TLS, "issuerRef", "name")
	if o.Paused != nil || o.Spec.SSLMode != ssl || o.Spec.ClientAuthMode != auth || name != issuer {
		t.Fatalf("%s: the Pgpool object says %s (paused: %v)", op, o.Spec.Summary(), o.Paused)
	}
	if issuer == "" {
		if o.Spec.TLS != nil {
			t.Fatalf("%s: spec.tls is left: %v", op, o.Spec.TLS)
		}
		return
	}
	certs, _, _ := unstructured.NestedSlice(o.Spec.TLS, "certificates")
	var aliases []string
	for _, c := range certs {
		m, _ := c.(map[string]any)
		aliases = append(aliases, fmt.Sprintf("%v=%v", m["alias"], m["secretName"]))
	}
	if strings.Join(aliases, ",") != "server=pgpool-server-cert,client=pgpool-client-cert" {
		t.Fatalf("%s: spec.tls.certificates: %v", op, certs)
	}
}

// TrustManagerVersion is the trust-manager whose Bundle CRD the tests
// install (from the Go module proxy, as the cluster's cert-manager CRDs).
const TrustManagerVersion = "v0.25.0"

// InstallTrustManagerAPI installs trust-manager's own Bundle CRD (its
// controller is not needed to check the objects the plugin writes), waits
// until it is served, and removes it when the test ends.
func (e *Env) InstallTrustManagerAPI(t testing.TB) {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/cert-manager/trust-manager@"+TrustManagerVersion)
	cmd.Dir = filepath.Join(e.Root, "test", "cluster", "certmanager")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("download trust-manager %s: %v", TrustManagerVersion, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download trust-manager: %v %s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(mod.Dir, "deploy", "crds", "trust.cert-manager.io_bundles.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crd := &unstructured.Unstructured{}
	if err := utilyaml.Unmarshal(raw, &crd.Object); err != nil {
		t.Fatal(err)
	}
	e.Apply(t, "", []*unstructured.Unstructured{crd}, 0)
	e.waitEstablished(t, Context(t, 2*time.Minute), crd.GetName())
	t.Cleanup(func() {
		_ = e.Dynamic.Resource(crdGVR).Delete(context.Background(), crd.GetName(), metav1.DeleteOptions{})
	})
}
