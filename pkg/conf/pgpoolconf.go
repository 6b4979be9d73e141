// Package conf owns the text of pgpool-II's configuration files: it parses
// pgpool.conf keeping comments, order and unrelated lines, sets and unsets
// keys, renders the pool_hba.conf rules for each sslMode x clientAuthMode, and
// diffs two versions of a file for humans. It does no I/O and imports nothing
// from Kubernetes.
package conf

import (
	"strconv"
	"strings"
)

// PgpoolConf is a pgpool.conf file held as its lines, so that rendering it
// after edits changes only the lines that were edited.
type PgpoolConf struct {
	lines []string
}

// ParsePgpoolConf reads the text of a pgpool.conf file.
func ParsePgpoolConf(text string) *PgpoolConf {
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return &PgpoolConf{}
	}
	return &PgpoolConf{lines: strings.Split(text, "\n")}
}

// String renders the file, ending with a newline.
func (c *PgpoolConf) String() string {
	if len(c.lines) == 0 {
		return ""
	}
	return strings.Join(c.lines, "\n") + "\n"
}

// splitLine splits an active "key = value # comment" line. ok is false for
// blank lines and comment lines.
func splitLine(line string) (key, value, comment string, ok bool) {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(t, "#") {
		return "", "", "", false
	}
	eq := strings.IndexAny(t, "= \t")
	if eq <= 0 {
		return "", "", "", false
	}
	key = t[:eq]
	rest := strings.TrimLeft(t[eq:], " \t")
	rest = strings.TrimPrefix(rest, "=")
	rest = strings.TrimLeft(rest, " \t")
	value, comment = splitComment(rest)
	return strings.ToLower(key), value, comment, true
}

// splitComment separates a value from a trailing "# comment", ignoring '#'
// inside single quotes.
func splitComment(s string) (value, comment string) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\'':
			inQuote = !inQuote
		case '#':
			if !inQuote {
				return strings.TrimRight(s[:i], " \t"), s[i:]
			}
		}
	}
	return strings.TrimRight(s, " \t"), ""
}

// Unquote returns a pgpool.conf value without its single quotes.
func Unquote(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return strings.ReplaceAll(v[1:len(v)-1], "''", "'")
	}
	return v
}

// Quote returns s as a single-quoted pgpool.conf string.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// Get returns the unquoted value of key as pgpool reads it: the last active
// line for that key wins.
func (c *PgpoolConf) Get(key string) (string, bool) {
	key = strings.ToLower(key)
	val, found := "", false
	for _, l := range c.lines {
		if k, v, _, ok := splitLine(l); ok && k == key {
			val, found = Unquote(v), true
		}
	}
	return val, found
}

// Bool reports whether key is set to one of pgpool's true spellings.
func (c *PgpoolConf) Bool(key string) bool {
	v, _ := c.Get(key)
	switch strings.ToLower(v) {
	case "on", "true", "yes", "1":
		return true
	}
	return false
}

// Set gives key the raw value (already quoted where needed, see Quote). Every
// active line for key is rewritten in place, keeping its trailing comment; if
// there is none, the line goes after a commented-out "#key = ..." template
// line when the file has one, otherwise at the end.
func (c *PgpoolConf) Set(key, raw string) {
	key = strings.ToLower(key)
	found := false
	for i, l := range c.lines {
		k, _, comment, ok := splitLine(l)
		if !ok || k != key {
			continue
		}
		found = true
		nl := key + " = " + raw
		if comment != "" {
			nl += " " + comment
		}
		c.lines[i] = nl
	}
	if found {
		return
	}
	line := key + " = " + raw
	for i, l := range c.lines {
		t := strings.TrimSpace(l)
		if !strings.HasPrefix(t, "#") {
			continue
		}
		if k, _, _, ok := splitLine(strings.TrimLeft(t, "# \t")); ok && k == key {
			c.lines = append(c.lines[:i+1], append([]string{line}, c.lines[i+1:]...)...)
			return
		}
	}
	c.lines = append(c.lines, line)
}

// Unset removes every active line for key; commented lines stay.
func (c *PgpoolConf) Unset(key string) {
	key = strings.ToLower(key)
	out := c.lines[:0]
	for _, l := range c.lines {
		if k, _, _, ok := splitLine(l); ok && k == key {
			continue
		}
		out = append(out, l)
	}
	c.lines = out
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
