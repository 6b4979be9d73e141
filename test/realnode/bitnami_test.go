package realnode

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/layout"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// The Bitnami postgresql-ha fixture (the chart's pgpool as `helm template`
// renders it, test/fixtures/bitnami-postgresql-ha.yaml).
const (
	bitnamiName     = "pg-postgresql-ha-pgpool"
	bitnamiSelector = "app.kubernetes.io/instance=pg,app.kubernetes.io/name=postgresql-ha,app.kubernetes.io/component=pgpool"
)

// realBitnami puts the fixture (real pgpool started by Bitnami's own
// container scripts, as the bitnami/pgpool image starts it) into a new
// namespace, with the issuers and the backend's TLS, and waits for its 2
// pods. Without the scripts' snapshot there is no such image, and the test
// is skipped.
func realBitnami(t *testing.T) string {
	t.Helper()
	return realBitnamiWith(t, nil)
}

// realBitnamiWith is realBitnami with mutate applied to each of the
// fixture's objects first, and the ConfigMaps cms created before them.
func realBitnamiWith(t *testing.T, mutate func(*unstructured.Unstructured), cms ...*corev1.ConfigMap) string {
	t.Helper()
	ns, ctx := bitnamiNamespace(t)
	for _, cm := range cms {
		if _, err := env.Kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	objs := env.Fixture(t, "bitnami-postgresql-ha.yaml")
	for _, o := range objs {
		if mutate != nil {
			mutate(o)
		}
		a := o.GetAnnotations()
		a["meta.helm.sh/release-namespace"] = ns
		o.SetAnnotations(a)
	}
	env.Apply(t, ns, objs, 2)
	env.WaitIssuerReady(t, ctx, ns, "pgpool-issuer")
	env.WaitIssuerReady(t, ctx, ns, "pp-new-issuer")
	env.WaitPodsReady(t, ns, bitnamiSelector, 2, 3*time.Minute)
	return ns
}

// bitnamiNamespace skips the test without Bitnami's scripts' image, else
// makes a namespace with the issuers and the backend's TLS (its
// certificate issued), and returns it with a 2-minute context.
func bitnamiNamespace(t *testing.T) (string, context.Context) {
	t.Helper()
	if !bitnamiScripts() {
		t.Skip("no snapshot of Bitnami's pgpool container scripts (../shared/third_party/bitnami-pgpool-scripts-*.tar.xz, or BITNAMI_SCRIPTS_ARCHIVE): the image kubectl-pgpool/bitnami-pgpool:local was not built")
	}
	ns := env.Namespace(t)
	env.Apply(t, ns, env.Fixture(t, "issuers.yaml"), 0)
	env.Apply(t, ns, env.Fixture(t, "backend-tls.yaml"), 0)
	ctx := testenv.Context(t, 2*time.Minute)
	if _, err := issuing.WaitReady(ctx, env.CertMgr.CertmanagerV1(), ns, "pgpool-backend-cert", 0, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	return ns, ctx
}

// bitnamiScripts: hack/build-images.sh found Bitnami's scripts (by the same
// rule) and built the image that runs them.
func bitnamiScripts() bool {
	if a := os.Getenv("BITNAMI_SCRIPTS_ARCHIVE"); a != "" {
		_, err := os.Stat(a)
		return err == nil
	}
	m, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "..", "shared", "third_party", "bitnami-pgpool-scripts-*.tar.xz"))
	return len(m) > 0
}

// bitnamiRun runs the plugin on the fixture while watching its pods: every
// pod is replaced exactly once. It returns what the plugin printed.
func bitnamiRun(t *testing.T, ns string, args ...string) string {
	t.Helper()
	before := env.WaitPodsReady(t, ns, bitnamiSelector, 2, 2*time.Minute)
	log := env.WatchPods(t, ns, bitnamiSelector)
	args = append([]string{"tls", args[0], bitnamiName}, args[1:]...)
	out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, append(args, "--yes", "--verify=required")...)
	if err != nil {
		t.Fatalf("kubectl pgpool %s: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
	}
	after := env.WaitPodsReady(t, ns, bitnamiSelector, 2, 2*time.Minute)
	log.Stop()
	allReplaced(t, args[1], before, after)
	if n := len(log.Added()); n != 2 {
		t.Fatalf("%s: %d pods created for 2 replicas, want each replaced exactly once: %v", args[1], n, log.Added())
	}
	return out + errOut
}

