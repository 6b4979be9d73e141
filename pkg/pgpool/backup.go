package pgpool

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// Backup is what a pgpool was before an operation's first write: the config
// files, the pod-template fields the plugin touches, which Certificates
// existed (and on which issuer), the CA bundle and the pods that ran. It is
// kept in a Secret the plugin owns (BackupName), since pgpool.conf may hold
// passwords, and is never printed. `tls rollback` restores it.
type Backup struct {
	// Operation is the operation it was taken for; Taken when (RFC 3339).
	Operation string `json:"operation"`
	Taken     string `json:"taken"`
	// Done: that operation succeeded (a new operation replaces the
	// backup); while false, the operation is unfinished and running any
	// operation again keeps this backup (it holds the state before it).
	Done bool `json:"-"`
	// ResourceVersion is the backup Secret's when it was read: the next
	// write of the backup is conditional on it. Digest is BackupDigest of
	// its data.
	ResourceVersion string `json:"-"`
	Digest          string `json:"-"`

	PgpoolConf string `json:"-"`
	PoolHBA    string `json:"-"`
	// WrotePgpoolConf and WrotePoolHBA are the files as the operation
	// leaves them (the same as before for rotate and change-issuer): a
	// rollback refuses to discard edits made since. Wrote is false in
	// backups of older versions, which hold no such record.
	WrotePgpoolConf string `json:"-"`
	WrotePoolHBA    string `json:"-"`
	Wrote           bool   `json:"wrote,omitempty"`
	// After are digests of the Certificates' specs and of the TLS volume
	// as the operation left them, written when it succeeded (nil before,
	// or in backups of older versions): a rollback refuses to discard
	// changes made to them since.
	After map[string]string `json:"-"`
	// Container, Volumes and VolumeMounts: the pgpool container's name, the
	// pod's volumes and the container's volume mounts.
	Container    string               `json:"container"`
	Volumes      []corev1.Volume      `json:"volumes"`
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts"`
	// Env and InitContainers: the pgpool container's environment and the
	// pod's init containers (a layout that keeps TLS in the pod template,
	// Bitnami's); HBAGenerated: pool_hba.conf was the container's own.
	Env            []corev1.EnvVar    `json:"env,omitempty"`
	InitContainers []corev1.Container `json:"initContainers,omitempty"`
	HBAGenerated   bool               `json:"hbaGenerated,omitempty"`
	// Certificates maps NAME-server-cert and NAME-client-cert to their
	// name, labels and spec then (nil: the Certificate did not exist).
	Certificates map[string]*cmapi.Certificate `json:"certificates"`
	// Revisions are the Certificates' revisions then (a later one was
	// issued since).
	Revisions map[string]int `json:"revisions,omitempty"`
	// TLSAnnotation is the workload's AnnotationTLS then.
	TLSAnnotation string `json:"tlsAnnotation,omitempty"`
	// Bundle is the CA bundle ConfigMap's data then (nil: none).
	Bundle map[string]string `json:"bundle,omitempty"`
	// Pods are the UIDs of the workload's pods then: a pod not among them
	// was started after the first write.
	Pods []string `json:"pods"`
	// Owner is what the KubeDB Pgpool object said of TLS then (nil: there
	// was none).
	Owner *OwnerSpec `json:"owner,omitempty"`
}

// Backup Secret keys and annotations.
const (
	backupStateKey       = "backup.json"
	backupPgpoolConfKey  = "pgpool.conf"
	backupPoolHBAKey     = "pool_hba.conf"
	backupWroteConfKey   = "wrote-pgpool.conf"
	backupWroteHBAKey    = "wrote-pool_hba.conf"
	AnnotationBackupDone = "kubectl-pgpool.io/backup-done"
	// AnnotationBackupAfter holds Backup.After as JSON.
	AnnotationBackupAfter = "kubectl-pgpool.io/backup-after"
	// AnnotationBackupDigest, on the workload, is BackupDigest of the
	// backup Secret the plugin wrote: written before the Secret, by whoever
	// may change the workload, so that a Secret edited by someone who may
	// only write Secrets is not applied to the pod template.
	AnnotationBackupDigest = "kubectl-pgpool.io/backup-digest"
	// AnnotationBundleDigest, on the workload, is tls.BundleDigest of the
	// CA bundle as the plugin last wrote it.
	AnnotationBundleDigest = "kubectl-pgpool.io/ca-bundle-digest"
)

