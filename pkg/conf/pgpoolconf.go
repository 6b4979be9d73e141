// Package conf owns the text of pgpool-II's configuration files: it parses
// pgpool.conf and pool_hba.conf by pgpool's own rules (src/config/pool_config.l,
// src/auth/pool_hba.c), edits them in place keeping every other byte, models
// pool_hba.conf's first-match rule so that no edit lets a client in with a
// weaker method than before, and diffs two versions of a file for humans. It
// does no I/O and imports nothing from Kubernetes.
package conf

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// PgpoolConf is a pgpool.conf file held as its lines, so that rendering it
// after edits changes only the lines that were edited. Line endings (LF or
// CRLF) are kept per line.
type PgpoolConf struct {
	lines []string // without the "\n"; a CRLF line keeps its "\r"
	// finalNL: the text ended with a newline.
	finalNL bool
	err     error
}

// assignment is one "key [=] value" of an active line, with the byte span
// of its value in the line.
type assignment struct {
	key, value   string // value without quotes
	valStart     int    // byte offsets of the value token in the line
	valEnd       int
	commentStart int // offset of a trailing "#", or -1
}

// pgpool's lexer (pool_config.l). Go's Longest() gives flex's longest match;
// ties go to the earlier pattern, as in flex.
var (
	reKey      = longest(`^[A-Za-z_\x80-\xff][A-Za-z_0-9\x80-\xff]*`)
	reString   = longest(`^'([^'\n]|\\.)*'`)
	reUnquoted = longest(`^[A-Za-z_\x80-\xff]([A-Za-z_0-9\x80-\xff]|[-._:/])*`)
	reInteger  = longest(`^[-+]?([0-9]+|0x[0-9a-fA-F]+)[a-zA-Z]*`)
	reReal     = longest(`^[-+]?[0-9]*\.[0-9]*([Ee][-+]?[0-9]+)?`)
)

func longest(expr string) *regexp.Regexp {
	re := regexp.MustCompile(expr)
	re.Longest()
	return re
}

type confToken struct {
	// 'k' key, 's' string, 'u' unquoted, 'i' integer, 'r' real, '=' equals,
	// '.' any other character (pgpool's POOL_PARSE_ERROR, which it still
	// takes as a value: "listen_addresses = *")
	kind       byte
	start, end int
}

// lexLine splits one line into pgpool's tokens; comment is the offset of an
// unquoted '#' (or -1). Every character makes a token (pgpool's lexer never
// fails; its parser refuses what is not a key where a key must be).
func lexLine(line string) (toks []confToken, comment int) {
	comment = -1
	for i := 0; i < len(line); {
		switch line[i] {
		case ' ', '\t', '\r':
			i++
			continue
		case '#':
			return toks, i
		case '=':
			toks = append(toks, confToken{'=', i, i + 1})
			i++
			continue
		}
		best, kind := 0, byte(0)
		for _, p := range []struct {
			re   *regexp.Regexp
			kind byte
		}{{reKey, 'k'}, {reString, 's'}, {reUnquoted, 'u'}, {reInteger, 'i'}, {reReal, 'r'}} {
			if m := p.re.FindStringIndex(line[i:]); m != nil && m[1] > best {
				best, kind = m[1], p.kind
			}
		}
		if best == 0 {
			best, kind = 1, '.'
		}
		toks = append(toks, confToken{kind, i, i + best})
		i += best
	}
	return toks, comment
}

// parseAssignments returns the "key [=] value" statements of one line, as
// pgpool's ParseConfigFile reads them.
func parseAssignments(line string) ([]assignment, error) {
	toks, comment := lexLine(line)
	var out []assignment
	for i := 0; i < len(toks); {
		if toks[i].kind != 'k' {
			return nil, fmt.Errorf("pgpool expects a parameter name at %q", line[toks[i].start:])
		}
		key := line[toks[i].start:toks[i].end]
		i++
		if i < len(toks) && toks[i].kind == '=' {
			i++
		}
		if i >= len(toks) {
			// pgpool takes the line's end as the value.
			end := len(strings.TrimRight(line, "\r"))
			if comment >= 0 {
				end = comment
			}
			out = append(out, assignment{key: key, valStart: end, valEnd: end, commentStart: comment})
			break
		}
		v := toks[i]
		val := line[v.start:v.end]
		if v.kind == 's' {
			val = val[1 : len(val)-1]
		}
		out = append(out, assignment{key: key, value: val, valStart: v.start, valEnd: v.end, commentStart: comment})
		i++
	}
	return out, nil
}

