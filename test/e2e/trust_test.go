package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	pgstatus "github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// copyOf is the CA subjects of ConfigMap pgpool-ca in ns ("" when there is
// none).
func copyOf(t *testing.T, ctx context.Context, ns string) string {
	t.Helper()
	cm, err := env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "pgpool-ca", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return ""
	} else if err != nil {
		t.Fatal(err)
	}
	return strings.Join(tls.Subjects([]byte(cm.Data["ca.crt"])), "; ")
}

// Issue 28, client trust: `tls trust` writes the pgpool's CA into the
// clients' namespaces, refuses a ConfigMap of that name that is not its
// copy (writing nothing), keeps the copies current through change-issuer
// (both CAs, written before the first pod restarts, the plan naming them),
// deletes the copies no longer wanted, and with trust-manager's CRD
// installed writes one trust-manager Bundle instead and says so.
func TestTrust(t *testing.T) {
	ns := setup(t, layouts[0], 1)
	a, b, c := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	ctx := testenv.Context(t, 5*time.Minute)
	if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes"); err != nil {
		t.Fatal(err)
	}
	const oldCA, newCA = "CN=ca,O=kubedb", "CN=ca-updated,O=kubedb-updated"

	// Someone else's ConfigMap pgpool-ca in c: refused, nothing written.
	if _, err := env.Kube.CoreV1().ConfigMaps(c).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-ca"}, Data: map[string]string{"ca.crt": "theirs"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, _, err := plugin(t, env.Kubeconfig, ns, "tls", "trust", "pgpool", "--to-namespace", a+","+c, "--yes")
	if err == nil || !strings.Contains(err.Error(), "ConfigMap "+c+"/pgpool-ca exists and was not written by kubectl-pgpool") {
		t.Fatalf("trust over someone else's ConfigMap: %v", err)
	}
	if got := copyOf(t, ctx, a); got != "" {
		t.Fatalf("a refused trust wrote into %s: %q", a, got)
	}
	if w := layouts[0].workload(t, ns); w.GetAnnotations()[pgpool.AnnotationTrust] != "" {
		t.Fatalf("a refused trust recorded %s", w.GetAnnotations()[pgpool.AnnotationTrust])
	}

	out, _, err := plugin(t, env.Kubeconfig, ns, "tls", "trust", "pgpool", "--to-namespace", a+","+b, "--yes")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{a, b} {
		if got := copyOf(t, ctx, n); got != oldCA {
			t.Fatalf("ConfigMap %s/pgpool-ca holds %q, want the issuer's CA %s\n%s", n, got, oldCA, out)
		}
	}

	out, _, err = plugin(t, env.Kubeconfig, ns, "tls", "change-issuer", "pgpool", "--issuer", "pp-new-issuer", "--yes")
	if err != nil {
		t.Fatal(err)
	}
	step := strings.Index(out, "keep the clients' copy of the CA current (tls trust): ConfigMap pgpool-ca in namespaces")
	evict := strings.Index(out, "evict   Pod")
	if step < 0 || evict < 0 || step > evict {
		t.Fatalf("the change-issuer plan does not name the copies before the first restart (step at %d, first evict at %d):\n%s", step, evict, out)
	}
	for _, n := range []string{a, b} {
		if got := copyOf(t, ctx, n); got != newCA+"; "+oldCA {
			t.Fatalf("after change-issuer, ConfigMap %s/pgpool-ca holds %q, want the new CA then the previous one", n, got)
		}
	}

	// Only b now: a's copy goes.
	if out, _, err = plugin(t, env.Kubeconfig, ns, "tls", "trust", "pgpool", "--to-namespace", b, "--yes"); err != nil || !strings.Contains(out, "deleted ConfigMap "+a+"/pgpool-ca") {
		t.Fatalf("trust to b only: %v\n%s", err, out)
	}
	if copyOf(t, ctx, a) != "" || copyOf(t, ctx, b) == "" {
		t.Fatalf("after trust to %s only: a %q, b %q", b, copyOf(t, ctx, a), copyOf(t, ctx, b))
	}
	if cm, _ := env.Kube.CoreV1().ConfigMaps(c).Get(ctx, "pgpool-ca", metav1.GetOptions{}); cm == nil || cm.Data["ca.crt"] != "theirs" {
		t.Fatalf("someone else's ConfigMap %s/pgpool-ca was changed: %v", c, cm)
	}

	// trust-manager installed: one Bundle, said so; the plugin's own
	// ConfigMaps go (trust-manager writes its own).
	env.InstallTrustManagerAPI(t)
	out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "trust", "pgpool", "--to-namespace", a+","+b, "--yes")
	if err != nil || !strings.Contains(errOut, "trust-manager is installed: the CA goes into a trust-manager Bundle") {
		t.Fatalf("trust with trust-manager: %v\n%s\n%s", err, out, errOut)
	}
	bundle, err := env.Dynamic.Resource(tls.Bundles).Get(ctx, "pgpool-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sources, _, _ := unstructured.NestedSlice(bundle.Object, "spec", "sources")
	inline := ""
	if len(sources) == 1 {
		inline, _, _ = unstructured.NestedString(sources[0].(map[string]any), "inLine")
	}
	if got := strings.Join(tls.Subjects([]byte(inline)), "; "); got != newCA+"; "+oldCA {
		t.Fatalf("the Bundle's source holds %q", got)
	}
	exprs, _, _ := unstructured.NestedSlice(bundle.Object, "spec", "target", "namespaceSelector", "matchExpressions")
	want := []string{a, b}
	slices.Sort(want)
	if len(exprs) != 1 {
		t.Fatalf("the Bundle's namespaceSelector: %v", exprs)
	}
	key, _, _ := unstructured.NestedString(exprs[0].(map[string]any), "key")
	vals, _, _ := unstructured.NestedStringSlice(exprs[0].(map[string]any), "values")
	if key != corev1.LabelMetadataName || !slices.Equal(vals, want) {
		t.Fatalf("the Bundle's namespaceSelector: %v, want %s In %v", exprs, corev1.LabelMetadataName, want)
	}
	if key, _, _ := unstructured.NestedString(bundle.Object, "spec", "target", "configMap", "key"); key != "ca.crt" {
		t.Fatalf("the Bundle's target key: %q", key)
	}
	if copyOf(t, ctx, b) != "" {
		t.Fatalf("the plugin's ConfigMap in %s was left for trust-manager to fight over", b)
	}

	// trust-manager lagging behind: its copy in a still holds only the CA
	// before; b has none yet. A rotate waits, before the first restart,
	// until the copy in a holds what the Bundle says (here the test plays
	// trust-manager's controller, which is not installed, once the rotate
	// says it waits), and names b as not waited for.
	lagging := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-ca",
		Labels: map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: "pgpool"}, Annotations: map[string]string{tls.AnnotationCAOf: ns + "/pgpool"}},
		Data: map[string]string{"ca.crt": string(secretData(t, ctx, ns, "pgpool-ca", "tls.crt"))}}
	if _, err := env.Kube.CoreV1().ConfigMaps(a).Create(ctx, lagging, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w := &onLine{match: "waiting for trust-manager to write the CA into ConfigMap " + a + "/pgpool-ca", do: func() {
		bundle, err := env.Dynamic.Resource(tls.Bundles).Get(ctx, "pgpool-ca", metav1.GetOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		sources, _, _ := unstructured.NestedSlice(bundle.Object, "spec", "sources")
		inline, _, _ := unstructured.NestedString(sources[0].(map[string]any), "inLine")
		lagging.Data["ca.crt"] = inline
		if _, err := env.Kube.CoreV1().ConfigMaps(a).Update(ctx, lagging, metav1.UpdateOptions{}); err != nil {
			t.Error(err)
		}
	}}
	streams := genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: w, ErrOut: w}
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: "test"})
	root.SetArgs([]string{"--kubeconfig", env.Kubeconfig, "-n", ns, "tls", "rotate", "pgpool", "--reissue=false", "--yes"})
	if err := root.ExecuteContext(ctx); err != nil || !w.done {
		t.Fatalf("rotate with trust-manager lagging: %v (waited: %v)\n%s", err, w.done, w.buf.String())
	}
	out = w.buf.String()
	synced, evicted := strings.Index(out, "trust-manager synced it into "+a), strings.Index(out, "evicted pod")
	if synced < 0 || evicted < 0 || synced > evicted || !strings.Contains(out, "no copy in "+b+" yet (not waited for") {
		t.Fatalf("the rotate did not wait for trust-manager's copy before the first restart (synced at %d, first eviction at %d):\n%s", synced, evicted, out)
	}
	if out, _, err = plugin(t, env.Kubeconfig, ns, "tls", "trust", "pgpool", "--stop", "--yes"); err != nil || !strings.Contains(out, "deleted trust-manager Bundle pgpool-ca") {
		t.Fatalf("trust --stop: %v\n%s", err, out)
	}
	if w := layouts[0].workload(t, ns); w.GetAnnotations()[pgpool.AnnotationTrust] != "" {
		t.Fatalf("trust --stop left the record %s", w.GetAnnotations()[pgpool.AnnotationTrust])
	}
	_, _, err = plugin(t, env.Kubeconfig, ns, "tls", "trust", "pgpool", "--yes")
	if cmd.ExitCode(err) != 2 {
		t.Fatalf("trust without a place: %v, want a usage error", err)
	}
}

