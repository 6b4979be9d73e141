package status

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
)

// The JSON of `tls status -o json` is what scripts read: its field names
// are kept, and empty optional parts are left out.
func TestJSONFieldNames(t *testing.T) {
	st := Status{Workload: "StatefulSet demo/pgpool", SSL: true, SSLMode: "require", AuthMode: "cert", HBAEnforced: true,
		Pods:     []PodStatus{{Name: "pgpool-0", Ready: true, UID: "u", Check: "ok"}},
		Backends: []BackendStatus{{Backend: conf.Backend{Index: 0, Host: "pg", Port: 5432}, Check: "plain"}}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"workload":`, `"ssl":true`, `"sslMode":"require"`, `"clientAuthMode":"cert"`, `"poolHBAEnforced":true`,
		`"tlsVolume":false`, `"tlsMountPath":`, `"pods":[{"name":"pgpool-0","ready":true,"uid":"u","check":"ok"}]`, `"backends":[{`, `"check":"plain"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s missing from %s", want, b)
		}
	}
	for _, absent := range []string{`"caBundle"`, `"clientCertificates"`, `"lastOperation"`, `"detail"`, `"served"`, `"owner"`} {
		if strings.Contains(string(b), absent) {
			t.Errorf("%s present in %s", absent, b)
		}
	}
}
