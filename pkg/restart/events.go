package restart

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// eventWatch reads the Events of replacement pods that are not Ready yet:
// a volume that keeps failing to mount (FailedMount) or a readiness probe
// that keeps failing (Unhealthy) for longer than its limit makes the pod
// stuck, which stop reports (with the kubelet's message) to the wait.
type eventWatch struct {
	mountFor, unreadyFor time.Duration
	stop                 context.CancelCauseFunc

	mu sync.Mutex
	// candidates are the replacement pods that are not Ready, by UID.
	candidates map[types.UID]*corev1.Pod
	timers     map[string]*time.Timer
}

func newEventWatch(o Options, stop context.CancelCauseFunc) *eventWatch {
	w := &eventWatch{mountFor: o.MountFailingFor, unreadyFor: o.UnreadyFor, stop: stop,
		candidates: map[types.UID]*corev1.Pod{}, timers: map[string]*time.Timer{}}
	if w.mountFor <= 0 {
		w.mountFor = 20 * time.Second
	}
	if w.unreadyFor <= 0 {
		w.unreadyFor = 60 * time.Second
	}
	return w
}

// setCandidates records which pods are replacements not Ready yet: not the
// evicted one, not a pod from before, the workload's, not terminating.
func (w *eventWatch) setCandidates(pods map[string]*corev1.Pod, old types.UID, r Replacement) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.candidates = map[types.UID]*corev1.Pod{}
	for _, p := range pods {
		if p.UID == old || r.Known[p.UID] || p.DeletionTimestamp != nil || pgpool.PodReady(p) || (r.Owns != nil && !r.Owns(p)) {
			continue
		}
		w.candidates[p.UID] = p
	}
}

func (w *eventWatch) run(ctx context.Context, core corev1client.CoreV1Interface, ns string) {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, lo metav1.ListOptions) (runtime.Object, error) {
			lo.FieldSelector = "involvedObject.kind=Pod"
			return core.Events(ns).List(ctx, lo)
		},
		WatchFuncWithContext: func(ctx context.Context, lo metav1.ListOptions) (watch.Interface, error) {
			lo.FieldSelector = "involvedObject.kind=Pod"
			return core.Events(ns).Watch(ctx, lo)
		},
	}
	// The wait on the pods decides; a failing Event watch only loses this
	// early warning (the wait still ends at the step's deadline).
	_, _ = watchtools.UntilWithSync(ctx, lw, &corev1.Event{}, nil, func(e watch.Event) (bool, error) {
		if ev, ok := e.Object.(*corev1.Event); ok && e.Type != watch.Deleted {
			w.saw(ev)
		}
		return false, nil
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range w.timers {
		t.Stop()
	}
}

// saw handles one Event: for a candidate's FailedMount or failed readiness
// probe, it arms a timer for the limit counted from the Event's first
// occurrence; when it fires and the pod is still a candidate, it is stuck.
func (w *eventWatch) saw(ev *corev1.Event) {
	var limit time.Duration
	var what string
	switch {
	case ev.Reason == "FailedMount":
		limit, what = w.mountFor, "its volumes fail to mount"
	case ev.Reason == "Unhealthy" && strings.HasPrefix(ev.Message, "Readiness probe failed"):
		limit, what = w.unreadyFor, "its readiness probe fails"
	default:
		return
	}
	uid := ev.InvolvedObject.UID
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.candidates[uid]
	if p == nil {
		return
	}
	first := ev.FirstTimestamp.Time
	if first.IsZero() {
		first = ev.EventTime.Time
	}
	if first.IsZero() || first.Before(p.CreationTimestamp.Time) {
		first = time.Now()
	}
	key := string(uid) + "/" + ev.Reason
	if t := w.timers[key]; t != nil {
		t.Stop()
	}
	msg := ev.Message
	w.timers[key] = time.AfterFunc(time.Until(first.Add(limit)), func() {
		w.mu.Lock()
		p := w.candidates[uid]
		w.mu.Unlock()
		if p != nil {
			w.stop(&StuckError{Namespace: p.Namespace, Pod: p.Name, Why: fmt.Sprintf("%s (for %s): %s", what, limit, msg)})
		}
	})
}

// Guard watches the pods of a roll that the workload's controller carries
// out (there is no single replacement to wait for): a new pod (not among
// known, the workload's) that cannot start, or whose volumes or readiness
// keep failing, cancels the returned context with a StuckError. Call stop
// when the wait is over.
func Guard(ctx context.Context, core corev1client.CoreV1Interface, ns, selector string, known map[types.UID]bool, owns func(*corev1.Pod) bool, o Options) (guarded context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	ev := newEventWatch(o, cancel)
	go ev.run(ctx, core, ns)
	r := Replacement{Known: known, Owns: owns}
	lw := podsLW(core, ns, selector)
	go func() {
		pods := map[string]*corev1.Pod{}
		_, _ = watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(e watch.Event) (bool, error) {
			p, ok := e.Object.(*corev1.Pod)
			if !ok {
				return false, nil
			}
			if e.Type == watch.Deleted {
				delete(pods, p.Name)
			} else {
				pods[p.Name] = p
			}
			ev.setCandidates(pods, "", r)
			if e.Type != watch.Deleted && !known[p.UID] && p.DeletionTimestamp == nil && (owns == nil || owns(p)) {
				if why := Stuck(p); why != "" {
					cancel(&StuckError{Namespace: ns, Pod: p.Name, Why: why})
					return true, nil
				}
			}
			return false, nil
		})
	}()
	return ctx, func() { cancel(nil) }
}

// StuckCause is the StuckError that cancelled a guarded context, if any.
func StuckCause(ctx context.Context) *StuckError {
	var se *StuckError
	if errors.As(context.Cause(ctx), &se) {
		return se
	}
	return nil
}
