// Package e2e tests the local cluster itself and kubectl-pgpool on it:
// real API server, controller-manager, scheduler, kwok pods and
// cert-manager's own controllers (see test/testenv).
package e2e

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, &env))
}

// plugin runs `kubectl pgpool ARGS...` in-process against the local cluster
// as the admin, and returns stdout, stderr and the error.
func plugin(t testing.TB, kubeconfig, ns string, args ...string) (string, string, error) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: "test"})
	root.SetArgs(append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// waitIssuer waits, by watch, for an Issuer to be Ready.
func waitIssuer(t testing.TB, ns, name string) {
	t.Helper()
	env.WaitIssuerReady(t, testenv.Context(t, 2*time.Minute), ns, name)
}

// podLog records, by watch, every pod UID that appears in a namespace, and
// the lowest number of Ready pods seen, from the moment it starts.
type podLog struct {
	mu       sync.Mutex
	added    map[types.UID]string
	ready    map[types.UID]bool
	minReady int
	stop     context.CancelFunc
	done     chan struct{}
}

func watchPods(t testing.TB, ns, selector string) *podLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	list, err := env.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	l := &podLog{added: map[types.UID]string{}, ready: map[types.UID]bool{}, stop: cancel, done: make(chan struct{})}
	for _, p := range list.Items {
		l.ready[p.UID] = testenv.PodReady(&p)
	}
	l.minReady = countTrue(l.ready)
	w, err := env.Kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(l.done)
		defer w.Stop()
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			l.mu.Lock()
			switch ev.Type {
			case watch.Added:
				l.added[p.UID] = p.Name
				l.ready[p.UID] = testenv.PodReady(p)
			case watch.Modified:
				l.ready[p.UID] = testenv.PodReady(p)
			case watch.Deleted:
				delete(l.ready, p.UID)
			}
			if n := countTrue(l.ready); n < l.minReady {
				l.minReady = n
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(l.Stop)
	return l
}

func countTrue(m map[types.UID]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

// Stop ends the watch.
func (l *podLog) Stop() {
	l.stop()
	<-l.done
}

// Added returns the pods created since the watch began.
func (l *podLog) Added() map[types.UID]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[types.UID]string{}
	for k, v := range l.added {
		out[k] = v
	}
	return out
}
