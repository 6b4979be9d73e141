package conf

// One pool_hba.conf rule as pgpool reads it, and the file read into rules.

import (
	"fmt"
	"strings"
)

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
