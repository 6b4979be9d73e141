package layout

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// KubeDB is a pgpool as KubeDB runs it: a StatefulSet (a PetSet in newer
// versions) whose pods keep their names, config in a Secret mounted at
// /config, the TLS volume beside it, and (when KubeDB's operator made it)
// a Pgpool object of kubedb.com that owns the workload.
type KubeDB struct{ imageConfig }

// Name names the layout.
func (KubeDB) Name() string { return "kubedb" }

// Owner is the kubedb.com Pgpool that controls the workload, if any.
func (KubeDB) Owner(t *pgpool.Target) *metav1.OwnerReference {
	for _, r := range t.Owners {
		if r.Controller != nil && *r.Controller && r.Kind == "Pgpool" && strings.HasPrefix(r.APIVersion, "kubedb.com/") {
			return &r
		}
	}
	return nil
}

// StablePodNames is true: StatefulSet and PetSet pods come back under
// their names.
func (KubeDB) StablePodNames() bool { return true }

// RolloutDone wants every pod updated and Ready, and the current revision
// to be the update revision.
func (KubeDB) RolloutDone(u *unstructured.Unstructured) (bool, string) {
	_, msg, done := rolloutCounts(u)
	if !done {
		return false, msg
	}
	cur, _, _ := unstructured.NestedString(u.Object, "status", "currentRevision")
	upd, _, _ := unstructured.NestedString(u.Object, "status", "updateRevision")
	return cur == upd, msg
}
