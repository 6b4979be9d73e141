package issuing

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmfake "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// client-go's fakes do not speak the watch-list protocol that informers use
// by default; the typed clients cannot say so, so turn it off here.
func TestMain(m *testing.M) {
	_ = os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}

// failed is a Certificate that cert-manager failed to issue at failedAt:
// Issuing False (Failed) for its generation, Ready False, revision 1.
func failed(failedAt time.Time) *cmapi.Certificate {
	rev, at := 1, metav1.NewTime(failedAt)
	return &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: "pgpool-server-cert", Namespace: "demo", Generation: 2},
		Status: cmapi.CertificateStatus{Revision: &rev, Conditions: []cmapi.CertificateCondition{
			{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionFalse, Reason: "Failed", ObservedGeneration: 2},
			{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionFalse, Reason: "Failed", Message: "the issuer is broken",
				ObservedGeneration: 2, LastTransitionTime: &at},
		}},
	}
}

// After a failed issuance, a re-issue replaces the Issuing condition in
// place (the API server refuses two conditions of one type).
func TestTriggerReplacesIssuing(t *testing.T) {
	cm := cmfake.NewClientset(failed(time.Now().Add(-time.Hour)))
	if err := TriggerIssuance(context.Background(), cm.CertmanagerV1(), "demo", "pgpool-server-cert", nil); err != nil {
		t.Fatal(err)
	}
	c, _ := cm.CertmanagerV1().Certificates("demo").Get(context.Background(), "pgpool-server-cert", metav1.GetOptions{})
	n := 0
	for _, cond := range c.Status.Conditions {
		if cond.Type == cmapi.CertificateConditionIssuing {
			n++
		}
	}
	if is := tls.Condition(c, cmapi.CertificateConditionIssuing); n != 1 || is.Status != cmmeta.ConditionTrue || is.Reason != "ManuallyTriggered" {
		t.Fatalf("%d Issuing conditions, %+v", n, c.Status.Conditions)
	}
}

// A failure left from before the operation does not fail the wait; a new
// revision that turns Ready ends it. A failure after the operation began
// fails it at once, with cert-manager's message.
func TestWaitReadyStaleAndFreshFailures(t *testing.T) {
	start := time.Now()
	cm := cmfake.NewClientset(failed(start.Add(-time.Hour)))
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := WaitReady(ctx, cm.CertmanagerV1(), "demo", "pgpool-server-cert", 1, start, nil)
		done <- err
	}()
	// cert-manager issues revision 2.
	c, _ := cm.CertmanagerV1().Certificates("demo").Get(context.Background(), "pgpool-server-cert", metav1.GetOptions{})
	rev := 2
	c.Status.Revision = &rev
	c.Status.Conditions[0] = cmapi.CertificateCondition{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue, ObservedGeneration: 2}
	if _, err := cm.CertmanagerV1().Certificates("demo").UpdateStatus(context.Background(), c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("a stale failure failed the wait: %v", err)
	}

	cm = cmfake.NewClientset(failed(start.Add(time.Second)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := WaitReady(ctx, cm.CertmanagerV1(), "demo", "pgpool-server-cert", 1, start, nil)
	if err == nil || !strings.Contains(err.Error(), "cert-manager failed to issue Certificate demo/pgpool-server-cert: the issuer is broken") {
		t.Fatalf("a fresh failure: %v", err)
	}
}

// An issuer that publishes no CA (ACME) is refused before any write, and a
// SelfSigned one when clients log in with certificates; a Ready CA issuer
// passes.
func TestIssuerReady(t *testing.T) {
	ready := cmapi.IssuerStatus{Conditions: []cmapi.IssuerCondition{{Type: cmapi.IssuerConditionReady, Status: cmmeta.ConditionTrue}}}
	cm := cmfake.NewClientset(
		&cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "letsencrypt", Namespace: "demo"}, Status: ready,
			Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{ACME: &cmacme.ACMEIssuer{Server: "https://127.0.0.1:1/directory"}}}},
		&cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "ca", Namespace: "demo"}, Status: ready,
			Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "ca"}}}},
		&cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "self", Namespace: "demo"}, Status: ready,
			Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}}})
	if _, err := IssuerReady(context.Background(), cm.CertmanagerV1(), "demo", cmmeta.IssuerReference{Name: "letsencrypt"}, false); err == nil || !strings.Contains(err.Error(), "is an ACME issuer, which writes no ca.crt") {
		t.Fatalf("ACME: %v", err)
	}
	if _, err := IssuerReady(context.Background(), cm.CertmanagerV1(), "demo", cmmeta.IssuerReference{Name: "ca"}, true); err != nil {
		t.Fatalf("CA issuer: %v", err)
	}
	// SelfSigned: fine for passwords over TLS, not for client certificates.
	if _, err := IssuerReady(context.Background(), cm.CertmanagerV1(), "demo", cmmeta.IssuerReference{Name: "self"}, false); err != nil {
		t.Fatalf("SelfSigned without client certificates: %v", err)
	}
	if _, err := IssuerReady(context.Background(), cm.CertmanagerV1(), "demo", cmmeta.IssuerReference{Name: "self"}, true); err == nil || !strings.Contains(err.Error(), "cannot verify the client certificate") {
		t.Fatalf("SelfSigned with client certificates: %v", err)
	}
}

