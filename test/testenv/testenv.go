// Package testenv gives the plugin's tests a real local Kubernetes cluster
// (hack/cluster.sh: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kwok and cert-manager's controllers). It attaches to a
// running cluster when KUBECTL_PGPOOL_KUBECONFIG names its kubeconfig, and
// otherwise starts one for the test binary (and stops it afterwards). It only
// runs the cached binaries; it imports none of their modules. Every test gets
// a fresh namespace, deleted afterwards, and the fixtures under test/fixtures.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// EnvKubeconfig names the kubeconfig of a running local cluster to attach to
// (hack/with-cluster.sh sets it from the cluster's env file).
const EnvKubeconfig = "KUBECTL_PGPOOL_KUBECONFIG"

// ClusterEnv is the contract hack/cluster.sh writes to $CLUSTER_DIR/env.
type ClusterEnv struct {
	Kubeconfig string
	ClusterDir string
	BinDir     string
	PortBase   string
	RealNode   bool
}

// ReadEnv reads a cluster's env file (KEY=VALUE lines).
func ReadEnv(path string) (*ClusterEnv, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the cluster's env file: %w", err)
	}
	e := &ClusterEnv{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok {
			continue
		}
		switch k {
		case "KUBECONFIG":
			e.Kubeconfig = v
		case "CLUSTER_DIR":
			e.ClusterDir = v
		case "BIN_DIR":
			e.BinDir = v
		case "PORT_BASE":
			e.PortBase = v
		case "REAL_NODE":
			e.RealNode = v == "1"
		}
	}
	if e.Kubeconfig == "" || e.BinDir == "" {
		return nil, fmt.Errorf("%s: no KUBECONFIG or BIN_DIR", path)
	}
	return e, nil
}

// Env is a running cluster.
type Env struct {
	Kubeconfig string
	Config     *rest.Config
	Kube       kubernetes.Interface
	CertMgr    cmclient.Interface
	Dynamic    dynamic.Interface
	Mapper     meta.RESTMapper
	Root       string // repository root
	// Cluster is the cluster's env file: its bin dir (kubectl) and whether
	// it has the real node.
	Cluster *ClusterEnv
	stop    func()
	bin     binary
}

// RepoRoot finds the repository root from this source file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Run is for TestMain: it attaches to or starts a cluster, stores it in
// *env, runs the tests and stops a cluster it started.
func Run(m *testing.M, env **Env) int {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	*env = e
	defer e.Stop()
	return m.Run()
}

// Start attaches to the cluster named by KUBECTL_PGPOOL_KUBECONFIG, or starts
// a private one with hack/cluster.sh on free loopback ports. A cluster it
// started is stopped again when anything after that fails.
func Start() (_ *Env, err error) {
	root := RepoRoot()
	e := &Env{Root: root, stop: func() {}}
	defer func() {
		if err != nil {
			e.stop()
		}
	}()
	envFile := ""
	if kc := os.Getenv(EnvKubeconfig); kc != "" {
		envFile = filepath.Join(filepath.Dir(kc), "env")
	} else {
		dir, err := os.MkdirTemp("", "kubectl-pgpool-cluster-")
		if err != nil {
			return nil, err
		}
		base, err := freePortBase(root)
		if err != nil {
			return nil, err
		}
		clusterDir := filepath.Join(dir, "cluster")
		env := append(os.Environ(), "CLUSTER_DIR="+clusterDir, fmt.Sprintf("PORT_BASE=%d", base))
		e.stop = func() {
			down := exec.Command(filepath.Join(root, "hack", "cluster.sh"), "down")
			down.Env = env
			down.Stderr = os.Stderr
			_ = down.Run()
			_ = os.RemoveAll(dir)
		}
		cmd := exec.Command(filepath.Join(root, "hack", "cluster.sh"), "up")
		cmd.Env = env
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("start a local cluster (hack/cluster.sh up): %w", err)
		}
		envFile = filepath.Join(clusterDir, "env")
	}
	if e.Cluster, err = ReadEnv(envFile); err != nil {
		return nil, err
	}
	e.Kubeconfig = e.Cluster.Kubeconfig
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", e.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	e.Config = cfg
	if e.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if e.CertMgr, err = cmclient.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if e.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	e.Mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	if _, err := e.Kube.Discovery().ServerVersion(); err != nil {
		return nil, fmt.Errorf("cluster at %s does not answer: %w", e.Kubeconfig, err)
	}
	return e, nil
}

