// Package lock owns kubectl-pgpool's lock on one pgpool: a coordination/v1
// Lease taken before an operation's first write and released after its
// last, shaped like client-go's leaderelection. Each run has its own random
// identity. A Lease whose holder may be alive is never taken by comparing
// clocks: a run takes a Lease over only when it watched it go unrenewed for
// the Lease's duration by its own clock, when its holder is a process of
// this very machine and pid namespace that no longer runs, or with
// --force-unlock. The holder renews every third of the duration and retries
// until a renew deadline; a run that lost its lock stops (it does not undo
// anything: another run is changing the pgpool).
package lock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
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
)

// defaultDuration is a lock's duration when Options do not say.
const defaultDuration = 60 * time.Second

// Annotations on the Lease: the operation that holds it, and where its
// holder runs (so that a run of the same machine can tell a dead holder).
const (
	AnnotationOperation = "kubectl-pgpool.io/operation"
	annotationHost      = "kubectl-pgpool.io/holder-host"
	annotationBoot      = "kubectl-pgpool.io/holder-boot-id"
	annotationPIDNS     = "kubectl-pgpool.io/holder-pid-namespace"
	annotationPID       = "kubectl-pgpool.io/holder-pid"
)

// Identity is who holds a lock: a name for people (user, host, pid and a
// random run id, unique per run) and the facts that tell whether a holder
// runs in this machine's pid namespace.
type Identity struct {
	Holder string
	Host   string
	BootID string
	PIDNS  string
	PID    int
}

// Self is this run's identity.
func Self() Identity {
	host, _ := os.Hostname()
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	pidns, _ := os.Readlink("/proc/self/ns/pid")
	return Identity{
		Holder: fmt.Sprintf("%s@%s pid %d (run %s)", name, host, os.Getpid(), hex.EncodeToString(b)),
		Host:   host, BootID: strings.TrimSpace(string(boot)), PIDNS: pidns, PID: os.Getpid(),
	}
}

func (id Identity) annotations(op string) map[string]string {
	return map[string]string{AnnotationOperation: op, annotationHost: id.Host, annotationBoot: id.BootID,
		annotationPIDNS: id.PIDNS, annotationPID: strconv.Itoa(id.PID)}
}

// HolderGone reports whether l's holder is a process of this machine (same
// host name, boot and pid namespace) that no longer runs: its lock need not
// be waited out. Any fact missing or different, and it may be alive.
func (id Identity) HolderGone(l *coordinationv1.Lease) bool {
	a := l.Annotations
	if id.BootID == "" || id.PIDNS == "" || a[annotationHost] != id.Host || a[annotationBoot] != id.BootID || a[annotationPIDNS] != id.PIDNS {
		return false
	}
	pid, err := strconv.Atoi(a[annotationPID])
	if err != nil || pid <= 0 || pid == id.PID {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// Holder is the lock's holder as the Lease names it.
func Holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
		return *l.Spec.HolderIdentity
	}
	return "an unknown holder"
}

// Options tune a lock; the zero value is the product's.
type Options struct {
	// Duration of the lock (default 60s); RenewPeriod (a third of it),
	// RenewDeadline (two thirds) and RetryPeriod (2s) follow
	// leaderelection's names.
	Duration      time.Duration
	RenewPeriod   time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// Force takes the lock from a holder that may be alive.
	Force bool
	// OnProgress reports a long wait.
	OnProgress func(string)
}

func (o Options) withDefaults() Options {
	if o.Duration == 0 {
		o.Duration = defaultDuration
	}
	if o.RenewPeriod == 0 {
		o.RenewPeriod = o.Duration / 3
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = o.Duration * 2 / 3
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = 2 * time.Second
	}
	if o.OnProgress == nil {
		o.OnProgress = func(string) {}
	}
	return o
}

// HeldError is returned when another run holds the lock.
type HeldError struct {
	Lease     *coordinationv1.Lease
	Why       string
	Duration  time.Duration
	Namespace string
}

