package planner

import (
	"strings"
	"testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

func flag(f string) string { return "--" + f }

// kubectl's KIND/NAME habit is accepted for the issuer; a conflict with
// the kind given and anything else with a '/' are refused.
func TestIssuerKindSlashName(t *testing.T) {
	for _, tc := range []struct {
		name, kind, wantName, wantKind string
		ok                             bool
	}{
		{"ca", "Issuer", "ca", "Issuer", true},
		{"ca", "", "ca", "Issuer", true},
		{"ClusterIssuer/ca", "Issuer", "ca", "ClusterIssuer", true},
		{"clusterissuers.cert-manager.io/ca", "Issuer", "ca", "ClusterIssuer", true},
		{"issuer/ca", "ClusterIssuer", "", "", false},
		{"Issuer/ca", "Issuer", "ca", "Issuer", true},
		{"Secret/ca", "Issuer", "", "", false},
		{"ClusterIssuer/", "Issuer", "", "", false},
		{"ca", "Vault", "", "", false},
	} {
		intent, err := Normalize(Intent{Operation: ChangeIssuer, Issuer: pgpool.IssuerRef{Name: tc.name, Kind: tc.kind}}, flag)
		if (err == nil) != tc.ok || (tc.ok && (intent.Issuer.Name != tc.wantName || intent.Issuer.Kind != tc.wantKind)) {
			t.Errorf("issuer %s kind %s: %+v %v", tc.name, tc.kind, intent.Issuer, err)
		}
	}
}

func TestServerDNSNames(t *testing.T) {
	for n, ok := range map[string]bool{
		"pgpool.demo.svc": true, "*.pgpool.demo.svc": true, "PGPOOL.example.com": true,
		"*.bad..name": false, "a*.example.com": false, "-x.example.com": false, "": false, "bad_name.example": false,
	} {
		if err := validDNSName(n, flag); (err == nil) != ok {
			t.Errorf("%q: %v", n, err)
		}
	}
}

// Normalize is the one check of a request: each refusal names the user's
// word for the field, and nothing else checks sslMode again.
func TestNormalize(t *testing.T) {
	add := func(f func(*Intent)) Intent {
		intent := Intent{Operation: Add, Issuer: pgpool.IssuerRef{Name: "ca"}, SSLMode: "require", ClientUser: "postgres"}
		f(&intent)
		return intent
	}
	for _, tc := range []struct {
		intent Intent
		want   string
	}{
		{add(func(intent *Intent) { intent.Issuer.Name = "" }), "--issuer is required"},
		{add(func(intent *Intent) { intent.SSLMode = "bogus" }), "--sslMode: unknown ssl mode"},
		{add(func(intent *Intent) { intent.SSLMode, intent.AuthMode = "prefer", "cert" }), "cert needs every client on TLS"},
		{add(func(intent *Intent) { intent.SSLMode = "disable" }), "disable means no TLS: use --remove"},
		{add(func(intent *Intent) { intent.ClientUser = "" }), "--clientUser must not be empty"},
		{add(func(intent *Intent) { intent.ExtraIPs = []string{"10.0.0.300"} }), `--serverIP "10.0.0.300" is not an IP address`},
		{add(func(intent *Intent) { intent.LeftoverTLS = "drop" }), "--leftoverTLS must be"},
		{add(func(intent *Intent) { intent.Duration, intent.RenewBefore = 1e9, 2e9 }), "--renewBefore (2s) must be shorter than --duration (1s)"},
		{add(func(intent *Intent) { intent.BackendCASources = []string{"pod/x"} }), "the kind must be secret or configmap"},
		{Intent{Operation: Remove, AuthMode: "cert"}, "--authMode after remove must be"},
		{Intent{Operation: Rotate, OnlyStale: true}, "--only-stale needs --reissue=false"},
		{Intent{Operation: "frobnicate"}, "unknown operation"},
	} {
		if _, err := Normalize(tc.intent, flag); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.intent, err, tc.want)
		}
	}
	intent, err := Normalize(Intent{Operation: Add, Issuer: pgpool.IssuerRef{Name: "ca"}, ClientUser: "postgres"}, flag)
	if err != nil || intent.SSLMode != "require" || intent.Issuer.Kind != "Issuer" {
		t.Fatalf("defaults: %+v %v", intent, err)
	}
}
