package runner

// The record step: the outcome on the workload and as an Event.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

func (r *Runner) record(ctx context.Context, s plan.Step, spec plan.RecordSpec, failure error) (string, error) {
	if r.held == nil && !r.ServerDryRun {
		// This run did not get the lock (another run holds it and is
		// changing the workload): there is nothing of ours to record.
		return "not recorded: this run did not hold the lock", nil
	}
	if err := r.held.Lost(); err != nil {
		// Another run holds the pgpool now: the outcome on it is that
		// run's to record.
		return "not recorded: this run lost the lock", nil
	}
	lo := pgpool.LastOperation{Operation: spec.Operation, Time: time.Now().UTC().Format(time.RFC3339), Result: "Succeeded", By: r.holder()}
	if failure != nil {
		lo.Result, lo.Error = "Failed", failure.Error()
	}
	b, _ := json.Marshal(lo)
	ann := map[string]any{pgpool.AnnotationLastOperation: string(b)}
	if failure == nil {
		if spec.TLS == "" {
			ann[pgpool.AnnotationTLS] = nil
		} else {
			ann[pgpool.AnnotationTLS] = spec.TLS
		}
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	ns, name := s.Object.Namespace, s.Object.Name
	reason, typ, msg := "TLS"+camel(lo.Operation)+"Succeeded", corev1.EventTypeNormal, fmt.Sprintf("kubectl-pgpool tls %s succeeded", lo.Operation)
	if failure != nil {
		reason, typ, msg = "TLS"+camel(lo.Operation)+"Failed", corev1.EventTypeWarning, fmt.Sprintf("kubectl-pgpool tls %s failed: %s", lo.Operation, failure)
	}
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name + ".", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{APIVersion: s.Object.APIVersion, Kind: s.Object.Kind, Namespace: ns, Name: name,
			UID: types.UID(r.Target.UID)},
		Reason: reason, Message: truncate(msg, 1000), Type: typ, FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source: corev1.EventSource{Component: FieldManager}, ReportingController: "kubectl-pgpool.io/cli", ReportingInstance: r.holder(),
	}
	// Independent writes: at once, errors in this order.
	writes := []func() error{
		func() error {
			if failure == nil && spec.BackupDone {
				return r.backupDone(ctx, ns)
			}
			return nil
		},
		func() error {
			u, err := r.Clients.Dynamic.Resource(r.Target.GVR).Namespace(ns).Patch(ctx, name, types.MergePatchType, patch,
				metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()})
			if err != nil {
				return fmt.Errorf("annotate %s %s/%s: %w", s.Object.Kind, ns, name, err)
			}
			if r.dryRun() != nil {
				return nil
			}
			// The workload's config ConfigMap is read only when Helm
			// applies the workload.
			if helm, err := r.leaveToHelm(ctx, r.Target.GVR, u); err != nil || !helm || r.Target.Config.Kind != "ConfigMap" {
				return err
			}
			cm, err := r.Clients.Dynamic.Resource(configMaps).Namespace(ns).Get(ctx, r.Target.Config.Name, metav1.GetOptions{})
			if err != nil {
				return nil // gone (remove deleted the plugin's), or not ours to read
			}
			_, err = r.leaveToHelm(ctx, configMaps, cm)
			return err
		},
		func() error {
			if _, err := r.Clients.Core.Events(ns).Create(ctx, ev, metav1.CreateOptions{DryRun: r.dryRun()}); err != nil {
				return fmt.Errorf("create Event on %s %s/%s: %w", s.Object.Kind, ns, name, err)
			}
			return nil
		},
	}
	for _, n := range spec.Notices {
		if failure != nil {
			break
		}
		nev := &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{GenerateName: n.Object.Name + ".", Namespace: n.Object.Namespace},
			InvolvedObject: corev1.ObjectReference{APIVersion: n.Object.APIVersion, Kind: n.Object.Kind, Namespace: n.Object.Namespace, Name: n.Object.Name,
				UID: types.UID(n.UID)},
			Reason: n.Reason, Message: truncate(n.Message, 1000), Type: corev1.EventTypeNormal, FirstTimestamp: now, LastTimestamp: now, Count: 1,
			Source: ev.Source, ReportingController: ev.ReportingController, ReportingInstance: ev.ReportingInstance,
		}
		writes = append(writes, func() error {
			if _, err := r.Clients.Core.Events(n.Object.Namespace).Create(ctx, nev, metav1.CreateOptions{DryRun: r.dryRun()}); err != nil {
				return fmt.Errorf("create Event on %s %s/%s: %w", n.Object.Kind, n.Object.Namespace, n.Object.Name, err)
			}
			return nil
		})
	}
	if err := parallel.All(writes...); err != nil {
		return "", err
	}
	return r.answer(fmt.Sprintf("%s recorded (Event %s)", lo.Result, reason)), nil
}

func camel(op string) string {
	var sb strings.Builder
	for _, p := range strings.Split(op, "-") {
		if p != "" {
			sb.WriteString(strings.ToUpper(p[:1]) + p[1:])
		}
	}
	return sb.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// leaveToHelm drops the plugin's field manager from u's managed fields
// when Helm applies u server-side (Helm 4's default): the fields the
// plugin wrote are then owned by no one, or by Helm alone once an upgrade
// carries the values the plan printed. Kept, they would be shared: the
// next `helm upgrade` could not take them out (server-side apply removes
// only the fields no other manager owns) and would stop on a conflict
// with kubectl-pgpool where its values differ. Helm 3 (client-side) and
// objects Helm does not manage are left as they are.
// It reports whether Helm applies u.
func (r *Runner) leaveToHelm(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured) (bool, error) {
	mf := u.GetManagedFields()
	helm := false
	for _, m := range mf {
		helm = helm || (m.Operation == metav1.ManagedFieldsOperationApply && strings.HasPrefix(m.Manager, "helm"))
	}
	if !helm {
		return false, nil
	}
	var ops []map[string]any
	for i := len(mf) - 1; i >= 0; i-- {
		if mf[i].Manager == FieldManager {
			p := fmt.Sprintf("/metadata/managedFields/%d", i)
			ops = append(ops, map[string]any{"op": "test", "path": p + "/manager", "value": FieldManager}, map[string]any{"op": "remove", "path": p})
		}
	}
	if len(ops) == 0 || len(ops) == 2*len(mf) {
		return true, nil // never an empty list: the server would take that as "reset"
	}
	patch, _ := json.Marshal(ops)
	if _, err := r.Clients.Dynamic.Resource(gvr).Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		return true, fmt.Errorf("leave the fields kubectl-pgpool wrote on %s %s/%s to Helm (drop its field manager): %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return true, nil
}
