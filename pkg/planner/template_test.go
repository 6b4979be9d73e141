package planner

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/layout"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// bitnamiTarget is a pgpool of Bitnami's postgresql-ha chart (Helm
// release pg) as discovery reads it: TLS off, the pool_hba.conf the
// container generates, no user file.
func bitnamiTarget() *pgpool.Target {
	uid, gid := int64(1001), int64(1001)
	spec := corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{FSGroup: &gid},
		Containers: []corev1.Container{{Name: "pgpool", Image: "bitnami/pgpool:4.6.3", SecurityContext: &corev1.SecurityContext{RunAsUser: &uid},
			Env: []corev1.EnvVar{
				{Name: "PGPOOL_BACKEND_NODES", Value: "0:pg-postgresql-0.pg-postgresql-headless:5432,"},
				{Name: "PGPOOL_SR_CHECK_USER", Value: "repmgr"},
				{Name: "PGPOOL_POSTGRES_USERNAME", Value: "postgres"},
				{Name: "PGPOOL_ENABLE_TLS", Value: "no"},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "empty-dir", MountPath: "/tmp", SubPath: "tmp-dir"}}}},
		Volumes: []corev1.Volume{{Name: "empty-dir", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}
	tg := &pgpool.Target{Namespace: "demo", Name: "pg-pgpool", Kind: "Deployment", APIVersion: "apps/v1", UID: "w-uid", Replicas: 2,
		UpdateStrategy: "RollingUpdate", Container: "pgpool", ContainerIndex: 0, Layout: layout.Bitnami{},
		Annotations:  map[string]string{"meta.helm.sh/release-name": "pg", "meta.helm.sh/release-namespace": "demo"},
		Labels:       map[string]string{"app.kubernetes.io/managed-by": "Helm"},
		Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pgpool"}},
		Services:     []string{"pg-pgpool"},
		Certificates: map[string]*cmapi.Certificate{},
	}
	tg.Template.Spec = spec
	for i := 0; i < 2; i++ {
		tg.Pods = append(tg.Pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pg-pgpool-%d", i), UID: types.UID(fmt.Sprintf("uid-%d", i))},
			Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}})
	}
	rediscover(tg, "")
	return tg
}

// rediscover reads the config and the state again, as discovery does,
// after the pod template changed; hbaCM is the user pool_hba.conf's
// ConfigMap content ("" when there is none).
func rediscover(tg *pgpool.Target, hba string) {
	c := &tg.Template.Spec.Containers[0]
	pc, _ := tg.Layout.TemplateConf(c)
	tg.TLSMountPath = layout.BitnamiCertsDir
	tg.Config = pgpool.Config{Kind: "ConfigMap", Name: layout.HBAConfigMapName(tg.Name), MountPath: layout.BitnamiUserConfigDir, PgpoolConf: pc}
	if _, _, _, ok := layout.UserHBA(&tg.Template.Spec, c); ok {
		tg.Config.PoolHBA, tg.Config.ResourceVersion = hba, "7"
		tg.Config.Labels = map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: tg.Name}
	} else {
		tg.Config.PoolHBA, tg.Config.Generated = layout.GeneratedHBA(c), true
	}
	tg.State = pgpool.TLSState{}
	tg.ReadState()
}

// applyTemplate applies the plan's pod-template patches to tg.
func applyTemplate(t *testing.T, tg *pgpool.Target, p *plan.Plan) {
	t.Helper()
	doc, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": tg.Template}})
	for _, s := range p.Steps {
		if w, ok := s.Spec.(plan.WorkloadPatchSpec); ok {
			patch, err := jsonpatch.DecodePatch(w.Patch)
			if err != nil {
				t.Fatal(err)
			}
			if doc, err = patch.Apply(doc); err != nil {
				t.Fatalf("the pod template patch does not apply: %v\n%s", err, w.Patch)
			}
		}
	}
	var out struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(doc, &out); err != nil {
		t.Fatal(err)
	}
	tg.Template = out.Spec.Template
}

func stepOf[T any](p *plan.Plan) (plan.Step, T, bool) {
	for _, s := range p.Steps {
		if v, ok := s.Spec.(T); ok {
			return s, v, true
		}
	}
	var zero T
	return plan.Step{}, zero, false
}

