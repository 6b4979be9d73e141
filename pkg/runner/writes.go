package runner

// The writes: server-side apply of Certificates and the CA bundle, the
// config and pod template patches with their preconditions, deletions of
// what is the plugin's, and the dry run of the Certificates before the
// first write.

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
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

func (r *Runner) applyCertificate(ctx context.Context, s plan.Step, spec plan.ApplyCertificateSpec) (string, error) {
	crt, err := applyCertificate(ctx, r.Clients, s, spec, r.dryRun())
	if err != nil {
		return "", fmt.Errorf("apply Certificate %s/%s: %w", s.Object.Namespace, s.Object.Name, err)
	}
	return r.answer(fmt.Sprintf("applied (generation %d)", crt.Generation)), nil
}

// patchConfig writes the new config contents by a merge patch with the
// resourceVersion that was read: if anyone changed the config since
// discovery, the server answers 409 instead of us overwriting their change.
func (r *Runner) patchConfig(ctx context.Context, s plan.Step, spec plan.ConfigPatchSpec) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	opts := metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()}
	b := r.Target.Layout.ConfigPatch(pgpool.Config{Kind: s.Object.Kind, Name: name, ResourceVersion: spec.ResourceVersion}, spec.PgpoolConf, spec.PoolHBA)
	var err error
	if s.Object.Kind == "Secret" {
		_, err = r.Clients.Core.Secrets(ns).Patch(ctx, name, types.MergePatchType, b, opts)
	} else {
		_, err = r.Clients.Core.ConfigMaps(ns).Patch(ctx, name, types.MergePatchType, b, opts)
	}
	if apierrors.IsConflict(err) {
		return "", fmt.Errorf("%s %s/%s changed since it was read: run the command again to plan against the new contents", s.Object.Kind, ns, name)
	}
	if err != nil {
		return "", fmt.Errorf("patch %s %s/%s: %w", s.Object.Kind, ns, name, err)
	}
	return r.answer("patched"), nil
}

// patchWorkload applies the JSON patch to the pod template; its test
// operations make the server refuse it (422) when the template changed
// since it was read.
func (r *Runner) patchWorkload(ctx context.Context, s plan.Step, spec plan.WorkloadPatchSpec) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	res := r.Clients.Dynamic.Resource(r.Target.GVR).Namespace(ns)
	u, err := res.Patch(ctx, name, types.JSONPatchType, spec.Patch, metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()})
	if err == nil {
		return r.answer(fmt.Sprintf("patched (generation %d)", u.GetGeneration())), nil
	}
	// The server says only "invalid" when a test operation fails; an
	// admission policy's refusal says why. Tell them apart by checking the
	// tests against the object as it is now.
	if apierrors.IsInvalid(err) {
		if cur, gerr := res.Get(ctx, name, metav1.GetOptions{}); gerr == nil {
			if path, failed := failedTest(cur.Object, spec.Patch); failed {
				if alreadyApplied(&r.Target.Template, cur.Object, spec.Patch) {
					// A run before this one wrote the same change after
					// this one read the template (a killed run's last
					// request lands late): it is what the plan makes.
					return r.answer("already as planned (written by an earlier run)"), nil
				}
				return "", fmt.Errorf("patch %s %s/%s: its pod template changed since it was read (%s is no longer what the plan expects): run the command again", s.Object.Kind, ns, name, path)
			}
		}
	}
	return "", fmt.Errorf("patch %s %s/%s: %w", s.Object.Kind, ns, name, err)
}

// failedTest returns the path of the first "test" operation of a JSON patch
// that does not hold on obj.
func failedTest(obj map[string]any, patch []byte) (string, bool) {
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if json.Unmarshal(patch, &ops) != nil {
		return "", false
	}
	for _, op := range ops {
		if op.Op != "test" {
			continue
		}
		var cur any = obj
		for _, tok := range strings.Split(strings.TrimPrefix(op.Path, "/"), "/") {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			switch c := cur.(type) {
			case map[string]any:
				cur = c[tok]
			case []any:
				i, err := strconv.Atoi(tok)
				if err != nil || i < 0 || i >= len(c) {
					return op.Path, true
				}
				cur = c[i]
			default:
				return op.Path, true
			}
		}
		var want any
		_ = json.Unmarshal(op.Value, &want)
		a, _ := json.Marshal(cur)
		b, _ := json.Marshal(want)
		if string(a) != string(b) {
			return op.Path, true
		}
	}
	return "", false
}

