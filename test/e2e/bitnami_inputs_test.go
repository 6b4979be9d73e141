package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// Issue 27, findings 1 and 2, against the API server: a colleague who may
// edit ConfigMaps turns pool_hba.conf enforcement off for the chart's
// pgpool through its extraEnvVarsCM (envFrom), or the pgpool reads its
// pool_hba.conf from a Secret volume. tls add --ssl-mode require refuses
// each before its first write, saying why; nothing in the namespace
// changes. Before, add modelled the literal env only: it went on, and
// status said enforced while pgpool read nothing (or, for the Secret, the
// user's file was replaced by a wider one derived from the generated
// default).
func TestBitnamiInputsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		objs   []*corev1.ConfigMap
		secret *corev1.Secret
		mutate func(d *appsv1.Deployment)
		want   string
	}{
		{"envFrom", []*corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "pg-extra-env"}, Data: map[string]string{"PGPOOL_ENABLE_POOL_HBA": "no"}}}, nil,
			func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "pg-extra-env"}}}}
			}, "takes PGPOOL_ENABLE_POOL_HBA from ConfigMap"},
		{"pool_hba.conf in a Secret", nil, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pg-hba"}, StringData: map[string]string{"pool_hba.conf": "local all all trust\nhost all all 10.0.0.0/8 scram-sha-256\n"}},
			func(d *appsv1.Deployment) {
				c := &d.Spec.Template.Spec.Containers[0]
				c.Env = append(c.Env, corev1.EnvVar{Name: "PGPOOL_USER_HBA_FILE", Value: "/opt/bitnami/pgpool/hba/pool_hba.conf"})
				c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "hba", MountPath: "/opt/bitnami/pgpool/hba"})
				d.Spec.Template.Spec.Volumes = append(d.Spec.Template.Spec.Volumes, corev1.Volume{Name: "hba", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "pg-hba"}}})
			}, "which is not a ConfigMap"},
		// run.sh appends PGPOOL_EXTRA_FLAGS after its own --hba-file: the
		// last one wins, and pgpool reads a file nobody edits.
		{"PGPOOL_EXTRA_FLAGS --hba-file", nil, nil,
			func(d *appsv1.Deployment) {
				c := &d.Spec.Template.Spec.Containers[0]
				c.Env = append(c.Env, corev1.EnvVar{Name: "PGPOOL_EXTRA_FLAGS", Value: "--hba-file=/tmp/other_hba.conf"})
			}, "makes it read another pool_hba.conf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			env.Apply(t, ns, env.Fixture(t, "issuers.yaml"), 0)
			waitIssuer(t, ns, "pgpool-issuer")
			waitIssuer(t, ns, "pp-new-issuer") // its CA Secret is written by then: nothing of cert-manager's changes under the comparison
			ctx := testenv.Context(t, time.Minute)
			for _, cm := range tc.objs {
				if _, err := env.Kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.secret != nil {
				if _, err := env.Kube.CoreV1().Secrets(ns).Create(ctx, tc.secret, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			bitnamiOnKwok(t, ns, tc.mutate)
			before := namespaceVersions(t, ns)
			out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "add", bitnamiName, "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--yes")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(strings.ToLower(err.Error()), "nothing was changed") {
				t.Fatalf("add: %v\n%s\n%s", err, out, errOut)
			}
			if after := namespaceVersions(t, ns); after != before {
				t.Fatalf("the refused add wrote:\n%s\n->\n%s", before, after)
			}
		})
	}
}

// namespaceVersions names the generation and annotations of every
// Deployment of ns, the resourceVersion of every ConfigMap, and the names
// of its Secrets and Certificates (the issuers' own are cert-manager's to
// update at any time).
func namespaceVersions(t *testing.T, ns string) string {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	var out []string
	ds, err := env.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds.Items {
		// Its generation counts spec changes only: the controller updates
		// its status on its own time, and its own annotations
		// (deployment.kubernetes.io/revision, once it first sees the
		// Deployment) too.
		ann := map[string]string{}
		for k, v := range d.Annotations {
			if !strings.HasPrefix(k, "deployment.kubernetes.io/") {
				ann[k] = v
			}
		}
		out = append(out, fmt.Sprintf("Deployment %s generation %d annotations %v", d.Name, d.Generation, ann))
	}
	cms, err := env.Kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cms.Items {
		out = append(out, fmt.Sprintf("ConfigMap %s %s", c.Name, c.ResourceVersion))
	}
	ss, err := env.Kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss.Items {
		// cert-manager's own, for the fixture's CA Certificates while it
		// issues them (it deletes each when done).
		if s.Labels["cert-manager.io/next-private-key"] == "true" {
			continue
		}
		out = append(out, "Secret "+s.Name)
	}
	crts, err := env.CertMgr.CertmanagerV1().Certificates(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crts.Items {
		out = append(out, "Certificate "+c.Name)
	}
	return strings.Join(out, "\n")
}
