package runner

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/fakes"
	"github.com/kubectl-pgpool/kubectl-pgpool/internal/testfiles"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
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
		Target: &pgpool.Target{Namespace: "demo", Name: "pgpool", Kind: "StatefulSet", GVR: pgpool.StatefulSets, UID: "w-uid"},
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
		Spec: plan.ConfigPatchSpec{ResourceVersion: "1", Contents: map[string]string{"pgpool.conf": "ssl = on\n"}}}, nil)
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
	if _, err := run(f, plan.Step{Object: workload, Always: true, Spec: plan.RecordSpec{Operation: "add", TLS: `{"sslMode":"require"}`}}, errors.New("boom")); err != nil {
		t.Fatal(err)
	}
	u, _ := f.Dynamic.Resource(pgpool.StatefulSets).Namespace("demo").Get(context.Background(), "pgpool", metav1.GetOptions{})
	var lo LastOperation
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

// A held lock names its holder; the lock step does not take it.
func TestLockHeld(t *testing.T) {
	f := newFakes(t)
	lease := plan.Object{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: "demo", Name: "pgpool-kubectl-pgpool-lock"}
	if _, err := run(f, plan.Step{Object: lease, Spec: plan.LockSpec{Holder: "alice@laptop pid 1", Operation: "rotate"}}, nil); err != nil {
		t.Fatal(err)
	}
	f.r.leaseUID = ""
	_, err := run(f, plan.Step{Object: lease, Spec: plan.LockSpec{Holder: "bob", Operation: "add"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "rotate by alice@laptop pid 1") || !strings.Contains(err.Error(), "kubectl delete lease -n demo pgpool-kubectl-pgpool-lock") {
		t.Fatalf("got %v", err)
	}
}
