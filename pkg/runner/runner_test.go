package runner

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	encpem "encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/fakes"
	"github.com/kubectl-pgpool/kubectl-pgpool/internal/testfiles"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/layout"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/lock"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
)

// Fast checks of the runner against client-go's fakes: the error paths and
// outcomes that the cluster tier cannot reach cheaply.

type cluster struct {
	*fakes.Cluster
	r *Runner
}

func newFakes(t *testing.T, objs ...runtime.Object) *cluster {
	t.Helper()
	sts := fakes.Workload("StatefulSet", "demo", "pgpool", "w-uid", map[string]any{"template": map[string]any{}})
	f := &cluster{Cluster: fakes.New(objs, nil, []runtime.Object{sts})}
	f.r = &Runner{
		Clients: Clients{Core: f.Core.CoreV1(), CertManager: f.CertManager.CertmanagerV1(), Dynamic: f.Dynamic,
			Coordination: f.Core.CoordinationV1(), Policy: f.Core.PolicyV1()},
		Target: &pgpool.Target{Namespace: "demo", Name: "pgpool", Kind: "StatefulSet", GVR: pgpool.StatefulSets, UID: "w-uid", Layout: layout.KubeDB{}},
	}
	return f
}

func run(f *cluster, s plan.Step, failure error) (string, error) {
	s.Kind = s.Spec.StepKind()
	return f.r.Run(context.Background(), s, failure, func(string) {})
}

var workload = plan.Object{APIVersion: "apps/v1", Kind: "StatefulSet", Namespace: "demo", Name: "pgpool"}

// A 409 on the config patch means someone changed it since it was read.
func TestConfigPatchConflict(t *testing.T) {
	f := newFakes(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-config", Namespace: "demo"}})
	f.Core.PrependReactor("patch", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, "pgpool-config", errors.New("the object has been modified"))
	})
	_, err := run(f, plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "Secret", Namespace: "demo", Name: "pgpool-config"},
		Spec: plan.ConfigPatchSpec{ResourceVersion: "1", PgpoolConf: "ssl = on\n"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "Secret demo/pgpool-config changed since it was read: run the command again") {
		t.Fatalf("got %v", err)
	}
}

// A 422 on the pod-template patch is "changed since it was read" only when
// a test operation no longer holds (the server then says nothing more than
// "invalid"); any other refusal, such as an admission policy's, is
// reported as the server said it.
func TestWorkloadPatchErrors(t *testing.T) {
	generic := apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, "pgpool", nil)
	generic.ErrStatus.Message = "the server rejected our request due to an error in our request"
	policy := apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, "pgpool", nil)
	policy.ErrStatus.Message = `ValidatingAdmissionPolicy 'no-projected' with binding 'b' denied request: projected volumes are not allowed`
	holds := `[{"op":"test","path":"/metadata/name","value":"pgpool"}]`
	fails := `[{"op":"test","path":"/spec/template/spec/containers/0/name","value":"pgpool"}]`
	for _, tc := range []struct {
		err         error
		patch, want string
	}{
		{generic, fails, "its pod template changed since it was read (/spec/template/spec/containers/0/name is no longer what the plan expects)"},
		{policy, holds, "denied request: projected volumes are not allowed"},
		{apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "statefulsets"}, "pgpool", errors.New(`admission webhook "policy.example.com" denied the request: no hostPath`)), holds, `denied the request: no hostPath`},
	} {
		f := newFakes(t)
		f.Dynamic.PrependReactor("patch", "statefulsets", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
		_, err := run(f, plan.Step{Object: workload, Spec: plan.WorkloadPatchSpec{Patch: json.RawMessage(tc.patch)}}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.patch == holds && strings.Contains(err.Error(), "changed since it was read")) {
			t.Errorf("%v: got %v, want %q", tc.err, err, tc.want)
		}
	}
}

