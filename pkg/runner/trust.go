package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// TrustTargets are the namespaces tr names now (its list, or the
// namespaces its selector picks, sorted).
func TrustTargets(ctx context.Context, c Clients, tr pgpool.Trust) ([]string, error) {
	if tr.Selector == "" {
		return tr.Namespaces, nil
	}
	list, err := c.Core.Namespaces().List(ctx, metav1.ListOptions{LabelSelector: tr.Selector})
	if err != nil {
		return nil, fmt.Errorf("list the namespaces labelled %s: %w", tr.Selector, err)
	}
	var out []string
	for _, n := range list.Items {
		out = append(out, n.Name)
	}
	sort.Strings(out)
	return out, nil
}

// ClientCA is what clients of t need to verify it, read now from its CA
// bundle: an error when there is none, or it is not as the plugin wrote
// it (someone who may write ConfigMaps must not choose what every client
// trusts).
func ClientCA(ctx context.Context, c Clients, t *pgpool.Target) ([]byte, error) {
	name := tls.CABundleName(t.Name)
	cm, err := c.Core.ConfigMaps(t.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%s has no CA bundle (ConfigMap %s): its CA is known once TLS is on; run `kubectl pgpool tls add %s` first", t, name, t.Name)
	} else if err != nil {
		return nil, fmt.Errorf("read the CA bundle %s/%s: %w", t.Namespace, name, err)
	}
	if !tls.Ours(cm, t.Name) {
		return nil, &tls.NotOursError{Kind: "ConfigMap", Namespace: t.Namespace, Name: name}
	}
	if want := t.Annotations[pgpool.AnnotationBundleDigest]; want != "" && want != tls.BundleDigest(cm.Data) {
		return nil, fmt.Errorf("the CA bundle %s/%s was changed since kubectl-pgpool wrote it, so the CAs in it are not known to be the issuer's: run `kubectl pgpool tls rotate %s --reissue=false` to write it again, then distribute it", t.Namespace, name, t.Name)
	}
	ca := tls.ClientTrust(cm.Data)
	if len(tls.Subjects(ca)) == 0 {
		return nil, fmt.Errorf("the CA bundle %s/%s holds no issuer CA", t.Namespace, name)
	}
	return ca, nil
}

// CheckTrustTargets refuses, before any write, a copy of that name in a
// target that the plugin did not write for this pgpool.
func CheckTrustTargets(ctx context.Context, c Clients, t *pgpool.Target, tr pgpool.Trust, namespaces []string) error {
	if tr.Bundle {
		b, err := c.Dynamic.Resource(tls.Bundles).Get(ctx, tr.Name, metav1.GetOptions{})
		switch {
		case err == nil && !tls.CarriesCAOf(b, t.Namespace, t.Name):
			return &TrustNotOursError{What: "trust-manager Bundle " + tr.Name, Of: b.GetAnnotations()[tls.AnnotationCAOf]}
		case err != nil && !apierrors.IsNotFound(err):
			return fmt.Errorf("get trust-manager Bundle %s: %w", tr.Name, err)
		}
		return nil
	}
	for _, ns := range namespaces {
		cm, err := c.Core.ConfigMaps(ns).Get(ctx, tr.Name, metav1.GetOptions{})
		switch {
		case err == nil && !tls.CarriesCAOf(cm, t.Namespace, t.Name):
			return &TrustNotOursError{What: fmt.Sprintf("ConfigMap %s/%s", ns, tr.Name), Of: cm.Annotations[tls.AnnotationCAOf]}
		case err != nil && !apierrors.IsNotFound(err):
			return fmt.Errorf("get ConfigMap %s/%s: %w", ns, tr.Name, err)
		}
	}
	return nil
}

// TrustNotOursError refuses to write a client CA copy over an object that
// is not the plugin's copy for this pgpool.
type TrustNotOursError struct{ What, Of string }

func (e *TrustNotOursError) Error() string {
	if e.Of != "" {
		return fmt.Sprintf("%s already carries the CA of pgpool %s: kubectl-pgpool will not change it; pass --name with another name", e.What, e.Of)
	}
	return fmt.Sprintf("%s exists and was not written by kubectl-pgpool for this pgpool: it will not be changed; pass --name with another name, or remove it", e.What)
}

// WriteTrust writes ca where tr says (server-side apply with the plugin's
// field manager; dryRun as the API takes it), after CheckTrustTargets.
// It returns what it wrote.
func WriteTrust(ctx context.Context, c Clients, t *pgpool.Target, tr pgpool.Trust, namespaces []string, ca []byte, dryRun []string) (string, error) {
	if err := CheckTrustTargets(ctx, c, t, tr, namespaces); err != nil {
		return "", err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force, DryRun: dryRun}
	cas := strings.Join(tls.Subjects(ca), "; ")
	if tr.Bundle {
		var sel *metav1.LabelSelector
		if tr.Selector != "" {
			ls, err := metav1.ParseToLabelSelector(tr.Selector)
			if err != nil {
				return "", err
			}
			sel = ls
		}
		body, err := json.Marshal(tls.TrustBundle(tr.Name, t.Namespace, t.Name, ca, tr.Namespaces, sel))
		if err != nil {
			return "", err
		}
		if _, err := c.Dynamic.Resource(tls.Bundles).Patch(ctx, tr.Name, types.ApplyPatchType, body, opts); err != nil {
			return "", fmt.Errorf("apply trust-manager Bundle %s: %w", tr.Name, err)
		}
		return fmt.Sprintf("trust-manager Bundle %s: %s (trust-manager syncs it)", tr.Name, cas), nil
	}
	for _, ns := range namespaces {
		body, err := json.Marshal(tls.TrustConfigMap(ns, tr.Name, t.Namespace, t.Name, ca))
		if err != nil {
			return "", err
		}
		if _, err := c.Core.ConfigMaps(ns).Patch(ctx, tr.Name, types.ApplyPatchType, body, opts); err != nil {
			return "", fmt.Errorf("apply ConfigMap %s/%s: %w", ns, tr.Name, err)
		}
	}
	if len(namespaces) == 0 {
		return "no namespace is " + tr.Where() + " today: nothing written", nil
	}
	return fmt.Sprintf("ConfigMap %s in %s: %s", tr.Name, strings.Join(namespaces, ", "), cas), nil
}