// bitnamiTemplate is what the plugin may change of the chart's objects:
// the Deployment's pod template and the ConfigMaps in the namespace.
func bitnamiTemplate(t *testing.T, ns string) (corev1.PodSpec, []string) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	d, err := env.Kube.AppsV1().Deployments(ns).Get(ctx, bitnamiName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cms, err := env.Kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cms.Items {
		if c.Name != "kube-root-ca.crt" {
			names = append(names, c.Name)
		}
	}
	return d.Spec.Template.Spec, names
}

// bitnamiLogins tries three logins through the Service: without TLS
// (password), over TLS without a client certificate (password), and with
// the client certificate; it returns which got in.
func bitnamiLogins(t *testing.T, ns string) (plain, noCert, withCert bool) {
	t.Helper()
	return bitnamiLoginsAt(t, ns, 9999)
}

// bitnamiLogins is bitnamiLogins through the Service's port svcPort.
func bitnamiLoginsAt(t *testing.T, ns string, svcPort int) (plain, noCert, withCert bool) {
	t.Helper()
	port := portForwardTo(t, ns, "svc/"+bitnamiName, svcPort)
	base := fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres password=pgpool-demo-password", port)
	_, plain = psql(t, base+" sslmode=disable")
	_, noCert = psql(t, base+" sslmode=require")
	if _, err := env.Kube.CoreV1().Secrets(ns).Get(testenv.Context(t, time.Minute), bitnamiName+"-client-cert", metav1.GetOptions{}); err == nil {
		dir := t.TempDir()
		ca := filepath.Join(dir, "ca.crt")
		crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		for f, k := range map[string][2]string{ca: {bitnamiName + "-server-cert", "ca.crt"}, crt: {bitnamiName + "-client-cert", "tls.crt"}, key: {bitnamiName + "-client-cert", "tls.key"}} {
			if err := os.WriteFile(f, secretPEM(t, ns, k[0], k[1]), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, withCert = psql(t, fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres sslmode=verify-ca sslrootcert=%s sslcert=%s sslkey=%s", port, ca, crt, key))
	}
	return plain, noCert, withCert
}

// execBitnami runs a command in the fixture's first pgpool container.
func execBitnami(t *testing.T, ns string, args ...string) string {
	t.Helper()
	pods := env.WaitPodsReady(t, ns, bitnamiSelector, 2, time.Minute)
	out, err := kubectl(t, append([]string{"-n", ns, "exec", pods[0].Name, "-c", "pgpool", "--"}, args...)...)
	if err != nil {
		t.Fatalf("exec %v: %v\n%s", args, err, out)
	}
	return out
}

// TestBitnamiOnRealNode: a pgpool of Bitnami's postgresql-ha chart, which
// writes its config from environment variables at every start. add with
// sslMode require and clientAuthMode cert really refuses plain and
// certificate-less logins (the generated pool_hba.conf would admit both);
// rotate, change-issuer, remove and rollback work; remove, and a rollback
// of an add, leave the chart's objects as they were.
func TestBitnamiOnRealNode(t *testing.T) {
	if !env.Cluster.RealNode {
		t.Fatal("the cluster has no real node: start it with REAL_NODE=1 make cluster-up")
	}
	ns := realBitnami(t)
	origSpec, origCMs := bitnamiTemplate(t, ns)
	if plain, _, _ := bitnamiLogins(t, ns); !plain {
		t.Fatal("before add: a plain password login is refused")
	}
	// What the plugin takes the generated pool_hba.conf to be is what the
	// container wrote (the plugin derives it from the environment).
	d, err := env.Kube.AppsV1().Deployments(ns).Get(testenv.Context(t, time.Minute), bitnamiName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	derived := strings.SplitN(layout.GeneratedHBA(&d.Spec.Template.Spec.Containers[0]), "\n", 2)[1] // without its comment line
	if wrote := execBitnami(t, ns, "cat", "/opt/bitnami/pgpool/conf/pool_hba.conf"); !slices.Equal(hbaFields(wrote), hbaFields(derived)) {
		t.Fatalf("the container generated\n%s\nthe plugin derives\n%s", wrote, derived)
	}

	add := []string{"add", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--backend-ca", "secret/pgpool-backend-cert"}
	out := bitnamiRun(t, ns, add...)
	for _, want := range []string{"Helm release pg", "certificatesSecret: " + bitnamiName + "-server-cert", "poolHbaConfiguration: |", "PGPOOL_USER_HBA_FILE"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the plan of add does not say %q:\n%s", want, out)
		}
	}
	running := execBitnami(t, ns, "cat", "/opt/bitnami/pgpool/conf/pgpool.conf", "/opt/bitnami/pgpool/conf/pool_hba.conf")
	for _, want := range []string{"ssl = 'on'", "ssl_cert = '/opt/bitnami/pgpool/certs/tls.crt'", "ssl_ca_cert = '/opt/bitnami/pgpool/kubectl-pgpool-ca/ca.pem'", "hostssl"} {
		if !strings.Contains(running, want) {
			t.Fatalf("the running config lacks %q:\n%s", want, running)
		}
	}
	if perm := execBitnami(t, ns, "stat", "-c", "%a %u", "/opt/bitnami/pgpool/certs/tls.key"); strings.TrimSpace(perm) != "600 1001" {
		t.Fatalf("the key the init container copied: %s, want mode 600 owned by the pgpool user", perm)
	}
	checkLogins := func(when string, wantPlain, wantNoCert, wantCert bool) {
		t.Helper()
		plain, noCert, withCert := bitnamiLogins(t, ns)
		if plain != wantPlain || noCert != wantNoCert || withCert != wantCert {
			t.Fatalf("%s: logins plain %v, TLS without a certificate %v, with the client certificate %v; want %v %v %v", when, plain, noCert, withCert, wantPlain, wantNoCert, wantCert)
		}
	}
	checkLogins("after add", false, false, true)
	if st, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 2*time.Minute, "tls", "status", bitnamiName, "--verify=required"); err != nil ||
		!strings.Contains(st, "Managed by:") || !strings.Contains(st, "Helm (release "+ns+"/pg)") ||
		!strings.Contains(st, "no release Secret sh.helm.release.v1.pg.* in namespace "+ns) {
		// The fixture has Helm's labels, but no release: nothing
		// upgrades it.
		t.Fatalf("tls status --verify=required on the Bitnami pgpool: %v\n%s\n%s", err, st, errOut)
	}
	if st, err := runStatusOf(t, ns, bitnamiName); err != nil || len(st.Pods) != 2 {
		t.Fatalf("tls status -o json: %v, %d pods", err, len(st.Pods))
	} else {
		for _, p := range st.Pods {
			if p.Plaintext != "refused" || p.Certless != "refused" {
				t.Fatalf("status of pod %s after add: plaintext %q, certless %q, want refused, refused (%s)", p.Name, p.Plaintext, p.Certless, strings.Join(p.Refusal, "; "))
			}
		}
	}

	serial := func() string {
		crt, err := tls.ParseFirstCert(secretPEM(t, ns, bitnamiName+"-server-cert", "tls.crt"))
		if err != nil {
			t.Fatal(err)
		}
		return crt.SerialNumber.Text(16)
	}
	first := serial()
	bitnamiRun(t, ns, "rotate")
	if serial() == first {
		t.Fatal("rotate: the server certificate was not re-issued")
	}
	checkLogins("after rotate", false, false, true)
	bitnamiRun(t, ns, "change-issuer", "--issuer", "pp-new-issuer")
	if subj := execBitnami(t, ns, "openssl", "x509", "-in", "/opt/bitnami/pgpool/certs/tls.crt", "-issuer", "-nameopt", "RFC2253", "-noout"); !strings.Contains(subj, "CN=ca-updated") {
		t.Fatalf("the certificate in the pod after change-issuer: %s", subj)
	}
	checkLogins("after change-issuer", false, false, true)

	login := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-login"}, StringData: map[string]string{"username": "postgres", "password": "pgpool-demo-password"}}
	if _, err := env.Kube.CoreV1().Secrets(ns).Create(testenv.Context(t, time.Minute), login, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bitnamiRun(t, ns, "remove", "--verify-login", "pgpool-login")
	checkLogins("after remove", true, false, false) // no TLS: sslmode=require fails
	sameAsChart(t, ns, "remove", origSpec, origCMs)

	// add again, then roll it back: the chart's objects as they were.
	bitnamiRun(t, ns, add...)
	checkLogins("after the second add", false, false, true)
	bitnamiRun(t, ns, "rollback")
	checkLogins("after rollback", true, false, false)
	sameAsChart(t, ns, "rollback", origSpec, origCMs)
}

// hbaFields is a pool_hba.conf as pgpool reads it: the fields of each
// line that is not empty (the columns' spacing differs).
func hbaFields(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}

// sameAsChart fails unless the pod template and the ConfigMaps are as the
// chart rendered them.
func sameAsChart(t *testing.T, ns, after string, spec corev1.PodSpec, cms []string) {
	t.Helper()
	now, nowCMs := bitnamiTemplate(t, ns)
	if !reflect.DeepEqual(now, spec) {
		a, _ := json.MarshalIndent(spec, "", " ")
		b, _ := json.MarshalIndent(now, "", " ")
		t.Fatalf("after %s the pod template is not the chart's:\n%s\nwant\n%s", after, b, a)
	}
	var ours []string
	for _, n := range nowCMs {
		if !slices.Contains(cms, n) {
			ours = append(ours, n)
		}
	}
	if len(ours) > 0 {
		t.Fatalf("after %s ConfigMaps are left: %v", after, ours)
	}
}

// A colleague who may edit the chart's init scripts (pgpool.initdbScripts,
// a ConfigMap) puts a trust rule first in the pool_hba.conf that Bitnami's
// setup.sh has just written. The plugin cannot see what a script does: the
// plan says the scripts run, and the proof of the rolled-out pods finds
// that real pgpool admits a plain login, and add fails (and undoes itself);
// with the proofs off add succeeds, and status --verify=required exits 1.
func TestBitnamiInitScriptAdmitsPlaintext(t *testing.T) {
	script := `{ echo "host all all all trust"; cat "$PGPOOL_PGHBA_FILE"; } >/tmp/hba && cat /tmp/hba >"$PGPOOL_PGHBA_FILE"` + "\n"
	ns := realBitnamiWith(t, func(o *unstructured.Unstructured) {
		if o.GetKind() != "Deployment" {
			return
		}
		vols, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
		vols = append(vols, map[string]any{"name": "custom-init-scripts", "configMap": map[string]any{"name": "pg-postgresql-ha-pgpool-initdb-scripts"}})
		_ = unstructured.SetNestedSlice(o.Object, vols, "spec", "template", "spec", "volumes")
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		c := cs[0].(map[string]any)
		mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
		c["volumeMounts"] = append(mounts, map[string]any{"name": "custom-init-scripts", "mountPath": "/docker-entrypoint-initdb.d/"})
		_ = unstructured.SetNestedSlice(o.Object, cs, "spec", "template", "spec", "containers")
	}, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pg-postgresql-ha-pgpool-initdb-scripts"}, Data: map[string]string{"trust-everyone.sh": script}})
	add := []string{"tls", "add", bitnamiName, "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--backend-ca", "secret/pgpool-backend-cert", "--yes"}
	out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, add...)
	all := out + errOut
	if err == nil || !strings.Contains(all, "runs init scripts from ConfigMap pg-postgresql-ha-pgpool-initdb-scripts") || !strings.Contains(all, "the policy is not proven: plaintext accepted") || !strings.Contains(all, "does not enforce that file") {
		t.Fatalf("add against a Bitnami pgpool whose init script trusts everyone: %v\n%s\n%s", err, out, errOut)
	}
	_, _, _ = testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, "tls", "rollback", bitnamiName, "--yes")
	if out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, append(add, "--verify=false")...); err != nil {
		t.Fatalf("add --verify=false: %v\n%s\n%s", err, out, errOut)
	}
	st, err := runStatusOf(t, ns, bitnamiName)
	if err == nil || len(st.Pods) != 2 || !strings.Contains(err.Error(), "plaintext accepted") {
		t.Fatalf("status --verify=required of a Bitnami pgpool that admits plaintext: %v %+v", err, st.Pods)
	}
	for _, p := range st.Pods {
		if p.Check != "ok" || p.Plaintext != "accepted" {
			t.Fatalf("status of pod %s: check %q, plaintext %q; want ok, accepted", p.Name, p.Check, p.Plaintext)
		}
	}
}
