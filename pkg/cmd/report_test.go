package cmd

import (
	"strings"
	"testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/operation"
)

// A report's files are redacted (env values by name, config passwords,
// ldapbindpasswd, private keys) and scrubbed of the Secrets' values, in
// logs too; public values stay.
func TestReportFilesRedact(t *testing.T) {
	r := &operation.Report{
		Objects: map[string]any{"workload.yaml": map[string]any{"env": []any{map[string]any{"name": "PGPOOL_ADMIN_PASSWORD", "value": "literal-pw-1"}, map[string]any{"name": "TZ", "value": "UTC"}}}},
		Texts: map[string]string{
			"config/pool_hba.conf": "host all u 10.0.0.0/8 ldap ldapserver=x ldapbindpasswd=ldap-pw-2\n",
			"config/pgpool.conf":   "sr_check_password = 'conf-pw-3'\nport = 9999\n",
			"pods/p/pgpool.log":    "connect with secret-value-4 ok\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n",
			"server-version.txt":   "v1.33.0\n",
		},
		Secrets: []string{"secret-value-4\n"},
	}
	files, err := reportFiles(r)
	if err != nil {
		t.Fatal(err)
	}
	all := ""
	for _, b := range files {
		all += string(b)
	}
	for _, secret := range []string{"literal-pw-1", "ldap-pw-2", "conf-pw-3", "secret-value-4", "PRIVATE KEY", "MHcCAQEE"} {
		if strings.Contains(all, secret) {
			t.Fatalf("a report file holds %q:\n%s", secret, all)
		}
	}
	for _, public := range []string{"UTC", "port = 9999", "v1.33.0", "ldapserver=x", "connect with <redacted> ok"} {
		if !strings.Contains(all, public) {
			t.Fatalf("the report lost %q:\n%s", public, all)
		}
	}
}
