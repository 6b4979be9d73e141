package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// Issue 18, case 12: tls add whose record step fails (an admission policy
// of the namespace refuses its Event; a ResourceQuota cannot: the API server
// exempts Events from quota) after the change was verified exits 0 with a
// warning, and the change stays: nothing is rolled back.
func TestFailedRecordAfterSuccessKeepsTheChange(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	ctx := testenv.Context(t, time.Minute)
	name := "no-tls-events-" + ns
	fail := admissionv1.Fail
	nsSel := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	adm := env.Kube.AdmissionregistrationV1()
	pol := &admissionv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{NamespaceSelector: nsSel, ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"events"}}}}}},
			Validations: []admissionv1.Validation{{Expression: "!object.reason.startsWith('TLSAdd')", Message: "no TLS Events here"}}}}
	if _, err := adm.ValidatingAdmissionPolicies().Create(ctx, pol, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adm.ValidatingAdmissionPolicyBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = adm.ValidatingAdmissionPolicies().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	bind := &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name, ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: nsSel}}}
	if _, err := adm.ValidatingAdmissionPolicyBindings().Create(ctx, bind, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The policy is in force once a test Event is refused.
	probe := &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe.", Namespace: ns}, Reason: "TLSAddProbe",
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "x"}}
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := env.Kube.CoreV1().Events(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil, nil
	}); err != nil {
		t.Fatal("the policy never refused an Event")
	}
	out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes")
	if err != nil || !strings.Contains(errOut, "warning: tls add is done and verified") || !strings.Contains(errOut, "nothing was undone") || strings.Contains(errOut, "rolling back") {
		t.Fatalf("add with a failing record: %v\n%s\n%s", err, out, errOut)
	}
	checkConfig(t, ns, l, true, "hostssl all all 0.0.0.0/0 cert")
	checkVolume(t, ns, l, true)
	checkUnlocked(t, ns)
}

// Issue 18, case 7: after tls add, someone adds a rule to pool_hba.conf; a
// rollback refuses to discard it, names it, and changes nothing; --force
// rolls back.
func TestRollbackRefusesToDiscardLaterEdits(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	_, conf0, hba0 := l.config(t, ns)
	if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes"); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, time.Minute)
	s, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, "pgpool-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["pool_hba.conf"] = []byte("host all intruder 0.0.0.0/0 reject\n" + string(s.Data["pool_hba.conf"]))
	if _, err := env.Kube.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := resourceVersions(t, ns, l)
	_, _, err = plugin(t, env.Kubeconfig, ns, "tls", "rollback", "pgpool", "--yes")
	if err == nil || !strings.Contains(err.Error(), "+ host all intruder 0.0.0.0/0 reject") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("rollback after a later edit: %v", err)
	}
	if after := resourceVersions(t, ns, l); after != before {
		t.Fatalf("the refused rollback changed objects: %s -> %s", before, after)
	}
	out, _, err := plugin(t, env.Kubeconfig, ns, "tls", "rollback", "pgpool", "--force", "--yes")
	if err != nil || !strings.Contains(out, "intruder") {
		t.Fatalf("rollback --force: %v\n%s", err, out)
	}
	checkRolledBack(t, ns, l, conf0, hba0)
}