// add writes TLS into the pod template as the chart renders it and a user
// pool_hba.conf (a ConfigMap it creates) that requires TLS; remove gives
// back the template it started from and deletes that ConfigMap; so does a
// rollback of the add.
func TestBitnamiAddRemoveRollback(t *testing.T) {
	tg := bitnamiTarget()
	orig := *tg.Template.DeepCopy()
	p, err := build(t, tg, seedAdd())
	if err != nil {
		t.Fatal(err)
	}
	s, cm, ok := stepOf[plan.ApplyConfigMapSpec](p)
	if !ok || s.Object.Name != "pg-pgpool-configuration" || !strings.Contains(cm.Data["pool_hba.conf"], "hostssl  all    all    all    cert") || strings.Contains(cm.Data["pool_hba.conf"], "\nhost ") {
		t.Fatalf("add's user pool_hba.conf: %+v %+v", s.Object, cm.Data)
	}
	warn := strings.Join(p.Warnings, "\n")
	for _, want := range []string{"is replaced by a user file", "Helm release pg renders this Deployment", "poolHbaConfiguration: |", "certificatesSecret: pg-pgpool-server-cert",
		"kubectl annotate configmap -n demo pg-pgpool-configuration meta.helm.sh/release-name=pg"} {
		if !strings.Contains(warn, want) {
			t.Errorf("add's warnings lack %q:\n%s", want, warn)
		}
	}
	if p.Restart != "rollout" {
		t.Errorf("add restarts by %q, want the Deployment's rollout", p.Restart)
	}
	bk := pgpool.TakeBackup(tg, Add, "2026-12-03T00:00:00Z")
	bk.Done = true
	applyTemplate(t, tg, p)
	rediscover(tg, cm.Data["pool_hba.conf"])
	if !tg.State.Enabled || !tg.State.VolumePresent || tg.State.SSLMode != "require" || tg.State.AuthMode != "cert" {
		t.Fatalf("the state after add: %+v", tg.State)
	}
	added := *tg.Template.DeepCopy()
	for _, n := range []string{"pg-pgpool-server-cert", "pg-pgpool-client-cert"} {
		tg.Certificates[n] = &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: tg.Name}},
			Spec: cmapi.CertificateSpec{IssuerRef: cmmeta.IssuerReference{Name: "pgpool-issuer", Kind: "Issuer", Group: "cert-manager.io"}, SecretName: n}}
	}

	p, err = build(t, tg, request{Operation: Remove, Holder: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	if s, _, ok := stepOf[plan.DeleteSpec](p); !ok || s.Object.Name != "pg-pgpool-configuration" {
		t.Errorf("remove does not delete the ConfigMap add created first: %+v", s.Object)
	}
	removed := *tg
	removed.Template = *tg.Template.DeepCopy()
	applyTemplate(t, &removed, p)
	if !reflect.DeepEqual(removed.Template.Spec, orig.Spec) {
		t.Errorf("remove does not give back the chart's template:\n%+v\nwant\n%+v", removed.Template.Spec, orig.Spec)
	}

	tg.Template = added
	tg.Backup = bk
	p, err = build(t, tg, request{Operation: Rollback, Holder: "tester", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	applyTemplate(t, tg, p)
	if !reflect.DeepEqual(tg.Template.Spec, orig.Spec) {
		t.Errorf("rollback does not give back the chart's template:\n%+v\nwant\n%+v", tg.Template.Spec, orig.Spec)
	}
	found := false
	for _, s := range p.Steps {
		_, del := s.Spec.(plan.DeleteSpec)
		found = found || (del && s.Object.Name == "pg-pgpool-configuration")
	}
	if !found {
		t.Error("rollback does not delete the ConfigMap add created")
	}
}

// The chart's own TLS (autoGenerated) is replaced by add, which says when
// that certificate expires; a ConfigMap of the user file's name that is
// not the plugin's is never taken over.
func TestBitnamiFromTheChartsCertificate(t *testing.T) {
	tg := bitnamiTarget()
	tg.Template.Spec = layout.ApplyBitnamiTLS(tg.Template.Spec, 0, layout.BitnamiTLS{On: true, ServerSecret: "pg-postgresql-ha-crt", Bundle: "x"})
	rediscover(tg, "")
	tg.ForeignTLS = &pgpool.ForeignTLS{Secret: "pg-postgresql-ha-crt", Subject: "CN=pg", Issuer: "CN=pg", SelfSigned: true, NotAfter: time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)}
	r := seedAdd()
	r.Now = time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	p, err := build(t, tg, r)
	if err != nil {
		t.Fatalf("add over the chart's certificate: %v", err)
	}
	if w := strings.Join(p.Warnings, "\n"); !strings.Contains(w, "the chart's certificate in Secret pg-postgresql-ha-crt") || !strings.Contains(w, "expires 2027-01-02, in 720h0m0s") {
		t.Errorf("add does not say what it replaces and when it expires:\n%s", w)
	}
	tg.ForeignTLS = nil
	if _, err := build(t, tg, seedAdd()); err == nil || !strings.Contains(err.Error(), "already has TLS") {
		t.Errorf("add over TLS of the plugin's: %v", err)
	}
	tg = bitnamiTarget()
	tg.Config.ResourceVersion, tg.Config.Labels = "5", map[string]string{"app": "other"}
	var notOurs *tls.NotOursError
	if _, err := build(t, tg, seedAdd()); !errors.As(err, &notOurs) {
		t.Errorf("add with someone else's ConfigMap %s: %v", tg.Config.Name, err)
	}
}

// With a user pool_hba.conf in the chart's ConfigMap (poolHbaConfiguration)
// add patches that file and the values carry it; in the user's own
// ConfigMap (configurationCM) the values say to keep it there; remove
// gives the values the file as it puts it back.
func TestBitnamiUserHBA(t *testing.T) {
	for _, cm := range []string{"pg-pgpool-configuration", "my-hba"} {
		tg := bitnamiTarget()
		tg.Template.Spec = layout.ApplyBitnamiTLS(tg.Template.Spec, 0, layout.BitnamiTLS{HBAConfigMap: cm})
		hba := "local all all trust\nhost all all 0.0.0.0/0 scram-sha-256\n"
		rediscover(tg, hba)
		tg.Config.Name, tg.Config.Labels = cm, map[string]string{"app.kubernetes.io/managed-by": "Helm"}
		p, err := build(t, tg, seedAdd())
		if err != nil {
			t.Fatal(err)
		}
		s, patch, ok := stepOf[plan.ConfigPatchSpec](p)
		if !ok || s.Object.Name != cm || !strings.Contains(patch.PoolHBA, "hostssl all all 0.0.0.0/0 cert") {
			t.Fatalf("%s: add does not patch the user's file: %+v %q", cm, s.Object, patch.PoolHBA)
		}
		if _, _, ok := stepOf[plan.ApplyConfigMapSpec](p); ok {
			t.Errorf("%s: add creates a ConfigMap although the user has one", cm)
		}
		w := strings.Join(p.Warnings, "\n")
		if inValues := strings.Contains(w, "poolHbaConfiguration: |"); inValues != (cm == "pg-pgpool-configuration") || (cm == "my-hba") != strings.Contains(w, "Keep pool_hba.conf in your ConfigMap my-hba") {
			t.Errorf("%s: the values and the user's ConfigMap:\n%s", cm, w)
		}
		applyTemplate(t, tg, p)
		rediscover(tg, patch.PoolHBA)
		tg.Config.Name, tg.Config.Labels = cm, map[string]string{"app.kubernetes.io/managed-by": "Helm"}
		p, err = build(t, tg, request{Operation: Remove, Holder: "tester"})
		if err != nil {
			t.Fatal(err)
		}
		if _, back, ok := stepOf[plan.ConfigPatchSpec](p); !ok || back.PoolHBA != hba {
			t.Errorf("%s: remove does not put the user's file back: %q", cm, back.PoolHBA)
		}
		for _, st := range p.Steps {
			if _, ok := st.Spec.(plan.DeleteSpec); ok && st.Object.Name == cm {
				t.Errorf("%s: remove deletes the user's ConfigMap", cm)
			}
		}
	}
}

// Issue 27, finding 1: a user pgpool.conf that the container appends last
// and that turns enable_pool_hba (or ssl) off, or points at other
// certificate files, would undo add: add refuses and plans nothing.
func TestBitnamiUserConfOverridesRefused(t *testing.T) {
	for _, line := range []string{"enable_pool_hba = off", "ssl = off", "ssl_ca_cert = '/elsewhere/ca.pem'"} {
		tg := bitnamiTarget()
		tg.Config.PgpoolConf += layout.UserConfMarker + "\n" + line + "\n"
		if _, err := build(t, tg, request{Operation: Add, Issuer: pgpool.IssuerRef{Name: "pgpool-issuer"}, SSLMode: "require", AuthMode: "cert",
			ClientUser: "postgres", Holder: "tester"}); err == nil || !strings.Contains(err.Error(), "PGPOOL_USER_CONF_FILE") || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("%s: %v", line, err)
		}
	}
}

// Issue 27, finding 8: a Deployment with strategy Recreate whose pod
// template the plan changes would lose every pod at once: the plan says
// so and needs --allow-outage (before, it went on unsaid).
func TestRecreateNeedsAllowOutage(t *testing.T) {
	tg := bitnamiTarget()
	tg.UpdateStrategy = "Recreate"
	r := request{Operation: Add, Issuer: pgpool.IssuerRef{Name: "pgpool-issuer"}, SSLMode: "require", AuthMode: "scram", ClientUser: "postgres", Holder: "tester"}
	if _, err := build(t, tg, r); err == nil || !strings.Contains(err.Error(), "strategy Recreate") || !strings.Contains(err.Error(), "--allow-outage") {
		t.Fatalf("Recreate: %v", err)
	}
	r.AllowOutage = true
	if p, err := build(t, tg, r); err != nil || !strings.Contains(strings.Join(p.Warnings, "\n"), "stop all 2 pods") {
		t.Fatalf("--allow-outage: %v", err)
	}
}
