package operation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// TrustRequest is what `tls trust` is asked to do.
type TrustRequest struct {
	// Name of the copies (default NAME-ca).
	Name string
	// Namespaces or Selector (of namespaces) say where; one of them.
	Namespaces []string
	Selector   string
	// TrustManager: "auto" (a Bundle when trust-manager's API is served),
	// "true" (a Bundle, or an error) or "false" (ConfigMaps).
	TrustManager string
	// Stop deletes every copy and the record.
	Stop bool
}

// TrustPlan is what `tls trust` will write and delete, read before any
// write.
type TrustPlan struct {
	Target *pgpool.Target
	// Trust is the record to write (nil: remove it, with Stop).
	Trust *pgpool.Trust
	// Namespaces are the targets today; CA what goes there.
	Namespaces []string
	CA         []byte
	// Stale are the plugin's copies of this pgpool's CA no longer wanted;
	// DeleteBundle its trust-manager Bundle no longer wanted ("": none).
	Stale        []corev1.ConfigMap
	DeleteBundle string
	// Lines say what will change; Warnings what the user should know.
	Lines, Warnings []string
}

// PlanTrust reads what `tls trust` needs and refuses, before any write,
// what it must not do: no CA known yet, a CA bundle changed by others, a
// copy of that name that is not this pgpool's, a namespace that does not
// exist, trust-manager asked for but not installed.
func PlanTrust(ctx context.Context, c *Clients, ref discover.Ref, req TrustRequest) (*TrustPlan, error) {
	t, err := discover.DiscoverRef(ctx, c.discover(), ref)
	if err != nil {
		return nil, err
	}
	old, err := t.Trust()
	if err != nil {
		return nil, err
	}
	p := &TrustPlan{Target: t}
	copies, err := runner.TrustCopies(ctx, c.Clients, t)
	if apierrors.IsForbidden(err) {
		// Without a list across namespaces: the copies where the record
		// says they are.
		p.Warnings = append(p.Warnings, "you may not list ConfigMaps in every namespace, so copies of this CA are looked for only where the record says they are")
		copies, err = recordedCopies(ctx, c, t, old)
	}
	if err != nil {
		return nil, err
	}
	if req.Stop {
		if old == nil && len(copies) == 0 {
			p.Lines = append(p.Lines, fmt.Sprintf("%s has no client CA copies: nothing to do", t))
			return p, nil
		}
		p.Stale = copies
		if old != nil && old.Bundle {
			p.DeleteBundle = old.Name
		}
		p.describe(old)
		return p, nil
	}
	if p.CA, err = runner.ClientCA(ctx, c.Clients, t); err != nil {
		return nil, err
	}
	tr := &pgpool.Trust{Name: req.Name, Selector: req.Selector}
	if tr.Name == "" {
		tr.Name = pgpool.TrustName(t.Name)
	}
	for _, n := range req.Namespaces {
		if !slices.Contains(tr.Namespaces, n) {
			tr.Namespaces = append(tr.Namespaces, n)
		}
	}
	sort.Strings(tr.Namespaces)
	served := false
	if req.TrustManager != "false" {
		served, err = trustManagerServed(c)
		if err != nil {
			return nil, err
		}
		if req.TrustManager == "true" && !served {
			return nil, fmt.Errorf("trust-manager's Bundle API (%s) is not served in this cluster: install trust-manager, or leave out --trust-manager=true to write ConfigMaps", tls.Bundles.GroupVersion())
		}
	}
	tr.Bundle = served
	p.Trust = tr
	if p.Namespaces, err = runner.TrustTargets(ctx, c.Clients, *tr); err != nil {
		return nil, err
	}
	if !tr.Bundle {
		for _, ns := range tr.Namespaces {
			if _, err := c.Core.Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("namespace %q does not exist: create it, or leave it out of --to-namespace; nothing was changed", ns)
			} else if err != nil && !apierrors.IsForbidden(err) {
				return nil, fmt.Errorf("get namespace %s: %w", ns, err)
			}
		}
	}
	if err := runner.CheckTrustTargets(ctx, c.Clients, t, *tr, p.Namespaces); err != nil {
		return nil, err
	}
	for _, cm := range copies {
		if tr.Bundle || cm.Name != tr.Name || !slices.Contains(p.Namespaces, cm.Namespace) {
			p.Stale = append(p.Stale, cm)
		}
	}
	if old != nil && old.Bundle && (!tr.Bundle || old.Name != tr.Name) {
		p.DeleteBundle = old.Name
	}
	if tr.Bundle && req.TrustManager == "auto" {
		p.Warnings = append(p.Warnings, "trust-manager is installed: the CA goes into a trust-manager Bundle, which trust-manager syncs into the namespaces (--trust-manager=false writes the ConfigMaps instead)")
	}
	if tr.Bundle && len(p.Stale) > 0 {
		p.Warnings = append(p.Warnings, "the ConfigMaps written before are deleted so that trust-manager can write its own: until it has, pods that mount them and start meanwhile wait for them")
	}
	p.describe(old)
	return p, nil
}