// issuing is a Certificate at revision 1 whose re-issue is under way, from
// Issuer "ca".
func issuing() *cmapi.Certificate {
	rev := 1
	return &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: "pgpool-server-cert", Namespace: "demo", Generation: 1},
		Spec:       cmapi.CertificateSpec{IssuerRef: cmmeta.IssuerReference{Name: "ca"}},
		Status: cmapi.CertificateStatus{Revision: &rev, Conditions: []cmapi.CertificateCondition{
			{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue, ObservedGeneration: 1},
			{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue, Reason: "ManuallyTriggered", ObservedGeneration: 1},
		}},
	}
}

func issuer(status cmmeta.ConditionStatus, reason, msg string, at time.Time) *cmapi.Issuer {
	t := metav1.NewTime(at)
	return &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "ca", Namespace: "demo"},
		Spec:   cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "ca"}}},
		Status: cmapi.IssuerStatus{Conditions: []cmapi.IssuerCondition{{Type: cmapi.IssuerConditionReady, Status: status, Reason: reason, Message: msg, LastTransitionTime: &t}}}}
}

func request(name, rev string, created time.Time, conds ...cmapi.CertificateRequestCondition) *cmapi.CertificateRequest {
	return &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", CreationTimestamp: metav1.NewTime(created),
		Annotations: map[string]string{cmapi.CertificateNameKey: "pgpool-server-cert", cmapi.CertificateRequestRevisionAnnotationKey: rev}},
		Status: cmapi.CertificateRequestStatus{Conditions: conds}}
}

// waitErr runs WaitReady for revision > 1 from start with a deadline of
// 10 s, after change has run against the fake, and returns its error and
// the lines it reported.
func waitErr(t *testing.T, cm *cmfake.Clientset, start time.Time, change func(said <-chan string)) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	said := make(chan string, 100)
	if change != nil {
		change(said)
	}
	_, err := WaitReady(ctx, cm.CertmanagerV1(), "demo", "pgpool-server-cert", 1, start, func(s string) { said <- s })
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the wait ran into its deadline instead of failing fast: %v", err)
	}
	return err
}

