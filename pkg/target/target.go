// Package target finds a pgpool in a cluster: its workload (StatefulSet,
// Deployment, or KubeDB's PetSet through the dynamic client), the pgpool
// container, the ConfigMap or Secret that carries pgpool.conf and
// pool_hba.conf, its pods and Services, and today's TLS state. It only reads.
package target

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/typed/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// Annotation keys kubectl-pgpool writes on the workload.
const (
	AnnotationTLS           = "kubectl-pgpool.io/tls"
	AnnotationLastOperation = "kubectl-pgpool.io/last-operation"
)

// Layout paths: the TLS Secret is mounted at ConfigMountPath + "/tls"; the
// image's entrypoint copies it to PgpoolTLSDir, where pgpool reads it.
const (
	TLSVolumeName = "certs"
	PgpoolTLSDir  = "/opt/pgpool-II/tls"
)

// Workload kinds.
var (
	StatefulSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}
	Deployments  = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	PetSets      = schema.GroupVersionResource{Group: "apps.k8s.appscode.com", Version: "v1", Resource: "petsets"}
)

// workloadKinds is the discovery order; Kind names for messages.
var workloadKinds = []struct {
	GVR  schema.GroupVersionResource
	Kind string
}{
	{StatefulSets, "StatefulSet"},
	{Deployments, "Deployment"},
	{PetSets, "PetSet"},
}

// Clients are the API clients discovery reads with.
type Clients struct {
	Core        corev1client.CoreV1Interface
	Dynamic     dynamic.Interface
	CertManager cmclient.CertmanagerV1Interface
}

// Config is the object that carries pgpool.conf and pool_hba.conf.
type Config struct {
	Kind            string `json:"kind"` // ConfigMap or Secret
	Name            string `json:"name"`
	MountPath       string `json:"mountPath"`
	ResourceVersion string `json:"resourceVersion"`
	PgpoolConf      string `json:"-"`
	PoolHBA         string `json:"-"`
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
	Namespace      string                        `json:"namespace"`
	Name           string                        `json:"name"`
	Kind           string                        `json:"kind"`
	APIVersion     string                        `json:"apiVersion"`
	GVR            schema.GroupVersionResource   `json:"-"`
	UID            string                        `json:"uid"`
	Annotations    map[string]string             `json:"-"`
	Template       corev1.PodTemplateSpec        `json:"-"`
	Selector       *metav1.LabelSelector         `json:"-"`
	Replicas       int32                         `json:"replicas"`
	UpdateStrategy string                        `json:"updateStrategy"`
	Container      string                        `json:"container"`
	ContainerIndex int                           `json:"containerIndex"`
	Config         Config                        `json:"config"`
	TLSMountPath   string                        `json:"tlsMountPath"`
	Pods           []corev1.Pod                  `json:"-"`
	Services       []string                      `json:"services"`
	Headless       string                        `json:"headlessService,omitempty"`
	State          TLSState                      `json:"state"`
	Certificates   map[string]*cmapi.Certificate `json:"-"`
	// Bundle is the CA bundle ConfigMap (tls.CABundleName), nil when there
	// is none.
	Bundle *corev1.ConfigMap `json:"-"`
	// BundleOurs: Bundle carries the plugin's label (else it belongs to
	// someone else and is never touched).
	BundleOurs bool `json:"-"`
}

// ServerCertName and ClientCertName are the Certificates of a pgpool, as
// KubeDB names them (NAME-ALIAS-cert).
func ServerCertName(name string) string { return name + "-server-cert" }

// ClientCertName is the client Certificate's name.
func ClientCertName(name string) string { return name + "-client-cert" }

// Paths returns where pgpool reads its TLS files.
func (t *Target) Paths() conf.Paths {
	return conf.Paths{Cert: PgpoolTLSDir + "/tls.crt", Key: PgpoolTLSDir + "/tls.key", CA: PgpoolTLSDir + "/ca.pem"}
}

// String names the workload, e.g. "StatefulSet demo/pgpool".
func (t *Target) String() string { return fmt.Sprintf("%s %s/%s", t.Kind, t.Namespace, t.Name) }

// NotFoundError is returned when no workload has the name.
type NotFoundError struct{ Namespace, Name string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no pgpool named %q in namespace %q: found no StatefulSet, Deployment or PetSet of that name (check the name and -n/--namespace; list candidates with: kubectl get statefulsets,deployments -n %s)", e.Name, e.Namespace, e.Namespace)
}

