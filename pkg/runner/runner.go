// Package runner carries out plan steps against the API server: it is the
// plan.Runner that turns each typed step into Kubernetes calls (server-side
// apply of Certificates, patches with resourceVersion preconditions,
// evictions, watches, the lock), honouring --dry-run=server and the per-step
// timeout. It does not decide what to do (the planner does), never changes
// or deletes an object that is not the plugin's, and prints nothing
// (progress leaves through the report callback).
package runner

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/typed/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	policyv1client "k8s.io/client-go/kubernetes/typed/policy/v1"
	"k8s.io/client-go/rest"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/lock"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/restart"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
)

// FieldManager is the field manager of every write.
const FieldManager = "kubectl-pgpool"

// Clients are the API clients the Runner writes with.
type Clients struct {
	Config       *rest.Config
	Core         corev1client.CoreV1Interface
	Policy       policyv1client.PolicyV1Interface
	Coordination coordinationv1client.CoordinationV1Interface
	CertManager  cmclient.CertmanagerV1Interface
	Dynamic      dynamic.Interface
	// EndpointSlices, when set, lets a roll wait until each replacement
	// is a ready endpoint of the pgpool's Services before the next pod.
	EndpointSlices discoveryv1client.DiscoveryV1Interface
}

// Runner executes steps. ServerDryRun sends every write with DryRun All and
// skips waits.
type Runner struct {
	Clients      Clients
	Target       *pgpool.Target
	ServerDryRun bool
	// Timeout bounds each step (default 5m, as KubeDB's spec.timeout).
	Timeout time.Duration
	// Verify is --verify: "true" (handshake with every replaced pod when it
	// can be reached), "false", or "required".
	Verify string
	// Password is the --verify-login user and password (steps whose login
	// is "password"); Database is the database every login asks for
	// (default postgres).
	Password verify.Login
	Database string
	// Started is when the operation began: a certificate failure cert-manager
	// recorded before it is not this operation's.
	Started time.Time

	// Identity is this run's lock identity (lock.Self() when empty);
	// LockOptions tune the lock (tests shorten its duration).
	Identity    lock.Identity
	LockOptions lock.Options

	held *lock.Held
	// verifyUnavailable: handshakes stopped after two pods in a row could
	// not be reached; dialFailures counts those in a row, unreached names
	// every pod that could not be.
	verifyUnavailable bool
	dialFailures      int
	unreached         []string
	// want caches the expectation read from the TLS Secrets for the step
	// that runs (reset for every step that does not run concurrently: the
	// Secrets change between steps; the steps that check pods never run
	// concurrently).
	want *verify.Expect
	// proven are the pods this run proved in its roll (see provenPod). A
	// pod the roll could not reach is tried again at the end (port-forward
	// may have failed only for a moment on a busy machine).
	proven map[types.UID]provenPod
	// digestsAfter are the digests for the backup, read by the verify
	// step (nil: the record reads them); digestsStale: a Certificate was
	// deleted after that (remove), so the record reads them again (set by
	// the two deletes at once, hence atomic).
	digestsAfter map[string]string
	digestsStale atomic.Bool
}

var _ plan.Runner = (*Runner)(nil)

