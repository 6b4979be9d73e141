// Package restart owns replacing pgpool pods one at a time: eviction through
// the Eviction API (so PodDisruptionBudgets are honoured: HTTP 429 means a
// PDB said no, and the eviction is retried), then waiting by watch for the
// replacement (a new UID) to be Ready; and waiting for a workload
// controller's own rolling update. Progress leaves through callbacks; this
// package prints nothing.
package restart

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	policyv1client "k8s.io/client-go/kubernetes/typed/policy/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// Options tune EvictAndWait.
type Options struct {
	// RetryInterval is the pause after a 429 before evicting again (default 2s).
	RetryInterval time.Duration
	// DryRun is sent with the eviction; when set, nothing is waited for.
	DryRun []string
	// OnProgress receives human progress lines.
	OnProgress func(string)
	// MountFailingFor and UnreadyFor: a replacement whose volumes have
	// failed to mount (FailedMount Events) for MountFailingFor, or whose
	// readiness probe has failed (Unhealthy Events) for UnreadyFor, is
	// stuck (defaults 20s and 60s).
	MountFailingFor time.Duration
	UnreadyFor      time.Duration
}

// Replacement says how a pod's replacement is recognised.
type Replacement struct {
	// SameName: a StatefulSet/PetSet pod comes back under its own name.
	SameName bool
	// Selector selects the workload's pods (used when !SameName).
	Selector string
	// Owns tells the workload's pods from others with its labels (nil:
	// every pod the selector matches).
	Owns func(*corev1.Pod) bool
	// Known are the UIDs of pods that existed before the roll; a replacement
	// is a Ready pod whose UID is not among them.
	Known map[types.UID]bool
	// Want is how many Ready pods the workload should have (when !SameName).
	Want int
	// Pods is the watch of the pods Selector matches (WatchPods), started
	// before the eviction; nil: WaitReplaced starts its own.
	Pods *Watch
}

func (o *Options) progress(format string, args ...any) {
	if o.OnProgress != nil {
		o.OnProgress(fmt.Sprintf(format, args...))
	}
}

// Evict evicts one pod through the Eviction API, retrying while a
// PodDisruptionBudget refuses (429) until ctx ends, and returns how long
// it was refused. A pod that is already gone counts as evicted.
func Evict(ctx context.Context, policy policyv1client.PolicyV1Interface, ns, name string, uid types.UID, o Options) (refused time.Duration, err error) {
	if o.RetryInterval == 0 {
		o.RetryInterval = 2 * time.Second
	}
	ev := &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Name: name, Namespace: ns},
		DeleteOptions: &metav1.DeleteOptions{DryRun: o.DryRun, Preconditions: &metav1.Preconditions{UID: &uid}},
	}
	attempts := 0
	var first time.Time
	since := func() time.Duration {
		if first.IsZero() {
			return 0
		}
		return time.Since(first)
	}
	for {
		attempts++
		err := policy.Evictions(ns).Evict(ctx, ev)
		switch {
		case err == nil:
			return since(), nil
		case apierrors.IsNotFound(err):
			return since(), nil
		case apierrors.IsConflict(err) && uid != "" && uidMismatch(err):
			// The UID precondition failed: the pod was already replaced.
			return since(), nil
		case apierrors.IsConflict(err), apierrors.IsTooManyRequests(err):
			// A PodDisruptionBudget refuses for now (429), or the budget's
			// status changed under the eviction (any other 409): evict again.
			why := "a PodDisruptionBudget refused evicting pod " + name
			if apierrors.IsConflict(err) {
				why = "evicting pod " + name + " met a conflict"
			} else if first.IsZero() {
				first = time.Now()
			}
			o.progress("%s (attempt %d): %s; retrying in %s", why, attempts, reason(err), o.RetryInterval)
			t := time.NewTimer(o.RetryInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return since(), fmt.Errorf("evict pod %s/%s: %s, %d attempts (last: %s): %w", ns, name, why, attempts, reason(err), ctx.Err())
			case <-t.C:
			}
		default:
			return since(), fmt.Errorf("evict pod %s/%s: %w", ns, name, err)
		}
	}
}

