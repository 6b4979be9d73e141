package discover

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/owners"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// ArgoApplications is Argo CD's Application API.
var ArgoApplications = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// FluxHelmReleases is Flux's HelmRelease API.
var FluxHelmReleases = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}

// findHelmReleases reads the drift detection mode of the Flux
// HelmReleases whose labels mark the workload or its config. One that
// cannot be read counts as drift detection off (Flux's default), as
// before: the plan still names it.
func findHelmReleases(ctx context.Context, c Clients, t *pgpool.Target) {
	seen := map[string]bool{}
	for _, labels := range []map[string]string{t.Labels, t.Config.Labels} {
		ns, name, owner := owners.HelmRelease(labels)
		if name == "" || seen[owner] {
			continue
		}
		seen[owner] = true
		if ns == "" {
			ns = t.Namespace
		}
		u, err := c.Dynamic.Resource(FluxHelmReleases).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		mode, _, _ := unstructured.NestedString(u.Object, "spec", "driftDetection", "mode")
		if t.HelmReleaseDrift == nil {
			t.HelmReleaseDrift = map[string]string{}
		}
		t.HelmReleaseDrift[owner] = mode
	}
}

// findArgo reads the Argo CD Applications whose tracking ids mark the
// workload or its config, for whether they revert drift by themselves
// (selfHeal). An Application that cannot be read (not found, the API not
// served, no permission to list Applications) is noted with the reason:
// the plan then warns instead of refusing. Nothing is read when no object
// is tracked.
func findArgo(ctx context.Context, c Clients, t *pgpool.Target) error {
	var apps []string
	for _, o := range append(owners.Of(t.Labels, t.Annotations), owners.Of(t.Config.Labels, t.Config.Annotations)...) {
		if o.App != "" && t.Argo[o.App] == (owners.Argo{}) {
			if t.Argo == nil {
				t.Argo = map[string]owners.Argo{}
			}
			t.Argo[o.App] = owners.Argo{Why: "not read yet"}
			apps = append(apps, o.App)
		}
	}
	// The Applications, Flux's HelmReleases and Helm's release Secrets
	// at once: each fills its own field of t.
	states := make([]owners.Argo, len(apps))
	_ = parallel.Each(len(apps)+2, func(i int) error {
		switch i {
		case len(apps):
			findHelmReleases(ctx, c, t)
		case len(apps) + 1:
			findHelmStored(ctx, c, t)
		default:
			states[i] = readArgo(ctx, c, apps[i])
		}
		return nil
	})
	for i, a := range apps {
		t.Argo[a] = states[i]
	}
	return nil
}

// readArgo reads one Application: by namespace and name when the tracking
// id has both, else by name in every namespace (Argo CD's own namespace is
// the installation's choice).
func readArgo(ctx context.Context, c Clients, app string) owners.Argo {
	ns, name := owners.ArgoApp(app)
	var items []unstructured.Unstructured
	if ns != "" {
		u, err := c.Dynamic.Resource(ArgoApplications).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return owners.Argo{Why: argoWhy(err, ns+"/"+name)}
		}
		items = append(items, *u)
	} else {
		l, err := c.Dynamic.Resource(ArgoApplications).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
		if err != nil {
			return owners.Argo{Why: argoWhy(err, name)}
		}
		items = l.Items
	}
	switch len(items) {
	case 0:
		return owners.Argo{Why: fmt.Sprintf("no Application %s in any namespace", name)}
	case 1:
	default:
		return owners.Argo{Why: fmt.Sprintf("%d Applications are named %s", len(items), name)}
	}
	auto, found, _ := unstructured.NestedMap(items[0].Object, "spec", "syncPolicy", "automated")
	if !found {
		return owners.Argo{Read: true} // no automated sync: nothing reverts by itself
	}
	if enabled, ok := auto["enabled"].(bool); ok && !enabled {
		return owners.Argo{Read: true}
	}
	heal, _ := auto["selfHeal"].(bool)
	return owners.Argo{Read: true, SelfHeal: heal}
}

func argoWhy(err error, what string) string {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("Application %s not found, or Argo CD's API is not served", what)
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("no permission to read Application %s", what)
	}
	return fmt.Sprintf("reading Application %s: %v", what, err)
}
