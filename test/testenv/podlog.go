package testenv

// PodLog watches the pods of a roll.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// PodLog records, by watch, every pod UID that appears in a namespace, and
// the lowest number of Ready pods seen, from the moment it starts.
type PodLog struct {
	t     testing.TB
	mu    sync.Mutex
	added map[types.UID]string
	ready map[types.UID]bool
	// history is, per pod UID seen, what the watch saw happen to it: its
	// creation, and how it was deleted (the DisruptionTarget condition the
	// API server or a controller sets says who: EvictionByEvictionAPI,
	// DeletionByTaintManager, DeletionByPodGC, TerminationByKubelet...).
	history []string
	// deleting are the pods whose deletion the history has.
	deleting map[types.UID]bool
	minReady int
	stop     context.CancelFunc
	done     chan struct{}
	once     sync.Once
	// ended says why the watch ended before Stop (an error event, or the
	// result channel closed): then the log is incomplete.
	ended error
}

// WatchPods starts recording pods matching selector in ns.
func (e *Env) WatchPods(t testing.TB, ns, selector string) *PodLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	list, err := e.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	l := &PodLog{t: t, added: map[types.UID]string{}, ready: map[types.UID]bool{}, deleting: map[types.UID]bool{}, stop: cancel, done: make(chan struct{})}
	for _, p := range list.Items {
		l.ready[p.UID] = PodReady(&p)
	}
	l.minReady = countTrue(l.ready)
	// A RetryWatcher resumes from the last resourceVersion when the server
	// closes the watch, so no event is lost; when it cannot, the log says
	// so and Stop fails the test.
	lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		o.LabelSelector = selector
		return e.Kube.CoreV1().Pods(ns).Watch(ctx, o)
	}}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, lw)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(l.done)
		defer w.Stop()
		for {
			var ev watch.Event
			var open bool
			select {
			case <-ctx.Done():
				return
			case ev, open = <-w.ResultChan():
			}
			if !open {
				if ctx.Err() == nil {
					l.mu.Lock()
					l.ended = errors.New("the pod watch closed")
					l.mu.Unlock()
				}
				return
			}
			if ev.Type == watch.Error {
				l.mu.Lock()
				l.ended = fmt.Errorf("the pod watch failed: %v", apierrors.FromObject(ev.Object))
				l.mu.Unlock()
				return
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			l.mu.Lock()
			switch ev.Type {
			case watch.Added:
				l.added[p.UID] = p.Name
				l.ready[p.UID] = PodReady(p)
				l.history = append(l.history, fmt.Sprintf("%s created %s (uid %.8s, node %q)", p.CreationTimestamp.UTC().Format("15:04:05"), p.Name, p.UID, p.Spec.NodeName))
			case watch.Modified:
				if p.DeletionTimestamp != nil && !l.deleting[p.UID] {
					l.deleting[p.UID] = true
					l.history = append(l.history, fmt.Sprintf("%s deleting %s (uid %.8s, phase %s%s)", p.DeletionTimestamp.UTC().Format("15:04:05"), p.Name, p.UID, p.Status.Phase, disruption(p)))
				}
				l.ready[p.UID] = PodReady(p)
			case watch.Deleted:
				delete(l.ready, p.UID)
				l.history = append(l.history, fmt.Sprintf("deleted %s (uid %.8s, phase %s%s)", p.Name, p.UID, p.Status.Phase, disruption(p)))
			}
			if n := countTrue(l.ready); n < l.minReady {
				l.minReady = n
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(l.Stop)
	return l
}

// disruption says who disrupted a pod, from its DisruptionTarget
// condition, and names its owner.
func disruption(p *corev1.Pod) string {
	out := ""
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget {
			out += fmt.Sprintf(", %s: %s", c.Reason, c.Message)
		}
	}
	if p.Status.Reason != "" {
		out += ", reason " + p.Status.Reason
	}
	return out
}

// History is what the watch saw happen to each pod, in order: for a
// failure message.
func (l *PodLog) History() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.history, "\n")
}

func countTrue(m map[types.UID]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

// Stop ends the watch; it fails the test if the watch had ended early, since
// the log would then be incomplete.
func (l *PodLog) Stop() {
	l.once.Do(func() {
		l.stop()
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.ended != nil {
			l.t.Fatalf("pod log incomplete: %v", l.ended)
		}
	})
}

// Added returns the pods created since the watch began.
func (l *PodLog) Added() map[types.UID]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[types.UID]string{}
	for k, v := range l.added {
		out[k] = v
	}
	return out
}

// MinReady is the lowest number of Ready pods seen since the watch began.
func (l *PodLog) MinReady() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.minReady
}
