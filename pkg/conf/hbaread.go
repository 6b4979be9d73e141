package conf

import (
	"fmt"
	"strings"
)

// Undoing an edit (remove), and what a pool_hba.conf says about TLS.

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
