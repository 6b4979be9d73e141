package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// Issue 28: the issuer's CA renewed in place (its CA Certificate re-issued
// with a new key, the Issuer's name unchanged), on the real node, with
// real psql clients that log in by client certificate (cert auth) and
// verify pgpool (verify-ca):
//
//   - "old": trusts only the CA before, with a client certificate it signed
//     (tls client-cert before the renewal);
//   - "new": trusts only the renewed CA, with a client certificate it signed
//     (tls client-cert after the renewal);
//   - "mixed": trusts the CA before, with the client certificate the renewed
//     CA signed: what a client that got its new certificate but not yet
//     the new CA presents.
//
// Before rotate, status flags every leaf, and only old logs in. Stage 1
// (--ca-trust-only): old and mixed log in (every pod trusts the renewed
// CA), new is refused (pods still serve what the CA before signed). Stage
// 2: new logs in, old is refused (the server's certificate changed), and
// the old client certificate is still accepted (the CA before stays).
// Stage 3 (a later rotate, the client certificates re-issued): the old
// client certificate is refused: the CA before is dropped only now.
func TestCARenewalInThreeStagesOnRealNode(t *testing.T) {
	ns := realPgpool(t, 2)
	plugin(t, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert",
		"--client-org", "pgpool", "--client-ou", "client", "--backend-ca", "secret/pgpool-backend-cert")
	dirOld, dirNew := t.TempDir(), t.TempDir()
	clientCert := func(dir string, args ...string) {
		t.Helper()
		if out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 5*time.Minute, append([]string{"tls", "client-cert", "pgpool", "--user", "postgres", "--write-dir", dir}, args...)...); err != nil {
			t.Fatalf("tls client-cert %v: %v\n%s\n%s", args, err, out, errOut)
		}
	}
	clientCert(dirOld)

	// A client: the CA it trusts, the client certificate it presents.
	type client struct{ name, caDir, certDir string }
	old, newer, mixed := client{"old", dirOld, dirOld}, client{"new", dirNew, dirNew}, client{"mixed", dirOld, dirNew}
	// logins checks, on every pod, that each of ok logs in and each of
	// refused does not, for its certificates: psql's "certificate verify
	// failed" (it does not trust the server's), or pgpool's TLS alert
	// "unknown ca" (it does not trust the client's). Each refusal comes
	// right after a login that worked on the same port-forward.
	logins := func(stage string, ok []client, refused []client) {
		t.Helper()
		for _, pod := range []string{"pgpool-0", "pgpool-1"} {
			port := portForward(t, ns, "pod/"+pod)
			conn := func(c client) string {
				return fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres sslmode=verify-ca sslrootcert=%s sslcert=%s sslkey=%s",
					port, filepath.Join(c.caDir, "ca.crt"), filepath.Join(c.certDir, "tls.crt"), filepath.Join(c.certDir, "tls.key"))
			}
			for _, c := range ok {
				if out, in := psql(t, conn(c)); !in {
					t.Fatalf("%s: the %s client could not log in through %s:\n%s", stage, c.name, pod, out)
				}
			}
			for _, c := range refused {
				if out, in := psql(t, conn(c)); in || (!strings.Contains(out, "certificate") && !strings.Contains(out, "unknown ca")) {
					t.Fatalf("%s: the %s client, which must be refused for its certificates, got: logged in %v\n%s", stage, c.name, in, out)
				}
			}
		}
	}
	logins("before the renewal", []client{old}, nil)

	ctx := testenv.Context(t, 8*time.Minute)
	renewIssuerCA(t, ctx, ns)
	st, err := runStatus(t, ns)
	if err == nil || st.IssuerCA == nil || strings.Join(st.IssuerCA.Stale, ",") != "pgpool-client-cert,pgpool-client-postgres,pgpool-server-cert" {
		t.Fatalf("status after the CA was renewed must flag every leaf and fail --verify=required: %v %+v", err, st.IssuerCA)
	}
	clientCert(dirNew, "--secret", "pgpool-client-postgres-new")
	logins("renewed, before rotate", []client{old}, []client{newer})

	// Stage 1.
	before := podUIDs(t, ns)
	plugin(t, ns, "tls", "rotate", "pgpool", "--ca-trust-only")
	restartedAll(t, ns, "stage 1", before)
	b, err := env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, tls.CABundleName("pgpool"), metav1.GetOptions{})
	if err != nil || !tls.InPEM([]byte(b.Data[tls.NextCAKey]), fingerprint(t, dirNew)) {
		t.Fatalf("stage 1: the bundle's next CA is %v (%v), want the renewed CA", tls.Subjects([]byte(b.Data[tls.NextCAKey])), err)
	}
	logins("stage 1", []client{old, mixed}, []client{newer})

	// Stage 2.
	before = podUIDs(t, ns)
	plugin(t, ns, "tls", "rotate", "pgpool")
	restartedAll(t, ns, "stage 2", before)
	logins("stage 2", []client{newer, {"new CA, old client certificate", dirNew, dirOld}}, []client{old})
	if st, err := runStatus(t, ns); err != nil || len(st.IssuerCA.Stale) > 0 || len(st.ClientCerts) != 2 {
		t.Fatalf("status after stage 2: %v %+v %+v", err, st.IssuerCA, st.ClientCerts)
	} else {
		for _, c := range st.ClientCerts {
			if c.Secret == "pgpool-client-postgres" && !strings.Contains(c.Reissued, "fetch the new certificate from Secret pgpool-client-postgres") {
				t.Fatalf("status does not tell the user of pgpool-client-postgres that it was re-issued: %+v", c)
			}
		}
	}
	evs, err := env.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=ClientCertificateReissued,involvedObject.name=pgpool-client-postgres"})
	if err != nil || len(evs.Items) != 1 || evs.Items[0].InvolvedObject.Kind != "Certificate" || evs.Items[0].InvolvedObject.UID == "" {
		t.Fatalf("want one Event ClientCertificateReissued on Certificate pgpool-client-postgres: %v %+v", err, evs.Items)
	}

	// Stage 3: every client certificate of the plugin's is re-issued, so
	// the CA before may go: a rotate drops it.
	plugin(t, ns, "tls", "rotate", "pgpool", "--reissue=false")
	logins("stage 3", []client{newer}, []client{{"new CA, old client certificate", dirNew, dirOld}})
	if b, err := env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, tls.CABundleName("pgpool"), metav1.GetOptions{}); err != nil || len(tls.Subjects([]byte(b.Data[tls.PreviousCAKey]))) > 0 {
		t.Fatalf("stage 3: the CA before is still in the bundle: %v", err)
	}
	status(t, ns, 2, true)
}

