package planner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/testfiles"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/layout"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ui"
)

func readConf(t *testing.T, name string) string {
	return string(testfiles.Read(t, filepath.Join("..", "conf", "testdata", name)))
}

// fixture is a discovered KubeDB-layout (StatefulSet) or pgpool2_on_k8s
// (Deployment) pgpool with 3 Ready pods, without TLS.
func fixture(t *testing.T, kind string) *pgpool.Target {
	files, cfgKind := "kubedb", "Secret"
	var lay pgpool.Layout = layout.KubeDB{}
	if kind == "Deployment" {
		files, cfgKind, lay = "k8s", "ConfigMap", layout.Pgpool2OnK8s{}
	}
	tg := &pgpool.Target{
		Namespace: "demo", Name: "pgpool", Kind: kind, APIVersion: "apps/v1", UID: "w-uid", Replicas: 3,
		UpdateStrategy: "OnDelete", Container: "pgpool", ContainerIndex: 0, Layout: lay,
		Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pgpool"}},
		Config:       pgpool.Config{Kind: cfgKind, Name: "pgpool-config", MountPath: "/config", ResourceVersion: "42", PgpoolConf: readConf(t, files+"-pgpool.conf"), PoolHBA: readConf(t, files+"-pool_hba.conf")},
		TLSMountPath: "/config/tls", Services: []string{"pgpool", "pgpool-pods"}, Headless: "pgpool-pods",
		Certificates: map[string]*cmapi.Certificate{},
	}
	if kind == "Deployment" {
		tg.UpdateStrategy, tg.Services, tg.Headless = "RollingUpdate", []string{"pgpool"}, ""
	}
	one := int64(70)
	tg.Template.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: &one}
	tg.Template.Spec.Containers = []corev1.Container{{Name: "pgpool", VolumeMounts: []corev1.VolumeMount{{Name: "pgpool-config", MountPath: "/config"}}}}
	tg.Template.Spec.Volumes = []corev1.Volume{{Name: "pgpool-config"}}
	for i := 0; i < 3; i++ {
		tg.Pods = append(tg.Pods, corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pgpool-%d", i), UID: types.UID(fmt.Sprintf("uid-%d", i))},
			Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		})
	}
	return tg
}

// withTLS turns the fixture into one that add has run on.
func withTLS(t *testing.T, tg *pgpool.Target) *pgpool.Target {
	p, err := build(t, tg, seedAdd())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Steps {
		if c, ok := s.Spec.(plan.ConfigPatchSpec); ok {
			tg.Config.PgpoolConf, tg.Config.PoolHBA = c.PgpoolConf, c.PoolHBA
		}
	}
	tg.State = pgpool.TLSState{Enabled: true, SSLMode: "require", AuthMode: "cert", Issuer: pgpool.IssuerRef{Name: "pgpool-issuer", Kind: "Issuer"}, VolumePresent: true}
	tg.Template.Spec.Containers[0].VolumeMounts = append(tg.Template.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "certs", MountPath: "/config/tls"})
	tg.Template.Spec.Volumes = append(tg.Template.Spec.Volumes, corev1.Volume{Name: "certs"})
	rev := 1
	for _, n := range []string{"pgpool-server-cert", "pgpool-client-cert"} {
		tg.Certificates[n] = &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Name: n, Generation: 1, Labels: map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: "pgpool"}},
			Spec:       cmapi.CertificateSpec{SecretName: n, IssuerRef: cmmeta.IssuerReference{Name: "pgpool-issuer", Kind: "Issuer"}},
			Status:     cmapi.CertificateStatus{Revision: &rev},
		}
	}
	return tg
}

func seedAdd() request {
	return request{Operation: Add, Issuer: pgpool.IssuerRef{Name: "pgpool-issuer", Kind: "Issuer"}, SSLMode: "require", AuthMode: "cert",
		ClientUser: "postgres", ClientOrgs: []string{"pgpool"}, ClientOUs: []string{"client"}, Holder: "tester", RemoteTrust: "keep"}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	testfiles.Golden(t, filepath.Join("testdata", name), got)
}

func TestPlansGolden(t *testing.T) {
	for _, kind := range []string{"StatefulSet", "Deployment"} {
		for _, tc := range []struct {
			op  string
			tg  func() *pgpool.Target
			req request
		}{
			{"rotate-restart-only", func() *pgpool.Target { return withTLS(t, fixture(t, kind)) }, request{Operation: Rotate, RestartOnly: true, Holder: "tester"}},
			{Add, func() *pgpool.Target { return fixture(t, kind) }, seedAdd()},
			{Rotate, func() *pgpool.Target { return withTLS(t, fixture(t, kind)) }, request{Operation: Rotate, Holder: "tester"}},
			{ChangeIssuer, func() *pgpool.Target { return withTLS(t, fixture(t, kind)) }, request{Operation: ChangeIssuer, Issuer: pgpool.IssuerRef{Name: "pp-new-issuer"}, Holder: "tester"}},
			{Remove, func() *pgpool.Target { return withTLS(t, fixture(t, kind)) }, request{Operation: Remove, Holder: "tester"}},
			{"rollback-add", func() *pgpool.Target { return failedAdd(t, kind) }, request{Operation: Rollback, Holder: "tester"}},
		} {
			name := strings.ToLower(kind) + "-" + tc.op
			t.Run(name, func(t *testing.T) {
				p, err := build(t, tc.tg(), tc.req)
				if err != nil {
					t.Fatal(err)
				}
				var text bytes.Buffer
				ui.RenderPlan(&text, p, ui.Styles{}, "client")
				golden(t, name+".txt", text.Bytes())
				js, _ := json.MarshalIndent(p, "", "  ")
				golden(t, name+".json", append(js, '\n'))
				if strings.Contains(text.String()+string(js), "PRIVATE KEY") {
					t.Fatal("a plan shows key material")
				}
				checkShape(t, p, kind)
			})
		}
	}
}

