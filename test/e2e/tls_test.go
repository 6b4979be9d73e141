package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	workloadlayout "github.com/kubectl-pgpool/kubectl-pgpool/pkg/layout"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	pgstatus "github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

type layout struct {
	name, fixture, kind, selector, configKind string
}

// gvr is the workload resource of the layout.
func (l layout) gvr() schema.GroupVersionResource {
	switch l.kind {
	case "Deployment":
		return pgpool.Deployments
	case "PetSet":
		return pgpool.PetSets
	}
	return pgpool.StatefulSets
}

// workload reads the layout's workload pgpool in ns.
func (l layout) workload(t *testing.T, ns string) *unstructured.Unstructured {
	t.Helper()
	w, err := env.Dynamic.Resource(l.gvr()).Namespace(ns).Get(testenv.Context(t, time.Minute), "pgpool", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// config reads the layout's config object: its resourceVersion, pgpool.conf
// and pool_hba.conf.
func (l layout) config(t *testing.T, ns string) (rv, pgpoolConf, hba string) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	if l.configKind == "Secret" {
		s, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, "pgpool-config", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.ResourceVersion, string(s.Data["pgpool.conf"]), string(s.Data["pool_hba.conf"])
	}
	c, err := env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "pgpool-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c.ResourceVersion, c.Data["pgpool.conf"], c.Data["pool_hba.conf"]
}

var layouts = []layout{
	{"kubedb", "kubedb.yaml", "StatefulSet", kubedbSelector, "Secret"},
	{"pgpool2-on-k8s", "pgpool2-on-k8s.yaml", "Deployment", "app=pgpool", "ConfigMap"},
}

// setup makes a namespace with the seed's issuers and a pgpool of the layout.
func setup(t *testing.T, l layout, replicas int) string {
	t.Helper()
	ns := env.Namespace(t)
	env.Apply(t, ns, env.Fixture(t, "issuers.yaml"), 0)
	env.Apply(t, ns, env.Fixture(t, l.fixture), replicas)
	waitIssuer(t, ns, "pgpool-issuer")
	waitIssuer(t, ns, "pp-new-issuer")
	env.WaitPodsReady(t, ns, l.selector, replicas, 2*time.Minute)
	return ns
}

// The seed's scenario on both layouts with 1 and 3 replicas: add (sslMode
// require, clientAuthMode cert, client subject O=pgpool OU=client, issuer
// pgpool-issuer), rotate, change-issuer to pp-new-issuer, remove; after each,
// the objects are checked and every pod was replaced exactly once.
func TestTLSLifecycle(t *testing.T) {
	for _, l := range layouts {
		for _, replicas := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/%d", l.name, replicas), func(t *testing.T) {
				ns := setup(t, l, replicas)
				run := func(args ...string) string {
					t.Helper()
					out, errOut, err := plugin(t, env.Kubeconfig, ns, args...)
					if err != nil {
						t.Fatalf("kubectl pgpool %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
					}
					return out
				}
				roll := func(args ...string) string {
					t.Helper()
					before := env.WaitPodsReady(t, ns, l.selector, replicas, time.Minute)
					log := env.WatchPods(t, ns, l.selector)
					out := run(args...)
					after := env.WaitPodsReady(t, ns, l.selector, replicas, time.Minute)
					log.Stop()
					checkReplacedOnce(t, before, after, log)
					checkUnlocked(t, ns)
					checkLastOperation(t, ns, l, args[1], "Succeeded")
					return out
				}

				// add
				addArgs := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require",
					"--client-auth-mode", "cert", "--client-org", "pgpool", "--client-ou", "client", "--yes"}
				checkDryRuns(t, ns, l, addArgs)
				roll(addArgs...)
				checkConfig(t, ns, l, true, "hostssl all all 0.0.0.0/0 cert")
				checkVolume(t, ns, l, true)
				srv := secretInfo(t, ns, "pgpool-server-cert")
				cli := secretInfo(t, ns, "pgpool-client-cert")
				if srv.Issuer != "CN=ca,O=kubedb" || cli.Issuer != "CN=ca,O=kubedb" {
					t.Fatalf("issuers after add: server %q client %q, want CN=ca,O=kubedb", srv.Issuer, cli.Issuer)
				}
				if cli.Subject != "CN=postgres,OU=client,O=pgpool" {
					t.Fatalf("client subject %q, want CN=postgres,OU=client,O=pgpool", cli.Subject)
				}
				if !containsAll(srv.DNSNames, "pgpool", "pgpool."+ns+".svc", "pgpool."+ns+".svc.cluster.local", "localhost") {
					t.Fatalf("server DNS names %v", srv.DNSNames)
				}
				if l.kind == "StatefulSet" && !containsAll(srv.DNSNames, fmt.Sprintf("pgpool-%d.pgpool-pods.%s.svc", replicas-1, ns)) {
					t.Fatalf("server DNS names lack the pods: %v", srv.DNSNames)
				}
				status, _, err := plugin(t, env.Kubeconfig, ns, "tls", "status", "pgpool", "-o", "json")
				if err != nil || !strings.Contains(status, `"sslMode": "require"`) || !strings.Contains(status, `"clientAuthMode": "cert"`) {
					t.Fatalf("status after add: %v\n%s", err, status)
				}
				checkStatusOnKwok(t, ns, status, replicas)

				// The same add again has nothing to do; one with other
				// settings is refused and says what to use.
				out, _, err := plugin(t, env.Kubeconfig, ns, addArgs...)
				if err != nil || !strings.Contains(out, "nothing to do") {
					t.Fatalf("the same add again: %v\n%s", err, out)
				}
				other := append(slices.Clone(addArgs), "--ssl-mode", "verify-full")
				_, _, err = plugin(t, env.Kubeconfig, ns, other...)
				if err == nil || !strings.Contains(err.Error(), "tls rotate") {
					t.Fatalf("second add with another sslMode: %v, want an error pointing to tls rotate", err)
				}

				// rotate
				revs := revisions(t, ns)
				roll("tls", "rotate", "pgpool", "--yes")
				srv2, cli2 := secretInfo(t, ns, "pgpool-server-cert"), secretInfo(t, ns, "pgpool-client-cert")
				if srv2.Serial == srv.Serial || cli2.Serial == cli.Serial {
					t.Fatal("rotate did not change the serials")
				}
				if srv2.Issuer != "CN=ca,O=kubedb" {
					t.Fatalf("issuer after rotate %q", srv2.Issuer)
				}
				for n, r := range revisions(t, ns) {
					if r <= revs[n] {
						t.Fatalf("%s revision %d -> %d", n, revs[n], r)
					}
				}

				// rotate --reissue=false: only the restart.
				revs = revisions(t, ns)
				roll("tls", "rotate", "pgpool", "--reissue=false", "--yes")
				if s := secretInfo(t, ns, "pgpool-server-cert"); s.Serial != srv2.Serial {
					t.Fatalf("rotate --reissue=false changed the server serial %s -> %s", srv2.Serial, s.Serial)
				}
				for n, r := range revisions(t, ns) {
					if r != revs[n] {
						t.Fatalf("rotate --reissue=false: %s revision %d -> %d", n, revs[n], r)
					}
				}

				// change-issuer
				roll("tls", "change-issuer", "pgpool", "--issuer", "pp-new-issuer", "--yes")
				srv3, cli3 := secretInfo(t, ns, "pgpool-server-cert"), secretInfo(t, ns, "pgpool-client-cert")
				if srv3.Issuer != "CN=ca-updated,O=kubedb-updated" || cli3.Issuer != "CN=ca-updated,O=kubedb-updated" {
					t.Fatalf("issuers after change-issuer: %q %q", srv3.Issuer, cli3.Issuer)
				}
				if srv3.CASubject != "CN=ca-updated,O=kubedb-updated" {
					t.Fatalf("ca.crt after change-issuer: %q", srv3.CASubject)
				}
				checkConfig(t, ns, l, true, "hostssl all all 0.0.0.0/0 cert")

				// remove
				roll("tls", "remove", "pgpool", "--yes")
				checkConfig(t, ns, l, false, "host all all 0.0.0.0/0 md5")
				checkVolume(t, ns, l, false)
				ctx := testenv.Context(t, time.Minute)
				for _, n := range []string{"pgpool-server-cert", "pgpool-client-cert"} {
					if _, err := env.CertMgr.CertmanagerV1().Certificates(ns).Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
						t.Fatalf("Certificate %s after remove: %v", n, err)
					}
					if _, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
						t.Fatalf("Secret %s after remove: %v", n, err)
					}
				}
				if l.kind == "StatefulSet" {
					// The seed's file is back byte for byte.
					s, _ := env.Kube.CoreV1().Secrets(ns).Get(ctx, "pgpool-config", metav1.GetOptions{})
					orig := env.Fixture(t, l.fixture)[0].Object["stringData"].(map[string]any)["pgpool.conf"].(string)
					if string(s.Data["pgpool.conf"]) != orig {
						t.Fatalf("pgpool.conf after remove differs from the original:\n%s", conf.Diff(orig, string(s.Data["pgpool.conf"]), 1))
					}
				}
				// A rotate now is refused and says to add first.
				_, _, err = plugin(t, env.Kubeconfig, ns, "tls", "rotate", "pgpool", "--yes")
				if err == nil || !strings.Contains(err.Error(), "tls add") {
					t.Fatalf("rotate without TLS: %v", err)
				}
			})
		}
	}
}

