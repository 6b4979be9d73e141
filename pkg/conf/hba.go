package conf

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// pool_hba.conf is edited in place, rule by rule, never rewritten: every rule
// keeps its database, user, address, options and position; the plugin only
// changes a rule's connection type (host <-> hostssl) and, for plain
// password rules, its method. Each rule it changes is preceded by a marker
// comment holding the original line, so that remove puts back the exact
// bytes.

// hbaWasPrefix starts the marker comment that holds a changed rule's
// original line.
const hbaWasPrefix = "#kubectl-pgpool was: "

// hbaDefaultBegin and hbaEnd enclose the rules the plugin adds when no rule
// admits remote clients and pool_hba.conf was not enforced until now.
const hbaDefaultBegin = "# BEGIN kubectl-pgpool: added (pool_hba.conf had no rule for remote clients)"

// hbaMethods are the methods pgpool-II's pool_hba.conf knows.
var hbaMethods = map[string]bool{
	"trust": true, "reject": true, "md5": true, "scram-sha-256": true, "password": true,
	"pam": true, "ldap": true, "cert": true,
}

// HBARule is one parsed pool_hba.conf rule.
type HBARule struct {
	Line     int    // 1-based line number in the file
	Type     string // local, host, hostssl, hostnossl
	Database string // the field as written (a comma list)
	User     string
	Address  string // as written; "" for local
	Mask     string
	Method   string
	Options  []string
	Comment  string // a trailing "# ..." comment

	dbs, users  []hbaToken
	addr        hbaAddr
	typeAt      int // byte offsets of the type and method fields
	typeEnd     int
	methodAt    int
	methodEnd   int
	quotedTypes bool // the type or method field is quoted
}

// String renders the rule on one line (single spaces).
func (r HBARule) String() string {
	f := []string{r.Type, r.Database, r.User}
	if r.Type != "local" {
		f = append(f, r.Address)
		if r.Mask != "" {
			f = append(f, r.Mask)
		}
	}
	f = append(f, r.Method)
	f = append(f, r.Options...)
	s := strings.Join(f, " ")
	if r.Comment != "" {
		s += " " + r.Comment
	}
	return s
}

// loopback4 and loopback6 are the addresses of the pod itself.
var (
	loopback4 = netip.MustParsePrefix("127.0.0.0/8")
	loopback6 = netip.MustParsePrefix("::1/128")
)

// Remote reports whether a host rule may match clients other than the
// pgpool pod itself (every address but loopback and samehost).
func (r HBARule) Remote() bool {
	if r.Type == "local" {
		return false
	}
	switch {
	case r.addr.keyword == "samehost", r.addr.hostname == "localhost":
		return false
	case r.addr.keyword != "", r.addr.hostname != "":
		return true
	}
	p := r.addr.prefix
	if p.Addr().Is4() {
		return p.Bits() < 8 || !loopback4.Contains(p.Addr())
	}
	return p.Bits() != 128 || !loopback6.Contains(p.Addr())
}

// Accepts reports whether the rule can let a client in (every method but
// reject).
func (r HBARule) Accepts() bool { return r.Method != "reject" }

// passwordRule reports whether the rule is a plain password rule whose
// method the plugin may change to the requested auth mode: a password
// method, no @file list, no samenet/samehost, no options.
func (r HBARule) passwordRule() bool {
	switch r.Method {
	case "md5", "scram-sha-256", "password":
	default:
		return false
	}
	return r.plain()
}

// plain reports whether the rule has no @file list, samenet/samehost
// address or options.
func (r HBARule) plain() bool {
	return !strings.Contains(r.Database, "@") && !strings.Contains(r.User, "@") &&
		r.addr.keyword != "samenet" && r.addr.keyword != "samehost" && len(r.Options) == 0
}

// HBAParseError names the line of pool_hba.conf that cannot be understood.
type HBAParseError struct {
	Line int
	Text string
	Why  string
}

func (e *HBAParseError) Error() string {
	return fmt.Sprintf("pool_hba.conf line %d (%q): %s; kubectl-pgpool changes nothing it cannot read: fix or remove that line first", e.Line, e.Text, e.Why)
}

// fieldText is the field as written.
func fieldText(line string, f hbaField) string { return line[f.start:f.end] }

