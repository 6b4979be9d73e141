package conf

import (
	"fmt"
	"strings"
	"testing"
)

// TestHBAGolden edits pool_hba.conf files with every kind of rule for each
// sslMode x clientAuthMode (and "keep": no --client-auth-mode), and checks
// that remove gives back the original bytes.
func TestHBAGolden(t *testing.T) {
	for _, file := range []string{"rules", "kubedb", "k8s"} {
		orig := read(t, file+"-pool_hba.conf")
		for _, ssl := range SSLModes() {
			for _, auth := range append([]string{"keep"}, ClientAuthModes()...) {
				name := fmt.Sprintf("hba-%s-%s-%s.golden", file, ssl, auth)
				t.Run(name, func(t *testing.T) {
					a := auth
					if a == "keep" {
						a = ""
					}
					var out strings.Builder
					e, err := EditHBA(orig, HBAOptions{SSLMode: ssl, AuthMode: a, EnforcedBefore: true, EnforcedAfter: true, RemoteTrust: "cert"})
					if err != nil {
						fmt.Fprintf(&out, "error: %v\n", err)
						golden(t, name, out.String())
						return
					}
					fmt.Fprintf(&out, "### changed\n%s\n### notes\n%s\n### pool_hba.conf\n%s", strings.Join(e.Changed, "\n"), strings.Join(e.Notes, "\n"), e.Text)
					golden(t, name, out.String())
					if _, err := ParseHBA(e.Text); err != nil {
						t.Fatalf("the edited file does not parse: %v", err)
					}
					again, err := EditHBA(e.Text, HBAOptions{SSLMode: ssl, AuthMode: a, EnforcedBefore: true, EnforcedAfter: true, RemoteTrust: "cert"})
					if err != nil || again.Text != e.Text {
						t.Fatalf("edit is not idempotent (%v):\n%s", err, Diff(e.Text, again.Text, 1))
					}
					back, err := RestoreHBA(e.Text, a)
					if err != nil {
						t.Fatal(err)
					}
					if back.Text != orig {
						t.Fatalf("remove does not give back the original:\n%s", Diff(orig, back.Text, 1))
					}
					checkNotWider(t, orig, e.Text, ssl)
				})
			}
		}
	}
}

