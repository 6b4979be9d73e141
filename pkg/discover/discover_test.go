package discover

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/fakes"
)

// A workload with a pgpool container that mounts ConfigMap cm at /config.
func workload(kind, cm string) runtime.Object {
	labels := map[string]any{"app": "pgpool"}
	return fakes.Workload(kind, "demo", "pgpool", kind+"-uid", map[string]any{
		"replicas": int64(1), "selector": map[string]any{"matchLabels": labels},
		"template": map[string]any{
			"metadata": map[string]any{"labels": labels},
			"spec": map[string]any{
				"containers": []any{map[string]any{"name": "main", "image": "example/pgpool:4.3",
					"volumeMounts": []any{map[string]any{"name": "config", "mountPath": "/config"}}}},
				"volumes": []any{map[string]any{"name": "config", "configMap": map[string]any{"name": cm}}},
			},
		},
	})
}

func clients(c *fakes.Cluster) Clients {
	return Clients{Core: c.Core.CoreV1(), Dynamic: c.Dynamic, CertManager: c.CertManager.CertmanagerV1()}
}

func TestDiscover(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-config", Namespace: "demo", ResourceVersion: "3"},
		Data: map[string]string{"pgpool.conf": "port = 9998\nssl = on\n", "pool_hba.conf": "hostssl all all 0.0.0.0/0 md5\n"}}
	controller := true
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-7d9f-x1", Namespace: "demo", UID: types.UID("p1"),
		Labels:          map[string]string{"app": "pgpool", "pod-template-hash": "7d9f"},
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "pgpool-7d9f", UID: "rs-uid", Controller: &controller}}}}
	// Same labels, but not the Deployment's: a stray pod, and an Evicted one.
	stray := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "debug", Namespace: "demo", UID: types.UID("p2"), Labels: map[string]string{"app": "pgpool"}}}
	evicted := pod.DeepCopy()
	evicted.Name, evicted.UID, evicted.Status.Phase, evicted.Status.Reason = "pgpool-7d9f-old", "p3", corev1.PodFailed, "Evicted"
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "pgpool", Namespace: "demo"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "pgpool"}}}
	c := fakes.New([]runtime.Object{cm, pod, stray, evicted, svc}, nil, []runtime.Object{workload("Deployment", "pgpool-config")})
	tg, err := Discover(context.Background(), clients(c), "demo", "pgpool")
	if err != nil {
		t.Fatal(err)
	}
	// The container is found by its image, the config by its key; the
	// state comes from the files (no annotation, no Certificates).
	if tg.Kind != "Deployment" || tg.Container != "main" || tg.Config.Kind != "ConfigMap" || tg.Config.ResourceVersion != "3" ||
		tg.TLSMountPath != "/config/tls" || tg.Port() != 9998 || len(tg.Pods) != 1 || tg.Pods[0].Name != "pgpool-7d9f-x1" || strings.Join(tg.Services, ",") != "pgpool" ||
		!tg.State.Enabled || tg.State.SSLMode != "require" || tg.State.AuthMode != "md5" || tg.State.HBAEnforced {
		t.Fatalf("discovered %+v, state %+v", tg, tg.State)
	}
	if len(c.Writes()) != 0 {
		t.Fatalf("discovery wrote: %v", c.Writes())
	}
}

func TestDiscoverErrors(t *testing.T) {
	// Nothing of that name.
	c := fakes.New(nil, nil, nil)
	_, err := Discover(context.Background(), clients(c), "demo", "pgpool")
	var nf *NotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "kubectl get statefulsets,deployments -n demo") {
		t.Fatalf("not found: %v", err)
	}
	// A StatefulSet and a Deployment of the same name.
	c = fakes.New([]runtime.Object{&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "demo"}}}, nil,
		[]runtime.Object{workload("StatefulSet", "x"), workload("Deployment", "x")})
	if _, err := Discover(context.Background(), clients(c), "demo", "pgpool"); err == nil || !strings.Contains(err.Error(), "ambiguous: it names a StatefulSet and a Deployment") {
		t.Fatalf("ambiguous: %v", err)
	}
	// The mounted ConfigMap has no pgpool.conf; another is missing.
	c = fakes.New([]runtime.Object{&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "demo"}}}, nil,
		[]runtime.Object{workload("StatefulSet", "other")})
	if _, err := Discover(context.Background(), clients(c), "demo", "pgpool"); err == nil || !strings.Contains(err.Error(), "none of the mounted ConfigMap other has a pgpool.conf key") {
		t.Fatalf("no config: %v", err)
	}
	c = fakes.New(nil, nil, []runtime.Object{workload("StatefulSet", "gone")})
	if _, err := Discover(context.Background(), clients(c), "demo", "pgpool"); err == nil || !strings.Contains(err.Error(), "ConfigMap gone (not found)") {
		t.Fatalf("missing config: %v", err)
	}
}

// A fleet's listing knows each workload's kind: discovery then reads only
// that kind. A name two kinds share keeps no kind, so Discover refuses it.
func TestFindKnowsTheKind(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-config", Namespace: "demo"}, Data: map[string]string{"pgpool.conf": "ssl = off\n"}}
	c := fakes.New([]runtime.Object{cm}, nil, []runtime.Object{workload("Deployment", "pgpool-config")})
	refs, err := Find(context.Background(), c.Dynamic, "demo", "")
	if err != nil || len(refs) != 1 || refs[0].Kind != "Deployment" {
		t.Fatalf("Find = %+v, %v", refs, err)
	}
	before := len(c.Dynamic.Actions())
	if _, err := DiscoverRef(context.Background(), clients(c), refs[0]); err != nil {
		t.Fatal(err)
	}
	for _, a := range c.Dynamic.Actions()[before:] {
		if a.GetVerb() == "get" && a.GetResource().Resource != "deployments" {
			t.Errorf("read %s although the kind is known", a.GetResource().Resource)
		}
	}
	both := fakes.New([]runtime.Object{cm}, nil, []runtime.Object{workload("Deployment", "pgpool-config"), workload("StatefulSet", "pgpool-config")})
	refs, err = Find(context.Background(), both.Dynamic, "demo", "")
	if err != nil || len(refs) != 1 || refs[0].Kind != "" {
		t.Fatalf("Find over a shared name = %+v, %v", refs, err)
	}
	if _, err := DiscoverRef(context.Background(), clients(both), refs[0]); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("a name two kinds share: %v", err)
	}
}
