package conf

// What of the files is a secret: redacted wherever the plugin prints them.

import (
	"regexp"
	"strings"
)

// Redacted stands for a secret value in printed output.
const Redacted = "<redacted>"

var (
	// hbaSecretOption is a pool_hba.conf option whose value is a secret.
	hbaSecretOption = regexp.MustCompile(`(?i)\b(ldapbindpasswd\s*=\s*)("(?:[^"\\]|\\.)*"|\S+)`)
	// confSecret is a pgpool.conf parameter that holds a password
	// (sr_check_password, health_check_password, recovery_password, ...).
	confSecret = regexp.MustCompile(`(?i)^(\s*[a-z0-9_]*password[a-z0-9_]*\s*=?\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	// envSecret names an environment variable whose value is a secret.
	envSecret = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY|_KEY$)`)
	// privateKey is a PEM private key, of any kind.
	privateKey = regexp.MustCompile(`(?s)-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END ([A-Z0-9 ]*)PRIVATE KEY-----`)
)

// RedactPrivateKeys replaces every PEM private key in text with Redacted.
func RedactPrivateKeys(text string) string {
	return privateKey.ReplaceAllString(text, Redacted)
}

// RedactSecrets replaces, line by line, the values of secret pool_hba.conf
// options and pgpool.conf password parameters with Redacted.
func RedactSecrets(text string) string {
	if !strings.Contains(strings.ToLower(text), "passw") {
		return text
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		l = hbaSecretOption.ReplaceAllString(l, "${1}"+Redacted)
		if m := confSecret.FindStringSubmatchIndex(l); m != nil && l[m[4]:m[5]] != "''" && !strings.Contains(l[m[4]:m[5]], Redacted) {
			l = l[:m[4]] + "'" + Redacted + "'" + l[m[5]:]
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}

// SecretEnv reports whether an environment variable's value is a secret
// by its name (PGPOOL_ADMIN_PASSWORD, PGPOOL_SR_CHECK_PASSWORD, ...).
func SecretEnv(name string) bool {
	return envSecret.MatchString(name) && !strings.HasSuffix(strings.ToUpper(name), "_FILE")
}
