// Package discover finds a pgpool in a cluster and reads it into the model
// of pkg/pgpool: its workload (StatefulSet, Deployment, or KubeDB's PetSet
// through the dynamic client), the ConfigMap or Secret that carries
// pgpool.conf and pool_hba.conf, its pods and Services, its Certificates and
// CA bundle. It only reads.
package discover

import (
	"context"
	"fmt"
	"sort"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/typed/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/layout"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// workloadKinds is the discovery order; Kind names for messages.
var workloadKinds = []struct {
	GVR  schema.GroupVersionResource
	Kind string
}{
	{pgpool.StatefulSets, "StatefulSet"},
	{pgpool.Deployments, "Deployment"},
	{pgpool.PetSets, "PetSet"},
}

// Clients are the API clients discovery reads with.
type Clients struct {
	Core        corev1client.CoreV1Interface
	Dynamic     dynamic.Interface
	CertManager cmclient.CertmanagerV1Interface
}

// NotFoundError is returned when no workload has the name.
type NotFoundError struct{ Namespace, Name string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no pgpool named %q in namespace %q: found no StatefulSet, Deployment or PetSet of that name (check the name and -n/--namespace; list candidates with: kubectl get statefulsets,deployments -n %s)", e.Name, e.Namespace, e.Namespace)
}

// Discover finds the pgpool NAME in namespace ns.
func Discover(ctx context.Context, c Clients, ns, name string) (*pgpool.Target, error) {
	return DiscoverRef(ctx, c, Ref{Namespace: ns, Name: name})
}

// DiscoverRef finds the pgpool r names; when r.Kind is known (Find found
// it) only that kind is read.
func DiscoverRef(ctx context.Context, c Clients, r Ref) (*pgpool.Target, error) {
	ns, name := r.Namespace, r.Name
	// The reads are independent: each group at once (one round trip of
	// latency per group, not per read).
	objs := make([]*unstructured.Unstructured, len(workloadKinds))
	errs := make([]error, len(workloadKinds))
	_ = parallel.Each(len(workloadKinds), func(i int) error {
		if r.Kind != "" && r.Kind != workloadKinds[i].Kind {
			errs[i] = apierrors.NewNotFound(workloadKinds[i].GVR.GroupResource(), name)
			return nil
		}
		objs[i], errs[i] = c.Dynamic.Resource(workloadKinds[i].GVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		return nil // a NotFound is an answer: judged below, kind by kind
	})
	var found []*unstructured.Unstructured
	var kinds []string
	var gvrs []schema.GroupVersionResource
	for i, wk := range workloadKinds {
		obj, err := objs[i], errs[i]
		switch {
		case err == nil:
			found = append(found, obj)
			kinds = append(kinds, wk.Kind)
			gvrs = append(gvrs, wk.GVR)
		case apierrors.IsNotFound(err) && wk.GVR == pgpool.PetSets:
			// Either no PetSet of that name or the PetSet API is not served.
		case apierrors.IsNotFound(err):
		default:
			return nil, fmt.Errorf("get %s %s/%s: %w", wk.Kind, ns, name, err)
		}
	}
	switch len(found) {
	case 0:
		return nil, &NotFoundError{Namespace: ns, Name: name}
	case 1:
	default:
		return nil, fmt.Errorf("%q in namespace %q is ambiguous: it names a %s; rename one of them or remove the one that is not the pgpool", name, ns, strings.Join(kinds, " and a "))
	}
	t, err := pgpool.FromWorkload(found[0], kinds[0], gvrs[0])
	if err != nil {
		return nil, err
	}
	if t.Layout, err = layout.For(t); err != nil {
		return nil, err
	}
	// Each finder fills in its own fields of t; their errors are reported
	// in this order, whichever came first.
	finders := []func(context.Context, Clients, *pgpool.Target) error{findConfig, findPods, findServices, findCertificates, findBundle, findBackup, findOwner}
	if err := parallel.Each(len(finders), func(i int) error { return finders[i](ctx, c, t) }); err != nil {
		return nil, err
	}
	if err := findArgo(ctx, c, t); err != nil { // marked by the workload or the config
		return nil, err
	}
	t.ReadState()
	return t, nil
}

// readConfig reads a ConfigMap's or Secret's data as text.
func readConfig(ctx context.Context, c Clients, ns, kind, name string) (metav1.ObjectMeta, map[string]string, error) {
	if kind == "Secret" {
		s, err := c.Core.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return metav1.ObjectMeta{}, nil, err
		}
		data := map[string]string{}
		for k, v := range s.Data {
			data[k] = string(v)
		}
		return s.ObjectMeta, data, nil
	}
	cm, err := c.Core.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return metav1.ObjectMeta{}, nil, err
	}
	return cm.ObjectMeta, cm.Data, nil
}

