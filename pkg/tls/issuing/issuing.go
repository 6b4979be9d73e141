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
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/typed/certmanager/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
// generation with a revision greater than afterRevision, and returns it. An
// issuance that fails (Issuing False with reason Failed, for the current
// generation, since notBefore) fails the wait at once; a failure cert-manager
// left from before (an older generation or an earlier time) does not, since
// the change under way is what should fix it. A zero notBefore counts every
// failure.
func WaitReady(ctx context.Context, cm cmclient.CertmanagerV1Interface, ns, name string, afterRevision int, notBefore time.Time, report func(string)) (*cmapi.Certificate, error) {
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
	lastMsg := ""
	ev, err := watchtools.UntilWithSync(ctx, lw, &cmapi.Certificate{}, nil, func(e watch.Event) (bool, error) {
		if e.Type == watch.Deleted {
			return false, fmt.Errorf("Certificate %s/%s was deleted while waiting for it", ns, name)
		}
		c, ok := e.Object.(*cmapi.Certificate)
		if !ok {
			return false, nil
		}
		last = c
		if tls.IsReady(c) && tls.Revision(c) > afterRevision {
			return true, nil
		}
		if is := tls.Condition(c, cmapi.CertificateConditionIssuing); is != nil && is.Status == cmmeta.ConditionFalse && is.Reason == "Failed" &&
			is.ObservedGeneration >= c.Generation && (is.LastTransitionTime == nil || !is.LastTransitionTime.Time.Before(notBefore.Add(-clockSkew))) {
			return false, fmt.Errorf("cert-manager failed to issue Certificate %s/%s: %s", ns, name, is.Message)
		}
		msg := "waiting for cert-manager"
		if r := tls.Condition(c, cmapi.CertificateConditionReady); r != nil {
			msg = fmt.Sprintf("Ready=%s %s: %s", r.Status, r.Reason, r.Message)
		}
		if msg != lastMsg && report != nil {
			report(msg)
			lastMsg = msg
		}
		return false, nil
	})
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, fmt.Errorf("stopped waiting for Certificate %s/%s: %w", ns, name, context.Cause(ctx))
		}
		if ctx.Err() != nil {
			state := "it does not exist yet"
			if last != nil {
				state = fmt.Sprintf("revision %d, last status: %s", tls.Revision(last), lastMsg)
			}
			return nil, fmt.Errorf("timed out waiting for Certificate %s/%s to be Ready (%s); check the issuer and `kubectl describe certificate -n %s %s`: %w", ns, name, state, ns, name, context.DeadlineExceeded)
		}
		return nil, err
	}
	return ev.Object.(*cmapi.Certificate), nil
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
