package schedule

import (
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Annotations on the workload.
const (
	// AnnotationSchedule is the schedule (JSON of Spec).
	AnnotationSchedule = "kubectl-pgpool.io/schedule"
	// AnnotationLastRun is what the last scheduled run did (JSON of Run).
	AnnotationLastRun = "kubectl-pgpool.io/schedule-last-run"
)

// Spec is one pgpool's schedule as recorded on its workload.
type Spec struct {
	Window   string `json:"window"`
	TimeZone string `json:"timeZone"`
	Every    string `json:"every"`
	CronJob  string `json:"cronJob"`
	Image    string `json:"image"`
}

// Run is what a scheduled run did.
type Run struct {
	Time      time.Time `json:"time"`
	Result    string    `json:"result"` // Succeeded, NothingToDo, WindowClosed, Failed
	Restarted []string  `json:"podsRestarted,omitempty"`
	// Waited is how long PodDisruptionBudgets held the restarts back, in
	// all ("" when they did not).
	Waited  string    `json:"waitedForBudgets,omitempty"`
	Message string    `json:"message,omitempty"`
	NextRun time.Time `json:"nextWindow"`
}

// Name is the name of the CronJob, its ServiceAccount, Role and
// RoleBinding for pgpool.
func Name(pgpool string) string { return pgpool + "-tls-schedule" }

// Objects are the in-cluster runner of one pgpool's schedule: a
// ServiceAccount, a Role with rules (what the plugin's RBAC preflight
// computes for the scheduled operation) and its RoleBinding, and a CronJob
// that runs `kubectl-pgpool tls schedule run` in the window: Forbid
// (never two at once), its timeZone, no retries (the next firing is the
// retry), and each job ended by the window's end (activeDeadlineSeconds; a
// job started late is bounded by the run's own deadline, the window's end).
type Objects struct {
	ServiceAccount *corev1.ServiceAccount
	Role           *rbacv1.Role
	RoleBinding    *rbacv1.RoleBinding
	CronJob        *batchv1.CronJob
}

// Params are what the objects are made of.
type Params struct {
	Namespace, Pgpool string
	Window            Window
	TimeZone          string
	Every             time.Duration
	Image             string
	Rules             []rbacv1.PolicyRule
	// HostNetwork runs the job in the node's network (a cluster whose API
	// server is reachable only from the nodes, such as the local one).
	HostNetwork bool
	// APIServer overrides the in-cluster address of the API server
	// (HOST:PORT; "" keeps the kubernetes Service's).
	APIServer string
	Labels    map[string]string
	// NodeSelector and Tolerations place the job's pod.
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
}

// Build makes the objects.
func Build(p Params) (*Objects, error) {
	cron, err := p.Window.Cron(p.Every)
	if err != nil {
		return nil, err
	}
	name := Name(p.Pgpool)
	meta := func() metav1.ObjectMeta {
		l := map[string]string{}
		for k, v := range p.Labels {
			l[k] = v
		}
		return metav1.ObjectMeta{Name: name, Namespace: p.Namespace, Labels: l}
	}
	args := []string{"tls", "schedule", "run", p.Pgpool, "-n", p.Namespace, "--window", p.Window.String(), "--time-zone", p.TimeZone}
	env := []corev1.EnvVar{{Name: "HOME", Value: "/tmp"}}
	if p.APIServer != "" {
		host, port, ok := cutLast(p.APIServer, ":")
		if !ok {
			return nil, fmt.Errorf("--api-server %q: want HOST:PORT", p.APIServer)
		}
		env = append(env, corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: host}, corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: port})
	}
	deadline := int64(p.Window.Length / time.Second)
	o := &Objects{
		ServiceAccount: &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta()},
		Role:           &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}, ObjectMeta: meta(), Rules: p.Rules},
		RoleBinding: &rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"}, ObjectMeta: meta(),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: p.Namespace}}},
		CronJob: &batchv1.CronJob{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"}, ObjectMeta: meta(),
			Spec: batchv1.CronJobSpec{
				Schedule: cron, TimeZone: ptr.To(p.TimeZone), ConcurrencyPolicy: batchv1.ForbidConcurrent,
				StartingDeadlineSeconds:    ptr.To(int64(p.Every / time.Second)),
				SuccessfulJobsHistoryLimit: ptr.To(int32(3)), FailedJobsHistoryLimit: ptr.To(int32(3)),
				JobTemplate: batchv1.JobTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: meta().Labels}, Spec: batchv1.JobSpec{
					BackoffLimit: ptr.To(int32(0)), ActiveDeadlineSeconds: &deadline, TTLSecondsAfterFinished: ptr.To(int32(7 * 24 * 3600)),
					Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: meta().Labels}, Spec: corev1.PodSpec{
						ServiceAccountName: name, RestartPolicy: corev1.RestartPolicyNever, HostNetwork: p.HostNetwork,
						NodeSelector: p.NodeSelector, Tolerations: p.Tolerations,
						// The root is read-only: a scratch /tmp for HOME
						// (client-go's caches).
						Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
						SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(65532)), RunAsGroup: ptr.To(int64(65532)),
							SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
						Containers: []corev1.Container{{Name: "kubectl-pgpool", Image: p.Image, ImagePullPolicy: corev1.PullIfNotPresent,
							Args: args, Env: env, VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
							SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
								Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
					}},
				}},
			}},
	}
	return o, nil
}

// ParseToleration reads KEY[=VALUE][:EFFECT] (as kubectl taint writes a
// taint): Exists without a value, Equal with one; every effect without one.
func ParseToleration(s string) (corev1.Toleration, error) {
	t := corev1.Toleration{Operator: corev1.TolerationOpExists}
	kv, effect, hasEffect := strings.Cut(s, ":")
	k, v, hasValue := strings.Cut(kv, "=")
	if k == "" {
		return t, fmt.Errorf("toleration %q: want KEY[=VALUE][:EFFECT]", s)
	}
	t.Key = k
	if hasValue {
		t.Operator, t.Value = corev1.TolerationOpEqual, v
	}
	if hasEffect {
		switch e := corev1.TaintEffect(effect); e {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
			t.Effect = e
		default:
			return t, fmt.Errorf("toleration %q: the effect is NoSchedule, PreferNoSchedule or NoExecute", s)
		}
	}
	return t, nil
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}