// fingerprint is the SHA-256 of ca.crt in dir.
func fingerprint(t *testing.T, dir string) string {
	t.Helper()
	c, err := tls.ParseFirstCert(readFile(t, filepath.Join(dir, "ca.crt")))
	if err != nil {
		t.Fatal(err)
	}
	return tls.Fingerprint(c)
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// podUIDs are the UIDs of the pgpool's Ready pods by name.
func podUIDs(t *testing.T, ns string) map[string]types.UID {
	t.Helper()
	out := map[string]types.UID{}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, 2*time.Minute) {
		out[p.Name] = p.UID
	}
	return out
}

// restartedAll checks that every pod of before was replaced.
func restartedAll(t *testing.T, ns, stage string, before map[string]types.UID) {
	t.Helper()
	for name, uid := range podUIDs(t, ns) {
		if before[name] == uid {
			t.Fatalf("%s: pod %s was not restarted", stage, name)
		}
	}
}

// renewIssuerCA renews the CA behind Issuer pgpool-issuer in place: its CA
// Certificate re-issued (cert-manager writes a new key and certificate
// into the same Secret), and waits until the Issuer is Ready on it.
func renewIssuerCA(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	cm := env.CertMgr.CertmanagerV1()
	caCrt, err := cm.Certificates(ns).Get(ctx, "pgpool-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := issuing.TriggerIssuance(ctx, cm, ns, "pgpool-ca", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := issuing.WaitReady(ctx, cm, ns, "pgpool-ca", tls.Revision(caCrt), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	env.WaitIssuerReady(t, ctx, ns, "pgpool-issuer")
}
