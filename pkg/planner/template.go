package planner

// Layouts whose container writes its config from the pod template
// (Bitnami's postgresql-ha): TLS is environment variables and volumes of
// the pod template, pool_hba.conf a user file in a ConfigMap.

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/layout"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// inTemplate reports whether t's layout keeps pgpool.conf in the pod
// template.
func inTemplate(t *pgpool.Target) bool {
	_, ok := t.Layout.TemplateConf(&t.Template.Spec.Containers[t.ContainerIndex])
	return ok
}

// hbaOurs: the user pool_hba.conf is in a ConfigMap the plugin created.
func (b *builder) hbaOurs() bool {
	return !b.t.Config.Generated && b.t.Config.Labels[tls.LabelManagedBy] == tls.ManagerName && b.t.Config.Labels[tls.LabelInstance] == b.t.Name
}

// templateTLS writes TLS on or off in the pod template and pool_hba.conf
// as hba (a user file replacing the generated one); it reports whether
// the pod template changes.
func (b *builder) templateTLS(on bool, hba string, enforce bool) bool {
	t := b.t
	w := layout.BitnamiTLS{On: on, ServerSecret: pgpool.ServerCertName(t.Name), Bundle: tls.CABundleName(t.Name), EnforceHBA: enforce}
	cm := t.Config.Name
	if on && cm == layout.HBAConfigMapName(t.Name) {
		// The chart's own ConfigMap (pgpool.poolHbaConfiguration renders
		// it, as `|-`: no final newline): the same bytes, so that a helm
		// upgrade with the values printed below changes nothing (with
		// server-side apply, Helm 4's default, a difference would be a
		// conflict with the plugin's field manager). remove puts back the
		// bytes it found.
		hba = strings.TrimRight(hba, "\n")
	}
	switch {
	case on && t.Config.Generated:
		// The container's own file goes: the plugin's replaces it (with a
		// CA file the container would let any certificate in over TLS).
		w.HBAConfigMap = cm
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the pool_hba.conf the container generates is replaced by a user file (ConfigMap %s, PGPOOL_USER_HBA_FILE) derived from it, so that the TLS rules are enforced: the generated file always admits plain connections (and, with a CA file, any client certificate over TLS)", cm))
		b.add1(plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: t.Namespace, Name: cm},
			Description: fmt.Sprintf("create ConfigMap %s with pool_hba.conf for sslMode %s, clientAuthMode %s (derived from the file the container generated)", cm, b.intent.SSLMode, b.authMode),
			Diff:        "pool_hba.conf:\n" + conf.Diff(t.Config.PoolHBA, hba, 1),
			Spec:        plan.ApplyConfigMapSpec{Data: map[string]string{"pool_hba.conf": hba}}})
		if strings.Contains(t.Config.PoolHBA, "hostssl") && b.authMode != "cert" {
			b.p.Warnings = append(b.p.Warnings, "the generated pool_hba.conf asks every TLS connection for a client certificate (hostssl ... cert, written because the chart set a CA file): that is kept (never widened), so password logins over TLS stay refused; pass --client-auth-mode cert to say so, or write your own pool_hba.conf (pgpool.poolHbaConfiguration)")
		}
	case !on && b.hbaOurs():
		w.DropHBA = true
	case hba != t.Config.PoolHBA && (cm != layout.HBAConfigMapName(t.Name) || hba != strings.TrimRight(t.Config.PoolHBA, "\n")):
		b.add1(plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: t.Namespace, Name: cm},
			Description: "pool_hba.conf in the user file the container reads (PGPOOL_USER_HBA_FILE)",
			Diff:        "pool_hba.conf:\n" + conf.Diff(t.Config.PoolHBA, hba, 1),
			Spec:        plan.ConfigPatchSpec{ResourceVersion: t.Config.ResourceVersion, PoolHBA: hba}})
	}
	spec := layout.ApplyBitnamiTLS(t.Template.Spec, t.ContainerIndex, w)
	pc, _ := t.Layout.TemplateConf(&spec.Containers[t.ContainerIndex])
	after := hba
	if w.DropHBA || (!on && t.Config.Generated) {
		after = layout.GeneratedHBA(&spec.Containers[t.ContainerIndex])
	}
	b.wrote = &[2]string{pc, after}
	changed := b.patchTemplate(spec, map[bool]string{true: fmt.Sprintf("TLS on as the chart renders it: PGPOOL_ENABLE_TLS=yes with the files of Secret %s (volume %s, copied by init container %s into %s, key 0600) and PGPOOL_TLS_CA_FILE from the CA bundle %s", w.ServerSecret, layout.BitnamiRawVolume, layout.BitnamiInitContainer, layout.BitnamiCertsDir, w.Bundle),
		false: "TLS off as the chart renders pgpool.tls.enabled=false: PGPOOL_ENABLE_TLS=no, the TLS volumes, mounts and init container out"}[on])
	if on {
		if f := t.ForeignTLS; f != nil {
			what := "the certificate in Secret " + f.Secret
			if f.SelfSigned {
				what = "the chart's certificate in Secret " + f.Secret
			}
			exp := ""
			if !f.NotAfter.IsZero() {
				exp = fmt.Sprintf(" (%s, issued by %s, expires %s, in %s; the chart's autoGenerated certificate is never renewed)", f.Subject, f.Issuer, f.NotAfter.UTC().Format("2006-01-02"), f.NotAfter.Sub(b.f.Now).Round(24*60*60*1e9))
			}
			b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("pgpool serves %s%s: it is replaced by the cert-manager Certificate %s; the Secret is left as it is", what, exp, w.ServerSecret))
		}
	}
	b.helmValues(w, hba, on)
	return changed
}

