// Package fakes builds client-go's fake clientsets for the unit tests of the
// runner and the commands: core, cert-manager and dynamic clients over the
// given objects, with the behaviour the fake tracker lacks (generateName;
// for Leases, resourceVersions and delete preconditions; a dry-run patch of
// a Certificate that stores nothing), and a list of the writes they saw.
// Tests only.
package fakes

import (
	"errors"
	"strconv"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmfake "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// Cluster is a set of fake clientsets.
type Cluster struct {
	Core        *fake.Clientset
	CertManager *cmfake.Clientset
	Dynamic     *dynfake.FakeDynamicClient
	// Denied are the permissions ("verb resource[/sub]") that KubeDB's
	// access reviews refuse.
	Denied map[string]bool
}

// New returns fakes over core objects, cert-manager objects and workloads
// (unstructured, for the dynamic client).
func New(core, certManager, workloadObjs []runtime.Object) *Cluster {
	c := &Cluster{
		Core:        fake.NewClientset(core...),
		CertManager: cmfake.NewClientset(certManager...),
		Dynamic: dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
			pgpool.StatefulSets: "StatefulSetList", pgpool.Deployments: "DeploymentList", pgpool.PetSets: "PetSetList",
			pgpool.KubeDBPgpools: "PgpoolList", pgpool.PgpoolOpsRequests: "PgpoolOpsRequestList",
		}, workloadObjs...),
	}
	n := 0
	c.Core.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if o, ok := a.(k8stesting.CreateAction).GetObject().(metav1.Object); ok && o.GetName() == "" && o.GetGenerateName() != "" {
			n++
			o.SetName(o.GetGenerateName() + strconv.Itoa(n))
		}
		return false, nil, nil
	})
	// Leases (the lock) get a new resourceVersion on every write, and a
	// delete honours its preconditions, as on a real API server.
	rv := 0
	bump := func(a k8stesting.Action) (bool, runtime.Object, error) {
		if o, ok := a.(interface{ GetObject() runtime.Object }).GetObject().(metav1.Object); ok {
			rv++
			o.SetResourceVersion(strconv.Itoa(rv))
		}
		return false, nil, nil
	}
	c.Core.PrependReactor("create", "leases", bump)
	c.Core.PrependReactor("update", "leases", bump)
	c.Core.PrependReactor("delete", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteActionImpl)
		pre := d.DeleteOptions.Preconditions
		if pre == nil {
			return false, nil, nil
		}
		cur, err := c.Core.Tracker().Get(d.GetResource(), d.GetNamespace(), d.GetName())
		if err != nil {
			return false, nil, nil
		}
		m := cur.(metav1.Object)
		if (pre.UID != nil && *pre.UID != m.GetUID()) || (pre.ResourceVersion != nil && *pre.ResourceVersion != m.GetResourceVersion()) {
			return true, nil, apierrors.NewConflict(d.GetResource().GroupResource(), d.GetName(), errors.New("precondition failed"))
		}
		return false, nil, nil
	})
	// A dry-run patch of a Certificate (the preflight's check) answers
	// without storing anything, as the API server does.
	c.CertManager.PrependReactor("patch", "certificates", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if pa := a.(k8stesting.PatchActionImpl); isDryRun(pa.GetPatchOptions().DryRun) {
			return true, &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: pa.GetName(), Namespace: pa.GetNamespace()}}, nil
		}
		return false, nil, nil
	})
	return c
}

func isDryRun(d []string) bool { return len(d) > 0 && d[0] == metav1.DryRunAll }

// Writes lists the writes the fakes saw, as "verb resource" (the access
// and rules reviews, which only ask, and dry-run patches are left out).
func (c *Cluster) Writes() []string {
	var out []string
	for _, set := range [][]k8stesting.Action{c.Core.Actions(), c.CertManager.Actions(), c.Dynamic.Actions()} {
		for _, a := range set {
			switch a.GetVerb() {
			case "create", "update", "patch", "delete":
				if pa, ok := a.(k8stesting.PatchActionImpl); ok && isDryRun(pa.GetPatchOptions().DryRun) {
					continue
				}
				if r := a.GetResource().Resource; r != "selfsubjectaccessreviews" && r != "selfsubjectrulesreviews" {
					out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
				}
			}
		}
	}
	return out
}

// Workload is an apps/v1 workload (StatefulSet, Deployment) for the dynamic
// fake.
func Workload(kind, ns, name, uid string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": ns, "uid": uid},
		"spec":     spec,
	}}
}
