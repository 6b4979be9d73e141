// Package issuing talks to cert-manager for pgpool's certificates:
// triggering a re-issue the way `cmctl renew` does, waiting by watch for a
// Certificate's new revision to be Ready, and checking that an issuer is
// Ready. The desired objects themselves are pkg/tls's; this package never
// creates or deletes anything.
package issuing

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/typed/certmanager/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/retry"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// TriggerIssuance sets the Issuing condition through the status subresource,
// as `cmctl renew` does; cert-manager then issues a new revision.
func TriggerIssuance(ctx context.Context, cm cmclient.CertmanagerV1Interface, ns, name string, dryRun []string) error {
	// cert-manager writes the status concurrently: re-read and retry on 409.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		crt, err := cm.Certificates(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get Certificate %s/%s: %w", ns, name, err)
		}
		if c := tls.Condition(crt, cmapi.CertificateConditionIssuing); c != nil && c.Status == cmmeta.ConditionTrue {
			return nil // already issuing
		}
		// Replace the condition in place: status.conditions is a map keyed
		// by type, and cert-manager leaves Issuing=False after a failure.
		apiutil.SetCertificateCondition(crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue,
			"ManuallyTriggered", "Certificate re-issuance manually triggered by kubectl-pgpool")
		_, err = cm.Certificates(ns).UpdateStatus(ctx, crt, metav1.UpdateOptions{FieldManager: tls.ManagerName, DryRun: dryRun})
		if err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("set Issuing condition on Certificate %s/%s: %w", ns, name, err)
		}
		return err
	})
}

// WaitReady waits, by watch, until the Certificate is Ready for its current
// generation with a revision greater than afterRevision, and returns it.
//
// It fails at once, quoting cert-manager, when cert-manager says the
// issuance cannot succeed (a run with nobody watching must not just time
// out):
//   - the Certificate's Issuing condition is False with reason Failed;
//   - a CertificateRequest of a revision after afterRevision is Denied,
//     InvalidRequest or Failed;
//   - the issuer (a cert-manager.io Issuer or ClusterIssuer) turns not
//     Ready, or is deleted.
//
// A failure cert-manager left from before (an older generation, or earlier
// than notBefore) does not count, since the change under way is what should
// fix it; a zero notBefore counts every failure. The requests and the
// issuer are watched best effort: without permission to watch them the wait
// says so once and relies on the Certificate alone.
func WaitReady(ctx context.Context, cm cmclient.CertmanagerV1Interface, ns, name string, afterRevision int, notBefore time.Time, report func(string)) (*cmapi.Certificate, error) {
	wctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	w := &waiter{cm: cm, ns: ns, name: name, after: afterRevision, notBefore: notBefore.Add(-clockSkew), report: report, fail: fail}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			return cm.Certificates(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			return cm.Certificates(ns).Watch(ctx, o)
		},
	}
	var last *cmapi.Certificate
	var side sync.WaitGroup
	defer side.Wait()
	defer fail(nil) // stop the side watches before waiting for them
	ev, err := watchtools.UntilWithSync(wctx, lw, &cmapi.Certificate{}, nil, func(e watch.Event) (bool, error) {
		if e.Type == watch.Deleted {
			return false, fmt.Errorf("Certificate %s/%s was deleted while waiting for it", ns, name)
		}
		c, ok := e.Object.(*cmapi.Certificate)
		if !ok {
			return false, nil
		}
		if tls.IsReady(c) && tls.Revision(c) > afterRevision {
			return true, nil
		}
		if last == nil {
			side.Add(2)
			go func() { defer side.Done(); w.watchRequests(wctx) }()
			go func() { defer side.Done(); w.watchIssuer(wctx, c.Spec.IssuerRef, notBefore.IsZero()) }()
		}
		last = c
		if is := tls.Condition(c, cmapi.CertificateConditionIssuing); is != nil && is.Status == cmmeta.ConditionFalse && is.Reason == "Failed" &&
			is.ObservedGeneration >= c.Generation && (is.LastTransitionTime == nil || !is.LastTransitionTime.Time.Before(w.notBefore)) {
			return false, fmt.Errorf("cert-manager failed to issue Certificate %s/%s: %s", ns, name, is.Message)
		}
		msg := "waiting for cert-manager"
		if r := tls.Condition(c, cmapi.CertificateConditionReady); r != nil {
			msg = fmt.Sprintf("Ready=%s %s: %s", r.Status, r.Reason, r.Message)
		}
		w.say("certificate", msg)
		return false, nil
	})
	if err != nil {
		if cause := context.Cause(wctx); ctx.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
			return nil, cause // a side watch saw cert-manager give up
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, fmt.Errorf("stopped waiting for Certificate %s/%s: %w", ns, name, context.Cause(ctx))
		}
		if ctx.Err() != nil {
			state := "it does not exist yet"
			if last != nil {
				state = fmt.Sprintf("revision %d, last status: %s", tls.Revision(last), w.lastStatus())
			}
			return nil, fmt.Errorf("timed out waiting for Certificate %s/%s to be Ready (%s); check the issuer and `kubectl describe certificate -n %s %s`: %w", ns, name, state, ns, name, context.DeadlineExceeded)
		}
		return nil, err
	}
	return ev.Object.(*cmapi.Certificate), nil
}

