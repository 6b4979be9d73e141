package operation

import (
	"context"
	"fmt"
	"strings"
	"sync"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/component-helpers/auth/rbac/validation"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// access is one permission an operation needs in the pgpool's namespace.
type access struct {
	group, resource, subresource, verb string
}

// path is the resource as RBAC names it: resource or resource/subresource.
func (a access) path() string {
	if a.subresource != "" {
		return a.resource + "/" + a.subresource
	}
	return a.resource
}

func (a access) String() string {
	r := a.path()
	if a.group != "" {
		r += "." + a.group
	}
	return a.verb + " " + r
}

// needs lists the permissions the plan's steps need on t, plus the reads
// the runner does on the way (the README's Role grants them). It is derived
// from the steps, so a new step cannot forget its permission.
func needs(t *pgpool.Target, p *plan.Plan, verifyRequired bool) []access {
	cfg := strings.ToLower(t.Config.Kind) + "s"
	wl := func(verb string) access { return access{t.GVR.Group, t.GVR.Resource, "", verb} }
	core := func(res, verb string) access { return access{"", res, "", verb} }
	crt := func(verb string) access { return access{"cert-manager.io", "certificates", "", verb} }
	var a []access
	seen := map[access]bool{}
	add := func(xs ...access) {
		for _, x := range xs {
			if !seen[x] {
				seen[x] = true
				a = append(a, x)
			}
		}
	}
	add(core("secrets", "get"), core("configmaps", "get"), core("pods", "list")) // discovery and the preflight's reads
	if p.Operation == "rotate" {
		add(crt("list")) // the client certificates of tls client-cert
	}
	if t.Owner != nil {
		add(access{"kubedb.com", "pgpools", "", "get"}, access{"ops.kubedb.com", "pgpoolopsrequests", "", "list"})
	}
	login := false
	for _, s := range p.Steps {
		switch spec := s.Spec.(type) {
		case plan.LockSpec:
			// create it; get and update to renew it and to take over a
			// lock whose holder died.
			add(access{"coordination.k8s.io", "leases", "", "create"}, access{"coordination.k8s.io", "leases", "", "get"}, access{"coordination.k8s.io", "leases", "", "update"})
		case plan.UnlockSpec:
			add(access{"coordination.k8s.io", "leases", "", "delete"})
		case plan.ApplyCertificateSpec:
			add(crt("create"), crt("patch")) // server-side apply creates it the first time
		case plan.DistributeTrustSpec:
			// In the pgpool's namespace, the bundle is read; the copies'
			// namespaces are other namespaces, checked when written.
			add(core("configmaps", "get"))
		case plan.ApplyBundleSpec, plan.ApplyConfigMapSpec:
			add(core("configmaps", "create"), core("configmaps", "patch"))
		case plan.BackupSpec:
			add(core("secrets", "create"), core("secrets", "patch"))
		case plan.TriggerSpec:
			add(access{"cert-manager.io", "certificates", "status", "update"})
		case plan.WaitCertificateSpec:
			add(crt("watch"))
		case plan.ConfigPatchSpec:
			add(core(cfg, "patch"))
		case plan.WorkloadPatchSpec:
			add(wl("patch"))
		case plan.CertificatePatchSpec:
			add(crt("patch"))
		case plan.EvictSpec:
			add(access{"", "pods", "eviction", "create"}, core("pods", "watch"), access{"policy", "poddisruptionbudgets", "", "list"},
				access{"discovery.k8s.io", "endpointslices", "", "list"}, access{"discovery.k8s.io", "endpointslices", "", "watch"})
			login = login || spec.Check.Login != ""
		case plan.RolloutSpec:
			add(wl("watch"), core("pods", "watch"))
		case plan.VerifySpec:
			add(wl("get"))
			login = login || spec.Check.Login != ""
		case plan.DeleteSpec:
			switch s.Object.Kind {
			case "Certificate":
				add(crt("delete"))
			default:
				add(core(strings.ToLower(s.Object.Kind)+"s", "delete"))
			}
		case plan.PauseSpec:
			add(access{"kubedb.com", "pgpools", "status", "update"}, access{"kubedb.com", "pgpools", "", "get"})
		case plan.OwnerPatchSpec:
			add(access{"kubedb.com", "pgpools", "", "patch"})
		case plan.RecordSpec:
			add(wl("patch"), core("events", "create"))
			if spec.BackupDone {
				add(core("secrets", "patch"))
			}
		}
	}
	if verifyRequired || login {
		add(access{"", "pods", "portforward", "create"})
	}
	return a
}

// checkAccess asks the API server whether the user may do everything the
// operation will do, so that a missing permission is reported before the
// first write rather than halfway. One SelfSubjectRulesReview lists the
// user's rules in the namespace (the rules of a namespace are read once
// per run, so a fleet asks once per namespace, not ~20 times per pgpool);
// a permission they grant is allowed. A permission they do not grant, or
// every permission when the review is incomplete (an authorizer that
// cannot list its rules, such as a webhook) or refused, is asked one by
// one (SelfSubjectAccessReview, all at once), so the rules can only save
// requests, never deny what the API server would allow.
func (r *run) checkAccess(ctx context.Context, t *pgpool.Target, p *plan.Plan) error {
	wants := needs(t, p, r.o.Verify == "required")
	rules := r.o.Cache.rules(ctx, r.c.Authorization, t.Namespace)
	var ask []access
	for _, a := range wants {
		if ok, _ := validation.Covers(rules, []rbacv1.PolicyRule{a.rule()}); !ok {
			ask = append(ask, a)
		}
	}
	allowed := make([]bool, len(ask))
	err := parallel.Each(len(ask), func(i int) error {
		a := ask[i]
		rv, err := r.c.Authorization.SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: t.Namespace, Group: a.group, Resource: a.resource, Subresource: a.subresource, Verb: a.verb,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("check permissions (SelfSubjectAccessReview): %w", err)
		}
		allowed[i] = rv.Status.Allowed
		return nil
	})
	if err != nil {
		return err
	}
	var denied []string
	for i, a := range ask {
		if !allowed[i] {
			denied = append(denied, a.String())
		}
	}
	if len(denied) > 0 {
		return fmt.Errorf("you may not %s in namespace %q, which tls %s needs; nothing was changed: grant the Role in the RBAC section of the README", strings.Join(denied, ", "), t.Namespace, p.Operation)
	}
	return nil
}

