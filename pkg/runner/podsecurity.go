package runner

// The preflight's check of the pod template a plan writes against the
// namespace's Pod Security admission.

import (
	"context"
	"fmt"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// PodSecurityError is a pod template the namespace's enforced Pod
// Security level refuses: the controller could create no new pod.
type PodSecurityError struct {
	Workload, Level, Violation string
}

func (e *PodSecurityError) Error() string {
	return fmt.Sprintf("the pod template this plan writes to %s violates the Pod Security level %q that its namespace enforces (%s): the controller could create no new pod; nothing was changed: ask the cluster's admins, or change the pod template (the pgpool container's securityContext) first", e.Workload, e.Level, e.Violation)
}

// warnings collects the API server's warnings of the requests made with a
// context from withWarnings.
type warnings struct {
	mu   sync.Mutex
	text []string
}

type warningsKey struct{}

func withWarnings(ctx context.Context, w *warnings) context.Context {
	return context.WithValue(ctx, warningsKey{}, w)
}

// WarningRouter is the clients' rest.WarningHandlerWithContext: a warning
// of a request whose context collects them (CheckPodSecurity's dry runs)
// goes there; any other is logged, as client-go does by default.
type WarningRouter struct{}

// HandleWarningHeaderWithContext implements rest.WarningHandlerWithContext.
func (WarningRouter) HandleWarningHeaderWithContext(ctx context.Context, code int, agent, text string) {
	if w, ok := ctx.Value(warningsKey{}).(*warnings); ok {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.text = append(w.text, text)
		return
	}
	rest.WarningLogger{}.HandleWarningHeaderWithContext(ctx, code, agent, text)
}

// CheckPodSecurity sends each pod template patch of p as a server-side
// dry run (through the clients' WarningRouter) and reads the Pod Security
// admission's warnings ("would violate
// PodSecurity "LEVEL:VERSION": ..."), which it gives for workloads as well
// as pods. A violation of the level the namespace enforces
// (pod-security.kubernetes.io/enforce) is a *PodSecurityError. When the
// namespace cannot be read (get on namespaces is cluster-wide), the
// violation comes back as a warning for the plan.
func CheckPodSecurity(ctx context.Context, c Clients, t *pgpool.Target, p *plan.Plan) ([]string, error) {
	var patches []plan.WorkloadPatchSpec
	for _, s := range p.Steps {
		if ps, ok := s.Spec.(plan.WorkloadPatchSpec); ok {
			patches = append(patches, ps)
		}
	}
	if len(patches) == 0 {
		return nil, nil
	}
	w := &warnings{}
	wctx := withWarnings(ctx, w)
	for _, ps := range patches {
		_, err := c.Dynamic.Resource(t.GVR).Namespace(t.Namespace).Patch(wctx, t.Name, types.JSONPatchType, ps.Patch, metav1.PatchOptions{FieldManager: FieldManager, DryRun: []string{metav1.DryRunAll}})
		if err != nil && !apierrors.IsInvalid(err) { // a failed test is the write's to report
			return nil, fmt.Errorf("check the pod template of %s by a server-side dry run: %w", t, err)
		}
	}
	var violations []string
	for _, text := range w.text {
		if strings.Contains(text, "would violate PodSecurity") {
			violations = append(violations, text)
		}
	}
	if len(violations) == 0 {
		return nil, nil
	}
	enforce, readable := "", false
	if c.Core != nil {
		if ns, err := c.Core.Namespaces().Get(ctx, t.Namespace, metav1.GetOptions{}); err == nil {
			enforce, readable = ns.Labels["pod-security.kubernetes.io/enforce"], true
		}
	}
	for _, v := range violations {
		if enforce != "" && strings.Contains(v, `PodSecurity "`+enforce+":") {
			return nil, &PodSecurityError{Workload: t.String(), Level: enforce, Violation: v}
		}
	}
	var out []string
	for _, v := range violations {
		why := "the namespace does not enforce that level"
		if !readable {
			why = "whether the namespace enforces it could not be read (get on namespaces): if it does, the controller creates no new pod and the roll times out"
		}
		out = append(out, fmt.Sprintf("the API server warns of the new pod template: %s; %s", v, why))
	}
	return out, nil
}
