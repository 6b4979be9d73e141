package restart

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
)

// Watch is a list and watch started ahead of the wait that reads it, so
// that its first list is in by the time the wait begins (a round trip
// saved); its events queue until then. Stop it when done.
type Watch struct {
	store    cache.Store
	informer cache.Controller
	watcher  watch.Interface
	done     <-chan struct{}
}

// StartWatch lists and watches lw at once, in the background.
func StartWatch(ctx context.Context, lw cache.ListerWatcher, objType runtime.Object) *Watch {
	store, informer, watcher, done := watchtools.NewIndexerInformerWatcherWithLogger(klog.FromContext(ctx), lw, objType)
	return &Watch{store: store, informer: informer, watcher: watcher, done: done}
}

// WatchPods starts the watch of the pods selector matches in ns, for
// WaitReplaced (Replacement.Pods).
func WatchPods(ctx context.Context, core corev1client.CoreV1Interface, ns, selector string) *Watch {
	return StartWatch(ctx, podsLW(core, ns, selector), &corev1.Pod{})
}

// WatchEndpoints starts the watch of the EndpointSlices of services in ns,
// for WaitEndpointsOn.
func WatchEndpoints(ctx context.Context, c discoveryv1client.DiscoveryV1Interface, ns string, services []string) *Watch {
	slices := c.EndpointSlices(ns)
	lw := selectorLW(fmt.Sprintf("%s in (%s)", discoveryv1.LabelServiceName, strings.Join(services, ",")), slices.List, slices.Watch)
	return StartWatch(ctx, lw, &discoveryv1.EndpointSlice{})
}

// Objects are what the watch holds now.
func (w *Watch) Objects() []any { return w.store.List() }

// Stop ends the watch and waits for its informer to return.
func (w *Watch) Stop() {
	w.watcher.Stop()
	<-w.done
}

// Until is client-go's watchtools.UntilWithSync on this watch, except that
// it waits for the first list without polling: UntilWithSync polls
// HasSynced every 100 ms (cache.WaitForCacheSync), which added up to 100 ms
// to every wait of a roll; cache.WaitFor with the informer's
// HasSyncedChecker returns as soon as the list is in the store.
func (w *Watch) Until(ctx context.Context, precondition watchtools.PreconditionFunc, conditions ...watchtools.ConditionFunc) error {
	if precondition != nil {
		if !cache.WaitFor(ctx, "", w.informer.HasSyncedChecker()) {
			return fmt.Errorf("unable to sync caches: %w", ctx.Err())
		}
		ok, err := precondition(w.store)
		if err != nil || ok {
			return err
		}
	}
	_, err := watchtools.UntilWithoutRetry(ctx, w.watcher, conditions...)
	return err
}

// untilWithSync starts a watch of lw and waits on it (Watch.Until).
func untilWithSync(ctx context.Context, lw cache.ListerWatcher, objType runtime.Object, precondition watchtools.PreconditionFunc, conditions ...watchtools.ConditionFunc) error {
	w := StartWatch(ctx, lw, objType)
	defer w.Stop()
	return w.Until(ctx, precondition, conditions...)
}
