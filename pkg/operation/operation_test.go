package operation

// Fast tests of the operation library against client-go's fake clientsets:
// what needs no server behaviour (preflight refusals, permissions derived
// from the plan, the paths to the backends, a rollback after a failure).

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	fakediscovery "k8s.io/client-go/discovery/fake"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/fakes"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/lock"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
)

// cluster is fakes.KubeDB with the clients an operation uses.
type cluster struct {
	*fakes.Cluster
	clients *Clients
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{Cluster: fakes.KubeDB(t, "../conf/testdata")}
	c.clients = &Clients{
		Clients: runner.Clients{Config: &rest.Config{Host: "https://127.0.0.1:1"}, Core: c.Core.CoreV1(), Policy: c.Core.PolicyV1(),
			Coordination: c.Core.CoordinationV1(), CertManager: c.CertManager.CertmanagerV1(), Dynamic: c.Dynamic},
		Discovery: c.Core.Discovery(), Authorization: c.Core.AuthorizationV1(),
	}
	return c
}

func (c *cluster) discover(t *testing.T) *pgpool.Target {
	t.Helper()
	tg, err := discover.Discover(context.Background(), c.clients.discover(), "demo", "pgpool")
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// The permissions come from the plan's steps: every kind of step of every
// operation needs at least one, and remove needs to delete what it deletes.
func TestPermissionsFollowThePlan(t *testing.T) {
	c := newCluster(t)
	tg := c.discover(t)
	intent, err := planner.Normalize(planner.Intent{Operation: planner.Add, Issuer: pgpool.IssuerRef{Name: "pgpool-issuer"}, SSLMode: "require", AuthMode: "cert", ClientUser: "postgres"}, func(f string) string { return f })
	if err != nil {
		t.Fatal(err)
	}
	p, err := planner.Build(tg, intent, planner.Facts{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, a := range needs(tg, p, false) {
		got[a.String()] = true
	}
	for _, want := range []string{"create leases.coordination.k8s.io", "delete leases.coordination.k8s.io", "create certificates.cert-manager.io",
		"patch certificates.cert-manager.io", "watch certificates.cert-manager.io", "create configmaps", "patch configmaps", "patch secrets",
		"patch statefulsets.apps", "create pods/eviction", "create events", "create pods/portforward"} {
		if !got[want] {
			t.Errorf("add: %q missing from %v", want, got)
		}
	}
	if got["delete secrets"] || got["update certificates/status.cert-manager.io"] {
		t.Errorf("add asks for more than it does: %v", got)
	}
}

// Backends are reached as pgpool reaches them: a Service name in any of its
// forms through a Ready pod of the Service and the port it targets (by
// number or by name), a headless pod name through that pod, loopback
// through a pgpool pod; anything else is reported as not checked.
func TestBackendPod(t *testing.T) {
	c := newCluster(t)
	ready := corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	pg := func(name, ns string, isReady bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "pg"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pg", Ports: []corev1.ContainerPort{{Name: "postgres", ContainerPort: 5433}}}}}}
		if isReady {
			p.Status = ready
		}
		return p
	}
	svc := func(name, ns string, target intstr.IntOrString) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "pg"}, Ports: []corev1.ServicePort{{Port: 5432, TargetPort: target}}}}
	}
	nobody := svc("nobody", "demo", intstr.FromInt32(1))
	nobody.Spec.Selector = map[string]string{"app": "none"}
	for _, o := range []runtime.Object{
		nobody, pg("pg-0", "db", false), pg("pg-1", "db", true), svc("ha-postgres", "db", intstr.FromString("postgres")),
		pg("pg-2", "demo", true), svc("local-pg", "demo", intstr.FromInt32(6000)),
	} {
		if err := c.Core.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	tg := c.discover(t)
	for _, tc := range []struct {
		host         string
		pod, ns, why string
		port         int
	}{
		{"ha-postgres.db.svc.cluster.local", "pg-1", "db", "", 5433}, // named targetPort, the Ready pod
		{"ha-postgres.db", "pg-1", "db", "", 5433},
		{"pg-0.ha-postgres.db.svc", "pg-0", "db", "", 5432}, // a pod under a headless Service: its own port
		{"local-pg", "pg-2", "demo", "", 6000},              // short name: the pgpool's namespace
		{"127.0.0.1", "pgpool-0", "demo", "", 5432},         // loopback: through a pgpool pod
		{"nobody", "", "", "has no Ready pod", 0},
		{"missing.db.svc", "", "", "no Service db/missing", 0},
		{"10.0.0.7", "", "", "an IP address", 0},
		{"/var/run/postgresql", "", "", "a Unix socket", 0},
	} {
		pod, port, ns, why := c.clients.backendPod(context.Background(), tg, conf.Backend{Host: tc.host, Port: 5432})
		if pod != tc.pod || ns != tc.ns || port != tc.port || (tc.why != "" && !strings.Contains(why, tc.why)) {
			t.Errorf("%s: got pod %q ns %q port %d (%s)", tc.host, pod, ns, port, why)
		}
	}
}