// freePortBase finds a base port under which every port the cluster binds
// (hack/cluster.sh port-offsets) is free.
func freePortBase(root string) (int, error) {
	out, err := exec.Command(filepath.Join(root, "hack", "cluster.sh"), "port-offsets").Output()
	if err != nil {
		return 0, fmt.Errorf("hack/cluster.sh port-offsets: %w", err)
	}
	var offsets []int
	for _, f := range strings.Fields(string(out)) {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil {
			return 0, fmt.Errorf("hack/cluster.sh port-offsets: %q", out)
		}
		offsets = append(offsets, n)
	}
	for try := 0; try < 50; try++ {
		var b [2]byte
		_, _ = rand.Read(b[:])
		base := 20000 + (int(b[0])<<8|int(b[1]))%300*100 // 20000..49900, step 100
		ok := true
		for _, off := range offsets {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+off))
			if err != nil {
				ok = false
				break
			}
			_ = l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no free loopback ports found")
}

// Stop stops a cluster that Start started.
func (e *Env) Stop() {
	e.bin.remove()
	e.stop()
}

// Context returns a context bounded by d and cancelled at the test's end.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a fresh namespace for t (deleted when t ends) and waits
// for its default ServiceAccount.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	base := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(base) > 40 {
		base = base[len(base)-40:]
	}
	name := strings.Trim("t-"+strings.Trim(base, "-")+"-"+hex.EncodeToString(b[:]), "-")
	ctx := Context(t, time.Minute)
	if _, err := e.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = e.Kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (k8sruntime.Object, error) {
			o.FieldSelector = NameSelector("default")
			return e.Kube.CoreV1().ServiceAccounts(name).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = NameSelector("default")
			return e.Kube.CoreV1().ServiceAccounts(name).Watch(ctx, o)
		},
	}
	WaitObject(t, ctx, lw, &corev1.ServiceAccount{}, "default ServiceAccount in "+name, func(*corev1.ServiceAccount) bool { return true })
	return name
}

// Fixture reads test/fixtures/NAME as objects.
func (e *Env) Fixture(t testing.TB, name string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Root, "test", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return decodeObjects(t, name, b)
}

// KubeDBFixtureNamed is kubedb.yaml for a pgpool named name instead of
// pgpool (its workload, config, Services, PDB and labels), so that two
// pgpools can share a namespace.
func (e *Env) KubeDBFixtureNamed(t testing.TB, name string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Root, "test", "fixtures", "kubedb.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer(
		"name: pgpool-config", "name: "+name+"-config",
		"secretName: pgpool-config", "secretName: "+name+"-config",
		"app.kubernetes.io/instance: pgpool", "app.kubernetes.io/instance: "+name,
		"serviceName: pgpool-pods", "serviceName: "+name+"-pods",
		"  name: pgpool-pods\n", "  name: "+name+"-pods\n",
		"\n  name: pgpool\n", "\n  name: "+name+"\n",
	)
	return decodeObjects(t, "kubedb.yaml as "+name, []byte(r.Replace(string(b))))
}

