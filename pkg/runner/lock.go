package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// The lock is a Lease with the semantics of client-go's leader election
// (resourcelock.LeaseLock): a holder identity, a duration, a renew time the
// holder moves forward while it works. A holder that stops renewing (killed,
// its terminal closed) loses the lock after planner.LockDuration, and the next run
// takes it over; at once when that holder was a process of this machine that
// no longer runs.
const (
	// lockRenew is how often a running operation renews its lock.
	lockRenew = planner.LockDuration / 3
	// annotationOperation names the operation that holds the lock.
	annotationOperation = "kubectl-pgpool.io/operation"
)

// lockState is the lock this run holds, renewed in the background.
type lockState struct {
	ll     *resourcelock.LeaseLock
	holder string
	stop   context.CancelFunc
	done   chan struct{}
	// taken is the Lease as this run wrote it; renewed: renewed since
	// (its resourceVersion moved on).
	taken   *coordinationv1.Lease
	mu      sync.Mutex
	lost    error
	renewed bool
}

// LockExpired reports whether a lock Lease's holder stopped renewing it
// more than its duration ago, and when it expires (or expired).
func LockExpired(l *coordinationv1.Lease, now time.Time) (bool, time.Time) {
	last := l.CreationTimestamp.Time
	if l.Spec.AcquireTime != nil {
		last = l.Spec.AcquireTime.Time
	}
	if l.Spec.RenewTime != nil {
		last = l.Spec.RenewTime.Time
	}
	d := planner.LockDuration
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return !last.Add(d).After(now), last.Add(d)
}

// holderGone reports whether a lock's holder is a process of this machine
// that no longer runs (killed with SIGKILL, say): its lock need not be
// waited out. A holder elsewhere, or a pid that runs, may still be working.
func holderGone(holder string) bool {
	at := strings.LastIndex(holder, "@")
	sp := strings.LastIndex(holder, " pid ")
	if at < 0 || sp < at {
		return false
	}
	pid, err := strconv.Atoi(holder[sp+len(" pid "):])
	host, herr := os.Hostname()
	if err != nil || herr != nil || pid <= 0 || pid == os.Getpid() || holder[at+1:sp] != host {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// lockFree reports whether the lock l may be taken over: it expired, or its
// holder's process is gone; and when it expires.
func lockFree(l *coordinationv1.Lease, now time.Time) (bool, time.Time) {
	expired, at := LockExpired(l, now)
	return expired || holderGone(holderOf(l)), at
}

func (r *Runner) lock(ctx context.Context, s plan.Step, spec plan.LockSpec) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	now := metav1.NewMicroTime(time.Now())
	secs := int32(planner.LockDuration / time.Second)
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels:      map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: r.Target.Name},
			Annotations: map[string]string{annotationOperation: spec.Operation}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &spec.Holder, AcquireTime: &now, RenewTime: &now, LeaseDurationSeconds: &secs},
	}
	leases := r.Clients.Coordination.Leases(ns)
	if r.ServerDryRun {
		if _, err := leases.Create(ctx, lease, metav1.CreateOptions{FieldManager: FieldManager, DryRun: r.dryRun()}); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("create Lease %s/%s: %w", ns, name, err)
		}
		return r.answer("held by " + spec.Holder), nil
	}
	notice := ""
	taken, err := leases.Create(ctx, lease, metav1.CreateOptions{FieldManager: FieldManager})
	if apierrors.IsAlreadyExists(err) {
		old, gerr := leases.Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			return "", fmt.Errorf("get Lease %s/%s: %w", ns, name, gerr)
		}
		expired, at := lockFree(old, now.Time)
		if !expired && !spec.Force {
			return "", lockHeld(old)
		}
		// Take it over, on the resourceVersion just read: if its holder
		// renews in between, the update conflicts and we stop.
		notice = fmt.Sprintf(" (taken over from %s, whose lock expired at %s)", holderOf(old), at.UTC().Format(time.RFC3339))
		if at.After(now.Time) {
			notice = fmt.Sprintf(" (taken over from %s, whose process is gone)", holderOf(old))
		}
		if spec.Force {
			notice = fmt.Sprintf(" (taken from %s by --force-unlock)", holderOf(old))
		}
		old.Labels, old.Annotations, old.Spec = lease.Labels, lease.Annotations, lease.Spec
		taken, err = leases.Update(ctx, old, metav1.UpdateOptions{FieldManager: FieldManager})
		if apierrors.IsConflict(err) {
			return "", fmt.Errorf("another kubectl-pgpool operation took the lock Lease %s/%s first: run the command again", ns, name)
		}
	}
	if err != nil {
		return "", fmt.Errorf("take the lock Lease %s/%s: %w", ns, name, err)
	}
	r.startRenewing(ns, name, spec.Holder, taken)
	return "held by " + spec.Holder + notice + fmt.Sprintf(", renewed every %s", lockRenew), nil
}

