package conf

// The negative proof's side of pool_hba.conf: which logins a probe tries
// against a live pgpool, and what the file says of each, so that pgpool's
// real answer can be judged.

import (
	"fmt"
	"net/netip"
	"strings"
)

// PortForwardAddr is where a connection through the API server's
// port-forward comes from, as pgpool sees it: the kubelet's runtime dials
// localhost inside the pod's network namespace.
var PortForwardAddr = netip.MustParseAddr("127.0.0.1")

// maxAttempts bounds the logins one probe tries per kind (each is a
// connection through port-forward).
const maxAttempts = 8

// Attempt is one login the negative proof tries. No password or
// certificate is ever sent: pgpool must refuse it before asking for one.
type Attempt struct {
	DB   string `json:"database"`
	User string `json:"user"`
}

func (a Attempt) String() string { return fmt.Sprintf("user %s to database %s", a.User, a.DB) }

// RefusalAttempts returns the logins to try: postgres, a user no rule
// names (random, chosen by the caller), and each user and database the
// rules name (a +group or an @file is not a user name), at most
// maxAttempts in all.
func RefusalAttempts(text, random string) []Attempt {
	out := []Attempt{{DB: "postgres", User: "postgres"}, {DB: "postgres", User: random}}
	seen := map[Attempt]bool{out[0]: true, out[1]: true}
	rules, _ := ParseHBA(text)
	add := func(a Attempt) {
		if len(out) < maxAttempts && !seen[a] && a.User != "" && a.DB != "" {
			seen[a] = true
			out = append(out, a)
		}
	}
	name := func(t hbaToken) string {
		if t.quoted {
			return t.s
		}
		switch {
		case t.s == "all", t.s == "sameuser", t.s == "samegroup", t.s == "samerole", t.s == "replication",
			strings.HasPrefix(t.s, "+"), strings.HasPrefix(t.s, "@"):
			return ""
		}
		return t.s
	}
	for _, r := range rules {
		if r.Type == "local" {
			continue
		}
		db := "postgres"
		for _, t := range r.dbs {
			if n := name(t); n != "" {
				db = n
				break
			}
		}
		named := false
		for _, t := range r.users {
			if n := name(t); n != "" {
				add(Attempt{DB: db, User: n})
				named = true
			}
		}
		if !named {
			add(Attempt{DB: db, User: "postgres"})
		}
	}
	return out
}

// Verdict is what the file pgpool should read says of an attempt through
// port-forward.
type Verdict struct {
	// Method is the rule's method ("" when the file is not read,
	// "implicit reject" when no rule matches); Line its line.
	Method string
	Line   int
	// Rule is the rule as written ("" for none).
	Rule string
	// Loopback: the rule admits the attempt only because port-forward
	// comes from the pod's own address (a loopback or samehost rule), so a
	// client elsewhere is not judged by it.
	Loopback bool
	// FileList is the line of an earlier rule whose @file list may hold
	// the attempt's user or database (0: none), FileRule that rule: what
	// pgpool decides depends on a file the plugin does not read.
	FileList int
	FileRule string
}

// Admits reports whether the file lets the attempt reach authentication
// (or in without it). An attempt carries no client certificate, so a cert
// rule refuses it.
func (v Verdict) Admits() bool { return methodLevel(v.Method) < levelReject && v.Method != "cert" }

// JudgeAttempt is the file's decision for an attempt through port-forward,
// with or without TLS, and without a client certificate.
func (m HBAModel) JudgeAttempt(a Attempt, tlsOn bool) Verdict {
	p := Probe{TLS: tlsOn, Addr: PortForwardAddr, SameHost: true, SameNet: true, DB: a.DB, User: a.User}
	method, line := m.Decide(p)
	v := Verdict{Method: method, Line: line}
	if m.Enforced {
		// A rule before the deciding one whose @file list could hold the
		// attempt's user or database: pgpool reads that file, the plugin
		// does not, so the file's answer is not known.
		q := p
		if !m.SSL {
			q.TLS = false
		}
		for _, r := range m.Rules {
			if r.matches(q) {
				break
			}
			if f, ok := r.withFilesAsAll(); ok && f.matches(q) {
				v.FileList = r.Line
				v.FileRule = r.String()
				break
			}
		}
	}
	for _, r := range m.Rules {
		if r.Line == line && line > 0 {
			v.Rule = r.String()
			v.Loopback = !r.Remote() || r.addr.keyword == "samenet"
		}
	}
	return v
}

// Explain says why pgpool's answer to an attempt is what it is, given what
// the file says: admitted by the file's rule, by a rule that only
// port-forward's address meets, or against the file (pgpool does not read
// it).
func (v Verdict) Explain(admitted bool) string {
	switch {
	case v.FileList > 0 && admitted:
		return fmt.Sprintf("pool_hba.conf line %d (%s) names an @file list, which pgpool reads from a file the plugin does not see: it may admit it", v.FileList, v.FileRule)
	case admitted && v.Method == "":
		return "pool_hba.conf is not read (enable_pool_hba is off): pgpool lets every client through to the backend's own authentication"
	case admitted && !v.Admits():
		rule := "no rule matches it"
		switch {
		case v.Method == "cert":
			rule = fmt.Sprintf("line %d (%s) asks it for a client certificate, which it did not send", v.Line, v.Rule)
		case v.Line > 0:
			rule = fmt.Sprintf("line %d (%s) refuses it", v.Line, v.Rule)
		}
		return fmt.Sprintf("the pool_hba.conf the plugin reads says %s, so pgpool does not enforce that file (enable_pool_hba off where the plugin does not look, another file given with -a, or the file changed in the container after it was written)", rule)
	case admitted && v.Loopback:
		return fmt.Sprintf("pool_hba.conf line %d (%s) admits port-forward's %s; a client elsewhere is judged by later rules, which this probe cannot reach", v.Line, v.Rule, PortForwardAddr)
	case admitted:
		return fmt.Sprintf("pool_hba.conf line %d (%s) admits it", v.Line, v.Rule)
	case v.Line > 0:
		return fmt.Sprintf("refused, as line %d (%s) says", v.Line, v.Rule)
	}
	return "refused: no rule of pool_hba.conf matches it"
}
