package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

const kubedbSelector = "app.kubernetes.io/instance=pgpool,app.kubernetes.io/name=pgpools.kubedb.com"

// cert-manager's own controllers issue a Certificate from the CA Issuer and
// re-issue it (new serial, higher revision) after its Issuing condition is
// set through the status subresource.
func TestClusterCertManagerIssuesAndReissues(t *testing.T) {
	ns := env.Namespace(t)
	env.Apply(t, ns, env.Fixture(t, "issuers.yaml"), 0)
	waitIssuer(t, ns, "pgpool-issuer")
	ctx := testenv.Context(t, 2*time.Minute)
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns},
		Spec: cmapi.CertificateSpec{SecretName: "probe-tls", CommonName: "probe", DNSNames: []string{"probe"},
			IssuerRef: cmmeta.IssuerReference{Name: "pgpool-issuer", Kind: "Issuer"}},
	}
	if _, err := env.CertMgr.CertmanagerV1().Certificates(ns).Create(ctx, crt, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	first, err := issuing.WaitReady(ctx, env.CertMgr.CertmanagerV1(), ns, "probe", 0, time.Time{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("issued in %s", time.Since(t0))
	sec1 := secretInfo(t, ns, "probe-tls")
	if sec1.Issuer != "CN=ca,O=kubedb" {
		t.Fatalf("issuer = %q, want CN=ca,O=kubedb", sec1.Issuer)
	}
	if err := issuing.TriggerIssuance(ctx, env.CertMgr.CertmanagerV1(), ns, "probe", nil); err != nil {
		t.Fatal(err)
	}
	second, err := issuing.WaitReady(ctx, env.CertMgr.CertmanagerV1(), ns, "probe", tls.Revision(first), time.Time{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sec2 := secretInfo(t, ns, "probe-tls")
	if tls.Revision(second) <= tls.Revision(first) {
		t.Fatalf("revision %d -> %d", tls.Revision(first), tls.Revision(second))
	}
	if sec1.Serial == sec2.Serial {
		t.Fatalf("serial did not change: %s", sec1.Serial)
	}
}

func secretInfo(t testing.TB, ns, name string) *tls.CertInfo {
	t.Helper()
	s, err := env.Kube.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := tls.ReadSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// An evicted StatefulSet pod is recreated by the controller-manager (same
// name, new UID) and becomes Ready on the kwok node.
func TestClusterEvictedStatefulSetPodIsRecreated(t *testing.T) {
	ns := env.Namespace(t)
	env.Apply(t, ns, env.Fixture(t, "kubedb.yaml"), 1)
	pods := env.WaitPodsReady(t, ns, kubedbSelector, 1, time.Minute)
	old := pods[0]
	ctx := testenv.Context(t, time.Minute)
	// The PDB starts with status.disruptionsAllowed 0 until the disruption
	// controller has counted the Ready pod; evicting before that gets 429.
	testenv.WaitObject(t, ctx, pdbLW(ns, "pgpool"), &policyv1.PodDisruptionBudget{}, "the PDB to allow a disruption", func(p *policyv1.PodDisruptionBudget) bool {
		return p.Status.ObservedGeneration >= p.Generation && p.Status.DisruptionsAllowed >= 1
	})
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: old.Name, Namespace: ns}}
	if err := env.Kube.PolicyV1().Evictions(ns).Evict(ctx, ev); err != nil {
		t.Fatalf("evict %s: %v", old.Name, err)
	}
	lw := podLW(env.Kube, ns, old.Name)
	p := testenv.WaitObject(t, ctx, lw, &corev1.Pod{}, "a new Ready "+old.Name, func(p *corev1.Pod) bool {
		return p.UID != old.UID && testenv.PodReady(p)
	})
	if p.Spec.NodeName == "" {
		t.Fatal("replacement not scheduled")
	}
}

// dynamicLW lists and watches the one object name of gvr (ns "" for
// cluster-scoped resources).
func dynamicLW(gvr schema.GroupVersionResource, ns, name string) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = testenv.NameSelector(name)
			return env.Dynamic.Resource(gvr).Namespace(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = testenv.NameSelector(name)
			return env.Dynamic.Resource(gvr).Namespace(ns).Watch(ctx, o)
		},
	}
}

func pdbLW(ns, name string) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = testenv.NameSelector(name)
			return env.Kube.PolicyV1().PodDisruptionBudgets(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = testenv.NameSelector(name)
			return env.Kube.PolicyV1().PodDisruptionBudgets(ns).Watch(ctx, o)
		},
	}
}

func podLW(c kubernetes.Interface, ns, name string) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = testenv.NameSelector(name)
			return c.CoreV1().Pods(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = testenv.NameSelector(name)
			return c.CoreV1().Pods(ns).Watch(ctx, o)
		},
	}
}

