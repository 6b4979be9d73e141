package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// BenchmarkFleetRotate: rotate of 1, 10 and 100 pgpools (kwok, one pod
// each) with --parallel 10: wall time and API requests.
func BenchmarkFleetRotate(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("pgpools=%d", n), func(b *testing.B) {
			if b.N > 1 {
				b.Fatal("run with -benchtime 1x")
			}
			label := fmt.Sprintf("kubectl-pgpool-bench=b%d", time.Now().UnixNano()%1e9)
			k, v, _ := strings.Cut(label, "=")
			sem := make(chan struct{}, 10)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := 0; i < n; i++ {
				ns := env.Namespace(b)
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem <- struct{}{}
					defer func() { <-sem }()
					errs <- prepare(b, ns, k, v)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
			var requests atomic.Int64
			b.ResetTimer()
			t0 := time.Now()
			out, errOut, err := run(context.Background(), env.Kubeconfig, "", &requests, "tls", "rotate", "-A", "-l", label, "--parallel", "10", "--yes")
			wall := time.Since(t0)
			b.StopTimer()
			if err != nil {
				b.Fatalf("rotate of %d pgpools: %v\n%s\n%s", n, err, out, errOut)
			}
			b.ReportMetric(wall.Seconds(), "wall-s")
			b.ReportMetric(float64(requests.Load()), "api-requests")
			b.ReportMetric(0, "ns/op")
		})
	}
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
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: "bench"}, func(f *genericclioptions.ConfigFlags) {
		if requests == nil {
			return
		}
		f.WrapConfigFn = func(c *rest.Config) *rest.Config {
			c.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingRT{requests, rt} })
			return c
		}
	})
	root.SetArgs(append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...))
	return out.String(), errOut.String(), root.ExecuteContext(ctx)
}

// BenchmarkLatency: tls add on one pod, directly and through a local TCP
// proxy that adds 50 ms to every round trip (25 ms each way).
func BenchmarkLatency(b *testing.B) {
	proxied := latencyKubeconfig(b, 25*time.Millisecond)
	for _, c := range []struct{ name, kubeconfig string }{{"direct", env.Kubeconfig}, {"rtt+50ms", proxied}} {
		b.Run(c.name, func(b *testing.B) {
			if b.N > 1 {
				b.Fatal("run with -benchtime 1x")
			}
			ns := env.Namespace(b)
			env.Apply(b, ns, env.Fixture(b, "issuers.yaml"), 0)
			env.Apply(b, ns, env.Fixture(b, "kubedb.yaml"), 1)
			env.WaitPodsReady(b, ns, "app.kubernetes.io/instance=pgpool", 1, 2*time.Minute)
			waitForIssuers(b, ns)
			var requests atomic.Int64
			b.ResetTimer()
			t0 := time.Now()
			_, errOut, err := run(context.Background(), c.kubeconfig, ns, &requests, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes")
			wall := time.Since(t0)
			b.StopTimer()
			if err != nil {
				b.Fatalf("add: %v\n%s", err, errOut)
			}
			b.ReportMetric(wall.Seconds(), "wall-s")
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