// An add that names only the issuer is change-issuer on a pgpool with TLS.
func TestIssuerOnly(t *testing.T) {
	intent := planner.Intent{Operation: planner.Add, Issuer: pgpool.IssuerRef{Name: "ca", Kind: "Issuer"}, IssuerOnly: true}
	if got := onTarget(intent, &pgpool.Target{}); got.Operation != planner.Add {
		t.Fatalf("no TLS: %s", got.Operation)
	}
	if got := onTarget(intent, &pgpool.Target{State: pgpool.TLSState{Enabled: true}}); got.Operation != planner.ChangeIssuer || got.Issuer != intent.Issuer {
		t.Fatalf("TLS on: %+v", got)
	}
	intent.IssuerOnly = false
	if got := onTarget(intent, &pgpool.Target{State: pgpool.TLSState{Enabled: true}}); got.Operation != planner.Add {
		t.Fatalf("a full add stays an add: %s", got.Operation)
	}
}

// intentFor normalises a request as the commands do.
func intentFor(t *testing.T, in planner.Intent) planner.Intent {
	t.Helper()
	n, err := planner.Normalize(in, func(f string) string { return f })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func seedAdd(t *testing.T) planner.Intent {
	return intentFor(t, planner.Intent{Operation: planner.Add, Issuer: pgpool.IssuerRef{Name: "pgpool-issuer"}, SSLMode: "require", AuthMode: "cert", ClientUser: "postgres"})
}

// recorder keeps what the hooks saw.
type recorder struct {
	planned  []Outcome
	done     []Outcome
	notices  []string
	progress int
}

func (r *recorder) hooks() Hooks {
	return Hooks{
		Planned: func(_ context.Context, o Outcome) error { r.planned = append(r.planned, o); return nil },
		Progress: func(int) (func(plan.Event), func()) {
			return func(plan.Event) { r.progress++ }, func() {}
		},
		Done:   func(o Outcome) error { r.done = append(r.done, o); return nil },
		Notice: func(m string) { r.notices = append(r.notices, m) },
	}
}

func options() Options {
	return Options{DryRun: "none", Timeout: time.Second, Verify: "false", OnFailure: "rollback", Identity: lock.Identity{Holder: "tester"}}
}

// Each preflight refusal stops the run before the plan: no hook sees a
// plan and nothing is written.
func TestPreflightRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(c *cluster)
		opts   func(o *Options)
		want   string
	}{
		{"issuer not ready", func(c *cluster) {
			is, _ := c.CertManager.CertmanagerV1().Issuers("demo").Get(context.Background(), "pgpool-issuer", metav1.GetOptions{})
			is.Status.Conditions[0].Status = cmmeta.ConditionFalse
			_, _ = c.CertManager.CertmanagerV1().Issuers("demo").UpdateStatus(context.Background(), is, metav1.UpdateOptions{})
		}, nil, "pgpool-issuer"},
		{"no cert-manager", func(c *cluster) {
			c.Core.Discovery().(*fakediscovery.FakeDiscovery).Resources = nil
		}, nil, "install cert-manager first"},
		{"verify-login Secret missing", nil, func(o *Options) { o.VerifyLogin = "nobody" }, "--verify-login: get Secret demo/nobody"},
		{"permission denied", func(c *cluster) { c.Denied["create pods/eviction"] = true }, nil, "you may not create pods/eviction"},
		{"lock held", func(c *cluster) {
			now := metav1.NewMicroTime(time.Now())
			holder, secs := "someone else", int32(3600)
			_, _ = c.Core.CoordinationV1().Leases("demo").Create(context.Background(), &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: pgpool.LeaseName("pgpool"), Namespace: "demo"},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, AcquireTime: &now, RenewTime: &now, LeaseDurationSeconds: &secs},
			}, metav1.CreateOptions{})
		}, nil, "someone else"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			if tc.break_ != nil {
				tc.break_(c)
			}
			before := len(c.Writes())
			o := options()
			if tc.opts != nil {
				tc.opts(&o)
			}
			var rec recorder
			err := Run(context.Background(), c.clients, discover.Ref{Namespace: "demo", Name: "pgpool"}, seedAdd(t), o, rec.hooks())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if len(rec.planned) != 0 || len(rec.done) != 0 {
				t.Fatalf("a refused run reached the plan: %+v", rec)
			}
			if w := c.Writes(); len(w) != before {
				t.Fatalf("a refused run wrote: %v", w[before:])
			}
		})
	}
}

