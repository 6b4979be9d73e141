package realnode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/cache"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/schedule"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// lastRun is the scheduled run recorded on the StatefulSet (nil: none).
func lastRun(s *appsv1.StatefulSet) *schedule.Run {
	a := s.Annotations[schedule.AnnotationLastRun]
	if a == "" {
		return nil
	}
	var r schedule.Run
	if json.Unmarshal([]byte(a), &r) != nil {
		return nil
	}
	return &r
}

// Issue 28: with nobody at the keyboard. The real CronJob controller runs
// the plugin's own image (built by hack/image as `make image` does,
// imported into the node's containerd) in a window open now: after
// cert-manager renewed the Secret behind pgpool's back and one pod
// restarted by itself, the job restarts exactly the other, proves every pod
// (--verify=required), and leaves an Event and the record that tls status
// shows. Outside the window a run does nothing, even with stale pods. With
// a PodDisruptionBudget at its limit, a run waits and says so.
func TestScheduledRenewalOnRealNode(t *testing.T) {
	image := env.PluginImage(t)
	ns := realPgpool(t, 2)
	plugin(t, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--backend-ca", "secret/pgpool-backend-cert")
	renewedBehindPgpool(t, ns, 2)
	ctx := testenv.Context(t, 6*time.Minute)
	before := map[string]types.UID{}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, time.Minute) {
		before[p.Name] = p.UID
	}
	if err := env.Kube.CoreV1().Pods(ns).Delete(ctx, "pgpool-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitObject(t, ctx, podLW(ns, "pgpool-0"), &corev1.Pod{}, "pgpool-0 to come back Ready", func(p *corev1.Pod) bool {
		return p.Name == "pgpool-0" && p.UID != before["pgpool-0"] && podReady(p)
	})
	mid := map[string]types.UID{}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, time.Minute) {
		mid[p.Name] = p.UID
	}

	// A window open now (daily, from 5 minutes ago to 20 minutes ahead, UTC).
	now := time.Now().UTC()
	window := fmt.Sprintf("daily %s-%s", now.Add(-5*time.Minute).Format("15:04"), now.Add(20*time.Minute).Format("15:04"))
	if out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, time.Minute, "tls", "schedule", "create", "pgpool", "--window", window, "--time-zone", "UTC", "--every", "1m",
		"--image", image, "--host-network", "--api-server", env.APIServer(t), "--yes",
		"--node-selector", "kubectl-pgpool.io/real-node=true", "--toleration", "kubectl-pgpool.io/real-node:NoSchedule"); err != nil {
		t.Fatalf("schedule create: %v\n%s\n%s", err, out, errOut)
	}
	t.Cleanup(func() { dumpJobs(t, ns) })
	// cert-manager v1.21 renews the Secret in the hour before each window.
	for _, n := range []string{"pgpool-server-cert", "pgpool-client-cert"} {
		crt, err := env.CertMgr.CertmanagerV1().Certificates(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, _ := schedule.ParseWindow(window)
		if r := crt.Spec.Renewal; r == nil || len(r.Windows) != 1 || r.Windows[0].Cron != w.RenewalCron() || r.Windows[0].Timezone != "UTC" || r.Windows[0].WindowDuration.Duration != time.Hour {
			t.Fatalf("Certificate %s: renewal %+v, want one window %q UTC 1h", n, crt.Spec.Renewal, w.RenewalCron())
		}
	}
	stsLW := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (k8sruntime.Object, error) {
			o.FieldSelector = "metadata.name=pgpool"
			return env.Kube.AppsV1().StatefulSets(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = "metadata.name=pgpool"
			return env.Kube.AppsV1().StatefulSets(ns).Watch(ctx, o)
		},
	}
	sts := testenv.WaitObject(t, ctx, stsLW, &appsv1.StatefulSet{}, "a scheduled run that restarts the stale pod", func(s *appsv1.StatefulSet) bool {
		r := lastRun(s)
		if r != nil && r.Result == "Failed" {
			t.Errorf("the scheduled run failed: %s", r.Message)
			return true
		}
		return r != nil && r.Result == "Succeeded"
	})
	if t.Failed() {
		t.FailNow()
	}
	run := lastRun(sts)
	if strings.Join(run.Restarted, ",") != "pgpool-1" {
		t.Fatalf("the scheduled run restarted %v; want exactly pgpool-1 (pgpool-0 already serves the Secret's)", run.Restarted)
	}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, time.Minute) {
		if (p.Name == "pgpool-0") != (p.UID == mid[p.Name]) {
			t.Fatalf("pod %s: restarted %v; want only pgpool-1 restarted", p.Name, p.UID != mid[p.Name])
		}
	}
	status(t, ns, 2, true)
	out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, time.Minute, "tls", "status", "pgpool", "--verify=false")
	// (The CronJob goes on firing each minute: the last run may be a later
	// one with nothing to do by now; the Event of this one stays.)
	if err != nil || !strings.Contains(out, "Schedule:") || !strings.Contains(out, "Last scheduled run:") {
		t.Fatalf("tls status does not show the schedule and its run: %v\n%s\n%s", err, out, errOut)
	}
	evs, err := env.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=ScheduledTLSSucceeded"})
	if err != nil || len(evs.Items) != 1 || evs.Items[0].InvolvedObject.Name != "pgpool" || !strings.Contains(evs.Items[0].Message, "restarted pgpool-1;") {
		t.Fatalf("want one Event ScheduledTLSSucceeded on the StatefulSet saying it restarted pgpool-1: %v %+v", err, evs.Items)
	}

	// Delete it: its objects go.
	if out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, time.Minute, "tls", "schedule", "delete", "pgpool"); err != nil {
		t.Fatalf("schedule delete: %v\n%s\n%s", err, out, errOut)
	}
	if _, err := env.Kube.BatchV1().CronJobs(ns).Get(ctx, schedule.Name("pgpool"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the CronJob is still there after schedule delete: %v", err)
	}
	if crt, err := env.CertMgr.CertmanagerV1().Certificates(ns).Get(ctx, "pgpool-server-cert", metav1.GetOptions{}); err != nil || crt.Spec.Renewal != nil {
		t.Fatalf("schedule delete left the renewal windows: %v %+v", err, crt.Spec.Renewal)
	}

	// The issuer's CA renewed in place (its CA Certificate re-issued with a
	// new key): a run in the window (the job's command, run here once the
	// CronJob is gone, so that no job of its runs beside) re-issues the
	// certificates and restarts every pod onto them, the previous CA kept
	// in the bundle.
	cm := env.CertMgr.CertmanagerV1()
	renewIssuerCA(t, ctx, ns)
	out, errOut, err = testenv.Plugin(env.Kubeconfig, ns, 5*time.Minute, "tls", "schedule", "run", "pgpool", "--window", window, "--time-zone", "UTC")
	if err != nil || !strings.Contains(out, "Succeeded: the issuer's CA was renewed in place: trusted it, re-issued the certificates") || !strings.Contains(out, "restarted pgpool-0, pgpool-1") {
		t.Fatalf("a scheduled run after the CA was renewed in place: %v\n%s\n%s", err, out, errOut)
	}
	status(t, ns, 2, true)

	// Outside the window nothing restarts, however stale: the job's own
	// check, as when the controller starts a job late.
	crt, err := cm.Certificates(ns).Get(ctx, "pgpool-server-cert", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := issuing.TriggerIssuance(ctx, cm, ns, crt.Name, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := issuing.WaitReady(ctx, cm, ns, crt.Name, tls.Revision(crt), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	after := map[string]types.UID{}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, time.Minute) {
		after[p.Name] = p.UID
	}
	closed := fmt.Sprintf("daily %s-%s", now.Add(2*time.Hour).Format("15:04"), now.Add(3*time.Hour).Format("15:04"))
	out, errOut, err = testenv.Plugin(env.Kubeconfig, ns, time.Minute, "tls", "schedule", "run", "pgpool", "--window", closed, "--time-zone", "UTC")
	if err != nil || !strings.Contains(out, "WindowClosed") {
		t.Fatalf("a run outside the window: %v\n%s\n%s", err, out, errOut)
	}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, time.Minute) {
		if p.UID != after[p.Name] {
			t.Fatalf("pod %s was restarted by a run outside the window", p.Name)
		}
	}

	// A PodDisruptionBudget at its limit: the pgpool's budget (maxUnavailable
	// 1) now also covers another workload's pod that is not Ready, so it
	// allows no eviction. A run in the window waits (within its deadline,
	// the window's end), goes on once that pod is gone, and reports that
	// it waited.
	blockedByABudget(t, ctx, ns)
	var gone sync.Once
	w := &lineWatch{match: "a PodDisruptionBudget refused evicting pod", do: func() {
		gone.Do(func() {
			if err := env.Kube.AppsV1().Deployments(ns).Delete(ctx, "blocker", metav1.DeleteOptions{}); err != nil {
				t.Error(err)
			}
		})
	}}
	streams := genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: w, ErrOut: w}
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: "test"})
	root.SetArgs([]string{"--kubeconfig", env.Kubeconfig, "-n", ns, "tls", "schedule", "run", "pgpool", "--window", window, "--time-zone", "UTC"})
	err = root.ExecuteContext(ctx)
	// (The certificates re-issued under the renewed CA above, the CA
	// before may go: this run is the one that drops it, stage 3.)
	if err != nil || !w.seen() || !strings.Contains(w.String(), "Succeeded: the previous CA (") || !strings.Contains(w.String(), "may go now: dropped it from the CA bundle and waited ") ||
		!strings.Contains(w.String(), "while PodDisruptionBudgets refused evictions, and restarted pgpool-0, pgpool-1") {
		t.Fatalf("a run while a PodDisruptionBudget is at its limit: %v\n%s", err, w.String())
	}
	if b, err := env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, tls.CABundleName("pgpool"), metav1.GetOptions{}); err != nil || len(tls.Subjects([]byte(b.Data[tls.PreviousCAKey]))) > 0 {
		t.Fatalf("the scheduled run left the CA before in the bundle: %v", err)
	}
	sts, err = env.Kube.AppsV1().StatefulSets(ns).Get(ctx, "pgpool", metav1.GetOptions{})
	if err != nil || lastRun(sts) == nil || lastRun(sts).Waited == "" {
		t.Fatalf("the record of the run that waited for the budget: %v %+v", err, lastRun(sts))
	}
	status(t, ns, 2, true)
}

