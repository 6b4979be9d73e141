package bench

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// BenchmarkAvailability: 8 clients through the Service (kube-proxy on the
// real node) during each of the seed's operations on 3 real replicas,
// reconnecting and retrying once after an error: dropped connections,
// queries failed even after the retry, and the longest time a client went
// without a successful query; without and with a preStop sleep of 5 s, and
// with the sleep followed by pgpool's fast shutdown.
func BenchmarkAvailability(b *testing.B) {
	if !env.Cluster.RealNode {
		b.Skip("needs the real node: REAL_NODE=1 make cluster-up")
	}
	for _, setting := range []struct {
		name   string
		mutate func(*unstructured.Unstructured)
	}{{"no-prestop", nil}, {"prestop-sleep-5s", testenv.PreStopSleep(5)}, {"prestop-sleep-5s-fast-shutdown", testenv.PreStopFastShutdown(5)}} {
		b.Run(setting.name, func(b *testing.B) {
			ns := env.RealPgpool(b, 3, setting.mutate)
			addr, login := env.ServiceAddr(b, ns, "pgpool"), env.PgpoolLogin(ns)
			for _, op := range testenv.SeedOperations() {
				b.Run(op[1], func(b *testing.B) {
					if b.N > 1 {
						b.Fatal("run with -benchtime 1x: each operation depends on the one before")
					}
					// Not while the namespace of the setting before is being
					// deleted (its pods stopping on the same 2 cores).
					settle(b)
					load := testenv.StartLoad(addr, 8, true, login)
					_, errOut, err := run(context.Background(), env.Kubeconfig, ns, nil, append(op, "--yes")...)
					r := load.Stop()
					if err != nil {
						b.Fatalf("%s: %v\n%s", op[1], err, errOut)
					}
					b.Logf("%s; first errors: %s", r, strings.Join(r.Errors, "; "))
					b.ReportMetric(float64(r.Dropped), "dropped")
					b.ReportMetric(float64(r.Failed), "failed-after-retry")
					b.ReportMetric(r.LongestGap.Seconds(), "longest-gap-s")
					b.ReportMetric(0, "ns/op")
				})
			}
		})
	}
}