// BackupDigest is a digest of a backup Secret's data (tls.Digest).
func BackupDigest(data map[string][]byte) string { return tls.Digest(data) }

// BundleChanged says why the CA bundle is not as the plugin last wrote it
// ("" when it is, or there is none): its digest on the workload is missing
// or differs. Its previous, backend and kept parts then prove nothing.
func (t *Target) BundleChanged() string {
	if t.Bundle == nil {
		return ""
	}
	switch want := t.Annotations[AnnotationBundleDigest]; {
	case want == "":
		return fmt.Sprintf("ConfigMap %s/%s has no digest on %s (annotation %s): written by an older kubectl-pgpool or by someone else", t.Namespace, t.Bundle.Name, t, AnnotationBundleDigest)
	case want != tls.BundleDigest(t.Bundle.Data):
		return fmt.Sprintf("ConfigMap %s/%s changed since kubectl-pgpool wrote it (its digest on %s, annotation %s, differs)", t.Namespace, t.Bundle.Name, t, AnnotationBundleDigest)
	}
	return ""
}

// BackupProblem says why the backup must not be applied to t, or "": its
// digest is not the one the plugin recorded on the workload when it wrote
// it (someone else wrote or changed the Secret), or it would bring into
// the pod template what was not there and that the plugin never writes (a
// hostPath volume, a privileged container, an image the template does not
// use).
func (t *Target) BackupProblem() string {
	b := t.Backup
	if b == nil {
		return ""
	}
	secret := fmt.Sprintf("backup Secret %s/%s", t.Namespace, BackupName(t.Name))
	switch want := t.Annotations[AnnotationBackupDigest]; {
	case want == "":
		return fmt.Sprintf("%s has no digest on %s (annotation %s): it was written by an older kubectl-pgpool or by someone else, so it is not applied", secret, t, AnnotationBackupDigest)
	case want != b.Digest:
		return fmt.Sprintf("%s does not match the digest kubectl-pgpool recorded on %s when it wrote it (annotation %s): it was changed since, so it is not applied", secret, t, AnnotationBackupDigest)
	}
	return backupAdds(secret, b, &t.Template.Spec)
}

func backupAdds(secret string, b *Backup, spec *corev1.PodSpec) string {
	images := map[string]bool{}
	vols := map[string]bool{}
	for _, c := range append(append([]corev1.Container(nil), spec.Containers...), spec.InitContainers...) {
		images[c.Image] = true
	}
	for _, v := range spec.Volumes {
		vols[v.Name] = true
	}
	for _, v := range b.Volumes {
		if !vols[v.Name] && v.HostPath != nil {
			return fmt.Sprintf("%s would add volume %s from the node's path %s, which kubectl-pgpool never writes: it is not applied", secret, v.Name, v.HostPath.Path)
		}
	}
	for _, c := range b.InitContainers {
		if !images[c.Image] {
			return fmt.Sprintf("%s would add init container %s with image %s, which the pod template does not use: it is not applied", secret, c.Name, c.Image)
		}
		if sc := c.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
			return fmt.Sprintf("%s would add the privileged init container %s: it is not applied", secret, c.Name)
		}
	}
	return ""
}

// LeaseName is the Lease that locks a pgpool while an operation runs.
func LeaseName(pgpool string) string { return pgpool + "-kubectl-pgpool-lock" }

// LockDuration is how long the lock of a run that stopped renewing it (it
// was killed) lasts: the next run takes it over after watching it go
// unrenewed that long.
const LockDuration = 60 * time.Second

// BackupName is the Secret that holds a pgpool's backup.
func BackupName(pgpool string) string { return pgpool + "-kubectl-pgpool-backup" }

// TakeBackup is the backup of t as discovery found it, for operation op at
// time now (RFC 3339).
func TakeBackup(t *Target, op, now string) *Backup {
	b := &Backup{Operation: op, Taken: now, PgpoolConf: t.Config.PgpoolConf, PoolHBA: t.Config.PoolHBA,
		Container: t.Container, Volumes: t.Template.Spec.Volumes,
		VolumeMounts: t.Template.Spec.Containers[t.ContainerIndex].VolumeMounts,
		Env:          t.Template.Spec.Containers[t.ContainerIndex].Env, InitContainers: t.Template.Spec.InitContainers,
		HBAGenerated: t.Config.Generated,
		Certificates: map[string]*cmapi.Certificate{}, TLSAnnotation: t.Annotations[AnnotationTLS]}
	for _, n := range []string{ServerCertName(t.Name), ClientCertName(t.Name)} {
		b.Certificates[n] = nil
		if c := t.Certificates[n]; c != nil {
			if b.Revisions == nil {
				b.Revisions = map[string]int{}
			}
			b.Revisions[n] = tls.Revision(c)
			b.Certificates[n] = &cmapi.Certificate{
				TypeMeta:   metav1.TypeMeta{APIVersion: "cert-manager.io/v1", Kind: "Certificate"},
				ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace, Labels: c.Labels},
				Spec:       c.Spec}
		}
	}
	if t.Bundle != nil && t.BundleOurs {
		b.Bundle = t.Bundle.Data
	}
	for _, p := range t.Pods {
		b.Pods = append(b.Pods, string(p.UID))
	}
	if t.Owner != nil {
		spec := t.Owner.Spec
		b.Owner = &spec
	}
	return b
}

