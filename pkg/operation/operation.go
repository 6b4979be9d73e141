// Package operation owns one TLS operation on one pgpool, from discovery to
// result: the read-only preflight (cert-manager, the issuer, the lock, the
// CAs, the backends, permissions, disruption budgets, a dry run of the
// Certificates), the plan, its execution, and the rollback of a failed run;
// and the status of a pgpool. It prints nothing: the command sees the run
// through Hooks (the plan before the first write, progress events, the
// outcome, notices) and renders it.
package operation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/lock"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
)

// Options are how an operation runs (the shared flags of the commands).
type Options struct {
	// DryRun is "none", "client" (plan only) or "server" (every write sent
	// with dryRun=All).
	DryRun string
	// Timeout bounds each step, and each handshake of the preflight.
	Timeout time.Duration
	// Verify is "true", "false" or "required" (runner.Verify*).
	Verify string
	// VerifyLogin names a Secret (keys username, password, optionally
	// database) to log in with through each replaced pod.
	VerifyLogin string
	// OnFailure is what happens when a step fails after the first change:
	// "rollback" (restore the backup) or "stop".
	OnFailure string
	// LockDuration is the lock's duration (0: pgpool.LockDuration).
	LockDuration time.Duration
	// Identity is the run's lock identity (lock.Self() when empty).
	Identity lock.Identity
	// Cache holds what is read once for many pgpools (a fleet shares
	// one); nil reads every time.
	Cache *Cache
}

// Outcome is one plan's end: what it ran on, the plan, its result (nil for
// --dry-run=client), or why there was nothing to do.
type Outcome struct {
	// Operation is what runs (an issuer-only add on a pgpool with TLS is a
	// change-issuer).
	Operation   string
	Target      *pgpool.Target
	Plan        *plan.Plan
	Result      *plan.Result
	NothingToDo string
	// RollingBack: the automatic rollback of a failed operation.
	RollingBack bool
}

// Hooks are how the command sees and steers a run; nil hooks are skipped.
type Hooks struct {
	// Planned gets the plan, checked, before the first write (also the
	// plan of an automatic rollback): print it, ask; an error stops the
	// run with nothing written.
	Planned func(ctx context.Context, o Outcome) error
	// Progress starts the live progress of a plan of n steps: it returns
	// where each event goes and a function that ends the display.
	Progress func(n int) (event func(plan.Event), stop func())
	// Done gets the outcome of each plan run (or not run).
	Done func(o Outcome) error
	// Notice gets a line for the user beside the output (stderr).
	Notice func(msg string)
}

func (h Hooks) notice(msg string) {
	if h.Notice != nil {
		h.Notice(msg)
	}
}

func (h Hooks) done(o Outcome) error {
	if h.Done != nil {
		return h.Done(o)
	}
	return nil
}

// Run carries out intent on the pgpool ref names. When a step fails after the
// first change it rolls back (OnFailure "rollback") or stops and says how
// to go on.
func Run(ctx context.Context, c *Clients, ref discover.Ref, intent planner.Intent, o Options, h Hooks) error {
	if o.Identity.Holder == "" {
		o.Identity = lock.Self()
	}
	if obs, ok := ctx.Value(observerKey{}).(func(Outcome)); ok {
		done := h.Done
		h.Done = func(o Outcome) error {
			obs(o)
			if done != nil {
				return done(o)
			}
			return nil
		}
	}
	r := &run{c: c, ref: ref, o: o, h: h}
	out, changed, err := r.execute(ctx, intent, false)
	// A plan that says what follows it (a stage of a CA renewal) is
	// followed by the next plan, made from what the cluster holds then.
	for stages := 1; err == nil && out.Plan != nil && out.Plan.Then != "" && o.DryRun == "none" && stages < maxStages; stages++ {
		out, changed, err = r.execute(ctx, intent, false)
	}
	if err == nil || !changed || out.Plan.Operation == planner.Rollback || o.DryRun != "none" {
		return err
	}
	op := out.Plan.Operation
	// A run that lost its lock stops: another run holds the pgpool now,
	// and undoing would undo that run's work too.
	var lost *lock.LostError
	if errors.As(err, &lost) {
		return err
	}
	undo := fmt.Sprintf("kubectl pgpool tls rollback %s -n %s", ref.Name, ref.Namespace)
	if errors.Is(err, plan.ErrInterrupted) || o.OnFailure == "stop" {
		return fmt.Errorf("%w\nstopped part-way: run the same command again to finish it, or `%s` to undo it", err, undo)
	}
	h.notice(fmt.Sprintf("tls %s failed: %v\nrolling back to the state before it (--on-failure=rollback)", op, err))
	// The failed run was allowed to take the pods down if it had to; its
	// rollback is too (undoing it is the way back up).
	if _, _, rerr := r.execute(ctx, planner.Intent{Operation: planner.Rollback, AllowOutage: true}, true); rerr != nil {
		return fmt.Errorf("%w\nthe rollback failed too: %v\nfix that, then run `%s` again", err, rerr, undo)
	}
	return fmt.Errorf("%w\nrolled back: the config, the TLS volume and the certificates are as they were before tls %s, and every pod changed since was restarted onto them; fix the cause, then run the command again", err, op)
}