// startRenewing moves the lock's renew time forward every lockRenew until
// unlock; if the Lease is lost, the next step fails.
func (r *Runner) startRenewing(ns, name, holder string, taken *coordinationv1.Lease) {
	ctx, cancel := context.WithCancel(context.Background())
	st := &lockState{holder: holder, taken: taken, stop: cancel, done: make(chan struct{}),
		ll: &resourcelock.LeaseLock{LeaseMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Client: r.Clients.Coordination,
			LockConfig: resourcelock.ResourceLockConfig{Identity: holder}}}
	r.held = st
	go func() {
		defer close(st.done)
		// The lock was just taken: the first renewal is one period away.
		select {
		case <-ctx.Done():
			return
		case <-time.After(lockRenew):
		}
		wait.UntilWithContext(ctx, func(ctx context.Context) {
			rec, _, err := st.ll.Get(ctx)
			if err == nil && rec.HolderIdentity != holder {
				err = fmt.Errorf("%s holds it now", rec.HolderIdentity)
			}
			if err == nil {
				rec.RenewTime = metav1.NewTime(time.Now())
				err = st.ll.Update(ctx, *rec)
				st.mu.Lock()
				st.renewed = true
				st.mu.Unlock()
			}
			if err != nil && ctx.Err() == nil {
				st.mu.Lock()
				st.lost = fmt.Errorf("lost the lock Lease %s/%s: %w", ns, name, err)
				st.mu.Unlock()
			}
		}, lockRenew)
	}()
}

// lockLost is the error that stops the operation once the lock is lost.
func (r *Runner) lockLost() error {
	if r.held == nil {
		return nil
	}
	r.held.mu.Lock()
	defer r.held.mu.Unlock()
	return r.held.lost
}

func (r *Runner) unlock(ctx context.Context, s plan.Step) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	if r.ServerDryRun {
		err := r.Clients.Coordination.Leases(ns).Delete(ctx, name, metav1.DeleteOptions{DryRun: r.dryRun()})
		if err != nil && !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("delete Lease %s/%s: %w", ns, name, err)
		}
		return r.answer("released"), nil
	}
	if r.held == nil {
		return "not held by this run", nil
	}
	r.held.stop()
	<-r.held.done
	held := r.held
	r.held = nil
	leases := r.Clients.Coordination.Leases(ns)
	// Delete it only while it is still ours: a run that took it over
	// updated the same object (same UID). Not renewed since it was taken,
	// the Lease is deleted at once on the resourceVersion this run wrote;
	// otherwise (or if that conflicts) it is read first and its holder
	// checked.
	if !held.renewed && held.taken != nil {
		err := leases.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &held.taken.UID, ResourceVersion: &held.taken.ResourceVersion}})
		switch {
		case err == nil:
			return "released", nil
		case apierrors.IsNotFound(err):
			return "released (already gone)", nil
		case !apierrors.IsConflict(err):
			return "", fmt.Errorf("delete Lease %s/%s: %w", ns, name, err)
		}
	}
	cur, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "released (already gone)", nil
	}
	if err != nil {
		return "", fmt.Errorf("get Lease %s/%s: %w", ns, name, err)
	}
	if holderOf(cur) != held.holder {
		return "not deleted: " + holderOf(cur) + " has taken the lock over", nil
	}
	err = leases.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}})
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return "released", nil
	case apierrors.IsConflict(err):
		return "not deleted: the Lease changed (another run may have taken it over)", nil
	}
	return "", fmt.Errorf("delete Lease %s/%s: %w", ns, name, err)
}

func holderOf(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity != nil {
		return *l.Spec.HolderIdentity
	}
	return "an unknown holder"
}

// lockHeld describes a lock another run holds: who, what, since when, and
// when it expires if that run is gone.
func lockHeld(l *coordinationv1.Lease) error {
	since := ""
	if l.Spec.AcquireTime != nil {
		since = " since " + l.Spec.AcquireTime.UTC().Format(time.RFC3339)
	}
	_, at := LockExpired(l, time.Now())
	return fmt.Errorf("another kubectl-pgpool operation (%s by %s%s) holds the lock Lease %s/%s: wait for it to finish; if it died, its lock expires at %s (%s from now) and the next run takes it over, or take it now with --force-unlock (or `kubectl delete lease -n %s %s`)",
		l.Annotations[annotationOperation], holderOf(l), since, l.Namespace, l.Name, at.UTC().Format(time.RFC3339), time.Until(at).Round(time.Second), l.Namespace, l.Name)
}

// CheckLock is the preflight's look at the lock: nothing to say when it is
// free; a notice when it expired (its run died) or --force-unlock takes it;
// the lockHeld error otherwise.
func CheckLock(ctx context.Context, c coordinationv1client.CoordinationV1Interface, ns, name string, force bool) (string, error) {
	l, err := c.Leases(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("check the lock Lease %s/%s: %w", ns, name, err)
	}
	expired, at := LockExpired(l, time.Now())
	switch {
	case !expired && holderGone(holderOf(l)):
		return fmt.Sprintf("the lock Lease %s/%s is held by %s, a process of this machine that no longer runs (it was killed); this run takes it over and finishes the job from what the cluster holds now", ns, name, holderOf(l)), nil
	case expired:
		return fmt.Sprintf("the lock Lease %s/%s of %s expired at %s (that run stopped renewing it: it was killed or lost its connection); this run takes it over and finishes the job from what the cluster holds now", ns, name, holderOf(l), at.UTC().Format(time.RFC3339)), nil
	case force:
		return fmt.Sprintf("--force-unlock: this run takes the lock Lease %s/%s from %s, whose lock would expire at %s; if that run is alive, both will change this pgpool", ns, name, holderOf(l), at.UTC().Format(time.RFC3339)), nil
	}
	return "", lockHeld(l)
}
