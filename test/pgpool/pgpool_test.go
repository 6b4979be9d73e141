package pgpool

import (
	"context"
	cryptotls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// files writes client-side PEM files (psql needs files; its key mode 0600).
func files(t *testing.T, c certSet) (ca, crt, key string) {
	t.Helper()
	d := t.TempDir()
	ca, crt, key = filepath.Join(d, "ca.pem"), filepath.Join(d, "client.crt"), filepath.Join(d, "client.key")
	for p, b := range map[string][]byte{ca: c.CA, crt: c.ClientCert, key: c.ClientKey} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca, crt, key
}

// psql runs psql with a connection string and no password prompt; it
// returns the output and whether the query ran.
func psql(t *testing.T, connstr string, pw string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "psql", connstr, "-w", "-At", "-c", "select 'logged-in'")
	c.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	if pw != "" {
		c.Env = append(c.Env, "PGPASSWORD="+pw)
	}
	out, err := c.CombinedOutput()
	return string(out), err == nil && strings.Contains(string(out), "logged-in")
}

// pgxConnect connects with pgx; it returns the negotiated TLS version ("" for
// plain) and the error.
func pgxConnect(t *testing.T, port int, sslmode, pw string, c *certSet, withClientCert bool, roots *x509.CertPool) (string, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=localhost port=%d user=postgres dbname=postgres sslmode=%s connect_timeout=10", port, sslmode))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = pw
	if cfg.TLSConfig != nil && roots != nil {
		cfg.TLSConfig.RootCAs = roots
		cfg.TLSConfig.ServerName = "localhost"
		if withClientCert {
			kp, err := cryptotls.X509KeyPair(c.ClientCert, c.ClientKey)
			if err != nil {
				t.Fatal(err)
			}
			cfg.TLSConfig.Certificates = []cryptotls.Certificate{kp}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var one int
	if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil {
		return "", err
	}
	if tc, ok := conn.PgConn().Conn().(*cryptotls.Conn); ok {
		return cryptotls.VersionName(tc.ConnectionState().Version), nil
	}
	return "", nil
}

func pool(pem []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pem)
	return p
}

// startTLS runs pgpool with TLS for sslMode x authMode in front of a fresh
// backend, with certificates from pgpool-issuer in a fresh namespace.
func startTLS(t *testing.T, sslMode, authMode string) (*pgpoolServer, string, certSet) {
	t.Helper()
	u := serverUser(t)
	ns := setupCerts(t, "pgpool-issuer")
	certs := issued(t, ns)
	pg := newPgpool(t, u, startPostgres(t, u))
	pg.Configure(sslMode, authMode)
	pg.InstallSecrets(certs)
	pg.Start()
	return pg, ns, certs
}

// cert mode, sslMode require: verify-full with the client certificate
// (CN=postgres) logs in without a password over TLS 1.3; without a client
// certificate, with one from another CA, or without TLS it is refused.
func TestCertAuth(t *testing.T) {
	pg, _, certs := startTLS(t, "require", "cert")
	ca, crt, key := files(t, certs)
	base := fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres sslrootcert=%s", pg.Port, ca)

	if out, ok := psql(t, base+" sslmode=verify-full sslcert="+crt+" sslkey="+key, ""); !ok {
		t.Fatalf("psql verify-full with the client certificate: %s\npgpool log:\n%s", out, pg.Log())
	}
	ver, err := pgxConnect(t, pg.Port, "verify-full", "", &certs, true, pool(certs.CA))
	if err != nil || ver != "TLS 1.3" {
		t.Fatalf("pgx verify-full with the client certificate: %q %v", ver, err)
	}
	if out, ok := psql(t, base+" sslmode=verify-full sslcert=/nonexistent sslkey=/nonexistent", password); ok {
		t.Fatalf("psql without a client certificate logged in: %s", out)
	}
	if _, err := pgxConnect(t, pg.Port, "verify-full", password, &certs, false, pool(certs.CA)); err == nil {
		t.Fatal("pgx without a client certificate logged in")
	}
	// A client certificate with the same CN from another CA.
	otherNS := setupCerts(t, "pp-new-issuer")
	other := issued(t, otherNS)
	_, ocrt, okey := files(t, other)
	if out, ok := psql(t, base+" sslmode=verify-full sslcert="+ocrt+" sslkey="+okey, ""); ok {
		t.Fatalf("psql with a client certificate from another CA logged in: %s", out)
	}
	if out, ok := psql(t, fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres sslmode=disable", pg.Port), password); ok {
		t.Fatalf("a plain connection logged in with sslMode require: %s", out)
	}
}

// scram and md5 over TLS: password logins work; sslMode require refuses a
// plain connection, prefer and allow accept it.
func TestPasswordModes(t *testing.T) {
	pg, certs := pgpoolWithCerts(t)
	for _, auth := range []string{"scram", "md5"} {
		for _, ssl := range []string{"require", "prefer", "allow"} {
			t.Run(auth+"/"+ssl, func(t *testing.T) {
				pg.Configure(ssl, auth)
				pg.Restart()
				ver, err := pgxConnect(t, pg.Port, "verify-full", password, &certs, false, pool(certs.CA))
				if err != nil || ver != "TLS 1.3" {
					t.Fatalf("password login over TLS: %q %v\n%s", ver, err, pg.Log())
				}
				if _, err := pgxConnect(t, pg.Port, "verify-full", "wrong", &certs, false, pool(certs.CA)); err == nil {
					t.Fatal("a wrong password logged in")
				}
				ca, _, _ := files(t, certs)
				if _, ok := psql(t, fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres sslmode=verify-full sslrootcert=%s", pg.Port, ca), password); !ok {
					t.Fatal("psql password login over TLS failed")
				}
				_, plainErr := pgxConnect(t, pg.Port, "disable", password, nil, false, nil)
				if ssl == "require" && plainErr == nil {
					t.Fatal("sslMode require accepted a plain connection")
				}
				if ssl != "require" && plainErr != nil {
					t.Fatalf("sslMode %s refused a plain connection: %v", ssl, plainErr)
				}
			})
		}
	}
}

func trigger(t *testing.T, ns string) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	for _, n := range []string{"pgpool-server-cert", "pgpool-client-cert"} {
		c, err := env.CertMgr.CertmanagerV1().Certificates(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := issuing.TriggerIssuance(ctx, env.CertMgr.CertmanagerV1(), ns, n, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := issuing.WaitReady(ctx, env.CertMgr.CertmanagerV1(), ns, n, tls.Revision(c), time.Time{}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// rotate: after new files are in place, a reload keeps serving the old
// certificate (why the plugin restarts pods) and a restart serves the new.
func TestRotateNeedsRestart(t *testing.T) {
	pg, ns, certs := startTLS(t, "require", "md5")
	ctx := testenv.Context(t, time.Minute)
	want := &verify.Expect{Roots: pool(certs.CA)}
	before, err := pg.Probe(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	trigger(t, ns)
	rotated := issued(t, ns)
	newLeaf, _ := tls.ParseFirstCert(rotated.ServerCert)
	pg.InstallSecrets(rotated)
	pg.Reload()
	afterReload, err := pg.Probe(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if afterReload.Serial != before.Serial {
		t.Fatalf("a reload changed the served certificate (%s -> %s): pgpool's ssl settings now reload?", before.Serial, afterReload.Serial)
	}
	pg.Restart()
	afterRestart, err := pg.Probe(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if afterRestart.Serial == before.Serial || afterRestart.Serial != newLeaf.SerialNumber.Text(16) {
		t.Fatalf("after a restart pgpool serves %s, want the new %s (old %s)", afterRestart.Serial, newLeaf.SerialNumber.Text(16), before.Serial)
	}
	if !afterRestart.Verified || afterRestart.Version != "TLS 1.3" {
		t.Fatalf("after rotate: verified %v over %s", afterRestart.Verified, afterRestart.Version)
	}
}

// change-issuer: after the Certificates move to pp-new-issuer and pgpool
// restarts, the old CA no longer verifies the served certificate and the
// new one does; ca.pem holds CN=ca-updated,O=kubedb-updated.
func TestChangeIssuer(t *testing.T) {
	pg, ns, old := startTLS(t, "require", "cert")
	ctx := testenv.Context(t, 2*time.Minute)
	for _, n := range []string{"pgpool-server-cert", "pgpool-client-cert"} {
		moveIssuer(t, ns, n, "pp-new-issuer")
	}
	moved := issued(t, ns)
	pg.InstallSecrets(moved)
	pg.Restart()
	ca, err := os.ReadFile(pg.Paths().CA)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := tls.ParseFirstCert(ca); c == nil || c.Subject.String() != "CN=ca-updated,O=kubedb-updated" {
		t.Fatalf("ca.pem subject after change-issuer: %v", c)
	}
	withOld, err := pg.Probe(ctx, &verify.Expect{Roots: pool(old.CA)})
	if err != nil {
		t.Fatal(err)
	}
	if withOld.Verified {
		t.Fatal("the old CA still verifies the served certificate")
	}
	withNew, err := pg.Probe(ctx, &verify.Expect{Roots: pool(moved.CA)})
	if err != nil || !withNew.Verified {
		t.Fatalf("the new CA does not verify the served certificate: %v %+v", err, withNew)
	}
	_, crt, key := files(t, moved)
	if out, ok := psql(t, fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s", pg.Port, pg.Paths().CA, crt, key), ""); !ok {
		t.Fatalf("cert login with the new issuer's client certificate: %s", out)
	}
}

// remove: with ssl off, the SSLRequest is answered 'N' and a plain password
// login works.
func TestRemove(t *testing.T) {
	pg, _, _ := startTLS(t, "require", "cert")
	pg.Configure("disable", "md5")
	pg.Restart()
	s, err := pg.Probe(testenv.Context(t, time.Minute), nil)
	if err != nil || s.TLS {
		t.Fatalf("after remove the SSLRequest is answered %+v (%v), want 'N'", s, err)
	}
	if out, ok := psql(t, fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres sslmode=disable", pg.Port), password); !ok {
		t.Fatalf("plain login after remove: %s", out)
	}
	if ver, err := pgxConnect(t, pg.Port, "prefer", password, nil, false, nil); err != nil || ver != "" {
		t.Fatalf("pgx prefer after remove: %q %v", ver, err)
	}
}

// The plugin's verify step against real pgpool: it passes after a good
// change, and fails on a pgpool that is up but serves no TLS because it
// cannot read its key (pgpool only logs a warning then).
func TestVerifyStep(t *testing.T) {
	pg, _, certs := startTLS(t, "require", "cert")
	leaf, _ := tls.ParseFirstCert(certs.ServerCert)
	kp, err := cryptotls.X509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	want := verify.Expect{TLS: true, Leaf: leaf, Roots: pool(certs.CA), ServerName: "localhost", ClientCert: &kp}
	ctx := testenv.Context(t, time.Minute)
	s, err := verify.Check(ctx, pg.Dialer(), "pgpool-0", want)
	if err != nil {
		t.Fatalf("verify after a good change: %v", err)
	}
	if s.Version != "TLS 1.3" || s.Serial != leaf.SerialNumber.Text(16) {
		t.Fatalf("served %+v", s)
	}
	// Unreadable key: pgpool stays up without TLS.
	if err := os.Chmod(pg.Paths().Key, 0); err != nil {
		t.Fatal(err)
	}
	if pg.u.cred == nil {
		t.Skip("as a non-root user the key stays readable to its owner; run as root (as CI does) for this half")
	}
	if err := os.Chown(pg.Paths().Key, 0, 0); err != nil {
		t.Fatal(err)
	}
	pg.Restart()
	_, err = verify.Check(ctx, pg.Dialer(), "pgpool-0", want)
	var mm *verify.MismatchError
	if !errors.As(err, &mm) || mm.Served.TLS {
		t.Fatalf("verify on a pgpool without a readable key: %v, want a mismatch saying no TLS is served", err)
	}
	if !strings.Contains(err.Error(), "no TLS") || !strings.Contains(err.Error(), leaf.SerialNumber.Text(16)) {
		t.Fatalf("the message should say what was served and what was expected: %v", err)
	}
	// Removing TLS is verified by the 'N' answer.
	pg.Configure("disable", "md5")
	pg.Restart()
	if _, err := verify.Check(ctx, pg.Dialer(), "pgpool-0", verify.Expect{TLS: false}); err != nil {
		t.Fatalf("verify after remove: %v", err)
	}
}
