// Package owners names who else writes an object the plugin changes (Helm,
// Argo CD, Flux) from the object's labels and annotations, and what that
// owner will do to the change: put it back at once by itself, or at its
// next sync or upgrade. It reads nothing from the cluster.
package owners

import (
	"fmt"
	"strings"
	"time"
)

// Owner is a tool that manages an object.
type Owner struct {
	// Tool names it: "Helm", "Argo CD", "Flux kustomize-controller",
	// "Flux helm-controller".
	Tool string `json:"tool"`
	// Name is what it manages the object as: a release, an Application, a
	// Kustomization or a HelmRelease (namespace/name when known).
	Name string `json:"name"`
	// AtOnce: it reverts a live change by itself, within seconds
	// (kustomize-controller without an opt-out on the object).
	AtOnce bool `json:"revertsAtOnce"`
	// Then says what happens to the change, in words.
	Then string `json:"then"`
	// App is an Argo CD Application's name as its tracking id has it.
	App string `json:"-"`
	// ByLabel: Argo CD may track the object by label (the Application's
	// name in app.kubernetes.io/instance): an owner only if that
	// Application exists.
	ByLabel bool `json:"-"`
	// Release is a Helm release's namespace and name as the object's
	// annotations give them ("" when they do not).
	Release [2]string `json:"-"`
}

// HelmStored is what Helm's storage says of a release: its newest
// revision, as read from its release Secrets (sh.helm.release.v1.NAME.vN,
// labels owner=helm, name=NAME, status, version).
type HelmStored struct {
	// Read: its Secrets could be listed; Why says why not.
	Read bool
	Why  string
	// Revision is the newest revision (0: no release Secret).
	Revision int
	Status   string
	// Deployed is when that revision was written (the Secret's creation).
	Deployed time.Time
}

// WithHelm completes a Helm owner with its release as stored: its
// revision, or that there is no such release (the object was rendered by
// `helm template` and applied by something else, or its release was
// uninstalled), or why it could not be read.
func WithHelm(o Owner, r HelmStored) Owner {
	switch {
	case !r.Read && r.Why != "":
		o.Then += " (its release Secrets were not read: " + r.Why + ")"
	case r.Read && r.Revision == 0:
		o.Then = fmt.Sprintf("no release Secret sh.helm.release.v1.%s.* in namespace %s (rendered by `helm template`, or uninstalled): nothing puts the chart's values back unless it is applied again", o.Release[1], o.Release[0])
	case r.Read:
		o.Name += fmt.Sprintf(", revision %d %s %s", r.Revision, r.Status, r.Deployed.UTC().Format(time.RFC3339))
	}
	return o
}

// Marker labels and annotations.
const (
	helmManagedBy     = "app.kubernetes.io/managed-by"
	helmRelease       = "meta.helm.sh/release-name"
	helmReleaseNS     = "meta.helm.sh/release-namespace"
	argoTracking      = "argocd.argoproj.io/tracking-id"
	fluxKustomizeName = "kustomize.toolkit.fluxcd.io/name"
	fluxKustomizeNS   = "kustomize.toolkit.fluxcd.io/namespace"
	fluxReconcile     = "kustomize.toolkit.fluxcd.io/reconcile"
	fluxSSA           = "kustomize.toolkit.fluxcd.io/ssa"
	fluxHelmName      = "helm.toolkit.fluxcd.io/name"
	fluxHelmNS        = "helm.toolkit.fluxcd.io/namespace"
	// Argo CD's label tracking (trackingMethod: label, its default before
	// 3.0) puts the Application's name here, and applies client-side,
	// which leaves kubectl's annotation.
	instanceLabel = "app.kubernetes.io/instance"
	lastApplied   = "kubectl.kubernetes.io/last-applied-configuration"
)

