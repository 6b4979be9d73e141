package cmd

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// kubectl's KIND/NAME habit is accepted for --issuer; a conflict with
// --issuer-kind and anything else with a '/' are refused before any request.
func TestIssuerKindSlashName(t *testing.T) {
	for _, tc := range []struct {
		name, kind, wantName, wantKind string
		ok                             bool
	}{
		{"ca", "Issuer", "ca", "Issuer", true},
		{"ClusterIssuer/ca", "Issuer", "ca", "ClusterIssuer", true},
		{"clusterissuers.cert-manager.io/ca", "Issuer", "ca", "ClusterIssuer", true},
		{"issuer/ca", "ClusterIssuer", "", "", false},
		{"Issuer/ca", "Issuer", "ca", "Issuer", true},
		{"Secret/ca", "Issuer", "", "", false},
		{"ClusterIssuer/", "Issuer", "", "", false},
	} {
		n, k := tc.name, tc.kind
		err := splitIssuer(&n, &k)
		if (err == nil) != tc.ok || (tc.ok && (n != tc.wantName || k != tc.wantKind)) {
			t.Errorf("--issuer %s --issuer-kind %s: %q %q %v", tc.name, tc.kind, n, k, err)
		}
	}
}

func TestServerDNSNames(t *testing.T) {
	for n, ok := range map[string]bool{
		"pgpool.demo.svc": true, "*.pgpool.demo.svc": true, "PGPOOL.example.com": true,
		"*.bad..name": false, "a*.example.com": false, "-x.example.com": false, "": false, "bad_name.example": false,
	} {
		if err := validDNSName(n); (err == nil) != ok {
			t.Errorf("%q: %v", n, err)
		}
	}
}

// Ctrl-C during discovery or preflight (a client-go "context canceled")
// exits 130, not 1.
func TestInterruptedBeforeThePlanExits130(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(plan.ErrInterrupted)
	err := WithCause(ctx, fmt.Errorf("get statefulsets.apps pgpool: %w", context.Canceled))
	if ExitCode(err) != 130 {
		t.Fatalf("exit %d for %v", ExitCode(err), err)
	}
	if err := WithCause(context.Background(), errors.New("x")); ExitCode(err) != 1 {
		t.Fatalf("an uncancelled failure: exit %d", ExitCode(err))
	}
}
