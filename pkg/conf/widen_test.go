package conf

import (
	"net/netip"
	"strings"
	"testing"
)

// Named tests for the cases of issue 18 that widened access or lost an
// edit on the main of 2026-11-27; each fails there.

func enforcedRequire(auth string) HBAOptions {
	return HBAOptions{SSLMode: "require", AuthMode: auth, EnforcedBefore: true, EnforcedAfter: true}
}

// Case 1: a later loopback trust rule must not become reachable for a
// plain connection that matched a rule made hostssl.
func TestCase1LoopbackTrustAfterConvertedRule(t *testing.T) {
	for _, tail := range []string{
		"host all all 127.0.0.1/32 trust",
		"host all all samehost trust",
		"host all all localhost trust",
		"hostnossl all all 127.0.0.1/32 trust",
	} {
		orig := "host all all 0.0.0.0/0    md5\n" + tail + "\n"
		e, err := EditHBA(orig, enforcedRequire(""))
		if err != nil {
			t.Fatalf("%s: %v", tail, err)
		}
		before, _ := NewHBAModel(orig, true, true)
		after, _ := NewHBAModel(e.Text, true, true)
		if ws := Widened(before, after); len(ws) > 0 {
			t.Errorf("%s: widened: %s\n%s", tail, ws[0], e.Text)
		}
		p := Probe{Addr: mustAddr("127.0.0.1"), SameHost: true, SameNet: true, Host: "localhost", DB: "app", User: "app"}
		if m, _ := after.Decide(p); m == "trust" {
			t.Errorf("%s: a plain login from 127.0.0.1 gets trust after the edit:\n%s", tail, e.Text)
		}
		if len(e.Added) == 0 || !strings.Contains(e.Text, "hostnossl all all 0.0.0.0/0 reject "+hbaAdded) {
			t.Errorf("%s: no reject rule added after the converted rule:\n%s", tail, e.Text)
		}
		back, err := RestoreHBA(e.Text, "")
		if err != nil || back.Text != orig {
			t.Errorf("%s: remove does not give back the original (%v):\n%s", tail, err, Diff(orig, back.Text, 1))
		}
	}
}

// Case 2: pgpool compares parameter names case-sensitively.
func TestCase2KeysAreCaseSensitive(t *testing.T) {
	c := ParsePgpoolConf("ENABLE_POOL_HBA = on\nSSL = on\n")
	if c.Bool("enable_pool_hba") || c.Bool("ssl") {
		t.Fatal("upper-case keys were read; pgpool ignores them")
	}
	if got := c.CaseIgnored("enable_pool_hba", "ssl"); len(got) != 2 || !strings.Contains(got[0], "line 1") {
		t.Fatalf("CaseIgnored = %q", got)
	}
	if !Enforce(c) || !c.Bool("enable_pool_hba") {
		t.Fatalf("Enforce did not turn on enable_pool_hba:\n%s", c)
	}
}

// Case 3: booleans are any unique prefix of on/off/true/false/yes/no.
func TestCase3BooleanPrefixes(t *testing.T) {
	for v, want := range map[string]bool{
		"t": true, "tr": true, "TRUE": true, "y": true, "ye": true, "on": true, "ON": true, "1": true, "'on'": true,
		"f": false, "fa": false, "n": false, "no": false, "of": false, "off": false, "0": false,
	} {
		c := ParsePgpoolConf("enable_pool_hba = " + v + "\n")
		got, err := c.BoolErr("enable_pool_hba")
		if err != nil || got != want {
			t.Errorf("enable_pool_hba = %s: %v (%v), pgpool reads %v", v, got, err, want)
		}
	}
	for _, v := range []string{"o", "tru3", "2", "onn", "yess"} {
		if _, err := ParsePgpoolConf("ssl = " + v + "\n").BoolErr("ssl"); err == nil {
			t.Errorf("ssl = %s: accepted; pgpool refuses it", v)
		}
	}
	// enable_pool_hba = t is on: the file's rules are enforced, no default
	// block is added to a file whose remote clients were refused.
	orig := "host all all 127.0.0.1/32 md5\n"
	pc := ParsePgpoolConf("enable_pool_hba = t\n")
	e, err := EditHBA(orig, HBAOptions{SSLMode: "require", EnforcedBefore: pc.Bool("enable_pool_hba"), EnforcedAfter: true})
	if err != nil {
		t.Fatal(err)
	}
	if e.AddedDefault || e.Text != orig {
		t.Fatalf("a default block was added:\n%s", e.Text)
	}
}

