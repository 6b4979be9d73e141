package runner

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/lock"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// The lock step takes the pgpool's lock (pkg/lock) and the unlock step
// releases it; before every other step the runner checks that it still
// holds it.

func (r *Runner) lockOptions(force bool, report func(string)) lock.Options {
	o := r.LockOptions
	if o.Duration == 0 {
		o.Duration = pgpool.LockDuration
	}
	o.Force, o.OnProgress = force, report
	return o
}

func (r *Runner) lock(ctx context.Context, s plan.Step, spec plan.LockSpec, report func(string)) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	if r.ServerDryRun {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &spec.Holder}}
		if _, err := r.Clients.Coordination.Leases(ns).Create(ctx, l, metav1.CreateOptions{FieldManager: FieldManager, DryRun: r.dryRun()}); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("create Lease %s/%s: %w", ns, name, err)
		}
		return r.answer("held by " + spec.Holder), nil
	}
	id := r.Identity
	if id.Holder == "" {
		id = lock.Self()
	}
	if spec.Holder != "" {
		id.Holder = spec.Holder
	}
	labels := map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: r.Target.Name}
	held, notice, err := lock.Acquire(ctx, r.Clients.Coordination, ns, name, spec.Operation, labels, id, r.lockOptions(spec.Force, report))
	if err != nil {
		return "", err
	}
	r.held = held
	return "held by " + id.Holder + notice + fmt.Sprintf(", renewed every %s", r.lockOptions(false, nil).Duration/3), nil
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
	held := r.held
	r.held = nil
	return held.Release(ctx)
}
