package runner

// The backup Secret: written before the first change, marked done (with
// digests of what the operation left) at the end.

import (
	"context"
	"encoding/json"
	"fmt"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// backup writes the backup Secret, unless a Secret of that name that is not
// the plugin's is there (it is never changed). What discovery read saves a
// round trip: no backup then means create (which fails if one appeared
// since), ours then means apply on the resourceVersion read (which fails if
// it changed since); only then is the Secret read again.
func (r *Runner) backup(ctx context.Context, s plan.Step, spec plan.BackupSpec) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	secrets := r.Clients.Core.Secrets(ns)
	sec := spec.Secret.DeepCopy()
	if r.Target.BackupForeign {
		return "", &tls.NotOursError{Kind: "Secret", Namespace: ns, Name: name}
	}
	// The digest goes on the workload first: a backup Secret without it is
	// never applied, so an interruption between the two writes leaves
	// nothing that a rollback would trust.
	ann, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{pgpool.AnnotationBackupDigest: pgpool.BackupDigest(sec.Data)}}})
	if _, err := r.Clients.Dynamic.Resource(r.Target.GVR).Namespace(ns).Patch(ctx, r.Target.Name, types.MergePatchType, ann,
		metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()}); err != nil {
		return "", fmt.Errorf("record the backup's digest on %s: %w", r.Target, err)
	}
	var err error
	if r.Target.Backup == nil {
		_, err = secrets.Create(ctx, sec, metav1.CreateOptions{FieldManager: FieldManager, DryRun: r.dryRun()})
	} else {
		sec.ResourceVersion = r.Target.Backup.ResourceVersion
		err = r.applyBackup(ctx, sec)
	}
	if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
		// Changed since discovery: read it, and write it unless it is not ours.
		cur, gerr := secrets.Get(ctx, name, metav1.GetOptions{})
		switch {
		case gerr == nil && !tls.Ours(cur, r.Target.Name):
			return "", &tls.NotOursError{Kind: "Secret", Namespace: ns, Name: name}
		case gerr != nil && !apierrors.IsNotFound(gerr):
			return "", fmt.Errorf("get Secret %s/%s: %w", ns, name, gerr)
		}
		sec.ResourceVersion = ""
		err = r.applyBackup(ctx, sec)
	}
	if err != nil {
		return "", fmt.Errorf("write the backup Secret %s/%s: %w", ns, name, err)
	}
	return r.answer("backed up"), nil
}

// applyBackup server-side applies the backup Secret (on its
// resourceVersion, when set).
func (r *Runner) applyBackup(ctx context.Context, sec *corev1.Secret) error {
	body, err := json.Marshal(sec)
	if err != nil {
		return err
	}
	force := true
	_, err = r.Clients.Core.Secrets(sec.Namespace).Patch(ctx, sec.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: FieldManager, Force: &force, DryRun: r.dryRun()})
	return err
}

// backupDone marks the backup as that of a finished operation.
func (r *Runner) backupDone(ctx context.Context, ns string) error {
	name := pgpool.BackupName(r.Target.Name)
	ann := map[string]string{pgpool.AnnotationBackupDone: "true"}
	after, err := r.digestsAfter, error(nil)
	if after == nil || r.digestsStale.Load() {
		after, err = r.digestsNow(ctx, ns)
	}
	if err == nil {
		b, _ := json.Marshal(after)
		ann[pgpool.AnnotationBackupAfter] = string(b)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	_, err = r.Clients.Core.Secrets(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("mark the backup Secret %s/%s as done: %w", ns, name, err)
	}
	return nil
}

// digestsNow reads the Certificates and the workload as the operation
// left them and returns their digests (pgpool.Digests), for the backup:
// a later rollback refuses to discard changes made to them since.
func (r *Runner) digestsNow(ctx context.Context, ns string) (map[string]string, error) {
	t := r.Target
	names := []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)}
	crts := make([]*cmapi.Certificate, len(names))
	var w *unstructured.Unstructured
	// Three independent reads: at once.
	err := parallel.Each(len(names)+1, func(i int) (err error) {
		if i == len(names) {
			w, err = r.Clients.Dynamic.Resource(t.GVR).Namespace(ns).Get(ctx, t.Name, metav1.GetOptions{})
			return err
		}
		c, err := r.Clients.CertManager.Certificates(ns).Get(ctx, names[i], metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		crts[i] = c
		return err
	})
	if err != nil {
		return nil, err
	}
	if d := digestsOf(t, names, crts, w); d != nil {
		return d, nil
	}
	return nil, fmt.Errorf("read the pod template of %s", t)
}

// digestsOf digests the Certificates (nil: none) and the workload's pod
// template as the operation left them (pgpool.Digests); nil when the
// template cannot be read.
func digestsOf(t *pgpool.Target, names []string, crts []*cmapi.Certificate, w *unstructured.Unstructured) map[string]string {
	if w == nil {
		return nil
	}
	certs := map[string]*cmapi.Certificate{}
	for i, n := range names {
		if crts[i] != nil {
			certs[n] = crts[i]
		}
	}
	raw, _, _ := unstructured.NestedMap(w.Object, "spec", "template")
	var tmpl corev1.PodTemplateSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &tmpl); err != nil {
		return nil
	}
	return pgpool.Digests(certs, names, &tmpl, t.ContainerIndex, t.TLSMountPath)
}
