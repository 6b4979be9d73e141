package ui

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// Issue 27, finding 7: a Bitnami env list in a JSON patch, and an
// ldapbindpasswd in a pool_hba.conf text, are printed redacted by -o json
// and yaml (before, PrintDoc printed them as they were).
func TestPrintDocRedacts(t *testing.T) {
	doc := map[string]any{
		"patch": json.RawMessage(`[{"op":"replace","path":"/spec/template/spec/containers/0/env","value":[{"name":"PGPOOL_ADMIN_PASSWORD","value":"adm1n-pw"},{"name":"PGPOOL_SR_CHECK_PASSWORD","value":"sr-pw"},{"name":"PGPOOL_PORT_NUMBER","value":"5432"},{"name":"PGPOOL_POSTGRES_PASSWORD","valueFrom":{"secretKeyRef":{"name":"s","key":"password"}}}]}]`),
		"diff":  "+hostssl all all 0.0.0.0/0 ldap ldapbindpasswd=ldap-pw",
	}
	for _, output := range []string{"json", "yaml"} {
		var b bytes.Buffer
		if err := PrintDoc(&b, output, doc); err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{"adm1n-pw", "sr-pw", "ldap-pw"} {
			if strings.Contains(b.String(), secret) {
				t.Errorf("-o %s prints %q:\n%s", output, secret, b.String())
			}
		}
		for _, kept := range []string{"5432", "secretKeyRef", "<redacted>"} {
			if !strings.Contains(b.String(), kept) {
				t.Errorf("-o %s lost %q:\n%s", output, kept, b.String())
			}
		}
		b.Reset()
		if err := PrintDocSecrets(&b, output, doc, true); err != nil || !strings.Contains(b.String(), "adm1n-pw") {
			t.Errorf("--show-secrets -o %s: %v\n%s", output, err, b.String())
		}
	}
}
