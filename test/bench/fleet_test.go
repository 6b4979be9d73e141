package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/restart"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// BenchmarkFleetRotate: rotate of 1, 10 and 100 pgpools (kwok, one pod
// each) with --parallel 10: wall time and API requests per pgpool. For 100
// pgpools the same run first measures the floor on the same pgpools
// (floorRotate: the cluster's own part of the work, without the plugin) and
// reports fleet/floor, the plugin's whole cost over the least any tool
// could take here.
func BenchmarkFleetRotate(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("pgpools=%d", n), func(b *testing.B) {
			if b.N > 1 {
				b.Fatal("run with -benchtime 1x")
			}
			label, nss := prepareFleet(b, n)
			var floor, floorCPU time.Duration
			if n == 100 {
				floor, floorCPU = measureFloor(b, nss)
			}
			var requests atomic.Int64
			settle(b)
			b.ResetTimer()
			cpu0 := clusterCPU(b)
			t0 := time.Now()
			out, errOut, err := run(context.Background(), env.Kubeconfig, "", &requests, "tls", "rotate", "-A", "-l", label, "--parallel", "10", "--yes")
			wall := time.Since(t0)
			cpu := clusterCPU(b) - cpu0
			b.StopTimer()
			if err != nil {
				b.Fatalf("rotate of %d pgpools: %v\n%s\n%s", n, err, out, errOut)
			}
			b.ReportMetric(wall.Seconds(), "wall-s")
			b.ReportMetric(float64(requests.Load()), "api-requests")
			b.ReportMetric(float64(requests.Load())/float64(n), "requests/pgpool")
			b.ReportMetric(cpu.Seconds(), "cluster-cpu-s")
			if floor > 0 {
				b.ReportMetric(floor.Seconds(), "floor-wall-s")
				b.ReportMetric(floorCPU.Seconds(), "floor-cluster-cpu-s")
				b.ReportMetric(wall.Seconds()/floor.Seconds(), "fleet/floor")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// measureFloor is the cluster's own part of the fleet's rotate, without
// the plugin: every pgpool's two Certificates re-issued (the Issuing
// condition, as rotate sets it) and, once they are Ready, its pod evicted
// and replaced, all pgpools at once, with nothing else (no discovery,
// checks, lock, backup, bundle, record or verify): about the least any
// tool doing the same work can take here. On 2 cores it is bound by the
// CPU of cert-manager (a new RSA key per certificate) and the control
// plane, which floor-cluster-cpu-s shows.
func measureFloor(b *testing.B, nss []string) (wall, cpu time.Duration) {
	b.Helper()
	ctx := testenv.Context(b, 10*time.Minute)
	settle(b)
	cpu0 := clusterCPU(b)
	t0 := time.Now()
	if err := parallel.Each(len(nss), func(i int) error { return floorRotate(ctx, nss[i]) }); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0), clusterCPU(b) - cpu0
}

// floorRotate re-issues the pgpool's Certificates in ns and replaces its
// pod, with the fewest requests: a trigger and a watch per Certificate, an
// eviction and a watch for the pod.
func floorRotate(ctx context.Context, ns string) error {
	crts := []string{"pgpool-server-cert", "pgpool-client-cert"}
	err := parallel.Each(len(crts), func(i int) error {
		crt, err := env.CertMgr.CertmanagerV1().Certificates(ns).Get(ctx, crts[i], metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := issuing.TriggerIssuance(ctx, env.CertMgr.CertmanagerV1(), ns, crts[i], nil); err != nil {
			return err
		}
		_, err = issuing.WaitReady(ctx, env.CertMgr.CertmanagerV1(), ns, crts[i], tls.Revision(crt), time.Now(), func(string) {})
		return err
	})
	if err != nil {
		return fmt.Errorf("re-issue in %s: %w", ns, err)
	}
	pod, err := env.Kube.CoreV1().Pods(ns).Get(ctx, "pgpool-0", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if _, err := restart.Evict(ctx, env.Kube.PolicyV1(), ns, pod.Name, pod.UID, restart.Options{}); err != nil {
		return err
	}
	lw := cache.NewFilteredListWatchFromClient(env.Kube.CoreV1().RESTClient(), "pods", ns, func(o *metav1.ListOptions) { o.FieldSelector = testenv.NameSelector(pod.Name) })
	_, err = watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		return ok && ev.Type != watch.Deleted && p.UID != pod.UID && testenv.PodReady(p), nil
	})
	if err != nil {
		return fmt.Errorf("wait for %s/%s to be replaced: %w", ns, pod.Name, err)
	}
	return nil
}

// clusterCPU is the CPU time the local cluster's processes (the pids in
// the cluster directory: API server, etcd, controllers, cert-manager, kwok,
// kubelet) have used so far.
func clusterCPU(b *testing.B) time.Duration {
	b.Helper()
	files, err := filepath.Glob(filepath.Join(env.Cluster.ClusterDir, "pids", "*.pid"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no pid files in %s/pids: %v", env.Cluster.ClusterDir, err)
	}
	var ticks int64
	for _, f := range files {
		pid, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		stat, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "stat"))
		if err != nil {
			continue // a process the cluster did not start (no real node)
		}
		// After the command name (in parentheses, may hold spaces): state is
		// field 3; utime and stime are fields 14 and 15, in clock ticks.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		for _, i := range []int{14 - 3, 15 - 3} {
			t, err := strconv.ParseInt(fields[i], 10, 64)
			if err != nil {
				b.Fatalf("parse %s: %v", f, err)
			}
			ticks += t
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}

// prepareFleet puts n labelled pgpools (prepare), each in its own
// namespace, 10 at a time; it returns the label selector and the
// namespaces.
func prepareFleet(b *testing.B, n int) (label string, nss []string) {
	b.Helper()
	label = fmt.Sprintf("kubectl-pgpool-bench=b%d", time.Now().UnixNano()%1e9)
	k, v, _ := strings.Cut(label, "=")
	nss = make([]string, n)
	for i := range nss {
		nss[i] = env.Namespace(b)
	}
	sem := make(chan struct{}, 10)
	err := parallel.Each(n, func(i int) error {
		sem <- struct{}{}
		defer func() { <-sem }()
		return prepare(b, nss[i], k, v)
	})
	if err != nil {
		b.Fatal(err)
	}
	return label, nss
}

// prepare puts a KubeDB-layout pgpool with TLS, labelled k=v, into ns.
func prepare(b *testing.B, ns, k, v string) error {
	env.Apply(b, ns, env.Fixture(b, "issuers.yaml"), 0)
	env.Apply(b, ns, env.Fixture(b, "kubedb.yaml"), 1)
	env.WaitPodsReady(b, ns, "app.kubernetes.io/instance=pgpool", 1, 5*time.Minute)
	for _, n := range []string{"pgpool-issuer", "pp-new-issuer"} {
		env.WaitIssuerReady(b, testenv.Context(b, 5*time.Minute), ns, n)
	}
	if _, errOut, err := run(context.Background(), env.Kubeconfig, ns, nil, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes"); err != nil {
		return fmt.Errorf("add in %s: %v\n%s", ns, err, errOut)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, k, v)
	_, err := env.Kube.AppsV1().StatefulSets(ns).Patch(context.Background(), "pgpool", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// run runs the plugin in-process, counting its API requests when asked.
func run(ctx context.Context, kubeconfig, ns string, requests *atomic.Int64, args ...string) (string, string, error) {
	var wrap func(http.RoundTripper) http.RoundTripper
	if requests != nil {
		wrap = func(rt http.RoundTripper) http.RoundTripper { return countingRT{requests, rt} }
	}
	return runWrapped(ctx, kubeconfig, ns, wrap, args...)
}

// runWrapped runs the plugin in-process with wrap (nil: none) around each
// of its API clients' transports.
func runWrapped(ctx context.Context, kubeconfig, ns string, wrap func(http.RoundTripper) http.RoundTripper, args ...string) (string, string, error) {
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: "bench"}, func(f *genericclioptions.ConfigFlags) {
		if wrap == nil {
			return
		}
		f.WrapConfigFn = func(c *rest.Config) *rest.Config {
			c.Wrap(wrap)
			return c
		}
	})
	root.SetArgs(append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...))
	return out.String(), errOut.String(), root.ExecuteContext(ctx)
}

// timeline records when each API request started and ended.
type timeline struct {
	mu    sync.Mutex
	spans [][2]time.Time
}

type timedRT struct {
	t    *timeline
	next http.RoundTripper
}

func (x timedRT) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := x.next.RoundTrip(r)
	x.t.mu.Lock()
	x.t.spans = append(x.t.spans, [2]time.Time{start, time.Now()})
	x.t.mu.Unlock()
	return resp, err
}