// checkDryRuns runs add with --dry-run=client and =server and checks that
// nothing changed (resourceVersions of the workload and config, no
// Certificates, no lock).
func checkDryRuns(t *testing.T, ns string, l layout, addArgs []string) {
	t.Helper()
	waitSettled(t, ns, l)
	before := resourceVersions(t, ns, l)
	out, _, err := plugin(t, env.Kubeconfig, ns, append(addArgs, "--dry-run=client")...)
	if err != nil || !strings.Contains(out, "Plan: tls add") || !strings.Contains(out, "+ ssl = on") {
		t.Fatalf("dry-run=client: %v\n%s", err, out)
	}
	out, errOut, err := plugin(t, env.Kubeconfig, ns, append(addArgs, "--dry-run=server")...)
	if err != nil || !strings.Contains(out, "server accepted (dry run)") {
		t.Fatalf("dry-run=server: %v\n%s\n%s", err, out, errOut)
	}
	if after := resourceVersions(t, ns, l); after != before {
		t.Fatalf("dry runs changed objects: %s -> %s", before, after)
	}
	ctx := testenv.Context(t, time.Minute)
	crts, err := env.CertMgr.CertmanagerV1().Certificates(ns).List(ctx, metav1.ListOptions{LabelSelector: tls.LabelInstance})
	if err != nil || len(crts.Items) != 0 {
		t.Fatalf("dry runs created Certificates: %v %d", err, len(crts.Items))
	}
	checkUnlocked(t, ns)
}

