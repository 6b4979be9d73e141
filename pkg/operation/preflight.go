package operation

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/lock"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/restart"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
)

// preflighted is what preflight found: warnings for the plan, the
// --verify-login credentials, the CAs it read, and the check that pgpool
// will trust every backend that serves TLS (nil when the operation adds no
// CA), which runs with the permission checks once the plan is built.
type preflighted struct {
	warnings                       []string
	currentLeaf                    []byte
	login                          verify.Login
	backendCA, currentCA, issuerCA []byte
	issuerSpec                     cmapi.IssuerSpec
	issuerRef                      cmmeta.IssuerReference
	backends                       func() (warnings []string, err error)
}

// preflightReads runs the read-only checks that need only the pgpool's
// name, at the same time as its discovery: cert-manager is served, the
// issuer is Ready, nobody holds the lock; and it reads the CAs pgpool will
// trust for its backends. The reads are independent: all at once (one round
// trip of latency, two for an Issuer's CA), their errors reported in the
// order below, as if one after another.
func (r *run) preflightReads(ctx context.Context, intent planner.Intent, pf *preflighted) error {
	ns, name, c := r.ref.Namespace, r.ref.Name, r.c
	withCAs := intent.Operation != planner.Remove && intent.Operation != planner.Rollback
	newIssuer := intent.Operation == planner.Add || intent.Operation == planner.ChangeIssuer
	var notice string
	// The user's own inputs first (--backend-ca, --verify-login), then the
	// cluster's: cert-manager, the issuer, the lock, the CA today.
	var reads []func() error
	if withCAs && len(intent.BackendCASources) > 0 {
		reads = append(reads, func() (err error) {
			pf.backendCA, err = r.readCAs(ctx, intent.BackendCASources)
			return err
		})
	}
	if r.o.VerifyLogin != "" {
		reads = append(reads, func() error {
			s, err := c.Core.Secrets(ns).Get(ctx, r.o.VerifyLogin, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("--verify-login: get Secret %s/%s: %w", ns, r.o.VerifyLogin, err)
			}
			pf.login = verify.Login{User: string(s.Data["username"]), Password: string(s.Data["password"]), Database: string(s.Data["database"])}
			if pf.login.User == "" || pf.login.Password == "" {
				return fmt.Errorf("--verify-login: Secret %s/%s needs the keys username and password", ns, r.o.VerifyLogin)
			}
			return nil
		})
	}
	reads = append(reads, func() error {
		return r.o.Cache.certManagerServed(c.Discovery)
	})
	if newIssuer {
		pf.issuerRef = cmmeta.IssuerReference{Name: intent.Issuer.Name, Kind: intent.Issuer.Kind}
		clusterIssuer := intent.Issuer.Kind == "ClusterIssuer"
		reads = append(reads, func() (err error) {
			// One read of the issuer: ready, and (then) its CA. change-issuer
			// with cert auth judges its spec again once the pgpool's auth
			// mode is known (checks).
			pf.issuerSpec, err = issuing.IssuerReady(ctx, c.CertManager, ns, pf.issuerRef, intent.Operation == planner.Add && intent.AuthMode == "cert")
			if err == nil && withCAs && !clusterIssuer {
				pf.issuerCA = r.issuerCA(ctx, pf.issuerSpec)
			}
			return err
		})
	}
	reads = append(reads, func() (err error) {
		notice, err = lock.Inspect(ctx, c.Coordination, ns, pgpool.LeaseName(name), r.o.Identity, intent.ForceUnlock)
		return err
	})
	if withCAs {
		reads = append(reads, func() error {
			if sec, err := c.Core.Secrets(ns).Get(ctx, pgpool.ServerCertName(name), metav1.GetOptions{}); err == nil {
				pf.currentCA, pf.currentLeaf = sec.Data["ca.crt"], sec.Data[corev1.TLSCertKey]
			}
			return nil
		})
	}
	if err := parallel.All(reads...); err != nil {
		return err
	}
	if notice != "" {
		pf.warnings = append(pf.warnings, notice)
	}
	return nil
}