// ParsePgpoolConf reads the text of a pgpool.conf file. A line pgpool could
// not parse (pgpool refuses the whole file then) is reported by Err; the
// file is still held as text.
func ParsePgpoolConf(text string) *PgpoolConf {
	c := &PgpoolConf{finalNL: text == "" || strings.HasSuffix(text, "\n")}
	if text == "" {
		return c
	}
	text = strings.TrimSuffix(text, "\n")
	c.lines = strings.Split(text, "\n")
	for i, l := range c.lines {
		if _, err := parseAssignments(l); err != nil && c.err == nil {
			c.err = fmt.Errorf("pgpool.conf line %d (%q): %v; pgpool refuses the whole file, so kubectl-pgpool changes nothing: fix that line first", i+1, strings.TrimRight(l, "\r"), err)
		}
	}
	return c
}

// String renders the file with the line endings it had.
func (c *PgpoolConf) String() string {
	if len(c.lines) == 0 {
		return ""
	}
	s := strings.Join(c.lines, "\n")
	if c.finalNL {
		s += "\n"
	}
	return s
}

// crlf reports whether the file's lines end with "\r\n" (judged by its first
// line).
func (c *PgpoolConf) crlf() bool {
	return len(c.lines) > 0 && strings.HasSuffix(c.lines[0], "\r")
}

// splitLine splits an active single-statement line into its key (as
// written: pgpool compares keys case-sensitively), its unquoted value and
// its trailing comment. ok is false for blank and comment lines and for
// lines pgpool could not read.
func splitLine(line string) (key, value, comment string, ok bool) {
	as, err := parseAssignments(line)
	if err != nil || len(as) == 0 {
		return "", "", "", false
	}
	a := as[len(as)-1]
	if a.commentStart >= 0 {
		comment = strings.TrimRight(line[a.commentStart:], "\r")
	}
	return a.key, a.value, comment, true
}

// Quote returns s as a single-quoted pgpool.conf string. pgpool's lexer
// has no way to write a quote or a trailing backslash inside a string:
// QuoteOK tells whether s can be written.
func Quote(s string) string { return "'" + s + "'" }

// QuoteOK reports whether s can be a pgpool.conf string as it is.
func QuoteOK(s string) bool {
	return !strings.ContainsAny(s, "'\\\n\r")
}

// last returns the line index and assignment of key's last statement (the
// one pgpool uses), or -1.
func (c *PgpoolConf) last(key string) (int, assignment) {
	idx, a := -1, assignment{}
	for i, l := range c.lines {
		as, err := parseAssignments(l)
		if err != nil {
			continue
		}
		for _, x := range as {
			if x.key == key {
				idx, a = i, x
			}
		}
	}
	return idx, a
}

// Get returns the value of key as pgpool reads it: the key's case must
// match, and the last statement for it wins.
func (c *PgpoolConf) Get(key string) (string, bool) {
	i, a := c.last(key)
	return a.value, i >= 0
}

// Line returns the 1-based line of key's last statement (0 when unset).
func (c *PgpoolConf) Line(key string) int {
	i, _ := c.last(key)
	return i + 1
}

// ParseBool reads a boolean as pgpool does: any unique prefix of true,
// false, yes, no; on or off (at least two letters); 1 or 0; any case.
func ParseBool(v string) (bool, bool) {
	if v == "" {
		return false, false
	}
	l := strings.ToLower(v)
	prefix := func(word string, min int) bool {
		return len(l) >= min && len(l) <= len(word) && word[:len(l)] == l
	}
	switch {
	case prefix("true", 1), prefix("yes", 1), prefix("on", 2), l == "1":
		return true, true
	case prefix("false", 1), prefix("no", 1), prefix("off", 2), l == "0":
		return false, true
	}
	return false, false
}

