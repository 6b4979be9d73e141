package ui

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Clean makes a string from the cluster (a name, an annotation, a line of
// a config file, a server's message) safe to print on a terminal: control
// characters other than newline and tab, C1 controls and DEL are shown as
// \xNN (or \u00NN) instead of being sent, so that an escape sequence in
// someone's annotation cannot move the cursor, recolour the screen or
// retitle the window.
func Clean(s string) string {
	clean := true
	for _, r := range s {
		if unsafe(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		raw := s[i : i+n]
		i += n
		switch {
		case !unsafe(r):
			b.WriteString(raw) // invalid UTF-8 (a rune split across writes) passes as it is
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

func unsafe(r rune) bool {
	return (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f)
}
