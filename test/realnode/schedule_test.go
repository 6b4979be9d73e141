package realnode

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

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
// shows. Outside the window a run does nothing, even with stale pods.
func TestScheduledRenewalOnRealNode(t *testing.T) {
	image := env.PluginImage(t)
	ns := realPgpool(t, 2)
	plugin(t, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--backend-ca", "secret/pgpool-backend-cert")
	renewedBehindPgpool(t, ns, 2)
	ctx := testenv.Context(t, 4*time.Minute)
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
	caCrt, err := cm.Certificates(ns).Get(ctx, "pgpool-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := issuing.TriggerIssuance(ctx, cm, ns, "pgpool-ca", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := issuing.WaitReady(ctx, cm, ns, "pgpool-ca", tls.Revision(caCrt), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	env.WaitIssuerReady(t, ctx, ns, "pgpool-issuer")
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
