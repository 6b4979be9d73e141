package cmd

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// access is one permission an operation needs in the pgpool's namespace.
type access struct {
	group, resource, subresource, verb string
}

func (a access) String() string {
	r := a.resource
	if a.subresource != "" {
		r += "/" + a.subresource
	}
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
		case plan.ApplyBundleSpec:
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

// checkAccess asks the API server (SelfSubjectAccessReview) whether the
// user may do everything the operation will do, so that a missing
// permission is reported before the first write rather than halfway.
func (o *OperationOptions) checkAccess(ctx context.Context, t *pgpool.Target, p *plan.Plan) error {
	// The reviews are independent: ask them all at once (one round trip of
	// latency instead of one per permission).
	wants := needs(t, p, o.Verify == "required")
	allowed := make([]bool, len(wants))
	err := parallel.Each(len(wants), func(i int) error {
		a := wants[i]
		r, err := o.Clients.Authorization.SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: t.Namespace, Group: a.group, Resource: a.resource, Subresource: a.subresource, Verb: a.verb,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("check permissions (SelfSubjectAccessReview): %w", err)
		}
		allowed[i] = r.Status.Allowed
		return nil
	})
	if err != nil {
		return err
	}
	var denied []string
	for i, a := range wants {
		if !allowed[i] {
			denied = append(denied, a.String())
		}
	}
	if len(denied) > 0 {
		return fmt.Errorf("you may not %s in namespace %q, which tls %s needs; nothing was changed: grant the Role in the RBAC section of the README", strings.Join(denied, ", "), t.Namespace, p.Operation)
	}
	return nil
}
