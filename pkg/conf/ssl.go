package conf

import (
	"fmt"
	"slices"
	"strings"
)

// SSLModes are the ssl modes, as KubeDB's Pgpool spec.sslMode.
func SSLModes() []string {
	return []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
}

// ClientAuthModes are the client authentication modes, as KubeDB's Pgpool
// spec.clientAuthMode.
func ClientAuthModes() []string { return []string{"md5", "scram", "cert"} }

// Paths are where pgpool itself reads the TLS files (ssl_cert, ssl_key,
// ssl_ca_cert), inside the container.
type Paths struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
	CA   string `json:"ca"`
}

// ValidateModes checks an sslMode x clientAuthMode pair; authMode "" keeps
// the methods of pool_hba.conf's rules, which fits any sslMode.
func ValidateModes(sslMode, authMode string) error {
	if !slices.Contains(SSLModes(), sslMode) {
		return fmt.Errorf("unknown ssl mode %q: use one of %s", sslMode, strings.Join(SSLModes(), ", "))
	}
	if authMode == "" {
		return nil
	}
	if !slices.Contains(ClientAuthModes(), authMode) {
		return fmt.Errorf("unknown client auth mode %q: use one of %s", authMode, strings.Join(ClientAuthModes(), ", "))
	}
	if authMode == "cert" && !TLSRequired(sslMode) {
		return fmt.Errorf("client auth mode cert needs every client on TLS: use --ssl-mode require, verify-ca or verify-full (got %s)", sslMode)
	}
	return nil
}

// TLSRequired reports whether sslMode refuses clients without TLS.
func TLSRequired(sslMode string) bool {
	return sslMode == "require" || sslMode == "verify-ca" || sslMode == "verify-full"
}

// EnableTLS turns TLS on with the given file paths. Each line it writes
// records the line it replaced, so that DisableTLS puts back the exact
// bytes (the user's own ssl_* lines included).
func EnableTLS(c *PgpoolConf, p Paths) {
	c.SetMarked("ssl", "on")
	c.SetMarked("ssl_cert", Quote(p.Cert))
	c.SetMarked("ssl_key", Quote(p.Key))
	c.SetMarked("ssl_ca_cert", Quote(p.CA))
}

// DisableTLS turns TLS off: every line EnableTLS wrote gets back the line it
// replaced (or goes), so the file reads byte for byte as before tls add.
// A file whose lines carry no record (written by a version of the plugin
// before the records) gets ssl = off and loses the ssl_cert, ssl_key and
// ssl_ca_cert lines that point at p, and no others.
func DisableTLS(c *PgpoolConf, p Paths) {
	if !c.Restore("ssl") && c.Bool("ssl") {
		c.Set("ssl", "off")
	}
	for key, path := range map[string]string{"ssl_cert": p.Cert, "ssl_key": p.Key, "ssl_ca_cert": p.CA} {
		if c.Restore(key) {
			continue
		}
		if v, ok := c.Get(key); ok && v == path {
			c.Unset(key)
		}
	}
}

// LeftoverTLS returns the TLS settings of pgpool.conf that change what
// the plugin's certificates mean and that it does not write: ssl_ca_cert_dir
// (every CA in that directory is trusted beside ssl_ca_cert) and
// ssl_crl_file (checked against the whole new chain), each with its line.
func LeftoverTLS(c *PgpoolConf) []string {
	var out []string
	for _, k := range []string{"ssl_ca_cert_dir", "ssl_crl_file"} {
		if v, ok := c.Get(k); ok && v != "" {
			out = append(out, fmt.Sprintf("%s = '%s' (pgpool.conf line %d)", k, v, c.Line(k)))
		}
	}
	return out
}

// RestoreLeftoverTLS puts back what CommentOutLeftoverTLS changed.
func RestoreLeftoverTLS(c *PgpoolConf) {
	c.Restore("ssl_ca_cert_dir")
	c.Restore("ssl_crl_file")
}

// CommentOutLeftoverTLS empties the ssl_ca_cert_dir and ssl_crl_file
// settings (pgpool then reads neither); each line records what it was, so
// that RestoreLeftoverTLS puts it back.
func CommentOutLeftoverTLS(c *PgpoolConf) {
	for _, k := range []string{"ssl_ca_cert_dir", "ssl_crl_file"} {
		if v, ok := c.Get(k); ok && v != "" {
			c.SetMarked(k, "''")
		}
	}
}

const (
	// hbaBegin starts the block of rules that earlier versions of the plugin
	// wrote in place of every remote rule; HBAModes still reads it.
	hbaBegin = "# BEGIN kubectl-pgpool: remote clients"
	hbaEnd   = "# END kubectl-pgpool"
)

// HBAModes reads back the sslMode x clientAuthMode of the block that earlier
// versions of the plugin wrote, if the file has one.
func HBAModes(text string) (sslMode, authMode string, ok bool) {
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if !strings.HasPrefix(t, hbaBegin) {
			continue
		}
		_, err := fmt.Sscanf(strings.TrimPrefix(t, hbaBegin), " (sslMode %s clientAuthMode %s", &sslMode, &authMode)
		if err != nil {
			return "", "", false
		}
		return strings.TrimSuffix(sslMode, ","), strings.TrimSuffix(authMode, ")"), true
	}
	return "", "", false
}
