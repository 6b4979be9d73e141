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
		in, err := Normalize(Intent{Operation: ChangeIssuer, Issuer: pgpool.IssuerRef{Name: tc.name, Kind: tc.kind}}, flag)
		if (err == nil) != tc.ok || (tc.ok && (in.Issuer.Name != tc.wantName || in.Issuer.Kind != tc.wantKind)) {
			t.Errorf("issuer %s kind %s: %+v %v", tc.name, tc.kind, in.Issuer, err)
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
		in := Intent{Operation: Add, Issuer: pgpool.IssuerRef{Name: "ca"}, SSLMode: "require", ClientUser: "postgres"}
		f(&in)
		return in
	}
	for _, tc := range []struct {
		in   Intent
		want string
	}{
		{add(func(in *Intent) { in.Issuer.Name = "" }), "--issuer is required"},
		{add(func(in *Intent) { in.SSLMode = "bogus" }), "--sslMode: unknown ssl mode"},
		{add(func(in *Intent) { in.SSLMode, in.AuthMode = "prefer", "cert" }), "cert needs every client on TLS"},
		{add(func(in *Intent) { in.SSLMode = "disable" }), "disable means no TLS: use --remove"},
		{add(func(in *Intent) { in.ClientUser = "" }), "--clientUser must not be empty"},
		{add(func(in *Intent) { in.ExtraIPs = []string{"10.0.0.300"} }), `--serverIP "10.0.0.300" is not an IP address`},
		{add(func(in *Intent) { in.LeftoverTLS = "drop" }), "--leftoverTLS must be"},
		{add(func(in *Intent) { in.Duration, in.RenewBefore = 1e9, 2e9 }), "--renewBefore (2s) must be shorter than --duration (1s)"},
		{add(func(in *Intent) { in.BackendCASources = []string{"pod/x"} }), "the kind must be secret or configmap"},
		{Intent{Operation: Remove, AuthMode: "cert"}, "--authMode after remove must be"},
		{Intent{Operation: Rotate, OnlyStale: true}, "--only-stale needs --reissue=false"},
		{Intent{Operation: "frobnicate"}, "unknown operation"},
	} {
		if _, err := Normalize(tc.in, flag); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.in, err, tc.want)
		}
	}
	in, err := Normalize(Intent{Operation: Add, Issuer: pgpool.IssuerRef{Name: "ca"}, ClientUser: "postgres"}, flag)
	if err != nil || in.SSLMode != "require" || in.Issuer.Kind != "Issuer" {
		t.Fatalf("defaults: %+v %v", in, err)
	}
}

// An add that names only the issuer is change-issuer on a pgpool with TLS.
func TestIssuerOnly(t *testing.T) {
	in := Intent{Operation: Add, Issuer: pgpool.IssuerRef{Name: "ca", Kind: "Issuer"}, IssuerOnly: true}
	if got := in.On(&pgpool.Target{}); got.Operation != Add {
		t.Fatalf("no TLS: %s", got.Operation)
	}
	if got := in.On(&pgpool.Target{State: pgpool.TLSState{Enabled: true}}); got.Operation != ChangeIssuer || got.Issuer != in.Issuer {
		t.Fatalf("TLS on: %+v", got)
	}
	in.IssuerOnly = false
	if got := in.On(&pgpool.Target{State: pgpool.TLSState{Enabled: true}}); got.Operation != Add {
		t.Fatalf("a full add stays an add: %s", got.Operation)
	}
}