// The record step gets the operation's failure as a parameter: the
// annotation says Failed with the error, and the Event is a Warning; after
// a success the TLS annotation is written.
func TestRecordOutcome(t *testing.T) {
	f := newFakes(t)
	lease := plan.Object{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: "demo", Name: "pgpool-kubectl-pgpool-lock"}
	if _, err := run(f, plan.Step{Object: lease, Spec: plan.LockSpec{Holder: "tester", Operation: "add"}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := run(f, plan.Step{Object: workload, Always: true, Spec: plan.RecordSpec{Operation: "add", TLS: `{"sslMode":"require"}`}}, errors.New("boom")); err != nil {
		t.Fatal(err)
	}
	u, _ := f.Dynamic.Resource(pgpool.StatefulSets).Namespace("demo").Get(context.Background(), "pgpool", metav1.GetOptions{})
	var lo pgpool.LastOperation
	_ = json.Unmarshal([]byte(u.GetAnnotations()[pgpool.AnnotationLastOperation]), &lo)
	if lo.Result != "Failed" || lo.Error != "boom" || u.GetAnnotations()[pgpool.AnnotationTLS] != "" {
		t.Fatalf("after a failure: %+v, annotations %v", lo, u.GetAnnotations())
	}
	evs, _ := f.Core.CoreV1().Events("demo").List(context.Background(), metav1.ListOptions{})
	if len(evs.Items) != 1 || evs.Items[0].Type != corev1.EventTypeWarning || evs.Items[0].Reason != "TLSAddFailed" {
		t.Fatalf("events: %+v", evs.Items)
	}
	if _, err := run(f, plan.Step{Object: workload, Always: true, Spec: plan.RecordSpec{Operation: "add", TLS: `{"sslMode":"require"}`}}, nil); err != nil {
		t.Fatal(err)
	}
	u, _ = f.Dynamic.Resource(pgpool.StatefulSets).Namespace("demo").Get(context.Background(), "pgpool", metav1.GetOptions{})
	if u.GetAnnotations()[pgpool.AnnotationTLS] != `{"sslMode":"require"}` {
		t.Fatalf("after a success: %v", u.GetAnnotations())
	}
}

func pem(t *testing.T, name string) []byte {
	return testfiles.Read(t, "../tls/testdata/"+name)
}

var bundleObj = plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: "demo", Name: "pgpool-kubectl-pgpool-ca"}

// The CA bundle starts with the server Secret's ca.crt as it is when the
// step runs; a ConfigMap of that name that is not ours is neither changed
// nor deleted.
func TestBundle(t *testing.T) {
	issuer, backend := pem(t, "second-ca.pem"), pem(t, "old-ca.pem")
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-server-cert", Namespace: "demo"}, Data: map[string][]byte{"ca.crt": issuer}}
	f := newFakes(t, sec)
	if _, err := run(f, plan.Step{Object: bundleObj, Spec: plan.ApplyBundleSpec{IssuerCAFrom: sec.Name, BackendCA: backend}}, nil); err != nil {
		t.Fatal(err)
	}
	cm, err := f.Core.CoreV1().ConfigMaps("demo").Get(context.Background(), bundleObj.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tls.Subjects([]byte(cm.Data["ca.pem"])), ";"); got != "CN=second-ca;CN=old-ca" || !tls.Ours(cm, "pgpool") {
		t.Fatalf("bundle %q, labels %v", got, cm.Labels)
	}

	foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: bundleObj.Name, Namespace: "demo"}, Data: map[string]string{"ca.pem": "theirs"}}
	f = newFakes(t, sec, foreign)
	var notOurs *tls.NotOursError
	if _, err := run(f, plan.Step{Object: bundleObj, Spec: plan.ApplyBundleSpec{IssuerCAFrom: sec.Name}}, nil); !errors.As(err, &notOurs) {
		t.Fatalf("apply over someone else's ConfigMap: %v", err)
	}
	if _, err := run(f, plan.Step{Object: bundleObj, Spec: plan.DeleteSpec{}}, nil); !errors.As(err, &notOurs) {
		t.Fatalf("delete someone else's ConfigMap: %v", err)
	}
	if cm, _ := f.Core.CoreV1().ConfigMaps("demo").Get(context.Background(), bundleObj.Name, metav1.GetOptions{}); cm == nil || cm.Data["ca.pem"] != "theirs" {
		t.Fatal("someone else's ConfigMap was changed")
	}

	// An issuer that publishes no CA: the step says so instead of writing a
	// bundle without it.
	f = newFakes(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-server-cert", Namespace: "demo"}})
	if _, err := run(f, plan.Step{Object: bundleObj, Spec: plan.ApplyBundleSpec{IssuerCAFrom: sec.Name}}, nil); err == nil || !strings.Contains(err.Error(), "has no ca.crt") {
		t.Fatalf("no ca.crt: %v", err)
	}
}

