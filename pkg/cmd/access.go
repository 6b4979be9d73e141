package cmd

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ops"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/target"
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

// needs lists the permissions req needs on t (the README's Role grants them).
func needs(t *target.Target, req ops.Request, verifyRequired bool) []access {
	cfg := strings.ToLower(t.Config.Kind) + "s"
	a := []access{
		{"coordination.k8s.io", "leases", "", "create"}, {"coordination.k8s.io", "leases", "", "delete"},
		{"", "events", "", "create"}, {t.GVR.Group, t.GVR.Resource, "", "patch"},
		{"", "pods", "", "list"}, {"", "pods", "", "watch"}, {"", "secrets", "", "get"},
		{"policy", "poddisruptionbudgets", "", "list"},
		{"cert-manager.io", "certificates", "", "watch"},
		{"", "configmaps", "", "get"},
	}
	switch req.Operation {
	case ops.Add:
		a = append(a, access{"cert-manager.io", "certificates", "", "create"}, access{"cert-manager.io", "certificates", "", "patch"},
			access{"", cfg, "", "patch"})
	case ops.Rotate:
		if !req.RestartOnly {
			a = append(a, access{"cert-manager.io", "certificates", "status", "update"})
		}
	case ops.ChangeIssuer:
		a = append(a, access{"cert-manager.io", "certificates", "", "patch"})
	case ops.Remove:
		a = append(a, access{"", cfg, "", "patch"}, access{"", "configmaps", "", "delete"})
		if !req.KeepCertificates {
			a = append(a, access{"cert-manager.io", "certificates", "", "delete"}, access{"", "secrets", "", "delete"})
		}
	}
	if req.Operation != ops.Remove {
		// The CA bundle (server-side apply creates it the first time).
		a = append(a, access{"", "configmaps", "", "create"}, access{"", "configmaps", "", "patch"})
	}
	a = append(a, access{"", "pods", "eviction", "create"})
	if verifyRequired {
		a = append(a, access{"", "pods", "portforward", "create"})
	}
	return a
}

// checkAccess asks the API server (SelfSubjectAccessReview) whether the
// user may do everything the operation will do, so that a missing
// permission is reported before the first write rather than halfway.
func (o *OperationOptions) checkAccess(ctx context.Context, t *target.Target, req ops.Request) error {
	var denied []string
	for _, a := range needs(t, req, o.Verify == "required") {
		r, err := o.Clients.Authorization.SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: t.Namespace, Group: a.group, Resource: a.resource, Subresource: a.subresource, Verb: a.verb,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("check permissions (SelfSubjectAccessReview): %w", err)
		}
		if !r.Status.Allowed {
			denied = append(denied, a.String())
		}
	}
	if len(denied) > 0 {
		return fmt.Errorf("you may not %s in namespace %q, which tls %s needs; nothing was changed: grant the Role in the RBAC section of the README", strings.Join(denied, ", "), t.Namespace, req.Operation)
	}
	return nil
}
