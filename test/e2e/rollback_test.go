package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// refuseTLSVolume installs an admission policy, as a cluster's security
// team might, that refuses a pod template of the layout's workload in ns
// mounting a volume named certs; it is removed when the test ends.
func refuseTLSVolume(t *testing.T, ns string, l layout) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	name := "no-certs-" + ns
	res := strings.ToLower(l.kind) + "s"
	fail := admissionv1.Fail
	nsSel := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	pol := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{NamespaceSelector: nsSel, ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule: admissionv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{res}}}}}},
			Validations: []admissionv1.Validation{{
				Expression: "!has(object.spec.template.spec.volumes) || !object.spec.template.spec.volumes.exists(v, v.name == 'certs')",
				Message:    "policy no-certs: pgpool pods may not mount a volume named certs",
			}},
		},
	}
	adm := env.Kube.AdmissionregistrationV1()
	if _, err := adm.ValidatingAdmissionPolicies().Create(ctx, pol, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adm.ValidatingAdmissionPolicyBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = adm.ValidatingAdmissionPolicies().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	bind := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources:    &admissionv1.MatchResources{NamespaceSelector: nsSel}},
	}
	if _, err := adm.ValidatingAdmissionPolicyBindings().Create(ctx, bind, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The policy takes effect once the API server has compiled it: wait
	// until a server dry run of such a patch is refused.
	patch := []byte(`[{"op":"add","path":"/spec/template/spec/volumes/-","value":{"name":"certs","emptyDir":{}}}]`)
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := env.Dynamic.Resource(l.gvr()).Namespace(ns).Patch(ctx, "pgpool", types.JSONPatchType, patch, metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "policy no-certs"), nil
	})
	if err != nil {
		t.Fatalf("the admission policy never took effect: %v", err)
	}
}

// A failure after the first change (here: an admission policy refuses the
// pod template with the TLS volume, after the config was patched) rolls back
// by itself: the config byte for byte as before, no Certificate, Secret, CA
// bundle or backup left, the lock released. With --on-failure=stop it is left
// as it is and `tls rollback` undoes it by hand.
func TestFailedOperationRollsBack(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	_, conf0, hba0 := l.config(t, ns)
	refuseTLSVolume(t, ns, l)
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes"}

	out, errOut, err := plugin(t, env.Kubeconfig, ns, append(add, "--on-failure=stop")...)
	if err == nil || !strings.Contains(err.Error(), "policy no-certs") || !strings.Contains(err.Error(), "kubectl pgpool tls rollback pgpool -n "+ns) {
		t.Fatalf("add refused by the policy, --on-failure=stop: %v\n%s\n%s", err, out, errOut)
	}
	checkConfig(t, ns, l, true, "hostssl all all 0.0.0.0/0 cert")
	if bk := backup(t, ns); bk == nil || bk.Done || bk.Operation != "add" || bk.PgpoolConf != conf0 {
		t.Fatalf("after the failed add the backup is %+v, want the unfinished add's with the config of before", bk)
	}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, "tls", "rollback", "pgpool", "--yes")
	if err != nil {
		t.Fatalf("rollback: %v\n%s\n%s", err, out, errOut)
	}
	checkRolledBack(t, ns, l, conf0, hba0)

	out, errOut, err = plugin(t, env.Kubeconfig, ns, add...)
	if err == nil || !strings.Contains(err.Error(), "policy no-certs") || !strings.Contains(err.Error(), "rolled back") || !strings.Contains(errOut, "rolling back to the state before it") {
		t.Fatalf("add refused by the policy: %v\n%s\n%s", err, out, errOut)
	}
	checkRolledBack(t, ns, l, conf0, hba0)
	if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "rollback", "pgpool", "--yes"); err == nil || !strings.Contains(err.Error(), "has no backup to roll back to") {
		t.Fatalf("a second rollback: %v", err)
	}
}