type observerKey struct{}

// WithObserver returns a context under which Run passes each outcome to
// f as well as to the command's own Done hook: how a scheduled run learns
// what the rotate it ran did (the command prints; the run records).
func WithObserver(ctx context.Context, f func(Outcome)) context.Context {
	return context.WithValue(ctx, observerKey{}, f)
}

// maxStages bounds the plans one Run makes one after another (Plan.Then).
const maxStages = 3

// run is one Run: the operation and, when it fails, its rollback.
type run struct {
	c   *Clients
	ref discover.Ref
	o   Options
	h   Hooks
}

// execute is discover -> preflight -> plan -> Planned -> execute -> Done.
// changed: a step after the backup changed the cluster.
func (r *run) execute(ctx context.Context, intent planner.Intent, rollingBack bool) (out Outcome, changed bool, err error) {
	// Discovery and the checks that need only the name at once; a
	// discovery error is reported first.
	pf := &preflighted{}
	err = parallel.All(func() (err error) {
		out.Target, err = discover.DiscoverRef(ctx, r.c.discover(), r.ref)
		return err
	}, func() error { return r.preflightReads(ctx, intent, pf) })
	if err != nil {
		return out, false, err
	}
	t := out.Target
	intent = onTarget(intent, t)
	out.Operation = intent.Operation
	facts, err := r.preflight(ctx, t, intent, pf)
	if err != nil {
		return out, false, err
	}
	if intent.OnlyStale {
		if facts.Current, err = r.current(ctx, t); err != nil {
			return out, false, err
		}
		if len(facts.Current) == len(t.Pods) {
			out.NothingToDo = fmt.Sprintf("all %d pods current: each serves the certificate its Secret holds; nothing to restart", len(t.Pods))
			return out, false, r.h.done(out)
		}
	}
	p, err := planner.Build(t, intent, facts)
	var done *planner.NothingToDoError
	if errors.As(err, &done) {
		out.NothingToDo = done.Msg
		return out, false, r.h.done(out)
	}
	if err != nil {
		return out, false, err
	}
	out.Plan, out.RollingBack = p, rollingBack
	p.Warnings = append(p.Warnings, pf.warnings...)
	backendWarnings, err := r.checks(ctx, t, p, pf)
	if err != nil {
		return out, false, err
	}
	p.Warnings = append(p.Warnings, backendWarnings...)
	if r.h.Planned != nil {
		if err := r.h.Planned(ctx, out); err != nil {
			return out, false, err
		}
	}
	if r.o.DryRun == "client" {
		return out, false, r.h.done(out)
	}
	event, stop := func(plan.Event) {}, func() {}
	if r.h.Progress != nil {
		event, stop = r.h.Progress(len(p.Steps))
	}
	rn := &runner.Runner{Clients: r.c.Clients, Target: t, ServerDryRun: r.o.DryRun == "server", Timeout: r.o.Timeout, Verify: r.o.Verify,
		Password: pf.login, Started: time.Now(), Identity: r.o.Identity, LockOptions: lock.Options{Duration: r.o.LockDuration}}
	res, execErr := plan.Execute(ctx, p, rn, event)
	stop()
	if execErr != nil && r.o.DryRun == "none" && plan.OnlyBookkeepingFailed(res) && !errors.Is(execErr, plan.ErrInterrupted) {
		// The change is done and verified: a failed record or unlock is a
		// warning, never a reason to roll back.
		res.Succeeded, res.Error = true, ""
		res.Warning = fmt.Sprintf("tls %s is done and verified on %s, but %v; nothing was undone. %s", p.Operation, t, execErr, bookkeepingAdvice(t))
		r.h.notice("warning: " + res.Warning)
		execErr = nil
	}
	out.Result = res
	if err := r.h.done(out); err != nil {
		return out, false, err
	}
	return out, changedAfterBackup(res, t.Name), execErr
}