// waiter is one WaitReady: what the Certificate, its requests and its
// issuer last said (the three watches report from their own goroutines).
type waiter struct {
	cm        cmclient.CertmanagerV1Interface
	ns, name  string
	after     int
	notBefore time.Time
	report    func(string)
	fail      context.CancelCauseFunc

	mu     sync.Mutex
	status map[string]string // by source: certificate, request, issuer
	said   string
}

// say records what a source last said and reports the combined line when
// it changed.
func (w *waiter) say(source, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status == nil {
		w.status = map[string]string{}
	}
	w.status[source] = msg
	line := w.line()
	if line != w.said && w.report != nil {
		w.report(line)
	}
	w.said = line
}

func (w *waiter) line() string {
	var parts []string
	for _, s := range []string{"certificate", "request", "issuer"} {
		if m := w.status[s]; m != "" {
			parts = append(parts, m)
		}
	}
	return strings.Join(parts, "; ")
}

func (w *waiter) lastStatus() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.line()
}

// watchRequests follows the CertificateRequests cert-manager makes for the
// Certificate's next revisions and ends the wait when one of them cannot
// succeed: Denied (an approver said no), InvalidRequest, or Failed.
func (w *waiter) watchRequests(ctx context.Context) {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return w.cm.CertificateRequests(w.ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return w.cm.CertificateRequests(w.ns).Watch(ctx, o)
		},
	}
	err := follow(ctx, lw, func(e watch.Event) (bool, error) {
		cr, ok := e.Object.(*cmapi.CertificateRequest)
		if !ok || e.Type == watch.Deleted || !w.ours(cr) {
			return false, nil
		}
		if err := RequestFailure(cr); err != nil {
			w.fail(fmt.Errorf("cert-manager cannot issue Certificate %s/%s: %w", w.ns, w.name, err))
			return true, nil
		}
		if c := apiutil.GetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionReady); c != nil && c.Status != cmmeta.ConditionTrue {
			w.say("request", fmt.Sprintf("CertificateRequest %s %s: %s", cr.Name, c.Reason, c.Message))
		}
		return false, nil
	})
	w.sideError(ctx, "request", "CertificateRequests", err)
}

// ours: a request cert-manager made for this Certificate, for a revision
// after the one the wait started from, and not left from before.
func (w *waiter) ours(cr *cmapi.CertificateRequest) bool {
	if cr.Annotations[cmapi.CertificateNameKey] != w.name {
		return false
	}
	rev, err := strconv.Atoi(cr.Annotations[cmapi.CertificateRequestRevisionAnnotationKey])
	if err != nil || rev <= w.after {
		return false
	}
	return !cr.CreationTimestamp.Time.Before(w.notBefore.Truncate(time.Second))
}

