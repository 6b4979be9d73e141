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

// ValidateModes checks an sslMode x clientAuthMode pair.
func ValidateModes(sslMode, authMode string) error {
	if !contains(SSLModes(), sslMode) {
		return fmt.Errorf("unknown ssl mode %q: use one of %s", sslMode, strings.Join(SSLModes(), ", "))
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

// hbaMethod is the pool_hba.conf method name of a client auth mode.
func hbaMethod(authMode string) string {
	switch authMode {
	case "scram":
		return "scram-sha-256"
	default:
		return authMode
	}
}

const (
	hbaBegin = "# BEGIN kubectl-pgpool: remote clients"
	hbaEnd   = "# END kubectl-pgpool"
)

// HBARules returns the rules for remote clients (every address but loopback)
// for an sslMode x clientAuthMode pair:
//   - disable: "host" lines with the password method; pgpool runs without TLS;
//   - allow, prefer: "host" lines (TLS and plain connections both match);
//   - require, verify-ca, verify-full: "hostssl" lines only, so a plain
//     connection matches no rule and is refused.
//
// The verify modes differ only on the client side (what the client checks).
func HBARules(sslMode, authMode string) ([]string, error) {
	if err := ValidateModes(sslMode, authMode); err != nil {
		return nil, err
	}
	typ := "host"
	if TLSRequired(sslMode) {
		typ = "hostssl"
	}
	m := hbaMethod(authMode)
	return []string{
		fmt.Sprintf("%-8s all  all  0.0.0.0/0  %s", typ, m),
		fmt.Sprintf("%-8s all  all  ::/0       %s", typ, m),
	}, nil
}

// RenderHBA rewrites pool_hba.conf for sslMode x clientAuthMode. Comments,
// "local" lines and rules for loopback addresses stay as they are; every other
// host/hostssl/hostnossl rule is replaced by one marked block of HBARules,
// placed where the first replaced rule was (or at the end).
func RenderHBA(text, sslMode, authMode string) (string, error) {
	rules, err := HBARules(sslMode, authMode)
	if err != nil {
		return "", err
	}
	block := append([]string{fmt.Sprintf("%s (sslMode %s, clientAuthMode %s)", hbaBegin, sslMode, authMode)}, rules...)
	block = append(block, hbaEnd)

	var out []string
	placed := false
	inBlock := false
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, hbaBegin):
			inBlock = true
			if !placed {
				out = append(out, block...)
				placed = true
			}
			continue
		case inBlock:
			if strings.HasPrefix(t, hbaEnd) {
				inBlock = false
			}
			continue
		case isRemoteRule(t):
			if !placed {
				out = append(out, block...)
				placed = true
			}
			continue
		}
		out = append(out, l)
	}
	if !placed {
		if len(out) == 1 && out[0] == "" {
			out = out[:0]
		}
		out = append(out, block...)
	}
	return strings.Join(out, "\n") + "\n", nil
}

// isRemoteRule reports whether a pool_hba.conf line is a host rule for
// addresses other than loopback.
func isRemoteRule(t string) bool {
	f := strings.Fields(t)
	if len(f) < 4 || strings.HasPrefix(f[0], "#") {
		return false
	}
	switch f[0] {
	case "host", "hostssl", "hostnossl":
	default:
		return false
	}
	addr := f[3]
	loopback := strings.HasPrefix(addr, "127.") || addr == "::1/128" || addr == "::1" || addr == "localhost" || addr == "samehost"
	return !loopback
}

// HBAModes reads back the sslMode x clientAuthMode that RenderHBA wrote, if
// the file has its block.
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

// GuessAuthMode returns the client auth mode of the first remote rule of a
// pool_hba.conf that RenderHBA has not written, md5 when there is none.
func GuessAuthMode(text string) string {
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if !isRemoteRule(t) {
			continue
		}
		f := strings.Fields(t)
		switch f[len(f)-1] {
		case "scram-sha-256":
			return "scram"
		case "cert":
			return "cert"
		}
		return "md5"
	}
	return "md5"
}

// LoopbackTrust returns the host rules of pool_hba.conf that trust loopback
// addresses without TLS.
func LoopbackTrust(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && (f[0] == "host" || f[0] == "hostnossl") && !isRemoteRule(strings.TrimSpace(l)) && f[len(f)-1] == "trust" {
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}
