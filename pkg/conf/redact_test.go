package conf

import (
	"strings"
	"testing"
)

func TestRedactSecrets(t *testing.T) {
	in := "-host all all 0.0.0.0/0 ldap ldapserver=ldap.example ldapbinddn=\"cn=pgpool\" ldapbindpasswd=\"s3 cret\"\n" +
		"+hostssl all all 0.0.0.0/0 ldap ldapbindpasswd=hunter2\n" +
		"  sr_check_password = 'p@ss'\nhealth_check_password='x'\nrecovery_password = ''\nport = 9999\n"
	out := RedactSecrets(in)
	for _, secret := range []string{"s3 cret", "hunter2", "p@ss", "'x'"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q printed:\n%s", secret, out)
		}
	}
	for _, kept := range []string{"ldapbinddn=\"cn=pgpool\"", "ldapbindpasswd=<redacted>", "sr_check_password = '<redacted>'", "recovery_password = ''", "port = 9999"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%q missing:\n%s", kept, out)
		}
	}
	if !SecretEnv("PGPOOL_ADMIN_PASSWORD") || !SecretEnv("PGPOOL_SR_CHECK_PASSWORD") || SecretEnv("PGPOOL_TLS_KEY_FILE") || SecretEnv("PGPOOL_PORT_NUMBER") {
		t.Error("SecretEnv")
	}
}