// checkShape asserts the invariants every plan keeps.
func checkShape(t *testing.T, p *plan.Plan, kind string) {
	t.Helper()
	if p.Steps[0].Kind != plan.Lock {
		t.Fatalf("first step is %s, want lock", p.Steps[0].Kind)
	}
	for i, s := range p.Steps {
		if s.Spec == nil || s.Spec.StepKind() != s.Kind {
			t.Fatalf("step %d: kind %s with spec %T", i+1, s.Kind, s.Spec)
		}
	}
	last := p.Steps[len(p.Steps)-1]
	if last.Kind != plan.Unlock || !last.Always {
		t.Fatal("last step must be an Always unlock")
	}
	var evicted []string
	for _, s := range p.Steps {
		if s.Kind == plan.Evict {
			evicted = append(evicted, s.Object.Name)
		}
	}
	if len(evicted) > 0 && kind == "StatefulSet" && p.Operation != Rollback && strings.Join(evicted, ",") != "pgpool-2,pgpool-1,pgpool-0" {
		t.Fatalf("eviction order %v, want highest ordinal first", evicted)
	}
}

func TestBuildRefusesWhatDoesNotFit(t *testing.T) {
	tg := fixture(t, "StatefulSet")
	for _, tc := range []struct {
		tg   *pgpool.Target
		req  request
		want string
	}{
		{tg, request{Operation: Rotate}, "tls add pgpool --issuer"},
		{tg, request{Operation: Remove}, "has no TLS"},
		{withTLS(t, fixture(t, "StatefulSet")), seedAdd(), "tls rotate pgpool"},
		{withTLS(t, fixture(t, "StatefulSet")), request{Operation: ChangeIssuer, Issuer: pgpool.IssuerRef{Name: "pgpool-issuer"}}, "already uses Issuer"},
	} {
		if _, err := build(t, tc.tg, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.req.Operation, err, tc.want)
		}
	}
	notReady := fixture(t, "StatefulSet")
	notReady.Pods[1].Status.Conditions[0].Status = corev1.ConditionFalse
	if _, err := build(t, notReady, seedAdd()); err == nil || !strings.Contains(err.Error(), "pgpool-1") || !strings.Contains(err.Error(), "--apply Always") {
		t.Errorf("not ready: %v", err)
	}
	r := seedAdd()
	r.ApplyAlways = true
	if _, err := build(t, notReady, r); err != nil {
		t.Errorf("--apply Always: %v", err)
	}
}

func TestDeploymentAddWaitsForRollout(t *testing.T) {
	tg := fixture(t, "Deployment")
	p, err := build(t, tg, seedAdd())
	if err != nil {
		t.Fatal(err)
	}
	if p.Restart != "rollout" {
		t.Fatalf("restart = %q, want rollout (the template change makes the Deployment roll by itself)", p.Restart)
	}
	for _, s := range p.Steps {
		if s.Kind == plan.Evict {
			t.Fatal("a Deployment whose template changed must not also be evicted (pods would restart twice)")
		}
	}
}

// enable_pool_hba = off: add turns it on (shown in the diff, said in a
// warning) and remove turns it back off, byte for byte.
func TestAddEnforcesPoolHBA(t *testing.T) {
	tg := fixture(t, "StatefulSet")
	orig := strings.Replace(tg.Config.PgpoolConf, "enable_pool_hba = on", "enable_pool_hba = off", 1)
	tg.Config.PgpoolConf = orig
	p, err := build(t, tg, seedAdd())
	if err != nil {
		t.Fatal(err)
	}
	cfg := configPatch(t, p, tg)
	if !strings.Contains(cfg.Diff, "+ enable_pool_hba = on") || !strings.Contains(strings.Join(p.Warnings, "\n"), "enable_pool_hba was off") {
		t.Fatalf("enable_pool_hba not turned on visibly:\n%s\n%v", cfg.Diff, p.Warnings)
	}
	tg = withTLS(t, tg)
	p, err = build(t, tg, request{Operation: Remove, Holder: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	if got := configStep(t, p, tg).PgpoolConf; got != orig {
		t.Fatalf("remove did not restore pgpool.conf:\n%s", conf.Diff(orig, got, 1))
	}
	if got := configStep(t, p, tg).PoolHBA; got != readConf(t, "kubedb-pool_hba.conf") {
		t.Fatalf("remove did not restore pool_hba.conf:\n%s", got)
	}
}

// A pool_hba.conf line the parser cannot read stops add before any step.
func TestAddRefusesUnreadableHBA(t *testing.T) {
	tg := fixture(t, "StatefulSet")
	tg.Config.PoolHBA += "host all all 0.0.0.0/0 gss\n"
	_, err := build(t, tg, seedAdd())
	if err == nil || !strings.Contains(err.Error(), "Secret demo/pgpool-config: pool_hba.conf line 7") || !strings.Contains(err.Error(), `unknown method "gss"`) {
		t.Fatalf("got %v", err)
	}
}

func configPatch(t *testing.T, p *plan.Plan, tg *pgpool.Target) plan.Step {
	t.Helper()
	for _, s := range p.Steps {
		if _, ok := s.Spec.(plan.ConfigPatchSpec); ok && s.Object.Kind == tg.Config.Kind {
			return s
		}
	}
	t.Fatal("no config patch in the plan")
	return plan.Step{}
}

func configStep(t *testing.T, p *plan.Plan, tg *pgpool.Target) plan.ConfigPatchSpec {
	t.Helper()
	return configPatch(t, p, tg).Spec.(plan.ConfigPatchSpec)
}

// A pgpool whose TLS volume an earlier version mounted (the server Secret,
// ca.crt as ca.pem) gets the projected volume with the CA bundle on rotate,
// and a Deployment then waits for its own rollout instead of evicting.
func TestRotateUpgradesLegacyVolume(t *testing.T) {
	for _, kind := range []string{"StatefulSet", "Deployment"} {
		tg := withTLS(t, fixture(t, kind))
		vols := tg.Template.Spec.Volumes
		vols[len(vols)-1].VolumeSource = corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "pgpool-server-cert"}}
		p, err := build(t, tg, request{Operation: Rotate, Holder: "tester"})
		if err != nil {
			t.Fatal(err)
		}
		upgrade := ""
		for _, s := range p.Steps {
			if w, ok := s.Spec.(plan.WorkloadPatchSpec); ok {
				upgrade = string(w.Patch)
			}
		}
		if !strings.Contains(upgrade, `"op":"replace","path":"/spec/template/spec/volumes/1"`) || !strings.Contains(upgrade, "pgpool-kubectl-pgpool-ca") {
			t.Fatalf("%s: no volume upgrade in the plan: %+v", kind, upgrade)
		}
		if want := map[string]string{"StatefulSet": "evict", "Deployment": "rollout"}[kind]; p.Restart != want {
			t.Fatalf("%s: restart %q, want %q", kind, p.Restart, want)
		}
	}
}

