package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// badInput is one row of the README's table of bad inputs and failures.
type badInput struct {
	args      []string
	situation string
	want      string
	code      int
}

// readmeTable reads the rows of the README's "Bad input and failures" table.
func readmeTable(t *testing.T) []badInput {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "### Bad input and failures: what you see")
	if i < 0 {
		t.Fatal("README.md has no section \"Bad input and failures: what you see\"")
	}
	var rows []badInput
	for _, line := range strings.Split(s[i:], "\n") {
		if !strings.HasPrefix(line, "| `kubectl pgpool ") {
			if len(rows) > 0 && !strings.HasPrefix(line, "|") {
				break
			}
			continue
		}
		cols := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cols) != 4 {
			t.Fatalf("README table row with %d columns: %s", len(cols), line)
		}
		code, err := strconv.Atoi(strings.TrimSpace(cols[3]))
		if err != nil {
			t.Fatalf("README table row %q: exit code: %v", line, err)
		}
		var args []string
		for _, f := range strings.Fields(strings.TrimPrefix(strings.Trim(strings.TrimSpace(cols[0]), "`"), "kubectl pgpool ")) {
			if f == `""` {
				f = ""
			}
			args = append(args, f)
		}
		rows = append(rows, badInput{args: args, situation: strings.TrimSpace(cols[1]), want: strings.Trim(strings.TrimSpace(cols[2]), "`"), code: code})
	}
	return rows
}

// situations set up what a row's Situation names, in its own namespace;
// rows with any other situation share one namespace.
var situations = map[string]func(t *testing.T, ns string){
	"TLS already on, with another sslMode": func(t *testing.T, ns string) {
		if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--yes"); err != nil {
			t.Fatal(err)
		}
	},
	"a policy of the cluster's that refuses Certificates over 30 days": func(t *testing.T, ns string) {
		ctx := testenv.Context(t, time.Minute)
		vap := &admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "short-certificates-" + ns},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{"cert-manager.io"}, APIVersions: []string{"v1"}, Resources: []string{"certificates"}},
					}}}},
				Validations: []admissionregistrationv1.Validation{{
					Expression: "has(object.spec.duration) && duration(object.spec.duration) <= duration('720h')",
					Message:    "certificates in this namespace may last at most 30 days",
				}},
			},
		}
		binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: vap.Name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        vap.Name,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
				MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}},
			},
		}
		ar := env.Kube.AdmissionregistrationV1()
		create(t)(ar.ValidatingAdmissionPolicies().Create(ctx, vap, metav1.CreateOptions{}))
		t.Cleanup(func() {
			_ = ar.ValidatingAdmissionPolicies().Delete(context.Background(), vap.Name, metav1.DeleteOptions{})
		})
		create(t)(ar.ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}))
		t.Cleanup(func() {
			_ = ar.ValidatingAdmissionPolicyBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
		})
		// The API server loads the policy from a watch: wait until it
		// refuses a 90-day Certificate (in a dry run).
		probe := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "policy-probe"}, Spec: cmapi.CertificateSpec{
			SecretName: "policy-probe", CommonName: "probe", Duration: &metav1.Duration{Duration: 2160 * time.Hour},
			IssuerRef: cmmeta.IssuerReference{Name: "pgpool-issuer", Kind: "Issuer"}}}
		err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			_, err := env.CertMgr.CertmanagerV1().Certificates(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err != nil && strings.Contains(err.Error(), "at most 30 days"), nil
		})
		if err != nil {
			t.Fatalf("the policy did not take effect: %v", err)
		}
	},
	"another run holds the lock": func(t *testing.T, ns string) {
		secs := int32(60)
		l := leaseFor(ns, "someone@elsewhere")
		now := metav1.NewMicroTime(time.Now())
		l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &now, &secs
		create(t)(env.Kube.CoordinationV1().Leases(ns).Create(testenv.Context(t, time.Minute), l, metav1.CreateOptions{}))
	},
	"someone else's ConfigMap named like the CA bundle": func(t *testing.T, ns string) {
		create(t)(env.Kube.CoreV1().ConfigMaps(ns).Create(testenv.Context(t, time.Minute),
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-kubectl-pgpool-ca"}, Data: map[string]string{"ca.pem": "theirs"}}, metav1.CreateOptions{}))
	},
	"someone else's Secret named like the backup": func(t *testing.T, ns string) {
		create(t)(env.Kube.CoreV1().Secrets(ns).Create(testenv.Context(t, time.Minute),
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-kubectl-pgpool-backup"}, StringData: map[string]string{"x": "theirs"}}, metav1.CreateOptions{}))
	},
	"someone else's Certificate pgpool-server-cert": func(t *testing.T, ns string) {
		c := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-server-cert"}, Spec: cmapi.CertificateSpec{
			SecretName: "theirs-tls", CommonName: "theirs", IssuerRef: cmmeta.IssuerReference{Name: "pgpool-issuer", Kind: "Issuer"}}}
		create(t)(env.CertMgr.CertmanagerV1().Certificates(ns).Create(testenv.Context(t, time.Minute), c, metav1.CreateOptions{}))
	},
	"a pool_hba.conf line the plugin cannot read": func(t *testing.T, ns string) {
		patch := []byte(`{"stringData":{"pool_hba.conf":"local all all trust\nhost all all 0.0.0.0/0 frobnicate\n"}}`)
		create(t)(env.Kube.CoreV1().Secrets(ns).Patch(testenv.Context(t, time.Minute), "pgpool-config", types.MergePatchType, patch, metav1.PatchOptions{}))
	},
	"a PodDisruptionBudget that refuses every eviction": func(t *testing.T, ns string) {
		ctx := testenv.Context(t, 2*time.Minute)
		b, err := env.Kube.PolicyV1().PodDisruptionBudgets(ns).Patch(ctx, "pgpool", types.MergePatchType, []byte(`{"spec":{"maxUnavailable":0}}`), metav1.PatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		testenv.WaitObject(t, ctx, pdbLW(ns, "pgpool"), &policyv1.PodDisruptionBudget{}, "the PDB at maxUnavailable 0 to be computed", func(p *policyv1.PodDisruptionBudget) bool {
			return p.Status.ObservedGeneration >= b.Generation && p.Status.CurrentHealthy == 1 && p.Status.DisruptionsAllowed == 0
		})
	},
	"an ACME issuer": func(t *testing.T, ns string) {
		iss := &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{ACME: &cmacme.ACMEIssuer{
			Server: "https://127.0.0.1:9/directory", PrivateKey: cmmeta.SecretKeySelector{LocalObjectReference: cmmeta.LocalObjectReference{Name: "acme-account"}}}}}}
		create(t)(env.CertMgr.CertmanagerV1().Issuers(ns).Create(testenv.Context(t, time.Minute), iss, metav1.CreateOptions{}))
	},
}