// onTarget is the intent as it applies to t: an IssuerOnly add (a
// PgpoolOpsRequest with spec.tls.issuerRef alone) on a pgpool that has TLS
// is, as KubeDB runs it, a change-issuer to that issuer.
func onTarget(intent planner.Intent, t *pgpool.Target) planner.Intent {
	if intent.Operation != planner.Add || !intent.IssuerOnly || !t.State.Enabled {
		return intent
	}
	return planner.Intent{Operation: planner.ChangeIssuer, Issuer: intent.Issuer, ApplyAlways: intent.ApplyAlways, ForceUnlock: intent.ForceUnlock, BackendCASources: intent.BackendCASources, AllowOutage: intent.AllowOutage}
}

// checks are the preflight's checks of the built plan, all at once, their
// errors reported in this order: the new issuer, the backends, the
// permissions, the disruption budgets, a dry run of the Certificates, a
// dry run of the pod template against Pod Security admission.
func (r *run) checks(ctx context.Context, t *pgpool.Target, p *plan.Plan, pf *preflighted) (backendWarnings []string, err error) {
	checks := []func() error{func() error {
		// change-issuer with cert auth: a SelfSigned issuer signs each
		// client certificate with its own key, which no CA bundle holds.
		if p.Operation == planner.ChangeIssuer && t.State.AuthMode == "cert" {
			return issuing.RefuseSelfSigned(pf.issuerSpec, pf.issuerRef)
		}
		return nil
	}, func() (err error) {
		if pf.backends != nil {
			backendWarnings, err = pf.backends()
		}
		return err
	}, func() error { return r.checkAccess(ctx, t, p) }}
	if p.Restart == "evict" && p.Operation != planner.Rollback {
		checks = append(checks, func() error { return r.checkBudgets(ctx, t) })
	}
	checks = append(checks, func() error { return runner.CheckCertificates(ctx, r.c.Clients, p) })
	var psWarnings []string
	checks = append(checks, func() (err error) {
		psWarnings, err = runner.CheckPodSecurity(ctx, r.c.Clients, t, p)
		return err
	})
	err = parallel.All(checks...)
	return append(backendWarnings, psWarnings...), err
}

// bookkeepingAdvice says what to do after a failed record or unlock.
func bookkeepingAdvice(t *pgpool.Target) string {
	return fmt.Sprintf("If the record failed, the workload's %s annotation or its Event may still show the previous operation (kubectl pgpool tls status shows what pgpool serves); if the unlock failed, the lock Lease %s/%s stays until the next run takes it over, or `kubectl delete lease -n %s %s`.",
		pgpool.AnnotationLastOperation, t.Namespace, pgpool.LeaseName(t.Name), t.Namespace, pgpool.LeaseName(t.Name))
}

// changedAfterBackup reports whether a step that changes the pgpool (not
// the lock, the backup or the record) succeeded.
func changedAfterBackup(res *plan.Result, name string) bool {
	for _, s := range res.Steps {
		if s.Status != "succeeded" || !s.Kind.Writes() {
			continue
		}
		switch s.Kind {
		case plan.Lock, plan.Unlock, plan.Record:
			continue
		}
		if s.Object.Kind == "Secret" && s.Object.Name == pgpool.BackupName(name) {
			continue
		}
		return true
	}
	return false
}
