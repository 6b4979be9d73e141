package fakes

import (
	"os"
	"path/filepath"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	fakediscovery "k8s.io/client-go/discovery/fake"
	k8stesting "k8s.io/client-go/testing"
)

// KubeDB is a KubeDB-layout pgpool demo/pgpool (StatefulSet, 2 Ready pods)
// without TLS, its config from confDir (kubedb-pgpool.conf,
// kubedb-pool_hba.conf), and a Ready CA Issuer pgpool-issuer; cert-manager's
// API is served, and SelfSubjectAccessReviews allow all but Denied.
func KubeDB(t *testing.T, confDir string) *Cluster {
	t.Helper()
	conf := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(confDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	labels := map[string]any{"app": "pgpool"}
	sts := Workload("StatefulSet", "demo", "pgpool", "sts-uid", map[string]any{
		"replicas": int64(2), "selector": map[string]any{"matchLabels": labels},
		"updateStrategy": map[string]any{"type": "OnDelete"},
		"template": map[string]any{
			"metadata": map[string]any{"labels": labels},
			"spec": map[string]any{
				"containers": []any{map[string]any{"name": "pgpool", "image": "pgpool",
					"volumeMounts": []any{map[string]any{"name": "config", "mountPath": "/config"}}}},
				"volumes": []any{map[string]any{"name": "config", "secret": map[string]any{"secretName": "pgpool-config"}}},
			},
		},
	})
	objs := []runtime.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-config", Namespace: "demo", ResourceVersion: "7"},
			Data: map[string][]byte{"pgpool.conf": conf("kubedb-pgpool.conf"), "pool_hba.conf": conf("kubedb-pool_hba.conf")}},
	}
	controller := true
	for _, n := range []string{"pgpool-0", "pgpool-1"} {
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "demo", UID: types.UID(n + "-uid"), Labels: map[string]string{"app": "pgpool"},
				OwnerReferences: []metav1.OwnerReference{{UID: "sts-uid", Kind: "StatefulSet", Name: "pgpool", Controller: &controller}}},
			Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		})
	}
	issuer := &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Name: "pgpool-issuer", Namespace: "demo"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "pgpool-ca"}}},
		Status:     cmapi.IssuerStatus{Conditions: []cmapi.IssuerCondition{{Type: cmapi.IssuerConditionReady, Status: cmmeta.ConditionTrue}}},
	}
	c := New(objs, []runtime.Object{issuer}, []runtime.Object{sts})
	c.Denied = map[string]bool{}
	c.Core.PrependReactor("create", "selfsubjectaccessreviews", AccessReviews(func(perm string) bool { return c.Denied[perm] }))
	disc := c.Core.Discovery().(*fakediscovery.FakeDiscovery)
	disc.Resources = []*metav1.APIResourceList{{GroupVersion: "cert-manager.io/v1", APIResources: []metav1.APIResource{{Name: "certificates"}}}}
	return c
}

// AccessReviews answers SelfSubjectAccessReviews: allowed unless denied
// says no to "verb resource[/subresource]".
func AccessReviews(denied func(perm string) bool) k8stesting.ReactionFunc {
	return func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		ra := r.Spec.ResourceAttributes
		res := ra.Resource
		if ra.Subresource != "" {
			res += "/" + ra.Subresource
		}
		r.Status.Allowed = !denied(ra.Verb + " " + res)
		return true, r, nil
	}
}
