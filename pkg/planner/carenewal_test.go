package planner

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// testIssuer is a CA that signs leaves, for the CA renewal tests.
type testIssuer struct {
	pem  []byte
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestIssuer(t *testing.T, cn string) testIssuer {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testIssuer{pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert: c, key: key}
}

// leaf is a certificate for cn the CA signs, valid for d.
func (ca testIssuer) leaf(t *testing.T, cn string, d time.Duration) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(d)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// withBundle gives tg the CA bundle as the plugin wrote it (its digest on
// the workload).
func withBundle(tg *pgpool.Target, p tls.BundleParts) {
	tg.Bundle, tg.BundleOurs = tls.BundleConfigMap(tg.Namespace, tg.Name, p), true
	if tg.Annotations == nil {
		tg.Annotations = map[string]string{}
	}
	tg.Annotations[pgpool.AnnotationBundleDigest] = tls.BundleDigest(tg.Bundle.Data)
}

func buildRotate(t *testing.T, tg *pgpool.Target, intent Intent, f Facts) *plan.Plan {
	t.Helper()
	intent.Operation = Rotate
	intent, err := Normalize(intent, func(f string) string { return f })
	if err != nil {
		t.Fatal(err)
	}
	f.Holder = "tester"
	p, err := Build(tg, intent, f)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// steps names the plan's triggers, bundle writes and evictions in order.
func steps(p *plan.Plan) (order []string, bundle plan.ApplyBundleSpec, notices []plan.Notice) {
	for _, s := range p.Steps {
		switch spec := s.Spec.(type) {
		case plan.TriggerSpec:
			order = append(order, "reissue "+s.Object.Name)
		case plan.ApplyBundleSpec:
			order = append(order, "bundle")
			bundle = spec
		case plan.EvictSpec:
			order = append(order, "evict "+s.Object.Name)
		case plan.RecordSpec:
			notices = spec.Notices
		}
	}
	return order, bundle, notices
}

// The issuer's CA renewed in place goes in three stages: the renewed CA
// into the bundle and a roll (nothing re-issued; a plan of its own that
// says what follows); then the certificates re-issued, those of tls
// client-cert too (their users told), the CA before kept as previous with
// its record; then a later rotate drops it only once it may go.
func TestCARenewedInPlaceGoesInThreeStages(t *testing.T) {
	oldCA, newCA := newTestIssuer(t, "pgpool-ca"), newTestIssuer(t, "pgpool-ca")
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	users := map[string]UserCert{"pgpool-client-app": {User: "app", Secret: "pgpool-client-app", UID: "app-uid", Revision: 1}}
	oldLeaves := map[string][]byte{"pgpool-client-cert": oldCA.leaf(t, "postgres", 48*time.Hour), "pgpool-client-app": oldCA.leaf(t, "app", 72*time.Hour)}
	facts := Facts{Now: now, CurrentCA: oldCA.pem, RenewedCA: newCA.pem, IssuerCA: newCA.pem, ClientLeaves: oldLeaves, UserCerts: users}

	// Stage 1.
	tg := withTLS(t, fixture(t, "StatefulSet"))
	withBundle(tg, tls.BundleParts{Issuer: oldCA.pem})
	p := buildRotate(t, tg, Intent{}, facts)
	order, bundle, _ := steps(p)
	if got := strings.Join(order, ","); got != "bundle,evict pgpool-2,evict pgpool-1,evict pgpool-0" {
		t.Fatalf("stage 1: %s, want the bundle then every pod, nothing re-issued", got)
	}
	if !tls.InPEM(bundle.NextCA, tls.Fingerprint(newCA.cert)) || len(bundle.PreviousCA) > 0 || p.Then == "" {
		t.Fatalf("stage 1: next %v previous %v then %q", tls.Subjects(bundle.NextCA), tls.Subjects(bundle.PreviousCA), p.Then)
	}
	if len(bundle.Records) != 1 || bundle.Records[0].Origin != tls.OriginNext || !bundle.Records[0].Since.Equal(now) {
		t.Fatalf("stage 1 records %+v", bundle.Records)
	}
	if p := buildRotate(t, tg, Intent{CATrustOnly: true}, facts); p.Then != "" || !strings.Contains(strings.Join(p.Warnings, "\n"), "--ca-trust-only") {
		t.Fatalf("--ca-trust-only: then %q, warnings %v", p.Then, p.Warnings)
	}

	// The bundle holds the renewed CA, but one pod started before it was
	// written: stage 1 again, for that pod only.
	withBundle(tg, tls.BundleParts{Issuer: oldCA.pem, Next: newCA.pem, Records: bundle.Records})
	for i := range tg.Pods {
		tg.Pods[i].CreationTimestamp = metav1.NewTime(now.Add(time.Minute))
	}
	tg.Pods[1].CreationTimestamp = metav1.NewTime(now.Add(-time.Minute))
	order, _, _ = steps(buildRotate(t, tg, Intent{}, facts))
	if got := strings.Join(order, ","); got != "bundle,evict pgpool-1" {
		t.Fatalf("stage 1 resumed: %s, want only pgpool-1 restarted", got)
	}

	// Stage 2: every pod trusts it.
	tg.Pods[1].CreationTimestamp = metav1.NewTime(now.Add(time.Minute))
	later := facts
	later.Now = now.Add(10 * time.Minute)
	p = buildRotate(t, tg, Intent{}, later)
	order, bundle, notices := steps(p)
	want := "reissue pgpool-server-cert,reissue pgpool-client-cert,reissue pgpool-client-app,bundle,evict pgpool-2,evict pgpool-1,evict pgpool-0"
	if got := strings.Join(order, ","); got != want || p.Then != "" {
		t.Fatalf("stage 2: %s (then %q), want %s", got, p.Then, want)
	}
	if len(bundle.NextCA) > 0 || !tls.InPEM(bundle.PreviousCA, tls.Fingerprint(oldCA.cert)) {
		t.Fatalf("stage 2: next %v previous %v, want the CA before as previous", tls.Subjects(bundle.NextCA), tls.Subjects(bundle.PreviousCA))
	}
	rec := bundle.Records
	if len(rec) != 1 || rec[0].Origin != tls.OriginPrevious || !rec[0].UntilReissued || !rec[0].Expires.After(later.Now.Add(71*time.Hour)) {
		t.Fatalf("stage 2 records %+v, want the previous CA until its client certificates are re-issued, at the latest the app's expiry", rec)
	}
	if len(notices) != 1 || notices[0].Object.Name != "pgpool-client-app" || notices[0].UID != "app-uid" || notices[0].Reason != "ClientCertificateReissued" {
		t.Fatalf("stage 2 notices %+v", notices)
	}
	if p := buildRotate(t, tg, Intent{CAOverlap: 30 * 24 * time.Hour}, later); !slices.ContainsFunc(func() []tls.CARecord { _, b, _ := steps(p); return b.Records }(), func(r tls.CARecord) bool {
		return r.After.Equal(later.Now.Add(30 * 24 * time.Hour))
	}) {
		t.Fatal("--ca-overlap 720h: the previous CA's record is not until 30 days on")
	}

	// Stage 3: the certificates are re-issued; the CA before stays while a
	// client certificate of the plugin's is still signed by it.
	withBundle(tg, tls.BundleParts{Issuer: newCA.pem, Previous: oldCA.pem, Records: rec})
	after := Facts{Now: later.Now.Add(time.Hour), CurrentCA: newCA.pem, IssuerCA: newCA.pem, UserCerts: users,
		ClientLeaves: map[string][]byte{"pgpool-client-cert": newCA.leaf(t, "postgres", 48*time.Hour), "pgpool-client-app": oldLeaves["pgpool-client-app"]}}
	_, bundle, _ = steps(buildRotate(t, tg, Intent{RestartOnly: true}, after))
	if !tls.InPEM(bundle.PreviousCA, tls.Fingerprint(oldCA.cert)) {
		t.Fatal("stage 3: the CA before was dropped while it still signs pgpool-client-app's certificate")
	}
	after.ClientLeaves["pgpool-client-app"] = newCA.leaf(t, "app", 48*time.Hour)
	p = buildRotate(t, tg, Intent{RestartOnly: true}, after)
	_, bundle, _ = steps(p)
	if len(bundle.PreviousCA) > 0 || len(bundle.Records) > 0 || !strings.Contains(strings.Join(p.Warnings, "\n"), "leaves the CA bundle") {
		t.Fatalf("stage 3: previous %v records %+v; want the CA before dropped, said", tls.Subjects(bundle.PreviousCA), bundle.Records)
	}
	if _, bundle, _ = steps(buildRotate(t, tg, Intent{RestartOnly: true, KeepPreviousCA: true}, after)); len(bundle.PreviousCA) == 0 {
		t.Fatal("--keep-previous-ca: the CA before was dropped")
	}
	// --ca-overlap: it stays until then, whatever the client certificates.
	withBundle(tg, tls.BundleParts{Issuer: newCA.pem, Previous: oldCA.pem, Records: []tls.CARecord{{SHA256: tls.Fingerprint(oldCA.cert), Origin: tls.OriginPrevious, Since: now, After: after.Now.Add(time.Hour)}}})
	if _, bundle, _ = steps(buildRotate(t, tg, Intent{RestartOnly: true}, after)); len(bundle.PreviousCA) == 0 {
		t.Fatal("the CA before was dropped before its --ca-overlap")
	}
	after.Now = after.Now.Add(2 * time.Hour)
	if _, bundle, _ = steps(buildRotate(t, tg, Intent{RestartOnly: true}, after)); len(bundle.PreviousCA) > 0 {
		t.Fatal("the CA before stayed after its --ca-overlap")
	}
	// A bundle someone else changed proves no record: nothing kept.
	tg.Bundle.Data[tls.RecordKey] = strings.Replace(tg.Bundle.Data[tls.RecordKey], "2026", "2099", 1)
	after.Now = now
	if _, bundle, _ = steps(buildRotate(t, tg, Intent{RestartOnly: true}, after)); len(bundle.PreviousCA) > 0 {
		t.Fatal("a forged record in a changed bundle kept the CA before")
	}
}

// tls remove leaves the clients' CA copies (tls trust), which applications
// may mount, and says how to delete them.
func TestRemoveLeavesTheClientsCopies(t *testing.T) {
	tg := withTLS(t, fixture(t, "StatefulSet"))
	if tg.Annotations == nil {
		tg.Annotations = map[string]string{}
	}
	tg.Annotations[pgpool.AnnotationTrust] = `{"name":"pgpool-ca","namespaces":["apps"]}`
	p, err := build(t, tg, request{Operation: Remove, Holder: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Steps {
		if s.Kind == plan.Delete && s.Object.Name == "pgpool-ca" {
			t.Fatalf("remove deletes a client copy: %+v", s.Object)
		}
	}
	if w := strings.Join(p.Warnings, "\n"); !strings.Contains(w, "tls trust: ConfigMap pgpool-ca in namespaces [apps]") || !strings.Contains(w, "tls trust pgpool --stop") {
		t.Fatalf("remove does not say the copies stay: %s", w)
	}
}

// A restart that changes nothing clients must trust (the scheduled
// --only-stale run) does not write the clients' copies; one that drops the
// previous CA does.
func TestTrustCopiesOnlyWhenTheirCAChanges(t *testing.T) {
	oldCA, newCA := newTestIssuer(t, "old-ca"), newTestIssuer(t, "new-ca")
	tg := withTLS(t, fixture(t, "StatefulSet"))
	if tg.Annotations == nil {
		tg.Annotations = map[string]string{}
	}
	tg.Annotations[pgpool.AnnotationTrust] = `{"name":"pgpool-ca","namespaces":["apps"]}`
	distributes := func(f Facts, intent Intent) bool {
		for _, s := range buildRotate(t, tg, intent, f).Steps {
			if _, ok := s.Spec.(plan.DistributeTrustSpec); ok {
				return true
			}
		}
		return false
	}
	withBundle(tg, tls.BundleParts{Issuer: newCA.pem})
	if distributes(Facts{CurrentCA: newCA.pem}, Intent{RestartOnly: true}) {
		t.Fatal("a restart that changes no CA writes the clients' copies")
	}
	if !distributes(Facts{CurrentCA: newCA.pem}, Intent{}) {
		t.Fatal("a re-issuing rotate does not keep the clients' copies current")
	}
	withBundle(tg, tls.BundleParts{Issuer: newCA.pem, Previous: oldCA.pem})
	if !distributes(Facts{CurrentCA: newCA.pem}, Intent{RestartOnly: true}) {
		t.Fatal("a restart that drops the previous CA does not update the clients' copies")
	}
}