func decodeObjects(t testing.TB, name string, b []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("decode %s: %v", name, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

// Apply creates the objects in ns (cluster-scoped and namespaced objects
// that name their own namespace keep it), setting spec.replicas of
// workloads to replicas when it is > 0. Objects that exist are updated by
// server-side apply.
func (e *Env) Apply(t testing.TB, ns string, objs []*unstructured.Unstructured, replicas int) {
	t.Helper()
	ctx := Context(t, time.Minute)
	for _, o := range objs {
		o = o.DeepCopy()
		if replicas > 0 && (o.GetKind() == "StatefulSet" || o.GetKind() == "Deployment") {
			_ = unstructured.SetNestedField(o.Object, int64(replicas), "spec", "replicas")
		}
		gvk := o.GroupVersionKind()
		m, err := e.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("map %s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = e.Dynamic.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				o.SetNamespace(ns)
			}
			ri = e.Dynamic.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		data, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		force := true
		if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "testenv", Force: &force}); err != nil {
			t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// WaitPodsReady waits, by watch, until n pods matching selector in ns are
// Ready, and returns them.
func (e *Env) WaitPodsReady(t testing.TB, ns, selector string, n int, d time.Duration) []corev1.Pod {
	t.Helper()
	ctx := Context(t, d)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (k8sruntime.Object, error) {
			o.LabelSelector = selector
			return e.Kube.CoreV1().Pods(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return e.Kube.CoreV1().Pods(ns).Watch(ctx, o)
		},
	}
	pods := map[string]corev1.Pod{}
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		if ev.Type == watch.Deleted {
			delete(pods, p.Name)
		} else {
			pods[p.Name] = *p
		}
		ready := 0
		for _, p := range pods {
			if PodReady(&p) {
				ready++
			}
		}
		return ready == n && len(pods) == n, nil
	})
	if err != nil {
		t.Fatalf("waiting for %d Ready pods (%s) in %s: %v (have %d)", n, selector, ns, err, len(pods))
	}
	var out []corev1.Pod
	for _, p := range pods {
		out = append(out, p)
	}
	return out
}

// PodReady reports whether p is Ready and not terminating.
func PodReady(p *corev1.Pod) bool { return pgpool.PodReady(p) }

// WaitObject waits, by watch, until cond holds for the named object of gvr.
func WaitObject[T k8sruntime.Object](t testing.TB, ctx context.Context, lw cache.ListerWatcher, obj T, what string, cond func(T) bool) T {
	t.Helper()
	ev, err := watchtools.UntilWithSync(ctx, lw, obj, nil, func(ev watch.Event) (bool, error) {
		o, ok := ev.Object.(T)
		return ok && ev.Type != watch.Deleted && cond(o), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return ev.Object.(T)
}

// NameSelector is a field selector on metadata.name.
func NameSelector(name string) string {
	return fields.OneTermEqualSelector("metadata.name", name).String()
}

// ServiceAccountConfig creates ServiceAccount name in ns and returns a REST
// config that authenticates as it with a token from the TokenRequest API.
func (e *Env) ServiceAccountConfig(t testing.TB, ns, name string) *rest.Config {
	t.Helper()
	ctx := Context(t, time.Minute)
	_, err := e.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create ServiceAccount %s/%s: %v", ns, name, err)
	}
	exp := int64(3600)
	tr, err := e.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("request a token for ServiceAccount %s/%s: %v", ns, name, err)
	}
	cfg := rest.AnonymousClientConfig(e.Config)
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// Plugin runs `kubectl pgpool ARGS...` in-process with kubeconfig and -n ns
// (bounded by d), and returns stdout, stderr and the command's error.
func Plugin(kubeconfig, ns string, d time.Duration, args ...string) (string, string, error) {
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: "test"})
	root.SetArgs(append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// WaitAllowed waits until the credential cfg may do what attrs describe
// (SelfSubjectAccessReview as that credential). The RBAC authorizer sees a
// new Role or RoleBinding through its informers, a moment after the write;
// nothing can be watched for that, so this asks again every 50ms until the
// deadline.
func (e *Env) WaitAllowed(t testing.TB, cfg *rest.Config, attrs authorizationv1.ResourceAttributes) {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := Context(t, time.Minute)
	var last string
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		r, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}, metav1.CreateOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = r.Status.Reason
		return r.Status.Allowed, nil
	})
	if err != nil {
		t.Fatalf("waiting for RBAC to allow %s %s/%s in %s: %v (last: %s)", attrs.Verb, attrs.Resource, attrs.Subresource, attrs.Namespace, err, last)
	}
}

// ServiceAccountKubeconfig writes a kubeconfig for cfg (from
// ServiceAccountConfig) into a temp dir and returns its path.
func (e *Env) ServiceAccountKubeconfig(t testing.TB, cfg *rest.Config, ns string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q, certificate-authority-data: %q}
users:
- name: u
  user: {token: %q}
contexts:
- name: c
  context: {cluster: c, user: u, namespace: %q}