// uidMismatch reports whether a 409 is the pod's UID precondition failing,
// in either of the API server's words (the eviction's own check, or the
// storage layer's).
func uidMismatch(err error) bool {
	m := err.Error()
	return strings.Contains(m, "UID in the precondition") || strings.Contains(m, "UID in precondition")
}

// waitErr says why a wait for what ended early: the step's deadline, or a
// cancel (Ctrl-C) with its cause.
func waitErr(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out waiting for %s: %w", what, context.DeadlineExceeded)
	}
	return fmt.Errorf("stopped waiting for %s: %w", what, context.Cause(ctx))
}

func reason(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return se.Status().Message
	}
	return err.Error()
}

// StuckError is a replacement pod that cannot start.
type StuckError struct{ Namespace, Pod, Why string }

func (e *StuckError) Error() string {
	return fmt.Sprintf("replacement pod %s/%s cannot start: %s; the roll stops here (see `kubectl describe pod -n %s %s` and its logs)", e.Namespace, e.Pod, e.Why, e.Namespace, e.Pod)
}

// Stuck says why a pod cannot start and will not by itself (a container
// crash-looping, an image that cannot be pulled, a container config that
// cannot be created, the pod failed), or "" while it may still become
// Ready. A pod that is being deleted is not stuck: it is on its way out,
// and its controller makes another (kubeops/petset deletes a fresh
// replacement it mistakes for the evicted pod; it reaches a terminal phase
// while it goes, and the next one starts).
func Stuck(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return ""
	}
	if p.Status.Phase == corev1.PodFailed {
		return fmt.Sprintf("the pod failed (%s: %s)", p.Status.Reason, p.Status.Message)
	}
	statuses := append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, c := range statuses {
		w := c.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
			msg := w.Message
			if t := c.LastTerminationState.Terminated; t != nil {
				msg = fmt.Sprintf("%s; last exit code %d (%s)", msg, t.ExitCode, t.Reason)
			}
			return fmt.Sprintf("container %s: %s: %s", c.Name, w.Reason, strings.TrimPrefix(msg, "; "))
		}
	}
	return ""
}

// WaitReplaced waits, by watch, until the pod evicted as (name, uid) has a
// Ready replacement, and returns it. A replacement that cannot start
// (Stuck) fails the wait at once, with the reason, instead of at the
// deadline.
func WaitReplaced(ctx context.Context, core corev1client.CoreV1Interface, ns, name string, uid types.UID, r Replacement, o Options) (*corev1.Pod, error) {
	w := r.Pods
	if w == nil {
		w = WatchPods(ctx, core, ns, r.Selector)
		defer w.Stop()
	}
	pods := map[string]*corev1.Pod{}
	var found *corev1.Pod
	phase := ""
	seenOld := false
	say := func(p string) {
		if p != phase {
			phase = p
			o.progress("%s", p)
		}
	}
	parent := ctx
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	ev := newEventWatch(o, stop)
	go ev.run(ctx, core, ns)
	err := w.Until(ctx, nil, func(e watch.Event) (bool, error) {
		p, ok := e.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		defer func() { ev.setCandidates(pods, uid, r) }()
		if e.Type == watch.Deleted {
			delete(pods, p.Name)
		} else {
			pods[p.Name] = p
		}
		if p.UID == uid {
			seenOld = true
		}
		if r.SameName {
			cur := pods[name]
			switch {
			case cur == nil && !seenOld:
				// Still syncing the initial list: say nothing yet.
			case cur == nil:
				say(fmt.Sprintf("pod %s is gone; waiting for its replacement", name))
			case cur.UID == uid:
				say(fmt.Sprintf("pod %s is terminating", name))
			case cur.DeletionTimestamp != nil:
				say(fmt.Sprintf("replacement pod %s is being deleted by its controller; waiting for the next", name))
			case Stuck(cur) != "":
				return false, &StuckError{Namespace: ns, Pod: name, Why: Stuck(cur)}
			case !pgpool.PodReady(cur):
				say(fmt.Sprintf("replacement pod %s created; waiting for it to be Ready", name))
			default:
				found = cur
				return true, nil
			}
			return false, nil
		}
		readyPods, fresh := 0, (*corev1.Pod)(nil)
		oldGone := true
		for _, p := range pods {
			if p.UID == uid {
				oldGone = false
			}
			if (r.Owns != nil && !r.Owns(p)) || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
				continue // not the workload's, or terminal (an old Evicted pod)
			}
			if why := Stuck(p); why != "" && p.UID != uid && !r.Known[p.UID] {
				return false, &StuckError{Namespace: ns, Pod: p.Name, Why: why}
			}
			if pgpool.PodReady(p) {
				readyPods++
				if !r.Known[p.UID] {
					fresh = p
				}
			}
		}
		if fresh != nil && oldGone && readyPods >= r.Want {
			found = fresh
			return true, nil
		}
		say(fmt.Sprintf("%d of %d pods Ready; waiting for a replacement of %s", readyPods, r.Want, name))
		return false, nil
	})
	if err != nil {
		var se *StuckError
		if errors.As(context.Cause(ctx), &se) && parent.Err() == nil {
			return nil, se
		}
		if parent.Err() != nil {
			return nil, waitErr(parent, fmt.Sprintf("pod %s/%s to be replaced and Ready (last: %s)", ns, name, phase))
		}
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, fmt.Errorf("watch pods in %s: %w", ns, err)
	}
	return found, nil
}