func (r *Runner) delete(ctx context.Context, s plan.Step) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	opts := metav1.DeleteOptions{DryRun: r.dryRun()}
	var obj metav1.Object
	var del func(context.Context, string, metav1.DeleteOptions) error
	var err error
	switch s.Object.Kind {
	case "Certificate":
		del = r.Clients.CertManager.Certificates(ns).Delete
	case "Secret":
		obj, err = r.Clients.Core.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		del = r.Clients.Core.Secrets(ns).Delete
	case "ConfigMap":
		obj, err = r.Clients.Core.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		del = r.Clients.Core.ConfigMaps(ns).Delete
	default:
		return "", fmt.Errorf("cannot delete a %s", s.Object.Kind)
	}
	if err == nil && obj != nil {
		// Only what is ours: our label, or (a Secret) written by our
		// Certificate, as cert-manager's annotation says; and only the
		// object just checked (UID precondition).
		cert := obj.GetAnnotations()[cmapi.CertificateNameKey]
		byOurCert := s.Object.Kind == "Secret" && cert != "" && (cert == pgpool.ServerCertName(r.Target.Name) || cert == pgpool.ClientCertName(r.Target.Name))
		if !byOurCert && !tls.Ours(obj, r.Target.Name) {
			return "", &tls.NotOursError{Kind: s.Object.Kind, Namespace: ns, Name: name}
		}
		uid := obj.GetUID()
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	if err == nil {
		err = del(ctx, name, opts)
	}
	if apierrors.IsNotFound(err) {
		return "already gone", nil
	}
	if err != nil {
		return "", fmt.Errorf("delete %s %s/%s: %w", s.Object.Kind, ns, name, err)
	}
	return r.answer("deleted"), nil
}