func resourceVersions(t *testing.T, ns string, l layout) string {
	t.Helper()
	w := l.workload(t, ns)
	cfgRV, _, _ := l.config(t, ns)
	return w.GetResourceVersion() + "/" + cfgRV
}

func checkReplacedOnce(t *testing.T, before, after []corev1.Pod, log *testenv.PodLog) {
	t.Helper()
	added := log.Added()
	old := map[types.UID]bool{}
	for _, p := range before {
		old[p.UID] = true
	}
	for _, p := range after {
		if old[p.UID] {
			t.Fatalf("pod %s was not replaced", p.Name)
		}
	}
	if len(added) != len(before) {
		t.Fatalf("%d pods were created for %d replicas (each must be replaced exactly once): %v; what the pod watch saw:\n%s\nthe namespace's events:\n%s", len(added), len(before), added, log.History(), namespaceEvents(t, after))
	}
}

func checkUnlocked(t *testing.T, ns string) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	_, err := env.Kube.CoordinationV1().Leases(ns).Get(ctx, pgpool.LeaseName("pgpool"), metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("lock Lease still there (or error): %v", err)
	}
}

func checkLastOperation(t *testing.T, ns string, l layout, op, result string) {
	t.Helper()
	w := l.workload(t, ns)
	var lo pgpool.LastOperation
	if err := json.Unmarshal([]byte(w.GetAnnotations()[pgpool.AnnotationLastOperation]), &lo); err != nil {
		t.Fatalf("last-operation annotation: %v", err)
	}
	if lo.Operation != op || lo.Result != result {
		t.Fatalf("last operation %+v, want %s %s", lo, op, result)
	}
	evs, err := env.Kube.CoreV1().Events(ns).List(testenv.Context(t, time.Minute), metav1.ListOptions{FieldSelector: "involvedObject.name=pgpool,involvedObject.kind=" + l.kind})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs.Items {
		if e.Source.Component == "kubectl-pgpool" && strings.Contains(e.Message, "tls "+op+" ") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no Event for tls %s on the %s", op, l.kind)
	}
}