// rule is the RBAC rule that grants a.
func (a access) rule() rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{a.group}, Resources: []string{a.path()}, Verbs: []string{a.verb}}
}

// Cache holds what is read once although it may be asked for more than
// once (by each pgpool of a fleet, which share it): the user's rules per
// namespace, and whether cert-manager's API is served. The zero value is
// ready; a nil *Cache reads every time.
type Cache struct {
	mu sync.Mutex
	ns map[string]*nsRules

	// certManagerKnown: the answer below is final (served, or not
	// served); a transient error is not kept, the next pgpool asks again.
	cmMu             sync.Mutex
	certManagerKnown bool
	certManagerErr   error
}

type nsRules struct {
	once  sync.Once
	rules []rbacv1.PolicyRule
}

// rules returns the user's rules in ns when the API server listed them
// completely, read once (nil when the review was incomplete, failed or was
// refused: nil rules grant nothing, so every permission is then asked one
// by one).
func (c *Cache) rules(ctx context.Context, authz authorizationv1client.AuthorizationV1Interface, ns string) []rbacv1.PolicyRule {
	if c == nil {
		c = &Cache{}
	}
	c.mu.Lock()
	if c.ns == nil {
		c.ns = map[string]*nsRules{}
	}
	e := c.ns[ns]
	if e == nil {
		e = &nsRules{}
		c.ns[ns] = e
	}
	c.mu.Unlock()
	e.once.Do(func() {
		r, err := authz.SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{
			Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns},
		}, metav1.CreateOptions{})
		if err != nil || r.Status.Incomplete || r.Status.EvaluationError != "" {
			return
		}
		for _, rr := range r.Status.ResourceRules {
			e.rules = append(e.rules, rbacv1.PolicyRule{Verbs: rr.Verbs, APIGroups: rr.APIGroups, Resources: rr.Resources, ResourceNames: rr.ResourceNames})
		}
	})
	return e.rules
}

// certManagerServed returns whether cert-manager.io/v1 is served, asked
// until one answer is final (served or not served; a transient error is
// returned to this pgpool only).
func (c *Cache) certManagerServed(d discovery.DiscoveryInterface) error {
	if c == nil {
		c = &Cache{}
	}
	c.cmMu.Lock()
	defer c.cmMu.Unlock()
	if c.certManagerKnown {
		return c.certManagerErr
	}
	_, err := d.ServerResourcesForGroupVersion("cert-manager.io/v1")
	switch {
	case err == nil:
		c.certManagerKnown = true
	case apierrors.IsNotFound(err):
		c.certManagerKnown = true
		c.certManagerErr = fmt.Errorf("cert-manager's API (cert-manager.io/v1) is not served by this cluster: install cert-manager first")
	default:
		return fmt.Errorf("check for cert-manager's API: %w", err)
	}
	return c.certManagerErr
}
