// Package e2e tests the local cluster itself and kubectl-pgpool on it:
// real API server, controller-manager, scheduler, kwok pods and
// cert-manager's own controllers (see test/testenv).
package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, &env))
}

// plugin runs `kubectl pgpool ARGS...` in-process against the local cluster
// as the admin, and returns stdout, stderr and the error.
func plugin(t testing.TB, kubeconfig, ns string, args ...string) (string, string, error) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: "test"})
	root.SetArgs(append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// waitIssuer waits, by watch, for an Issuer to be Ready.
func waitIssuer(t testing.TB, ns, name string) {
	t.Helper()
	env.WaitIssuerReady(t, testenv.Context(t, 2*time.Minute), ns, name)
}