// backup reads the backup Secret of pgpool in ns (nil when there is none).
func backup(t *testing.T, ns string) *pgpool.Backup {
	t.Helper()
	s, err := env.Kube.CoreV1().Secrets(ns).Get(testenv.Context(t, time.Minute), pgpool.BackupName("pgpool"), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := pgpool.ReadBackup(s, "pgpool")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkRolledBack(t *testing.T, ns string, l layout, conf0, hba0 string) {
	t.Helper()
	if _, c, h := l.config(t, ns); c != conf0 || h != hba0 {
		t.Fatal("after the rollback, pgpool.conf or pool_hba.conf differ from before the add")
	}
	checkVolume(t, ns, l, false)
	ctx := testenv.Context(t, time.Minute)
	for _, n := range []string{pgpool.ServerCertName("pgpool"), pgpool.ClientCertName("pgpool")} {
		if _, err := env.CertMgr.CertmanagerV1().Certificates(ns).Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("Certificate %s left after the rollback (%v)", n, err)
		}
		if _, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("Secret %s left after the rollback (%v)", n, err)
		}
	}
	if _, err := env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, tls.CABundleName("pgpool"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the CA bundle is left after the rollback (%v)", err)
	}
	if backup(t, ns) != nil {
		t.Fatal("the backup is left after the rollback")
	}
	checkLastOperation(t, ns, l, "rollback", "Succeeded")
	checkUnlocked(t, ns)
}

// An add killed with SIGKILL right after it patched the config (its lock
// left behind, nothing recorded) is undone by `tls rollback`: the dead run's
// lock is taken over, and everything is as before.
func TestKilledAddRollsBack(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	_, conf0, hba0 := l.config(t, ns)
	env.KillAt(t, ns, syscall.SIGKILL, func(line string) bool {
		return strings.Contains(line, "patch Secret "+ns+"/pgpool-config") && strings.Contains(line, "done in")
	}, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert")
	checkConfig(t, ns, l, true, "hostssl all all 0.0.0.0/0 cert")
	out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "rollback", "pgpool", "--yes")
	if err != nil || !strings.Contains(errOut, "whose process is gone") {
		t.Fatalf("rollback after a killed add: %v\n%s\n%s", err, out, errOut)
	}
	checkRolledBack(t, ns, l, conf0, hba0)
}

// Issue 27, finding 5: a colleague who may write Secrets but not
// Deployments adds a hostPath volume to the backup Secret of a finished
// add. `tls rollback` refuses it (the Secret no longer matches the digest
// the plugin recorded on the workload) and writes nothing; the pod template
// never gets the volume. Before, rollback applied it.
func TestEditedBackupIsNotApplied(t *testing.T) {
	l := layouts[1]
	ns := setup(t, l, 1)
	if out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--yes"); err != nil {
		t.Fatalf("add: %v\n%s\n%s", err, out, errOut)
	}
	ctx := testenv.Context(t, time.Minute)
	sec, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, pgpool.BackupName("pgpool"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var state map[string]any
	if err := json.Unmarshal(sec.Data["backup.json"], &state); err != nil {
		t.Fatal(err)
	}
	vols, _ := state["volumes"].([]any)
	state["volumes"] = append(vols, map[string]any{"name": "node-root", "hostPath": map[string]any{"path": "/"}})
	sec.Data["backup.json"], _ = json.Marshal(state)
	if _, err := env.Kube.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w0, err := env.Dynamic.Resource(l.gvr()).Namespace(ns).Get(ctx, "pgpool", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "rollback", "pgpool", "--yes")
	if err == nil || !strings.Contains(err.Error(), "does not match the digest") || !strings.Contains(err.Error(), "kubectl delete secret -n "+ns+" "+pgpool.BackupName("pgpool")) {
		t.Fatalf("rollback of an edited backup: %v\n%s\n%s", err, out, errOut)
	}
	w1, err := env.Dynamic.Resource(l.gvr()).Namespace(ns).Get(ctx, "pgpool", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Its generation counts spec changes only (the controller updates its
	// status on its own time).
	if w1.GetGeneration() != w0.GetGeneration() || strings.Contains(fmt.Sprint(w1.Object["spec"]), "node-root") {
		t.Fatalf("the refused rollback changed the %s's spec (generation %d -> %d)", l.kind, w0.GetGeneration(), w1.GetGeneration())
	}
	checkConfig(t, ns, l, true, "hostssl all all 0.0.0.0/0 md5")
}
