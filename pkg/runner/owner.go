package runner

// The KubeDB Pgpool that controls the workload: its pause (a status
// condition) and the result written into its spec.

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

func (r *Runner) owner(o plan.Object) dynamic.ResourceInterface {
	gvr := pgpool.KubeDBPgpools
	if gv, err := schema.ParseGroupVersion(o.APIVersion); err == nil {
		gvr.Version = gv.Version
	}
	return r.Clients.Dynamic.Resource(gvr).Namespace(o.Namespace)
}

// pause sets or lifts the Paused condition on the Pgpool's status, read
// and written again when KubeDB (or anyone) wrote the status meanwhile.
// Lifting removes only a pause of the plugin's.
func (r *Runner) pause(ctx context.Context, s plan.Step, spec plan.PauseSpec) (string, error) {
	if !spec.Pause && r.held.Lost() != nil {
		return "left: this run lost the lock, and the run that holds it now lifts the pause", nil
	}
	res := r.owner(s.Object)
	msg := ""
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := res.Get(ctx, s.Object.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		var keep []any
		var found map[string]any
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Paused" {
				found = m
				continue
			}
			keep = append(keep, c)
		}
		if !spec.Pause {
			if found == nil || found["status"] != "True" {
				msg = "not paused"
				return nil
			}
			if found["reason"] != pgpool.PauseReason {
				msg = fmt.Sprintf("left: paused by someone else (reason %v)", found["reason"])
				return nil
			}
			msg = "pause lifted"
		} else {
			if found != nil && found["status"] == "True" && found["reason"] != pgpool.PauseReason {
				return fmt.Errorf("%s %s is paused by someone else since it was read (reason %v): run the command again", s.Object.Kind, s.Object.Name, found["reason"])
			}
			keep = append(keep, map[string]any{"type": "Paused", "status": "True", "reason": pgpool.PauseReason, "message": spec.Message,
				"lastTransitionTime": metav1.Now().UTC().Format("2006-01-02T15:04:05Z"), "observedGeneration": u.GetGeneration()})
			msg = "paused"
		}
		if err := unstructured.SetNestedSlice(u.Object, keep, "status", "conditions"); err != nil {
			return err
		}
		_, err = res.UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: FieldManager, DryRun: r.dryRun()})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("update the status of %s %s/%s: %w", s.Object.Kind, s.Object.Namespace, s.Object.Name, err)
	}
	return r.answer(msg), nil
}

// patchOwner writes the result into the Pgpool's spec.
func (r *Runner) patchOwner(ctx context.Context, s plan.Step, spec plan.OwnerPatchSpec) (string, error) {
	if _, err := r.owner(s.Object).Patch(ctx, s.Object.Name, types.MergePatchType, spec.Patch,
		metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun(), FieldValidation: "Strict"}); err != nil {
		return "", fmt.Errorf("patch %s %s/%s: %w", s.Object.Kind, s.Object.Namespace, s.Object.Name, err)
	}
	return r.answer("updated"), nil
}