// Discover finds the pgpool NAME in namespace ns.
func Discover(ctx context.Context, c Clients, ns, name string) (*Target, error) {
	var found []*unstructured.Unstructured
	var kinds []string
	var gvrs []schema.GroupVersionResource
	for _, wk := range workloadKinds {
		obj, err := c.Dynamic.Resource(wk.GVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			found = append(found, obj)
			kinds = append(kinds, wk.Kind)
			gvrs = append(gvrs, wk.GVR)
		case apierrors.IsNotFound(err) && wk.GVR == PetSets:
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
	t, err := fromWorkload(found[0], kinds[0], gvrs[0])
	if err != nil {
		return nil, err
	}
	if err := t.findConfig(ctx, c); err != nil {
		return nil, err
	}
	if err := t.findPodsAndServices(ctx, c); err != nil {
		return nil, err
	}
	if err := t.findCertificates(ctx, c); err != nil {
		return nil, err
	}
	if err := t.findBundle(ctx, c); err != nil {
		return nil, err
	}
	t.readState()
	return t, nil
}

func fromWorkload(obj *unstructured.Unstructured, kind string, gvr schema.GroupVersionResource) (*Target, error) {
	t := &Target{
		Namespace: obj.GetNamespace(), Name: obj.GetName(), Kind: kind, APIVersion: obj.GetAPIVersion(),
		GVR: gvr, UID: string(obj.GetUID()), Annotations: obj.GetAnnotations(),
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

// findConfig looks through the pgpool container's mounts for a ConfigMap or
// Secret volume with a pgpool.conf key.
func (t *Target) findConfig(ctx context.Context, c Clients) error {
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
		switch {
		case v.Secret != nil:
			s, err := c.Core.Secrets(t.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				tried = append(tried, "Secret "+v.Secret.SecretName+" (not found)")
				continue
			} else if err != nil {
				return fmt.Errorf("get Secret %s/%s: %w", t.Namespace, v.Secret.SecretName, err)
			}
			if pc, ok := s.Data["pgpool.conf"]; ok {
				t.Config = Config{Kind: "Secret", Name: s.Name, MountPath: m.MountPath, ResourceVersion: s.ResourceVersion,
					PgpoolConf: string(pc), PoolHBA: string(s.Data["pool_hba.conf"])}
				t.TLSMountPath = strings.TrimSuffix(m.MountPath, "/") + "/tls"
				return nil
			}
			tried = append(tried, "Secret "+s.Name)
		case v.ConfigMap != nil:
			cm, err := c.Core.ConfigMaps(t.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				tried = append(tried, "ConfigMap "+v.ConfigMap.Name+" (not found)")
				continue
			} else if err != nil {
				return fmt.Errorf("get ConfigMap %s/%s: %w", t.Namespace, v.ConfigMap.Name, err)
			}
			if pc, ok := cm.Data["pgpool.conf"]; ok {
				t.Config = Config{Kind: "ConfigMap", Name: cm.Name, MountPath: m.MountPath, ResourceVersion: cm.ResourceVersion,
					PgpoolConf: pc, PoolHBA: cm.Data["pool_hba.conf"]}
				t.TLSMountPath = strings.TrimSuffix(m.MountPath, "/") + "/tls"
				return nil
			}
			tried = append(tried, "ConfigMap "+cm.Name)
		}
	}
	if len(tried) == 0 {
		return fmt.Errorf("%s: config not found: container %q mounts no ConfigMap or Secret; kubectl-pgpool needs pgpool.conf and pool_hba.conf in a mounted ConfigMap or Secret", t, t.Container)
	}
	return fmt.Errorf("%s: config not found: none of the mounted %s has a pgpool.conf key", t, strings.Join(tried, ", "))
}

func (t *Target) findPodsAndServices(ctx context.Context, c Clients) error {
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
		if ownedBy(&p, t.UID) || t.Kind == "Deployment" {
			t.Pods = append(t.Pods, p)
		}
	}
	SortPods(t.Pods)
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

// ownedBy reports whether p is controlled by the object with uid (a
// Deployment's pods are owned by its ReplicaSets, so they are not checked).
func ownedBy(p *corev1.Pod, uid string) bool {
	for _, o := range p.OwnerReferences {
		if string(o.UID) == uid {
			return true
		}
	}
	return false
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

// findCertificates reads the pgpool's Certificates. Only "not found" means
// there is none: a 403 or a server error is reported as it is, not taken for
// a pgpool without certificates.
func (t *Target) findCertificates(ctx context.Context, c Clients) error {
	t.Certificates = map[string]*cmapi.Certificate{}
	if c.CertManager == nil {
		return nil
	}
	for _, n := range []string{ServerCertName(t.Name), ClientCertName(t.Name)} {
		crt, err := c.CertManager.Certificates(t.Namespace).Get(ctx, n, metav1.GetOptions{})
		switch {
		case err == nil:
			t.Certificates[n] = crt
		case apierrors.IsNotFound(err):
		default:
			return fmt.Errorf("get Certificate %s/%s: %w", t.Namespace, n, err)
		}
	}
	return nil
}

func (t *Target) findBundle(ctx context.Context, c Clients) error {
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

func (t *Target) readState() {
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
		t.State.Issuer = IssuerRef{Name: crt.Spec.IssuerRef.Name, Kind: crt.Spec.IssuerRef.Kind}
		if t.State.Issuer.Kind == "" {
			t.State.Issuer.Kind = "Issuer"
		}
	}
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

// List returns the names of the workloads in ns that run a pgpool container
// (for shell completion).
func List(ctx context.Context, dyn dynamic.Interface, ns string) ([]string, error) {
	var out []string
	for _, wk := range workloadKinds {
		l, err := dyn.Resource(wk.GVR).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for i := range l.Items {
			if _, err := fromWorkload(&l.Items[i], wk.Kind, wk.GVR); err == nil {
				out = append(out, l.Items[i].GetName())
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