// A step whose spec the runner does not know fails instead of doing
// nothing.
func TestUnknownSpec(t *testing.T) {
	f := newFakes(t)
	if _, err := f.r.Run(context.Background(), plan.Step{Kind: plan.Patch, Object: workload}, nil, func(string) {}); err == nil || !strings.Contains(err.Error(), "no runner for <nil>") {
		t.Fatalf("got %v", err)
	}
}

// A held lock names its holder and operation; --force-unlock takes it and
// the run that lost it stops before its next step, neither deletes the new
// holder's Lease nor records anything; a lock whose holder stopped renewing
// it is taken over once this run watched it go unrenewed for its duration.
func TestLock(t *testing.T) {
	f := newFakes(t)
	lease := plan.Object{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: "demo", Name: "pgpool-kubectl-pgpool-lock"}
	take := func(r *Runner, holder string, force bool) (string, error) {
		s := plan.Step{Kind: plan.Lock, Object: lease, Spec: plan.LockSpec{Holder: holder, Operation: "rotate", Force: force}}
		return r.Run(context.Background(), s, nil, func(string) {})
	}
	short := lock.Options{Duration: time.Second, RetryPeriod: 50 * time.Millisecond}
	a := f.r
	a.LockOptions = short
	if _, err := take(a, "alice@laptop pid 1", false); err != nil {
		t.Fatal(err)
	}
	b := &Runner{Clients: a.Clients, Target: a.Target, LockOptions: short}
	_, err := take(b, "bob@ci pid 2", false)
	if err == nil || !strings.Contains(err.Error(), "(rotate by alice@laptop pid 1 since") || !strings.Contains(err.Error(), "--force-unlock") {
		t.Fatalf("held: %v", err)
	}
	if msg, _ := run(&cluster{Cluster: f.Cluster, r: b}, plan.Step{Object: workload, Always: true, Spec: plan.RecordSpec{Operation: "rotate"}}, err); !strings.Contains(msg, "not recorded") {
		t.Fatalf("a run without the lock recorded: %q", msg)
	}
	// --force-unlock takes a live lock; alice's renewal finds bob's name
	// and her next step stops.
	if msg, err := take(b, "bob@ci pid 2", true); err != nil || !strings.Contains(msg, "taken from alice@laptop pid 1 by --force-unlock") {
		t.Fatalf("force: %q %v", msg, err)
	}
	var lost *lock.LostError
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		return a.held.Check(ctx) != nil, nil
	}); err != nil {
		t.Fatal("alice never noticed that bob took her lock")
	}
	if _, err := run(&cluster{Cluster: f.Cluster, r: a}, plan.Step{Object: workload, Spec: plan.TriggerSpec{}}, nil); !errors.As(err, &lost) || !strings.Contains(err.Error(), "bob@ci pid 2 holds it now") || !strings.Contains(err.Error(), "undoes nothing") {
		t.Fatalf("alice's next step: %v", err)
	}
	// alice's unlock leaves bob's lock alone; bob's releases it.
	unlock := plan.Step{Kind: plan.Unlock, Object: lease, Always: true, Spec: plan.UnlockSpec{}}
	if msg, err := a.Run(context.Background(), unlock, nil, func(string) {}); err != nil || !strings.Contains(msg, "bob@ci pid 2") {
		t.Fatalf("alice's unlock: %q %v", msg, err)
	}
	if msg, err := b.Run(context.Background(), unlock, nil, func(string) {}); err != nil || msg != "released" {
		t.Fatalf("bob's unlock: %q %v", msg, err)
	}
	// carol, elsewhere, stopped renewing an hour ago by her clock: bob
	// watches her Lease for its duration (1s) by his own, then takes it.
	holder, past, secs := "carol@far pid 3 (run 1)", metav1.NewMicroTime(time.Now().Add(-time.Hour)), int32(1)
	if _, err := f.Core.CoordinationV1().Leases("demo").Create(context.Background(), &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: lease.Name, Namespace: "demo"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &past, LeaseDurationSeconds: &secs}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if msg, err := take(b, "bob@ci pid 2", false); err != nil || !strings.Contains(msg, "taken over from carol@far pid 3 (run 1), whose lock this run watched go unrenewed for 1s") {
		t.Fatalf("take over: %q %v", msg, err)
	}
	if _, err := b.Run(context.Background(), unlock, nil, func(string) {}); err != nil {
		t.Fatal(err)
	}
}