// preflight completes the checks with the discovered target (the backends
// pgpool must trust) and returns the facts for the planner. (Checks of today's state against the operation
// are part of planner.Build.)
func (r *run) preflight(ctx context.Context, t *pgpool.Target, intent planner.Intent, pf *preflighted) (planner.Facts, error) {
	f := planner.Facts{Holder: r.o.Identity.Holder, Now: time.Now()}
	if r.o.VerifyLogin != "" {
		f.Login = "password"
	}
	if intent.Operation == planner.Remove || intent.Operation == planner.Rollback {
		return f, nil
	}
	f.BackendCA, f.CurrentCA = pf.backendCA, pf.currentCA
	if intent.Operation == planner.Rotate {
		// A CA Issuer whose CA Secret was renewed with a new key signs
		// with another CA than the one that signed the certificate today.
		f.IssuerCA, _ = IssuerSigningCA(ctx, r.c, t.Namespace, t.State.Issuer)
		if f.IssuerCA != nil && len(pf.currentLeaf) > 0 && !tls.SignedBy(pf.currentLeaf, f.IssuerCA) {
			f.RenewedCA = f.IssuerCA
		}
		// The client certificates the plugin issued: which to re-issue
		// under a renewed CA, and whether a previous CA may go.
		if f.IssuerCA != nil || (t.Bundle != nil && t.Bundle.Data[tls.RecordKey] != "") {
			var err error
			if f.ClientLeaves, f.UserCerts, err = r.c.clientLeaves(ctx, t); err != nil {
				pf.warnings = append(pf.warnings, err.Error())
			}
		}
	}
	if len(intent.BackendCASources) == 0 {
		ca, from, err := r.appBindingCA(ctx, t)
		if err != nil {
			return f, err
		}
		if ca != nil {
			f.BackendCA, f.BackendCAFrom = ca, from
		}
	}
	issuerCA := pf.issuerCA
	if intent.Operation != planner.Add && intent.Operation != planner.ChangeIssuer {
		issuerCA = f.CurrentCA
	}
	// The CAs pgpool will read: the issuer's, the previous one (kept during
	// change-issuer), the backends'.
	var previous []byte
	if intent.Operation == planner.ChangeIssuer {
		previous = f.CurrentCA
	}
	trust := tls.Pool(issuerCA, previous, planner.BackendCAs(t, f))
	pf.backends = func() ([]string, error) {
		var warnings []string
		backends := r.c.checkBackends(ctx, t, trust, r.o.Timeout)
		for _, b := range backends {
			if b.Check != "not-checked" {
				continue
			}
			if r.o.Verify == runner.VerifyRequired && b.Via != "" {
				return nil, fmt.Errorf("backend %d (%s:%d): %s (--verify=required)", b.Index, b.Host, b.Port, b.Detail)
			}
			warnings = append(warnings, fmt.Sprintf("backend %d (%s:%d) not checked for TLS: %s", b.Index, b.Host, b.Port, b.Detail))
		}
		return warnings, backendProblems(backends)
	}
	return f, nil
}

// current returns the UIDs of the pods that serve what the Secret holds
// (rotate --only-stale), proven by a handshake with each. A pod that cannot
// be checked stops the command: it cannot be told stale or current.
func (r *run) current(ctx context.Context, t *pgpool.Target) (map[string]bool, error) {
	pods := make([]status.PodStatus, 0, len(t.Pods))
	for i := range t.Pods {
		pods = append(pods, status.PodStatus{Name: t.Pods[i].Name, UID: string(t.Pods[i].UID)})
	}
	r.c.probePods(ctx, t, pods, r.o.Timeout)
	current := map[string]bool{}
	var stale []string
	for _, p := range pods {
		switch p.Check {
		case "ok":
			current[p.UID] = true
		case "mismatch":
			stale = append(stale, p.Name)
		default:
			return nil, fmt.Errorf("--only-stale: pod %s cannot be told stale or current (%s: %s); nothing was changed: run without --only-stale to restart every pod", p.Name, p.Check, p.Detail)
		}
	}
	if len(stale) > 0 {
		r.h.notice(fmt.Sprintf("--only-stale: %d of %d pods serve an older certificate than the Secret holds: %s", len(stale), len(pods), strings.Join(stale, ", ")))
	}
	return current, nil
}

// checkBudgets refuses a roll that the PodDisruptionBudgets would block
// outright (read-only, before the first write).
func (r *run) checkBudgets(ctx context.Context, t *pgpool.Target) error {
	pdbs, err := r.c.Policy.PodDisruptionBudgets(t.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list the PodDisruptionBudgets in %s: %w", t.Namespace, err)
	}
	return restart.CheckBudgets(pdbs.Items, t.Pods)
}

// clientLeaves reads the certificates of the client Certificates the
// plugin issued for t (NAME-client-cert and those of tls client-cert), by
// Certificate name, and the latter's users; nil and an error that says so
// when they cannot be read.
func (c *Clients) clientLeaves(ctx context.Context, t *pgpool.Target) (map[string][]byte, map[string]planner.UserCert, error) {
	sel := tls.LabelInstance + "=" + t.Name + "," + pgpool.LabelUser
	list, err := c.CertManager.Certificates(t.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, nil, fmt.Errorf("the client certificates of tls client-cert could not be listed (%v): none is re-issued, and a previous CA that may go once they are stays", err)
	}
	users := map[string]planner.UserCert{}
	secrets := map[string]string{}
	if crt := t.Certificates[pgpool.ClientCertName(t.Name)]; crt != nil {
		secrets[crt.Name] = crt.Spec.SecretName
	}
	for _, crt := range list.Items {
		if !tls.Ours(&crt, t.Name) {
			continue
		}
		users[crt.Name] = planner.UserCert{User: crt.Labels[pgpool.LabelUser], Secret: crt.Spec.SecretName, UID: string(crt.UID), Revision: tls.Revision(&crt)}
		secrets[crt.Name] = crt.Spec.SecretName
	}
	leaves := map[string][]byte{}
	var mu sync.Mutex
	var reads []func() error
	for n, s := range secrets {
		reads = append(reads, func() error {
			sec, err := c.Core.Secrets(t.Namespace).Get(ctx, s, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("the client certificate of %s could not be read (%v): none is re-issued, and a previous CA that may go once it is stays", n, err)
			}
			mu.Lock()
			defer mu.Unlock()
			leaves[n] = sec.Data[corev1.TLSCertKey]
			return nil
		})
	}
	if err := parallel.All(reads...); err != nil {
		return nil, nil, err
	}
	return leaves, users, nil
}