// RequestFailure is why cert-manager will not issue a CertificateRequest,
// nil while it may still: Denied, InvalidRequest, or Ready False with
// reason Failed. The error quotes cert-manager's reason and message.
func RequestFailure(cr *cmapi.CertificateRequest) error {
	if c := apiutil.GetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionDenied); c != nil && c.Status == cmmeta.ConditionTrue {
		return fmt.Errorf("CertificateRequest %s was denied (%s: %s)", cr.Name, c.Reason, c.Message)
	}
	if c := apiutil.GetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionInvalidRequest); c != nil && c.Status == cmmeta.ConditionTrue {
		return fmt.Errorf("CertificateRequest %s is invalid (%s: %s)", cr.Name, c.Reason, c.Message)
	}
	if c := apiutil.GetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionReady); c != nil && c.Status == cmmeta.ConditionFalse && c.Reason == cmapi.CertificateRequestReasonFailed {
		return fmt.Errorf("CertificateRequest %s failed: %s", cr.Name, c.Message)
	}
	return nil
}

// watchIssuer ends the wait when the Certificate's issuer turns not Ready
// or is deleted: cert-manager does not issue from it until someone fixes it
// (its CA Secret deleted, say). Turns: it was seen Ready during the wait,
// or (with a notBefore) its Ready=False began since then; an issuer that
// was never Ready may still be on its way up (a CA Issuer whose CA
// Certificate is being issued), and the operations' preflight refuses one
// that is not Ready before they start. An external issuer (another API
// group) is not watched.
func (w *waiter) watchIssuer(ctx context.Context, ref cmmeta.IssuerReference, noStart bool) {
	if ref.Group != "" && ref.Group != "cert-manager.io" {
		return
	}
	kind := tls.IssuerKind(ref.Kind)
	sel := fields.OneTermEqualSelector("metadata.name", ref.Name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			if kind == "ClusterIssuer" {
				return w.cm.ClusterIssuers().List(ctx, o)
			}
			return w.cm.Issuers(w.ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			if kind == "ClusterIssuer" {
				return w.cm.ClusterIssuers().Watch(ctx, o)
			}
			return w.cm.Issuers(w.ns).Watch(ctx, o)
		},
	}
	what := fmt.Sprintf("%s %q", kind, ref.Name)
	wasReady := false
	err := follow(ctx, lw, func(e watch.Event) (bool, error) {
		if e.Type == watch.Deleted {
			w.fail(fmt.Errorf("cert-manager cannot issue Certificate %s/%s: its %s was deleted; recreate it, or move the pgpool to another issuer with `kubectl pgpool tls change-issuer`", w.ns, w.name, what))
			return true, nil
		}
		gi, ok := e.Object.(cmapi.GenericIssuer)
		if !ok {
			return false, nil
		}
		for _, c := range gi.GetStatus().Conditions {
			if c.Type != cmapi.IssuerConditionReady {
				continue
			}
			if c.Status == cmmeta.ConditionTrue {
				wasReady = true
				continue
			}
			since := !noStart && c.LastTransitionTime != nil && !c.LastTransitionTime.Time.Before(w.notBefore.Truncate(time.Second))
			if c.Status == cmmeta.ConditionFalse && (wasReady || since) {
				w.fail(fmt.Errorf("cert-manager cannot issue Certificate %s/%s: its %s is not Ready (%s: %s); fix the issuer and run again", w.ns, w.name, what, c.Reason, c.Message))
				return true, nil
			}
		}
		return false, nil
	})
	w.sideError(ctx, "issuer", what, err)
}