// A run stopped (SIGSTOP, a suspended laptop) while a write was in flight
// resumes to that write's error after another run took its lock over: the
// error is the lost lock (so nothing is rolled back), and the record step
// leaves the other run's outcome alone.
func TestLockLostDuringAStep(t *testing.T) {
	f := newFakes(t)
	lease := plan.Object{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: "demo", Name: "pgpool-kubectl-pgpool-lock"}
	if _, err := run(f, plan.Step{Object: lease, Spec: plan.LockSpec{Holder: "alice@laptop pid 1", Operation: "add"}}, nil); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = f.r.held.Release(context.Background()) }()
	f.Core.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		// While alice's request waits, bob takes the lock over (through
		// the tracker: the fake client is locked while a reactor runs).
		leases := coordinationv1.SchemeGroupVersion.WithResource("leases")
		o, err := f.Core.Tracker().Get(leases, "demo", lease.Name)
		if err != nil {
			t.Error(err)
			return true, nil, err
		}
		l, bob := o.(*coordinationv1.Lease).DeepCopy(), "bob@laptop pid 1"
		l.Spec.HolderIdentity = &bob
		if err := f.Core.Tracker().Update(leases, l, "demo"); err != nil {
			t.Error(err)
		}
		return true, nil, apierrors.NewTimeoutError("request did not complete within requested timeout", 0)
	})
	backup := plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "Secret", Namespace: "demo", Name: "pgpool-kubectl-pgpool-backup"},
		Spec: plan.BackupSpec{Secret: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-kubectl-pgpool-backup", Namespace: "demo"}}}}
	_, err := run(f, backup, nil)
	var lost *lock.LostError
	if !errors.As(err, &lost) || !strings.Contains(err.Error(), "bob@laptop pid 1 holds it now") || !strings.Contains(err.Error(), "the step itself: write the backup Secret") {
		t.Fatalf("the step's error: %v", err)
	}
	msg, err := run(f, plan.Step{Object: workload, Always: true, Spec: plan.RecordSpec{Operation: "add"}}, err)
	if err != nil || !strings.Contains(msg, "not recorded: this run lost the lock") {
		t.Fatalf("record: %q %v", msg, err)
	}
	u, _ := f.Dynamic.Resource(pgpool.StatefulSets).Namespace("demo").Get(context.Background(), "pgpool", metav1.GetOptions{})
	if a := u.GetAnnotations()[pgpool.AnnotationLastOperation]; a != "" {
		t.Fatalf("a run that lost its lock recorded %s", a)
	}
}

