package conf

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The corpus (testdata/corpus) holds the rules of pool_hba.conf files and
// the TLS, pool_hba and secret statements of pgpool.conf files from public
// projects (pgpool's own samples and regression setups, Docker images,
// Helm charts, operators' docs, people's clusters); each file's .source
// says where it comes from and what was kept.

type corpusFile struct {
	name, text string
	refused    bool
}

func readCorpus(t *testing.T, dir string) []corpusFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "corpus", dir, "*.conf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no corpus in %s: %v", dir, err)
	}
	var out []corpusFile
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		src, err := os.ReadFile(strings.TrimSuffix(p, ".conf") + ".source")
		if err != nil {
			t.Fatalf("%s has no .source sidecar: %v", p, err)
		}
		out = append(out, corpusFile{name: filepath.Base(p), text: string(b), refused: strings.Contains(string(src), "expect: refused")})
	}
	return out
}

// TestCorpusSources: at least 40 pool_hba.conf files from at least 15
// public sources, each with its source.
func TestCorpusSources(t *testing.T) {
	files := readCorpus(t, "hba")
	sources := map[string]bool{}
	for _, f := range files {
		src, _ := os.ReadFile(filepath.Join("testdata", "corpus", "hba", strings.TrimSuffix(f.name, ".conf")+".source"))
		line, _, _ := strings.Cut(string(src), "\n")
		sources[line] = true
	}
	if len(files) < 40 || len(sources) < 15 {
		t.Fatalf("corpus: %d files from %d sources; want at least 40 from 15", len(files), len(sources))
	}
}

// checkEdit runs one edit and asserts what must hold of every edit: no
// probe gets in with a weaker method than both the user's rules (under
// TLS) and what pgpool did before; remove gives back the exact bytes; a
// second edit changes nothing.
func checkEdit(t *testing.T, name, orig string, o HBAOptions) (refused bool) {
	t.Helper()
	e, err := EditHBA(orig, o)
	if err != nil {
		if !strings.Contains(err.Error(), "changes nothing") {
			t.Errorf("%s %+v: a refusal that does not say nothing changed: %v", name, o, err)
		}
		return true
	}
	intent, err := NewHBAModel(orig, o.EnforcedAfter, true)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	before := intent
	before.Enforced, before.SSL = o.EnforcedBefore, o.SSLBefore
	after, err := NewHBAModel(e.Text, o.EnforcedAfter, true)
	if err != nil {
		t.Fatalf("%s %+v: the edited file does not parse: %v\n%s", name, o, err, e.Text)
	}
	if ws := WidenedFrom(after, intent, before); len(ws) > 0 {
		t.Errorf("%s %+v: %d probes widened, e.g. %s\n%s", name, o, len(ws), ws[0], e.Text)
	}
	// Under a TLS-required mode no remote client gets in without TLS,
	// unless it did before through a rule the plugin may not change.
	if TLSRequired(o.SSLMode) && o.EnforcedAfter {
		for _, p := range Probes(after) {
			if p.Local || p.TLS || p.Addr.IsLoopback() || p.SameHost || p.Host == "localhost" {
				continue
			}
			m, l := after.Decide(p)
			if methodLevel(m) < levelReject {
				r := after.Rules[indexOfLine(after.Rules, l)]
				if r.Type != "hostnossl" || r.Remote() {
					t.Errorf("%s %+v: %s gets %s at line %d without TLS", name, o, p, m, l)
					break
				}
			}
		}
	}
	back, err := RestoreHBA(e.Text, o.AuthMode)
	if err != nil {
		t.Errorf("%s %+v: remove refused: %v\n%s", name, o, err, e.Text)
		return false
	}
	if back.Text != orig {
		t.Errorf("%s %+v: remove does not give back the original (%v):\n%s", name, o, err, Diff(orig, back.Text, 1))
	}
	again, err := EditHBA(e.Text, o)
	if err != nil || again.Text != e.Text {
		t.Errorf("%s %+v: not idempotent (%v)", name, o, err)
	}
	return false
}

func indexOfLine(rules []HBARule, line int) int {
	for i, r := range rules {
		if r.Line == line {
			return i
		}
	}
	return 0
}

func corpusOptions() []HBAOptions {
	var out []HBAOptions
	for _, ssl := range SSLModes() {
		for _, auth := range append([]string{""}, ClientAuthModes()...) {
			if ValidateModes(ssl, auth) != nil {
				continue
			}
			for _, before := range []bool{true, false} {
				trusts := []string{""}
				if auth == "cert" {
					trusts = []string{"", "cert", "keep"}
				}
				for _, tr := range trusts {
					out = append(out, HBAOptions{SSLMode: ssl, AuthMode: auth, EnforcedBefore: before,
						EnforcedAfter: before || TLSRequired(ssl) || auth == "cert", RemoteTrust: tr})
				}
			}
		}
	}
	return out
}