// Bool reports whether key is set to a true value as pgpool reads it
// (false when unset, as for every boolean pgpool-II has that this package
// reads: ssl, enable_pool_hba).
func (c *PgpoolConf) Bool(key string) bool {
	v, _ := c.Get(key)
	b, _ := ParseBool(v)
	return b
}

// BoolErr is Bool, with an error naming the line when the value is not a
// boolean pgpool accepts.
func (c *PgpoolConf) BoolErr(key string) (bool, error) {
	v, ok := c.Get(key)
	if !ok {
		return false, nil
	}
	b, valid := ParseBool(v)
	if !valid {
		return false, fmt.Errorf("pgpool.conf line %d: %s = %q is not a boolean pgpool accepts (on/off, true/false, yes/no, 1/0): fix it first", c.Line(key), key, v)
	}
	return b, nil
}

// Include returns the file names of pgpool.conf's include directives:
// pgpool reads them in place, so settings there are not visible here.
func (c *PgpoolConf) Include() []string {
	var out []string
	for _, l := range c.lines {
		as, _ := parseAssignments(l)
		for _, a := range as {
			if a.key == "include" {
				out = append(out, a.value)
			}
		}
	}
	return out
}

// Keys returns the distinct keys the file sets, in order of first use.
func (c *PgpoolConf) Keys() []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range c.lines {
		as, _ := parseAssignments(l)
		for _, a := range as {
			if !seen[a.key] {
				seen[a.key] = true
				out = append(out, a.key)
			}
		}
	}
	return out
}

// eol is the line ending to give a new line next to line i.
func (c *PgpoolConf) eol(i int) string {
	if i >= 0 && i < len(c.lines) && strings.HasSuffix(c.lines[i], "\r") {
		return "\r"
	}
	if i < 0 && c.crlf() {
		return "\r"
	}
	return ""
}

// Set gives key the raw value (already quoted where needed, see Quote): the
// value of the statement pgpool uses (the last) is replaced in place,
// keeping the rest of its line; if there is none, a line goes after a
// commented-out "#key = ..." template line when the file has one, otherwise
// at the end.
func (c *PgpoolConf) Set(key, raw string) {
	if i, a := c.last(key); i >= 0 {
		l := c.lines[i]
		c.lines[i] = l[:a.valStart] + raw + l[a.valEnd:]
		return
	}
	c.insert(key, key+" = "+raw)
}

// insert adds line for key after its commented template line, or at the
// end, with the file's line ending.
func (c *PgpoolConf) insert(key, line string) {
	for i, l := range c.lines {
		t := strings.TrimSpace(l)
		if !strings.HasPrefix(t, "#") {
			continue
		}
		if k, _, _, ok := splitLine(strings.TrimLeft(t, "# \t")); ok && k == key {
			line += c.eol(i)
			c.lines = append(c.lines[:i+1], append([]string{line}, c.lines[i+1:]...)...)
			return
		}
	}
	c.lines = append(c.lines, line+c.eol(-1))
}

// Unset removes every active line for key; commented lines stay.
func (c *PgpoolConf) Unset(key string) {
	out := c.lines[:0]
	for _, l := range c.lines {
		if k, _, _, ok := splitLine(l); ok && k == key {
			continue
		}
		out = append(out, l)
	}
	c.lines = out
}

// wasMarker follows a line the plugin wrote: the rest of the line is the
// line it replaced, or "unset" when it added the line.
const wasMarker = "# kubectl-pgpool was: "

