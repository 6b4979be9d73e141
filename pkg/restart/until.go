package restart

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
)

// untilWithSync is client-go's watchtools.UntilWithSync, except that it
// waits for the informer's first list without polling: UntilWithSync polls
// HasSynced every 100 ms (cache.WaitForCacheSync), which added up to 100 ms
// to every wait of a roll; cache.WaitFor with the informer's
// HasSyncedChecker returns as soon as the list is in the store.
func untilWithSync(ctx context.Context, lw cache.ListerWatcher, objType runtime.Object, precondition watchtools.PreconditionFunc, conditions ...watchtools.ConditionFunc) error {
	indexer, informer, watcher, done := watchtools.NewIndexerInformerWatcherWithLogger(klog.FromContext(ctx), lw, objType)
	defer func() { <-done }()
	defer watcher.Stop()
	if precondition != nil {
		if !cache.WaitFor(ctx, "", informer.HasSyncedChecker()) {
			return fmt.Errorf("unable to sync caches: %w", ctx.Err())
		}
		ok, err := precondition(indexer)
		if err != nil || ok {
			return err
		}
	}
	_, err := watchtools.UntilWithoutRetry(ctx, watcher, conditions...)
	return err
}
