package realnode

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// helmTool builds (once, cached) the pinned Helm and unpacks the
// postgresql-ha chart snapshot (hack/build-helm.sh). Without the snapshot
// the test is skipped, saying why.
func helmTool(t *testing.T) (bin, chart string) {
	t.Helper()
	build := exec.Command("bash", filepath.Join(env.Root, "hack", "build-helm.sh"))
	var stderr strings.Builder
	build.Stderr = &stderr
	out, err := build.Output()
	if err != nil {
		t.Fatalf("hack/build-helm.sh: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) < 2 || lines[1] == "" {
		t.Skip(strings.TrimSpace(stderr.String()))
	}
	return lines[0], lines[1]
}

// helmRun runs helm against the test cluster in namespace ns.
func helmRun(t *testing.T, bin, ns string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", env.Kubeconfig, "-n", ns}, args...)...)
	c.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rolledOut waits until the Deployment's rolling update is done (kubectl
// rollout status: every pod of the newest template, the old ones gone).
// The Deployment's status says it (its controller has seen the newest
// generation, and every replica is updated and available, none other
// left), then the pods do: 2 Ready, no other.
func rolledOut(t *testing.T, ns string) {
	t.Helper()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (k8sruntime.Object, error) {
			o.FieldSelector = testenv.NameSelector(bitnamiName)
			return env.Kube.AppsV1().Deployments(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = testenv.NameSelector(bitnamiName)
			return env.Kube.AppsV1().Deployments(ns).Watch(ctx, o)
		},
	}
	d := testenv.WaitObject(t, testenv.Context(t, 2*time.Minute), lw, &appsv1.Deployment{}, "the rollout of Deployment "+bitnamiName, func(d *appsv1.Deployment) bool {
		s := d.Status
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == 2 && s.Replicas == 2 && s.AvailableReplicas == 2
	})
	// The newest ReplicaSet (the Deployment's revision), and then its 2
	// pods Ready with no other pod left: a Deployment's status can say
	// "done" while an old pod still serves (seen: status then proved 3).
	rev := d.Annotations["deployment.kubernetes.io/revision"]
	rss, err := env.Kube.AppsV1().ReplicaSets(ns).List(testenv.Context(t, time.Minute), metav1.ListOptions{LabelSelector: bitnamiSelector})
	if err != nil {
		t.Fatal(err)
	}
	hash := ""
	for _, rs := range rss.Items {
		if rs.Annotations["deployment.kubernetes.io/revision"] == rev {
			hash = rs.Labels["pod-template-hash"]
		}
	}
	if hash == "" {
		t.Fatalf("no ReplicaSet of revision %s", rev)
	}
	for {
		pods := env.WaitPodsReady(t, ns, bitnamiSelector, 2, 2*time.Minute)
		if pods[0].Labels["pod-template-hash"] == hash && pods[1].Labels["pod-template-hash"] == hash {
			return
		}
		// An old pod is one of the 2: wait for the next change.
		env.WaitPodsReady(t, ns, bitnamiSelector+",pod-template-hash="+hash, 2, 2*time.Minute)
	}
}

// helmValuesOf cuts the values file out of the plan's Helm warning, and
// the hand-over command for the ConfigMap add creates.
func helmValuesOf(t *testing.T, out string) (values, handOver string) {
	t.Helper()
	i := strings.Index(out, "Helm release pg renders this Deployment")
	if i < 0 {
		t.Fatalf("the plan prints no Helm values:\n%s", out)
	}
	rest := out[i:]
	start := strings.Index(rest, "\nvalues.yaml:\npgpool:\n")
	end := start + strings.Index(rest[start:], "\n\n")
	if start < 0 || end < start {
		t.Fatalf("no values file in the Helm warning:\n%s", rest)
	}
	values = rest[start+len("\nvalues.yaml:\n") : end+1]
	if m := regexp.MustCompile(`(?m)^  (kubectl label configmap .*)$`).FindStringSubmatch(rest[:start+1]); m != nil {
		handOver = m[1]
	}
	return values, handOver
}

// TestBitnamiHelmReleaseOnRealNode: Bitnami's postgresql-ha chart installed
// by real Helm (4, which applies server-side), its pgpool run by Bitnami's
// own container scripts and real pgpool. The plugin names the release from
// its release Secret; add's printed values, given to `helm upgrade`, keep
// TLS (still proven, plaintext refused), with no conflict with the
// plugin's field manager; an upgrade without them (--reset-values) takes
// TLS out, and status says so and names Helm.
func TestBitnamiHelmReleaseOnRealNode(t *testing.T) {
	if !env.Cluster.RealNode {
		t.Fatal("the cluster has no real node: start it with REAL_NODE=1 make cluster-up")
	}
	ns, ctx := bitnamiNamespace(t)
	helm, chart := helmTool(t)
	env.WaitIssuerReady(t, ctx, ns, "pgpool-issuer")
	base := filepath.Join(env.Root, "test", "fixtures", "bitnami-helm-values.yaml")
	helmRun(t, helm, ns, "install", "pg", chart, "-f", base)
	env.WaitPodsReady(t, ns, bitnamiSelector, 2, 3*time.Minute)
	if plain, _, _ := bitnamiLoginsAt(t, ns, 5432); !plain {
		t.Fatal("the chart's pgpool refuses a plain password login before add")
	}

	out := bitnamiRun(t, ns, "add", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert",
		"--backend-ca", "secret/pgpool-backend-cert", "--owner=ignore")
	if !strings.Contains(out, "Helm (release "+ns+"/pg, revision 1 deployed ") {
		t.Fatalf("add does not name the release as its release Secret has it (revision 1, deployed):\n%s", out)
	}
	check := func(when string, wantPlain, wantNoCert, wantCert bool) {
		t.Helper()
		plain, noCert, withCert := bitnamiLoginsAt(t, ns, 5432)
		if plain != wantPlain || noCert != wantNoCert || withCert != wantCert {
			t.Fatalf("%s: logins plain %v, TLS without a certificate %v, with the client certificate %v; want %v %v %v", when, plain, noCert, withCert, wantPlain, wantNoCert, wantCert)
		}
	}
	check("after add", false, false, true)

	// The upgrade with exactly what the plan printed.
	values, handOver := helmValuesOf(t, out)
	if handOver == "" {
		t.Fatalf("the plan does not say how to hand its ConfigMap to the release:\n%s", out)
	}
	sh := exec.Command("sh", "-c", handOver)
	sh.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig, "PATH="+env.Cluster.BinDir+":"+os.Getenv("PATH"))
	if b, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", handOver, err, b)
	}
	vf := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(vf, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	helmRun(t, helm, ns, "upgrade", "pg", chart, "--reuse-values", "-f", vf)
	rolledOut(t, ns)
	d, err := env.Kube.AppsV1().Deployments(ns).Get(testenv.Context(t, time.Minute), bitnamiName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range d.ManagedFields {
		if m.Manager == runner.FieldManager {
			t.Errorf("after the upgrade kubectl-pgpool still owns fields of the Deployment (%s): the next upgrade could not take them out", m.Operation)
		}
	}
	st, err := runStatusOf(t, ns, bitnamiName)
	if err != nil || !st.SSL || st.Reverted != "" || len(st.Pods) != 2 {
		o, _ := kubectl(t, "-n", ns, "get", "rs,pods,events", "-o", "wide")
		t.Log(o)
		t.Fatalf("status after the upgrade with the printed values: %v, ssl %v, reverted %q, %d pods", err, st.SSL, st.Reverted, len(st.Pods))
	}
	for _, p := range st.Pods {
		if p.Plaintext != "refused" || p.Certless != "refused" {
			t.Fatalf("pod %s after the upgrade: plaintext %q, certless %q, want refused, refused (%s)", p.Name, p.Plaintext, p.Certless, strings.Join(p.Refusal, "; "))
		}
	}
	check("after the upgrade with the printed values", false, false, true)

	// An upgrade from the install's values alone: Helm takes TLS out.
	helmRun(t, helm, ns, "upgrade", "pg", chart, "--reset-values", "-f", base)
	rolledOut(t, ns)
	check("after the upgrade with --reset-values", true, false, false)
	st, _ = runStatusOf(t, ns, bitnamiName)
	if st.SSL || !strings.Contains(st.Reverted, "Helm put the chart's values back") || !strings.Contains(st.Reverted, "revision 3") {
		t.Fatalf("status after helm upgrade --reset-values: ssl %v, reverted %q; want it reverted by Helm, revision 3", st.SSL, st.Reverted)
	}
	text, _, _ := testenv.Plugin(env.Kubeconfig, ns, 2*time.Minute, "tls", "status", bitnamiName)
	if !bytes.Contains([]byte(text), []byte("REVERTED:")) {
		t.Fatalf("tls status does not show the revert:\n%s", text)
	}
}
