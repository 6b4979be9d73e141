package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
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
			if _, err := env.Kube.CoordinationV1().Leases(ns).Get(testenv.Context(t, time.Minute), pgpool.LeaseName("pgpool"), metav1.GetOptions{}); err == nil {
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

// leftBehind puts the lock of a run killed on another machine in ns: its
// holder stopped renewing it longer than its duration ago (a short one, 2s,
// which the next run watches go unrenewed before it takes the lock over).
func leftBehind(t *testing.T, ns string) {
	t.Helper()
	holder, past, secs := "killed@elsewhere pid 9", metav1.NewMicroTime(time.Now().Add(-2*time.Minute)), int32(2)
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: pgpool.LeaseName("pgpool"), Namespace: ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, AcquireTime: &past, RenewTime: &past, LeaseDurationSeconds: &secs}}
	if _, err := env.Kube.CoordinationV1().Leases(ns).Create(testenv.Context(t, time.Minute), l, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// The crash test: add, rotate, change-issuer and remove are interrupted (as
// Ctrl-C) right after each of their steps in turn, then the same command is
// run again; every time it reaches the goal (config, volume, certificates
// and their issuer, every pod replaced, outcome recorded) with no manual
// step.
func TestEveryStepBoundaryConverges(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) { everyStepBoundaryConverges(t, l) })
	}
}

func everyStepBoundaryConverges(t *testing.T, l layout) {
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert"}
	for _, op := range []struct {
		name     string
		args     []string
		afterAdd bool
	}{
		{"add", add, false},
		{"rotate", []string{"tls", "rotate", "pgpool"}, true},
		{"change-issuer", []string{"tls", "change-issuer", "pgpool", "--issuer", "pp-new-issuer"}, true},
		{"remove", []string{"tls", "remove", "pgpool"}, true},
	} {
		steps := planLength(t, l, op.afterAdd, op.args)
		// Killed (SIGKILL) right after each step that has work after it
		// (the last three are verify, record and unlock); step 0 is the
		// SIGINT in the middle of the roll.
		for k := 0; k <= steps-3; k++ {
			name := fmt.Sprintf("%s/killed-after-step-%d-of-%d", op.name, k, steps)
			if k == 0 {
				name = op.name + "/sigint-mid-roll"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ns := setup(t, l, 1)
				if op.afterAdd {
					if _, _, err := plugin(t, env.Kubeconfig, ns, append(add, "--yes")...); err != nil {
						t.Fatal(err)
					}
				}
				before := podUIDs(t, ns, l)
				var revs map[string]int
				if op.afterAdd {
					revs = revisions(t, ns)
				}
				if k == 0 {
					code := env.KillAt(t, ns, syscall.SIGINT, func(l string) bool {
						return strings.Contains(l, "evicted pod") || (strings.Contains(l, "] rollout ") && strings.Contains(l, "started"))
					}, op.args...)
					if code != 130 {
						t.Fatalf("SIGINT in the roll: exit %d, want 130", code)
					}
				} else {
					env.KillAt(t, ns, syscall.SIGKILL, func(l string) bool {
						return strings.Contains(l, fmt.Sprintf("[%d/%d]", k, steps)) && strings.Contains(l, "done in")
					}, op.args...)
				}
				out, errOut, err := plugin(t, env.Kubeconfig, ns, append(op.args, "--yes")...)
				if err != nil {
					t.Fatalf("%s again after step %d: %v\n%s\n%s", op.name, k, err, out, errOut)
				}
				// The killed run's lock is taken over at once (its process
				// is gone), not waited out; unless the kill landed after the
				// run had reached its goal and recorded it (on a loaded
				// machine the process runs on past the line the kill waits
				// for): then the run again has nothing to do, and the checks
				// below prove the goal.
				nothing := strings.Contains(out, "nothing to do")
				if k > 0 && !nothing && !strings.Contains(errOut, "whose process is gone") {
					t.Fatalf("%s again after a SIGKILL at step %d did not take the dead run's lock over:\n%s", op.name, k, errOut)
				}
				on := op.name != "remove"
				want := map[bool]string{true: "hostssl all all 0.0.0.0/0 cert", false: "host all all 0.0.0.0/0 md5"}[on]
				checkConfig(t, ns, l, on, want)
				checkVolume(t, ns, l, on)
				checkLastOperation(t, ns, l, op.name, "Succeeded")
				for u := range podUIDs(t, ns, l) {
					if before[u] {
						t.Fatalf("pod %s was not replaced", u)
					}
				}
				ctx := testenv.Context(t, time.Minute)
				crts, err := env.CertMgr.CertmanagerV1().Certificates(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=kubectl-pgpool"})
				if err != nil || (on && len(crts.Items) != 2) || (!on && len(crts.Items) != 0) {
					t.Fatalf("Certificates of ours: %d, %v", len(crts.Items), err)
				}
				for _, c := range crts.Items {
					if op.name == "change-issuer" && c.Spec.IssuerRef.Name != "pp-new-issuer" {
						t.Fatalf("Certificate %s is on %s after change-issuer", c.Name, c.Spec.IssuerRef.Name)
					}
					if (op.name == "rotate" || op.name == "change-issuer") && revisions(t, ns)[c.Name] <= revs[c.Name] {
						t.Fatalf("Certificate %s was not re-issued (revision %d)", c.Name, revs[c.Name])
					}
				}
				for _, n := range []string{"pgpool-server-cert", "pgpool-client-cert"} {
					_, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, n, metav1.GetOptions{})
					if on == apierrors.IsNotFound(err) {
						t.Fatalf("Secret %s after %s: %v", n, op.name, err)
					}
				}
			})
		}
	}
}