// findConfig looks through the pgpool container's mounts for a ConfigMap or
// Secret volume with a pgpool.conf key.
func findConfig(ctx context.Context, c Clients, t *pgpool.Target) error {
	if pc, ok := t.Layout.TemplateConf(&t.Template.Spec.Containers[t.ContainerIndex]); ok {
		return findTemplateConfig(ctx, c, t, pc)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range t.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	var tried []string
	for _, m := range t.Template.Spec.Containers[t.ContainerIndex].VolumeMounts {
		v, ok := vols[m.Name]
		if !ok || m.SubPath != "" {
			continue
		}
		var kind, name string
		switch {
		case v.Secret != nil:
			kind, name = "Secret", v.Secret.SecretName
		case v.ConfigMap != nil:
			kind, name = "ConfigMap", v.ConfigMap.Name
		default:
			continue
		}
		meta, data, err := readConfig(ctx, c, t.Namespace, kind, name)
		switch {
		case apierrors.IsNotFound(err):
			tried = append(tried, kind+" "+name+" (not found)")
			continue
		case err != nil:
			return fmt.Errorf("get %s %s/%s: %w", kind, t.Namespace, name, err)
		}
		if pc, hba, ok := t.Layout.ConfigFiles(data); ok {
			t.Config = pgpool.Config{Kind: kind, Name: name, MountPath: m.MountPath, ResourceVersion: meta.ResourceVersion,
				PgpoolConf: pc, PoolHBA: hba, Labels: meta.Labels, Annotations: meta.Annotations}
			t.TLSMountPath = t.Layout.TLSMountPath(m.MountPath)
			return nil
		}
		tried = append(tried, kind+" "+name)
	}
	if len(tried) == 0 {
		return fmt.Errorf("%s: config not found: container %q mounts no ConfigMap or Secret; kubectl-pgpool needs pgpool.conf and pool_hba.conf in a mounted ConfigMap or Secret", t, t.Container)
	}
	return fmt.Errorf("%s: config not found: none of the mounted %s has a pgpool.conf key", t, strings.Join(tried, ", "))
}

// findPods lists the workload's pods (not those that ended).
func findPods(ctx context.Context, c Clients, t *pgpool.Target) error {
	if t.Selector == nil {
		return fmt.Errorf("%s has no spec.selector", t)
	}
	sel, err := metav1.LabelSelectorAsSelector(t.Selector)
	if err != nil {
		return fmt.Errorf("%s: bad selector: %w", t, err)
	}
	pods, err := c.Core.Pods(t.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Errorf("list pods of %s: %w", t, err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue // terminal (an Evicted pod, say): it never comes back
		}
		if t.Owns(&p) {
			t.Pods = append(t.Pods, p)
		}
	}
	pgpool.SortPods(t.Pods)
	return nil
}

// findServices lists the Services whose selector matches the pod template.
func findServices(ctx context.Context, c Clients, t *pgpool.Target) error {
	svcs, err := c.Core.Services(t.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list Services in %s: %w", t.Namespace, err)
	}
	podLabels := labels.Set(t.Template.Labels)
	for _, s := range svcs.Items {
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			continue
		}
		t.Services = append(t.Services, s.Name)
		if s.Spec.ClusterIP == corev1.ClusterIPNone && t.Headless == "" {
			t.Headless = s.Name
		}
	}
	sort.Strings(t.Services)
	return nil
}