// The pause of a KubeDB Pgpool is its Paused status condition: set with
// the plugin's reason beside the conditions KubeDB wrote, lifted only when
// it is the plugin's; the result is merged into its spec.
func TestPauseAndUpdateOwner(t *testing.T) {
	pg := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "kubedb.com/v1alpha2", "kind": "Pgpool",
		"metadata": map[string]any{"name": "pgpool", "namespace": "demo"},
		"spec":     map[string]any{"clientAuthMode": "md5", "replicas": int64(1)},
		"status":   map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}}}
	f := &cluster{Cluster: fakes.New(nil, nil, []runtime.Object{pg})}
	f.r = newFakes(t).r
	f.r.Clients.Dynamic = f.Dynamic
	obj := plan.Object{APIVersion: "kubedb.com/v1alpha2", Kind: "Pgpool", Namespace: "demo", Name: "pgpool"}
	conds := func() []any {
		u, err := f.Dynamic.Resource(pgpool.KubeDBPgpools).Namespace("demo").Get(context.Background(), "pgpool", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		return c
	}
	if msg, err := run(f, plan.Step{Object: obj, Spec: plan.PauseSpec{Pause: true, Message: "kubectl-pgpool tls add by tester"}}, nil); err != nil || msg != "paused" {
		t.Fatalf("pause: %q %v", msg, err)
	}
	if c := conds(); len(c) != 2 || c[1].(map[string]any)["reason"] != pgpool.PauseReason || c[0].(map[string]any)["type"] != "Ready" {
		t.Fatalf("after the pause: %v", c)
	}
	if _, err := run(f, plan.Step{Object: obj, Spec: plan.OwnerPatchSpec{Patch: json.RawMessage(`{"spec":{"sslMode":"require","clientAuthMode":"cert"}}`)}}, nil); err != nil {
		t.Fatal(err)
	}
	if msg, err := run(f, plan.Step{Object: obj, Always: true, Spec: plan.PauseSpec{}}, errors.New("boom")); err != nil || msg != "pause lifted" {
		t.Fatalf("unpause: %q %v", msg, err)
	}
	u, _ := f.Dynamic.Resource(pgpool.KubeDBPgpools).Namespace("demo").Get(context.Background(), "pgpool", metav1.GetOptions{})
	if o := pgpool.ReadOwner(u); o.Paused != nil || o.Spec.SSLMode != "require" || o.Spec.ClientAuthMode != "cert" || len(conds()) != 1 {
		t.Fatalf("after the update and the unpause: %+v %v", o, conds())
	}
	// Someone else's pause is never lifted, and a pause does not replace it.
	_ = unstructured.SetNestedSlice(u.Object, []any{map[string]any{"type": "Paused", "status": "True", "reason": "ManualPause"}}, "status", "conditions")
	if _, err := f.Dynamic.Resource(pgpool.KubeDBPgpools).Namespace("demo").UpdateStatus(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if msg, err := run(f, plan.Step{Object: obj, Always: true, Spec: plan.PauseSpec{}}, nil); err != nil || !strings.Contains(msg, "paused by someone else") {
		t.Fatalf("unpause over someone else's: %q %v", msg, err)
	}
	if _, err := run(f, plan.Step{Object: obj, Spec: plan.PauseSpec{Pause: true}}, nil); err == nil || !strings.Contains(err.Error(), "paused by someone else") {
		t.Fatalf("pause over someone else's: %v", err)
	}
	if c := conds(); len(c) != 1 || c[0].(map[string]any)["reason"] != "ManualPause" {
		t.Fatalf("someone else's pause changed: %v", c)
	}
}

// Ctrl-C (the context cancelled with plan.ErrInterrupted) is not a
// timeout: the step's error says interrupted, and maps to exit 130.
func TestInterruptedIsNotTimeout(t *testing.T) {
	f := newFakes(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(plan.ErrInterrupted)
	s := plan.Step{Object: plan.Object{APIVersion: "cert-manager.io/v1", Kind: "Certificate", Namespace: "demo", Name: "pgpool-server-cert"},
		Spec: plan.WaitCertificateSpec{}}
	s.Kind = s.Spec.StepKind()
	_, err := f.r.Run(ctx, s, nil, func(string) {})
	if !errors.Is(err, plan.ErrInterrupted) || errors.Is(err, plan.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

// remove deletes a Secret only if our Certificate wrote it (cert-manager's
// certificate-name annotation).
func TestDeleteSecretOnlyOurs(t *testing.T) {
	obj := plan.Object{APIVersion: "v1", Kind: "Secret", Namespace: "demo", Name: "pgpool-server-cert"}
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: obj.Name, Namespace: "demo"}}
	f := newFakes(t, theirs)
	var notOurs *tls.NotOursError
	if _, err := run(f, plan.Step{Object: obj, Spec: plan.DeleteSpec{}}, nil); !errors.As(err, &notOurs) {
		t.Fatalf("deleting a Secret no Certificate of ours wrote: %v", err)
	}
	ours := theirs.DeepCopy()
	ours.Annotations = map[string]string{"cert-manager.io/certificate-name": "pgpool-server-cert"}
	f = newFakes(t, ours)
	if _, err := run(f, plan.Step{Object: obj, Spec: plan.DeleteSpec{}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Core.CoreV1().Secrets("demo").Get(context.Background(), obj.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("our Secret is still there: %v", err)
	}
}

// A pod proven in the roll is not dialled again by the verify step while
// nothing changed: the same certificate in the Secret, no container
// restart, the same login; any change and it is checked again.
func TestStillProven(t *testing.T) {
	leafPEM := testLeaf(t, 1)
	leaf, err := tls.ParseFirstCert(leafPEM)
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{want: &verify.Expect{TLS: true, Leaf: leaf}}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "p1"}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{RestartCount: 0}}}}
	if r.stillProven(p, true, leafPEM, "") {
		t.Fatal("proven before anything was remembered")
	}
	r.remember(p, true, "cert")
	if !r.stillProven(p, true, leafPEM, "cert") || !r.stillProven(p, true, leafPEM, "") {
		t.Fatal("not proven right after the roll proved it")
	}
	other := testLeaf(t, 2)
	if r.stillProven(p, true, other, "cert") {
		t.Fatal("proven although the Secret holds another certificate now")
	}
	if r.stillProven(p, true, leafPEM, "password") || r.stillProven(p, false, leafPEM, "") {
		t.Fatal("proven for another login or TLS setting")
	}
	p.Status.ContainerStatuses[0].RestartCount = 1
	if r.stillProven(p, true, leafPEM, "cert") {
		t.Fatal("proven although pgpool restarted (and read its files again)")
	}
}