// TrustCopies are the client CA ConfigMaps of pgpool t that the plugin
// wrote, in any namespace (a list across namespaces by label, kept to
// those that carry its CA).
func TrustCopies(ctx context.Context, c Clients, t *pgpool.Target) ([]corev1.ConfigMap, error) {
	sel := labels.Set{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: t.Name}.String()
	list, err := c.Core.ConfigMaps(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list the client CA copies of %s in every namespace: %w", t, err)
	}
	var out []corev1.ConfigMap
	for _, cm := range list.Items {
		if tls.CarriesCAOf(&cm, t.Namespace, t.Name) && cm.Annotations[tls.AnnotationCAOf] != "" && cm.Data[tls.TrustKey] != "" {
			out = append(out, cm)
		}
	}
	return out, nil
}

// distributeTrust is the step of rotate and change-issuer that keeps the
// client CA copies current: the CAs are read from the bundle the plan has
// just written.
func (r *Runner) distributeTrust(ctx context.Context, spec plan.DistributeTrustSpec, report func(string)) (string, error) {
	if r.ServerDryRun {
		// The bundle is not written in a dry run: send what is there.
		ca, err := ClientCA(ctx, r.Clients, r.Target)
		if err != nil {
			return "skipped: " + err.Error(), nil
		}
		ns, err := TrustTargets(ctx, r.Clients, spec.Trust)
		if err != nil {
			return "", err
		}
		return WriteTrust(ctx, r.Clients, r.Target, spec.Trust, ns, ca, r.dryRun())
	}
	cm, err := r.Clients.Core.ConfigMaps(r.Target.Namespace).Get(ctx, tls.CABundleName(r.Target.Name), metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read the CA bundle %s/%s: %w", r.Target.Namespace, tls.CABundleName(r.Target.Name), err)
	}
	ca := tls.ClientTrust(cm.Data)
	ns, err := TrustTargets(ctx, r.Clients, spec.Trust)
	if err != nil {
		return "", err
	}
	msg, err := WriteTrust(ctx, r.Clients, r.Target, spec.Trust, ns, ca, nil)
	if err != nil || !spec.Trust.Bundle {
		return msg, err
	}
	synced, err := waitTrustSynced(ctx, r.Clients, r.Target, spec.Trust.Name, ns, ca, report)
	return msg + synced, err
}

// waitTrustSynced waits until trust-manager has written ca into the copy
// named name in each namespace that has one (the plugin's marks on it):
// the pods restart only once the clients there trust what they will serve.
// A namespace without a copy yet has nothing that trusts the CA before:
// it is named, not waited for.
func waitTrustSynced(ctx context.Context, c Clients, t *pgpool.Target, name string, namespaces []string, ca []byte, report func(string)) (string, error) {
	want, _ := tls.ParseCerts(ca)
	holds := func(cm *corev1.ConfigMap) bool {
		for _, x := range want {
			if !tls.InPEM([]byte(cm.Data[tls.TrustKey]), tls.Fingerprint(x)) {
				return false
			}
		}
		return true
	}
	start := time.Now()
	var missing, synced, foreign []string
	for _, ns := range namespaces {
		for {
			cm, err := c.Core.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				missing = append(missing, ns)
				break
			} else if err != nil {
				return "", fmt.Errorf("read ConfigMap %s/%s (trust-manager's copy): %w", ns, name, err)
			}
			if !tls.CarriesCAOf(cm, t.Namespace, t.Name) {
				foreign = append(foreign, ns)
				break
			}
			if holds(cm) {
				synced = append(synced, ns)
				break
			}
			report(fmt.Sprintf("waiting for trust-manager to write the CA into ConfigMap %s/%s", ns, name))
			w, err := c.Core.ConfigMaps(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: cm.ResourceVersion})
			if err != nil {
				return "", fmt.Errorf("watch ConfigMap %s/%s (trust-manager's copy): %w", ns, name, err)
			}
			select {
			case <-ctx.Done():
				w.Stop()
				return "", fmt.Errorf("trust-manager did not write the CA into ConfigMap %s/%s (is its controller running? kubectl get bundle %s -o yaml): %w", ns, name, name, context.Cause(ctx))
			case <-w.ResultChan(): // changed (or the watch closed): read it again
			}
			w.Stop()
		}
	}
	out := ""
	if len(synced) > 0 {
		out += fmt.Sprintf("; trust-manager synced it into %s in %s", strings.Join(synced, ", "), time.Since(start).Round(100*time.Millisecond))
	}
	if len(missing) > 0 {
		out += fmt.Sprintf("; no copy in %s yet (not waited for: nothing there trusts the CA before)", strings.Join(missing, ", "))
	}
	if len(foreign) > 0 {
		out += fmt.Sprintf("; ConfigMap %s in %s lacks the plugin's marks (trust-manager did not copy the Bundle's target metadata, or it is someone else's): not waited for", name, strings.Join(foreign, ", "))
	}
	return out, nil
}
