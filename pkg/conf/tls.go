package conf

import (
	"fmt"
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
	if !contains(SSLModes(), sslMode) {
		return fmt.Errorf("unknown ssl mode %q: use one of %s", sslMode, strings.Join(SSLModes(), ", "))
	}
	if authMode == "" {
		return nil
	}
	if !contains(ClientAuthModes(), authMode) {
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// EnableTLS turns TLS on with the given file paths.
func EnableTLS(c *PgpoolConf, p Paths) {
	c.Set("ssl", "on")
	c.Set("ssl_cert", Quote(p.Cert))
	c.Set("ssl_key", Quote(p.Key))
	c.Set("ssl_ca_cert", Quote(p.CA))
}

// DisableTLS turns TLS off and drops the certificate paths, so that a file
// that had TLS added by EnableTLS reads as it did before.
func DisableTLS(c *PgpoolConf) {
	c.Set("ssl", "'off'")
	c.Unset("ssl_cert")
	c.Unset("ssl_key")
	c.Unset("ssl_ca_cert")
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
