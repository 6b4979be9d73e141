package layout

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// KubeDB is a pgpool as KubeDB runs it: a StatefulSet (a PetSet in newer
// versions) whose pods keep their names, config in a Secret mounted at
// /config, the TLS volume beside it, and (when KubeDB's operator made it)
// a Pgpool object of kubedb.com that owns the workload.
type KubeDB struct{}

// Name names the layout.
func (KubeDB) Name() string { return "kubedb" }

// ConfigPatch writes the two files under their keys.
func (KubeDB) ConfigPatch(c pgpool.Config, pgpoolConf, poolHBA string) []byte {
	return keyedPatch(c, pgpoolConf, poolHBA)
}

// ConfigFiles reads the two files from their keys.
func (KubeDB) ConfigFiles(data map[string]string) (string, string, bool) {
	return keyedFiles(data)
}

// TLSMountPath is a tls directory beside the config.
func (KubeDB) TLSMountPath(configMountPath string) string { return besideConfig(configMountPath) }

// Paths are where KubeDB's image makes pgpool read them.
func (KubeDB) Paths() conf.Paths { return imagePaths() }

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