// change-issuer: the bundle keeps the CA of today next to the new one, the
// server Certificate moves before the roll and the client one after.
func TestChangeIssuerKeepsBothCAs(t *testing.T) {
	tg := withTLS(t, fixture(t, "StatefulSet"))
	req := request{Operation: ChangeIssuer, Issuer: pgpool.IssuerRef{Name: "pp-new-issuer"}, Holder: "tester", CurrentCA: []byte(testCA)}
	p, err := build(t, tg, req)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, s := range p.Steps {
		switch {
		case s.Kind == plan.Patch && s.Object.Kind == "Certificate":
			order = append(order, "move "+s.Object.Name)
		case s.Kind == plan.Apply && s.Object.Kind == "ConfigMap":
			order = append(order, "bundle")
			if b := s.Spec.(plan.ApplyBundleSpec); string(b.PreviousCA) != testCA || !strings.Contains(s.Diff, "previous issuer's CA: CN=old-ca") {
				t.Fatalf("the bundle does not keep the old CA: %q %q", s.Diff, b.PreviousCA)
			}
		case s.Kind == plan.Evict:
			order = append(order, "evict")
		}
	}
	want := "move pgpool-server-cert,bundle,evict,evict,evict,move pgpool-client-cert"
	if got := strings.Join(order, ","); got != want {
		t.Fatalf("order %s, want %s", got, want)
	}
}

// testCA is a throwaway self-signed CA certificate (CN=old-ca).
const testCA = `-----BEGIN CERTIFICATE-----
MIIBdjCCAR2gAwIBAgIUFLpY6Y7avsIw3rw1nJ0vZFWBZL8wCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGb2xkLWNhMB4XDTI2MTEyNzEzNTYzNVoXDTM2MTEyNDEzNTYz
NVowETEPMA0GA1UEAwwGb2xkLWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
YO02eTTJMsxEKwZgR6vAsT8QluQ6jjc17uwy5H7pr98QsBau3REHpAkQD39yoTW2
Yo24zq2OxaugCK+CHnpMvKNTMFEwHQYDVR0OBBYEFIztW0RIMLxSuoujQ9FwC77J
LlIKMB8GA1UdIwQYMBaAFIztW0RIMLxSuoujQ9FwC77JLlIKMA8GA1UdEwEB/wQF
MAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgXv8Erllx/POr1UKzXeXEn+TrZebaP2Xz
yyjIlavyZ7wCIG6vHL/+sGL7vSfUt+bFFRIMEcUDOz5rtG7RiYf3bL/7
-----END CERTIFICATE-----
`

