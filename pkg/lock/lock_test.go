package lock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const ns, name = "demo", "pgpool-kubectl-pgpool-lock"

var short = Options{Duration: time.Second, RetryPeriod: 20 * time.Millisecond}

func deadPID(t *testing.T) int {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// A holder is gone only when it ran on this host, boot and pid namespace
// and its pid is free: two containers or machines with the same host name
// (and pid 1 each) never see each other as dead.
func TestHolderGone(t *testing.T) {
	self := Self()
	if self.BootID == "" || self.PIDNS == "" {
		t.Skip("no /proc boot id or pid namespace here")
	}
	lease := func(mut func(a map[string]string)) *coordinationv1.Lease {
		a := Identity{Host: self.Host, BootID: self.BootID, PIDNS: self.PIDNS, PID: deadPID(t)}.annotations("rotate")
		mut(a)
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Annotations: a}}
	}
	for _, tc := range []struct {
		name string
		mut  func(a map[string]string)
		gone bool
	}{
		{"dead pid here", func(map[string]string) {}, true},
		{"another boot (a machine with the same host name)", func(a map[string]string) { a[annotationBoot] = "other-boot" }, false},
		{"another pid namespace (a container)", func(a map[string]string) { a[annotationPIDNS] = "pid:[1]" }, false},
		{"another host", func(a map[string]string) { a[annotationHost] = "elsewhere" }, false},
		{"a running pid", func(a map[string]string) { a[annotationPID] = strconv.Itoa(os.Getppid()) }, false},
		{"this process", func(a map[string]string) { a[annotationPID] = strconv.Itoa(os.Getpid()) }, false},
		{"no facts (an older kubectl-pgpool)", func(a map[string]string) { clear(a) }, false},
	} {
		if got := self.HolderGone(lease(tc.mut)); got != tc.gone {
			t.Errorf("%s: gone = %v, want %v", tc.name, got, tc.gone)
		}
	}
	if a, b := Self(), Self(); a.Holder == b.Holder {
		t.Errorf("two runs of one process share the identity %q", a.Holder)
	}
}

func newLease(holder string, renew time.Time, secs int32) *coordinationv1.Lease {
	t := metav1.NewMicroTime(renew)
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, ResourceVersion: "1"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &t, LeaseDurationSeconds: &secs}}
}

// A lock is never taken by comparing clocks: a holder whose clock is ahead
// is refused at once; one whose renew time looks old is watched, and a
// renewal during the watch keeps the lock with its holder.
func TestNoTakeOverByClock(t *testing.T) {
	me := Identity{Holder: "bob (run b)"}
	ahead := fake.NewClientset(newLease("alice (run a)", time.Now().Add(40*time.Second), 1))
	if _, _, err := Acquire(context.Background(), ahead.CoordinationV1(), ns, name, "rotate", nil, me, short); !isHeld(err) {
		t.Fatalf("holder's clock 40s ahead: %v, want held", err)
	}
	// alice renews (her clock is 2 minutes behind ours) while bob watches.
	c := fake.NewClientset(newLease("alice (run a)", time.Now().Add(-2*time.Minute), 1))
	var gets atomic.Int32
	c.PrependReactor("get", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if gets.Add(1) == 3 {
			l, _ := c.Tracker().Get(schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}, ns, name)
			l.(*coordinationv1.Lease).ResourceVersion = "2"
			_ = c.Tracker().Update(schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}, l, ns)
		}
		return false, nil, nil
	})
	_, _, err := Acquire(context.Background(), c.CoordinationV1(), ns, name, "rotate", nil, me, short)
	if !isHeld(err) || !strings.Contains(err.Error(), "renewed while this run watched it") {
		t.Fatalf("renewed during the watch: %v", err)
	}
	// Not renewed for its whole duration by bob's clock: taken over.
	c = fake.NewClientset(newLease("alice (run a)", time.Now().Add(-2*time.Minute), 1))
	start := time.Now()
	h, notice, err := Acquire(context.Background(), c.CoordinationV1(), ns, name, "rotate", nil, me, short)
	if err != nil || !strings.Contains(notice, "watched go unrenewed for 1s") {
		t.Fatalf("take over: %q %v", notice, err)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("taken over after %s, before the lease's duration", d)
	}
	if _, err := h.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func isHeld(err error) bool {
	var h *HeldError
	return errors.As(err, &h)
}

// A renewal that fails is retried until the renew deadline: one 5xx does
// not lose the lock; failures past the deadline do.
func TestRenewRetriedUntilDeadline(t *testing.T) {
	c := fake.NewClientset()
	var fail atomic.Int32
	c.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if fail.Load() > 0 {
			fail.Add(-1)
			return true, nil, apierrors.NewInternalError(errors.New("etcd hiccup"))
		}
		return false, nil, nil
	})
	o := Options{Duration: 3 * time.Second, RetryPeriod: 20 * time.Millisecond}
	h, _, err := Acquire(context.Background(), c.CoordinationV1(), ns, name, "rotate", nil, Identity{Holder: "me"}, o)
	if err != nil {
		t.Fatal(err)
	}
	fail.Store(2) // two failures, well within the deadline (2s)
	waitFor(t, func() bool { return fail.Load() == 0 })
	renewed := func() bool { h.mu.Lock(); defer h.mu.Unlock(); return time.Since(h.lastRenew) < 100*time.Millisecond }
	waitFor(t, renewed)
	if err := h.Check(context.Background()); err != nil {
		t.Fatalf("lost after two failed renewals: %v", err)
	}
	fail.Store(1 << 20)
	var lost *LostError
	waitFor(t, func() bool { return errors.As(h.Check(context.Background()), &lost) })
	if !strings.Contains(lost.Error(), "etcd hiccup") || !strings.Contains(lost.Error(), "undoes nothing") {
		t.Fatalf("lost: %v", lost)
	}
	fail.Store(0)
	if _, err := h.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A run stopped (Ctrl-Z) for longer than the renew deadline renews before
// its next step; when another run took the lock meanwhile, it stops.
func TestCheckAfterStop(t *testing.T) {
	c := fake.NewClientset()
	o := Options{Duration: time.Hour} // no background renewal during the test
	h, _, err := Acquire(context.Background(), c.CoordinationV1(), ns, name, "rotate", nil, Identity{Holder: "me"}, o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = h.Release(context.Background()) }()
	h.mu.Lock()
	h.lastRenew = time.Now().Add(-2 * time.Hour) // as after a long SIGTSTP
	h.mu.Unlock()
	if err := h.Check(context.Background()); err != nil {
		t.Fatalf("still ours: %v", err)
	}
	h.mu.Lock()
	h.lastRenew = time.Now().Add(-2 * time.Hour)
	h.mu.Unlock()
	l, _ := c.CoordinationV1().Leases(ns).Get(context.Background(), name, metav1.GetOptions{})
	other := "other (run o)"
	l.Spec.HolderIdentity = &other
	if _, err := c.CoordinationV1().Leases(ns).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var lost *LostError
	if err := h.Check(context.Background()); !errors.As(err, &lost) || lost.By != other {
		t.Fatalf("taken while stopped: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatal("condition not met within 10s")
	}
}
