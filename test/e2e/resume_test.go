package e2e

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// interruptAfter is the progress stream of a run that is interrupted
// (Ctrl-C) as soon as a line containing all of match appears.
type interruptAfter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	match  []string
	cancel func()
}

func (w *interruptAfter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for _, l := range strings.Split(w.buf.String(), "\n") {
		ok := true
		for _, m := range w.match {
			ok = ok && strings.Contains(l, m)
		}
		if ok {
			w.cancel()
		}
	}
	return len(p), nil
}

// interrupted runs the plugin and interrupts it, as Ctrl-C does, right after
// the step whose progress line matches.
func interrupted(t *testing.T, ns string, match []string, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	w := &interruptAfter{match: match, cancel: func() { cancel(plan.ErrInterrupted) }}
	streams := genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &bytes.Buffer{}, ErrOut: w}
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: "test"})
	root.SetArgs(append([]string{"--kubeconfig", env.Kubeconfig, "-n", ns}, append(args, "--yes")...))
	return root.ExecuteContext(ctx)
}

// An add or remove stopped right after it patched the config (Ctrl-C, or a
// killed process whose lock is left behind) is finished by running the same
// command again: no manual step, on both layouts.
func TestInterruptedOperationsFinishWhenRunAgain(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			ns := setup(t, l, 1)
			add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert"}
			err := interrupted(t, ns, []string{"patch " + l.configKind, "done"}, add...)
			if cmd.ExitCode(err) != 130 {
				t.Fatalf("interrupted add: %v (exit %d), want exit 130", err, cmd.ExitCode(err))
			}
			checkConfig(t, ns, l, true, "hostssl all all 0.0.0.0/0 cert")
			checkVolume(t, ns, l, false)
			checkLastOperation(t, ns, l, "add", "Failed")
			if _, err := env.Kube.CoordinationV1().Leases(ns).Get(testenv.Context(t, time.Minute), planner.LeaseName("pgpool"), metav1.GetOptions{}); err == nil {
				t.Fatal("the interrupted run left its lock")
			}
			// rotate would restart pods into a pgpool without certificates.
			if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "rotate", "pgpool", "--yes"); err == nil || !strings.Contains(err.Error(), "did not finish") {
				t.Fatalf("rotate on a half-added pgpool: %v", err)
			}
			// The killed-process case: a lock whose holder stopped renewing it.
			leftBehind(t, ns)
			out, errOut, err := plugin(t, env.Kubeconfig, ns, append(add, "--yes")...)
			if err != nil || !strings.Contains(out, "resuming a tls add that did not finish") || !strings.Contains(errOut, "taken over from killed@elsewhere") {
				t.Fatalf("add again: %v\n%s\n%s", err, out, errOut)
			}
			checkVolume(t, ns, l, true)
			checkLastOperation(t, ns, l, "add", "Succeeded")

			err = interrupted(t, ns, []string{"patch " + l.configKind, "done"}, "tls", "remove", "pgpool")
			if cmd.ExitCode(err) != 130 {
				t.Fatalf("interrupted remove: %v", err)
			}
			checkConfig(t, ns, l, false, "host all all 0.0.0.0/0 md5")
			checkVolume(t, ns, l, true)
			out, _, err = plugin(t, env.Kubeconfig, ns, "tls", "remove", "pgpool", "--yes")
			if err != nil || !strings.Contains(out, "resuming a tls remove that did not finish") {
				t.Fatalf("remove again: %v\n%s", err, out)
			}
			checkVolume(t, ns, l, false)
			checkLastOperation(t, ns, l, "remove", "Succeeded")
		})
	}
}

// leftBehind puts the lock of a killed run in ns: its holder stopped
// renewing it longer than its duration ago.
func leftBehind(t *testing.T, ns string) {
	t.Helper()
	holder, past, secs := "killed@elsewhere pid 9", metav1.NewMicroTime(time.Now().Add(-2*time.Minute)), int32(60)
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: planner.LeaseName("pgpool"), Namespace: ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, AcquireTime: &past, RenewTime: &past, LeaseDurationSeconds: &secs}}
	if _, err := env.Kube.CoordinationV1().Leases(ns).Create(testenv.Context(t, time.Minute), l, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
