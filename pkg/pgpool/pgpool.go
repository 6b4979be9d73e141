// Package pgpool is the model of one pgpool in a cluster as discovery found
// it (workload, pgpool container, config, pods, Services, Certificates, CA
// bundle, today's TLS state) and the conventions that name its objects
// (NAME-server-cert, the annotations, the TLS paths). It does no I/O: pkg
// discover fills it in, the planner reads it.
package pgpool

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// Annotation keys kubectl-pgpool writes on the workload.
const (
	AnnotationTLS           = "kubectl-pgpool.io/tls"
	AnnotationLastOperation = "kubectl-pgpool.io/last-operation"
	// LabelUser marks a client Certificate issued for one database user
	// (tls client-cert).
	LabelUser = "kubectl-pgpool.io/user"
)

// Layout paths: the TLS Secret is mounted at ConfigMountPath + "/tls"; the
// image's entrypoint copies it to PgpoolTLSDir, where pgpool reads it.
const (
	TLSVolumeName = "certs"
	PgpoolTLSDir  = "/opt/pgpool-II/tls"
)

// Workload kinds, in discovery order.
var (
	StatefulSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}
	Deployments  = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	PetSets      = schema.GroupVersionResource{Group: "apps.k8s.appscode.com", Version: "v1", Resource: "petsets"}
)

// Config is the object that carries pgpool.conf and pool_hba.conf.
type Config struct {
	Kind            string `json:"kind"` // ConfigMap or Secret
	Name            string `json:"name"`
	MountPath       string `json:"mountPath"`
	ResourceVersion string `json:"resourceVersion"`
	PgpoolConf      string `json:"-"`
	PoolHBA         string `json:"-"`
	// Labels and Annotations of the ConfigMap or Secret (who manages it).
	Labels      map[string]string `json:"-"`
	Annotations map[string]string `json:"-"`
}

// IssuerRef names a cert-manager issuer.
type IssuerRef struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // Issuer or ClusterIssuer
}

// TLSState is what is configured today.
type TLSState struct {
	Enabled  bool      `json:"enabled"`
	SSLMode  string    `json:"sslMode,omitempty"`
	AuthMode string    `json:"clientAuthMode,omitempty"`
	Issuer   IssuerRef `json:"issuer,omitempty"`
	// VolumePresent: the workload mounts a TLS volume at TLSMountPath.
	VolumePresent bool `json:"volumePresent"`
	// HBAEnforced: enable_pool_hba = on, so pgpool reads pool_hba.conf
	// (without it, require and cert are not enforced).
	HBAEnforced bool `json:"poolHBAEnforced"`
}

// Target is one pgpool as found in the cluster.
type Target struct {
	Namespace      string                      `json:"namespace"`
	Name           string                      `json:"name"`
	Kind           string                      `json:"kind"`
	APIVersion     string                      `json:"apiVersion"`
	GVR            schema.GroupVersionResource `json:"-"`
	UID            string                      `json:"uid"`
	Annotations    map[string]string           `json:"-"`
	Labels         map[string]string           `json:"-"`
	Template       corev1.PodTemplateSpec      `json:"-"`
	Selector       *metav1.LabelSelector       `json:"-"`
	Replicas       int32                       `json:"replicas"`
	UpdateStrategy string                      `json:"updateStrategy"`
	Container      string                      `json:"container"`
	// Owners are the workload's owner references.
	Owners []metav1.OwnerReference `json:"-"`
	// Owner is the KubeDB Pgpool object that controls the workload, as
	// read (nil: none, or none that could be read).
	Owner *Owner `json:"-"`
	// Layout is how this pgpool is deployed (set by discovery).
	Layout         Layout                        `json:"-"`
	ContainerIndex int                           `json:"containerIndex"`
	Config         Config                        `json:"config"`
	TLSMountPath   string                        `json:"tlsMountPath"`
	Pods           []corev1.Pod                  `json:"-"`
	Services       []string                      `json:"services"`
	Headless       string                        `json:"headlessService,omitempty"`
	State          TLSState                      `json:"state"`
	Certificates   map[string]*cmapi.Certificate `json:"-"`
	// CertSecrets are the metadata of the Secrets NAME-server-cert and
	// NAME-client-cert that exist (their data is not kept).
	CertSecrets map[string]*metav1.ObjectMeta `json:"-"`
	// Bundle is the CA bundle ConfigMap (tls.CABundleName), nil when there
	// is none.
	Bundle *corev1.ConfigMap `json:"-"`
	// BundleOurs: Bundle carries the plugin's label (else it belongs to
	// someone else and is never touched).
	BundleOurs bool `json:"-"`
	// Backup is the backup taken before the last operation's first write
	// (BackupName), nil when there is none; BackupForeign: a Secret of that
	// name exists that the plugin did not write (it is never touched).
	Backup        *Backup `json:"-"`
	BackupForeign bool    `json:"-"`
}

