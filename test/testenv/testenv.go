// Package testenv gives the plugin's tests a real local Kubernetes cluster
// (hack/cluster.sh: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kwok and cert-manager's controllers). It attaches to a
// running cluster when KUBECTL_PGPOOL_KUBECONFIG names its kubeconfig, and
// otherwise starts one for the test binary (and stops it afterwards). It only
// runs the cached binaries; it imports none of their modules. Every test gets
// a fresh namespace, deleted afterwards, and the fixtures under test/fixtures.
//
// Files by concern: testenv.go (the cluster and namespaces), process.go
// (processes in their own PID namespaces), fixtures.go (applying
// test/fixtures), waits.go (waits by watch), access.go (running the plugin,
// as the user or a ServiceAccount), podlog.go (watching a roll's pods),
// load.go (a machine under load), realpgpool.go (real pgpool pods).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
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
	image   pluginImage
}

// RepoRoot finds the repository root from this source file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Run is for TestMain: it attaches to or starts a cluster, stores it in
// *env, runs the tests and stops a cluster it started.
func Run(m *testing.M, env **Env) int {
	if code, ok := NetnsChild(); ok {
		return code // this binary is the PetSet controller's bridge
	}
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