// A step that fails after the first change rolls back (the rollback's plan
// is shown as such, and the error says what happened); with OnFailure
// "stop" it stops, keeps what it did, and says how to go on.
func TestFailureRollsBack(t *testing.T) {
	for _, onFailure := range []string{"rollback", "stop"} {
		t.Run(onFailure, func(t *testing.T) {
			c := newCluster(t)
			var rec recorder
			o := options()
			o.OnFailure = onFailure
			// cert-manager never issues (no controller in the fakes): the
			// wait for the Certificates times out after they were applied.
			err := Run(context.Background(), c.clients, discover.Ref{Namespace: "demo", Name: "pgpool"}, seedAdd(t), o, rec.hooks())
			if err == nil {
				t.Fatal("no error")
			}
			crts, _ := c.CertManager.CertmanagerV1().Certificates("demo").List(context.Background(), metav1.ListOptions{})
			if onFailure == "stop" {
				if !strings.Contains(err.Error(), "stopped part-way: run the same command again to finish it") || len(rec.planned) != 1 || len(crts.Items) != 2 {
					t.Fatalf("stop: %v; %d plans, %d Certificates", err, len(rec.planned), len(crts.Items))
				}
				return
			}
			// The fakes have no controllers, so the rollback's own verify
			// step cannot pass here: that it ran, and how the error reads,
			// is what is checked (the cluster tiers check that it works).
			if !strings.Contains(err.Error(), "the rollback failed too") || !strings.Contains(err.Error(), "kubectl pgpool tls rollback pgpool -n demo") ||
				len(rec.planned) != 2 || !rec.planned[1].RollingBack || rec.planned[1].Plan.Operation != planner.Rollback {
				t.Fatalf("rollback: %v; plans %d", err, len(rec.planned))
			}
			if len(rec.notices) == 0 || !strings.Contains(rec.notices[0], "rolling back to the state before it") {
				t.Fatalf("notices: %q", rec.notices)
			}
		})
	}
}