func checkConfig(t *testing.T, ns string, l layout, on bool, hbaLine string) {
	t.Helper()
	_, pc, hba := l.config(t, ns)
	f := conf.ParsePgpoolConf(pc)
	if f.Bool("ssl") != on {
		t.Fatalf("pgpool.conf ssl = %v, want %v:\n%s", f.Bool("ssl"), on, pc)
	}
	if on {
		for k, want := range map[string]string{"ssl_cert": "/opt/pgpool-II/tls/tls.crt", "ssl_key": "/opt/pgpool-II/tls/tls.key", "ssl_ca_cert": "/opt/pgpool-II/tls/ca.pem"} {
			if v, _ := f.Get(k); v != want {
				t.Fatalf("%s = %q, want %q", k, v, want)
			}
		}
	}
	rules, err := conf.ParseHBA(hba)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rules {
		found = found || r.String() == hbaLine
	}
	if !found {
		t.Fatalf("pool_hba.conf lacks the rule %q:\n%s", hbaLine, hba)
	}
	if strings.Contains(hba, "kubectl-pgpool was:") == !on {
		t.Fatalf("pool_hba.conf markers (the original rules) wrong for ssl %v:\n%s", on, hba)
	}
	if !strings.Contains(hba, "127.0.0.1/32") {
		t.Fatalf("pool_hba.conf lost its loopback rule:\n%s", hba)
	}
}

func checkVolume(t *testing.T, ns string, l layout, want bool) {
	t.Helper()
	w := l.workload(t, ns)
	b, _ := json.Marshal(w.Object["spec"].(map[string]any)["template"])
	got := strings.Contains(string(b), `"mountPath":"/config/tls"`) && strings.Contains(string(b), `"projected"`) &&
		strings.Contains(string(b), `"name":"pgpool-server-cert"`) && strings.Contains(string(b), `"name":"pgpool-kubectl-pgpool-ca"`)
	if got != want {
		t.Fatalf("TLS volume present = %v, want %v: %s", got, want, b)
	}
	if want && !strings.Contains(string(b), `"key":"tls.key","mode":384`) {
		t.Fatalf("tls.key is not mode 0600: %s", b)
	}
}