// serial is the longest chain of requests each of which started after the
// one before it had its answer: the round trips a run waits for one after
// another, so at least serial x the added round-trip time is added.
func (t *timeline) serial() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	spans := slices.Clone(t.spans)
	slices.SortFunc(spans, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
	chain := make([]int, len(spans))
	best := 0
	for i, s := range spans {
		chain[i] = 1
		for j := range i {
			if !spans[j][1].After(s[0]) && chain[j]+1 > chain[i] {
				chain[i] = chain[j] + 1
			}
		}
		best = max(best, chain[i])
	}
	return best
}

// BenchmarkLatency: tls add on one pod, directly and through a local TCP
// proxy that adds 50 ms to every round trip (25 ms each way), with the
// number of requests it waits for one after another (serial-requests). Each is run 3
// times (a new pgpool each time) and the median reported, with the
// fastest and slowest: the pod's replacement alone varies by a few tenths
// of a second from run to run, as much as the goal's margin.
func BenchmarkLatency(b *testing.B) {
	proxied := latencyKubeconfig(b, 25*time.Millisecond)
	for _, c := range []struct{ name, kubeconfig string }{{"direct", env.Kubeconfig}, {"rtt+50ms", proxied}} {
		b.Run(c.name, func(b *testing.B) {
			if b.N > 1 {
				b.Fatal("run with -benchtime 1x")
			}
			b.StopTimer()
			var walls []float64
			var serials []int
			var requests atomic.Int64
			for range 3 {
				ns := env.Namespace(b)
				env.Apply(b, ns, env.Fixture(b, "issuers.yaml"), 0)
				env.Apply(b, ns, env.Fixture(b, "kubedb.yaml"), 1)
				env.WaitPodsReady(b, ns, "app.kubernetes.io/instance=pgpool", 1, 2*time.Minute)
				waitForIssuers(b, ns)
				requests.Store(0)
				tl := &timeline{}
				settle(b)
				b.StartTimer()
				t0 := time.Now()
				_, errOut, err := runWrapped(context.Background(), c.kubeconfig, ns, func(rt http.RoundTripper) http.RoundTripper {
					return countingRT{&requests, timedRT{tl, rt}}
				}, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes")
				walls = append(walls, time.Since(t0).Seconds())
				serials = append(serials, tl.serial())
				b.StopTimer()
				if err != nil {
					b.Fatalf("add: %v\n%s", err, errOut)
				}
			}
			slices.Sort(walls)
			slices.Sort(serials)
			b.ReportMetric(walls[1], "wall-s")
			// The requests the run waits for one after another (the median
			// of 3): at +50 ms each, serial x 0.05 s is what the latency
			// adds at the least with these steps.
			b.ReportMetric(float64(serials[1]), "serial-requests")
			b.ReportMetric(walls[0], "fastest-s")
			b.ReportMetric(walls[2], "slowest-s")
			b.ReportMetric(float64(requests.Load()), "api-requests")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// latencyKubeconfig starts a TCP proxy on 127.0.0.1 in front of the API
// server that delays every chunk by d in each direction, and returns a
// kubeconfig that goes through it.
func latencyKubeconfig(b *testing.B, d time.Duration) string {
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	var target string
	for _, c := range cfg.Clusters {
		target = strings.TrimPrefix(c.Server, "https://")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				out, err := net.Dial("tcp", target)
				if err != nil {
					_ = in.Close()
					return
				}
				go delayCopy(out, in, d)
				delayCopy(in, out, d)
			}()
		}
	}()
	for _, c := range cfg.Clusters {
		c.Server = "https://" + l.Addr().String()
	}
	path := filepath.Join(b.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// delayCopy copies src to dst, each chunk d after it was read, in order.
func delayCopy(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	ch := make(chan chunk, 1024)
	go func() {
		defer close(ch)
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{time.Now().Add(d), append([]byte(nil), buf[:n]...)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	_ = dst.Close()
	_, _ = io.Copy(io.Discard, src)
}