// helmValues says what to put into the Helm release for the change to
// last, when the Deployment is Helm's.
func (b *builder) helmValues(w layout.BitnamiTLS, hba string, on bool) {
	rel := shellQuote(b.t.Annotations["meta.helm.sh/release-name"])
	if rel == "" {
		return
	}
	own := ""
	switch {
	case !on && (w.DropHBA || b.t.Config.Generated):
		hba = "" // the container generates its file again
	case on && b.t.Config.Generated:
		// Helm takes over an object it did not create only when it is
		// marked as the release's.
		own = fmt.Sprintf(". Before that, hand the ConfigMap %[1]s this plan creates to the release, or the upgrade stops on it:\n  kubectl label configmap -n %[2]s %[1]s app.kubernetes.io/managed-by=Helm --overwrite && kubectl annotate configmap -n %[2]s %[1]s meta.helm.sh/release-name=%[3]s meta.helm.sh/release-namespace=%[2]s", shellQuote(b.t.Config.Name), shellQuote(b.t.Namespace), rel)
	case !b.t.Config.Generated && b.t.Config.Name != layout.HBAConfigMapName(b.t.Name):
		// The user's own ConfigMap (pgpool.configurationCM): the chart
		// does not render it, so the values cannot carry the file.
		own = fmt.Sprintf(". Keep pool_hba.conf in your ConfigMap %s (pgpool.configurationCM) as this plan writes it.", b.t.Config.Name)
		hba = ""
	}
	spec, c := &b.t.Template.Spec, &b.t.Template.Spec.Containers[b.t.ContainerIndex]
	uid, gid := layout.CopyIDs(spec, c)
	b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("Helm release %s renders this Deployment: the next `helm upgrade` puts back what its values say. For the change to last, upgrade with these values too (helm upgrade %s CHART --reuse-values -f values.yaml; the extra lists hold the release's own entries, as the Deployment has them, and then the plugin's; the upgrade restarts the pods once, for the chart's checksum annotations; a release Helm 4 applies server-side is left the fields this plan writes, so that the upgrade owns them)%s\nvalues.yaml:\n%s", rel, rel, own, layout.HelmValues(w, hba, uid, gid, layout.UserExtras(spec, c))))
}