func revisions(t *testing.T, ns string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, n := range []string{"pgpool-server-cert", "pgpool-client-cert"} {
		c, err := env.CertMgr.CertmanagerV1().Certificates(ns).Get(context.Background(), n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out[n] = tls.Revision(c)
	}
	return out
}

func containsAll(list []string, want ...string) bool {
	set := map[string]bool{}
	for _, s := range list {
		set[s] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}

// A held lock stops the operation before any write and says how to clear
// it; one whose holder stopped renewing it (killed) is reported and taken
// over. (The README's table of bad inputs, TestREADMEBadInputTable, covers
// the other refusals.)
func TestTLSPreflightErrors(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	waitSettled(t, ns, l)
	before := resourceVersions(t, ns, l)
	ctx := testenv.Context(t, time.Minute)
	holder := "someone@elsewhere"
	_, err := env.Kube.CoordinationV1().Leases(ns).Create(ctx, leaseFor(ns, holder), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes")
	if err == nil || !strings.Contains(err.Error(), holder) || !strings.Contains(err.Error(), "kubectl delete lease") {
		t.Fatalf("add with a held lock: %v", err)
	}
	lease, err := env.Kube.CoordinationV1().Leases(ns).Get(ctx, pgpool.LeaseName("pgpool"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	past, secs := metav1.NewMicroTime(time.Now().Add(-3*time.Minute)), int32(60)
	lease.Spec.AcquireTime, lease.Spec.RenewTime, lease.Spec.LeaseDurationSeconds = &past, &past, &secs
	if _, err := env.Kube.CoordinationV1().Leases(ns).Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--dry-run=client")
	if err != nil || !strings.Contains(out, "the lock Lease "+ns+"/pgpool-kubectl-pgpool-lock of "+holder+" looks unrenewed") {
		t.Fatalf("add with an expired lock: %v\n%s", err, out)
	}
	if after := resourceVersions(t, ns, l); after != before {
		t.Fatalf("failed commands changed objects: %s -> %s", before, after)
	}
}

// The plugin run as a ServiceAccount without RBAC gets a 403 that points to
// the README's RBAC section.
func TestTLSForbiddenExplained(t *testing.T) {
	ns := setup(t, layouts[0], 1)
	cfg := env.ServiceAccountConfig(t, ns, "nobody")
	kc := env.ServiceAccountKubeconfig(t, cfg, ns)
	_, _, err := plugin(t, kc, ns, "tls", "status", "pgpool")
	if err == nil || !apierrors.IsForbidden(err) {
		t.Fatalf("status as a ServiceAccount without RBAC: %v, want 403", err)
	}
	if !strings.Contains(cmd.Explain(err), "RBAC section of the README") {
		t.Fatalf("explanation: %s", cmd.Explain(err))
	}
}

func leaseFor(ns, holder string) *coordinationv1.Lease {
	now := metav1.NewMicroTime(time.Now())
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: pgpool.LeaseName("pgpool"), Namespace: ns, Annotations: map[string]string{"kubectl-pgpool.io/operation": "rotate"}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, AcquireTime: &now},
	}
}

// waitSettled waits, by watch, until the workload controller has written its
// last status for the current pods (so its resourceVersion stays put unless
// someone else writes).
func waitSettled(t *testing.T, ns string, l layout) {
	t.Helper()
	gvr := l.gvr()
	ctx := testenv.Context(t, time.Minute)
	testenv.WaitObject(t, ctx, dynamicLW(gvr, ns, "pgpool"), &unstructured.Unstructured{}, l.kind+" status settled", func(u *unstructured.Unstructured) bool {
		lay, err := workloadlayout.For(&pgpool.Target{Kind: l.kind})
		if err != nil {
			t.Fatal(err)
		}
		done, _ := lay.RolloutDone(u)
		avail, _, _ := unstructured.NestedInt64(u.Object, "status", "availableReplicas")
		want, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
		return done && avail == want
	})
}

// The README's Role is enough for the whole lifecycle: add, rotate,
// change-issuer and remove run as a ServiceAccount bound to it and nothing
// else. The README shows the same Role as the fixture.
func TestTLSLifecycleWithREADMERBAC(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(env.Root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	role, err := os.ReadFile(filepath.Join(env.Root, "test", "fixtures", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+string(role)+"```") {
		t.Fatal("the README's RBAC section does not show test/fixtures/rbac.yaml as it is")
	}
	l := layouts[0]
	ns := setup(t, l, 1)
	cfg := env.ServiceAccountConfig(t, ns, "operator")
	binding := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": map[string]any{"name": "kubectl-pgpool"},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubectl-pgpool"},
		"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": "operator", "namespace": ns}},
	}}
	kc := env.ServiceAccountKubeconfig(t, cfg, ns)

	// First the Role without pods/eviction: add is refused before any write.
	reduced := env.Fixture(t, "rbac.yaml")[0]
	rules, _, _ := unstructured.NestedSlice(reduced.Object, "rules")
	for _, r := range rules {
		rm := r.(map[string]any)
		var kept []any
		for _, res := range rm["resources"].([]any) {
			if res != "pods/eviction" {
				kept = append(kept, res)
			}
		}
		rm["resources"] = kept
	}
	_ = unstructured.SetNestedSlice(reduced.Object, rules, "rules")
	env.Apply(t, ns, []*unstructured.Unstructured{reduced, binding}, 0)
	waitSettled(t, ns, l)
	before := resourceVersions(t, ns, l)
	_, _, err = plugin(t, kc, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes")
	if err == nil || !strings.Contains(err.Error(), "you may not create pods/eviction") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("add without pods/eviction: %v, want a preflight error naming the permission", err)
	}
	if after := resourceVersions(t, ns, l); after != before {
		t.Fatalf("a refused add changed objects: %s -> %s", before, after)
	}
	crts, _ := env.CertMgr.CertmanagerV1().Certificates(ns).List(testenv.Context(t, time.Minute), metav1.ListOptions{LabelSelector: tls.LabelInstance})
	if len(crts.Items) != 0 {
		t.Fatal("a refused add created Certificates")
	}

	// Then the README's Role as it is.
	env.Apply(t, ns, env.Fixture(t, "rbac.yaml"), 0)
	env.WaitAllowed(t, cfg, authorizationv1.ResourceAttributes{Namespace: ns, Resource: "pods", Subresource: "eviction", Verb: "create"})
	for _, args := range [][]string{
		{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes"},
		{"tls", "rotate", "pgpool", "--yes"},
		{"tls", "change-issuer", "pgpool", "--issuer", "pp-new-issuer", "--yes"},
		{"tls", "rollback", "pgpool", "--yes"},
		{"tls", "status", "pgpool"},
		{"tls", "remove", "pgpool", "--yes"},
	} {
		out, errOut, err := plugin(t, kc, ns, args...)
		if err != nil {
			t.Fatalf("%s as a ServiceAccount with the README's Role: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
		}
	}
	checkLastOperation(t, ns, l, "remove", "Succeeded")
}

// A step that runs out of --timeout exits 124 and says how to raise it.
func TestTLSStepTimeoutExits124(t *testing.T) {
	ns := setup(t, layouts[0], 1)
	_, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes", "--timeout", "1ms")
	if err == nil || cmd.ExitCode(err) != 124 || !strings.Contains(err.Error(), "raise it with --timeout") {
		t.Fatalf("add with --timeout 1ms: exit %d, %v", cmd.ExitCode(err), err)
	}
}

// onLine is a progress stream that runs do, once and before the run goes
// on, when a line containing match is written (the plan's events are
// written as they happen, so the step named waits for it).
type onLine struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	match string
	do    func()
	done  bool
}

func (w *onLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.done && strings.Contains(w.buf.String(), w.match) {
		w.done = true
		w.do()
	}
	return len(p), nil
}

// An issuer that breaks after the preflight (its CA Secret gone, just
// before the re-issue) stops the wait for the Certificate as soon as
// cert-manager reports it, quoting cert-manager: exit 1 and the issuer's
// reason, not a wait of the whole --timeout ending in 124 (issue 28).
func TestWaitStopsWhenTheIssuerBreaks(t *testing.T) {
	ns := setup(t, layouts[0], 1)
	if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes"); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 5*time.Minute)
	w := &onLine{match: "started: re-issue Certificate", do: func() {
		if _, err := env.CertMgr.CertmanagerV1().Issuers(ns).Patch(ctx, "pgpool-issuer", types.MergePatchType, []byte(`{"spec":{"ca":{"secretName":"nosuch"}}}`), metav1.PatchOptions{}); err != nil {
			t.Error(err)
		}
		env.WaitIssuerNotReady(t, ctx, ns, "pgpool-issuer")
	}}
	streams := genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &bytes.Buffer{}, ErrOut: w}
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: "test"})
	root.SetArgs([]string{"--kubeconfig", env.Kubeconfig, "-n", ns, "tls", "rotate", "pgpool", "--yes", "--timeout", "4m"})
	err := root.ExecuteContext(ctx)
	want := `cert-manager cannot issue Certificate ` + ns + `/pgpool-server-cert: its Issuer "pgpool-issuer" is not Ready (ErrGetKeyPair: `
	if err == nil || cmd.ExitCode(err) != 1 || !strings.Contains(err.Error(), want) {
		t.Fatalf("rotate with its issuer broken during the run: exit %d, %v, want %q\n%s", cmd.ExitCode(err), err, want, w.buf.String())
	}
	if !w.done {
		t.Fatal("the re-issue step never started")
	}
}

