package planner

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// rollback puts back what the backup holds: the Certificates (spec and
// issuer), the CA bundle, the config, the TLS volume; restarts the pods
// started since the backup; deletes what did not exist then; and uses up
// the backup.
func (b *builder) rollback() {
	t, bk := b.t, b.t.Backup
	ssl := conf.ParsePgpoolConf(bk.PgpoolConf).Bool("ssl")
	if ssl {
		b.authMode = conf.GuessAuthMode(bk.PoolHBA)
	}
	b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("rolling back to the state before the tls %s of %s (the backup in Secret %s/%s)", bk.Operation, bk.Taken, t.Namespace, pgpool.BackupName(t.Name)))
	if bk.Done {
		age := ""
		if at, err := time.Parse(time.RFC3339, bk.Taken); err == nil {
			age = fmt.Sprintf(", %s ago", b.f.Now.Sub(at).Round(time.Minute))
		}
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("that tls %s finished (the backup was taken %s%s): rolling back undoes a completed operation and returns to the state then", bk.Operation, bk.Taken, age))
	}
	if d := editedSince(t); d != "" {
		b.p.Warnings = append(b.p.Warnings, "--force: the edits made to the config since the tls "+bk.Operation+" are discarded:\n"+d)
	}
	if c := changedSince(t); len(c) > 0 {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("--force: the changes made to %s since the tls %s are discarded", strings.Join(c, " and "), bk.Operation))
	}
	names := []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)}
	for _, n := range names {
		want, cur := bk.Certificates[n], t.Certificates[n]
		if want == nil || (cur != nil && reflect.DeepEqual(want.Spec, cur.Spec)) {
			continue
		}
		m, _ := json.Marshal(want)
		desc := fmt.Sprintf("put Certificate %s back as it was (issuer %s %q)", n, tls.IssuerKind(want.Spec.IssuerRef.Kind), want.Spec.IssuerRef.Name)
		diff := ""
		if cur != nil && !sameIssuer(cur.Spec.IssuerRef, want.Spec.IssuerRef) {
			diff = fmt.Sprintf("- issuerRef: %s %s\n+ issuerRef: %s %s\n", tls.IssuerKind(cur.Spec.IssuerRef.Kind), cur.Spec.IssuerRef.Name, tls.IssuerKind(want.Spec.IssuerRef.Kind), want.Spec.IssuerRef.Name)
		}
		b.add1(plan.Step{Object: certObject(t, n), Description: desc, Diff: diff, Spec: plan.ApplyCertificateSpec{Manifest: m}})
		after := 0
		if cur != nil {
			after = tls.Revision(cur)
		}
		b.waitCert(n, after, false)
	}
	if bk.Bundle != nil && (t.Bundle == nil || !reflect.DeepEqual(t.Bundle.Data, bk.Bundle)) {
		var diff strings.Builder
		for _, x := range tls.Subjects([]byte(bk.Bundle[tls.BundleKey])) {
			fmt.Fprintf(&diff, "  CA: %s\n", x)
		}
		b.add1(plan.Step{
			Object:      plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: t.Namespace, Name: tls.CABundleName(t.Name)},
			Description: "put the CA bundle back as it was",
			Diff:        diff.String(),
			Spec:        plan.ApplyBundleSpec{Data: bk.Bundle},
		})
	}
	var changed bool
	if inTemplate(t) {
		changed = b.restoreTemplate(bk)
	} else {
		b.patchConfig(bk.PgpoolConf, bk.PoolHBA, fmt.Sprintf("pgpool.conf and pool_hba.conf exactly as they were before the tls %s", bk.Operation))
		changed = b.restoreVolume(bk)
	}
	restarted := b.rollBack(changed, ssl)
	if c := bk.Certificates[pgpool.ServerCertName(t.Name)]; c != nil {
		b.issuer = pgpool.IssuerRef{Name: c.Spec.IssuerRef.Name, Kind: tls.IssuerKind(c.Spec.IssuerRef.Kind)}
	}
	b.verifyRollback(ssl, restarted)
	if inTemplate(t) && bk.HBAGenerated && b.hbaOurs() {
		b.add1(plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: t.Namespace, Name: t.Config.Name},
			Description: "delete ConfigMap " + t.Config.Name + " (it did not exist before; the container generates its pool_hba.conf again)", Spec: plan.DeleteSpec{}})
	}
	if bk.Bundle == nil && t.Bundle != nil && t.BundleOurs {
		b.add1(plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: t.Namespace, Name: t.Bundle.Name},
			Description: "delete the CA bundle ConfigMap " + t.Bundle.Name + " (it did not exist before)", Spec: plan.DeleteSpec{}})
	}
	for _, n := range names {
		if bk.Certificates[n] != nil {
			continue
		}
		c := t.Certificates[n]
		if c != nil && !tls.Ours(c, t.Name) {
			continue // someone else's: never ours to delete
		}
		secret := n
		if c != nil {
			b.add1(plan.Step{Object: certObject(t, n), Description: "delete Certificate " + n + " (it did not exist before)", Spec: plan.DeleteSpec{}})
			secret = c.Spec.SecretName
		} else if m := t.CertSecrets[n]; m == nil || !tls.Ours(m, t.Name) {
			continue
		}
		b.add1(plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "Secret", Namespace: t.Namespace, Name: secret},
			Description: "delete its Secret " + secret + " (the private key goes with it)", Spec: plan.DeleteSpec{}})
	}
	b.add1(plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "Secret", Namespace: t.Namespace, Name: pgpool.BackupName(t.Name)},
		Description: "delete the backup (it is used up: the pgpool is as it was)", Spec: plan.DeleteSpec{}})
}

