// Package layout holds the ways a pgpool is deployed, each one
// implementation of pgpool.Layout in a file of its own: KubeDB
// (StatefulSet or PetSet, config in a Secret), pgpool2_on_k8s
// (Deployment, config in a ConfigMap) and Bitnami's postgresql-ha chart
// (Deployment, config from environment variables). For picks the one for a workload.
// Adding a layout is a new file here with its tests, and a case in For.
// Nothing here does I/O.
package layout

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// For returns the layout of the workload t was read from.
func For(t *pgpool.Target) (pgpool.Layout, error) {
	switch t.Kind {
	case "StatefulSet", "PetSet":
		return KubeDB{}, nil
	case "Deployment":
		if t.ContainerIndex >= 0 && t.ContainerIndex < len(t.Template.Spec.Containers) && IsBitnami(&t.Template.Spec.Containers[t.ContainerIndex]) {
			return Bitnami{}, nil
		}
		return Pgpool2OnK8s{}, nil
	}
	return nil, fmt.Errorf("%s: no layout knows a %s", t, t.Kind)
}

// imageConfig is what the KubeDB and pgpool2_on_k8s images share, embedded
// by both: the two files under their own keys in a ConfigMap or a Secret,
// the TLS volume in a tls directory beside the config, and the image's
// entrypoint copying it to where pgpool reads it. A layout that differs
// here (Bitnami's writes its config from environment variables) does not
// embed it.
type imageConfig struct{}

// ConfigPatch writes the two files under their keys, base64 in a Secret's
// data, as they are in a ConfigMap's, on the resourceVersion read.
func (imageConfig) ConfigPatch(c pgpool.Config, pgpoolConf, poolHBA string) []byte {
	data := map[string]string{}
	for k, v := range map[string]string{"pgpool.conf": pgpoolConf, "pool_hba.conf": poolHBA} {
		if c.Kind == "Secret" {
			v = base64.StdEncoding.EncodeToString([]byte(v))
		}
		data[k] = v
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": c.ResourceVersion}, "data": data})
	return b
}

// ConfigFiles reads the two files from their keys.
func (imageConfig) ConfigFiles(data map[string]string) (string, string, bool) {
	pc, ok := data["pgpool.conf"]
	return pc, data["pool_hba.conf"], ok
}

// TemplateConf: all of pgpool.conf is in the config object.
func (imageConfig) TemplateConf(*corev1.Container) (string, bool) { return "", false }

// TLSMountPath is a tls directory beside the config's mount.
func (imageConfig) TLSMountPath(configMountPath string) string {
	return strings.TrimSuffix(configMountPath, "/") + "/tls"
}

// Paths are where the images make pgpool read its TLS files.
func (imageConfig) Paths() conf.Paths {
	d := pgpool.PgpoolTLSDir
	return conf.Paths{Cert: d + "/tls.crt", Key: d + "/tls.key", CA: d + "/ca.pem"}
}

// rolloutCounts are what a workload's status says of a rollout under way:
// done is false with a message until every pod runs the new template.
func rolloutCounts(u *unstructured.Unstructured) (want int64, msg string, done bool) {
	gen := u.GetGeneration()
	obs, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	want, ok, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	if !ok {
		want = 1
	}
	updated, _, _ := unstructured.NestedInt64(u.Object, "status", "updatedReplicas")
	readyN, _, _ := unstructured.NestedInt64(u.Object, "status", "readyReplicas")
	total, _, _ := unstructured.NestedInt64(u.Object, "status", "replicas")
	if obs < gen {
		return want, "waiting for the controller to observe the new pod template", false
	}
	msg = fmt.Sprintf("%d of %d pods updated, %d Ready", updated, want, readyN)
	return want, msg, updated >= want && readyN >= want && total <= want
}
