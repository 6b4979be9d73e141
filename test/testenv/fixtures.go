package testenv

// The test fixtures (test/fixtures) applied to the cluster.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// Fixture reads test/fixtures/NAME as objects.
func (e *Env) Fixture(t testing.TB, name string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Root, "test", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return decodeObjects(t, name, b)
}

// KubeDBFixtureNamed is kubedb.yaml for a pgpool named name instead of
// pgpool (its workload, config, Services, PDB and labels), so that two
// pgpools can share a namespace.
func (e *Env) KubeDBFixtureNamed(t testing.TB, name string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Root, "test", "fixtures", "kubedb.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer(
		"name: pgpool-config", "name: "+name+"-config",
		"secretName: pgpool-config", "secretName: "+name+"-config",
		"app.kubernetes.io/instance: pgpool", "app.kubernetes.io/instance: "+name,
		"serviceName: pgpool-pods", "serviceName: "+name+"-pods",
		"  name: pgpool-pods\n", "  name: "+name+"-pods\n",
		"\n  name: pgpool\n", "\n  name: "+name+"\n",
	)
	return decodeObjects(t, "kubedb.yaml as "+name, []byte(r.Replace(string(b))))
}

func decodeObjects(t testing.TB, name string, b []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("decode %s: %v", name, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

// Apply creates the objects in ns (cluster-scoped and namespaced objects
// that name their own namespace keep it), setting spec.replicas of
// workloads to replicas when it is > 0. Objects that exist are updated by
// server-side apply.
func (e *Env) Apply(t testing.TB, ns string, objs []*unstructured.Unstructured, replicas int) {
	t.Helper()
	ctx := Context(t, time.Minute)
	for _, o := range objs {
		o = o.DeepCopy()
		if replicas > 0 && (o.GetKind() == "StatefulSet" || o.GetKind() == "Deployment" || o.GetKind() == "PetSet") {
			_ = unstructured.SetNestedField(o.Object, int64(replicas), "spec", "replicas")
		}
		gvk := o.GroupVersionKind()
		m, err := e.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			// A CRD installed since the mapper read the API: read it again
			// until the API server serves the kind (with a deadline).
			_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
				if r, ok := e.Mapper.(meta.ResettableRESTMapper); ok {
					r.Reset()
				}
				m, err = e.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
				return !meta.IsNoMatchError(err), nil
			})
		}
		if err != nil {
			t.Fatalf("map %s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = e.Dynamic.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				o.SetNamespace(ns)
			}
			ri = e.Dynamic.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		data, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		force := true
		if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "testenv", Force: &force}); err != nil {
			t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}
