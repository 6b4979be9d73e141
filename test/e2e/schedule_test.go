package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/lock"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/schedule"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// tls schedule create|show|delete for a fleet (-A -l): each pgpool the
// selector picks gets its own runner in its own namespace (nothing
// cluster-wide), one it does not pick is left alone, and one that cannot
// be scheduled (no TLS) is named while the others go on, failing the
// command.
func TestScheduleForAFleet(t *testing.T) {
	label := fmt.Sprintf("sched-%d", time.Now().UnixNano())
	a, b, c := setup(t, layouts[0], 1), setup(t, layouts[0], 1), setup(t, layouts[0], 1)
	ctx := testenv.Context(t, 3*time.Minute)
	for _, ns := range []string{a, b, c} {
		if ns != c {
			if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes"); err != nil {
				t.Fatal(err)
			}
		}
		if ns == b {
			continue // not picked
		}
		if _, err := env.Kube.AppsV1().StatefulSets(ns).Patch(ctx, "pgpool", types.MergePatchType, []byte(`{"metadata":{"labels":{"tier":"`+label+`"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, err := plugin(t, env.Kubeconfig, a, "tls", "schedule", "create", "-A", "-l", "tier="+label, "--window", "Sat 02:00-04:00", "--image", "localhost/kubectl-pgpool:test", "--yes")
	if err == nil || !strings.Contains(err.Error()+errOut, c+"/pgpool: ") || !strings.Contains(err.Error()+errOut, "has no TLS") ||
		!strings.Contains(out, "schedule of StatefulSet "+a+"/pgpool installed") {
		t.Fatalf("schedule create -A -l: %v\n%s\n%s", err, out, errOut)
	}
	has := func(ns string) bool {
		_, err := env.Kube.BatchV1().CronJobs(ns).Get(ctx, schedule.Name("pgpool"), metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	if !has(a) || has(b) || has(c) {
		t.Fatalf("CronJobs: picked %v, not picked %v, no TLS %v; want only the first", has(a), has(b), has(c))
	}
	if out, _, err := plugin(t, env.Kubeconfig, a, "tls", "schedule", "show", "-A", "-l", "tier="+label); err != nil || !strings.Contains(out, "window Sat 02:00-04:00") || !strings.Contains(out, c+"/pgpool has no schedule") {
		t.Fatalf("schedule show -A -l: %v\n%s", err, out)
	}
	if out, errOut, err := plugin(t, env.Kubeconfig, a, "tls", "schedule", "delete", "-A", "-l", "tier="+label); err != nil || has(a) {
		t.Fatalf("schedule delete -A -l: %v\n%s\n%s", err, out, errOut)
	}
}

// tls trust and tls schedule create take the pgpool's lock as an
// operation does: while another run holds it (a live Lease of another
// machine), each is refused naming the holder, and writes nothing.
func TestTrustAndScheduleTakeTheLock(t *testing.T) {
	ns := setup(t, layouts[0], 1)
	if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes"); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 2*time.Minute)
	holder, secs, now := "someone@elsewhere pid 42 (run 0badc0de)", int32(600), metav1.NewMicroTime(time.Now())
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: pgpool.LeaseName("pgpool"), Annotations: map[string]string{lock.AnnotationOperation: "rotate"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now}}
	if _, err := env.Kube.CoordinationV1().Leases(ns).Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	apps := env.Namespace(t)
	for _, args := range [][]string{
		{"tls", "trust", "pgpool", "--to-namespace", apps, "--yes"},
		{"tls", "schedule", "create", "pgpool", "--window", "Sat 02:00-04:00", "--image", "localhost/kubectl-pgpool:test", "--yes"},
	} {
		if out, errOut, err := plugin(t, env.Kubeconfig, ns, args...); err == nil || !strings.Contains(err.Error(), "(rotate by "+holder) {
			t.Fatalf("%v while another run holds the lock: %v\n%s\n%s", args, err, out, errOut)
		}
	}
	if _, err := env.Kube.CoreV1().ConfigMaps(apps).Get(ctx, "pgpool-ca", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("tls trust wrote the client copy while the lock was held: %v", err)
	}
	if _, err := env.Kube.BatchV1().CronJobs(ns).Get(ctx, schedule.Name("pgpool"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("tls schedule create wrote the CronJob while the lock was held: %v", err)
	}
	if sts, err := env.Kube.AppsV1().StatefulSets(ns).Get(ctx, "pgpool", metav1.GetOptions{}); err != nil || sts.Annotations[pgpool.AnnotationTrust] != "" || sts.Annotations[schedule.AnnotationSchedule] != "" {
		t.Fatalf("the workload was annotated while the lock was held: %v", err)
	}
}
