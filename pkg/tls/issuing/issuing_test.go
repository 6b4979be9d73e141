package issuing

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmfake "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