// ServerCertName and ClientCertName are the Certificates of a pgpool, as
// KubeDB names them (NAME-ALIAS-cert).
func ServerCertName(name string) string { return name + "-server-cert" }

// ClientCertName is the client Certificate's name.
func ClientCertName(name string) string { return name + "-client-cert" }

// Paths returns where pgpool reads its TLS files (the layout says).
func (t *Target) Paths() conf.Paths { return t.Layout.Paths() }

// Port is the port pgpool listens on, from its config (9999 by default).
func (t *Target) Port() int {
	if v, ok := conf.ParsePgpoolConf(t.Config.PgpoolConf).Get("port"); ok {
		if p, err := strconv.Atoi(v); err == nil {
			return p
		}
	}
	return 9999
}

// String names the workload, e.g. "StatefulSet demo/pgpool".
func (t *Target) String() string { return fmt.Sprintf("%s %s/%s", t.Kind, t.Namespace, t.Name) }

// FromWorkload reads the model from a workload object (StatefulSet,
// Deployment or PetSet): its pod template, selector, replicas, update
// strategy and the pgpool container.
func FromWorkload(obj *unstructured.Unstructured, kind string, gvr schema.GroupVersionResource) (*Target, error) {
	t := &Target{
		Namespace: obj.GetNamespace(), Name: obj.GetName(), Kind: kind, APIVersion: obj.GetAPIVersion(),
		GVR: gvr, UID: string(obj.GetUID()), Annotations: obj.GetAnnotations(), Labels: obj.GetLabels(), Owners: obj.GetOwnerReferences(),
	}
	tmpl, ok, err := unstructured.NestedMap(obj.Object, "spec", "template")
	if err != nil || !ok {
		return nil, fmt.Errorf("%s: has no spec.template", t)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &t.Template); err != nil {
		return nil, fmt.Errorf("%s: read pod template: %w", t, err)
	}
	sel, ok, _ := unstructured.NestedMap(obj.Object, "spec", "selector")
	if ok {
		t.Selector = &metav1.LabelSelector{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(sel, t.Selector); err != nil {
			return nil, fmt.Errorf("%s: read selector: %w", t, err)
		}
	}
	if r, ok, _ := unstructured.NestedInt64(obj.Object, "spec", "replicas"); ok {
		t.Replicas = int32(r)
	} else {
		t.Replicas = 1
	}
	switch kind {
	case "Deployment":
		t.UpdateStrategy, _, _ = unstructured.NestedString(obj.Object, "spec", "strategy", "type")
		if t.UpdateStrategy == "" {
			t.UpdateStrategy = "RollingUpdate"
		}
	default:
		t.UpdateStrategy, _, _ = unstructured.NestedString(obj.Object, "spec", "updateStrategy", "type")
		if t.UpdateStrategy == "" {
			t.UpdateStrategy = "RollingUpdate"
		}
	}
	t.ContainerIndex = -1
	for i, c := range t.Template.Spec.Containers {
		if c.Name == "pgpool" {
			t.ContainerIndex = i
			break
		}
	}
	if t.ContainerIndex < 0 {
		for i, c := range t.Template.Spec.Containers {
			if strings.Contains(c.Image, "pgpool") {
				t.ContainerIndex = i
				break
			}
		}
	}
	if t.ContainerIndex < 0 {
		var names []string
		for _, c := range t.Template.Spec.Containers {
			names = append(names, c.Name+" ("+c.Image+")")
		}
		return nil, fmt.Errorf("%s runs no pgpool container (none is named pgpool or has pgpool in its image; it has %s): is this the pgpool?", t, strings.Join(names, ", "))
	}
	t.Container = t.Template.Spec.Containers[t.ContainerIndex].Name
	return t, nil
}

// SortPods orders pods by name, StatefulSet ordinals numerically.
func SortPods(pods []corev1.Pod) {
	sort.Slice(pods, func(i, j int) bool { return podLess(pods[i].Name, pods[j].Name) })
}

func podLess(a, b string) bool {
	ai, bi := ordinal(a), ordinal(b)
	if ai >= 0 && bi >= 0 && a[:strings.LastIndex(a, "-")] == b[:strings.LastIndex(b, "-")] {
		return ai < bi
	}
	return a < b
}

func ordinal(name string) int {
	i := strings.LastIndex(name, "-")
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil {
		return -1
	}
	return n
}

// LastOperation is the value of AnnotationLastOperation: what the last
// run did and how it ended.
type LastOperation struct {
	Operation string `json:"operation"`
	Time      string `json:"time"`
	Result    string `json:"result"`
	Error     string `json:"error,omitempty"`
	By        string `json:"by,omitempty"`
}

// LastOperation reads the workload's last-operation annotation (zero when
// there is none).
func (t *Target) LastOperation() LastOperation {
	var lo LastOperation
	_ = json.Unmarshal([]byte(t.Annotations[AnnotationLastOperation]), &lo)
	return lo
}

// recordedTLS is the value of AnnotationTLS.
type recordedTLS struct {
	SSLMode  string    `json:"sslMode"`
	AuthMode string    `json:"clientAuthMode"`
	Issuer   IssuerRef `json:"issuer"`
}

// TLSAnnotation renders the AnnotationTLS value.
func TLSAnnotation(sslMode, authMode string, issuer IssuerRef) string {
	b, _ := json.Marshal(recordedTLS{SSLMode: sslMode, AuthMode: authMode, Issuer: issuer})
	return string(b)
}

// ReadState derives today's TLS state from the config, the pod template,
// the recorded annotation and the server Certificate.
func (t *Target) ReadState() {
	pc := conf.ParsePgpoolConf(t.Config.PgpoolConf)
	t.State.Enabled = pc.Bool("ssl")
	t.State.HBAEnforced = pc.Bool("enable_pool_hba")
	for _, v := range t.Template.Spec.Containers[t.ContainerIndex].VolumeMounts {
		if v.MountPath == t.TLSMountPath {
			t.State.VolumePresent = true
		}
	}
	var rec recordedTLS
	if a := t.Annotations[AnnotationTLS]; a != "" && json.Unmarshal([]byte(a), &rec) == nil {
		t.State.SSLMode, t.State.AuthMode, t.State.Issuer = rec.SSLMode, rec.AuthMode, rec.Issuer
	}
	if ssl, auth, ok := conf.HBAModes(t.Config.PoolHBA); ok {
		t.State.SSLMode, t.State.AuthMode = ssl, auth
	}
	if t.State.AuthMode == "" {
		t.State.AuthMode = conf.GuessAuthMode(t.Config.PoolHBA)
	}
	if t.State.SSLMode == "" {
		t.State.SSLMode = "disable"
		if t.State.Enabled {
			t.State.SSLMode = conf.HBASSLMode(t.Config.PoolHBA)
		}
	}
	if crt := t.Certificates[ServerCertName(t.Name)]; crt != nil {
		t.State.Issuer = IssuerRef{Name: crt.Spec.IssuerRef.Name, Kind: tls.IssuerKind(crt.Spec.IssuerRef.Kind)}
	}
}

// Owns reports whether the workload t controls p: a StatefulSet's or
// PetSet's pods name it as their owner; a Deployment's are owned by one of
// its ReplicaSets, named NAME-HASH with HASH the pod's pod-template-hash
// label. A stray pod that only shares the labels is not the workload's.
func (t *Target) Owns(p *corev1.Pod) bool {
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if string(o.UID) == t.UID {
			return true
		}
		if t.Kind == "Deployment" && o.Kind == "ReplicaSet" && p.Labels["pod-template-hash"] != "" &&
			o.Name == t.Name+"-"+p.Labels["pod-template-hash"] {
			return true
		}
	}
	return false
}

// PodReady reports whether a pod is Ready and not terminating.
func PodReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