// parseRule parses one line as pgpool's parse_hba_line does; ok is false
// for blank and comment lines. pgpool refuses the whole file when one line
// is wrong, and so does this.
func parseRule(num int, line string) (r HBARule, ok bool, err error) {
	line = strings.TrimRight(line, "\r")
	f, comment := hbaFields(line)
	if len(f) == 0 {
		return r, false, nil
	}
	bad := func(why string) (HBARule, bool, error) { return r, false, &HBAParseError{num, line, why} }
	one := func(i int, what string) (string, error) {
		if len(f[i].tokens) > 1 {
			return "", fmt.Errorf("multiple values for the %s", what)
		}
		return f[i].tokens[0].s, nil
	}
	typ, err := one(0, "connection type")
	if err != nil {
		return bad(err.Error())
	}
	r = HBARule{Line: num, Type: typ, Comment: comment, typeAt: f[0].start, typeEnd: f[0].end}
	r.quotedTypes = f[0].tokens[0].quoted
	switch r.Type {
	case "local", "host", "hostssl", "hostnossl":
	default:
		return bad(fmt.Sprintf("unknown connection type %q (pgpool knows local, host, hostssl, hostnossl)", r.Type))
	}
	if len(f) < 3 {
		return bad("a rule needs DATABASE and USER after its type")
	}
	r.Database, r.dbs = fieldText(line, f[1]), f[1].tokens
	r.User, r.users = fieldText(line, f[2]), f[2].tokens
	rest := f[3:]
	if r.Type != "local" {
		a, used, err := parseAddress(rest)
		if err != nil {
			return bad(err.Error())
		}
		r.addr, r.Address = a, fieldText(line, rest[0])
		if used == 2 {
			r.Mask = fieldText(line, rest[1])
		}
		rest = rest[used:]
	}
	if len(rest) == 0 {
		return bad("no METHOD")
	}
	m, err := one(len(f)-len(rest), "method")
	if err != nil {
		return bad(err.Error())
	}
	r.Method, r.methodAt, r.methodEnd = m, rest[0].start, rest[0].end
	r.quotedTypes = r.quotedTypes || rest[0].tokens[0].quoted
	if !hbaMethods[r.Method] {
		return bad(fmt.Sprintf("unknown method %q (pgpool knows trust, reject, md5, scram-sha-256, password, pam, ldap, cert)", r.Method))
	}
	for _, o := range rest[1:] {
		t := fieldText(line, o)
		if !strings.Contains(t, "=") {
			return bad(fmt.Sprintf("%q after the method is not a name=value option", t))
		}
		r.Options = append(r.Options, t)
	}
	return r, true, nil
}

// ParseHBA returns the rules of a pool_hba.conf, or the first line it cannot
// understand.
func ParseHBA(text string) ([]HBARule, error) {
	var out []HBARule
	for i, l := range splitLines(text) {
		r, ok, err := parseRule(i+1, l)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

func splitLines(text string) []string {
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return nil
	}
	return strings.Split(text, "\n")
}

// HBAEdit is the result of editing pool_hba.conf.
type HBAEdit struct {
	Text string
	// Changed lists each changed rule as "line N: OLD -> NEW".
	Changed []string
	// Notes are what the user should know about rules that were kept.
	Notes []string
	// AddedDefault: no rule admitted remote clients and pool_hba.conf was
	// not enforced, so a default block was added.
	AddedDefault bool
	// NoRemote: no rule admits remote clients and none was added (pool_hba
	// is enforced, so remote clients are refused today and after).
	NoRemote bool
	// Added lists each reject rule added after a rule made hostssl, and why.
	Added []string
}

// hbaMethod is the pool_hba.conf method name of a client auth mode.
func hbaMethod(authMode string) string {
	if authMode == "scram" {
		return "scram-sha-256"
	}
	return authMode
}

// AuthModeOf is the client auth mode of a pool_hba.conf method ("" when it
// is not one of md5, scram-sha-256, cert).
func AuthModeOf(method string) string {
	switch method {
	case "md5", "password":
		return "md5"
	case "scram-sha-256":
		return "scram"
	case "cert":
		return "cert"
	}
	return ""
}

// hbaAdded ends every rule the plugin adds next to a rule it changed.
const hbaAdded = "# kubectl-pgpool: added"

// hbaDigestPrefix starts the comment line that records, when the plugin
// turned enable_pool_hba on, a digest of the rules the file had then.
const hbaDigestPrefix = "#kubectl-pgpool enforced this file; its rules then, sha256: "

// unmark splits text into lines, putting back the original of every rule
// that carries a marker: the result is the file as it was before any edit
// of the plugin, except for default blocks, which are dropped.
func unmark(text string) []string {
	var out []string
	lines := splitLines(text)
	inDefault := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, hbaDefaultBegin):
			inDefault = true
			continue
		case inDefault:
			if strings.HasPrefix(t, hbaEnd) {
				inDefault = false
			}
			continue
		case strings.HasPrefix(l, hbaWasPrefix):
			out = append(out, strings.TrimPrefix(l, hbaWasPrefix))
			if i+1 < len(lines) {
				i++ // the edited rule it stands for
			}
			continue
		case strings.HasSuffix(t, hbaAdded), strings.HasPrefix(t, hbaDigestPrefix):
			continue
		}
		out = append(out, l)
	}
	return out
}

