package restart

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// The roll waits until the workload's controller counts the replacement
// Ready (status.readyReplicas for the current generation) before the next
// pod goes; a controller that never says so holds the roll only for the
// limit, and the wait says it went on.
func TestWaitControllerSaw(t *testing.T) {
	sts := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "StatefulSet",
		"metadata": map[string]any{"name": "pgpool", "namespace": "demo", "generation": int64(2)},
		"status":   map[string]any{"readyReplicas": int64(1), "observedGeneration": int64(2)}}}
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{pgpool.StatefulSets: "StatefulSetList"}, sts)
	res := dyn.Resource(pgpool.StatefulSets)
	ctx := context.Background()
	w := WatchWorkload(ctx, res, "demo", "pgpool")
	defer w.Stop()
	var said []string
	o := Options{OnProgress: func(s string) { said = append(said, s) }}
	done := make(chan error, 1)
	go func() { done <- WaitControllerSaw(ctx, w, 2, time.Minute, o) }()
	_ = unstructured.SetNestedField(sts.Object, int64(2), "status", "readyReplicas")
	if _, err := res.Namespace("demo").UpdateStatus(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || len(said) != 0 {
			t.Fatalf("the controller saw 2 Ready: %v %v", err, said)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the wait did not end when the controller counted 2 Ready pods")
	}
	if err := WaitControllerSaw(ctx, w, 3, 100*time.Millisecond, o); err != nil || len(said) != 1 || !strings.Contains(said[0], "did not report 3 Ready pods within 100ms; going on") {
		t.Fatalf("a controller that never counts 3: %v %v", err, said)
	}
}