// A wait stops as soon as cert-manager says the issuance cannot succeed,
// quoting it: a request of the new revision Denied, InvalidRequest or
// Failed, or the issuer turning not Ready or deleted. A request left from
// before the wait, or of the revision already issued, does not count.
func TestWaitReadyFailsFast(t *testing.T) {
	start := time.Now()
	approved := cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionApproved, Status: cmmeta.ConditionTrue}
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		want string
	}{
		{"denied", []runtime.Object{request("pgpool-server-cert-2", "2", start, cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionDenied, Status: cmmeta.ConditionTrue, Reason: "policy.cert-manager.io", Message: "no policy allows dnsNames"})},
			"cert-manager cannot issue Certificate demo/pgpool-server-cert: CertificateRequest pgpool-server-cert-2 was denied (policy.cert-manager.io: no policy allows dnsNames)"},
		{"invalid", []runtime.Object{request("pgpool-server-cert-2", "2", start, cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionInvalidRequest, Status: cmmeta.ConditionTrue, Reason: "BadConfig", Message: "key usage"})},
			"CertificateRequest pgpool-server-cert-2 is invalid (BadConfig: key usage)"},
		{"failed", []runtime.Object{request("pgpool-server-cert-2", "2", start, approved, cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionFalse, Reason: cmapi.CertificateRequestReasonFailed, Message: "vault: permission denied"})},
			"CertificateRequest pgpool-server-cert-2 failed: vault: permission denied"},
		{"issuer broke since the start", []runtime.Object{issuer(cmmeta.ConditionFalse, "ErrGetKeyPair", `Error getting keypair for CA issuer: secrets "ca" not found`, start.Add(time.Second))},
			`its Issuer "ca" is not Ready (ErrGetKeyPair: Error getting keypair for CA issuer: secrets "ca" not found); fix the issuer and run again`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cm := cmfake.NewClientset(append(tc.objs, issuing())...)
			err := waitErr(t, cm, start, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}

	// The issuer turns not Ready during the wait (its CA Secret deleted),
	// after the wait has seen it Ready: with a zero start too.
	cm := cmfake.NewClientset(issuing(), issuer(cmmeta.ConditionTrue, "KeyPairVerified", "", start.Add(-time.Hour)))
	watching := make(chan struct{})
	var once sync.Once
	cm.PrependWatchReactor("issuers", func(k8stesting.Action) (bool, watch.Interface, error) {
		once.Do(func() { close(watching) })
		return false, nil, nil
	})
	err := waitErr(t, cm, time.Time{}, func(<-chan string) {
		go func() {
			<-watching
			is, _ := cm.CertmanagerV1().Issuers("demo").Get(context.Background(), "ca", metav1.GetOptions{})
			is.Status = issuer(cmmeta.ConditionFalse, "ErrGetKeyPair", "secret gone", time.Now()).Status
			_, _ = cm.CertmanagerV1().Issuers("demo").UpdateStatus(context.Background(), is, metav1.UpdateOptions{})
		}()
	})
	if err == nil || !strings.Contains(err.Error(), `its Issuer "ca" is not Ready (ErrGetKeyPair: secret gone)`) {
		t.Fatalf("issuer turned not Ready: %v", err)
	}
}

// What does not fail a wait: a failed request of the revision already
// issued or from before the wait, and an issuer that was never Ready when
// the wait counts every failure (a CA Issuer still coming up). Without
// permission to watch requests the wait says so and goes on.
func TestWaitReadyIgnoresOldFailures(t *testing.T) {
	start := time.Now()
	failedCond := cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionFalse, Reason: cmapi.CertificateRequestReasonFailed, Message: "old"}
	cm := cmfake.NewClientset(issuing(),
		request("pgpool-server-cert-1", "1", start, failedCond),
		request("pgpool-server-cert-2", "2", start.Add(-time.Hour), failedCond),
		issuer(cmmeta.ConditionFalse, "ErrGetKeyPair", "coming up", start.Add(-time.Hour)))
	watching := make(chan struct{}, 3)
	cm.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		if a.GetResource().Resource != "certificates" {
			watching <- struct{}{}
		}
		return false, nil, nil
	})
	cm.PrependReactor("list", "certificaterequests", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(cmapi.Resource("certificaterequests"), "", errors.New("RBAC"))
	})
	err := waitErr(t, cm, time.Time{}, func(said <-chan string) {
		go func() {
			<-watching // the issuer's watch is up
			for l := range said {
				if strings.Contains(l, "not watching CertificateRequests (forbidden): an issuance that fails shows only at the timeout") {
					break
				}
			}
			c := issuing()
			rev := 2
			c.Status.Revision = &rev
			_, _ = cm.CertmanagerV1().Certificates("demo").UpdateStatus(context.Background(), c, metav1.UpdateOptions{})
		}()
	})
	if err != nil {
		t.Fatalf("an old failure or a never-Ready issuer failed the wait: %v", err)
	}
}