func (r *Runner) dryRun() []string {
	if r.ServerDryRun {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// Run carries out one step.
func (r *Runner) Run(ctx context.Context, s plan.Step, failure error, report func(string)) (string, error) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	stepCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !s.Concurrent {
		r.want = nil // only steps that run alone check pods (evict, verify)
	}
	msg, err := r.run(stepCtx, s, failure, report)
	var lost *lock.LostError
	if err != nil && !errors.As(err, &lost) && s.Kind != plan.Unlock {
		// Did this step fail because the run lost its lock meanwhile?
		// Then that is the error: the run stops and undoes nothing.
		if lerr := r.held.Confirm(ctx); lerr != nil {
			err = fmt.Errorf("%w (the step itself: %v)", lerr, err)
		}
	}
	switch {
	case err == nil:
	case errors.Is(context.Cause(ctx), plan.ErrInterrupted):
		err = fmt.Errorf("%w: %w", plan.ErrInterrupted, err)
	case errors.Is(stepCtx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("%w (step timeout %s; raise it with --timeout): %w", err, timeout, plan.ErrTimeout)
	}
	return msg, err
}

func (r *Runner) run(ctx context.Context, s plan.Step, failure error, report func(string)) (string, error) {
	if r.ServerDryRun && !s.Kind.Writes() {
		return "skipped: nothing to wait for in a server dry run", nil
	}
	if err := r.held.Check(ctx); err != nil && !s.Always {
		return "", err
	}
	switch spec := s.Spec.(type) {
	case plan.LockSpec:
		return r.lock(ctx, s, spec, report)
	case plan.UnlockSpec:
		return r.unlock(ctx, s)
	case plan.ApplyCertificateSpec:
		return r.applyCertificate(ctx, s, spec)
	case plan.ApplyBundleSpec:
		return r.applyBundle(ctx, s, spec)
	case plan.ApplyConfigMapSpec:
		return r.applyConfigMap(ctx, s, spec)
	case plan.DistributeTrustSpec:
		return r.distributeTrust(ctx, spec, report)
	case plan.BackupSpec:
		return r.backup(ctx, s, spec)
	case plan.WaitCertificateSpec:
		crt, err := issuing.WaitReady(ctx, r.Clients.CertManager, s.Object.Namespace, s.Object.Name, spec.AfterRevision, r.Started, report)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Ready, revision %d", tls.Revision(crt)), nil
	case plan.TriggerSpec:
		if err := issuing.TriggerIssuance(ctx, r.Clients.CertManager, s.Object.Namespace, s.Object.Name, r.dryRun()); err != nil {
			return "", err
		}
		return "Issuing condition set", nil
	case plan.ConfigPatchSpec:
		return r.patchConfig(ctx, s, spec)
	case plan.WorkloadPatchSpec:
		return r.patchWorkload(ctx, s, spec)
	case plan.CertificatePatchSpec:
		_, err := r.Clients.CertManager.Certificates(s.Object.Namespace).Patch(ctx, s.Object.Name, types.MergePatchType, spec.Patch,
			metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()})
		if err != nil {
			return "", fmt.Errorf("patch Certificate %s/%s: %w", s.Object.Namespace, s.Object.Name, err)
		}
		return r.answer("patched"), nil
	case plan.EvictSpec:
		return r.evict(ctx, s, spec, report)
	case plan.RolloutSpec:
		// A new pod that cannot start ends the wait at once, with why.
		gctx, stop := restart.Guard(ctx, r.Clients.Core, s.Object.Namespace, spec.Pods.Selector, knownUIDs(spec.Pods), r.Target.Owns, restart.Options{})
		defer stop()
		err := restart.WaitRollout(gctx, r.Clients.Dynamic.Resource(r.Target.GVR), s.Object.Namespace, s.Object.Name, r.Target.Layout.RolloutDone, restart.Options{OnProgress: report})
		if err == nil {
			err = restart.WaitGone(gctx, r.Clients.Core, s.Object.Namespace, spec.Pods.Selector, knownUIDs(spec.Pods), restart.Options{OnProgress: report})
		}
		if se := restart.StuckCause(gctx); se != nil && ctx.Err() == nil {
			return "", se
		}
		if err != nil {
			return "", err
		}
		return "all pods replaced and Ready, the old ones gone", nil
	case plan.VerifySpec:
		return r.verify(ctx, s, spec, report)
	case plan.DeleteSpec:
		if s.Object.Kind == "Certificate" {
			r.digestsStale.Store(true)
		}
		return r.delete(ctx, s)
	case plan.RecordSpec:
		return r.record(ctx, s, spec, failure)
	case plan.PauseSpec:
		return r.pause(ctx, s, spec)
	case plan.OwnerPatchSpec:
		return r.patchOwner(ctx, s, spec)
	}
	return "", fmt.Errorf("step %s %s: no runner for %T", s.Kind, s.Object, s.Spec)
}

func knownUIDs(p plan.Pods) map[types.UID]bool {
	known := map[types.UID]bool{}
	for _, u := range p.Known {
		known[types.UID(u)] = true
	}
	return known
}

// holder names this run (its lock identity).
func (r *Runner) holder() string {
	if r.held != nil {
		return r.held.Holder()
	}
	if r.Identity.Holder != "" {
		return r.Identity.Holder
	}
	return lock.Self().Holder
}

func (r *Runner) answer(what string) string {
	if r.ServerDryRun {
		return "server accepted (dry run): " + what
	}
	return what
}