// applyBundle writes the CA bundle ConfigMap: the issuer's CA from the
// server Secret as it is now, then the CAs the plan carries. It refuses to
// take over a ConfigMap of that name that is not the plugin's.
func (r *Runner) applyBundle(ctx context.Context, s plan.Step, spec plan.ApplyBundleSpec) (string, error) {
	ns := s.Object.Namespace
	// The ConfigMap as it is and the issuer's CA: read at once.
	var sec *corev1.Secret
	err := parallel.All(func() error {
		cur, err := r.Clients.Core.ConfigMaps(ns).Get(ctx, s.Object.Name, metav1.GetOptions{})
		switch {
		case err == nil && !tls.Ours(cur, r.Target.Name):
			return &tls.NotOursError{Kind: "ConfigMap", Namespace: ns, Name: s.Object.Name}
		case err != nil && !apierrors.IsNotFound(err):
			return fmt.Errorf("get ConfigMap %s/%s: %w", ns, s.Object.Name, err)
		}
		return nil
	}, func() (err error) {
		if spec.Data != nil {
			return nil
		}
		sec, err = r.Clients.Core.Secrets(ns).Get(ctx, spec.IssuerCAFrom, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && r.ServerDryRun {
			// Not issued yet (a dry run issues nothing): send the rest, so
			// the server still checks the object and our permission.
			sec, err = &corev1.Secret{}, nil
		}
		if err != nil {
			return fmt.Errorf("read the issuer's CA from Secret %s/%s: %w", ns, spec.IssuerCAFrom, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if spec.Data != nil {
		cm := tls.BundleConfigMap(ns, r.Target.Name, tls.BundleParts{})
		cm.Data = spec.Data
		return r.writeBundle(ctx, cm)
	}
	issuerCA := sec.Data["ca.crt"]
	if len(tls.Subjects(issuerCA)) == 0 && !r.ServerDryRun {
		return "", fmt.Errorf("Secret %s/%s has no ca.crt: its issuer does not publish its CA, which pgpool needs (ssl_ca_cert) to verify client certificates; use an issuer that writes ca.crt (CA, Vault, self-signed)", ns, sec.Name)
	}
	return r.writeBundle(ctx, tls.BundleConfigMap(ns, r.Target.Name, tls.BundleParts{Issuer: issuerCA, Next: spec.NextCA, Previous: spec.PreviousCA, Backend: spec.BackendCA, Kept: spec.KeptCA, Records: spec.Records}))
}

// writeBundle applies the CA bundle ConfigMap.
func (r *Runner) writeBundle(ctx context.Context, cm *corev1.ConfigMap) (string, error) {
	body, err := json.Marshal(cm)
	if err != nil {
		return "", err
	}
	// Its digest goes on the workload first (who may write ConfigMaps but
	// not the workload cannot forge it): a bundle changed by anyone else
	// since then is seen as changed (pgpool.Target.BundleChanged).
	ann, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{pgpool.AnnotationBundleDigest: tls.BundleDigest(cm.Data)}}})
	if _, err := r.Clients.Dynamic.Resource(r.Target.GVR).Namespace(r.Target.Namespace).Patch(ctx, r.Target.Name, types.MergePatchType, ann,
		metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()}); err != nil {
		return "", fmt.Errorf("record the CA bundle's digest on %s: %w", r.Target, err)
	}
	force := true
	if _, err := r.Clients.Core.ConfigMaps(cm.Namespace).Patch(ctx, cm.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: FieldManager, Force: &force, DryRun: r.dryRun()}); err != nil {
		return "", fmt.Errorf("apply ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return r.answer(fmt.Sprintf("CA bundle: %s", strings.Join(tls.Subjects([]byte(cm.Data[tls.BundleKey])), "; "))), nil
}

// applyConfigMap writes a ConfigMap of the plugin's (server-side apply,
// after checking that one of that name, if any, is the plugin's).
func (r *Runner) applyConfigMap(ctx context.Context, s plan.Step, spec plan.ApplyConfigMapSpec) (string, error) {
	ns := s.Object.Namespace
	cur, err := r.Clients.Core.ConfigMaps(ns).Get(ctx, s.Object.Name, metav1.GetOptions{})
	switch {
	case err == nil && !tls.Ours(cur, r.Target.Name):
		return "", &tls.NotOursError{Kind: "ConfigMap", Namespace: ns, Name: s.Object.Name}
	case err != nil && !apierrors.IsNotFound(err):
		return "", fmt.Errorf("get ConfigMap %s/%s: %w", ns, s.Object.Name, err)
	}
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: s.Object.Name, Namespace: ns,
			Labels: map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: r.Target.Name}},
		Data: spec.Data}
	body, err := json.Marshal(cm)
	if err != nil {
		return "", err
	}
	force := true
	if _, err := r.Clients.Core.ConfigMaps(ns).Patch(ctx, cm.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: FieldManager, Force: &force, DryRun: r.dryRun()}); err != nil {
		return "", fmt.Errorf("apply ConfigMap %s/%s: %w", ns, cm.Name, err)
	}
	return r.answer("written"), nil
}

// readBundle reads the CA bundle ConfigMap (nil when there is none).
func (r *Runner) readBundle(ctx context.Context, ns string) (*corev1.ConfigMap, error) {
	name := tls.CABundleName(r.Target.Name)
	cm, err := r.Clients.Core.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("verify: get ConfigMap %s/%s: %w", ns, name, err)
	}
	return cm, nil
}

// bundleProblem checks that the CA bundle starts with the server Secret's
// CA (what pgpool reads as the first certificate of ca.pem).
func bundleProblem(cm *corev1.ConfigMap, sec *corev1.Secret) string {
	if cm == nil {
		return ""
	}
	got, want := tls.Subjects([]byte(cm.Data[tls.BundleKey])), tls.Subjects(sec.Data["ca.crt"])
	if len(want) > 0 && (len(got) == 0 || got[0] != want[0]) {
		return fmt.Sprintf("ConfigMap %s/%s: the CA bundle starts with %v, not the issuer's CA %s", cm.Namespace, cm.Name, got, want[0])
	}
	return ""
}