// Run again after it stopped, the operation resumes: the plan keeps the
// backup taken before the first run (the state to roll back to).
func TestResume(t *testing.T) {
	c := newCluster(t)
	o := options()
	o.OnFailure = "stop"
	var first recorder
	if err := Run(context.Background(), c.clients, discover.Ref{Namespace: "demo", Name: "pgpool"}, seedAdd(t), o, first.hooks()); err == nil {
		t.Fatal("the first run did not stop")
	}
	var again recorder
	o.DryRun = "client"
	if err := Run(context.Background(), c.clients, discover.Ref{Namespace: "demo", Name: "pgpool"}, seedAdd(t), o, again.hooks()); err != nil {
		t.Fatal(err)
	}
	if len(again.planned) != 1 || !strings.Contains(strings.Join(again.planned[0].Plan.Warnings, "\n"), "keeping the backup taken before the unfinished tls add") {
		t.Fatalf("second plan: %+v", again.planned)
	}
}

// On a pgpool a KubeDB Pgpool controls, the backend's CA comes from the
// AppBinding its spec.postgresRef names when --backend-ca is not given (the
// plan says so), and the plan pauses the Pgpool, updates it and unpauses
// it; --backend-ca wins over the AppBinding.
func TestKubeDBAppBindingCA(t *testing.T) {
	c := newCluster(t)
	ca, err := os.ReadFile("../tls/testdata/second-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	pg := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "kubedb.com/v1alpha2", "kind": "Pgpool",
		"metadata": map[string]any{"name": "pgpool", "namespace": "demo", "uid": "pg-uid"},
		"spec":     map[string]any{"postgresRef": map[string]any{"name": "ha-postgres"}, "clientAuthMode": "md5"}}}
	ab := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
		"metadata": map[string]any{"name": "ha-postgres", "namespace": "demo"},
		"spec":     map[string]any{"clientConfig": map[string]any{"caBundle": base64.StdEncoding.EncodeToString(ca)}}}}
	for _, o := range []*unstructured.Unstructured{pg, ab} {
		if err := c.Dynamic.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	sts, err := c.Dynamic.Resource(pgpool.StatefulSets).Namespace("demo").Get(context.Background(), "pgpool", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	sts.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "kubedb.com/v1alpha2", Kind: "Pgpool", Name: "pgpool", UID: "pg-uid", Controller: &yes}})
	if _, err := c.Dynamic.Resource(pgpool.StatefulSets).Namespace("demo").Update(context.Background(), sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	plan1 := func(intent planner.Intent) *plan.Plan {
		t.Helper()
		o := options()
		o.DryRun = "client"
		var rec recorder
		if err := Run(context.Background(), c.clients, discover.Ref{Namespace: "demo", Name: "pgpool"}, intent, o, rec.hooks()); err != nil {
			t.Fatal(err)
		}
		return rec.planned[0].Plan
	}
	p := plan1(seedAdd(t))
	var kinds []string
	bundle := false
	for _, s := range p.Steps {
		kinds = append(kinds, fmt.Sprintf("%T", s.Spec))
		if b, ok := s.Spec.(plan.ApplyBundleSpec); ok {
			bundle = true
			if string(b.BackendCA) != string(ca) || !strings.Contains(s.Description, "from AppBinding demo/ha-postgres") {
				t.Fatalf("the bundle step: %q, backend CA %q", s.Description, b.BackendCA)
			}
		}
	}
	if k := strings.Join(kinds, " "); !bundle || strings.Count(k, "plan.PauseSpec") != 2 || !strings.Contains(k, "plan.OwnerPatchSpec") {
		t.Fatalf("the plan's steps: %s", k)
	}
	in := seedAdd(t)
	in.BackendCASources = []string{"secret/pgpool-ca"}
	if err := c.Core.Tracker().Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-ca", Namespace: "demo"}, Data: map[string][]byte{"ca.crt": ca}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range plan1(in).Steps {
		if _, ok := s.Spec.(plan.ApplyBundleSpec); ok && !strings.Contains(s.Description, "from secret/pgpool-ca") {
			t.Fatalf("with --backend-ca: %q", s.Description)
		}
	}
}