// Certificates another tool created are neither taken over by add (unless
// asked) nor deleted by remove.
func TestCertificatesOfOthers(t *testing.T) {
	tg := fixture(t, "StatefulSet")
	tg.Certificates["pgpool-server-cert"] = &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-server-cert", Labels: map[string]string{tls.LabelManagedBy: "kubedb"}}}
	if _, err := build(t, tg, seedAdd()); err == nil || !strings.Contains(err.Error(), "--take-over-certificates") {
		t.Fatalf("add over someone else's Certificate: %v", err)
	}
	r := seedAdd()
	r.TakeOverCertificates = true
	if _, err := build(t, tg, r); err != nil {
		t.Fatalf("--take-over-certificates: %v", err)
	}
	tg = withTLS(t, fixture(t, "StatefulSet"))
	tg.Certificates["pgpool-client-cert"].Labels = nil
	p, err := build(t, tg, request{Operation: Remove, Holder: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, s := range p.Steps {
		if s.Kind == plan.Delete {
			deleted = append(deleted, s.Object.Kind+"/"+s.Object.Name)
		}
	}
	if strings.Join(deleted, ",") != "Certificate/pgpool-server-cert,Secret/pgpool-server-cert" || !strings.Contains(strings.Join(p.Warnings, "\n"), "pgpool-client-cert was not created by kubectl-pgpool") {
		t.Fatalf("remove deletes %v; warnings %v", deleted, p.Warnings)
	}
}

// An add or remove that stopped part-way is finished by running it again:
// the plan says it is resuming and leaves out what is done; rotate and
// change-issuer refuse a half-added pgpool and say which command finishes
// it.
func TestInterruptedOperationsResume(t *testing.T) {
	// add stopped after the config patch: ssl on, no TLS volume.
	tg := withTLS(t, fixture(t, "StatefulSet"))
	tg.Template.Spec.Containers[0].VolumeMounts = tg.Template.Spec.Containers[0].VolumeMounts[:1]
	tg.Template.Spec.Volumes = tg.Template.Spec.Volumes[:1]
	tg.State.VolumePresent = false
	p, err := build(t, tg, seedAdd())
	if err != nil {
		t.Fatalf("add again: %v", err)
	}
	kinds := stepKinds(p)
	if !strings.Contains(strings.Join(p.Warnings, "\n"), "resuming a tls add that did not finish (ssl is on in the config, but the TLS volume is not mounted)") ||
		strings.Contains(kinds, "patch Secret") || !strings.Contains(kinds, "patch StatefulSet") || !strings.Contains(kinds, "evict Pod") {
		t.Fatalf("resumed add: %s\n%v", kinds, p.Warnings)
	}
	for _, op := range []request{{Operation: Rotate}, {Operation: ChangeIssuer, Issuer: pgpool.IssuerRef{Name: "pp-new-issuer"}}} {
		if _, err := build(t, tg, op); err == nil || !strings.Contains(err.Error(), "a tls add on pgpool demo/pgpool did not finish") || !strings.Contains(err.Error(), "tls add pgpool --issuer NAME` again") {
			t.Errorf("%s on a half-added pgpool: %v", op.Operation, err)
		}
	}
	// remove stopped after the config patch: ssl off, TLS volume mounted.
	tg = withTLS(t, fixture(t, "StatefulSet"))
	rm, err := build(t, tg, request{Operation: Remove, Holder: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	c := configStep(t, rm, tg)
	tg.Config.PgpoolConf, tg.Config.PoolHBA = c.PgpoolConf, c.PoolHBA
	tg.State.Enabled = false
	p, err = build(t, tg, request{Operation: Remove, Holder: "tester"})
	if err != nil {
		t.Fatalf("remove again: %v", err)
	}
	kinds = stepKinds(p)
	if strings.Contains(kinds, "patch Secret") || !strings.Contains(kinds, "patch StatefulSet") || !strings.Contains(kinds, "delete Certificate") {
		t.Fatalf("resumed remove: %s", kinds)
	}
	if _, err := build(t, tg, request{Operation: Rotate}); err == nil || !strings.Contains(err.Error(), "a tls remove on pgpool demo/pgpool did not finish") {
		t.Errorf("rotate on a half-removed pgpool: %v", err)
	}
	// remove stopped after it deleted the server Certificate: its Secret
	// (ours by label) still goes; a Secret without our label stays.
	tg.Template.Spec.Containers[0].VolumeMounts = tg.Template.Spec.Containers[0].VolumeMounts[:1]
	tg.State.VolumePresent = false
	tg.Annotations = map[string]string{pgpool.AnnotationLastOperation: `{"operation":"remove","result":"Failed","error":"interrupted"}`}
	delete(tg.Certificates, "pgpool-server-cert")
	ours := map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: "pgpool"}
	tg.CertSecrets = map[string]*metav1.ObjectMeta{"pgpool-server-cert": {Name: "pgpool-server-cert", Labels: ours}}
	p, err = build(t, tg, request{Operation: Remove, Holder: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	if kinds := stepKinds(p); !strings.Contains(kinds, "delete Certificate, delete Secret, delete Secret") {
		t.Fatalf("remove after the Certificate went: %s", kinds)
	}
	tg.CertSecrets["pgpool-server-cert"].Labels = nil
	p, _ = build(t, tg, request{Operation: Remove, Holder: "tester"})
	if kinds := stepKinds(p); strings.Count(kinds, "delete Secret") != 1 {
		t.Fatalf("a Secret that is not ours: %s", kinds)
	}
}

func stepKinds(p *plan.Plan) string {
	var out []string
	for _, s := range p.Steps {
		out = append(out, string(s.Kind)+" "+s.Object.Kind)
	}
	return strings.Join(out, ", ")
}

// A change-issuer that stopped after moving the server Certificate is
// finished by running it again: the server is not moved twice, the old CA
// comes from the bundle the stopped run wrote, the client moves after the
// roll. Once both moved and the last run succeeded, it is refused.
func TestChangeIssuerResumes(t *testing.T) {
	tg := withTLS(t, fixture(t, "StatefulSet"))
	tg.Certificates["pgpool-server-cert"].Spec.IssuerRef.Name = "pp-new-issuer"
	tg.Bundle = &corev1.ConfigMap{Data: map[string]string{"issuer-ca.pem": testCA}}
	tg.BundleOurs = true
	if tg.Annotations == nil {
		tg.Annotations = map[string]string{}
	}
	tg.Annotations[pgpool.AnnotationBundleDigest] = tls.BundleDigest(tg.Bundle.Data) // as the stopped run wrote it
	p, err := build(t, tg, request{Operation: ChangeIssuer, Issuer: pgpool.IssuerRef{Name: "pp-new-issuer"}, Holder: "tester", CurrentCA: []byte("new")})
	if err != nil {
		t.Fatal(err)
	}
	kinds := stepKinds(p)
	if strings.Count(kinds, "patch Certificate") != 1 || !strings.Contains(strings.Join(p.Warnings, "\n"), "resuming a tls change-issuer") {
		t.Fatalf("resumed change-issuer: %s\n%v", kinds, p.Warnings)
	}
	for _, s := range p.Steps {
		if b, ok := s.Spec.(plan.ApplyBundleSpec); ok && string(b.PreviousCA) != testCA {
			t.Fatalf("the old CA is not kept: %q", b.PreviousCA)
		}
	}
	tg.Certificates["pgpool-client-cert"].Spec.IssuerRef.Name = "pp-new-issuer"
	if _, err := build(t, tg, request{Operation: ChangeIssuer, Issuer: pgpool.IssuerRef{Name: "pp-new-issuer"}}); err == nil || !strings.Contains(err.Error(), "already uses Issuer") {
		t.Fatalf("both moved: %v", err)
	}
	tg.Annotations = map[string]string{pgpool.AnnotationLastOperation: `{"operation":"change-issuer","result":"Failed"}`}
	if _, err := build(t, tg, request{Operation: ChangeIssuer, Issuer: pgpool.IssuerRef{Name: "pp-new-issuer"}, Holder: "tester"}); err != nil {
		t.Fatalf("both moved, last run failed (pods may not be rolled): %v", err)
	}
	// Killed right after moving the client Certificate (its backup pending):
	// the run again waits for cert-manager to re-issue both moved
	// Certificates (a revision after the backup's), Ready alone is not
	// enough: it may still describe the old issuer's certificate.
	tg.Annotations = nil
	tg.Backup = &pgpool.Backup{Operation: ChangeIssuer, Revisions: map[string]int{"pgpool-server-cert": 3, "pgpool-client-cert": 5}}
	p, err = build(t, tg, request{Operation: ChangeIssuer, Issuer: pgpool.IssuerRef{Name: "pp-new-issuer"}, Holder: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	waits := map[string]int{}
	for _, s := range p.Steps {
		if w, ok := s.Spec.(plan.WaitCertificateSpec); ok {
			waits[s.Object.Name] = w.AfterRevision
		}
	}
	if waits["pgpool-server-cert"] != 3 || waits["pgpool-client-cert"] != 5 {
		t.Fatalf("resumed after both moved: waits %v, want after the backup's revisions 3 and 5", waits)
	}
}

// A backend CA in the bundle is trusted for client certificates too (one
// file in pgpool): with cert auth the plan says so.
func TestBackendCAWithCertAuthWarns(t *testing.T) {
	r := seedAdd()
	r.BackendCA = []byte(testCA)
	p, err := build(t, fixture(t, "StatefulSet"), r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(p.Warnings, "\n"), "a client certificate signed by the backend's CA (CN=old-ca) is accepted too") {
		t.Fatalf("warnings: %v", p.Warnings)
	}
}

// failedAdd is the fixture after an add that stopped in its roll: TLS
// configured and mounted, the highest pod replaced and crash-looping, the
// backup of before in place.
func failedAdd(t *testing.T, kind string) *pgpool.Target {
	before := fixture(t, kind)
	bk := pgpool.TakeBackup(before, Add, "2026-11-27T10:00:00Z")
	tg := withTLS(t, fixture(t, kind))
	tg.Backup = bk
	tg.Bundle = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: tls.CABundleName("pgpool")}, Data: map[string]string{"ca.pem": "x"}}
	tg.BundleOurs = true
	tg.Pods[2].UID = "uid-2-new"
	tg.Pods[2].Status.Conditions = nil
	return tg
}

// A rollback puts back exactly the backup's files and volumes, restarts
// only the pods started since (the crash-looping one), deletes what did not
// exist before, and uses the backup up; it runs on a pgpool that is not
// Ready (that is what it is for).
func TestRollbackRestoresTheBackup(t *testing.T) {
	for _, kind := range []string{"StatefulSet", "Deployment"} {
		t.Run(kind, func(t *testing.T) {
			tg := failedAdd(t, kind)
			orig := fixture(t, kind)
			p, err := build(t, tg, request{Operation: Rollback, Holder: "tester"})
			if err != nil {
				t.Fatal(err)
			}
			var cfg *plan.ConfigPatchSpec
			var evicted []string
			var deleted []string
			for _, s := range p.Steps {
				switch spec := s.Spec.(type) {
				case plan.ConfigPatchSpec:
					cfg = &spec
				case plan.EvictSpec:
					evicted = append(evicted, s.Object.Name)
				case plan.DeleteSpec:
					deleted = append(deleted, s.Object.Kind+"/"+s.Object.Name)
				case plan.BackupSpec:
					t.Fatal("a rollback takes a backup")
				}
			}
			if cfg == nil || cfg.PgpoolConf != orig.Config.PgpoolConf || cfg.PoolHBA != orig.Config.PoolHBA {
				t.Fatal("the rollback does not write back the files of the backup byte for byte")
			}
			if kind == "StatefulSet" && strings.Join(evicted, ",") != "pgpool-2" {
				t.Fatalf("evicted %v, want only pgpool-2 (the pod started since the backup)", evicted)
			}
			want := "ConfigMap/pgpool-kubectl-pgpool-ca,Certificate/pgpool-server-cert,Secret/pgpool-server-cert,Certificate/pgpool-client-cert,Secret/pgpool-client-cert,Secret/pgpool-kubectl-pgpool-backup"
			if strings.Join(deleted, ",") != want {
				t.Fatalf("deleted %v, want %s", deleted, want)
			}
			v := p.Steps[len(p.Steps)-1-2-len(deleted)]
			if vs, ok := v.Spec.(plan.VerifySpec); !ok || vs.Check.TLS || len(vs.Pods.Known) != 1 {
				t.Fatalf("verify step %+v: want TLS off, the one new pod known", v)
			}
		})
	}
	if _, err := build(t, fixture(t, "StatefulSet"), request{Operation: Rollback}); err == nil || !strings.Contains(err.Error(), "has no backup to roll back to") {
		t.Fatalf("rollback without a backup: %v", err)
	}
}

// An operation keeps a backup before its first write; one resumed after an
// interruption keeps the backup of before the interrupted run; a Secret of
// that name that is not ours stops it.
func TestBackupIsTakenOnceAndNeverPrinted(t *testing.T) {
	tg := fixture(t, "StatefulSet")
	tg.Config.PgpoolConf += "\nsr_check_password = 'hunter2'\n"
	p, err := build(t, tg, seedAdd())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Steps[1].Spec.(plan.BackupSpec); !ok {
		t.Fatalf("step 2 is %s %s, want the backup", p.Steps[1].Kind, p.Steps[1].Object)
	}
	var text bytes.Buffer
	ui.RenderPlan(&text, p, ui.Styles{}, "client")
	js, _ := json.Marshal(p)
	if strings.Contains(text.String()+string(js), "hunter2") {
		t.Fatal("the plan shows a password from the backup")
	}
	tg = failedAdd(t, "StatefulSet")
	p, err = build(t, tg, request{Operation: Remove, Holder: "tester", ApplyAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Steps[1].Spec.(plan.BackupSpec); ok || !strings.Contains(strings.Join(p.Warnings, "\n"), "keeping the backup taken before the unfinished tls add") {
		t.Fatalf("remove after a failed add: the backup of before the add is replaced (warnings %v)", p.Warnings)
	}
	tg.Backup.Done = true
	if p, _ = build(t, tg, request{Operation: Remove, Holder: "tester", ApplyAlways: true}); p == nil {
		t.Fatal("no plan")
	} else if _, ok := p.Steps[1].Spec.(plan.BackupSpec); !ok {
		t.Fatal("after a finished operation, the next one takes no new backup")
	}
	tg.Backup, tg.BackupForeign = nil, true
	if _, err := build(t, tg, request{Operation: Remove, Holder: "tester", ApplyAlways: true}); err == nil || !strings.Contains(err.Error(), "Secret demo/pgpool-kubectl-pgpool-backup exists but was not created by kubectl-pgpool") {
		t.Fatalf("a foreign backup Secret: %v", err)
	}
}

// A pool_hba.conf that restricts users and networks (reject rules,
// per-database and per-network rules, ldap, pam, a hostnossl reject) comes
// back byte for byte from a rollback of the add that edited it.
func TestRollbackRestoresARestrictivePoolHBA(t *testing.T) {
	rules := readConf(t, "rules-pool_hba.conf")
	before := fixture(t, "StatefulSet")
	before.Config.PoolHBA = rules
	tg := fixture(t, "StatefulSet")
	tg.Config.PoolHBA = rules
	tg = withTLS(t, tg)
	if tg.Config.PoolHBA == rules || tg.Config.PgpoolConf == before.Config.PgpoolConf {
		t.Fatal("the add changed neither file: this test would prove nothing")
	}
	tg.Backup = pgpool.TakeBackup(before, Add, "2026-11-27T10:00:00Z")
	p, err := build(t, tg, request{Operation: Rollback, Holder: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Steps {
		if c, ok := s.Spec.(plan.ConfigPatchSpec); ok {
			if c.PoolHBA != rules || c.PgpoolConf != before.Config.PgpoolConf {
				t.Fatalf("the rollback writes other files than the backup's:\n%s", conf.Diff(rules, c.PoolHBA, 1))
			}
			return
		}
	}
	t.Fatal("the rollback writes no config")
}

// A run killed after it reached its goal, run again, has nothing to do
// (exit 0, nothing written); add with other settings keeps its refusal.
func TestRerunAfterGoalIsNothingToDo(t *testing.T) {
	var nothing *NothingToDoError
	if _, err := build(t, fixture(t, "StatefulSet"), request{Operation: Remove, Holder: "tester"}); !errors.As(err, &nothing) {
		t.Fatalf("remove without TLS: %v, want nothing to do", err)
	}
	tg := withTLS(t, fixture(t, "StatefulSet"))
	p, err := build(t, fixture(t, "StatefulSet"), seedAdd())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Steps {
		if c, ok := s.Spec.(plan.ApplyCertificateSpec); ok {
			var crt cmapi.Certificate
			if err := json.Unmarshal(c.Manifest, &crt); err != nil {
				t.Fatal(err)
			}
			tg.Certificates[crt.Name].Spec = crt.Spec
			tg.Certificates[crt.Name].Spec.RevisionHistoryLimit = ptr(int32(3))
		}
	}
	if _, err := build(t, tg, seedAdd()); !errors.As(err, &nothing) || !strings.Contains(err.Error(), "nothing to do") {
		t.Fatalf("add again with the same settings: %v, want nothing to do", err)
	}
	other := seedAdd()
	other.ClientOrgs = []string{"elsewhere"}
	if _, err := build(t, tg, other); errors.As(err, &nothing) || err == nil || !strings.Contains(err.Error(), "tls rotate pgpool") {
		t.Fatalf("add again with another subject: %v, want the refusal", err)
	}
	other = seedAdd()
	other.SSLMode = "verify-full"
	if _, err := build(t, tg, other); errors.As(err, &nothing) || err == nil {
		t.Fatalf("add again with another sslMode: %v, want the refusal", err)
	}
}

func ptr[T any](v T) *T { return &v }

// Issue 18, case 7: a rollback refuses to discard an edit made to the
// config after the operation wrote it (and names it); --force discards it
// with a warning; an unchanged config rolls back as before. The backup
// records what the operation writes.
func TestRollbackKeepsLaterEdits(t *testing.T) {
	before := fixture(t, "StatefulSet")
	p, err := build(t, before, seedAdd())
	if err != nil {
		t.Fatal(err)
	}
	var bk *pgpool.Backup
	var wrote plan.ConfigPatchSpec
	for _, s := range p.Steps {
		switch spec := s.Spec.(type) {
		case plan.BackupSpec:
			if bk, err = pgpool.ReadBackup(spec.Secret, "pgpool"); err != nil {
				t.Fatal(err)
			}
		case plan.ConfigPatchSpec:
			wrote = spec
		}
	}
	if bk == nil || !bk.Wrote || bk.WrotePoolHBA != wrote.PoolHBA || bk.WrotePgpoolConf != wrote.PgpoolConf {
		t.Fatalf("the backup does not record what add writes: %+v", bk)
	}
	bk.Done = true
	tg := withTLS(t, fixture(t, "StatefulSet"))
	tg.Backup = bk
	if _, err := build(t, tg, request{Operation: Rollback, Holder: "tester", Now: time.Now()}); err != nil {
		t.Fatalf("rollback of an unchanged config: %v", err)
	}
	tg.Config.PoolHBA = strings.Replace(tg.Config.PoolHBA, "local", "host all intruder 0.0.0.0/0 reject\nlocal", 1)
	_, err = build(t, tg, request{Operation: Rollback, Holder: "tester", Now: time.Now()})
	if err == nil || !strings.Contains(err.Error(), "+ host all intruder 0.0.0.0/0 reject") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("rollback after a later edit: %v", err)
	}
	p, err = build(t, tg, request{Operation: Rollback, Holder: "tester", Force: true, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(p.Warnings, "\n")
	if !strings.Contains(w, "are discarded") || !strings.Contains(w, "intruder") || !strings.Contains(w, "rolling back undoes a completed operation") {
		t.Fatalf("warnings: %s", w)
	}
}

// The rest of case 7: a Certificate or the TLS volume changed since the
// operation finished (its record holds their digests) stops a rollback
// too, naming what changed; --force goes on with a warning.
func TestRollbackKeepsLaterCertificateChanges(t *testing.T) {
	tg := withTLS(t, fixture(t, "StatefulSet"))
	tg.Backup = pgpool.TakeBackup(fixture(t, "StatefulSet"), Add, "2026-12-03T10:00:00Z")
	tg.Backup.Done, tg.Backup.After = true, tg.Digests()
	if _, err := build(t, tg, request{Operation: Rollback, Holder: "tester", Now: time.Now()}); err != nil {
		t.Fatalf("nothing changed since: %v", err)
	}
	tg.Certificates["pgpool-server-cert"].Spec.DNSNames = []string{"someone.else.example"}
	_, err := build(t, tg, request{Operation: Rollback, Holder: "tester", Now: time.Now()})
	if err == nil || !strings.Contains(err.Error(), "Certificate pgpool-server-cert changed since the tls add") {
		t.Fatalf("rollback after a Certificate change: %v", err)
	}
	p, err := build(t, tg, request{Operation: Rollback, Holder: "tester", Force: true, Now: time.Now()})
	if err != nil || !strings.Contains(strings.Join(p.Warnings, "\n"), "changes made to Certificate pgpool-server-cert") {
		t.Fatalf("--force: %v", err)
	}
}

// request is an Intent and its Facts in one literal (the tests' shorthand).
type request struct {
	Operation                              string
	Issuer                                 pgpool.IssuerRef
	SSLMode, AuthMode, ClientUser          string
	ClientOrgs, ClientOUs                  []string
	KeepCertificates, TakeOverCertificates bool
	RestartOnly, ApplyAlways, Force        bool
	KeepPreviousCA                         bool
	LeftoverTLS, RemoteTrust               string
	Holder, Login                          string
	Now                                    time.Time
	CurrentCA, BackendCA                   []byte
	Current                                map[string]bool
	// Untrusted leaves the backup as it is; otherwise build records its
	// digest on the workload, as the runner does when it writes one.
	Untrusted   bool
	AllowOutage bool
}

// trust records tg's backup's digest on the workload, as the runner does.
func trust(tg *pgpool.Target) {
	if tg.Backup == nil {
		return
	}
	if tg.Backup.Digest == "" {
		tg.Backup.Digest = "sha256:test"
	}
	if tg.Annotations == nil {
		tg.Annotations = map[string]string{}
	}
	tg.Annotations[pgpool.AnnotationBackupDigest] = tg.Backup.Digest
}

// build normalises r's intent as the commands do, then builds the plan.
func build(t *testing.T, tg *pgpool.Target, r request) (*plan.Plan, error) {
	t.Helper()
	intent, err := Normalize(Intent{Operation: r.Operation, Issuer: r.Issuer, SSLMode: r.SSLMode, AuthMode: r.AuthMode, ClientUser: r.ClientUser,
		ClientOrgs: r.ClientOrgs, ClientOUs: r.ClientOUs, KeepCertificates: r.KeepCertificates, TakeOverCertificates: r.TakeOverCertificates,
		RestartOnly: r.RestartOnly, ApplyAlways: r.ApplyAlways, Force: r.Force, KeepPreviousCA: r.KeepPreviousCA, LeftoverTLS: r.LeftoverTLS, RemoteTrust: r.RemoteTrust, AllowOutage: r.AllowOutage},
		func(f string) string { return f })
	if err != nil {
		return nil, err
	}
	if !r.Untrusted {
		trust(tg)
	}
	return Build(tg, intent, Facts{Holder: r.Holder, Login: r.Login, Now: r.Now, CurrentCA: r.CurrentCA, BackendCA: r.BackendCA, Current: r.Current})
}

// A workload KubeDB's Pgpool controls: the plan pauses the Pgpool before
// the first change, writes the result into its spec after the proof (the
// seed's UpdateDatabase) and lifts the pause even after a failure; it
// refuses while an ops request or someone else's pause is on it, unless
// --force (then someone else's pause is left alone); an owner that cannot
// be read is named; remove clears spec.tls in one patch; rollback puts the
// backup's spec back.
func TestKubeDBOwner(t *testing.T) {
	yes := true
	owned := func(tg *pgpool.Target, o *pgpool.Owner) *pgpool.Target {
		tg.Owners = []metav1.OwnerReference{{APIVersion: "kubedb.com/v1alpha2", Kind: "Pgpool", Name: "pgpool", Controller: &yes}}
		tg.Owner = o
		return tg
	}
	pgpoolObj := func() *pgpool.Owner {
		return &pgpool.Owner{APIVersion: "kubedb.com/v1alpha2", Kind: "Pgpool", Name: "pgpool", Spec: pgpool.OwnerSpec{ClientAuthMode: "md5"}}
	}
	p, err := build(t, owned(fixture(t, "StatefulSet"), nil), seedAdd())
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(p.Warnings, "\n"); !strings.Contains(w, "is controlled by Pgpool demo/pgpool (kubedb.com/v1alpha2), which could not be read") {
		t.Fatalf("warnings:\n%s", w)
	}
	kinds := func(p *plan.Plan) string {
		var out []string
		for _, s := range p.Steps {
			switch s.Spec.(type) {
			case plan.PauseSpec:
				out = append(out, fmt.Sprintf("pause=%v always=%v", s.Spec.(plan.PauseSpec).Pause, s.Always))
			case plan.OwnerPatchSpec:
				out = append(out, "update")
			default:
				out = append(out, string(s.Kind))
			}
		}
		return strings.Join(out, " ")
	}
	patchOf := func(p *plan.Plan) map[string]any {
		for _, s := range p.Steps {
			if o, ok := s.Spec.(plan.OwnerPatchSpec); ok {
				var m map[string]any
				if err := json.Unmarshal(o.Patch, &m); err != nil {
					t.Fatal(err)
				}
				return m["spec"].(map[string]any)
			}
		}
		return nil
	}

	p, err = build(t, owned(fixture(t, "StatefulSet"), pgpoolObj()), seedAdd())
	if err != nil {
		t.Fatal(err)
	}
	if k := kinds(p); !strings.HasPrefix(k, "lock pause=true always=false apply ") || !strings.HasSuffix(k, " verify update record pause=false always=true unlock") {
		t.Fatalf("add's steps: %s", k)
	}
	spec := patchOf(p)
	tlsSpec, _ := json.Marshal(spec["tls"])
	if spec["sslMode"] != "require" || spec["clientAuthMode"] != "cert" || !strings.Contains(string(tlsSpec), `"issuerRef":{"apiGroup":"cert-manager.io","kind":"Issuer","name":"pgpool-issuer"}`) ||
		!strings.Contains(string(tlsSpec), `"alias":"server"`) || !strings.Contains(string(tlsSpec), `"secretName":"pgpool-client-cert"`) || !strings.Contains(string(tlsSpec), `"organizations":["pgpool"]`) {
		t.Fatalf("add's UpdateDatabase: %v %s", spec, tlsSpec)
	}

	busy := pgpoolObj()
	busy.Pending = []string{"ppops-restart (phase Progressing)"}
	if _, err := build(t, owned(fixture(t, "StatefulSet"), busy), seedAdd()); err == nil || !strings.Contains(err.Error(), "ppops-restart (phase Progressing)") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("a pending ops request: %v", err)
	}
	paused := pgpoolObj()
	paused.Paused = &metav1.Condition{Type: "Paused", Status: "True", Reason: "ManualPause", Message: "dba"}
	if _, err := build(t, owned(fixture(t, "StatefulSet"), paused), seedAdd()); err == nil || !strings.Contains(err.Error(), `paused by someone else (condition Paused, reason "ManualPause"`) {
		t.Fatalf("someone else's pause: %v", err)
	}
	force := seedAdd()
	force.Force = true
	p, err = build(t, owned(fixture(t, "StatefulSet"), paused), force)
	if err != nil {
		t.Fatal(err)
	}
	if k := kinds(p); strings.Contains(k, "pause=") || !strings.Contains(strings.Join(p.Warnings, "\n"), "that pause is left as it is") {
		t.Fatalf("--force under someone else's pause: %s %v", k, p.Warnings)
	}

	withSpec := withTLS(t, fixture(t, "StatefulSet"))
	on := pgpoolObj()
	on.Spec = pgpool.OwnerSpec{SSLMode: "require", ClientAuthMode: "cert", TLS: map[string]any{"issuerRef": map[string]any{"name": "pgpool-issuer", "kind": "Issuer"}}}
	p, err = build(t, owned(withSpec, on), request{Operation: Remove, Holder: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	if spec := patchOf(p); spec == nil || spec["tls"] != nil || spec["sslMode"] != "disable" || spec["clientAuthMode"] != "md5" {
		t.Fatalf("remove's UpdateDatabase: %v", spec)
	}
	if _, ok := patchOf(p)["tls"]; !ok {
		t.Fatal("remove's patch does not clear spec.tls")
	}

	rb := failedAdd(t, "StatefulSet")
	rb.Backup.Owner = &pgpool.OwnerSpec{ClientAuthMode: "md5"}
	p, err = build(t, owned(rb, on), request{Operation: Rollback, Holder: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	if spec := patchOf(p); spec == nil || spec["tls"] != nil || spec["sslMode"] != nil || spec["clientAuthMode"] != "md5" {
		t.Fatalf("rollback's UpdateDatabase: %v", spec)
	}
}

// Who else manages the objects the plan changes is named with what it will
// do; a tool that reverts at once (Flux's kustomize-controller) refuses the
// plan unless --owner=ignore; an opt-out on the object makes it a warning.
func TestManagedBy(t *testing.T) {
	tg := fixture(t, "StatefulSet")
	tg.Labels = map[string]string{"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
	if _, err := build(t, tg, seedAdd()); err == nil || !strings.Contains(err.Error(), "StatefulSet demo/pgpool is managed by Flux kustomize-controller (Kustomization flux-system/apps)") || !strings.Contains(err.Error(), "--owner=ignore") {
		t.Fatalf("under Flux: %v", err)
	}
	intent, err := Normalize(Intent{Operation: Add, Issuer: pgpool.IssuerRef{Name: "pgpool-issuer"}, SSLMode: "require", ClientUser: "postgres", Owner: "ignore"}, func(f string) string { return f })
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(tg, intent, Facts{Holder: "tester"})
	if err != nil || !strings.Contains(strings.Join(p.Warnings, "\n"), "is managed by Flux kustomize-controller") {
		t.Fatalf("--owner=ignore: %v %v", err, p)
	}
	if _, err := Normalize(Intent{Operation: Add, Issuer: pgpool.IssuerRef{Name: "x"}, ClientUser: "postgres", Owner: "yes"}, func(f string) string { return "--" + f }); err == nil || !strings.Contains(err.Error(), `--owner must be "ignore"`) {
		t.Fatalf("--owner=yes: %v", err)
	}
	tg.Annotations = map[string]string{"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}
	tg.Config.Annotations = map[string]string{"meta.helm.sh/release-name": "ha", "meta.helm.sh/release-namespace": "demo"}
	p, err = build(t, tg, seedAdd())
	w := strings.Join(p.Warnings, "\n")
	if err != nil || !strings.Contains(w, "reconcile: disabled") || !strings.Contains(w, "Secret demo/pgpool-config is managed by Helm (release demo/ha): Helm reverts nothing by itself; the next helm upgrade puts the chart's values back") {
		t.Fatalf("opted out, and Helm on the config: %v\n%s", err, w)
	}
}

// Issue 27, finding 5: a backup Secret whose digest is not the one
// recorded on the workload (edited by someone who may write Secrets), or
// that would add a hostPath volume or an init container with an image the
// template does not use, is refused by rollback and by the operation that
// would adopt it, and nothing is planned. (Before, rollback applied any
// backup carrying the labels.)
func TestUntrustedBackupRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(tg *pgpool.Target)
		want  string
	}{
		{"no digest", func(tg *pgpool.Target) {}, "has no digest"},
		{"changed", func(tg *pgpool.Target) { trust(tg); tg.Backup.Digest = "sha256:other" }, "does not match the digest"},
		{"hostPath", func(tg *pgpool.Target) {
			trust(tg)
			tg.Backup.Volumes = append(tg.Backup.Volumes, corev1.Volume{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		}, "from the node's path /"},
		{"image", func(tg *pgpool.Target) {
			trust(tg)
			tg.Backup.InitContainers = append(tg.Backup.InitContainers, corev1.Container{Name: "x", Image: "attacker/image"})
		}, "with image attacker/image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := fixture(t, "StatefulSet")
			tg.Backup = pgpool.TakeBackup(fixture(t, "StatefulSet"), Add, "2026-12-07T10:00:00Z")
			tc.setup(tg)
			if _, err := build(t, tg, request{Operation: Rollback, Untrusted: true}); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "kubectl delete secret -n demo pgpool-kubectl-pgpool-backup") {
				t.Fatalf("rollback: %v", err)
			}
			r := seedAdd()
			r.Untrusted = true
			if _, err := build(t, tg, r); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("add adopting the unfinished backup: %v", err)
			}
		})
	}
}

// restoreManaged puts back only the managed entries, each in its place;
// the others stay as they are now.
func TestRestoreManaged(t *testing.T) {
	key := func(s string) string { k, _, _ := strings.Cut(s, "="); return k }
	managed := func(k string) bool { return strings.HasPrefix(k, "TLS_") }
	live := []string{"A=1", "TLS_ON=yes", "MINE=new", "TLS_CERT=/c"}
	backup := []string{"A=0", "TLS_ON=no", "TLS_OLD=x"}
	got := restoreManaged(live, backup, key, managed)
	want := []string{"A=1", "TLS_ON=no", "MINE=new", "TLS_OLD=x"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restoreManaged = %v, want %v", got, want)
	}
}