// WaitEndpointsOn waits, on a watch of the Services' EndpointSlices
// (WatchEndpoints, started before the pod was evicted), until pod p is a
// ready endpoint of each of services and the pod it replaced (old, "" when
// none) is a ready endpoint of none (gone, or terminating: kube-proxy sends
// it no new connections), so that new connections through the Services
// reach the new pod before the next pod goes. A Service without any
// EndpointSlice (no controller maintains them) is skipped and returned.
func WaitEndpointsOn(ctx context.Context, w *Watch, ns string, services []string, p *corev1.Pod, old types.UID, o Options) ([]string, error) {
	if len(services) == 0 {
		return nil, nil
	}
	var store cache.Store
	var skipped, waiting []string
	// done reports whether every Service with slices has p ready and old
	// gone; waiting names those that do not yet.
	done := func() bool {
		newReady, oldListed, hasSlices := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, obj := range store.List() {
			es, ok := obj.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			svc := es.Labels[discoveryv1.LabelServiceName]
			hasSlices[svc] = true
			for _, ep := range es.Endpoints {
				switch {
				case ep.TargetRef == nil:
				case ep.TargetRef.UID == p.UID && ep.Conditions.Ready != nil && *ep.Conditions.Ready:
					newReady[svc] = true
				case old != "" && ep.TargetRef.UID == old && (ep.Conditions.Ready == nil || *ep.Conditions.Ready):
					oldListed[svc] = true
				}
			}
		}
		if skipped == nil {
			skipped = []string{}
			for _, svc := range services {
				if !hasSlices[svc] {
					skipped = append(skipped, svc)
				}
			}
		}
		waiting = waiting[:0]
		for _, svc := range services {
			if hasSlices[svc] && (!newReady[svc] || oldListed[svc]) {
				waiting = append(waiting, svc)
			}
		}
		return len(waiting) == 0
	}
	said := ""
	err := w.Until(ctx, func(s cache.Store) (bool, error) {
		store = s
		return done(), nil
	}, func(watch.Event) (bool, error) {
		ok := done()
		if w := strings.Join(waiting, ", "); !ok && w != said {
			said = w
			o.progress("waiting for pod %s to be a ready endpoint of Service %s, and the pod it replaced not to be", p.Name, w)
		}
		return ok, nil
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return skipped, waitErr(ctx, fmt.Sprintf("pod %s/%s to be a ready endpoint of Service %s (and the pod it replaced not to be)", ns, p.Name, strings.Join(waiting, ", ")))
	case err != nil:
		return skipped, fmt.Errorf("watch the EndpointSlices of Services %s in %s: %w", strings.Join(services, ", "), ns, err)
	}
	return skipped, nil
}