// findCertificates reads the pgpool's Certificates. Only "not found" means
// there is none: a 403 or a server error is reported as it is, not taken for
// a pgpool without certificates.
func findCertificates(ctx context.Context, c Clients, t *pgpool.Target) error {
	t.Certificates = map[string]*cmapi.Certificate{}
	t.CertSecrets = map[string]*metav1.ObjectMeta{}
	names := []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)}
	secrets := make([]*corev1.Secret, len(names))
	crts := make([]*cmapi.Certificate, len(names))
	// Reads 0-1: the Secrets; 2-3: the Certificates.
	err := parallel.Each(2*len(names), func(i int) error {
		n := names[i%len(names)]
		if i < len(names) {
			s, err := c.Core.Secrets(t.Namespace).Get(ctx, n, metav1.GetOptions{})
			switch {
			case err == nil:
				secrets[i] = s
			case !apierrors.IsNotFound(err):
				return fmt.Errorf("get Secret %s/%s: %w", t.Namespace, n, err)
			}
			return nil
		}
		if c.CertManager == nil {
			return nil
		}
		crt, err := c.CertManager.Certificates(t.Namespace).Get(ctx, n, metav1.GetOptions{})
		switch {
		case err == nil:
			crts[i-len(names)] = crt
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("get Certificate %s/%s: %w", t.Namespace, n, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, n := range names {
		if secrets[i] != nil {
			m := secrets[i].ObjectMeta
			t.CertSecrets[n] = &m
		}
		if crts[i] != nil {
			t.Certificates[n] = crts[i]
		}
	}
	return nil
}

func findBundle(ctx context.Context, c Clients, t *pgpool.Target) error {
	cm, err := c.Core.ConfigMaps(t.Namespace).Get(ctx, tls.CABundleName(t.Name), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("get ConfigMap %s/%s (the CA bundle): %w", t.Namespace, tls.CABundleName(t.Name), err)
	}
	t.Bundle, t.BundleOurs = cm, tls.Ours(cm, t.Name)
	return nil
}

// findBackup reads the backup Secret of the last operation, if there is
// one; a Secret of that name the plugin did not write is noted, not read.
func findBackup(ctx context.Context, c Clients, t *pgpool.Target) error {
	s, err := c.Core.Secrets(t.Namespace).Get(ctx, pgpool.BackupName(t.Name), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("get Secret %s/%s (the backup): %w", t.Namespace, pgpool.BackupName(t.Name), err)
	}
	if !tls.Ours(s, t.Name) {
		t.BackupForeign = true
		return nil
	}
	t.Backup, err = pgpool.ReadBackup(s, t.Name)
	return err
}

// findOwner reads the KubeDB Pgpool object that controls the workload (the
// layout names it) and the PgpoolOpsRequests on it that have not ended
// (where that API is served). A Pgpool that is gone, or an API not
// served, leaves t.Owner nil.
func findOwner(ctx context.Context, c Clients, t *pgpool.Target) error {
	ref := t.Layout.Owner(t)
	if ref == nil {
		return nil
	}
	gvr := pgpool.KubeDBPgpools
	if gv, err := schema.ParseGroupVersion(ref.APIVersion); err == nil {
		gvr.Version = gv.Version
	}
	var owner *unstructured.Unstructured
	var ops *unstructured.UnstructuredList
	err := parallel.All(func() (err error) {
		owner, err = c.Dynamic.Resource(gvr).Namespace(t.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			owner, err = nil, nil
		}
		if err != nil {
			err = fmt.Errorf("get %s %s/%s (it controls %s): %w", ref.Kind, t.Namespace, ref.Name, t, err)
		}
		return err
	}, func() (err error) {
		ops, err = c.Dynamic.Resource(pgpool.PgpoolOpsRequests).Namespace(t.Namespace).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			ops, err = nil, nil
		}
		if err != nil {
			err = fmt.Errorf("list PgpoolOpsRequests in %s: %w", t.Namespace, err)
		}
		return err
	})
	if err != nil || owner == nil {
		return err
	}
	t.Owner = pgpool.ReadOwner(owner)
	if ops != nil {
		for i := range ops.Items {
			if pending, phase := pgpool.OpsRequestPending(&ops.Items[i], ref.Name); pending {
				t.Owner.Pending = append(t.Owner.Pending, fmt.Sprintf("%s (phase %s)", ops.Items[i].GetName(), phase))
			}
		}
	}
	return nil
}

// Ref names one pgpool.
type Ref struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Kind is the workload's kind when a listing found it ("": any; a
	// name two kinds share is left to Discover, which refuses it).
	Kind string `json:"-"`
}

// Names are the refs as namespace/name.
func Names(refs []Ref) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.Namespace + "/" + r.Name
	}
	return out
}

// Find returns the workloads that run a pgpool container in ns (every
// namespace when ns is ""), whose labels match selector (any when ""),
// sorted by namespace and name.
func Find(ctx context.Context, dyn dynamic.Interface, ns, selector string) ([]Ref, error) {
	return find(ctx, dyn, ns, selector, true)
}

// find is Find; unless strict, a kind that cannot be listed is skipped.
func find(ctx context.Context, dyn dynamic.Interface, ns, selector string, strict bool) ([]Ref, error) {
	var out []Ref
	seen := map[Ref]int{}
	for _, wk := range workloadKinds {
		l, err := dyn.Resource(wk.GVR).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if (apierrors.IsNotFound(err) && wk.GVR == pgpool.PetSets) || (err != nil && !strict) {
			continue // the PetSet API is not served, or (completion) not ours to list
		}
		if err != nil {
			return nil, fmt.Errorf("list %ss: %w", strings.ToLower(wk.Kind), err)
		}
		for i := range l.Items {
			if _, err := pgpool.FromWorkload(&l.Items[i], wk.Kind, wk.GVR); err == nil {
				r := Ref{Namespace: l.Items[i].GetNamespace(), Name: l.Items[i].GetName()}
				if at, ok := seen[r]; ok {
					out[at].Kind = "" // two kinds of one name: Discover refuses it
					continue
				}
				seen[r] = len(out)
				r.Kind = wk.Kind
				out = append(out, r)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// List returns the names of the workloads in ns that run a pgpool container
// (for shell completion: a kind the user may not list is left out).
func List(ctx context.Context, dyn dynamic.Interface, ns string) ([]string, error) {
	refs, err := find(ctx, dyn, ns, "", false)
	var out []string
	for _, r := range refs {
		out = append(out, r.Name)
	}
	return out, err
}
