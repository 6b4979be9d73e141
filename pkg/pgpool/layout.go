package pgpool

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
)

// Layout is everything that differs between the ways a pgpool is deployed
// (KubeDB, pgpool2_on_k8s, a Helm chart): where its config lives and how it
// is written, how the TLS files are mounted and where pgpool reads them,
// which object owns the workload and must be told, and how its pods are
// replaced. Discovery picks one for each Target (pkg/layout holds them);
// the planner, the runner and the roll ask it instead of looking at kinds.
type Layout interface {
	// Name names the layout in plans and status.
	Name() string

	// ConfigPatch is the merge patch that writes pgpool.conf and
	// pool_hba.conf into the config object c, on the resourceVersion that
	// was read (the server refuses it when anyone changed c since).
	ConfigPatch(c Config, pgpoolConf, poolHBA string) []byte
	// ConfigFiles reads pgpool.conf and pool_hba.conf from the data of a
	// mounted ConfigMap or Secret (as text); ok is false when it holds no
	// pgpool.conf.
	ConfigFiles(data map[string]string) (pgpoolConf, poolHBA string, ok bool)

	// TemplateConf is what of pgpool.conf the pod template sets (Bitnami's
	// container writes it from its environment at every start); ok is
	// false for layouts that keep all of pgpool.conf in the config object.
	TemplateConf(c *corev1.Container) (pgpoolConf string, ok bool)

	// TLSMountPath is where the TLS volume is mounted in the pgpool
	// container, given where the config is mounted.
	TLSMountPath(configMountPath string) string
	// Paths are where pgpool reads its certificate, key and CA bundle.
	Paths() conf.Paths

	// Owner is the object that owns the workload and must be told of a
	// change (its operator would otherwise put the workload back), nil
	// when there is none.
	Owner(t *Target) *metav1.OwnerReference

	// StablePodNames: a replaced pod comes back under its own name
	// (StatefulSet, PetSet), so the server certificate names each pod and
	// a roll waits for the same name.
	StablePodNames() bool
	// RolloutDone judges the workload's status while its controller
	// replaces the pods after a change of the pod template.
	RolloutDone(u *unstructured.Unstructured) (done bool, progress string)
}
