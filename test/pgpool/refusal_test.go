package pgpool

import (
	"strings"
	"testing"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// policy is what the plugin asks of a pod for sslMode x authMode, judged
// against the files this pgpool reads (or, with model, another text).
func (p *pgpoolServer) policy(sslMode, authMode, model string, enforced bool) verify.Policy {
	m, err := conf.NewHBAModel(model, enforced, sslMode != "disable")
	if err != nil {
		p.t.Fatal(err)
	}
	return verify.Policy{Plaintext: sslMode == "require", Certless: authMode == "cert", TLS: sslMode != "disable", Cert: authMode == "cert", PoolHBA: model, Model: m}
}

func (p *pgpoolServer) refusal(t *testing.T, pol verify.Policy) *verify.Refusal {
	t.Helper()
	return verify.ProveRefusal(testenv.Context(t, time.Minute), p.Dialer(), "pgpool", pol)
}

// The negative proof against real pgpool: with require + cert, plain
// logins and TLS logins without a client certificate are refused before
// any credential is asked; under prefer + md5 a plain login is asked for a
// password (accepted, and the rule that admits it is named); with
// enable_pool_hba off pgpool admits what its pool_hba.conf forbids, and
// the proof says the file is not read; a loopback trust rule makes the
// plain probe not-checked rather than refused.
func TestRefusalProof(t *testing.T) {
	pg, certs := pgpoolWithCerts(t)

	pg.Configure("require", "cert")
	pg.Restart()
	pol := pg.policy("require", "cert", pg.hba, true)
	r := pg.refusal(t, pol)
	if r.Plaintext != verify.Refused || r.Certless != verify.Refused || r.Failure(pol) != nil {
		t.Fatalf("require + cert: %+v\n%s\npgpool log:\n%s", r, pg.hba, pg.Log())
	}
	// The probe is no weaker than a real client: the client certificate
	// still logs in (so the refusals above are pool_hba.conf's doing).
	if _, err := certLogin(t, pg, keyPair(t, certs), certs.CA); err != nil {
		t.Fatalf("cert login: %v", err)
	}

	pg.Configure("prefer", "md5")
	pg.Restart()
	pol = pg.policy("prefer", "md5", pg.hba, true)
	r = pg.refusal(t, pol)
	if r.Plaintext != verify.Accepted || r.Failure(pol) != nil || !strings.Contains(strings.Join(r.Detail, "\n"), "asked for a credential: pool_hba.conf line") {
		t.Fatalf("prefer + md5: %+v\n%s", r, pg.hba)
	}

	// pgpool reads no pool_hba.conf: the file says refuse, pgpool admits.
	enforcedHBA := pg.hbaFor("require", "cert")
	pg.ConfigureWith("require", "cert", baseHBA, func(c *conf.PgpoolConf) { c.Set("enable_pool_hba", "off") })
	pg.Restart()
	pol = pg.policy("require", "cert", enforcedHBA, true)
	r = pg.refusal(t, pol)
	if r.Plaintext != verify.Accepted || r.Failure(pol) == nil || !strings.Contains(r.Failure(pol).Error(), "does not enforce that file") {
		t.Fatalf("enable_pool_hba off: %+v", r)
	}

	// A loopback trust rule ahead of the TLS rules: port-forward's address
	// meets it, so the plain probe proves nothing about other clients.
	loop := "host all all 127.0.0.1/32 trust\n" + baseHBA
	pg.ConfigureWith("require", "cert", loop, nil)
	pg.Restart()
	pol = pg.policy("require", "cert", pg.hba, true)
	r = pg.refusal(t, pol)
	if r.Plaintext != verify.NotChecked || r.Failure(pol) == nil || !strings.Contains(strings.Join(r.Detail, "\n"), "admits port-forward's 127.0.0.1") {
		t.Fatalf("loopback trust: %+v\n%s", r, pg.hba)
	}
}

// hbaFor is the pool_hba.conf Configure writes for sslMode x authMode.
func (p *pgpoolServer) hbaFor(sslMode, authMode string) string {
	p.t.Helper()
	he, err := conf.EditHBA(baseHBA, conf.HBAOptions{SSLMode: sslMode, AuthMode: authMode, EnforcedBefore: true, EnforcedAfter: true})
	if err != nil {
		p.t.Fatal(err)
	}
	return he.Text
}

// Issue 27, finding 4, against real pgpool: an administrator writes a
// reject rule for postgres just under a marker of tls add's; after tls
// remove (as conf.RemoveTLS writes the files) pgpool still refuses
// postgres, with the right password, while the converted rule below is
// given back its original. Before the fix the marker swallowed the reject
// rule and postgres got in.
func TestRemoveKeepsAnAdministratorsRule(t *testing.T) {
	pg, _ := pgpoolWithCerts(t)
	res := pg.ConfigureAdd("require", "cert", baseHBA, nil)
	const reject = "host all postgres 0.0.0.0/0 reject\n"
	i := strings.Index(res.PoolHBA, "#kubectl-pgpool was: ")
	if i < 0 {
		t.Fatalf("no marker in\n%s", res.PoolHBA)
	}
	j := i + strings.Index(res.PoolHBA[i:], "\n") + 1
	edited := res.PoolHBA[:j] + reject + res.PoolHBA[j:]
	rm, err := conf.RemoveTLS(conf.Files{PgpoolConf: res.PgpoolConf, PoolHBA: edited}, pg.Paths(), "cert")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rm.PoolHBA, reject+"host all all 0.0.0.0/0 md5\n") {
		t.Fatalf("remove's pool_hba.conf:\n%s", rm.PoolHBA)
	}
	pg.WriteFiles(rm.PgpoolConf, rm.PoolHBA)
	pg.Restart()
	ctx := testenv.Context(t, time.Minute)
	if _, err := pg.Login(ctx, verify.Login{User: "postgres", Database: "postgres", Password: password}); err == nil {
		t.Fatalf("postgres got in after remove, despite the administrator's reject rule:\n%s", rm.PoolHBA)
	} else {
		t.Logf("refused as it should be: %v", err)
	}
}