// patchTemplate adds the JSON patch that makes the pod template's spec
// spec: env, volume mounts and init containers of the pgpool container,
// and volumes, each list replaced whole with test operations on the names
// read (the server refuses it when they changed since). It reports
// whether anything changes.
func (b *builder) patchTemplate(spec corev1.PodSpec, desc string) bool {
	t := b.t
	old := t.Template.Spec
	ci := strconv.Itoa(t.ContainerIndex)
	cp := "/spec/template/spec/containers/" + ci
	ops := []map[string]any{{"op": "test", "path": cp + "/name", "value": t.Container}}
	var diff strings.Builder
	list := func(path string, was, now any, names func(any) []string) {
		if reflect.DeepEqual(was, now) {
			return
		}
		wn, nn := names(was), names(now)
		for i, n := range wn {
			ops = append(ops, map[string]any{"op": "test", "path": path + "/" + strconv.Itoa(i) + "/name", "value": n})
		}
		switch {
		case len(nn) == 0 && len(wn) > 0:
			ops = append(ops, map[string]any{"op": "remove", "path": path})
		case len(wn) == 0:
			ops = append(ops, map[string]any{"op": "add", "path": path, "value": now})
		default:
			ops = append(ops, map[string]any{"op": "replace", "path": path, "value": now})
		}
		fmt.Fprintf(&diff, "%s:\n", path[len("/spec/template/spec/"):])
		for _, d := range nameDiff(wn, nn) {
			diff.WriteString(d + "\n")
		}
	}
	c, nc := old.Containers[t.ContainerIndex], spec.Containers[t.ContainerIndex]
	list(cp+"/env", c.Env, nc.Env, func(v any) []string { return envNames(v.([]corev1.EnvVar)) })
	list(cp+"/volumeMounts", c.VolumeMounts, nc.VolumeMounts, func(v any) []string {
		var n []string
		for _, m := range v.([]corev1.VolumeMount) {
			n = append(n, m.Name+" -> "+m.MountPath)
		}
		return n
	})
	list("/spec/template/spec/volumes", old.Volumes, spec.Volumes, func(v any) []string {
		var n []string
		for _, x := range v.([]corev1.Volume) {
			n = append(n, x.Name)
		}
		return n
	})
	list("/spec/template/spec/initContainers", old.InitContainers, spec.InitContainers, func(v any) []string {
		var n []string
		for _, x := range v.([]corev1.Container) {
			n = append(n, x.Name)
		}
		return n
	})
	if len(ops) == 1 {
		return false
	}
	// Tests of names with " -> " (mounts) are on the name only.
	for _, o := range ops {
		if v, ok := o["value"].(string); ok && o["op"] == "test" {
			v, _, _ = strings.Cut(v, " -> ")
			o["value"], _, _ = strings.Cut(v, "=")
		}
	}
	patch, _ := json.Marshal(ops)
	b.add1(plan.Step{Object: workloadObject(t), Description: desc, Diff: diff.String(), Spec: plan.WorkloadPatchSpec{Patch: patch}})
	return true
}

// envNames are the env entries by name, those the plugin writes (which
// hold no secret) as NAME=VALUE.
func envNames(env []corev1.EnvVar) []string {
	var n []string
	for _, e := range env {
		if e.ValueFrom == nil && (strings.HasPrefix(e.Name, "PGPOOL_TLS_") || e.Name == "PGPOOL_ENABLE_TLS" || e.Name == "PGPOOL_USER_HBA_FILE" || e.Name == "PGPOOL_ENABLE_POOL_HBA") {
			n = append(n, e.Name+"="+e.Value)
			continue
		}
		n = append(n, e.Name)
	}
	return n
}

// nameDiff is a short diff of two lists of names (- gone, + new).
func nameDiff(was, now []string) []string {
	var out []string
	for _, w := range was {
		if !slices.Contains(now, w) {
			out = append(out, "- "+w)
		}
	}
	for _, n := range now {
		if !slices.Contains(was, n) {
			out = append(out, "+ "+n)
		}
	}
	if len(out) == 0 {
		out = append(out, "~ values changed")
	}
	return out
}