// testLeaf is a self-signed certificate with serial, as PEM.
func testLeaf(t *testing.T, serial int64) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "pgpool"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return encpem.EncodeToMemory(&encpem.Block{Type: "CERTIFICATE", Bytes: der})
}

// A killed run's last template patch can land after the next run read the
// template: that run's own patch then fails its test operations, but the
// template is already what it plans. The step succeeds instead of asking
// to run again (a clean-clone run of TestEveryStepBoundaryConverges hit
// this on remove).
func TestWorkloadPatchAlreadyApplied(t *testing.T) {
	generic := apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, "pgpool", nil)
	patch := json.RawMessage(`[{"op":"test","path":"/spec/template/spec/volumes/0/name","value":"certs"},{"op":"remove","path":"/spec/template/spec/volumes/0"}]`)
	for _, tc := range []struct {
		name    string
		read    corev1.PodTemplateSpec
		applied bool
	}{
		// The live template (newFakes: empty) is what removing the volume
		// from the template as read makes.
		{"applied", corev1.PodTemplateSpec{Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "certs"}}}}, true},
		// The live template is not that: someone else changed it.
		{"changed", corev1.PodTemplateSpec{Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "certs"}}, Hostname: "x"}}, false},
	} {
		f := newFakes(t)
		f.Dynamic.PrependReactor("patch", "statefulsets", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, generic })
		f.r.Target.Template = tc.read
		msg, err := run(f, plan.Step{Object: workload, Spec: plan.WorkloadPatchSpec{Patch: patch}}, nil)
		if tc.applied && (err != nil || !strings.Contains(msg, "already as planned")) {
			t.Errorf("%s: %q %v", tc.name, msg, err)
		}
		if !tc.applied && (err == nil || !strings.Contains(err.Error(), "changed since it was read")) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// An eviction step's result says how long a PodDisruptionBudget refused
// it, and BudgetWait reads that back (a scheduled run reports it).
func TestBudgetWaitRoundTrip(t *testing.T) {
	msg := fmt.Sprintf("replaced by pgpool-1 (uid 1234) and Ready in 8.2s; %s %s; TLS on", budgetWaited, 42*time.Second)
	if got := BudgetWait(msg); got != 42*time.Second {
		t.Fatalf("BudgetWait(%q) = %s, want 42s", msg, got)
	}
	if got := BudgetWait("replaced by pgpool-1 (uid 1234) and Ready in 8.2s"); got != 0 {
		t.Fatalf("no wait read as %s", got)
	}
}
