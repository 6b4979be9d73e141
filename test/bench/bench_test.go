// Package bench measures kubectl-pgpool on the local cluster: per operation
// and replica count, the wall time, the time spent waiting on controllers
// (cert-manager issuing, pods replaced, rollouts) and the API requests made,
// counted at the client transport.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Run(m, &env)) }

// countingRT counts requests; with BENCH_TRACE=1 it also prints each one
// (start offset, duration, method, path) to stderr, to see which round
// trips run one after another.
type countingRT struct {
	n    *atomic.Int64
	next http.RoundTripper
}

var traceStart = time.Now()

func (c countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	if os.Getenv("BENCH_TRACE") == "" {
		return c.next.RoundTrip(r)
	}
	t0 := time.Now()
	resp, err := c.next.RoundTrip(r)
	fmt.Fprintf(os.Stderr, "trace %7.3fs %6.0fms %-6s %s?%s\n", t0.Sub(traceStart).Seconds(), float64(time.Since(t0).Microseconds())/1000, r.Method, r.URL.Path, r.URL.RawQuery)
	return resp, err
}

func BenchmarkTLS(b *testing.B) {
	for _, replicas := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			ns := env.Namespace(b)
			env.Apply(b, ns, env.Fixture(b, "issuers.yaml"), 0)
			env.Apply(b, ns, env.Fixture(b, "kubedb.yaml"), replicas)
			env.WaitPodsReady(b, ns, "app.kubernetes.io/instance=pgpool", replicas, 2*time.Minute)
			for _, op := range [][]string{
				{"add", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert"},
				{"rotate"},
				{"change-issuer", "--issuer", "pp-new-issuer"},
				{"remove"},
			} {
				b.Run(op[0], func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						if i > 0 {
							b.Fatal("run with -benchtime 1x: each operation depends on the one before")
						}
						runOp(b, ns, op)
					}
				})
			}
		})
	}
}

func runOp(b *testing.B, ns string, op []string) {
	var requests atomic.Int64
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: "bench"}, func(f *genericclioptions.ConfigFlags) {
		f.WrapConfigFn = func(c *rest.Config) *rest.Config {
			c.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingRT{&requests, rt} })
			return c
		}
	})
	args := append([]string{"--kubeconfig", env.Kubeconfig, "-n", ns, "tls", op[0], "pgpool"}, op[1:]...)
	root.SetArgs(append(args, "--yes", "-o", "json"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	waitForIssuers(b, ns)
	settle(b)
	b.ResetTimer()
	t0 := time.Now()
	err := root.ExecuteContext(ctx)
	wall := time.Since(t0)
	b.StopTimer()
	if err != nil {
		b.Fatalf("%v: %v\n%s", op, err, errOut)
	}
	var doc struct {
		Plan struct {
			Steps []struct {
				Concurrent bool `json:"concurrent"`
			} `json:"steps"`
		} `json:"plan"`
		Result plan.Result `json:"result"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		b.Fatalf("parse -o json: %v", err)
	}
	// Steps that ran at the same time (both Certificates waited for
	// together) count once, as the longest of them.
	waiting, group := 0.0, 0.0
	for i, s := range doc.Result.Steps {
		w := 0.0
		switch s.Kind {
		case plan.Wait, plan.Evict, plan.Rollout:
			w = s.Seconds
		}
		if i < len(doc.Plan.Steps) && doc.Plan.Steps[i].Concurrent {
			group = max(group, w)
			continue
		}
		waiting += group
		group = w
	}
	waiting += group
	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(waiting, "controller-wait-s")
	b.ReportMetric(float64(requests.Load()), "api-requests")
	b.ReportMetric(0, "ns/op")
}

// waitForIssuers makes sure the fixture's issuers are Ready before timing.
func waitForIssuers(b *testing.B, ns string) {
	b.Helper()
	for _, n := range []string{"pgpool-issuer", "pp-new-issuer"} {
		ctx := testenv.Context(b, 2*time.Minute)
		env.WaitIssuerReady(b, ctx, ns, n)
	}
}

// settle waits until no namespace is being deleted: the namespaces of the
// benchmark before (100 of them after a fleet) are torn down by the
// control plane on the same 2 cores, which would slow the next measurement.
func settle(b *testing.B) {
	b.Helper()
	ctx := testenv.Context(b, 10*time.Minute)
	var store cache.Store
	terminating := func() bool {
		for _, o := range store.List() {
			if o.(*corev1.Namespace).Status.Phase == corev1.NamespaceTerminating {
				return true
			}
		}
		return false
	}
	lw := cache.NewListWatchFromClient(env.Kube.CoreV1().RESTClient(), "namespaces", "", fields.Everything())
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Namespace{}, func(s cache.Store) (bool, error) {
		store = s
		return !terminating(), nil
	}, func(watch.Event) (bool, error) { return !terminating(), nil })
	if err != nil {
		b.Fatalf("waiting for the namespaces being deleted to go: %v", err)
	}
}