// Issue 28, a CA renewed under the same issuer: the CA Certificate behind
// Issuer pgpool-issuer is re-issued (a new key; the Issuer's name and
// Secret unchanged), which cert-manager does not pass on to the leaves.
// Status names the certificates the issuer's CA no longer signs and
// --verify=required fails on it; tls rotate re-issues them and keeps the
// CA that signed them until now in the bundle as the previous one; then
// status is clean.
func TestCARenewedInPlace(t *testing.T) {
	ns := setup(t, layouts[0], 1)
	ctx := testenv.Context(t, 5*time.Minute)
	if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes"); err != nil {
		t.Fatal(err)
	}
	oldCA := secretData(t, ctx, ns, "pgpool-ca", "tls.crt")
	cm := env.CertMgr.CertmanagerV1()
	crt, err := cm.Certificates(ns).Get(ctx, "pgpool-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := issuing.TriggerIssuance(ctx, cm, ns, "pgpool-ca", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := issuing.WaitReady(ctx, cm, ns, "pgpool-ca", tls.Revision(crt), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	newCA := secretData(t, ctx, ns, "pgpool-ca", "tls.crt")
	if string(newCA) == string(oldCA) {
		t.Fatal("the CA was not renewed")
	}
	waitIssuer(t, ns, "pgpool-issuer")

	st := statusJSON(t, ns)
	if st.IssuerCA == nil || strings.Join(st.IssuerCA.Stale, ",") != "pgpool-client-cert,pgpool-server-cert" || st.CARenewed() == "" {
		t.Fatalf("status after the CA was renewed in place: %+v", st.IssuerCA)
	}
	_, _, err = plugin(t, env.Kubeconfig, ns, "tls", "status", "pgpool", "--verify=required")
	if err == nil || !strings.Contains(err.Error(), "the issuer's CA was renewed in place") {
		t.Fatalf("status --verify=required with stale certificates: %v", err)
	}

	out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "rotate", "pgpool", "--yes")
	if err != nil || !strings.Contains(out+errOut, "stage 1 of 3") || !strings.Contains(out+errOut, "re-issued by it (stage 2 of 3)") {
		t.Fatalf("rotate after the CA was renewed, want its stages 1 and 2: %v\n%s\n%s", err, out, errOut)
	}
	b, err := env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, tls.CABundleName("pgpool"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !tls.SignedBy(secretData(t, ctx, ns, "pgpool-server-cert", "tls.crt"), newCA) || b.Data[tls.PreviousCAKey] == "" ||
		!strings.Contains(b.Data[tls.PreviousCAKey], strings.TrimSpace(string(oldCA))) || !strings.Contains(b.Data[tls.IssuerCAKey], strings.TrimSpace(string(newCA))) {
		t.Fatalf("after rotate: server signed by the new CA %v; bundle issuer %q, previous %q", tls.SignedBy(secretData(t, ctx, ns, "pgpool-server-cert", "tls.crt"), newCA),
			tls.Subjects([]byte(b.Data[tls.IssuerCAKey])), tls.Subjects([]byte(b.Data[tls.PreviousCAKey])))
	}
	if r := tls.Records(b.Data); len(r) != 1 || r[0].Origin != tls.OriginPrevious || !r[0].UntilReissued || !tls.InPEM(oldCA, r[0].SHA256) {
		t.Fatalf("the bundle's record of the CA before: %+v", r)
	}
	if st := statusJSON(t, ns); st.IssuerCA == nil || len(st.IssuerCA.Stale) > 0 || !st.IssuerCA.InBundle || st.CARenewed() != "" {
		t.Fatalf("status after rotate: %+v", st.IssuerCA)
	}
}

func secretData(t *testing.T, ctx context.Context, ns, name, key string) []byte {
	t.Helper()
	s, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data[key]
}

func statusJSON(t *testing.T, ns string) *pgstatus.Status {
	t.Helper()
	out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "status", "pgpool", "--verify=false", "-o", "json")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, errOut)
	}
	var st pgstatus.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return &st
}