// tlsMount finds the volume mounted at the TLS mount path, if any.
func tlsMount(mounts []corev1.VolumeMount, volumes []corev1.Volume, path string) (*corev1.VolumeMount, *corev1.Volume) {
	for i := range mounts {
		if mounts[i].MountPath != path {
			continue
		}
		for j := range volumes {
			if volumes[j].Name == mounts[i].Name {
				return &mounts[i], &volumes[j]
			}
		}
		return &mounts[i], nil
	}
	return nil, nil
}

// restoreVolume puts the TLS volume and mount back as the backup has them
// (none, or the ones it had); every other volume is left as it is now. It
// reports whether the pod template changes.
func (b *builder) restoreVolume(bk *pgpool.Backup) bool {
	t := b.t
	c := t.Template.Spec.Containers[t.ContainerIndex]
	wantM, wantV := tlsMount(bk.VolumeMounts, bk.Volumes, t.TLSMountPath)
	curM, curV := tlsMount(c.VolumeMounts, t.Template.Spec.Volumes, t.TLSMountPath)
	switch {
	case wantM == nil && curM == nil:
		return false
	case wantM == nil:
		b.removeVolume()
		return true
	case curM != nil && reflect.DeepEqual(*wantM, *curM) && reflect.DeepEqual(wantV, curV):
		return false
	}
	ci := strconv.Itoa(t.ContainerIndex)
	ops := []map[string]any{{"op": "test", "path": "/spec/template/spec/containers/" + ci + "/name", "value": t.Container}}
	if curM != nil {
		// Replace the mount and its volume in place.
		for i, m := range c.VolumeMounts {
			if m.MountPath == t.TLSMountPath {
				mp := "/spec/template/spec/containers/" + ci + "/volumeMounts/" + strconv.Itoa(i)
				ops = append(ops, map[string]any{"op": "test", "path": mp + "/name", "value": m.Name}, map[string]any{"op": "replace", "path": mp, "value": *wantM})
			}
		}
		if curV != nil {
			for i, v := range t.Template.Spec.Volumes {
				if v.Name == curV.Name {
					vp := "/spec/template/spec/volumes/" + strconv.Itoa(i)
					ops = append(ops, map[string]any{"op": "test", "path": vp + "/name", "value": v.Name})
					if wantV != nil {
						ops = append(ops, map[string]any{"op": "replace", "path": vp, "value": *wantV})
					}
				}
			}
		} else if wantV != nil {
			ops = append(ops, appendOp("/spec/template/spec/volumes", len(t.Template.Spec.Volumes), *wantV))
		}
	} else {
		ops = append(ops, appendOp("/spec/template/spec/containers/"+ci+"/volumeMounts", len(c.VolumeMounts), *wantM))
		if wantV != nil {
			ops = append(ops, appendOp("/spec/template/spec/volumes", len(t.Template.Spec.Volumes), *wantV))
		}
	}
	patch, _ := json.Marshal(ops)
	// The template the patch makes, for the plan's full diff.
	after := t.Template.Spec.DeepCopy()
	ac := &after.Containers[t.ContainerIndex]
	if curM != nil {
		for i := range ac.VolumeMounts {
			if ac.VolumeMounts[i].MountPath == t.TLSMountPath {
				ac.VolumeMounts[i] = *wantM
			}
		}
		for i := range after.Volumes {
			if curV != nil && wantV != nil && after.Volumes[i].Name == curV.Name {
				after.Volumes[i] = *wantV
			}
		}
		if curV == nil && wantV != nil {
			after.Volumes = append(after.Volumes, *wantV)
		}
	} else {
		ac.VolumeMounts = append(ac.VolumeMounts, *wantM)
		if wantV != nil {
			after.Volumes = append(after.Volumes, *wantV)
		}
	}
	b.add1(plan.Step{
		Object:      workloadObject(t),
		Description: fmt.Sprintf("put the TLS volume %q back at %s as it was", wantM.Name, t.TLSMountPath),
		Diff:        templateDiff(t.Template.Spec, *after, t.ContainerIndex),
		Spec:        plan.WorkloadPatchSpec{Patch: patch},
	})
	return true
}

