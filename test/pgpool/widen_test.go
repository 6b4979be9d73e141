package pgpool

import (
	"strings"
	"testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
)

// pgpoolWithCerts is a pgpool (not started) in front of a fresh backend,
// with certificates from pgpool-issuer in a fresh namespace installed.
func pgpoolWithCerts(t *testing.T) (*pgpoolServer, certSet) {
	t.Helper()
	u := serverUser(t)
	certs := issued(t, setupCerts(t, "pgpool-issuer"))
	pg := newPgpool(t, u, startPostgres(t, u))
	pg.InstallSecrets(certs)
	return pg, certs
}

// Issue 18, case 1, against real pgpool: after tls add --ssl-mode require
// on a file whose loopback trust rule follows the remote password rule
// (pgpool_setup's order), a plain login from 127.0.0.1 without a password
// is refused. The same file without the rule the plugin adds lets that
// login in: the test can fail.
func TestLoopbackTrustNotReachedAfterAdd(t *testing.T) {
	pg, certs := pgpoolWithCerts(t)
	base := "host all all 0.0.0.0/0 md5\nhost all all 127.0.0.1/32 trust\n"
	res := pg.ConfigureAdd("require", "", base, nil)
	if len(res.HBA.Added) == 0 || !strings.Contains(res.PoolHBA, "hostnossl all all 0.0.0.0/0 reject") {
		t.Fatalf("no reject rule added:\n%s", res.PoolHBA)
	}
	pg.Start()
	if _, err := pgxConnect(t, pg.Port, "disable", "", nil, false, nil); err == nil {
		t.Fatalf("a plain login from 127.0.0.1 without a password got in:\n%s", res.PoolHBA)
	}
	if _, err := pgxConnect(t, pg.Port, "disable", password, nil, false, nil); err == nil {
		t.Fatal("a plain login with the password got in under sslMode require")
	}
	if ver, err := pgxConnect(t, pg.Port, "verify-full", password, &certs, false, pool(certs.CA)); err != nil || ver != "TLS 1.3" {
		t.Fatalf("a password login over TLS: %q %v\n%s", ver, err, pg.Log())
	}
	// The edit without the added rule (what kubectl-pgpool wrote before):
	// real pgpool lets the plain login in without a password.
	var lines []string
	for _, l := range strings.Split(res.PoolHBA, "\n") {
		if !strings.Contains(l, "hostnossl") {
			lines = append(lines, l)
		}
	}
	pg.WriteFiles(res.PgpoolConf, strings.Join(lines, "\n"))
	pg.Restart()
	if _, err := pgxConnect(t, pg.Port, "disable", "", nil, false, nil); err != nil {
		t.Fatalf("without the added reject rule a plain login without a password was refused (%v): the test proves nothing", err)
	}
}

// Issue 18, cases 2 and 3, against real pgpool: pgpool ignores
// ENABLE_POOL_HBA = on (keys are case-sensitive), so add turns
// enable_pool_hba on itself; it reads enable_pool_hba = t as on, so add
// adds nothing. Either way the file ends enforced: a plain login is
// refused under sslMode require.
func TestEnablePoolHBASpellings(t *testing.T) {
	pg, certs := pgpoolWithCerts(t)
	base := "host all all 0.0.0.0/0 md5\n"
	for _, tc := range []struct {
		line     string
		enforced bool // add turns enable_pool_hba on itself
	}{
		{"ENABLE_POOL_HBA = on", true},
		{"enable_pool_hba = t", false},
		{"enable_pool_hba = ye", false},
	} {
		t.Run(tc.line, func(t *testing.T) {
			res := pg.ConfigureAdd("require", "md5", base, func(c string) string {
				return strings.Replace(c, "enable_pool_hba = on", tc.line, 1)
			})
			if res.Enforced != tc.enforced || res.HBA.AddedDefault {
				t.Fatalf("enforced by add %v (want %v), default block %v", res.Enforced, tc.enforced, res.HBA.AddedDefault)
			}
			pg.Restart()
			if _, err := pgxConnect(t, pg.Port, "disable", password, nil, false, nil); err == nil {
				t.Fatalf("a plain login got in: pool_hba.conf is not enforced\n%s", res.PgpoolConf)
			}
			if ver, err := pgxConnect(t, pg.Port, "verify-full", password, &certs, false, pool(certs.CA)); err != nil || ver != "TLS 1.3" {
				t.Fatalf("a password login over TLS: %q %v\n%s", ver, err, pg.Log())
			}
		})
	}
	// The fact behind case 2: with only ENABLE_POOL_HBA = on, real pgpool
	// does not read pool_hba.conf, and a plain login gets in.
	pg.ConfigureWith("require", "md5", base, func(c *conf.PgpoolConf) {})
	text := strings.Replace(pg.conf, "enable_pool_hba = on", "ENABLE_POOL_HBA = on", 1)
	pg.WriteFiles(text, pg.hba)
	pg.Restart()
	if _, err := pgxConnect(t, pg.Port, "disable", password, nil, false, nil); err != nil {
		t.Fatalf("with only ENABLE_POOL_HBA = on a plain login was refused (%v): pgpool read it after all", err)
	}
}