// planLength counts the steps of the command's plan on a fresh pgpool (after
// add, for remove).
func planLength(t *testing.T, l layout, afterAdd bool, args []string) int {
	t.Helper()
	ns := setup(t, l, 1)
	if afterAdd {
		if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes"); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err := plugin(t, env.Kubeconfig, ns, append(args, "--dry-run=client", "-o", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Plan struct {
			Steps []json.RawMessage `json:"steps"`
		} `json:"plan"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Plan.Steps) < 5 {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	return len(doc.Plan.Steps)
}

func podUIDs(t *testing.T, ns string, l layout) map[string]bool {
	t.Helper()
	pods := env.WaitPodsReady(t, ns, l.selector, 1, 2*time.Minute)
	out := map[string]bool{}
	for _, p := range pods {
		out[string(p.UID)] = true
	}
	return out
}

// A rotate interrupted after its first pod restarts only the other pods when
// run again, and does not re-issue the certificates a second time: every pod
// is replaced exactly once.
func TestResumedRotateRestartsOnlyStalePods(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 3)
	if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes"); err != nil {
		t.Fatal(err)
	}
	before := podsByName(t, ns, l)
	err := interrupted(t, ns, []string{"evict", "pgpool-2", "done in"}, "tls", "rotate", "pgpool")
	if cmd.ExitCode(err) != 130 {
		t.Fatalf("rotate was not interrupted after its first pod: %v", err)
	}
	mid := podsByName(t, ns, l)
	if mid["pgpool-2"] == before["pgpool-2"] || mid["pgpool-1"] != before["pgpool-1"] {
		t.Fatalf("after the interrupted run: pods %v, before %v", mid, before)
	}
	revs := revisions(t, ns)
	out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "rotate", "pgpool", "--yes")
	if err != nil || !strings.Contains(out, "1 of 3 pods were restarted by the run that did not finish") || strings.Contains(out, "evict   Pod "+ns+"/pgpool-2") ||
		!strings.Contains(out, "Certificate pgpool-server-cert was re-issued by the run that did not finish") ||
		!strings.Contains(errOut, "a ready endpoint of 2 Service(s)") {
		t.Fatalf("rotate again: %v\n%s\n%s", err, out, errOut)
	}
	after := podsByName(t, ns, l)
	if after["pgpool-2"] != mid["pgpool-2"] {
		t.Fatal("pgpool-2, restarted by the interrupted run, was restarted again")
	}
	for _, n := range []string{"pgpool-0", "pgpool-1"} {
		if after[n] == before[n] {
			t.Fatalf("%s was not restarted", n)
		}
	}
	for n, r := range revisions(t, ns) {
		if r != revs[n] {
			t.Fatalf("Certificate %s re-issued again by the resumed run (revision %d -> %d)", n, revs[n], r)
		}
	}
	checkLastOperation(t, ns, l, "rotate", "Succeeded")
}

func podsByName(t *testing.T, ns string, l layout) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range env.WaitPodsReady(t, ns, l.selector, 3, 2*time.Minute) {
		out[p.Name] = string(p.UID)
	}
	return out
}

// add and remove run again after they succeeded exit 0 and say there is
// nothing to do, writing nothing; add with other settings is still refused.
func TestRerunAfterSuccessHasNothingToDo(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes"}
	if _, _, err := plugin(t, env.Kubeconfig, ns, add...); err != nil {
		t.Fatal(err)
	}
	before := podUIDs(t, ns, l)
	out, errOut, err := plugin(t, env.Kubeconfig, ns, add...)
	if err != nil || !strings.Contains(out, "nothing to do") {
		t.Fatalf("add again: %v\n%s\n%s", err, out, errOut)
	}
	for u := range podUIDs(t, ns, l) {
		if !before[u] {
			t.Fatal("add again restarted a pod")
		}
	}
	if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "verify-full", "--yes"); err == nil {
		t.Fatal("add again with another sslMode was not refused")
	}
	if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "remove", "pgpool", "--yes"); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, "tls", "remove", "pgpool", "--yes", "-o", "json")
	if err != nil || !strings.Contains(out, `"nothingToDo"`) {
		t.Fatalf("remove again: %v\n%s\n%s", err, out, errOut)
	}
	checkLastOperation(t, ns, l, "remove", "Succeeded")
}