// checkStatusOnKwok: kwok pods cannot be port-forwarded, so status reports
// the first pod unreachable, skips the rest, and --verify=required fails.
func checkStatusOnKwok(t *testing.T, ns, out string, replicas int) {
	t.Helper()
	var st pgstatus.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if len(st.Pods) != replicas {
		t.Fatalf("status lists %d pods, want %d", len(st.Pods), replicas)
	}
	for i, p := range st.Pods {
		want := "skipped"
		if i == 0 {
			want = "unreachable"
		}
		if p.Check != want || p.Served != nil {
			t.Fatalf("status of pod %s on kwok: check %q (%s), want %q", p.Name, p.Check, p.Detail, want)
		}
		// After the roll every pod takes the traffic of every Service.
		if len(p.Endpoint) == 0 {
			t.Fatalf("status of pod %s: no Service endpoint listed", p.Name)
		}
		for svc, ready := range p.Endpoint {
			if !ready {
				t.Fatalf("status of pod %s: not a ready endpoint of Service %s", p.Name, svc)
			}
		}
	}
	_, _, err := plugin(t, env.Kubeconfig, ns, "tls", "status", "pgpool", "--verify=required")
	if err == nil || !strings.Contains(err.Error(), "is not proven to serve") {
		t.Fatalf("status --verify=required on kwok: %v, want an error", err)
	}
}