// follow lists, then watches from the list's resourceVersion, until cond
// is done or fails; a watch the server closes is resumed by listing again
// (after a second). Unlike an informer it returns the list's error (such as
// forbidden) instead of retrying it in the background forever.
func follow(ctx context.Context, lw *cache.ListWatch, cond watchtools.ConditionFunc) error {
	for {
		list, err := lw.ListWithContext(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return err
		}
		for _, it := range items {
			if done, err := cond(watch.Event{Type: watch.Added, Object: it}); done || err != nil {
				return err
			}
		}
		lm, err := meta.ListAccessor(list)
		if err != nil {
			return err
		}
		wi, err := lw.WatchFuncWithContext(ctx, metav1.ListOptions{ResourceVersion: lm.GetResourceVersion()})
		if err != nil {
			return err
		}
		_, err = watchtools.UntilWithoutRetry(ctx, wi, cond)
		if !errors.Is(err, watchtools.ErrWatchClosed) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// sideError says once why a side watch stopped early (the user may not
// watch that kind, say); the wait goes on with the Certificate alone.
func (w *waiter) sideError(ctx context.Context, source, what string, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	reason := err.Error()
	if apierrors.IsForbidden(err) {
		reason = "forbidden"
	}
	w.say(source, fmt.Sprintf("not watching %s (%s): an issuance that fails shows only at the timeout", what, reason))
}

// clockSkew is how far cert-manager's clock may be behind ours when telling
// a fresh failure from one left before the change.
const clockSkew = 5 * time.Second

// IssuerReady checks that the issuer exists, is Ready, and can give pgpool
// a CA: an ACME issuer writes no ca.crt, and pgpool needs one (ssl_ca_cert)
// to verify client certificates and its backends. With clientCerts (clients
// log in with a certificate), a SelfSigned issuer is refused too: each of
// its certificates is signed by its own key, so the client certificate is
// not signed by the CA pgpool reads (ca.crt is the server certificate).
// It returns the issuer's spec (for its CA Secret, and RefuseSelfSigned).
func IssuerReady(ctx context.Context, cm cmclient.CertmanagerV1Interface, ns string, ref cmmeta.IssuerReference, clientCerts bool) (cmapi.IssuerSpec, error) {
	var conds []cmapi.IssuerCondition
	var spec cmapi.IssuerSpec
	switch ref.Kind {
	case "ClusterIssuer":
		ci, err := cm.ClusterIssuers().Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return spec, fmt.Errorf("ClusterIssuer %q not found: create it, or name an existing one with --issuer (list them with: kubectl get clusterissuers)", ref.Name)
		} else if err != nil {
			return spec, fmt.Errorf("get ClusterIssuer %s: %w", ref.Name, err)
		}
		conds, spec = ci.Status.Conditions, ci.Spec
	default:
		is, err := cm.Issuers(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return spec, fmt.Errorf("Issuer %q not found in namespace %q: create it, or name an existing one with --issuer (list them with: kubectl get issuers -n %s; for a ClusterIssuer add --issuer-kind ClusterIssuer)", ref.Name, ns, ns)
		} else if err != nil {
			return spec, fmt.Errorf("get Issuer %s/%s: %w", ns, ref.Name, err)
		}
		conds, spec = is.Status.Conditions, is.Spec
	}
	if spec.ACME != nil {
		return spec, fmt.Errorf("%s %q is an ACME issuer, which writes no ca.crt into the Secret: pgpool needs its issuer's CA (ssl_ca_cert) to verify client certificates and its backends; use a CA or Vault issuer; nothing was changed", tls.IssuerKind(ref.Kind), ref.Name)
	}
	if clientCerts {
		if err := RefuseSelfSigned(spec, ref); err != nil {
			return spec, err
		}
	}
	for _, c := range conds {
		if c.Type == cmapi.IssuerConditionReady {
			if c.Status == cmmeta.ConditionTrue {
				return spec, nil
			}
			return spec, fmt.Errorf("%s %q is not Ready (%s: %s): fix it before changing TLS", tls.IssuerKind(ref.Kind), ref.Name, c.Reason, c.Message)
		}
	}
	return spec, fmt.Errorf("%s %q has no Ready condition yet: is cert-manager running?", tls.IssuerKind(ref.Kind), ref.Name)
}

// RefuseSelfSigned refuses a SelfSigned issuer when clients log in with
// certificates: each certificate it issues is signed by its own key, so the
// client certificate is not signed by the CA pgpool reads.
func RefuseSelfSigned(spec cmapi.IssuerSpec, ref cmmeta.IssuerReference) error {
	if spec.SelfSigned == nil {
		return nil
	}
	return fmt.Errorf("%s %q is a SelfSigned issuer: each certificate it issues is signed by its own key, so pgpool (whose CA would be the server certificate itself) cannot verify the client certificate and every cert login would fail; use a CA issuer (a SelfSigned issuer can sign that CA), or a password auth mode; nothing was changed", tls.IssuerKind(ref.Kind), ref.Name)
}
