package planner

// The TLS volume: JSON patches of the pod template that mount, upgrade and
// unmount it, each with test operations that make the server refuse a
// template that changed since it was read.

import (
	"encoding/json"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

func (b *builder) volumeName() string {
	name := pgpool.TLSVolumeName
	for _, v := range b.t.Template.Spec.Volumes {
		if v.Name == name {
			return "kubectl-pgpool-tls"
		}
	}
	return name
}

func (b *builder) addVolume() {
	name := b.volumeName()
	vol := b.tlsVolume(name)
	mount := corev1.VolumeMount{Name: name, MountPath: b.t.TLSMountPath, ReadOnly: true}
	ci := strconv.Itoa(b.t.ContainerIndex)
	ops := []map[string]any{{"op": "test", "path": "/spec/template/spec/containers/" + ci + "/name", "value": b.t.Container}}
	if len(b.t.Template.Spec.Volumes) == 0 {
		ops = append(ops, map[string]any{"op": "add", "path": "/spec/template/spec/volumes", "value": []corev1.Volume{vol}})
	} else {
		ops = append(ops, map[string]any{"op": "add", "path": "/spec/template/spec/volumes/-", "value": vol})
	}
	if len(b.t.Template.Spec.Containers[b.t.ContainerIndex].VolumeMounts) == 0 {
		ops = append(ops, map[string]any{"op": "add", "path": "/spec/template/spec/containers/" + ci + "/volumeMounts", "value": []corev1.VolumeMount{mount}})
	} else {
		ops = append(ops, map[string]any{"op": "add", "path": "/spec/template/spec/containers/" + ci + "/volumeMounts/-", "value": mount})
	}
	patch, _ := json.Marshal(ops)
	sc := b.t.Template.Spec.SecurityContext
	if sc == nil || sc.FSGroup == nil {
		if cs := b.t.Template.Spec.Containers[b.t.ContainerIndex].SecurityContext; cs != nil && cs.RunAsUser != nil && *cs.RunAsUser != 0 {
			b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the pod runs as UID %d without an fsGroup: tls.key (mode 0600, owned by root) will not be readable by pgpool; set spec.template.spec.securityContext.fsGroup", *cs.RunAsUser))
		}
	}
	b.add1(plan.Step{
		Object:      workloadObject(b.t),
		Description: fmt.Sprintf("mount Secret %s (tls.crt, tls.key mode 0600) and the CA bundle ConfigMap %s (ca.pem) as volume %q at %s in container %s", pgpool.ServerCertName(b.t.Name), tls.CABundleName(b.t.Name), name, b.t.TLSMountPath, b.t.Container),
		Diff:        fmt.Sprintf("+ volume %s: projected secret %s + configMap %s\n+ container %s volumeMount %s -> %s (readOnly)\n", name, pgpool.ServerCertName(b.t.Name), tls.CABundleName(b.t.Name), b.t.Container, name, b.t.TLSMountPath),
		Spec:        plan.WorkloadPatchSpec{Patch: patch},
	})
}

// tlsVolume is the TLS volume: the server Secret's certificate and key and
// the CA bundle, projected into one directory (the image copies it to where
// pgpool reads it).
func (b *builder) tlsVolume(name string) corev1.Volume {
	keyMode, readMode := int32(0o600), int32(0o444)
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: &readMode,
		Sources: []corev1.VolumeProjection{
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: pgpool.ServerCertName(b.t.Name)},
				Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "tls.crt"}, {Key: "tls.key", Path: "tls.key", Mode: &keyMode}}}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: tls.CABundleName(b.t.Name)},
				Items: []corev1.KeyToPath{{Key: tls.BundleKey, Path: "ca.pem"}}}},
		},
	}}}
}

// upgradeVolume replaces a TLS volume that mounts the server Secret's
// ca.crt as ca.pem (written by earlier versions) with the projected one
// that reads the CA bundle. It reports whether the pod template changes.
func (b *builder) upgradeVolume() bool {
	c := b.t.Template.Spec.Containers[b.t.ContainerIndex]
	name := ""
	for _, m := range c.VolumeMounts {
		if m.MountPath == b.t.TLSMountPath {
			name = m.Name
		}
	}
	for i, v := range b.t.Template.Spec.Volumes {
		if v.Name != name || v.Secret == nil || v.Secret.SecretName != pgpool.ServerCertName(b.t.Name) {
			continue
		}
		vp := "/spec/template/spec/volumes/" + strconv.Itoa(i)
		patch, _ := json.Marshal([]map[string]any{
			{"op": "test", "path": vp + "/name", "value": name},
			{"op": "replace", "path": vp, "value": b.tlsVolume(name)},
		})
		b.add1(plan.Step{
			Object:      workloadObject(b.t),
			Description: fmt.Sprintf("volume %q: read ca.pem from the CA bundle ConfigMap %s instead of the server Secret's ca.crt", name, tls.CABundleName(b.t.Name)),
			Diff:        fmt.Sprintf("- volume %s: secret %s\n+ volume %s: projected secret %s + configMap %s\n", name, pgpool.ServerCertName(b.t.Name), name, pgpool.ServerCertName(b.t.Name), tls.CABundleName(b.t.Name)),
			Spec:        plan.WorkloadPatchSpec{Patch: patch},
		})
		return true
	}
	return false
}

func (b *builder) removeVolume() {
	c := b.t.Template.Spec.Containers[b.t.ContainerIndex]
	mi, name := -1, ""
	for i, m := range c.VolumeMounts {
		if m.MountPath == b.t.TLSMountPath {
			mi, name = i, m.Name
		}
	}
	if mi < 0 {
		return
	}
	vi := -1
	for i, v := range b.t.Template.Spec.Volumes {
		if v.Name == name {
			vi = i
		}
	}
	ci := strconv.Itoa(b.t.ContainerIndex)
	mp := "/spec/template/spec/containers/" + ci + "/volumeMounts/" + strconv.Itoa(mi)
	ops := []map[string]any{
		{"op": "test", "path": mp + "/name", "value": name},
		{"op": "remove", "path": mp},
	}
	if vi >= 0 {
		vp := "/spec/template/spec/volumes/" + strconv.Itoa(vi)
		ops = append(ops, map[string]any{"op": "test", "path": vp + "/name", "value": name}, map[string]any{"op": "remove", "path": vp})
	}
	patch, _ := json.Marshal(ops)
	b.add1(plan.Step{
		Object:      workloadObject(b.t),
		Description: fmt.Sprintf("remove the TLS volume %q (mounted at %s) from the pod template", name, b.t.TLSMountPath),
		Diff:        fmt.Sprintf("- volume %s\n- container %s volumeMount %s -> %s\n", name, c.Name, name, b.t.TLSMountPath),
		Spec:        plan.WorkloadPatchSpec{Patch: patch},
	})
}
