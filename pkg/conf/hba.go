package conf

import (
	"fmt"
	"net"
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
	Database string
	User     string
	Address  string // CIDR, IP (with Mask), host name or keyword; "" for local
	Mask     string
	Method   string
	Options  []string
	Comment  string // a trailing "# ..." comment
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
// pgpool pod itself (every address but loopback).
func (r HBARule) Remote() bool {
	if r.Type == "local" {
		return false
	}
	switch r.Address {
	case "localhost", "samehost":
		return false
	}
	if r.Mask != "" {
		ip, mask := net.ParseIP(r.Address), net.ParseIP(r.Mask)
		if ip == nil || mask == nil {
			return true
		}
		if m4 := mask.To4(); m4 != nil {
			ones, _ := net.IPMask(m4).Size()
			return !loopbackNet(ip, ones, 32)
		}
		ones, bits := net.IPMask(mask).Size()
		return !loopbackNet(ip, ones, bits)
	}
	if ip, n, err := net.ParseCIDR(r.Address); err == nil {
		ones, bits := n.Mask.Size()
		return !loopbackNet(ip, ones, bits)
	}
	if ip := net.ParseIP(r.Address); ip != nil {
		return !ip.IsLoopback()
	}
	return true
}

// loopbackNet reports whether the network ip/ones lies within loopback
// (127.0.0.0/8 or ::1/128).
func loopbackNet(ip net.IP, ones, bits int) bool {
	if !ip.IsLoopback() {
		return false
	}
	if bits == 32 {
		return ones >= 8
	}
	return ones == 128
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
		r.Address != "samenet" && r.Address != "samehost" && len(r.Options) == 0
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

// tokens splits a pool_hba.conf line into fields, keeping double-quoted
// fields whole, and returns the trailing "# ..." comment apart.
func tokens(line string) (fields []string, comment string, err error) {
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '"':
			inQuote = !inQuote
			cur.WriteByte(c)
			have = true
		case inQuote:
			cur.WriteByte(c)
		case c == '#':
			if have {
				fields = append(fields, cur.String())
			}
			return fields, strings.TrimSpace(line[i:]), nil
		case c == ' ' || c == '\t' || c == '\r':
			if have {
				fields = append(fields, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if inQuote {
		return nil, "", fmt.Errorf("unterminated double quote")
	}
	if have {
		fields = append(fields, cur.String())
	}
	return fields, "", nil
}

// parseRule parses one active line; ok is false for blank and comment lines.
func parseRule(num int, line string) (r HBARule, ok bool, err error) {
	f, comment, err := tokens(line)
	if err != nil {
		return r, false, &HBAParseError{num, line, err.Error()}
	}
	if len(f) == 0 {
		return r, false, nil
	}
	if strings.HasSuffix(strings.TrimSpace(line), "\\") {
		return r, false, &HBAParseError{num, line, "line continuations are not supported"}
	}
	r = HBARule{Line: num, Type: f[0], Comment: comment}
	rest := f[1:]
	switch r.Type {
	case "local":
		if len(rest) < 3 {
			return r, false, &HBAParseError{num, line, "a local rule needs DATABASE USER METHOD"}
		}
		r.Database, r.User, r.Method, r.Options = rest[0], rest[1], rest[2], rest[3:]
	case "host", "hostssl", "hostnossl":
		if len(rest) < 4 {
			return r, false, &HBAParseError{num, line, "a host rule needs DATABASE USER ADDRESS METHOD"}
		}
		r.Database, r.User, r.Address = rest[0], rest[1], rest[2]
		rest = rest[3:]
		if !strings.Contains(r.Address, "/") && net.ParseIP(r.Address) != nil {
			if net.ParseIP(rest[0]) == nil {
				return r, false, &HBAParseError{num, line, fmt.Sprintf("address %s has no /prefix and %q is not a netmask", r.Address, rest[0])}
			}
			r.Mask, rest = rest[0], rest[1:]
			if len(rest) == 0 {
				return r, false, &HBAParseError{num, line, "no METHOD after the netmask"}
			}
		} else if strings.Contains(r.Address, "/") {
			if _, _, err := net.ParseCIDR(r.Address); err != nil {
				return r, false, &HBAParseError{num, line, fmt.Sprintf("address %s is not a valid CIDR", r.Address)}
			}
		}
		r.Method, r.Options = rest[0], rest[1:]
	default:
		return r, false, &HBAParseError{num, line, fmt.Sprintf("unknown connection type %q (pgpool knows local, host, hostssl, hostnossl)", r.Type)}
	}
	if !hbaMethods[r.Method] {
		return r, false, &HBAParseError{num, line, fmt.Sprintf("unknown method %q (pgpool knows trust, reject, md5, scram-sha-256, password, pam, ldap, cert)", r.Method)}
	}
	for _, o := range r.Options {
		if !strings.Contains(o, "=") {
			return r, false, &HBAParseError{num, line, fmt.Sprintf("%q after the method is not a name=value option", o)}
		}
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
		}
		out = append(out, l)
	}
	return out
}

// EditHBA edits pool_hba.conf for TLS with sslMode and authMode ("" keeps
// every rule's method). enforced says whether pgpool reads pool_hba.conf
// (enable_pool_hba = on) before the change.
//
//   - Comments, local rules, loopback rules and reject rules are kept.
//   - Under require, verify-ca and verify-full, every remote rule that lets a
//     client in becomes hostssl, so a connection without TLS matches no rule
//     that admits it; a hostnossl rule that admits clients is an error.
//   - The method of a plain password rule (md5, scram-sha-256, password; no
//     @file list, samenet/samehost or options) becomes authMode. Other
//     methods (trust, ldap, pam, cert) are kept, and noted when they differ.
//   - When no rule admits remote clients: if pool_hba.conf was not enforced
//     (every client got in), a marked default block admits them with
//     authMode over TLS; if it was, nothing is added.
//
// Editing is idempotent: a rule changed before is edited again from its
// recorded original.
func EditHBA(text, sslMode, authMode string, enforced bool) (*HBAEdit, error) {
	if err := ValidateModes(sslMode, authMode); err != nil {
		return nil, err
	}
	lines := unmark(text)
	e := &HBAEdit{}
	var out []string
	remoteAccept := false
	lastRemote := -1
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
		if TLSRequired(sslMode) {
			switch r.Type {
			case "host":
				n.Type = "hostssl"
			case "hostnossl":
				return nil, &HBAParseError{r.Line, l, fmt.Sprintf("this rule admits only connections without TLS, which --ssl-mode %s forbids; delete it, make it reject, or choose --ssl-mode prefer", sslMode)}
			}
		}
		if authMode != "" && r.Method != hbaMethod(authMode) {
			switch {
			case r.passwordRule():
				n.Method = hbaMethod(authMode)
			case r.Method == "cert" && authMode != "cert" && r.plain():
				n.Method = hbaMethod(authMode)
			default:
				e.Notes = append(e.Notes, fmt.Sprintf("pool_hba.conf line %d (%s) keeps its method %s (only plain md5/scram-sha-256/password rules without @file lists, samenet/samehost or options change to %s)", r.Line, strings.Join(strings.Fields(l), " "), r.Method, hbaMethod(authMode)))
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
	}
	if !remoteAccept {
		if enforced {
			e.NoRemote = true
		} else {
			auth := authMode
			if auth == "" {
				auth = "md5"
			}
			typ := "host"
			if TLSRequired(sslMode) {
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
	e.Text = joinLines(out)
	return e, nil
}

// RestoreHBA undoes EditHBA for remove (TLS off): every rule the plugin
// changed gets its original line back and its default block goes, so a file
// that add edited reads byte for byte as before. Rules inside the block that
// earlier versions of the plugin wrote become host rules (cert becomes
// authMode, md5 when ""), so that remote clients are not locked out; any
// other hostssl or cert rule is kept and noted (pgpool ignores it while ssl
// is off).
func RestoreHBA(text, authMode string) (*HBAEdit, error) {
	if authMode == "" || authMode == "cert" {
		authMode = "md5"
	}
	lines := unmark(text)
	e := &HBAEdit{}
	var out []string
	inLegacy := false
	for i, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, hbaBegin):
			inLegacy = true
		case strings.HasPrefix(t, hbaEnd):
			inLegacy = false
		}
		r, ok, err := parseRule(i+1, l)
		if err != nil {
			return nil, err
		}
		if !ok || !r.Remote() || !r.Accepts() || (r.Type != "hostssl" && r.Method != "cert") {
			out = append(out, l)
			continue
		}
		if !inLegacy {
			e.Notes = append(e.Notes, fmt.Sprintf("pool_hba.conf line %d (%s) is kept: pgpool ignores hostssl and cert rules while ssl is off, so the clients it admits are refused after remove", r.Line, r.String()))
			out = append(out, l)
			continue
		}
		n := r
		n.Type = "host"
		if n.Method == "cert" {
			n.Method = hbaMethod(authMode)
		}
		e.Changed = append(e.Changed, fmt.Sprintf("line %d: %s -> %s", r.Line, r.String(), n.String()))
		out = append(out, rewrite(l, r, n))
	}
	e.Text = joinLines(out)
	return e, nil
}

// rewrite changes the type and method of rule r on its line to those of n,
// keeping the rest of the line, and its column alignment where the spaces
// allow.
func rewrite(line string, r, n HBARule) string {
	typeAt := strings.Index(line, r.Type)
	methodIdx := 3 // type database user [address [mask]] method
	if r.Type != "local" {
		methodIdx++
		if r.Mask != "" {
			methodIdx++
		}
	}
	methodAt := fieldStart(line, methodIdx)
	if typeAt < 0 || methodAt < 0 {
		return n.String()
	}
	out := line[:methodAt] + n.Method + line[methodAt+len(r.Method):]
	out = out[:typeAt] + n.Type + out[typeAt+len(r.Type):]
	// Keep the next column where it was: take spaces after the type.
	if d := len(n.Type) - len(r.Type); d > 0 {
		end := typeAt + len(n.Type)
		sp := 0
		for end+sp < len(out) && out[end+sp] == ' ' {
			sp++
		}
		if sp > d {
			out = out[:end] + out[end+d:]
		}
	} else if d < 0 {
		end := typeAt + len(n.Type)
		out = out[:end] + strings.Repeat(" ", -d) + out[end:]
	}
	return out
}

// fieldStart returns the byte offset of the i-th (0-based) field of a rule
// line, honouring double quotes.
func fieldStart(line string, i int) int {
	n, in, quoted := -1, false, false
	for p := 0; p < len(line); p++ {
		c := line[p]
		space := !quoted && (c == ' ' || c == '\t')
		if !space && !in {
			in = true
			n++
			if n == i {
				return p
			}
		}
		if space {
			in = false
		}
		if c == '"' {
			quoted = !quoted
		}
	}
	return -1
}

func joinLines(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return strings.Join(l, "\n") + "\n"
}

// HBASSLMode derives the sslMode pool_hba.conf enforces when ssl is on:
// require when no remote rule admits connections without TLS, else prefer.
func HBASSLMode(text string) string {
	rules, err := ParseHBA(text)
	if err != nil {
		return "prefer"
	}
	for _, r := range rules {
		if r.Remote() && r.Accepts() && r.Type != "hostssl" {
			return "prefer"
		}
	}
	return "require"
}

// GuessAuthMode returns the client auth mode of the first remote rule that
// admits clients with md5, scram-sha-256, password or cert; md5 when there
// is none.
func GuessAuthMode(text string) string {
	rules, _ := ParseHBA(text)
	for _, r := range rules {
		if r.Remote() && AuthModeOf(r.Method) != "" {
			return AuthModeOf(r.Method)
		}
	}
	return "md5"
}

// LoopbackTrust returns the host rules of pool_hba.conf that trust loopback
// addresses (with or without TLS).
func LoopbackTrust(text string) []string {
	rules, _ := ParseHBA(text)
	var out []string
	for _, r := range rules {
		if r.Type != "local" && !r.Remote() && r.Method == "trust" && r.Type != "hostssl" {
			out = append(out, r.String())
		}
	}
	return out
}

// Enforce sets enable_pool_hba = on, recording the line it replaces (or that
// there was none) in a trailing marker comment, so that Unenforce puts the
// file back as it was. It reports whether anything changed.
func Enforce(c *PgpoolConf) bool {
	if c.Bool("enable_pool_hba") {
		return false
	}
	idx := -1
	for i, l := range c.lines {
		if k, _, _, ok := splitLine(l); ok && k == "enable_pool_hba" {
			idx = i
		}
	}
	if idx < 0 {
		c.Set("enable_pool_hba", "on "+enforceMarker+"unset")
		return true
	}
	c.lines[idx] = "enable_pool_hba = on " + enforceMarker + c.lines[idx]
	return true
}

const enforceMarker = "# kubectl-pgpool was: "

// Unenforce undoes Enforce: the line it changed gets its original back (or
// goes, when there was none).
func Unenforce(c *PgpoolConf) {
	for i := 0; i < len(c.lines); i++ {
		l := c.lines[i]
		k, _, comment, ok := splitLine(l)
		if !ok || k != "enable_pool_hba" {
			continue
		}
		idx := strings.Index(l, enforceMarker)
		if idx < 0 || !strings.HasPrefix(comment, enforceMarker) {
			continue
		}
		orig := l[idx+len(enforceMarker):]
		if orig == "unset" {
			c.lines = append(c.lines[:i], c.lines[i+1:]...)
			i--
			continue
		}
		c.lines[i] = orig
	}
}
