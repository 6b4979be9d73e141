package e2e

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// A pgpool whose StatefulSet Flux's kustomize-controller manages (its
// labels, as kustomize-controller sets them) is refused with nothing
// written: the change would be put back at the next reconciliation; with
// --owner=ignore the plan goes on and names the owner; a Helm release on
// the config Secret is named with what its next upgrade does.
func TestOwnersThatRevert(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	ctx := testenv.Context(t, time.Minute)
	flux := []byte(`{"metadata":{"labels":{"kustomize.toolkit.fluxcd.io/name":"apps","kustomize.toolkit.fluxcd.io/namespace":"flux-system"}}}`)
	if _, err := env.Dynamic.Resource(l.gvr()).Namespace(ns).Patch(ctx, "pgpool", types.MergePatchType, flux, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	helm := []byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"Helm"},"annotations":{"meta.helm.sh/release-name":"pgpool","meta.helm.sh/release-namespace":"` + ns + `"}}}`)
	if _, err := env.Kube.CoreV1().Secrets(ns).Patch(ctx, "pgpool-config", types.MergePatchType, helm, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--yes"}
	before := resourceVersions(t, ns, l)
	out, errOut, err := plugin(t, env.Kubeconfig, ns, add...)
	if err == nil || !strings.Contains(err.Error(), "StatefulSet "+ns+"/pgpool is managed by Flux kustomize-controller (Kustomization flux-system/apps)") || !strings.Contains(err.Error(), "--owner=ignore") {
		t.Fatalf("add under Flux: %v\n%s\n%s", err, out, errOut)
	}
	if after := resourceVersions(t, ns, l); after != before {
		t.Fatalf("a refused add wrote: %s -> %s", before, after)
	}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, append(add, "--owner=ignore", "--dry-run=client")...)
	all := out + errOut
	if err != nil || !strings.Contains(all, "is managed by Flux kustomize-controller") || !strings.Contains(all, "Secret "+ns+"/pgpool-config is managed by Helm (release "+ns+"/pgpool)") {
		t.Fatalf("add --owner=ignore: %v\n%s", err, all)
	}

	// The object opts out of kustomize-controller's drift correction: a
	// warning, no refusal. A Flux HelmRelease's markers on the config are
	// named once, as Flux's.
	optOut := []byte(`{"metadata":{"annotations":{"kustomize.toolkit.fluxcd.io/reconcile":"disabled"}}}`)
	if _, err := env.Dynamic.Resource(l.gvr()).Namespace(ns).Patch(ctx, "pgpool", types.MergePatchType, optOut, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	fluxHelm := []byte(`{"metadata":{"labels":{"helm.toolkit.fluxcd.io/name":"pgpool","helm.toolkit.fluxcd.io/namespace":"flux-system"}}}`)
	if _, err := env.Kube.CoreV1().Secrets(ns).Patch(ctx, "pgpool-config", types.MergePatchType, fluxHelm, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, append(add, "--dry-run=client")...)
	all = out + errOut
	if err != nil || !strings.Contains(all, "it leaves the object alone (annotation kustomize.toolkit.fluxcd.io/reconcile: disabled)") ||
		!strings.Contains(all, "Secret "+ns+"/pgpool-config is managed by Flux helm-controller (HelmRelease flux-system/pgpool)") || strings.Contains(all, "managed by Helm") {
		t.Fatalf("add with the opt-out and a HelmRelease: %v\n%s", err, all)
	}
}

// A StatefulSet that an Argo CD Application tracks (its tracking id):
// with selfHeal on, read from the Application, the change would be put
// back within seconds, so add refuses with nothing written; with selfHeal
// off it goes on and says the next sync reverts it; an Application that
// cannot be read gives a warning that says why.
func TestArgoCDSelfHeal(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	env.InstallArgoCDAPI(t)
	ctx := testenv.Context(t, time.Minute)
	app := "pgpools-" + ns
	tracked := []byte(`{"metadata":{"annotations":{"argocd.argoproj.io/tracking-id":"` + app + `:apps/StatefulSet:` + ns + `/pgpool"}}}`)
	if _, err := env.Dynamic.Resource(l.gvr()).Namespace(ns).Patch(ctx, "pgpool", types.MergePatchType, tracked, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--yes"}
	out, errOut, err := plugin(t, env.Kubeconfig, ns, append(add, "--dry-run=client")...)
	if err != nil || !strings.Contains(out+errOut, "its Application could not be read (no Application "+app+" in any namespace)") {
		t.Fatalf("add with no Application to read: %v\n%s\n%s", err, out, errOut)
	}
	application := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"name": app, "namespace": ns},
		"spec":     map[string]any{"project": "default", "syncPolicy": map[string]any{"automated": map[string]any{"prune": true, "selfHeal": true}}}}}
	apps := env.Dynamic.Resource(schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}).Namespace(ns)
	if _, err := apps.Create(ctx, application, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := resourceVersions(t, ns, l)
	out, errOut, err = plugin(t, env.Kubeconfig, ns, add...)
	if err == nil || !strings.Contains(err.Error(), "Argo CD (Application "+app+"): its Application has selfHeal on") || !strings.Contains(err.Error(), "--owner=ignore") {
		t.Fatalf("add under selfHeal: %v\n%s\n%s", err, out, errOut)
	}
	if after := resourceVersions(t, ns, l); after != before {
		t.Fatalf("a refused add wrote: %s -> %s", before, after)
	}
	off := []byte(`{"spec":{"syncPolicy":{"automated":{"selfHeal":false}}}}`)
	if _, err := apps.Patch(ctx, app, types.MergePatchType, off, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, append(add, "--dry-run=client")...)
	if err != nil || !strings.Contains(out+errOut, "its Application has selfHeal off: the next sync puts the object back") {
		t.Fatalf("add with selfHeal off: %v\n%s\n%s", err, out, errOut)
	}
	// tls status names who manages the pgpool.
	out, errOut, _ = plugin(t, env.Kubeconfig, ns, "tls", "status", "pgpool")
	if !strings.Contains(out, "Managed by:") || !strings.Contains(out, "StatefulSet "+ns+"/pgpool: Argo CD (Application "+app+"): its Application has selfHeal off") {
		t.Fatalf("status does not name the owner:\n%s\n%s", out, errOut)
	}
}

// Issue 27, finding 9: Argo CD tracking by label (app.kubernetes.io/instance
// is the Application's name, applied client-side) is named as the owner,
// and its selfHeal refuses the change; the same label with no such
// Application names nobody. A Flux HelmRelease with drift detection
// enabled reverts at once and refuses; in warn mode it is a warning.
func TestLabelTrackedAndDriftDetectingOwners(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	env.InstallArgoCDAPI(t)
	env.InstallFluxHelmAPI(t)
	ctx := testenv.Context(t, time.Minute)
	app := "pgpools-" + ns
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--yes"}
	patch := func(p string) {
		t.Helper()
		if _, err := env.Dynamic.Resource(l.gvr()).Namespace(ns).Patch(ctx, "pgpool", types.MergePatchType, []byte(p), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	patch(`{"metadata":{"labels":{"app.kubernetes.io/instance":"` + app + `"},"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"}}}`)
	out, errOut, err := plugin(t, env.Kubeconfig, ns, append(add, "--dry-run=client")...)
	if err != nil || strings.Contains(out+errOut, "Argo CD") {
		t.Fatalf("add with the label and no such Application: %v\n%s\n%s", err, out, errOut)
	}
	application := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"name": app, "namespace": ns},
		"spec":     map[string]any{"project": "default", "syncPolicy": map[string]any{"automated": map[string]any{"selfHeal": true}}}}}
	apps := env.Dynamic.Resource(schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}).Namespace(ns)
	if _, err := apps.Create(ctx, application, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, add...)
	if err == nil || !strings.Contains(err.Error(), "Argo CD (Application "+app+" (tracking by label app.kubernetes.io/instance)): its Application has selfHeal on") {
		t.Fatalf("add under a label-tracking Application with selfHeal: %v\n%s\n%s", err, out, errOut)
	}
	if err := apps.Delete(ctx, app, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	hrs := env.Dynamic.Resource(schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}).Namespace(ns)
	hr := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
		"metadata": map[string]any{"name": "pgpool", "namespace": ns},
		"spec":     map[string]any{"interval": "10m", "driftDetection": map[string]any{"mode": "enabled"}}}}
	if _, err := hrs.Create(ctx, hr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	patch(`{"metadata":{"labels":{"helm.toolkit.fluxcd.io/name":"pgpool","helm.toolkit.fluxcd.io/namespace":"` + ns + `"}}}`)
	before := resourceVersions(t, ns, l)
	out, errOut, err = plugin(t, env.Kubeconfig, ns, add...)
	if err == nil || !strings.Contains(err.Error(), "Flux helm-controller (HelmRelease "+ns+"/pgpool): its HelmRelease has drift detection enabled") {
		t.Fatalf("add under a HelmRelease with drift detection: %v\n%s\n%s", err, out, errOut)
	}
	if after := resourceVersions(t, ns, l); after != before {
		t.Fatalf("a refused add wrote: %s -> %s", before, after)
	}
	if _, err := hrs.Patch(ctx, "pgpool", types.MergePatchType, []byte(`{"spec":{"driftDetection":{"mode":"warn"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, append(add, "--dry-run=client")...)
	if err != nil || !strings.Contains(out+errOut, "its HelmRelease has drift detection in warn mode") {
		t.Fatalf("add under a HelmRelease in warn mode: %v\n%s\n%s", err, out, errOut)
	}
}
