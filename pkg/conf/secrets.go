package conf

import "strings"

// secretKey reports whether a pgpool.conf key holds a secret.
func secretKey(key string) bool {
	k := strings.ToLower(key)
	return strings.HasSuffix(k, "_password") || k == "password" || k == "wd_authkey" ||
		strings.Contains(k, "passphrase")
}

// MaskLine hides the values of secret keys (every *_password, wd_authkey,
// *passphrase*) on one pgpool.conf line, whatever its syntax (with or
// without "=", quoted or not, several statements on a line), and on a
// commented-out line too.
func MaskLine(line string) string {
	body, prefix := line, ""
	if t := strings.TrimLeft(line, " \t#"); t != line {
		prefix, body = line[:len(line)-len(t)], t
	}
	as, err := parseAssignments(body)
	if err != nil {
		// Not a line pgpool reads: mask anything after a secret-looking
		// word, to be safe.
		for _, w := range strings.FieldsFunc(body, func(r rune) bool { return r == ' ' || r == '\t' || r == '=' }) {
			if secretKey(w) {
				at := strings.Index(body, w) + len(w)
				return prefix + body[:at] + " ******"
			}
		}
		return line
	}
	for i := len(as) - 1; i >= 0; i-- {
		if secretKey(as[i].key) {
			body = body[:as[i].valStart] + "'******'" + body[as[i].valEnd:]
		}
	}
	return prefix + body
}

// MaskSecrets applies MaskLine to every line of a text, or of a Diff (whose
// lines start with one of "-+ ").
func MaskSecrets(text string, diff bool) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if diff && len(l) > 0 && strings.ContainsRune("-+ ", rune(l[0])) {
			lines[i] = l[:1] + MaskLine(l[1:])
			continue
		}
		lines[i] = MaskLine(l)
	}
	return strings.Join(lines, "\n")
}