// Case 4: files pgpool accepts are accepted.
func TestCase4ValidFilesAccepted(t *testing.T) {
	for _, tc := range []struct{ line, db, user, addr, method string }{
		{"host all all 0/0 md5", "all", "all", "0.0.0.0/0", "md5"},
		{"host db1, db2 all 10/8 md5", "db1, db2", "all", "0.0.0.0/8", "md5"},
		{`"host" all all 0.0.0.0/0 "md5"`, "all", "all", "0.0.0.0/0", "md5"},
		{`host all all 0.0.0.0/0 md5 # a comment \`, "all", "all", "0.0.0.0/0", "md5"},
		{"host all all 127.1/32 trust", "all", "all", "127.0.0.1/32", "trust"},
		{"host all all 10.0.0.0 255.0.0.0 scram-sha-256", "all", "all", "10.0.0.0/8", "scram-sha-256"},
		{"host all all all md5", "all", "all", "", "md5"},
		{"host\tall\tall\t::/0\tmd5\r", "all", "all", "::/0", "md5"},
	} {
		rules, err := ParseHBA(tc.line + "\n")
		if err != nil || len(rules) != 1 {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		r := rules[0]
		if r.Database != tc.db || r.User != tc.user || r.Method != tc.method || (tc.addr != "" && r.addr.prefix.String() != tc.addr) {
			t.Errorf("%q: parsed as %q %q %v %q", tc.line, r.Database, r.User, r.addr.prefix, r.Method)
		}
	}
	rules, _ := ParseHBA("host db1, db2 all 0/0 md5\n")
	if !matchDB(rules[0].dbs, "db2", "x") || matchDB(rules[0].dbs, "db3", "x") {
		t.Errorf("comma continuation: %+v", rules[0].dbs)
	}
	rules, _ = ParseHBA(`host "all" all 0/0 md5` + "\n")
	if matchDB(rules[0].dbs, "app", "x") || !matchDB(rules[0].dbs, "all", "x") {
		t.Error(`a quoted "all" is a database named all, not the keyword`)
	}
	rules, _ = ParseHBA("host all +admins,bob 0/0 md5\n")
	if matchUser(rules[0].users, "bob") {
		t.Error("pgpool stops at a +group (unsupported) and never reaches bob")
	}
	e, err := EditHBA("host all all 0/0 md5\n", enforcedRequire("scram"))
	if err != nil || !strings.Contains(e.Text, "hostssl all all 0/0 scram-sha-256\n") {
		t.Fatalf("0/0: %v\n%v", err, e)
	}
}

// Case 5: remove gives back pgpool.conf byte for byte.
func TestCase5RemoveIsByteExact(t *testing.T) {
	for _, orig := range []string{
		"#ssl = off\nport = 9999\n",
		"ssl = off # c\nport = 9999\n",
		"ssl = false\nssl_cert = '/etc/my.crt'\nssl_key = '/etc/my.key'\nssl_ca_cert = '/etc/ca.pem'\n",
		"port = 9999\r\nssl = 'off'\r\n#ssl_cert = ''\r\n",
		"ssl=off",
		"listen_addresses = *\nSSL = on\nenable_pool_hba = no\n",
	} {
		c := ParsePgpoolConf(orig)
		EnableTLS(c, kubedbPaths)
		Enforce(c)
		if !c.Bool("ssl") || !c.Bool("enable_pool_hba") {
			t.Fatalf("%q: not on after EnableTLS:\n%s", orig, c)
		}
		if v, _ := c.Get("ssl_cert"); v != kubedbPaths.Cert {
			t.Fatalf("%q: ssl_cert = %q", orig, v)
		}
		if strings.Contains(orig, "\r\n") && strings.Count(c.String(), "\r\n") != strings.Count(c.String(), "\n") {
			t.Errorf("%q: CRLF lost:\n%q", orig, c.String())
		}
		// A resumed add writes the same again.
		again := ParsePgpoolConf(c.String())
		EnableTLS(again, kubedbPaths)
		Enforce(again)
		if again.String() != c.String() {
			t.Errorf("%q: EnableTLS is not idempotent:\n%s", orig, Diff(c.String(), again.String(), 1))
		}
		r := ParsePgpoolConf(c.String())
		DisableTLS(r, kubedbPaths)
		Unenforce(r)
		if r.String() != orig {
			t.Errorf("remove of %q gives %q", orig, r.String())
		}
	}
}

// Case 8: remove keeps enable_pool_hba on when pool_hba.conf's rules
// changed since add.
func TestCase8EnforcementKeptForNewRules(t *testing.T) {
	orig := "host all all 0.0.0.0/0 md5\n"
	e, err := EditHBA(orig, HBAOptions{SSLMode: "require", EnforcedAfter: true})
	if err != nil {
		t.Fatal(err)
	}
	text := MarkHBAEnforced(e.Text)
	if changed, known := HBAChangedSinceEnforced(text); changed || !known {
		t.Fatalf("fresh record: changed %v known %v", changed, known)
	}
	edited := strings.Replace(text, "hostssl all all 0.0.0.0/0 md5\n", "host all intruder 0.0.0.0/0 reject\nhostssl all all 0.0.0.0/0 md5\n", 1)
	if changed, _ := HBAChangedSinceEnforced(edited); !changed {
		t.Fatalf("an added reject rule is not seen:\n%s", edited)
	}
	back, err := RestoreHBA(text, "")
	if err != nil || back.Text != orig {
		t.Fatalf("remove: %v\n%s", err, Diff(orig, back.Text, 1))
	}
}

// Case 9: every secret key is masked, whatever the syntax.
func TestCase9SecretsMasked(t *testing.T) {
	for _, key := range []string{"health_check_password", "sr_check_password", "recovery_password", "wd_lifecheck_password", "wd_authkey", "ssl_passphrase_command", "password"} {
		for _, line := range []string{
			key + " = 'hunter2'",
			key + "='hunter2'",
			key + " 'hunter2'",
			key + " hunter2",
			key + " = hunter2 # comment",
			"#" + key + " = 'hunter2'",
			"  " + key + "\t=\t'hunter2'\r",
			"port = 9999 " + key + " = 'hunter2'",
		} {
			got := MaskLine(line)
			if strings.Contains(got, "hunter2") {
				t.Errorf("%q masked as %q", line, got)
			}
			if d := MaskSecrets("+ "+line, true); strings.Contains(d, "hunter2") {
				t.Errorf("diff line %q masked as %q", line, d)
			}
		}
	}
	if got := MaskLine("port = 9999 # the password is elsewhere"); !strings.Contains(got, "9999") {
		t.Errorf("a non-secret value was masked: %q", got)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// Case 6: leftover ssl_ca_cert_dir and ssl_crl_file are named; with cert
// auth add refuses until the user chooses; comment-out empties them and
// remove puts them back byte for byte.
func TestCase6LeftoverTLS(t *testing.T) {
	orig := "ssl = off\nssl_ca_cert_dir = '/etc/ssl/certs'\nssl_crl_file = '/etc/pgpool/old.crl' # revoked\n"
	hba := "host all all 0.0.0.0/0 md5\n"
	f := Files{PgpoolConf: orig, PoolHBA: hba}
	if _, err := AddTLS(f, AddOptions{Paths: kubedbPaths, SSLMode: "require", AuthMode: "cert"}); err == nil ||
		!strings.Contains(err.Error(), "ssl_ca_cert_dir = '/etc/ssl/certs' (pgpool.conf line 2)") || !strings.Contains(err.Error(), "--leftover-tls") {
		t.Fatalf("cert auth with leftovers: %v", err)
	}
	keep, err := AddTLS(f, AddOptions{Paths: kubedbPaths, SSLMode: "require", AuthMode: "cert", LeftoverTLS: "keep"})
	if err != nil || len(keep.Leftover) != 2 || !strings.Contains(strings.Join(keep.Notes, " "), "kept as --leftover-tls keep asks") {
		t.Fatalf("keep: %v %+v", err, keep)
	}
	out, err := AddTLS(f, AddOptions{Paths: kubedbPaths, SSLMode: "require", AuthMode: "cert", LeftoverTLS: "comment-out"})
	if err != nil {
		t.Fatal(err)
	}
	if l := LeftoverTLS(ParsePgpoolConf(out.PgpoolConf)); l != nil {
		t.Fatalf("still set after comment-out: %v\n%s", l, out.PgpoolConf)
	}
	back, err := RemoveTLS(out.Files, kubedbPaths, "cert")
	if err != nil || back.PgpoolConf != orig || back.PoolHBA != hba {
		t.Fatalf("remove: %v\n%s", err, Diff(orig, back.PgpoolConf, 1))
	}
	prefer, err := AddTLS(f, AddOptions{Paths: kubedbPaths, SSLMode: "prefer"})
	if err != nil || !strings.Contains(strings.Join(prefer.Notes, " "), "--leftover-tls comment-out") {
		t.Fatalf("md5 with leftovers is warned about: %v %+v", err, prefer)
	}
}
