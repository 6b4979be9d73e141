package restart

// Waits by watch for what the workload's controller does: a rollout, old
// pods gone, every pod Ready.

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// WaitRollout waits, by watch on the workload, until its controller has
// finished a rolling update as done judges it (the layout's RolloutDone),
// reporting done's progress messages as they change.
func WaitRollout(ctx context.Context, dyn dynamic.NamespaceableResourceInterface, ns, name string, done func(*unstructured.Unstructured) (bool, string), o Options) error {
	lw := workloadLW(dyn, ns, name)
	last := ""
	_, err := watchtools.UntilWithSync(ctx, lw, &unstructured.Unstructured{}, nil, func(e watch.Event) (bool, error) {
		u, ok := e.Object.(*unstructured.Unstructured)
		if !ok {
			return false, nil
		}
		if e.Type == watch.Deleted {
			return false, fmt.Errorf("%s %s/%s was deleted during the rollout", u.GetKind(), ns, name)
		}
		ok, msg := done(u)
		if msg != last {
			last = msg
			o.progress("%s", msg)
		}
		return ok, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return waitErr(ctx, fmt.Sprintf("the rollout of %s/%s (last: %s)", ns, name, last))
		}
		return err
	}
	return nil
}

// WaitGone waits, by watch, until no pod with one of the given UIDs is left
// (old pods of a rollout that are still terminating).
func WaitGone(ctx context.Context, core corev1client.CoreV1Interface, ns, selector string, uids map[types.UID]bool, o Options) error {
	lw := podsLW(core, ns, selector)
	left := map[types.UID]string{}
	last := -1
	err := untilWithSync(ctx, lw, &corev1.Pod{}, func(store cache.Store) (bool, error) {
		for _, obj := range store.List() {
			if p, ok := obj.(*corev1.Pod); ok && uids[p.UID] {
				left[p.UID] = p.Name
			}
		}
		return len(left) == 0, nil
	}, func(e watch.Event) (bool, error) {
		p, ok := e.Object.(*corev1.Pod)
		if !ok || !uids[p.UID] {
			return false, nil
		}
		if e.Type == watch.Deleted {
			delete(left, p.UID)
		} else {
			left[p.UID] = p.Name
		}
		if len(left) != last {
			last = len(left)
			o.progress("%d old pods still terminating", len(left))
		}
		return len(left) == 0, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return waitErr(ctx, fmt.Sprintf("%d old pods to terminate", len(left)))
		}
		return err
	}
	return nil
}

// WaitReady waits, by watch, until want pods of the workload (owns; nil:
// every pod the selector matches) are Ready and not terminating: the end of
// a roll that another run started, or a controller's. A pod that cannot
// start (Stuck) fails the wait at once. It returns the pods the selector
// matched at the end (so that the caller need not list them again).
func WaitReady(ctx context.Context, core corev1client.CoreV1Interface, ns, selector string, want int, owns func(*corev1.Pod) bool, o Options) ([]corev1.Pod, error) {
	lw := podsLW(core, ns, selector)
	ready := 0
	last := -1
	count := func(pods []any) (bool, error) {
		ready = 0
		for _, obj := range pods {
			p, ok := obj.(*corev1.Pod)
			if !ok || (owns != nil && !owns(p)) || p.DeletionTimestamp != nil {
				continue
			}
			if why := Stuck(p); why != "" {
				return false, &StuckError{Namespace: ns, Pod: p.Name, Why: why}
			}
			if pgpool.PodReady(p) {
				ready++
			}
		}
		if ready != last {
			last = ready
			o.progress("%d of %d pods Ready", ready, want)
		}
		return ready >= want, nil
	}
	var store cache.Store
	err := untilWithSync(ctx, lw, &corev1.Pod{}, func(s cache.Store) (bool, error) {
		store = s
		return count(s.List())
	}, func(watch.Event) (bool, error) {
		return count(store.List())
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, waitErr(ctx, fmt.Sprintf("%d pods to be Ready (%d are)", want, ready))
		}
		return nil, err
	}
	var pods []corev1.Pod
	for _, obj := range store.List() {
		if p, ok := obj.(*corev1.Pod); ok {
			pods = append(pods, *p)
		}
	}
	pgpool.SortPods(pods)
	return pods, nil
}

// podsLW lists and watches the pods in ns that selector matches.
func podsLW(core corev1client.CoreV1Interface, ns, selector string) *cache.ListWatch {
	return selectorLW(selector, core.Pods(ns).List, core.Pods(ns).Watch)
}

// selectorLW lists and watches with a label selector.
func selectorLW[L runtime.Object](selector string, list func(context.Context, metav1.ListOptions) (L, error), watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, lo metav1.ListOptions) (runtime.Object, error) {
			lo.LabelSelector = selector
			return list(ctx, lo)
		},
		WatchFuncWithContext: func(ctx context.Context, lo metav1.ListOptions) (watch.Interface, error) {
			lo.LabelSelector = selector
			return watchFn(ctx, lo)
		},
	}
}

// WatchWorkload starts the watch of the workload name (for
// WaitControllerSaw).
func WatchWorkload(ctx context.Context, dyn dynamic.NamespaceableResourceInterface, ns, name string) *Watch {
	return StartWatch(ctx, workloadLW(dyn, ns, name), &unstructured.Unstructured{})
}

// workloadLW lists and watches the one workload name in ns.
func workloadLW(dyn dynamic.NamespaceableResourceInterface, ns, name string) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, lo metav1.ListOptions) (runtime.Object, error) {
			lo.FieldSelector = "metadata.name=" + name
			return dyn.Namespace(ns).List(ctx, lo)
		},
		WatchFuncWithContext: func(ctx context.Context, lo metav1.ListOptions) (watch.Interface, error) {
			lo.FieldSelector = "metadata.name=" + name
			return dyn.Namespace(ns).Watch(ctx, lo)
		},
	}
}

// WaitControllerSaw waits until the workload's controller reports at least
// ready Ready pods (status.readyReplicas, for the current generation): its
// view of the pods has caught up with the replacement. A controller that
// acts on a stale view deletes again what it sees as the evicted pod
// (kubeops/petset deletes a terminated pod by name, which then hits its
// replacement), so the next pod is not evicted before. It gives up after
// limit (a controller that reports no status) and says so.
func WaitControllerSaw(ctx context.Context, w *Watch, ready int, limit time.Duration, o Options) error {
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	saw := func(u *unstructured.Unstructured) bool {
		n, _, _ := unstructured.NestedInt64(u.Object, "status", "readyReplicas")
		obs, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		return int(n) >= ready && (!found || obs >= u.GetGeneration())
	}
	err := w.Until(wctx, func(store cache.Store) (bool, error) {
		for _, obj := range store.List() {
			if u, ok := obj.(*unstructured.Unstructured); ok && saw(u) {
				return true, nil
			}
		}
		return false, nil
	}, func(e watch.Event) (bool, error) {
		u, ok := e.Object.(*unstructured.Unstructured)
		return ok && saw(u), nil
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return waitErr(ctx, "the workload's controller to see the replacement")
	case wctx.Err() != nil:
		o.progress("the workload's controller did not report %d Ready pods within %s; going on", ready, limit)
		return nil
	}
	return err
}
