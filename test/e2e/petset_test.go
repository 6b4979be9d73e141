package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

var crds = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installPetSetCRD applies the PetSet stand-in CRD (idempotent: the cluster
// may be shared by test runs) and waits until it is Established.
func installPetSetCRD(t *testing.T) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	crd := env.Fixture(t, "petset-crd.yaml")[0]
	data, err := crd.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Dynamic.Resource(crds).Patch(ctx, crd.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: "testenv", Force: ptr.To(true)}); err != nil {
		t.Fatalf("apply the PetSet CRD: %v", err)
	}
	testenv.WaitObject(t, ctx, dynamicLW(crds, "", crd.GetName()), &unstructured.Unstructured{}, "the PetSet CRD to be Established", func(u *unstructured.Unstructured) bool {
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true
			}
		}
		return false
	})
}

// A KubeDB PetSet is found through the dynamic client (the API is a CRD,
// not a built-in): status reads it, and add with --dry-run=client and
// --dry-run=server plans, checks the permissions on petsets and sends the
// PetSet's pod-template patch to the API server, changing nothing. There is
// no PetSet controller here, so the test creates the pods (owned by the
// PetSet, as KubeDB's controller does) and does not run the roll itself.
func TestTLSPetSetDiscoveryAndServerDryRun(t *testing.T) {
	installPetSetCRD(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, env.Fixture(t, "issuers.yaml"), 0)
	var sts *unstructured.Unstructured
	var rest []*unstructured.Unstructured
	for _, o := range env.Fixture(t, "kubedb.yaml") {
		if o.GetKind() == "StatefulSet" {
			sts = o
			continue
		}
		rest = append(rest, o)
	}
	// The fixture's PDB (maxUnavailable 1) needs the PetSet's scale, which
	// the disruption controller finds through the controller-manager's REST
	// mapper: that learns a new CRD only at its 30 s refresh, and the
	// controller's rate-limited retries can then lag by minutes on a fresh
	// cluster. An integer minAvailable counts pods and needs no scale.
	for _, o := range rest {
		if o.GetKind() == "PodDisruptionBudget" {
			unstructured.RemoveNestedField(o.Object, "spec", "maxUnavailable")
			_ = unstructured.SetNestedField(o.Object, int64(2), "spec", "minAvailable")
		}
	}
	env.Apply(t, ns, rest, 0)
	ctx := testenv.Context(t, 2*time.Minute)
	ps := sts.DeepCopy()
	ps.SetAPIVersion("apps.k8s.appscode.com/v1")
	ps.SetKind("PetSet")
	ps.SetNamespace(ns)
	const replicas = 3
	_ = unstructured.SetNestedField(ps.Object, int64(replicas), "spec", "replicas")
	ps, err := env.Dynamic.Resource(pgpool.PetSets).Namespace(ns).Create(ctx, ps, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create PetSet: %v", err)
	}
	tmplMap, _, _ := unstructured.NestedMap(ps.Object, "spec", "template")
	var tmpl corev1.PodTemplateSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmplMap, &tmpl); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < replicas; i++ {
		pod := &corev1.Pod{ObjectMeta: *tmpl.ObjectMeta.DeepCopy(), Spec: *tmpl.Spec.DeepCopy()}
		pod.Name = fmt.Sprintf("pgpool-%d", i)
		pod.Spec.Hostname, pod.Spec.Subdomain = pod.Name, "pgpool-pods"
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: ps.GetAPIVersion(), Kind: "PetSet", Name: ps.GetName(),
			UID: ps.GetUID(), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
		if _, err := env.Kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitIssuer(t, ns, "pgpool-issuer")
	env.WaitPodsReady(t, ns, kubedbSelector, replicas, 2*time.Minute)
	testenv.WaitObject(t, ctx, pdbLW(ns, "pgpool"), &policyv1.PodDisruptionBudget{}, "the PDB over PetSet pods to allow a disruption", func(b *policyv1.PodDisruptionBudget) bool {
		return b.Status.ExpectedPods == replicas && b.Status.DisruptionsAllowed == 1
	})

	out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "status", "pgpool")
	if err != nil || !strings.Contains(out, "PetSet "+ns+"/pgpool (3 replicas, OnDelete)") || !strings.Contains(out, "TLS:                        off") {
		t.Fatalf("status of a PetSet: %v\n%s\n%s", err, out, errOut)
	}
	// The KubeDB layout with the PetSet in place of the StatefulSet.
	l := layout{"kubedb-petset", "kubedb.yaml", "PetSet", kubedbSelector, "Secret"}
	before := resourceVersions(t, ns, l)
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert"}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, append(add, "--dry-run=client")...)
	if err != nil || !strings.Contains(out, "Plan: tls add on PetSet "+ns+"/pgpool") || !strings.Contains(out, "+ ssl = on") {
		t.Fatalf("add --dry-run=client on a PetSet: %v\n%s\n%s", err, out, errOut)
	}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, append(add, "--dry-run=server")...)
	if err != nil || !strings.Contains(out, "server accepted (dry run)") {
		t.Fatalf("add --dry-run=server on a PetSet: %v\n%s\n%s", err, out, errOut)
	}
	if !strings.Contains(out, "PetSet "+ns+"/pgpool") {
		t.Fatalf("the server dry run does not show the PetSet's patch:\n%s", out)
	}
	if after := resourceVersions(t, ns, l); after != before {
		t.Fatalf("dry runs changed the PetSet or its config: %s -> %s", before, after)
	}
	checkUnlocked(t, ns)
}