func (e *HeldError) Error() string {
	l := e.Lease
	since := ""
	if l.Spec.AcquireTime != nil {
		since = " since " + l.Spec.AcquireTime.UTC().Format(time.RFC3339)
	}
	why := ""
	if e.Why != "" {
		why = " (" + e.Why + ")"
	}
	return fmt.Sprintf("another kubectl-pgpool operation (%s by %s%s) holds the lock Lease %s/%s%s: wait for it to finish; if it died, the next run takes the lock over once it has watched it go unrenewed for %s, or take it now with --force-unlock (or `kubectl delete lease -n %s %s`)",
		l.Annotations[AnnotationOperation], Holder(l), since, l.Namespace, l.Name, why, durationOf(l, e.Duration), l.Namespace, l.Name)
}

// LostError is returned when this run no longer holds its lock.
type LostError struct {
	Namespace, Name string
	By              string // who holds it now ("" when unknown)
	Err             error
}

func (e *LostError) Error() string {
	who := "it could not be renewed"
	if e.By != "" {
		who = e.By + " holds it now"
	}
	msg := fmt.Sprintf("lost the lock Lease %s/%s: %s", e.Namespace, e.Name, who)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + "; this run stops here and undoes nothing, because another run may be changing this pgpool: check it with `kubectl pgpool tls status`"
}

func (e *LostError) Unwrap() error { return e.Err }

func durationOf(l *coordinationv1.Lease, def time.Duration) time.Duration {
	if l.Spec.LeaseDurationSeconds != nil && *l.Spec.LeaseDurationSeconds > 0 {
		return time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	if def == 0 {
		return defaultDuration
	}
	return def
}

// looksRenewed reports whether l's renew time, by the holder's clock, is
// within its duration of now by ours. It is used only to refuse at once
// (never to take a lock over): clocks may differ.
func looksRenewed(l *coordinationv1.Lease, now time.Time, def time.Duration) bool {
	last := l.CreationTimestamp.Time
	if l.Spec.AcquireTime != nil {
		last = l.Spec.AcquireTime.Time
	}
	if l.Spec.RenewTime != nil {
		last = l.Spec.RenewTime.Time
	}
	return now.Before(last.Add(durationOf(l, def)))
}

// Inspect is the preflight's look at the lock: "" when it is free, a notice
// when this run will take it (its holder is gone, --force-unlock, or it
// looks unrenewed and will be watched), a HeldError otherwise.
func Inspect(ctx context.Context, c coordinationv1client.CoordinationV1Interface, ns, name string, id Identity, force bool) (string, error) {
	l, err := c.Leases(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("check the lock Lease %s/%s: %w", ns, name, err)
	}
	switch {
	case Holder(l) == id.Holder:
		return "", nil
	case id.HolderGone(l):
		return fmt.Sprintf("the lock Lease %s/%s is held by %s, a process of this machine that no longer runs (it was killed); this run takes it over and finishes the job from what the cluster holds now", ns, name, Holder(l)), nil
	case force:
		return fmt.Sprintf("--force-unlock: this run takes the lock Lease %s/%s from %s; if that run is alive, both will change this pgpool", ns, name, Holder(l)), nil
	case !looksRenewed(l, time.Now(), 0):
		return fmt.Sprintf("the lock Lease %s/%s of %s looks unrenewed (its run may have died); this run watches it for up to %s and takes it over only if it is not renewed meanwhile", ns, name, Holder(l), durationOf(l, 0)), nil
	}
	return "", &HeldError{Lease: l, Namespace: ns}
}

// Held is a lock this run holds, renewed in the background until Release.
type Held struct {
	ns, name string
	id       Identity
	o        Options
	leases   coordinationv1client.LeaseInterface
	ll       *resourcelock.LeaseLock
	stop     context.CancelFunc
	done     chan struct{}

	mu        sync.Mutex
	lease     *coordinationv1.Lease // as this run last wrote it
	lastRenew time.Time             // local time of the last successful write
	lost      error
}

// Acquire takes the lock Lease ns/name for operation op, and returns it
// held (renewed until Release) with a notice of how it was taken.
func Acquire(ctx context.Context, c coordinationv1client.CoordinationV1Interface, ns, name, op string, labels map[string]string, id Identity, o Options) (*Held, string, error) {
	o = o.withDefaults()
	leases := c.Leases(ns)
	secs := int32(o.Duration / time.Second)
	if secs < 1 {
		secs = 1
	}
	now := metav1.NewMicroTime(time.Now())
	want := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: id.annotations(op)},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &id.Holder, AcquireTime: &now, RenewTime: &now, LeaseDurationSeconds: &secs},
	}
	notice := ""
	taken, err := leases.Create(ctx, want, metav1.CreateOptions{FieldManager: "kubectl-pgpool"})
	if apierrors.IsAlreadyExists(err) {
		old, gerr := leases.Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			return nil, "", fmt.Errorf("get Lease %s/%s: %w", ns, name, gerr)
		}
		switch {
		case Holder(old) == id.Holder:
			notice = " (already held by this run)"
		case id.HolderGone(old):
			notice = fmt.Sprintf(" (taken over from %s, whose process is gone)", Holder(old))
		case o.Force:
			notice = fmt.Sprintf(" (taken from %s by --force-unlock)", Holder(old))
		case looksRenewed(old, now.Time, o.Duration):
			return nil, "", &HeldError{Lease: old, Namespace: ns, Duration: o.Duration}
		default:
			old, err = watchUnrenewed(ctx, leases, old, o)
			if err != nil {
				return nil, "", err
			}
			notice = fmt.Sprintf(" (taken over from %s, whose lock this run watched go unrenewed for %s)", Holder(old), durationOf(old, o.Duration))
		}
		// Take it over on the resourceVersion read: if its holder renews
		// in between, the update conflicts and this run stops.
		old.Labels, old.Annotations, old.Spec = want.Labels, want.Annotations, want.Spec
		taken, err = leases.Update(ctx, old, metav1.UpdateOptions{FieldManager: "kubectl-pgpool"})
		if apierrors.IsConflict(err) {
			return nil, "", fmt.Errorf("another kubectl-pgpool operation took the lock Lease %s/%s first: run the command again", ns, name)
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("take the lock Lease %s/%s: %w", ns, name, err)
	}
	h := &Held{ns: ns, name: name, id: id, o: o, leases: leases, lease: taken, lastRenew: time.Now(),
		ll: &resourcelock.LeaseLock{LeaseMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Client: c, LockConfig: resourcelock.ResourceLockConfig{Identity: id.Holder}}}
	h.start()
	return h, notice, nil
}