// RefusedError is a Certificate the plan would apply that the API server's
// admission refuses (cert-manager's webhook, or a policy of the cluster's),
// found by a dry run before the first write.
type RefusedError struct {
	Namespace, Name string
	Err             error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the API server refuses Certificate %s/%s as the plan would apply it (server-side dry run): %v; nothing was changed: change what the certificate asks for, or ask the cluster's admins about the policy", e.Namespace, e.Name, e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// applyCertificate is the apply step's write (server-side apply, forced,
// as the plugin's field manager), also sent as a dry run by
// CheckCertificates.
func applyCertificate(ctx context.Context, c Clients, s plan.Step, spec plan.ApplyCertificateSpec, dryRun []string) (*cmapi.Certificate, error) {
	force := true
	return c.CertManager.Certificates(s.Object.Namespace).Patch(ctx, s.Object.Name, types.ApplyPatchType,
		spec.Manifest, metav1.PatchOptions{FieldManager: FieldManager, Force: &force, DryRun: dryRun})
}

// CheckCertificates sends each Certificate the plan applies to the API
// server as the step will (server-side apply) but with dryRun=All, all at
// once, so that what admission refuses (cert-manager's webhook, a
// ValidatingAdmissionPolicy, Kyverno or Gatekeeper) is reported before the
// first write instead of after the backup and the lock. Refusals are
// *RefusedError; the first in plan order is returned.
func CheckCertificates(ctx context.Context, c Clients, p *plan.Plan) error {
	var steps []plan.Step
	for _, s := range p.Steps {
		if _, ok := s.Spec.(plan.ApplyCertificateSpec); ok {
			steps = append(steps, s)
		}
	}
	return parallel.Each(len(steps), func(i int) error {
		s := steps[i]
		_, err := applyCertificate(ctx, c, s, s.Spec.(plan.ApplyCertificateSpec), []string{metav1.DryRunAll})
		switch {
		case err == nil:
			return nil
		case apierrors.IsInvalid(err), apierrors.IsForbidden(err), apierrors.IsBadRequest(err):
			return &RefusedError{Namespace: s.Object.Namespace, Name: s.Object.Name, Err: err}
		default:
			return fmt.Errorf("check Certificate %s/%s by a server-side dry run: %w", s.Object.Namespace, s.Object.Name, err)
		}
	})
}

// alreadyApplied reports whether the pod template is now exactly what the
// patch makes of the template read (tmpl): its operations other than
// "test" applied to it give the live spec.template.spec.
func alreadyApplied(tmpl *corev1.PodTemplateSpec, live map[string]any, patch []byte) bool {
	var ops []map[string]any
	if json.Unmarshal(patch, &ops) != nil {
		return false
	}
	var keep []map[string]any
	for _, op := range ops {
		if op["op"] != "test" {
			keep = append(keep, op)
		}
	}
	if len(keep) == 0 {
		return false
	}
	t, err := runtime.DefaultUnstructuredConverter.ToUnstructured(tmpl)
	if err != nil {
		return false
	}
	base, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": t}})
	rest, _ := json.Marshal(keep)
	p, err := jsonpatch.DecodePatch(rest)
	if err != nil {
		return false
	}
	out, err := p.Apply(base)
	if err != nil {
		return false
	}
	var want map[string]any
	if json.Unmarshal(out, &want) != nil {
		return false
	}
	w, _, _ := unstructured.NestedFieldNoCopy(want, "spec", "template", "spec")
	l, _, _ := unstructured.NestedFieldNoCopy(live, "spec", "template", "spec")
	// Both as typed pod specs: numbers decode alike, and an emptied list
	// equals one the server dropped.
	var ws, ls corev1.PodSpec
	wb, err1 := json.Marshal(w)
	lb, err2 := json.Marshal(l)
	if err1 != nil || err2 != nil || json.Unmarshal(wb, &ws) != nil || json.Unmarshal(lb, &ls) != nil {
		return false
	}
	return equality.Semantic.DeepEqual(ws, ls)
}
