package lock

// A held lock's life after Acquire: renewed in the background until a
// deadline, checked before each step and confirmed after a failed one,
// released at the end.

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func (h *Held) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(h.o.RenewPeriod):
			}
			if err := h.renewUntilDeadline(ctx); err != nil {
				return
			}
		}
	}()
}

// renewUntilDeadline renews, retrying every RetryPeriod until RenewDeadline
// after the last success; past it, or when another run holds the Lease,
// the lock is lost.
func (h *Held) renewUntilDeadline(ctx context.Context) error {
	for {
		err := h.renew(ctx)
		var lost *LostError
		switch {
		case err == nil, ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &lost):
			h.setLost(err)
			return err
		}
		h.mu.Lock()
		late := time.Since(h.lastRenew) >= h.o.RenewDeadline
		h.mu.Unlock()
		if late {
			err = &LostError{Namespace: h.ns, Name: h.name, Err: fmt.Errorf("no renewal succeeded within %s: %w", h.o.RenewDeadline, err)}
			h.setLost(err)
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(h.o.RetryPeriod):
		}
	}
}

func (h *Held) setLost(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost == nil {
		h.lost = err
	}
}

// renew moves the renew time forward, on the Lease as read (an update that
// conflicts is retried by the caller); another holder: LostError.
func (h *Held) renew(ctx context.Context) error {
	rec, _, err := h.ll.Get(ctx)
	if apierrors.IsNotFound(err) {
		return &LostError{Namespace: h.ns, Name: h.name, Err: errors.New("the Lease was deleted")}
	}
	if err != nil {
		return err
	}
	if rec.HolderIdentity != h.id.Holder {
		return &LostError{Namespace: h.ns, Name: h.name, By: rec.HolderIdentity}
	}
	rec.RenewTime = metav1.NewTime(time.Now())
	if err := h.ll.Update(ctx, *rec); err != nil {
		return err
	}
	h.mu.Lock()
	h.lastRenew, h.lease = time.Now(), nil
	h.mu.Unlock()
	return nil
}

// Check is called before each step: nil while the lock is held. A lock not
// renewed for longer than RenewDeadline (this process was stopped, with
// Ctrl-Z or a suspended laptop) is renewed now, before the step writes
// anything; if another run took it meanwhile, the lock is lost.
func (h *Held) Check(ctx context.Context) error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	lost, late := h.lost, time.Since(h.lastRenew) >= h.o.RenewDeadline
	h.mu.Unlock()
	if lost != nil {
		return lost
	}
	if !late {
		return nil
	}
	if err := h.renew(ctx); err != nil {
		var l *LostError
		if !errors.As(err, &l) {
			err = &LostError{Namespace: h.ns, Name: h.name, Err: err}
		}
		h.setLost(err)
		return err
	}
	return nil
}

// Confirm renews the lock now, whatever its age: after a step failed, it
// tells a failure of this run's own from one caused by losing the lock
// meanwhile (this process was stopped while a request was in flight, and
// another run took the lock over). It returns a LostError only when
// another run holds the Lease or it is gone; when the Lease cannot be read
// at all, nothing is known and it returns nil.
func (h *Held) Confirm(ctx context.Context) error {
	if h == nil {
		return nil
	}
	if err := h.Lost(); err != nil {
		return err
	}
	err := h.renew(ctx)
	var l *LostError
	if !errors.As(err, &l) {
		return nil
	}
	h.setLost(err)
	return err
}

// Lost is the LostError once this run knows it lost the lock, else nil.
func (h *Held) Lost() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost
}

// Release stops renewing and deletes the Lease while it is still this
// run's (a run that took it over keeps it).
func (h *Held) Release(ctx context.Context) (string, error) {
	h.stop()
	<-h.done
	h.mu.Lock()
	taken := h.lease
	h.mu.Unlock()
	// Not renewed since it was taken: delete on the resourceVersion this
	// run wrote; otherwise (or on a conflict) read it and check its holder.
	if taken != nil {
		err := h.leases.Delete(ctx, h.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &taken.UID, ResourceVersion: &taken.ResourceVersion}})
		switch {
		case err == nil:
			return "released", nil
		case apierrors.IsNotFound(err):
			return "released (already gone)", nil
		case !apierrors.IsConflict(err):
			return "", fmt.Errorf("delete Lease %s/%s: %w", h.ns, h.name, err)
		}
	}
	cur, err := h.leases.Get(ctx, h.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "released (already gone)", nil
	}
	if err != nil {
		return "", fmt.Errorf("get Lease %s/%s: %w", h.ns, h.name, err)
	}
	if Holder(cur) != h.id.Holder {
		return "not deleted: " + Holder(cur) + " has taken the lock over", nil
	}
	err = h.leases.Delete(ctx, h.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}})
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return "released", nil
	case apierrors.IsConflict(err):
		return "not deleted: the Lease changed (another run may have taken it over)", nil
	}
	return "", fmt.Errorf("delete Lease %s/%s: %w", h.ns, h.name, err)
}

// Holder is this run's identity.
func (h *Held) Holder() string { return h.id.Holder }