// watchUnrenewed watches l (by polling, every RetryPeriod) until it went
// unrenewed for its duration by this run's clock: then it returns the
// Lease as last read. A Lease that changes meanwhile is alive: HeldError.
func watchUnrenewed(ctx context.Context, leases coordinationv1client.LeaseInterface, l *coordinationv1.Lease, o Options) (*coordinationv1.Lease, error) {
	d := durationOf(l, o.Duration)
	start := time.Now()
	o.OnProgress(fmt.Sprintf("the lock of %s looks unrenewed: watching it for %s before taking it over", Holder(l), d))
	cur := l
	err := wait.PollUntilContextTimeout(ctx, o.RetryPeriod, d+o.RetryPeriod, false, func(ctx context.Context) (bool, error) {
		got, err := leases.Get(ctx, l.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return false, fmt.Errorf("the lock Lease %s/%s was deleted while this run watched it: run the command again", l.Namespace, l.Name)
		case err != nil:
			return false, nil // retried until the deadline
		case got.ResourceVersion != l.ResourceVersion:
			return false, &HeldError{Lease: got, Namespace: l.Namespace, Why: "it was renewed while this run watched it", Duration: o.Duration}
		}
		cur = got
		left := d - time.Since(start)
		if left > 0 {
			o.OnProgress(fmt.Sprintf("the lock of %s not renewed for %s; taking it over in %s", Holder(l), time.Since(start).Round(time.Second), left.Round(time.Second)))
		}
		return left <= 0, nil
	})
	if err != nil {
		var held *HeldError
		if errors.As(err, &held) || ctx.Err() != nil {
			return nil, err
		}
		if time.Since(start) < d {
			return nil, fmt.Errorf("watch the lock Lease %s/%s: %w", l.Namespace, l.Name, err)
		}
	}
	return cur, nil
}
