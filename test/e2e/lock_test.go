package e2e

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// freePID returns a pid no process of this (the root) pid namespace has.
func freePID(t *testing.T) int {
	t.Helper()
	for p := 39000; p < 60000; p += 97 {
		if _, err := os.Stat("/proc/" + strconv.Itoa(p)); os.IsNotExist(err) {
			return p
		}
	}
	t.Fatal("no free pid")
	return 0
}

// Two runs with the same host name in two pid namespaces (as two
// containers, or two machines called localhost): the second is refused
// while the first holds the lock, though the first's pid does not exist
// where the second runs; it takes the lock over only after watching it go
// unrenewed for its duration (the first is stopped); the first, resumed,
// stops at its next step and undoes nothing.
func TestLockAcrossPIDNamespaces(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	pid := freePID(t)
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes"}
	first := env.StartInPIDNamespace(t, ns, pid-1, append(add, "--lock-duration", "20s")...)
	if !first.WaitLine(func(s string) bool { return strings.Contains(s, "[1/") && strings.Contains(s, "done in") }) {
		code, out := first.Wait()
		t.Fatalf("the first run ended (exit %d) before it took the lock:\n%s", code, out)
	}
	first.Signal(t, syscall.SIGSTOP)
	ctx := testenv.Context(t, 2*time.Minute)
	lease, err := env.Kube.CoordinationV1().Leases(ns).Get(ctx, pgpool.LeaseName("pgpool"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	holder := *lease.Spec.HolderIdentity
	if !strings.Contains(holder, "pid "+strconv.Itoa(pid)+" ") {
		t.Fatalf("the first run's holder %q is not pid %d", holder, pid)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !os.IsNotExist(err) {
		t.Fatalf("pid %d exists outside the first run's namespace", pid)
	}

	// The second run is refused because the first's Lease was renewed less
	// than its duration (20s) ago: the margin covers a slow start of the
	// second run on a busy machine; if it were exceeded, the second run
	// would watch the Lease instead, and the check below fails loudly.
	second := env.StartInPIDNamespace(t, ns, 0, add...)
	code, out := second.Wait()
	if code == 0 || !strings.Contains(out+second.Stdout.String(), "holds the lock") || !strings.Contains(out, holder) {
		t.Fatalf("the second run while the first holds the lock: exit %d\n%s\n%s", code, out, second.Stdout.String())
	}

	// The first is stopped and renews nothing: once its renew time is
	// older than its duration, the second watches it for that long and
	// takes it over.
	// (Time passing, not an event, makes this true: polled, with a deadline.)
	if err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		l, err := env.Kube.CoordinationV1().Leases(ns).Get(ctx, pgpool.LeaseName("pgpool"), metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime != nil && time.Since(l.Spec.RenewTime.Time) > 20*time.Second, nil
	}); err != nil {
		t.Fatalf("the first run's lock never looked unrenewed: %v", err)
	}
	second = env.StartInPIDNamespace(t, ns, 0, add...)
	code, out = second.Wait()
	if code != 0 || !strings.Contains(out, "whose lock this run watched go unrenewed for 20s") {
		t.Fatalf("the second run after the first stopped renewing: exit %d\n%s\n%s", code, out, second.Stdout.String())
	}
	checkConfig(t, ns, l, true, "hostssl all all 0.0.0.0/0 cert")
	checkVolume(t, ns, l, true)
	checkLastOperation(t, ns, l, "add", "Succeeded")

	first.Signal(t, syscall.SIGCONT)
	code, out = first.Wait()
	if code == 0 || !strings.Contains(out+first.Stdout.String(), "lost the lock") || strings.Contains(out, "rolling back") {
		t.Fatalf("the first run, resumed after its lock was taken: exit %d\n%s\n%s", code, out, first.Stdout.String())
	}
	checkConfig(t, ns, l, true, "hostssl all all 0.0.0.0/0 cert")
	checkVolume(t, ns, l, true)
}
