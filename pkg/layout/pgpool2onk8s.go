package layout

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// Pgpool2OnK8s is a pgpool as pgpool's own pgpool2_on_k8s manifests run
// it: a Deployment (replaced pods get new names), config in a ConfigMap,
// no owner to tell.
type Pgpool2OnK8s struct{ imageConfig }

// Name names the layout.
func (Pgpool2OnK8s) Name() string { return "pgpool2_on_k8s" }

// Owner is nil: a Deployment of these manifests has none to tell (its
// ReplicaSets are its own).
func (Pgpool2OnK8s) Owner(*pgpool.Target) *metav1.OwnerReference { return nil }

// StablePodNames is false: a Deployment's replacement pod has a new name.
func (Pgpool2OnK8s) StablePodNames() bool { return false }

// RolloutDone wants every pod updated, Ready and available.
func (Pgpool2OnK8s) RolloutDone(u *unstructured.Unstructured) (bool, string) {
	want, msg, done := rolloutCounts(u)
	if !done {
		return false, msg
	}
	avail, _, _ := unstructured.NestedInt64(u.Object, "status", "availableReplicas")
	return avail >= want, msg
}