// recordedCopies are the plugin's copies of t's CA in the namespaces its
// record names today.
func recordedCopies(ctx context.Context, c *Clients, t *pgpool.Target, old *pgpool.Trust) ([]corev1.ConfigMap, error) {
	if old == nil || old.Bundle {
		return nil, nil
	}
	nss, err := runner.TrustTargets(ctx, c.Clients, *old)
	if err != nil {
		return nil, err
	}
	var out []corev1.ConfigMap
	for _, ns := range nss {
		cm, err := c.Core.ConfigMaps(ns).Get(ctx, old.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("get ConfigMap %s/%s: %w", ns, old.Name, err)
		}
		if tls.CarriesCAOf(cm, t.Namespace, t.Name) {
			out = append(out, *cm)
		}
	}
	return out, nil
}

func (p *TrustPlan) describe(old *pgpool.Trust) {
	if p.Trust != nil {
		verb := "write"
		if old != nil && old.Equal(*p.Trust) {
			verb = "update"
		}
		p.Lines = append(p.Lines, fmt.Sprintf("%s %s with %s", verb, p.Trust.Where(), joinSubjects(p.CA)))
		if !p.Trust.Bundle {
			if len(p.Namespaces) == 0 {
				p.Lines = append(p.Lines, "no namespace matches today: copies are written when rotate or change-issuer next run, in the namespaces that match then")
			} else {
				p.Lines = append(p.Lines, fmt.Sprintf("  namespaces: %v", p.Namespaces))
			}
		}
		p.Lines = append(p.Lines, fmt.Sprintf("record it on %s (annotation %s): tls rotate and change-issuer keep the copies current", p.Target, pgpool.AnnotationTrust))
	} else {
		p.Lines = append(p.Lines, fmt.Sprintf("remove the record from %s (annotation %s)", p.Target, pgpool.AnnotationTrust))
	}
	for _, cm := range p.Stale {
		p.Lines = append(p.Lines, fmt.Sprintf("delete ConfigMap %s/%s (a copy no longer wanted)", cm.Namespace, cm.Name))
	}
	if p.DeleteBundle != "" {
		p.Lines = append(p.Lines, fmt.Sprintf("delete trust-manager Bundle %s (trust-manager removes its copies)", p.DeleteBundle))
	}
}

func joinSubjects(ca []byte) string {
	s := tls.Subjects(ca)
	if len(s) == 1 {
		return "the issuer's CA " + s[0]
	}
	return fmt.Sprintf("the issuer's CA %s and the previous %v", s[0], s[1:])
}

// trustManagerServed reports whether trust-manager's Bundle API is served.
func trustManagerServed(c *Clients) (bool, error) {
	if c.Discovery == nil {
		return false, nil
	}
	rl, err := c.Discovery.ServerResourcesForGroupVersion(tls.Bundles.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("ask whether trust-manager is installed: %w", err)
	}
	for _, r := range rl.APIResources {
		if r.Name == tls.Bundles.Resource {
			return true, nil
		}
	}
	return false, nil
}

// ApplyTrust carries p out: the record on the workload first (so that a
// rotate that runs next keeps whatever was written current), then the
// copies, then the deletions of copies no longer wanted (each only if it
// is still the plugin's copy of this CA). dryRun as the API takes it.
func ApplyTrust(ctx context.Context, c *Clients, p *TrustPlan, dryRun []string) (done []string, err error) {
	t := p.Target
	release, err := lockFor(ctx, c, t, "trust", dryRun)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, release()) }()
	var rec any // nil removes the annotation
	if p.Trust != nil {
		b, _ := json.Marshal(p.Trust)
		rec = string(b)
	}
	if p.Trust != nil || t.Annotations[pgpool.AnnotationTrust] != "" {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{pgpool.AnnotationTrust: rec}}})
		if _, err := c.Dynamic.Resource(t.GVR).Namespace(t.Namespace).Patch(ctx, t.Name, types.MergePatchType, patch,
			metav1.PatchOptions{FieldManager: runner.FieldManager, DryRun: dryRun}); err != nil {
			return nil, fmt.Errorf("record the client CA copies on %s: %w", t, err)
		}
	}
	if p.Trust != nil {
		msg, err := runner.WriteTrust(ctx, c.Clients, t, *p.Trust, p.Namespaces, p.CA, dryRun)
		if err != nil {
			return done, err
		}
		done = append(done, msg)
	}
	for _, cm := range p.Stale {
		uid := cm.UID
		err := c.Core.ConfigMaps(cm.Namespace).Delete(ctx, cm.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, DryRun: dryRun})
		if err != nil && !apierrors.IsNotFound(err) {
			return done, fmt.Errorf("delete ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
		}
		done = append(done, fmt.Sprintf("deleted ConfigMap %s/%s", cm.Namespace, cm.Name))
	}
	if p.DeleteBundle != "" {
		b, err := c.Dynamic.Resource(tls.Bundles).Get(ctx, p.DeleteBundle, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return done, fmt.Errorf("get trust-manager Bundle %s: %w", p.DeleteBundle, err)
		case !tls.CarriesCAOf(b, t.Namespace, t.Name):
			done = append(done, fmt.Sprintf("left trust-manager Bundle %s: it no longer carries this pgpool's CA", p.DeleteBundle))
		default:
			uid := b.GetUID()
			if err := c.Dynamic.Resource(tls.Bundles).Delete(ctx, p.DeleteBundle, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, DryRun: dryRun}); err != nil && !apierrors.IsNotFound(err) {
				return done, fmt.Errorf("delete trust-manager Bundle %s: %w", p.DeleteBundle, err)
			}
			done = append(done, "deleted trust-manager Bundle "+p.DeleteBundle)
		}
	}
	return done, nil
}