// TestCorpusHBA: every file of the corpus parses as pgpool parses it, and
// for every sslMode x auth mode x enforcement no probe is widened, remove
// is byte-exact and a second edit changes nothing.
func TestCorpusHBA(t *testing.T) {
	edits, refusals := 0, 0
	for _, f := range readCorpus(t, "hba") {
		_, err := ParseHBA(f.text)
		if f.refused {
			if err == nil {
				t.Errorf("%s: pgpool refuses this file, the plugin read it", f.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: pgpool reads this file, the plugin does not: %v", f.name, err)
			continue
		}
		for _, o := range corpusOptions() {
			if checkEdit(t, f.name, f.text, o) {
				refusals++
			} else {
				edits++
			}
		}
	}
	t.Logf("%d edits checked, %d refused with a reason", edits, refusals)
	if edits == 0 {
		t.Fatal("no edit was checked")
	}
}

// TestGeneratedRuleOrders shuffles rules of the whole corpus (and rules
// that stress the parser) into files of 2 to 8 rules and checks every edit
// of them as TestCorpusHBA does.
func TestGeneratedRuleOrders(t *testing.T) {
	var pool []string
	for _, f := range readCorpus(t, "hba") {
		if f.refused {
			continue
		}
		for _, l := range splitLines(f.text) {
			if _, ok, _ := parseRule(1, l); ok {
				pool = append(pool, l)
			}
		}
	}
	pool = append(pool,
		"host all all 127.0.0.1/32 trust", "host all all samehost trust", "host all all localhost trust",
		"host all all samenet md5", "host all postgres 0.0.0.0/0 reject", "host db1, db2 app 10/8 md5",
		`host "all" all 0/0 md5`, "host all +admins 0/0 md5", "host sameuser all 0/0 scram-sha-256",
		"hostnossl all legacy 0.0.0.0/0 reject", "host all all ::/0 password", "host all all 0/0 trust",
		"local all all md5", "host all monitor 10.1.0.0 255.255.0.0 trust",
	)
	rng := rand.New(rand.NewPCG(18, 1))
	opts := corpusOptions()
	for i := 0; i < 400; i++ {
		n := 2 + rng.IntN(7)
		var lines []string
		for j := 0; j < n; j++ {
			lines = append(lines, pool[rng.IntN(len(pool))])
		}
		text := strings.Join(lines, "\n") + "\n"
		checkEdit(t, fmt.Sprintf("generated #%d", i), text, opts[rng.IntN(len(opts))])
	}
}

// TestCorpusPgpoolConf: add and remove on every pgpool.conf of the corpus
// (with KubeDB's pool_hba.conf) give back both files byte for byte, read
// ssl and enable_pool_hba as pgpool does, and never show a secret.
func TestCorpusPgpoolConf(t *testing.T) {
	hba := read(t, "kubedb-pool_hba.conf")
	for _, f := range readCorpus(t, "pgpool.conf") {
		for _, crlf := range []bool{false, true} {
			text := f.text
			if crlf {
				text = strings.ReplaceAll(text, "\n", "\r\n")
			}
			for _, o := range []AddOptions{
				{Paths: kubedbPaths, SSLMode: "require", AuthMode: "cert", LeftoverTLS: "comment-out"},
				{Paths: kubedbPaths, SSLMode: "prefer"},
			} {
				add, err := AddTLS(Files{PgpoolConf: text, PoolHBA: hba}, o)
				if err != nil {
					t.Errorf("%s: add: %v", f.name, err)
					continue
				}
				c := ParsePgpoolConf(add.PgpoolConf)
				if !c.Bool("ssl") || (o.SSLMode == "require" && !c.Bool("enable_pool_hba")) {
					t.Errorf("%s: after add ssl=%v enable_pool_hba=%v:\n%s", f.name, c.Bool("ssl"), c.Bool("enable_pool_hba"), add.PgpoolConf)
				}
				if LeftoverTLS(c) != nil && o.LeftoverTLS == "comment-out" {
					t.Errorf("%s: leftover TLS settings still set: %v", f.name, LeftoverTLS(c))
				}
				rm, err := RemoveTLS(add.Files, kubedbPaths, o.AuthMode)
				if err != nil {
					t.Errorf("%s: remove: %v", f.name, err)
					continue
				}
				if rm.PgpoolConf != text || rm.PoolHBA != hba {
					t.Errorf("%s (crlf %v, %s): remove is not byte-exact:\n%s%s", f.name, crlf, o.SSLMode, Diff(text, rm.PgpoolConf, 1), Diff(hba, rm.PoolHBA, 1))
				}
			}
		}
		if m := MaskSecrets(f.text, false); strings.Contains(m, "REDACTED") {
			t.Errorf("%s: a secret value is shown:\n%s", f.name, m)
		}
	}
}