// Secret renders the backup as the Secret that keeps it.
func (b *Backup) Secret(ns, pgpool string) (*corev1.Secret, error) {
	state, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: BackupName(pgpool), Namespace: ns,
			Labels:      map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: pgpool},
			Annotations: map[string]string{AnnotationBackupDone: fmt.Sprint(b.Done)}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{backupStateKey: state, backupPgpoolConfKey: []byte(b.PgpoolConf), backupPoolHBAKey: []byte(b.PoolHBA),
			backupWroteConfKey: []byte(b.WrotePgpoolConf), backupWroteHBAKey: []byte(b.WrotePoolHBA)},
	}, nil
}

// ReadBackup reads a backup Secret; it refuses one the plugin did not write.
func ReadBackup(s *corev1.Secret, pgpool string) (*Backup, error) {
	if !tls.Ours(s, pgpool) {
		return nil, &tls.NotOursError{Kind: "Secret", Namespace: s.Namespace, Name: s.Name}
	}
	b := &Backup{}
	if err := json.Unmarshal(s.Data[backupStateKey], b); err != nil {
		return nil, fmt.Errorf("Secret %s/%s: the backup is unreadable (%v): delete it (`kubectl delete secret -n %s %s`); the next operation takes a new one", s.Namespace, s.Name, err, s.Namespace, s.Name)
	}
	b.PgpoolConf, b.PoolHBA = string(s.Data[backupPgpoolConfKey]), string(s.Data[backupPoolHBAKey])
	b.WrotePgpoolConf, b.WrotePoolHBA = string(s.Data[backupWroteConfKey]), string(s.Data[backupWroteHBAKey])
	b.Done = s.Annotations[AnnotationBackupDone] == "true"
	if a := s.Annotations[AnnotationBackupAfter]; a != "" {
		_ = json.Unmarshal([]byte(a), &b.After)
	}
	b.ResourceVersion = s.ResourceVersion
	b.Digest = BackupDigest(s.Data)
	return b, nil
}

// Digests are what a rollback compares to tell changes made since an
// operation: a digest of each Certificate's spec ("absent" when there is
// none) and of the TLS volume (the container's mounts at mountPath and the
// volumes they name).
func Digests(certs map[string]*cmapi.Certificate, names []string, tmpl *corev1.PodTemplateSpec, container int, mountPath string) map[string]string {
	sum := func(v any) string {
		b, _ := json.Marshal(v)
		h := sha256.Sum256(b)
		return hex.EncodeToString(h[:8])
	}
	out := map[string]string{}
	for _, n := range names {
		out["Certificate "+n] = "absent"
		if c := certs[n]; c != nil {
			out["Certificate "+n] = sum(c.Spec)
		}
	}
	var mounts []corev1.VolumeMount
	var vols []corev1.Volume
	if container >= 0 && container < len(tmpl.Spec.Containers) {
		for _, m := range tmpl.Spec.Containers[container].VolumeMounts {
			if m.MountPath == mountPath || strings.HasPrefix(m.MountPath, mountPath+"/") {
				mounts = append(mounts, m)
				for _, v := range tmpl.Spec.Volumes {
					if v.Name == m.Name {
						vols = append(vols, v)
					}
				}
			}
		}
	}
	out["the TLS volume"] = "absent"
	if len(mounts) > 0 {
		out["the TLS volume"] = sum([]any{mounts, vols})
	}
	return out
}

// Digests of t as discovered.
func (t *Target) Digests() map[string]string {
	return Digests(t.Certificates, []string{ServerCertName(t.Name), ClientCertName(t.Name)}, &t.Template, t.ContainerIndex, t.TLSMountPath)
}
