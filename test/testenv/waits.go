package testenv

// Waits by watch, each with a deadline.

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// WaitPodsReady waits, by watch, until n pods matching selector in ns are
// Ready, and returns them.
func (e *Env) WaitPodsReady(t testing.TB, ns, selector string, n int, d time.Duration) []corev1.Pod {
	t.Helper()
	ctx := Context(t, d)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (k8sruntime.Object, error) {
			o.LabelSelector = selector
			return e.Kube.CoreV1().Pods(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return e.Kube.CoreV1().Pods(ns).Watch(ctx, o)
		},
	}
	// Counted over the informer's store, never over the events seen so
	// far: the initial list arrives as one event per pod, and counting
	// those returned "2 of 2 Ready" before a third, terminating pod of
	// the same list had been delivered.
	var store cache.Store
	done := func() bool {
		ready, items := 0, store.List()
		for _, o := range items {
			if p, ok := o.(*corev1.Pod); ok && PodReady(p) {
				ready++
			}
		}
		return ready == n && len(items) == n
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, func(s cache.Store) (bool, error) {
		store = s
		return done(), nil
	}, func(watch.Event) (bool, error) { return done(), nil })
	if err != nil {
		have := 0
		if store != nil {
			have = len(store.List())
		}
		t.Fatalf("waiting for %d Ready pods (%s) in %s: %v (have %d)", n, selector, ns, err, have)
	}
	var out []corev1.Pod
	for _, o := range store.List() {
		out = append(out, *o.(*corev1.Pod))
	}
	return out
}

// PodReady reports whether p is Ready and not terminating.
func PodReady(p *corev1.Pod) bool { return pgpool.PodReady(p) }

// WaitObject waits, by watch, until cond holds for the named object of gvr.
func WaitObject[T k8sruntime.Object](t testing.TB, ctx context.Context, lw cache.ListerWatcher, obj T, what string, cond func(T) bool) T {
	t.Helper()
	ev, err := watchtools.UntilWithSync(ctx, lw, obj, nil, func(ev watch.Event) (bool, error) {
		o, ok := ev.Object.(T)
		return ok && ev.Type != watch.Deleted && cond(o), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return ev.Object.(T)
}

// NameSelector is a field selector on metadata.name.
func NameSelector(name string) string {
	return fields.OneTermEqualSelector("metadata.name", name).String()
}

// WaitIssuerReady waits, by watch, for Issuer ns/name to be Ready.
func (e *Env) WaitIssuerReady(t testing.TB, ctx context.Context, ns, name string) {
	t.Helper()
	e.waitIssuer(t, ctx, ns, name, cmmeta.ConditionTrue)
}

// WaitIssuerNotReady waits, by watch, until cert-manager reports the Issuer
// not Ready (after its spec was broken).
func (e *Env) WaitIssuerNotReady(t testing.TB, ctx context.Context, ns, name string) {
	t.Helper()
	e.waitIssuer(t, ctx, ns, name, cmmeta.ConditionFalse)
}

func (e *Env) waitIssuer(t testing.TB, ctx context.Context, ns, name string, want cmmeta.ConditionStatus) {
	t.Helper()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (k8sruntime.Object, error) {
			o.FieldSelector = NameSelector(name)
			return e.CertMgr.CertmanagerV1().Issuers(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = NameSelector(name)
			return e.CertMgr.CertmanagerV1().Issuers(ns).Watch(ctx, o)
		},
	}
	WaitObject(t, ctx, lw, &cmapi.Issuer{}, "Issuer "+ns+"/"+name+" Ready="+string(want), func(i *cmapi.Issuer) bool {
		for _, c := range i.Status.Conditions {
			if c.Type == cmapi.IssuerConditionReady && c.Status == want && c.ObservedGeneration == i.Generation {
				return true
			}
		}
		return false
	})
}