// appendOp appends v to the list at path, creating it when it is empty.
func appendOp(path string, n int, v any) map[string]any {
	if n == 0 {
		return map[string]any{"op": "add", "path": path, "value": []any{v}}
	}
	return map[string]any{"op": "add", "path": path + "/-", "value": v}
}

// rollBack restarts the pods started since the backup (they run what the
// failed or undone operation set up), the ones that are not Ready first. A
// StatefulSet controller does not replace a pod that never becomes Ready
// by itself, so those are evicted even when the controller rolls the rest;
// a Deployment's controller scales the broken ReplicaSet down by itself.
func (b *builder) rollBack(templateChanged, ssl bool) []string {
	t, bk := b.t, b.t.Backup
	before := map[string]bool{}
	for _, u := range bk.Pods {
		before[u] = true
	}
	var changed []corev1.Pod
	for i := len(t.Pods) - 1; i >= 0; i-- { // highest ordinal first
		if p := t.Pods[i]; !before[string(p.UID)] {
			changed = append(changed, p)
		}
	}
	sort.SliceStable(changed, func(i, j int) bool { // and the ones not Ready before those
		return !pgpool.PodReady(&changed[i]) && pgpool.PodReady(&changed[j])
	})
	pods := b.pods()
	pods.Known = nil
	for _, p := range changed {
		pods.Known = append(pods.Known, string(p.UID))
	}
	controllerRolls := templateChanged && t.UpdateStrategy != "OnDelete"
	b.p.Restart = "evict"
	if !controllerRolls || t.Layout.StablePodNames() {
		for _, p := range changed {
			if controllerRolls && pgpool.PodReady(&p) {
				continue // the controller replaces it
			}
			b.add1(plan.Step{
				Object:      plan.Object{APIVersion: "v1", Kind: "Pod", Namespace: t.Namespace, Name: p.Name},
				Description: fmt.Sprintf("evict pod %s (started since the backup), wait for its replacement to be Ready, check by handshake that it serves TLS %s%s", p.Name, onOff(ssl), loginDesc(b.login())),
				Spec: plan.EvictSpec{UID: string(p.UID), SameName: t.Layout.StablePodNames(), Pods: pods,
					Check: plan.Check{TLS: ssl, Login: b.login()}},
			})
		}
	}
	if controllerRolls {
		b.p.Restart = "rollout"
		b.add1(plan.Step{Object: workloadObject(t),
			Description: fmt.Sprintf("wait for the %s controller's rolling update (%s strategy) to put every pod back on the restored template, and for the pods started since the backup to be gone", t.Kind, t.UpdateStrategy),
			Spec:        plan.RolloutSpec{Pods: pods}})
	}
	return pods.Known
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// verifyRollback checks the end state of a rollback: the config's ssl and
// the TLS volume as before, every pod Ready, none of restarted (the pods
// started since the backup) left.
func (b *builder) verifyRollback(ssl bool, restarted []string) {
	b.verify(onOff(ssl))
	v := &b.p.Steps[len(b.p.Steps)-1]
	spec := v.Spec.(plan.VerifySpec)
	spec.Pods.Known = append([]string{}, restarted...)
	v.Spec = spec
	v.Description = fmt.Sprintf("verify: ssl %s in the config and the TLS volume %s, as before; every pod Ready, none left from since the backup%s", onOff(ssl), map[bool]string{true: "mounted", false: "not mounted"}[ssl], verifyLoginDesc(b.login()))
}