// restoreTemplate puts the pgpool container's env and volume mounts, the
// volumes and the init containers back as the backup has them, and
// pool_hba.conf in a user ConfigMap that existed then; it reports whether
// the pod template changes.
func (b *builder) restoreTemplate(bk *pgpool.Backup) bool {
	t := b.t
	spec := *t.Template.Spec.DeepCopy()
	c := &spec.Containers[t.ContainerIndex]
	// Only what the plugin manages comes from the backup (layout.
	// BitnamiManaged): the TLS and pool_hba variables, the TLS, CA and
	// config volumes and their mounts, the copying init container; the
	// rest of the template stays as it is now.
	spec.Volumes = restoreManaged(spec.Volumes, bk.Volumes, func(v corev1.Volume) string { return v.Name }, layout.BitnamiManagedVolume)
	spec.InitContainers = restoreManaged(spec.InitContainers, bk.InitContainers, func(c corev1.Container) string { return c.Name }, layout.BitnamiManagedInit)
	c.Env = restoreManaged(c.Env, bk.Env, func(e corev1.EnvVar) string { return e.Name }, layout.BitnamiManagedEnv)
	c.VolumeMounts = restoreManaged(c.VolumeMounts, bk.VolumeMounts, func(m corev1.VolumeMount) string { return m.Name }, layout.BitnamiManagedVolume)
	if len(spec.InitContainers) == 0 {
		spec.InitContainers = nil
	}
	if !bk.HBAGenerated && t.Config.PoolHBA != bk.PoolHBA {
		b.add1(plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: t.Namespace, Name: t.Config.Name},
			Description: fmt.Sprintf("pool_hba.conf exactly as it was before the tls %s", bk.Operation),
			Diff:        "pool_hba.conf:\n" + conf.Diff(t.Config.PoolHBA, bk.PoolHBA, 1),
			Spec:        plan.ConfigPatchSpec{ResourceVersion: t.Config.ResourceVersion, PoolHBA: bk.PoolHBA}})
	}
	before := len(b.p.Steps)
	changed := b.patchTemplate(spec, fmt.Sprintf("the TLS and pool_hba environment, volumes, mounts and init container of the pod template exactly as they were before the tls %s (the rest of the template is kept as it is now)", bk.Operation))
	if changed && len(b.p.Steps) > before {
		// The full diff of what the patch puts back (secret values
		// redacted), not only the names.
		b.p.Steps[len(b.p.Steps)-1].Diff += templateDiff(t.Template.Spec, spec, t.ContainerIndex)
	}
	return changed
}

// restoreManaged is live with the entries managed(key) says the plugin
// manages put back as the backup has them: each such entry of live takes
// the backup's value in place, or goes when the backup has none; one only
// the backup has is appended. Every other entry of live stays, in its
// place.
func restoreManaged[T any](live, backup []T, key func(T) string, managed func(string) bool) []T {
	want := map[string]T{}
	for _, x := range backup {
		if managed(key(x)) {
			want[key(x)] = x
		}
	}
	var out []T
	seen := map[string]bool{}
	for _, x := range live {
		k := key(x)
		if !managed(k) {
			out = append(out, x)
			continue
		}
		if w, ok := want[k]; ok && !seen[k] {
			out = append(out, w)
			seen[k] = true
		}
	}
	for _, x := range backup {
		if k := key(x); managed(k) && !seen[k] {
			out = append(out, x)
			seen[k] = true
		}
	}
	return out
}

// templateDiff is a line diff of the pod template's managed lists as YAML,
// before and after, secret environment values redacted.
func templateDiff(was, now corev1.PodSpec, ci int) string {
	doc := func(s corev1.PodSpec) string {
		c := s.Containers[ci]
		env := make([]corev1.EnvVar, len(c.Env))
		for i, e := range c.Env {
			if e.Value != "" && conf.SecretEnv(e.Name) {
				e.Value = conf.Redacted
			}
			env[i] = e
		}
		y, _ := yaml.Marshal(map[string]any{"env": env, "volumeMounts": c.VolumeMounts, "volumes": s.Volumes, "initContainers": s.InitContainers})
		return string(y)
	}
	d := conf.Diff(doc(was), doc(now), 2)
	if d == "" {
		return ""
	}
	return "pod template (the pgpool container's env and volumeMounts, the volumes, the init containers):\n" + d
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// letters, digits and ._/:=@- (a name from the cluster printed in a
// command line to paste).
func shellQuote(s string) string {
	if s == "" {
		return ""
	}
	for _, r := range s {
		plain := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._/:=@-", r)
		if !plain {
			return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
		}
	}
	return s
}
