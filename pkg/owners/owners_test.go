package owners

import (
	"strings"
	"testing"
	"time"
)

// Each tool's markers name it, with what it does to a change; Flux's
// kustomize-controller reverts at once unless the object opts out; a Flux
// HelmRelease's objects are named once; an object with no marker has none.
func TestOf(t *testing.T) {
	for _, tc := range []struct {
		name        string
		labels, ann map[string]string
		want        string // Tool/Name/AtOnce, joined
	}{
		{"none", map[string]string{"app.kubernetes.io/instance": "pgpool", "app.kubernetes.io/managed-by": "kubedb.com"}, nil, ""},
		{"helm", map[string]string{helmManagedBy: "Helm"}, map[string]string{helmRelease: "ha", helmReleaseNS: "db"}, "Helm/release db/ha/false"},
		{"flux kustomize", map[string]string{fluxKustomizeName: "apps", fluxKustomizeNS: "flux-system"}, nil, "Flux kustomize-controller/Kustomization flux-system/apps/true"},
		{"flux kustomize, disabled", map[string]string{fluxKustomizeName: "apps", fluxKustomizeNS: "flux-system"}, map[string]string{fluxReconcile: "disabled"}, "Flux kustomize-controller/Kustomization flux-system/apps/false"},
		{"flux kustomize, ssa Ignore", map[string]string{fluxKustomizeName: "apps"}, map[string]string{fluxSSA: "Ignore"}, "Flux kustomize-controller/Kustomization apps/false"},
		{"flux helm", map[string]string{helmManagedBy: "Helm", fluxHelmName: "ha", fluxHelmNS: "db"}, map[string]string{helmRelease: "db-ha"}, "Flux helm-controller/HelmRelease db/ha/false"},
		{"argo", nil, map[string]string{argoTracking: "pgpools:apps/StatefulSet:demo/pgpool"}, "Argo CD/Application pgpools/false"},
	} {
		var got []string
		for _, o := range Of(tc.labels, tc.ann) {
			got = append(got, o.Tool+"/"+o.Name+"/"+map[bool]string{true: "true", false: "false"}[o.AtOnce])
			if o.Then == "" {
				t.Errorf("%s: %s says nothing of what happens", tc.name, o.Tool)
			}
		}
		if g := strings.Join(got, ", "); g != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, g, tc.want)
		}
	}
}

// An Argo CD owner reverts at once only when its Application, read, has
// selfHeal on; one that could not be read says why.
func TestWithArgo(t *testing.T) {
	o := Of(nil, map[string]string{argoTracking: "db_pgpools:apps/StatefulSet:demo/pgpool"})[0]
	if ns, name := ArgoApp(o.App); ns != "db" || name != "pgpools" {
		t.Fatalf("ArgoApp(%q) = %q %q", o.App, ns, name)
	}
	if ns, name := ArgoApp("pgpools"); ns != "" || name != "pgpools" {
		t.Fatalf("ArgoApp(pgpools) = %q %q", ns, name)
	}
	if w := WithArgo(o, Argo{Read: true, SelfHeal: true}); !w.AtOnce {
		t.Error("selfHeal on does not revert at once")
	}
	if w := WithArgo(o, Argo{Read: true}); w.AtOnce || !strings.Contains(w.Then, "selfHeal off") {
		t.Errorf("selfHeal off: %+v", w)
	}
	if w := WithArgo(o, Argo{Why: "no permission"}); w.AtOnce || !strings.Contains(w.Then, "could not be read (no permission)") {
		t.Errorf("unread: %+v", w)
	}
}

// Issue 27, item 9: Helm's label without its release annotation is named
// as such (before: "release " with nothing after it).
func TestHelmWithoutReleaseName(t *testing.T) {
	o := Of(map[string]string{helmManagedBy: "Helm"}, nil)
	if len(o) != 1 || o[0].Tool != "Helm" || o[0].Name == "release " || !strings.Contains(o[0].Name, "not named") {
		t.Fatalf("%+v", o)
	}
}

// Argo CD's label tracking: app.kubernetes.io/instance with kubectl's
// last-applied annotation (Argo CD applies client-side) is a candidate
// Application; a Helm release's instance label is not.
func TestArgoLabelTracking(t *testing.T) {
	o := Of(map[string]string{"app.kubernetes.io/instance": "pgpools"}, map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"})
	if len(o) != 1 || o[0].Tool != "Argo CD" || o[0].App != "pgpools" || !o[0].ByLabel {
		t.Fatalf("label tracking: %+v", o)
	}
	for _, c := range []struct{ labels, anns map[string]string }{
		{map[string]string{"app.kubernetes.io/instance": "pg"}, nil},
		{map[string]string{"app.kubernetes.io/instance": "pg", "app.kubernetes.io/managed-by": "Helm"}, map[string]string{"meta.helm.sh/release-name": "pg", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
	} {
		for _, o := range Of(c.labels, c.anns) {
			if o.Tool == "Argo CD" {
				t.Errorf("%v %v: %+v", c.labels, c.anns, o)
			}
		}
	}
}

// A Flux HelmRelease with drift detection enabled reverts at once; warn
// and off do not.
func TestHelmReleaseDrift(t *testing.T) {
	o := Of(map[string]string{"helm.toolkit.fluxcd.io/name": "pg", "helm.toolkit.fluxcd.io/namespace": "flux"}, nil)
	if len(o) != 1 {
		t.Fatalf("%+v", o)
	}
	if _, name, owner := HelmRelease(map[string]string{"helm.toolkit.fluxcd.io/name": "pg", "helm.toolkit.fluxcd.io/namespace": "flux"}); name != "pg" || owner != o[0].Name {
		t.Fatalf("HelmRelease: %s %s, owner %s", name, owner, o[0].Name)
	}
	for mode, atOnce := range map[string]bool{"enabled": true, "warn": false, "": false, "disabled": false} {
		if got := HelmReleaseDrift(o[0], mode); got.AtOnce != atOnce {
			t.Errorf("mode %q: AtOnce %v", mode, got.AtOnce)
		}
	}
}

// A Helm owner completed from its release Secrets: the revision when there
// is one; none means the labels came from `helm template`; unread says
// why.
func TestWithHelm(t *testing.T) {
	o := Of(map[string]string{helmManagedBy: "Helm"}, map[string]string{helmRelease: "pg", helmReleaseNS: "demo"})[0]
	if o.Release != [2]string{"demo", "pg"} {
		t.Fatalf("release %v", o.Release)
	}
	at := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	if got := WithHelm(o, HelmStored{Read: true, Revision: 3, Status: "deployed", Deployed: at}); got.Name != "release demo/pg, revision 3 deployed 2026-12-08T03:00:00Z" || got.Then != o.Then {
		t.Errorf("with a release: %+v", got)
	}
	if got := WithHelm(o, HelmStored{Read: true}); !strings.Contains(got.Then, "no release Secret sh.helm.release.v1.pg.* in namespace demo") {
		t.Errorf("without a release: %+v", got)
	}
	if got := WithHelm(o, HelmStored{Why: "no permission to list Secrets in namespace demo"}); !strings.HasSuffix(got.Then, "(its release Secrets were not read: no permission to list Secrets in namespace demo)") {
		t.Errorf("unread: %+v", got)
	}
}
