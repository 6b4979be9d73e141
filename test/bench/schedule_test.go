package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// BenchmarkScheduledRun puts a scheduled run (what the CronJob's job runs:
// `tls schedule run`, its window open) beside the manual `tls rotate
// --reissue=false --only-stale --verify=required` it stands for, in the
// same run, on 3 real pods that all serve an older certificate than the
// Secret holds (cert-manager renewed it behind pgpool's back). The
// difference is the run's own checks (the window, a renewed CA, a
// previous CA that may go) and its record (annotation and Event).
func BenchmarkScheduledRun(b *testing.B) {
	ns := env.RealPgpool(b, 3, nil)
	if out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require",
		"--backend-ca", "secret/pgpool-backend-cert", "--yes"); err != nil {
		b.Fatalf("tls add: %v\n%s\n%s", err, out, errOut)
	}
	now := time.Now().UTC()
	window := fmt.Sprintf("daily %s-%s", now.Add(-5*time.Minute).Format("15:04"), now.Add(60*time.Minute).Format("15:04"))
	for _, arm := range []struct {
		name string
		args []string
		want string
	}{
		{"manual-rotate-only-stale", []string{"tls", "rotate", "pgpool", "--reissue=false", "--only-stale", "--verify=required", "--yes"}, "succeeded"},
		{"scheduled-run", []string{"tls", "schedule", "run", "pgpool", "--window", window, "--time-zone", "UTC"}, "Succeeded: restarted pgpool-0, pgpool-1, pgpool-2"},
	} {
		b.Run(arm.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				renewBehind(b, ns)
				settle(b)
				b.StartTimer()
				t0 := time.Now()
				out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, arm.args...)
				wall := time.Since(t0)
				if err != nil || !strings.Contains(out+errOut, arm.want) {
					b.Fatalf("%s: %v (want %q)\n%s\n%s", arm.name, err, arm.want, out, errOut)
				}
				b.ReportMetric(wall.Seconds(), "wall-s")
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}

// renewBehind renews the server Certificate's Secret as cert-manager does
// by itself: every pod then serves an older certificate than it holds.
func renewBehind(b *testing.B, ns string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cm := env.CertMgr.CertmanagerV1()
	crt, err := cm.Certificates(ns).Get(ctx, "pgpool-server-cert", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if err := issuing.TriggerIssuance(ctx, cm, ns, crt.Name, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := issuing.WaitReady(ctx, cm, ns, crt.Name, tls.Revision(crt), time.Time{}, nil); err != nil {
		b.Fatal(err)
	}
}