// SetMarked sets key like Set, but writes a whole line "key = raw" that
// records the line it replaces (or that there was none) in a trailing
// marker comment, so that Restore puts back the exact bytes. Setting a key
// again keeps the first record.
func (c *PgpoolConf) SetMarked(key, raw string) {
	i, _ := c.last(key)
	if i < 0 {
		c.insert(key, key+" = "+raw+" "+wasMarker+"unset")
		return
	}
	l := c.lines[i]
	cr := ""
	if strings.HasSuffix(l, "\r") {
		l, cr = l[:len(l)-1], "\r"
	}
	orig := l
	if at := strings.Index(l, wasMarker); at >= 0 {
		if k, _, _, ok := splitLine(l[:at]); ok && k == key {
			orig = l[at+len(wasMarker):]
		}
	}
	c.lines[i] = key + " = " + raw + " " + wasMarker + orig + cr
}

// Restore undoes SetMarked for key: each line it wrote gets back the line it
// replaced, or goes when it added one. It reports whether key had a marked
// line.
func (c *PgpoolConf) Restore(key string) bool {
	found := false
	for i := 0; i < len(c.lines); i++ {
		l := c.lines[i]
		cr := ""
		if strings.HasSuffix(l, "\r") {
			l, cr = l[:len(l)-1], "\r"
		}
		at := strings.Index(l, wasMarker)
		if at < 0 {
			continue
		}
		k, _, _, ok := splitLine(l[:at])
		if !ok || k != key {
			continue
		}
		found = true
		orig := l[at+len(wasMarker):]
		if orig == "unset" {
			c.lines = append(c.lines[:i], c.lines[i+1:]...)
			i--
			continue
		}
		c.lines[i] = orig + cr
	}
	return found
}

// CaseIgnored returns, for each statement whose key differs only in case
// from one of keys, a sentence naming its line: pgpool compares keys
// case-sensitively and ignores it.
func (c *PgpoolConf) CaseIgnored(keys ...string) []string {
	var out []string
	for i, l := range c.lines {
		as, _ := parseAssignments(l)
		for _, a := range as {
			for _, k := range keys {
				if a.key != k && strings.EqualFold(a.key, k) {
					out = append(out, fmt.Sprintf("pgpool.conf line %d sets %s, which pgpool ignores (its parameter names are compared case-sensitively: %s)", i+1, a.key, k))
				}
			}
		}
	}
	return out
}

// Check returns why pgpool would not read the file as this package does:
// a line pgpool cannot parse, a boolean it does not accept for one of
// bools, or an include directive (the included file is not visible here).
func (c *PgpoolConf) Check(bools ...string) error {
	if c.err != nil {
		return c.err
	}
	for _, k := range bools {
		if _, err := c.BoolErr(k); err != nil {
			return err
		}
	}
	if inc := c.Include(); len(inc) > 0 {
		return fmt.Errorf("pgpool.conf includes %s, which kubectl-pgpool cannot read (settings there may override ssl and enable_pool_hba): move those settings into pgpool.conf first", strings.Join(inc, ", "))
	}
	return nil
}

// Original returns the file as it was before the plugin's marked edits
// (every SetMarked undone).
func (c *PgpoolConf) Original() *PgpoolConf {
	o := &PgpoolConf{lines: slices.Clone(c.lines), finalNL: c.finalNL, err: c.err}
	for _, k := range o.Keys() {
		o.Restore(k)
	}
	return o
}

// Backend is one backend_hostnameN / backend_portN pair of pgpool.conf.
type Backend struct {
	Index int    `json:"index"`
	Host  string `json:"host"`
	Port  int    `json:"port"`
}

// Backends returns the backends pgpool.conf configures, in index order
// (port 5432 when backend_portN is not set).
func (c *PgpoolConf) Backends() []Backend {
	var out []Backend
	for i := 0; i < 128; i++ {
		h, ok := c.Get("backend_hostname" + strconv.Itoa(i))
		if !ok {
			continue
		}
		port := 5432
		if v, ok := c.Get("backend_port" + strconv.Itoa(i)); ok {
			if p, err := strconv.Atoi(v); err == nil {
				port = p
			}
		}
		out = append(out, Backend{Index: i, Host: h, Port: port})
	}
	return out
}
