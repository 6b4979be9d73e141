package conf

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Enforce sets enable_pool_hba = on, recording the line it replaces (or that
// there was none) in a trailing marker comment, so that Unenforce puts the
// file back as it was. It reports whether anything changed.
func Enforce(c *PgpoolConf) bool {
	if c.Bool("enable_pool_hba") {
		return false
	}
	c.SetMarked("enable_pool_hba", "on")
	return true
}

// Unenforce undoes Enforce: the line it changed gets its original back (or
// goes, when there was none).
func Unenforce(c *PgpoolConf) { c.Restore("enable_pool_hba") }

// Enforced reports whether enable_pool_hba was turned on by Enforce (and
// not by the user).
func Enforced(c *PgpoolConf) bool {
	i, _ := c.last("enable_pool_hba")
	return i >= 0 && strings.Contains(c.lines[i], wasMarker)
}

// MarkHBAEnforced records in pool_hba.conf (a comment line at the top) a
// digest of the rules the file had before the plugin's edits, when the
// plugin turns enable_pool_hba on: remove turns it off again only when the
// rules are still those.
func MarkHBAEnforced(text string) string {
	lines := splitLines(text)
	cr := ""
	if len(lines) > 0 && strings.HasSuffix(lines[0], "\r") {
		cr = "\r"
	}
	var out []string
	for _, l := range lines {
		if !strings.HasPrefix(strings.TrimSpace(l), hbaDigestPrefix) {
			out = append(out, l)
		}
	}
	out = append([]string{hbaDigestPrefix + rulesDigest(text) + cr}, out...)
	return joinLines(out)
}

// HBAChangedSinceEnforced reports whether the rules of pool_hba.conf (its
// edits by the plugin undone) differ from those MarkHBAEnforced recorded;
// known is false when there is no record.
func HBAChangedSinceEnforced(text string) (changed, known bool) {
	for _, l := range splitLines(text) {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, hbaDigestPrefix) {
			return strings.TrimPrefix(t, hbaDigestPrefix) != rulesDigest(text), true
		}
	}
	return false, false
}

// rulesDigest is a digest of the active lines of the file as it was before
// the plugin's edits (comments and blank lines do not count).
func rulesDigest(text string) string {
	h := sha256.New()
	for i, l := range unmark(text) {
		if _, ok, _ := parseRule(i+1, l); ok {
			h.Write([]byte(strings.Join(strings.Fields(l), " ") + "\n"))
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