// checkNotWider asserts, rule by rule, that the edit kept every rule's
// database, user, address, order and every reject rule, and under a
// TLS-required mode admits no remote client without TLS.
func checkNotWider(t *testing.T, orig, edited, ssl string) {
	t.Helper()
	a, _ := ParseHBA(orig)
	b, _ := ParseHBA(edited)
	if len(a) != len(b) {
		t.Fatalf("%d rules became %d", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Database != y.Database || x.User != y.User || x.Address != y.Address || x.Mask != y.Mask || strings.Join(x.Options, " ") != strings.Join(y.Options, " ") {
			t.Errorf("rule %d changed its scope: %s -> %s", i, x, y)
		}
		if x.Method == "reject" && (y.Method != "reject" || y.Type != x.Type) {
			t.Errorf("reject rule changed: %s -> %s", x, y)
		}
		remoteTrustToCert := x.Method == "trust" && y.Method == "cert" && y.Type == "hostssl" && x.Remote() // --remote-trust cert
		if x.Method == "trust" && y.Method != "trust" && !remoteTrustToCert || x.Method != "trust" && y.Method == "trust" {
			t.Errorf("trust changed: %s -> %s", x, y)
		}
		if TLSRequired(ssl) && y.Remote() && y.Accepts() && y.Type != "hostssl" {
			t.Errorf("sslMode %s: %s admits remote clients without TLS", ssl, y)
		}
	}
}

// The example: after add, the reject rule and the per-database
// rule are still there, and postgres still may not log in from anywhere.
func TestHBAKeepsRejectAndScope(t *testing.T) {
	orig := "host all postgres 0.0.0.0/0 reject\nhost appdb app 10.0.0.0/8 scram-sha-256\n"
	e, err := EditHBA(orig, HBAOptions{SSLMode: "require", AuthMode: "cert", EnforcedBefore: true, EnforcedAfter: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "host all postgres 0.0.0.0/0 reject\n" + hbaWasPrefix + "host appdb app 10.0.0.0/8 scram-sha-256\nhostssl appdb app 10.0.0.0/8 cert\n"
	if e.Text != want {
		t.Fatalf("got:\n%s\nwant:\n%s", e.Text, want)
	}
	// Default (no --client-auth-mode): scram stays scram.
	e, _ = EditHBA(orig, HBAOptions{SSLMode: "require", AuthMode: "", EnforcedBefore: true, EnforcedAfter: true})
	if !strings.Contains(e.Text, "hostssl appdb app 10.0.0.0/8 scram-sha-256\n") || GuessAuthMode(e.Text) != "scram" {
		t.Fatalf("scram was not kept:\n%s", e.Text)
	}
}

func TestHBAErrors(t *testing.T) {
	for _, tc := range []struct{ text, ssl, want string }{
		{"host all all 0.0.0.0/0 md5\nhost all all 0.0.0.0/0 ident\n", "require", "line 2"},
		{"hots all all 0.0.0.0/0 md5\n", "require", `unknown connection type "hots"`},
		{"host all all 0.0.0.0/0\n", "require", "no METHOD"},
		{"host all all 10.0.0.1 md5\n", "require", "not a netmask"},
		{"host all all 10.0.0.0/33 md5\n", "require", "invalid CIDR mask"},
		{"host all \"bob all 0.0.0.0/0 md5\n", "require", "end of line before the address"},
		{"host all all 0.0.0.0/0 ldap server\n", "require", "not a name=value option"},
		{"hostnossl all all 0.0.0.0/0 md5\n", "require", "forbids"},
	} {
		_, err := EditHBA(tc.text, HBAOptions{SSLMode: tc.ssl, AuthMode: "md5", EnforcedBefore: true, EnforcedAfter: true})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.text, err, tc.want)
		}
	}
	if _, err := EditHBA("hostnossl all all 0.0.0.0/0 md5\n", HBAOptions{SSLMode: "prefer", AuthMode: "md5", EnforcedBefore: true, EnforcedAfter: true}); err != nil {
		t.Errorf("prefer keeps hostnossl rules: %v", err)
	}
}

// No remote rule: nothing is added when pool_hba is enforced (remote
// clients are refused today); a default block when it was not read at all.
func TestHBADefaultBlock(t *testing.T) {
	orig := "local all all trust\nhost all all 127.0.0.1/32 trust\n"
	e, err := EditHBA(orig, HBAOptions{SSLMode: "require", AuthMode: "", EnforcedBefore: true, EnforcedAfter: true})
	if err != nil || e.Text != orig || !e.NoRemote {
		t.Fatalf("enforced: %v %+v", err, e)
	}
	e, err = EditHBA(orig, HBAOptions{SSLMode: "require", AuthMode: "scram", EnforcedAfter: true})
	if err != nil || !e.AddedDefault || !strings.Contains(e.Text, "hostssl all all 0.0.0.0/0 scram-sha-256\n") {
		t.Fatalf("not enforced: %v %+v", err, e)
	}
	back, _ := RestoreHBA(e.Text, "")
	if back.Text != orig {
		t.Fatalf("remove kept the default block:\n%s", back.Text)
	}
}

// A file written by an earlier version (one block for every remote rule)
// gets plain host rules on remove.
func TestHBALegacyBlock(t *testing.T) {
	legacy := "local all all trust\n" + hbaBegin + " (sslMode require, clientAuthMode cert)\nhostssl  all  all  0.0.0.0/0  cert\nhostssl  all  all  ::/0       cert\n" + hbaEnd + "\n"
	if ssl, auth, ok := HBAModes(legacy); !ok || ssl != "require" || auth != "cert" {
		t.Fatalf("HBAModes = %q %q %v", ssl, auth, ok)
	}
	back, err := RestoreHBA(legacy, "scram")
	if err != nil {
		t.Fatal(err)
	}
	rules, _ := ParseHBA(back.Text)
	if len(rules) != 3 || rules[1].String() != "host all all 0.0.0.0/0 scram-sha-256" || rules[2].String() != "host all all ::/0 scram-sha-256" {
		t.Fatalf("legacy block not made plain:\n%s", back.Text)
	}
}

func TestEnforce(t *testing.T) {
	for _, orig := range []string{
		"port = 9999\n",
		"port = 9999\n#enable_pool_hba = off\n",
		"enable_pool_hba = off # default\nport = 9999\n",
		"enable_pool_hba = on\n",
	} {
		c := ParsePgpoolConf(orig)
		changed := Enforce(c)
		if !c.Bool("enable_pool_hba") {
			t.Fatalf("%q: not on:\n%s", orig, c)
		}
		if changed == strings.Contains(orig, "enable_pool_hba = on") {
			t.Fatalf("%q: changed = %v", orig, changed)
		}
		if Enforce(c) {
			t.Fatalf("%q: second Enforce changed it again", orig)
		}
		Unenforce(c)
		if c.String() != orig {
			t.Fatalf("Unenforce did not restore %q:\n%s", orig, c)
		}
	}
}

func TestHBARemote(t *testing.T) {
	for addr, remote := range map[string]bool{
		"127.0.0.1/32": false, "127.0.0.0/8": false, "::1/128": false, "localhost": false, "samehost": false,
		"0.0.0.0/0": true, "::/0": true, "10.0.0.0/8": true, "samenet": true, "all": true, ".example.com": true, "0.0.0.0/1": true,
	} {
		r, _, err := parseRule(1, "host all all "+addr+" md5")
		if err != nil || r.Remote() != remote {
			t.Errorf("%s: Remote() = %v (%v), want %v", addr, r.Remote(), err, remote)
		}
	}
}

// Issue 27, finding 4 (failed before the fix: the marker swallowed the
// line under it): an administrator's rule written under a marker survives
// remove, and the converted rule below still gets its original back.
func TestRestoreKeepsARuleWrittenUnderAMarker(t *testing.T) {
	live := hbaWasPrefix + "host all all 0.0.0.0/0 md5\n" +
		"host all intruder 0.0.0.0/0 reject\n" +
		"hostssl all all 0.0.0.0/0 cert\n"
	back, err := RestoreHBA(live, "md5")
	if err != nil || back.Text != "host all intruder 0.0.0.0/0 reject\nhost all all 0.0.0.0/0 md5\n" {
		t.Fatalf("%v\n%q", err, back.Text)
	}
}

// A converted rule narrowed by hand no longer matches its marker: the
// marker is stale and dropped, the narrowed rule stays narrow (it was
// widened back to 0.0.0.0/0 before the fix). A marker that would give back
// trust for a password rule is not the plugin's and binds to nothing.
func TestStaleMarkersAreDropped(t *testing.T) {
	for _, tc := range []struct{ live, want string }{
		{hbaWasPrefix + "host all all 0.0.0.0/0 md5\nhostssl all all 10.0.0.0/8 cert\n", "hostssl all all 10.0.0.0/8 cert\n"},
		{hbaWasPrefix + "host all all 0.0.0.0/0 trust\nhostssl all all 0.0.0.0/0 md5\n", "hostssl all all 0.0.0.0/0 md5\n"},
		{hbaWasPrefix + "host all all 0.0.0.0/0 md5\n", ""},
	} {
		back, err := RestoreHBA(tc.live, "md5")
		if err != nil || back.Text != tc.want {
			t.Errorf("%q: %v\n%q, want %q", tc.live, err, back.Text, tc.want)
		}
	}
}

// The record of the rules enforce-on saw sees a rule written under a
// marker as a change, so remove keeps enable_pool_hba on.
func TestDigestSeesARuleUnderAMarker(t *testing.T) {
	e, err := EditHBA("host all all 0.0.0.0/0 md5\n", HBAOptions{SSLMode: "require", AuthMode: "cert", EnforcedAfter: true})
	if err != nil {
		t.Fatal(err)
	}
	marked := MarkHBAEnforced(e.Text)
	if changed, known := HBAChangedSinceEnforced(marked); changed || !known {
		t.Fatalf("fresh: %v %v", changed, known)
	}
	edited := strings.Replace(marked, "\nhostssl", "\nhost all intruder 0.0.0.0/0 reject\nhostssl", 1)
	if edited == marked {
		t.Fatalf("no converted rule in\n%s", marked)
	}
	if changed, _ := HBAChangedSinceEnforced(edited); !changed {
		t.Fatalf("a rule under the marker is not a change:\n%s", edited)
	}
}

// Issue 27, finding 3: under cert auth a rule that trusts remote clients is
// refused until the user chooses; "cert" makes it ask for a certificate
// over TLS (and remove puts it back), "keep" keeps it. Before, it was kept
// with a note.
func TestRemoteTrustUnderCert(t *testing.T) {
	orig := "host all repmgr all trust\nhost all all 0.0.0.0/0 scram-sha-256\n"
	o := HBAOptions{SSLMode: "require", AuthMode: "cert", EnforcedBefore: true, EnforcedAfter: true}
	if _, err := EditHBA(orig, o); err == nil || !strings.Contains(err.Error(), "--remote-trust cert") || !strings.Contains(err.Error(), "user repmgr") {
		t.Fatalf("no choice: %v", err)
	}
	o.RemoteTrust = "cert"
	e, err := EditHBA(orig, o)
	if err != nil || !strings.Contains(e.Text, "\nhostssl all repmgr all cert\n") {
		t.Fatalf("cert: %v\n%s", err, e.Text)
	}
	if back, err := RestoreHBA(e.Text, "cert"); err != nil || back.Text != orig {
		t.Fatalf("remove after cert: %v\n%s", err, back.Text)
	}
	o.RemoteTrust = "keep"
	if e, err = EditHBA(orig, o); err != nil || !strings.Contains(e.Text, "hostssl all repmgr all trust") {
		t.Fatalf("keep: %v\n%s", err, e.Text)
	}
	// A loopback trust rule is not a remote one: no choice is asked.
	if _, err := EditHBA("host all all 127.0.0.1/32 trust\nhost all all 0.0.0.0/0 md5\n", HBAOptions{SSLMode: "require", AuthMode: "cert", EnforcedBefore: true, EnforcedAfter: true}); err != nil {
		t.Fatalf("loopback trust: %v", err)
	}
}