// Of names the owners an object's labels and annotations show. A Flux
// HelmRelease's objects carry Helm's markers too: they are named once, as
// Flux's.
func Of(labels, annotations map[string]string) []Owner {
	var out []Owner
	if n := labels[fluxKustomizeName]; n != "" {
		o := Owner{Tool: "Flux kustomize-controller", Name: "Kustomization " + qualified(labels[fluxKustomizeNS], n), AtOnce: true,
			Then: "it puts the object back at its next reconciliation (within its interval), as it does with any drift"}
		switch {
		case annotations[fluxReconcile] == "disabled":
			o.AtOnce, o.Then = false, "it leaves the object alone (annotation "+fluxReconcile+": disabled)"
		case annotations[fluxSSA] == "Ignore" || annotations[fluxSSA] == "Merge" || annotations[fluxSSA] == "IfNotPresent":
			o.AtOnce, o.Then = false, fmt.Sprintf("it does not revert the change (annotation %s: %s)", fluxSSA, annotations[fluxSSA])
		}
		out = append(out, o)
	}
	if n := labels[fluxHelmName]; n != "" {
		out = append(out, Owner{Tool: "Flux helm-controller", Name: "HelmRelease " + qualified(labels[fluxHelmNS], n),
			Then: "drift detection is off by default: the release's next upgrade puts the chart's values back"})
	} else if labels[helmManagedBy] == "Helm" || annotations[helmRelease] != "" {
		name := "release " + qualified(annotations[helmReleaseNS], annotations[helmRelease])
		if annotations[helmRelease] == "" {
			name = "a release not named on the object (label " + helmManagedBy + ": Helm, no annotation " + helmRelease + ")"
		}
		o := Owner{Tool: "Helm", Name: name,
			Then: "Helm reverts nothing by itself; the next helm upgrade puts the chart's values back"}
		if annotations[helmRelease] != "" {
			o.Release = [2]string{annotations[helmReleaseNS], annotations[helmRelease]}
		}
		out = append(out, o)
	}
	if id := annotations[argoTracking]; id != "" {
		app := id
		for i := 0; i < len(id); i++ {
			if id[i] == ':' {
				app = id[:i]
				break
			}
		}
		out = append(out, Owner{Tool: "Argo CD", Name: "Application " + app, App: app,
			Then: "with selfHeal on, it puts the object back within seconds; without, the next sync does"})
	} else if app := labels[instanceLabel]; app != "" && annotations[lastApplied] != "" && annotations[helmRelease] == "" {
		out = append(out, Owner{Tool: "Argo CD", Name: "Application " + app + " (tracking by label " + instanceLabel + ")", App: app, ByLabel: true,
			Then: "with selfHeal on, it puts the object back within seconds; without, the next sync does"})
	}
	return out
}

// HelmRelease is the Flux HelmRelease (namespace, name) whose labels an
// object carries, and its owner name; name "" when none.
func HelmRelease(labels map[string]string) (ns, name, owner string) {
	if n := labels[fluxHelmName]; n != "" {
		return labels[fluxHelmNS], n, "HelmRelease " + qualified(labels[fluxHelmNS], n)
	}
	return "", "", ""
}

// HelmReleaseDrift completes a Flux helm-controller owner with what its
// HelmRelease says of drift (spec.driftDetection.mode: enabled corrects
// drift at each reconciliation, warn only reports it).
func HelmReleaseDrift(o Owner, mode string) Owner {
	switch mode {
	case "enabled":
		o.AtOnce, o.Then = true, "its HelmRelease has drift detection enabled: it puts the object back at its next reconciliation"
	case "warn":
		o.Then = "its HelmRelease has drift detection in warn mode: it reports the change, and the release's next upgrade puts the chart's values back"
	}
	return o
}

// Argo is what an Argo CD Application says of drift, as read from the
// cluster (Read false: it could not be read, Why says why).
type Argo struct {
	Read     bool
	SelfHeal bool
	Why      string
}

// ArgoApp splits an Application name from a tracking id: "NS_NAME" (an
// Application outside Argo CD's own namespace) or "NAME" (in it, ns "").
func ArgoApp(app string) (ns, name string) {
	if i := strings.Index(app, "_"); i > 0 {
		return app[:i], app[i+1:]
	}
	return "", app
}

// WithArgo completes an Argo CD owner with what its Application says:
// selfHeal on reverts at once.
func WithArgo(o Owner, a Argo) Owner {
	switch {
	case !a.Read:
		o.Then = fmt.Sprintf("its Application could not be read (%s): with selfHeal on, it puts the object back within seconds; without, the next sync does", a.Why)
	case a.SelfHeal:
		o.AtOnce, o.Then = true, "its Application has selfHeal on: it puts the object back within seconds"
	default:
		o.Then = "its Application has selfHeal off: the next sync puts the object back"
	}
	return o
}

func qualified(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}