// HBAOptions says what EditHBA edits for.
type HBAOptions struct {
	SSLMode  string
	AuthMode string // "" keeps every rule's method
	// EnforcedBefore: pgpool read pool_hba.conf before the change
	// (enable_pool_hba on, as the user set it); EnforcedAfter: it will.
	EnforcedBefore, EnforcedAfter bool
	// SSLBefore: ssl was on before the change.
	SSLBefore bool
}

// EditHBA edits pool_hba.conf for TLS with o.SSLMode and o.AuthMode.
//
//   - Comments, local rules, loopback rules and reject rules are kept.
//   - Under require, verify-ca and verify-full, every remote rule that lets a
//     client in becomes hostssl, so a connection without TLS matches no rule
//     that admits it; a hostnossl rule that admits clients is an error.
//   - A connection without TLS that matched a rule made hostssl now goes on
//     to the rules after it. When one of those would let it in with a weaker
//     method (a loopback trust rule after "host all all 0.0.0.0/0 md5"), a
//     "hostnossl ... reject" rule with the same scope is added right after
//     the changed rule, so it is refused instead.
//   - The method of a plain password rule (md5, scram-sha-256, password; no
//     @file list, samenet/samehost or options) becomes AuthMode. Other
//     methods (trust, ldap, pam, cert) are kept, and noted when they differ.
//   - When no rule admits remote clients: if pool_hba.conf was not enforced
//     (every client got in) and will be, a marked default block admits them
//     with AuthMode over TLS; otherwise nothing is added.
//
// Every edit is checked with the first-match model (HBAModel): no connection
// attempt may get in with a weaker method than before; if one would, the
// edit is refused. Editing is idempotent: a rule changed before is edited
// again from its recorded original.
func EditHBA(text string, o HBAOptions) (*HBAEdit, error) {
	if err := ValidateModes(o.SSLMode, o.AuthMode); err != nil {
		return nil, err
	}
	lines := unmark(text)
	e := &HBAEdit{}
	var out []string
	remoteAccept := false
	lastRemote := -1
	type converted struct {
		rule HBARule
		at   int // index in out of the new rule
		line string
	}
	var conv []converted
	for i, l := range lines {
		r, ok, err := parseRule(i+1, l)
		if err != nil {
			return nil, err
		}
		if !ok || !r.Remote() {
			out = append(out, l)
			continue
		}
		lastRemote = len(out)
		if !r.Accepts() {
			out = append(out, l)
			continue
		}
		remoteAccept = true
		n := r
		if TLSRequired(o.SSLMode) {
			switch r.Type {
			case "host":
				n.Type = "hostssl"
			case "hostnossl":
				return nil, &HBAParseError{r.Line, l, fmt.Sprintf("this rule admits only connections without TLS, which --ssl-mode %s forbids; delete it, make it reject, or choose --ssl-mode prefer", o.SSLMode)}
			}
		}
		if o.AuthMode != "" && r.Method != hbaMethod(o.AuthMode) {
			switch {
			case r.passwordRule():
				n.Method = hbaMethod(o.AuthMode)
			case r.Method == "cert" && o.AuthMode != "cert" && r.plain():
				n.Method = hbaMethod(o.AuthMode)
			default:
				e.Notes = append(e.Notes, fmt.Sprintf("pool_hba.conf line %d (%s) keeps its method %s (only plain md5/scram-sha-256/password rules without @file lists, samenet/samehost or options change to %s)", r.Line, strings.Join(strings.Fields(l), " "), r.Method, hbaMethod(o.AuthMode)))
			}
		}
		if n.Method == "cert" && n.Type != "hostssl" {
			return nil, &HBAParseError{r.Line, l, "cert needs a hostssl rule"}
		}
		if n.Type == r.Type && n.Method == r.Method {
			out = append(out, l)
			continue
		}
		if r.Method == "scram-sha-256" && n.Method == "md5" {
			e.Notes = append(e.Notes, fmt.Sprintf("pool_hba.conf line %d: scram-sha-256 is downgraded to md5, as --client-auth-mode md5 asks", r.Line))
		}
		nl := rewrite(l, r, n)
		e.Changed = append(e.Changed, fmt.Sprintf("line %d: %s -> %s", r.Line, r.String(), n.String()))
		out = append(out, hbaWasPrefix+l, nl)
		if n.Type == "hostssl" && r.Type != "hostssl" {
			conv = append(conv, converted{r, len(out) - 1, l})
		}
	}
	if !remoteAccept {
		if o.EnforcedBefore || !o.EnforcedAfter {
			e.NoRemote = o.EnforcedBefore
		} else {
			auth := o.AuthMode
			if auth == "" {
				auth = "md5"
			}
			typ := "host"
			if TLSRequired(o.SSLMode) {
				typ = "hostssl"
			}
			block := []string{hbaDefaultBegin,
				fmt.Sprintf("%s all all 0.0.0.0/0 %s", typ, hbaMethod(auth)),
				fmt.Sprintf("%s all all ::/0 %s", typ, hbaMethod(auth)),
				hbaEnd}
			e.AddedDefault = true
			// After the last remote (reject) rule, or at the end.
			at := len(out)
			if lastRemote >= 0 {
				at = lastRemote + 1
			}
			out = append(out[:at], append(block, out[at:]...)...)
		}
	}
	// What the user's own rules say once TLS is on (intent), and what pgpool
	// did before the change (before): the edit may be as weak as either of
	// them for a connection, never weaker than both.
	intent, err := NewHBAModel(joinLines(lines), o.EnforcedAfter, true)
	if err != nil {
		return nil, err
	}
	before := intent
	before.Enforced, before.SSL = o.EnforcedBefore, o.SSLBefore
	after, err := NewHBAModel(joinLines(out), o.EnforcedAfter, true)
	if err != nil {
		return nil, fmt.Errorf("pool_hba.conf after the edit cannot be read (a bug of kubectl-pgpool; nothing was changed): %w", err)
	}
	// A plain connection that fell through a rule made hostssl to a weaker
	// rule: refuse it right after that rule.
	need := map[int]Widening{}
	for _, w := range Widened(intent, after) {
		for _, c := range conv {
			if w.BeforeLine == c.rule.Line && !w.Probe.TLS {
				if _, ok := need[c.at]; !ok {
					need[c.at] = w
				}
			}
		}
	}
	for k := len(conv) - 1; k >= 0; k-- {
		c := conv[k]
		w, ok := need[c.at]
		if !ok {
			continue
		}
		rej := c.rule
		rej.Type, rej.Method, rej.Options, rej.Comment = "hostnossl", "reject", nil, hbaAdded
		rl := rej.String()
		if strings.HasSuffix(c.line, "\r") {
			rl += "\r"
		}
		out = append(out[:c.at+1], append([]string{rl}, out[c.at+1:]...)...)
		e.Added = append(e.Added, fmt.Sprintf("after line %d: %s (a connection without TLS that matched line %d would otherwise reach %s at line %d, e.g. %s)", c.rule.Line, strings.TrimSuffix(rl, " "+hbaAdded), c.rule.Line, w.After, w.AfterLine, w.Probe))
	}
	slices.Reverse(e.Added)
	e.Text = joinLines(out)
	after, err = NewHBAModel(e.Text, o.EnforcedAfter, true)
	if err != nil {
		return nil, fmt.Errorf("pool_hba.conf after the edit cannot be read (a bug of kubectl-pgpool; nothing was changed): %w", err)
	}
	if ws := WidenedFrom(after, intent, before); len(ws) > 0 {
		return nil, fmt.Errorf("the pool_hba.conf edit would let a client in with a weaker method than today (%s); kubectl-pgpool refuses it and changes nothing: reorder or narrow the rules by hand", ws[0])
	}
	return e, nil
}

// rewrite changes the type and method of rule r on its line to those of n,
// keeping the rest of the line, and its column alignment where the spaces
// allow.
func rewrite(line string, r, n HBARule) string {
	out := line[:r.methodAt] + n.Method + line[r.methodEnd:]
	out = out[:r.typeAt] + n.Type + out[r.typeEnd:]
	// Keep the next column where it was: take spaces after the type.
	oldLen := r.typeEnd - r.typeAt
	if d := len(n.Type) - oldLen; d > 0 {
		end := r.typeAt + len(n.Type)
		sp := 0
		for end+sp < len(out) && out[end+sp] == ' ' {
			sp++
		}
		if sp > d {
			out = out[:end] + out[end+d:]
		}
	} else if d < 0 {
		end := r.typeAt + len(n.Type)
		out = out[:end] + strings.Repeat(" ", -d) + out[end:]
	}
	return out
}

func joinLines(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return strings.Join(l, "\n") + "\n"
}