// PodDisruptionBudgets that would refuse every eviction of the roll stop the
// operation in preflight, with what to fix, before the first write: a budget
// that allows no disruption with every pod healthy, two budgets over the
// same pods, and a budget the disruption controller cannot compute.
func TestTLSPreflightBlockingBudgets(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	waitSettled(t, ns, l)
	ctx := testenv.Context(t, 2*time.Minute)
	pdbs := env.Kube.PolicyV1().PodDisruptionBudgets(ns)
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes"}
	patch := func(p string) int64 {
		t.Helper()
		b, err := pdbs.Patch(ctx, "pgpool", types.MergePatchType, []byte(p), metav1.PatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return b.Generation
	}
	waitPDB := func(what string, cond func(*policyv1.PodDisruptionBudget) bool) {
		t.Helper()
		testenv.WaitObject(t, ctx, pdbLW(ns, "pgpool"), &policyv1.PodDisruptionBudget{}, what, cond)
	}
	expectRefused := func(want string) {
		t.Helper()
		before := resourceVersions(t, ns, l)
		_, _, err := plugin(t, env.Kubeconfig, ns, add...)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("add: %v, want an error with %q", err, want)
		}
		if after := resourceVersions(t, ns, l); after != before {
			t.Fatalf("a refused add changed objects: %s -> %s", before, after)
		}
	}

	gen := patch(`{"spec":{"maxUnavailable":0}}`)
	waitPDB("the PDB at maxUnavailable 0 to be computed", func(b *policyv1.PodDisruptionBudget) bool {
		return b.Status.ObservedGeneration >= gen && b.Status.CurrentHealthy == 1 && b.Status.DisruptionsAllowed == 0
	})
	expectRefused("PodDisruptionBudget pgpool allows no disruption even though every pod it covers is healthy (maxUnavailable 0, 1 pods)")
	gen = patch(`{"spec":{"maxUnavailable":1}}`)
	waitPDB("the PDB at maxUnavailable 1 to be computed", func(b *policyv1.PodDisruptionBudget) bool {
		return b.Status.ObservedGeneration >= gen && b.Status.DisruptionsAllowed == 1
	})

	extra := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "extra"}, Spec: policyv1.PodDisruptionBudgetSpec{
		MaxUnavailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/instance": "pgpool"}}}}
	if _, err := pdbs.Create(ctx, extra, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectRefused("pod pgpool-0 is selected by 2 PodDisruptionBudgets (extra, pgpool)")
	if err := pdbs.Delete(ctx, "extra", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// A pod under the budget whose controller has no scale subresource (as
	// a PetSet CRD without one): the disruption controller cannot know how
	// many pods to expect for a maxUnavailable budget.
	owner, err := env.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "stray-owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stray := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stray", Labels: map[string]string{"app.kubernetes.io/instance": "pgpool"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "stray"}}}}
	if _, err := env.Kube.CoreV1().Pods(ns).Create(ctx, stray, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	patch(`{"spec":{"selector":{"matchLabels":{"app.kubernetes.io/name":null}}}}`)
	waitPDB("the disruption controller to fail on the PDB", func(b *policyv1.PodDisruptionBudget) bool {
		for _, c := range b.Status.Conditions {
			if c.Type == policyv1.DisruptionAllowedCondition && c.Reason == policyv1.SyncFailedReason {
				return true
			}
		}
		return false
	})
	expectRefused("the disruption controller cannot compute PodDisruptionBudget pgpool (configmaps does not implement the scale subresource)")
	checkUnlocked(t, ns)
}

// namespaceEvents are the events of the pods' namespace, oldest first, for
// a failure message: the controllers say there what they deleted and
// created, and why.
func namespaceEvents(t *testing.T, pods []corev1.Pod) string {
	if len(pods) == 0 {
		return ""
	}
	evs, err := env.Kube.CoreV1().Events(pods[0].Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].LastTimestamp.Before(&evs.Items[j].LastTimestamp) })
	var out []string
	for _, e := range evs.Items {
		out = append(out, fmt.Sprintf("%s %s/%s %s (%s): %s", e.LastTimestamp.UTC().Format("15:04:05"), e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Source.Component+e.ReportingController, e.Message))
	}
	return strings.Join(out, "\n")
}