// create fails the test on the error of a create (or patch) call.
func create(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// written lists what a failed command must not have changed: the workload's
// spec and annotations, every ConfigMap, Lease and Certificate spec, and the
// pgpool's Secrets (config, certificates, backup).
func written(t *testing.T, ns string, l layout) string {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	w := l.workload(t, ns)
	out := []string{fmt.Sprintf("workload generation %d annotations %v", w.GetGeneration(), w.GetAnnotations())}
	cms, err := env.Kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range cms.Items {
		out = append(out, "configmap "+o.Name+"@"+o.ResourceVersion)
	}
	secs, err := env.Kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range secs.Items {
		switch o.Name { // the pgpool's own (cert-manager keeps rewriting its CAs' for a while)
		case "pgpool-config", "pgpool-server-cert", "pgpool-client-cert", "pgpool-kubectl-pgpool-backup":
			out = append(out, "secret "+o.Name+"@"+o.ResourceVersion)
		}
	}
	ls, err := env.Kube.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ls.Items {
		out = append(out, "lease "+o.Name+"@"+o.ResourceVersion)
	}
	crts, err := env.CertMgr.CertmanagerV1().Certificates(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range crts.Items {
		out = append(out, fmt.Sprintf("certificate %s generation %d labels %v", o.Name, o.Generation, o.Labels))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// Every row of the README's table of bad inputs: the message the README
// shows, the exit code, and nothing written.
func TestREADMEBadInputTable(t *testing.T) {
	l := layouts[0]
	rows := readmeTable(t)
	if len(rows) < 25 {
		t.Fatalf("the README's table has %d rows, want at least 25", len(rows))
	}
	shared := setup(t, l, 1)
	for _, name := range []string{"empty", "nopassword"} {
		var err error
		if name == "empty" {
			_, err = env.Kube.CoreV1().ConfigMaps(shared).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"ca.crt": "no PEM here"}}, metav1.CreateOptions{})
		} else {
			_, err = env.Kube.CoreV1().Secrets(shared).Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"username": "postgres"}}, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	waitSettled(t, shared, l)
	for i, row := range rows {
		t.Run(fmt.Sprintf("%02d %s", i+1, row.situation), func(t *testing.T) {
			ns := shared
			if set := situations[row.situation]; set != nil {
				t.Parallel()
				ns = setup(t, l, 1)
				set(t, ns)
				waitSettled(t, ns, l)
			}
			before := written(t, ns, l)
			_, _, err := plugin(t, env.Kubeconfig, ns, append(row.args, "--yes")...)
			want := strings.NewReplacer("NS/", ns+"/", `"NS"`, `"`+ns+`"`).Replace(row.want)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("kubectl pgpool %s (%s): error %v\nwant: %s", strings.Join(row.args, " "), row.situation, err, want)
			}
			if code := cmd.ExitCode(err); code != row.code {
				t.Fatalf("kubectl pgpool %s: exit code %d, want %d", strings.Join(row.args, " "), code, row.code)
			}
			if after := written(t, ns, l); after != before {
				t.Fatalf("kubectl pgpool %s changed objects:\nbefore:\n%s\nafter:\n%s", strings.Join(row.args, " "), before, after)
			}
		})
	}
}
