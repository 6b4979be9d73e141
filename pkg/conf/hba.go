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

// loopback4 and loopback6 are the addresses of the pod itself.
var (
	loopback4 = netip.MustParsePrefix("127.0.0.0/8")
	loopback6 = netip.MustParsePrefix("::1/128")
)

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
// of the plugin, except for default blocks, which are dropped. A marker
// binds only to the rule it describes: the first rule after it (before
// the next marker) that is its original as EditHBA converts it. Lines in
// between (an administrator's rule written under the marker) are kept
// where they are; a marker whose rule is gone or was edited by hand is
// stale: it is dropped and the rule kept as it is.
func unmark(text string) []string {
	var out []string
	lines := splitLines(text)
	bound := map[int]string{} // line index -> the original it stands for
	for i, l := range lines {
		if !strings.HasPrefix(l, hbaWasPrefix) {
			continue
		}
		orig := strings.TrimPrefix(l, hbaWasPrefix)
		for j := i + 1; j < len(lines) && !strings.HasPrefix(lines[j], hbaWasPrefix); j++ {
			if _, seen := bound[j]; !seen && convertedFrom(orig, lines[j]) {
				bound[j] = orig
				break
			}
		}
	}
	inDefault := false
	for i, l := range lines {
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
			continue
		case strings.HasSuffix(t, hbaAdded), strings.HasPrefix(t, hbaDigestPrefix):
			continue
		}
		if orig, ok := bound[i]; ok {
			l = orig
		}
		out = append(out, l)
	}
	return out
}

// convertedFrom reports whether line is orig as EditHBA changes a rule:
// the same databases, users, address and options, host made hostssl or
// the type kept, and the method kept or made one of the client auth
// modes' methods.
func convertedFrom(orig, line string) bool {
	o, ok1, err1 := parseRule(1, orig)
	n, ok2, err2 := parseRule(1, line)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return false
	}
	if o.Database != n.Database || o.User != n.User || o.Address != n.Address || o.Mask != n.Mask || !slices.Equal(o.Options, n.Options) {
		return false
	}
	if n.Type != o.Type && (o.Type != "host" || n.Type != "hostssl") {
		return false
	}
	if n.Method == o.Method {
		return true
	}
	// EditHBA changes only a password or cert method, and only to one of
	// the client auth modes' methods: a record that would give back trust
	// (or anything else) for them is not the plugin's.
	from := o.Method == "md5" || o.Method == "scram-sha-256" || o.Method == "password" || o.Method == "cert"
	return from && (n.Method == "md5" || n.Method == "scram-sha-256" || n.Method == "cert") ||
		o.Method == "trust" && n.Method == "cert" && n.Type == "hostssl" // --remote-trust cert
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
	// RemoteTrust is what becomes of a rule that trusts remote clients
	// under AuthMode cert: "cert" makes it a cert rule (over TLS), "keep"
	// keeps it; "" refuses the edit (any client that names the user gets
	// in with no password and no certificate).
	RemoteTrust string
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
	// The request was checked once (planner.Normalize); this keeps
	// EditHBA's own contract for any other caller.
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
		if r.Method == "trust" && o.AuthMode == "cert" {
			switch o.RemoteTrust {
			case "cert":
				n.Method, n.Type = "cert", "hostssl"
			case "keep":
			default:
				who := "user " + r.User
				if r.User == "all" {
					who = "every user"
				}
				return nil, fmt.Errorf("pool_hba.conf line %d (%s) lets %s in from other hosts with no password and no certificate, which --client-auth-mode cert is meant to end, so kubectl-pgpool changes nothing until you choose: --remote-trust cert (the rule asks for a client certificate over TLS; remove puts it back) or --remote-trust keep (it stays trust)", r.Line, r.String(), who)
			}
		}
		if o.AuthMode != "" && n.Method != hbaMethod(o.AuthMode) {
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