current-context: c
`, cfg.Host, b64(cfg.CAData, cfg.CAFile), cfg.BearerToken, ns)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func b64(data []byte, file string) string {
	if len(data) == 0 && file != "" {
		data, _ = os.ReadFile(file)
	}
	return base64.StdEncoding.EncodeToString(data)
}

// WaitIssuerReady waits, by watch, for Issuer ns/name to be Ready.
func (e *Env) WaitIssuerReady(t testing.TB, ctx context.Context, ns, name string) {
	t.Helper()
	e.waitIssuer(t, ctx, ns, name, cmmeta.ConditionTrue)
}

// WaitIssuerNotReady waits, by watch, until cert-manager reports the Issuer
// not Ready (after its spec was broken).
func (e *Env) WaitIssuerNotReady(t testing.TB, ctx context.Context, ns, name string) {
	t.Helper()
	e.waitIssuer(t, ctx, ns, name, cmmeta.ConditionFalse)
}

func (e *Env) waitIssuer(t testing.TB, ctx context.Context, ns, name string, want cmmeta.ConditionStatus) {
	t.Helper()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (k8sruntime.Object, error) {
			o.FieldSelector = NameSelector(name)
			return e.CertMgr.CertmanagerV1().Issuers(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = NameSelector(name)
			return e.CertMgr.CertmanagerV1().Issuers(ns).Watch(ctx, o)
		},
	}
	WaitObject(t, ctx, lw, &cmapi.Issuer{}, "Issuer "+ns+"/"+name+" Ready="+string(want), func(i *cmapi.Issuer) bool {
		for _, c := range i.Status.Conditions {
			if c.Type == cmapi.IssuerConditionReady && c.Status == want && c.ObservedGeneration == i.Generation {
				return true
			}
		}
		return false
	})
}

// PodLog records, by watch, every pod UID that appears in a namespace, and
// the lowest number of Ready pods seen, from the moment it starts.
type PodLog struct {
	t        testing.TB
	mu       sync.Mutex
	added    map[types.UID]string
	ready    map[types.UID]bool
	minReady int
	stop     context.CancelFunc
	done     chan struct{}
	once     sync.Once
	// ended says why the watch ended before Stop (an error event, or the
	// result channel closed): then the log is incomplete.
	ended error
}

// WatchPods starts recording pods matching selector in ns.
func (e *Env) WatchPods(t testing.TB, ns, selector string) *PodLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	list, err := e.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	l := &PodLog{t: t, added: map[types.UID]string{}, ready: map[types.UID]bool{}, stop: cancel, done: make(chan struct{})}
	for _, p := range list.Items {
		l.ready[p.UID] = PodReady(&p)
	}
	l.minReady = countTrue(l.ready)
	// A RetryWatcher resumes from the last resourceVersion when the server
	// closes the watch, so no event is lost; when it cannot, the log says
	// so and Stop fails the test.
	lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		o.LabelSelector = selector
		return e.Kube.CoreV1().Pods(ns).Watch(ctx, o)
	}}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, lw)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(l.done)
		defer w.Stop()
		for {
			var ev watch.Event
			var open bool
			select {
			case <-ctx.Done():
				return
			case ev, open = <-w.ResultChan():
			}
			if !open {
				if ctx.Err() == nil {
					l.mu.Lock()
					l.ended = errors.New("the pod watch closed")
					l.mu.Unlock()
				}
				return
			}
			if ev.Type == watch.Error {
				l.mu.Lock()
				l.ended = fmt.Errorf("the pod watch failed: %v", apierrors.FromObject(ev.Object))
				l.mu.Unlock()
				return
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			l.mu.Lock()
			switch ev.Type {
			case watch.Added:
				l.added[p.UID] = p.Name
				l.ready[p.UID] = PodReady(p)
			case watch.Modified:
				l.ready[p.UID] = PodReady(p)
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

// Stop ends the watch; it fails the test if the watch had ended early, since
// the log would then be incomplete.
func (l *PodLog) Stop() {
	l.once.Do(func() {
		l.stop()
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.ended != nil {
			l.t.Fatalf("pod log incomplete: %v", l.ended)
		}
	})
}

// Added returns the pods created since the watch began.
func (l *PodLog) Added() map[types.UID]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[types.UID]string{}
	for k, v := range l.added {
		out[k] = v
	}
	return out
}

// MinReady is the lowest number of Ready pods seen since the watch began.
func (l *PodLog) MinReady() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.minReady
}
