package pgpool

import (
	"context"
	cryptotls "crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// backendCerts applies the backend's own CA and serving certificate
// (backend-tls.yaml) in ns and returns the serving certificate, its key and
// the backend's CA.
func backendCerts(t *testing.T, ns string) (cert, key, ca []byte) {
	t.Helper()
	env.Apply(t, ns, env.Fixture(t, "backend-tls.yaml"), 0)
	ctx := testenv.Context(t, 2*time.Minute)
	if _, err := issuing.WaitReady(ctx, env.CertMgr.CertmanagerV1(), ns, "pgpool-backend-cert", 0, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, "pgpool-backend-cert", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data["tls.crt"], s.Data["tls.key"], s.Data["ca.crt"]
}

func keyPair(t *testing.T, c certSet) *cryptotls.Certificate {
	t.Helper()
	kp, err := cryptotls.X509KeyPair(c.ClientCert, c.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	return &kp
}

// certLogin logs in through pg with a client certificate (verify-full
// against roots) and runs SELECT 1.
func certLogin(t *testing.T, pg *pgpoolServer, client *cryptotls.Certificate, roots []byte) (*verify.LoginResult, error) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	return pg.Login(ctx, verify.Login{User: "postgres", Database: "postgres", TLS: true, ServerName: "localhost", Roots: tls.Pool(roots), ClientCert: client})
}

// backendServes is the plugin's preflight check, against the real backend:
// what it serves and whether trust verifies its chain (no host name, as
// pgpool checks it).
func backendServes(t *testing.T, port int, trust []byte) *verify.Served {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	s, err := verify.Probe(ctx, conn, tls.Pool(trust), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func moveIssuer(t *testing.T, ns, cert, issuer string) {
	t.Helper()
	ctx := testenv.Context(t, 2*time.Minute)
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"issuerRef": map[string]string{"name": issuer, "kind": "Issuer", "group": "cert-manager.io"}}})
	c, err := env.CertMgr.CertmanagerV1().Certificates(ns).Get(ctx, cert, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.CertMgr.CertmanagerV1().Certificates(ns).Patch(ctx, cert, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := issuing.WaitReady(ctx, env.CertMgr.CertmanagerV1(), ns, cert, tls.Revision(c), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
}

// A backend that serves TLS from its own CA. pgpool verifies it against
// ssl_ca_cert: with only the issuer's CA there, every login fails, which
// the plugin's preflight check predicts; with the CA bundle (issuer's CA
// and the backend's) logins work after add, rotate and change-issuer, and
// pgpool's session on the backend is TLS. During change-issuer, a client
// certificate from the old CA and one from the new log in at every stage.
func TestBackendWithTLS(t *testing.T) {
	u := serverUser(t)
	ns := setupCerts(t, "pgpool-issuer")
	bCert, bKey, bCA := backendCerts(t, ns)
	backend := startPostgresTLS(t, u, bCert, bKey)
	certs := issued(t, ns)
	pg := newPgpool(t, u, backend)
	pg.Configure("require", "cert")
	pg.InstallSecrets(certs) // ca.pem = the issuer's CA only
	pg.Start()

	// The preflight check: TLS from a CA the issuer's does not verify...
	if s := backendServes(t, backend, certs.CA); !s.TLS || s.Verified || s.Issuer != "CN=backend-ca,O=postgres" {
		t.Fatalf("backend check with the issuer's CA only: %+v, want TLS from CN=backend-ca,O=postgres, not verified", s)
	}
	// ...and indeed nobody gets in.
	if _, err := certLogin(t, pg, keyPair(t, certs), certs.CA); err == nil {
		t.Fatal("login worked although pgpool cannot verify its backend")
	} else {
		t.Logf("as predicted, without the backend's CA: %v", err)
	}
	if !strings.Contains(pg.Log(), "certificate verify failed") {
		t.Fatalf("pgpool's log does not say why:\n%s", pg.Log())
	}

	// add with --backend-ca: the bundle holds both CAs.
	bundle := tls.JoinCAs(certs.CA, bCA)
	if s := backendServes(t, backend, bundle); !s.Verified {
		t.Fatalf("the bundle does not verify the backend: %+v", s)
	}
	pg.InstallCA(bundle)
	pg.Restart()
	checkLogin := func(stage string, client *cryptotls.Certificate, roots []byte) {
		t.Helper()
		res, err := certLogin(t, pg, client, roots)
		if err != nil {
			t.Fatalf("%s: login: %v\npgpool log:\n%s", stage, err, pg.Log())
		}
		if res.TLSVersion != "TLS 1.3" || !res.BackendSSL {
			t.Fatalf("%s: %+v, want TLS 1.3 to pgpool and a TLS session from pgpool on the backend (pg_stat_ssl)", stage, res)
		}
		// The version check that would pick a reload over a restart reads
		// the running pgpool: a released one loads certificates only at start.
		if reloads, ok := pgpool.ReloadsCertificates(res.PgpoolVersion); !ok || reloads {
			t.Fatalf("%s: SHOW pool_version answered %q: parsed %v, reloads %v; want a released pgpool that does not reload", stage, res.PgpoolVersion, ok, reloads)
		}
	}
	checkLogin("add", keyPair(t, certs), certs.CA)
	// pgpool has one CA file: a client certificate the backend's CA signed
	// is accepted for cert auth too (the plan warns about it).
	checkLogin("client certificate from the backend's CA", backendClient(t, ns), certs.CA)
	ca, crt, key := files(t, certs)
	if out, ok := psql(t, fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s", pg.Port, ca, crt, key), ""); !ok {
		t.Fatalf("psql after add: %s", out)
	}

	// rotate: new certificates, same CAs.
	trigger(t, ns)
	certs = issued(t, ns)
	pg.InstallSecrets(certs)
	pg.InstallCA(tls.JoinCAs(certs.CA, bCA))
	pg.Restart()
	checkLogin("rotate", keyPair(t, certs), certs.CA)

	// change-issuer, as the plugin orders it: the server certificate moves
	// first and pods restart with [new CA, old CA, backend CA]; the client
	// certificate moves after.
	oldClient, oldCA := keyPair(t, certs), certs.CA
	moveIssuer(t, ns, "pgpool-server-cert", "pp-new-issuer")
	moved := issued(t, ns)
	pg.InstallSecrets(moved)
	pg.InstallCA(tls.JoinCAs(moved.CA, oldCA, bCA))
	pg.Restart()
	if c, _ := tls.ParseFirstCert(readFile(t, pg.Paths().CA)); c == nil || c.Subject.String() != "CN=ca-updated,O=kubedb-updated" {
		t.Fatalf("the first CA of ca.pem after change-issuer: %v", c)
	}
	checkLogin("change-issuer, pod restarted, client certificate not moved yet", oldClient, moved.CA)
	moveIssuer(t, ns, "pgpool-client-cert", "pp-new-issuer")
	moved = issued(t, ns)
	checkLogin("change-issuer done, new client certificate", keyPair(t, moved), moved.CA)
	checkLogin("change-issuer done, old client certificate", oldClient, moved.CA)

	// The next rotate drops the old CA: the old client certificate is
	// refused, the new one gets in.
	pg.InstallCA(tls.JoinCAs(moved.CA, bCA))
	pg.Restart()
	if _, err := certLogin(t, pg, oldClient, moved.CA); err == nil {
		t.Fatal("the old client certificate still logs in after the old CA left the bundle")
	}
	checkLogin("after the old CA left", keyPair(t, moved), moved.CA)
}

// backendClient issues a client certificate CN=postgres from the
// backend's issuer.
func backendClient(t *testing.T, ns string) *cryptotls.Certificate {
	t.Helper()
	ctx := testenv.Context(t, 2*time.Minute)
	c := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "backend-ca-client", Namespace: ns},
		Spec: cmapi.CertificateSpec{SecretName: "backend-ca-client", CommonName: "postgres",
			Usages:    []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageClientAuth},
			IssuerRef: cmmeta.IssuerReference{Name: "backend-issuer", Kind: "Issuer", Group: "cert-manager.io"}}}
	if _, err := env.CertMgr.CertmanagerV1().Certificates(ns).Create(ctx, c, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := issuing.WaitReady(ctx, env.CertMgr.CertmanagerV1(), ns, c.Name, 0, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := cryptotls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	return &kp
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := exec.Command("cat", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// backendSQL runs SQL on the backend directly (it trusts local logins).
func backendSQL(t *testing.T, port int, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "psql", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres", port), "-w", "-c", sql).CombinedOutput(); err != nil {
		t.Fatalf("backend: %s: %v\n%s", sql, err, out)
	}
}

// pool_hba.conf's own restrictions survive add: the reject rule still
// rejects, the per-database rule still limits its user to its database, a
// scram rule stays scram, and a plain connection is refused (require).
func TestHBARestrictionsHoldAfterAdd(t *testing.T) {
	u := serverUser(t)
	ns := setupCerts(t, "pgpool-issuer")
	certs := issued(t, ns)
	backend := startPostgres(t, u)
	backendSQL(t, backend, "CREATE ROLE app LOGIN; CREATE ROLE blocked LOGIN")
	backendSQL(t, backend, "CREATE DATABASE appdb OWNER app")
	pg := newPgpool(t, u, backend)
	u.write(t, pg.dir+"/pool_passwd", "postgres:TEXT"+password+"\napp:TEXTapp-pw\nblocked:TEXTblocked-pw\n", 0o600)
	// Every refusal below comes from one rule that would let the login in
	// if it were dropped or widened: the broad md5 rule at the end admits
	// everybody else.
	base := "local all all trust\n" +
		"host appdb app 0.0.0.0/0 scram-sha-256\n" +
		"host all app 0.0.0.0/0 reject\n" +
		"host all blocked 0.0.0.0/0 reject\n" +
		"host all all 0.0.0.0/0 md5\n"
	pg.ConfigureWith("require", "", base, nil) // no --client-auth-mode: methods kept
	if strings.Count(pg.hba, "reject") != 2 || !strings.Contains(pg.hba, "\nhost all blocked 0.0.0.0/0 reject\n") {
		t.Fatalf("add changed the reject rules:\n%s", pg.hba)
	}
	pg.InstallSecrets(certs)
	pg.Start()
	login := func(user, db, pw string, tlsOn bool) error {
		ctx := testenv.Context(t, time.Minute)
		_, err := pg.Login(ctx, verify.Login{User: user, Database: db, Password: pw, TLS: tlsOn, ServerName: "localhost", Roots: tls.Pool(certs.CA)})
		return err
	}
	for _, tc := range []struct {
		user, db, pw string
		tls, ok      bool
	}{
		{"app", "appdb", "app-pw", true, true},             // the per-database scram rule, over TLS
		{"app", "postgres", "app-pw", true, false},         // no rule lets app into another database
		{"blocked", "postgres", "blocked-pw", true, false}, // the reject rule
		{"postgres", "postgres", password, true, true},     // md5 kept
		{"postgres", "postgres", password, false, false},   // require: no plain connections
		{"app", "appdb", "wrong", true, false},
	} {
		err := login(tc.user, tc.db, tc.pw, tc.tls)
		if (err == nil) != tc.ok {
			t.Errorf("login %s to %s (TLS %v): %v, want ok=%v", tc.user, tc.db, tc.tls, err, tc.ok)
		}
	}
	if !strings.Contains(pg.hba, "hostssl appdb app 0.0.0.0/0 scram-sha-256") {
		t.Fatalf("the scram rule was not kept:\n%s", pg.hba)
	}
}

// enable_pool_hba = off: pool_hba.conf is not read, so its hostssl and cert
// rules do nothing and a plain login gets in; with the plugin's Enforce, a
// plain login is refused and a cert login works.
func TestEnablePoolHBAOff(t *testing.T) {
	u := serverUser(t)
	ns := setupCerts(t, "pgpool-issuer")
	certs := issued(t, ns)
	pg := newPgpool(t, u, startPostgres(t, u))
	off := func(c *conf.PgpoolConf) { c.Set("enable_pool_hba", "off") }
	pg.ConfigureWith("require", "cert", baseHBA, off)
	pg.InstallSecrets(certs)
	pg.Start()
	plain := func() error {
		ctx := testenv.Context(t, time.Minute)
		_, err := pg.Login(ctx, verify.Login{User: "postgres", Database: "postgres", Password: password})
		return err
	}
	if err := plain(); err != nil {
		t.Fatalf("with enable_pool_hba = off a plain login should get in (pool_hba.conf is not read): %v", err)
	}
	pg.Stop()
	pg.ConfigureWith("require", "cert", baseHBA, func(c *conf.PgpoolConf) { off(c); conf.Enforce(c) })
	if !conf.ParsePgpoolConf(pg.conf).Bool("enable_pool_hba") {
		t.Fatalf("Enforce did not turn enable_pool_hba on:\n%s", pg.conf)
	}
	pg.Start()
	if err := plain(); err == nil {
		t.Fatal("a plain login got in after enable_pool_hba = on with sslMode require")
	}
	if _, err := certLogin(t, pg, keyPair(t, certs), certs.CA); err != nil {
		t.Fatalf("cert login after enable_pool_hba = on: %v\n%s", err, pg.Log())
	}
}
