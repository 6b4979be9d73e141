// Package e2e tests the local cluster itself and kubectl-pgpool on it:
// real API server, controller-manager, scheduler, kwok pods and
// cert-manager's own controllers (see test/testenv).
package e2e

import (
	"os"
	"testing"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, &env))
}

// plugin runs `kubectl pgpool ARGS...` in-process and returns stdout,
// stderr and the error.
func plugin(t testing.TB, kubeconfig, ns string, args ...string) (string, string, error) {
	t.Helper()
	return testenv.Plugin(kubeconfig, ns, 5*time.Minute, args...)
}

// waitIssuer waits, by watch, for an Issuer to be Ready.
func waitIssuer(t testing.TB, ns, name string) {
	t.Helper()
	env.WaitIssuerReady(t, testenv.Context(t, 2*time.Minute), ns, name)
}