// An eviction that would break the PodDisruptionBudget gets HTTP 429.
func TestClusterEvictionBlockedByPDBGets429(t *testing.T) {
	ns := env.Namespace(t)
	env.Apply(t, ns, env.Fixture(t, "kubedb.yaml"), 3)
	pods := env.WaitPodsReady(t, ns, kubedbSelector, 3, time.Minute)
	ctx := testenv.Context(t, time.Minute)
	// A patch, not an update: the disruption controller writes the status
	// concurrently.
	pdb, err := env.Kube.PolicyV1().PodDisruptionBudgets(ns).Patch(ctx, "pgpool", types.MergePatchType,
		[]byte(`{"spec":{"maxUnavailable":0}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gen := pdb.Generation
	testenv.WaitObject(t, ctx, pdbLW(ns, "pgpool"), &policyv1.PodDisruptionBudget{}, "the disruption controller to process the PDB", func(p *policyv1.PodDisruptionBudget) bool {
		return p.Status.ObservedGeneration >= gen && p.Status.CurrentHealthy == 3 && p.Status.DisruptionsAllowed == 0
	})
	err = env.Kube.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pods[0].Name, Namespace: ns}})
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("eviction with a PDB allowing no disruption: got %v, want HTTP 429", err)
	}
	p, err := env.Kube.CoreV1().Pods(ns).Get(ctx, pods[0].Name, metav1.GetOptions{})
	if err != nil || p.UID != pods[0].UID || p.DeletionTimestamp != nil {
		t.Fatalf("pod %s was disturbed: %v", pods[0].Name, err)
	}
}

// A ServiceAccount credential without a verb gets 403, with the verb it
// succeeds: RBAC is enforced for real.
func TestClusterServiceAccountWithoutVerbGets403(t *testing.T) {
	ns := env.Namespace(t)
	cfg := env.ServiceAccountConfig(t, ns, "limited")
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, time.Minute)
	_, err = c.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list secrets without RBAC: got %v, want 403", err)
	}
	if !strings.Contains(err.Error(), "system:serviceaccount:"+ns+":limited") {
		t.Fatalf("403 does not name the ServiceAccount: %v", err)
	}
	grantSecretsList(t, ns, "limited")
	env.WaitAllowed(t, cfg, authorizationv1.ResourceAttributes{Namespace: ns, Resource: "secrets", Verb: "list"})
	if _, err := c.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list secrets with a Role allowing it: %v", err)
	}
	_, err = c.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("create secret with only list granted: got %v, want 403", err)
	}
}

func grantSecretsList(t testing.TB, ns, sa string) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	role := []byte(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"list-secrets"},"rules":[{"apiGroups":[""],"resources":["secrets"],"verbs":["list"]}]}`)
	binding := []byte(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"list-secrets"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"list-secrets"},"subjects":[{"kind":"ServiceAccount","name":"` + sa + `","namespace":"` + ns + `"}]}`)
	force := true
	if _, err := env.Kube.RbacV1().Roles(ns).Patch(ctx, "list-secrets", types.ApplyPatchType, role, metav1.PatchOptions{FieldManager: "test", Force: &force}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Kube.RbacV1().RoleBindings(ns).Patch(ctx, "list-secrets", types.ApplyPatchType, binding, metav1.PatchOptions{FieldManager: "test", Force: &force}); err != nil {
		t.Fatal(err)
	}
}

// The local cluster runs cert-manager's webhook, as a real one does: it
// refuses what the plugin's own checks (tls.Validate) refuse, each for the
// same field, and accepts the Certificate they accept. So the plugin's
// early refusals are cert-manager's rules, not stricter ones.
func TestClusterWebhookRefusesWhatThePluginRefuses(t *testing.T) {
	ns := env.Namespace(t)
	ctx := testenv.Context(t, time.Minute)
	hours := func(h float64) *metav1.Duration {
		return &metav1.Duration{Duration: time.Duration(h * float64(time.Hour))}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*cmapi.CertificateSpec)
		field string // "" when valid
	}{
		{"valid", func(*cmapi.CertificateSpec) {}, ""},
		{"common name of 65 characters", func(s *cmapi.CertificateSpec) { s.CommonName = strings.Repeat("c", 65) }, "spec.commonName"},
		{"duration under an hour", func(s *cmapi.CertificateSpec) { s.Duration, s.RenewBefore = hours(0.5), hours(0.25) }, "spec.duration"},
		{"renewBefore under 5 minutes", func(s *cmapi.CertificateSpec) { s.RenewBefore = hours(1.0 / 60) }, "spec.renewBefore"},
		{"renewBefore not shorter than the duration", func(s *cmapi.CertificateSpec) { s.Duration, s.RenewBefore = hours(2), hours(2) }, "spec.renewBefore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crt := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns}, Spec: cmapi.CertificateSpec{
				SecretName: "probe-tls", CommonName: "probe", DNSNames: []string{"probe"}, Duration: hours(2160), RenewBefore: hours(360),
				IssuerRef: cmmeta.IssuerReference{Name: "pgpool-issuer", Kind: "Issuer"}}}
			tc.edit(&crt.Spec)
			local := tls.Validate(crt, "--probe")
			_, err := env.CertMgr.CertmanagerV1().Certificates(ns).Create(ctx, crt, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if tc.field == "" {
				if local != nil || err != nil {
					t.Fatalf("a valid Certificate: plugin %v, webhook %v", local, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), `admission webhook "webhook.cert-manager.io" denied the request`) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("webhook: %v, want a refusal of %s", err, tc.field)
			}
			if local == nil || !strings.Contains(local.Error(), tc.field) {
				t.Fatalf("plugin: %v, want a refusal of %s (the webhook said: %v)", local, tc.field, err)
			}
		})
	}
}