// blockedByABudget puts the pgpool's PodDisruptionBudget at its limit: a
// Deployment "blocker" whose pod is never Ready, selected by the budget
// too (app.kubernetes.io/instance=pgpool, not the pgpool's own selector).
// It returns once the disruption controller allows no disruption.
func blockedByABudget(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	one := int32(1)
	labels := map[string]string{"app.kubernetes.io/instance": "pgpool", "role": "blocker"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "blocker"}, Spec: appsv1.DeploymentSpec{Replicas: &one,
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			NodeSelector:                 map[string]string{"kubectl-pgpool.io/real-node": "true"},
			Tolerations:                  []corev1.Toleration{{Key: "kubectl-pgpool.io/real-node", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			AutomountServiceAccountToken: new(bool), TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{Name: "blocker", Image: "kubectl-pgpool/pgpool:local", ImagePullPolicy: corev1.PullNever,
				Command:        []string{"sleep", "3600"},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}, PeriodSeconds: 5}}},
		}}}}
	if _, err := env.Kube.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Kube.PolicyV1().PodDisruptionBudgets(ns).Patch(ctx, "pgpool", types.MergePatchType,
		[]byte(`{"spec":{"selector":{"matchLabels":{"app.kubernetes.io/name":null}}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (k8sruntime.Object, error) {
			o.FieldSelector = "metadata.name=pgpool"
			return env.Kube.PolicyV1().PodDisruptionBudgets(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = "metadata.name=pgpool"
			return env.Kube.PolicyV1().PodDisruptionBudgets(ns).Watch(ctx, o)
		},
	}
	testenv.WaitObject(t, ctx, lw, &policyv1.PodDisruptionBudget{}, "the budget over 3 pods, one not Ready, to allow no disruption", func(b *policyv1.PodDisruptionBudget) bool {
		return b.Status.ObservedGeneration == b.Generation && b.Status.ExpectedPods == 3 && b.Status.CurrentHealthy == 2 && b.Status.DisruptionsAllowed == 0
	})
}

// lineWatch is a writer that runs do once its text holds match.
type lineWatch struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	match string
	do    func()
	done  bool
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	fire := !w.done && strings.Contains(w.buf.String(), w.match)
	w.done = w.done || fire
	w.mu.Unlock()
	if fire {
		w.do()
	}
	return len(p), nil
}

func (w *lineWatch) seen() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// dumpJobs logs, when the test failed, the schedule's jobs, their pods and
// the pods' logs.
func dumpJobs(t *testing.T, ns string) {
	if !t.Failed() {
		return
	}
	ctx := context.Background()
	jobs, _ := env.Kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	for _, j := range jobs.Items {
		t.Logf("job %s: %+v", j.Name, j.Status)
	}
	pods, _ := env.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=kubectl-pgpool"})
	for _, p := range pods.Items {
		logs, err := env.Kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		t.Logf("pod %s on %s: %s %v\n%s", p.Name, p.Spec.NodeName, p.Status.Phase, err, logs)
	}
	evs, _ := env.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	for _, e := range evs.Items {
		t.Logf("event %s %s: %s", e.InvolvedObject.Name, e.Reason, e.Message)
	}
}
