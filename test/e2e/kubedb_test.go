package e2e

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// pauses watches the Pgpool in ns from now on and returns a function that
// stops and says which Paused reasons were seen, in order (a reason once
// per change of it; "" for not paused).
func pauses(t *testing.T, ns string) func() []string {
	t.Helper()
	ctx, cancel := context.WithCancel(testenv.Context(t, 10*time.Minute))
	res := env.Dynamic.Resource(pgpool.KubeDBPgpools).Namespace(ns)
	cur, err := res.Get(ctx, "pgpool", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, cur.GetResourceVersion(), cache.ToListerWatcherWithContext(dynamicLW(pgpool.KubeDBPgpools, ns, "pgpool")))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	lastRV := cur.GetResourceVersion()
	events := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := "-"
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || ev.Type == watch.Error {
				continue
			}
			reason := ""
			if o := pgpool.ReadOwner(u); o.Paused != nil {
				reason = o.Paused.Reason
			}
			mu.Lock()
			if reason != last {
				seen = append(seen, reason)
				last = reason
			}
			lastRV = u.GetResourceVersion()
			mu.Unlock()
			select {
			case events <- struct{}{}:
			default:
			}
		}
	}()
	return func() []string {
		t.Helper()
		// The watch has seen everything once it has delivered the object
		// as it is now.
		now, err := res.Get(ctx, "pgpool", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.After(time.Minute)
		for {
			mu.Lock()
			caught := lastRV == now.GetResourceVersion()
			mu.Unlock()
			if caught {
				break
			}
			select {
			case <-events:
			case <-deadline:
				t.Fatalf("the watch of the Pgpool never delivered resourceVersion %s", now.GetResourceVersion())
			}
		}
		w.Stop()
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}

// checkOwner checks what the Pgpool object says after an operation, and
// that the pause was set by the plugin during it and lifted after.
func checkOwner(t *testing.T, ns, op string, seen []string, ssl, auth, issuer string) {
	t.Helper()
	if len(seen) < 2 || seen[0] != pgpool.PauseReason || seen[len(seen)-1] != "" {
		t.Fatalf("%s: the Paused reasons seen by the watch: %q, want the plugin's, then none", op, seen)
	}
	env.CheckKubeDBSays(t, ns, op, ssl, auth, issuer)
}

// The seed's walkthrough on a pgpool that a KubeDB Pgpool object controls:
// each operation pauses the Pgpool (seen by a watch), writes the result
// into its spec after the proof, and lifts the pause; the object stays
// valid under the CRD's schema and KubeDB's admission rules; tls status
// shows what it says. A PgpoolOpsRequest that has not ended, or someone
// else's pause, refuses the command with nothing written. A failure that
// rolls back, and a SIGKILLed run finished by running it again, leave no
// pause behind.
func TestKubeDBPgpoolObject(t *testing.T) {
	env.InstallKubeDBAPI(t)
	l := layouts[0]
	ns := setup(t, l, 1)
	env.KubeDBOwned(t, ns, pgpool.StatefulSets)
	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := plugin(t, env.Kubeconfig, ns, args...)
		if err != nil {
			t.Fatalf("kubectl pgpool %s: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
		}
		return out + errOut
	}
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes"}

	// Refused, with nothing written, while KubeDB is changing the Pgpool.
	ctx := testenv.Context(t, time.Minute)
	opsGVR := pgpool.PgpoolOpsRequests
	ops := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "ops.kubedb.com/v1alpha1", "kind": "PgpoolOpsRequest",
		"metadata": map[string]any{"name": "ppops-restart", "namespace": ns}, "spec": map[string]any{"type": "Restart", "databaseRef": map[string]any{"name": "pgpool"}}}}
	if _, err := env.Dynamic.Resource(opsGVR).Namespace(ns).Create(ctx, ops, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := resourceVersions(t, ns, l)
	if out, errOut, err := plugin(t, env.Kubeconfig, ns, add...); err == nil || !strings.Contains(err.Error(), "ppops-restart (phase none yet)") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("add with a PgpoolOpsRequest pending: %v\n%s\n%s", err, out, errOut)
	}
	if err := env.Dynamic.Resource(opsGVR).Namespace(ns).Delete(ctx, "ppops-restart", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	res := env.Dynamic.Resource(pgpool.KubeDBPgpools).Namespace(ns)
	setPaused := func(conds []any) {
		t.Helper()
		u, err := res.Get(ctx, "pgpool", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_ = unstructured.SetNestedSlice(u.Object, conds, "status", "conditions")
		if _, err := res.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setPaused([]any{map[string]any{"type": "Paused", "status": "True", "reason": "ManualPause", "message": "kubectl dba pause"}})
	if out, errOut, err := plugin(t, env.Kubeconfig, ns, add...); err == nil || !strings.Contains(err.Error(), "paused by someone else") {
		t.Fatalf("add under someone else's pause: %v\n%s\n%s", err, out, errOut)
	}
	if after := resourceVersions(t, ns, l); after != before {
		t.Fatalf("a refused command wrote: %s -> %s", before, after)
	}
	setPaused([]any{})

	// A failure that rolls back leaves no pause and the Pgpool as it was.
	refuseTLSVolume(t, ns, l)
	stop := pauses(t, ns)
	if out, errOut, err := plugin(t, env.Kubeconfig, ns, add...); err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("add refused by the policy: %v\n%s\n%s", err, out, errOut)
	}
	checkOwner(t, ns, "add rolled back", stop(), "", "md5", "")
	adm := env.Kube.AdmissionregistrationV1()
	_ = adm.ValidatingAdmissionPolicyBindings().Delete(ctx, "no-certs-"+ns, metav1.DeleteOptions{})
	_ = adm.ValidatingAdmissionPolicies().Delete(ctx, "no-certs-"+ns, metav1.DeleteOptions{})
	volume := []byte(`[{"op":"add","path":"/spec/template/spec/volumes/-","value":{"name":"certs","emptyDir":{}}}]`)
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := env.Dynamic.Resource(pgpool.StatefulSets).Namespace(ns).Patch(ctx, "pgpool", types.JSONPatchType, volume, metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the admission policy that refused the TLS volume never went away: %v", err)
	}

	// An add killed after its config patch leaves the plugin's pause; the
	// re-run finishes the add and lifts it.
	env.KillAt(t, ns, syscall.SIGKILL, func(line string) bool {
		return strings.Contains(line, "patch Secret "+ns+"/pgpool-config") && strings.Contains(line, "done in")
	}, add[:len(add)-1]...)
	if o := env.KubeDBOwner(t, ns); !o.PausedByUs() {
		t.Fatalf("after the killed add, the Pgpool's pause: %+v", o.Paused)
	}
	if out := run("tls", "status", "pgpool", "--verify=false"); !strings.Contains(out, "paused:") || !strings.Contains(out, "by kubectl-pgpool") {
		t.Fatalf("status after the killed add:\n%s", out)
	}
	stop = pauses(t, ns)
	run(add...)
	checkOwner(t, ns, "add", append([]string{pgpool.PauseReason}, stop()...), "require", "cert", "pgpool-issuer")
	if out := run("tls", "status", "pgpool", "--verify=false"); !strings.Contains(out, `spec.tls issuer Issuer "pgpool-issuer"`) || strings.Contains(out, "DIFFERS") || strings.Contains(out, "paused:") {
		t.Fatalf("status after add:\n%s", out)
	}

	for _, step := range []struct {
		args   []string
		issuer string
		ssl    string
		auth   string
	}{
		{[]string{"tls", "rotate", "pgpool", "--yes"}, "pgpool-issuer", "require", "cert"},
		{[]string{"tls", "change-issuer", "pgpool", "--issuer", "pp-new-issuer", "--yes"}, "pp-new-issuer", "require", "cert"},
		{[]string{"tls", "remove", "pgpool", "--yes"}, "", "disable", "md5"},
	} {
		stop := pauses(t, ns)
		run(step.args...)
		checkOwner(t, ns, step.args[1], stop(), step.ssl, step.auth, step.issuer)
	}
	// The Pgpool's spec is backed up with the rest: rollback of the remove
	// puts spec.tls back.
	stop = pauses(t, ns)
	run("tls", "rollback", "pgpool", "--yes")
	checkOwner(t, ns, "rollback", stop(), "require", "cert", "pp-new-issuer")
}

// KubeDB from v2026.1.19 names the config Secret NAME-<the last 6
// characters of the Pgpool's UID> (before: NAME-config): discovery follows
// the PetSet's pgpool-config volume, so add and remove write that Secret,
// and the Pgpool object follows.
func TestKubeDBNewConfigSecretName(t *testing.T) {
	env.InstallKubeDBAPI(t)
	ns := env.Namespace(t)
	env.Apply(t, ns, env.Fixture(t, "issuers.yaml"), 0)
	ctx := testenv.Context(t, 2*time.Minute)
	pg, err := env.Dynamic.Resource(pgpool.KubeDBPgpools).Namespace(ns).Create(ctx, testenv.PgpoolObject(ns, "ha-postgres"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uid := string(pg.GetUID())
	name := "pgpool-" + uid[len(uid)-6:]
	owner := []any{map[string]any{"apiVersion": "kubedb.com/v1alpha2", "kind": "Pgpool", "name": "pgpool", "uid": uid, "controller": true}}
	objs := env.Fixture(t, "kubedb.yaml")
	for _, o := range objs {
		switch o.GetKind() {
		case "Secret":
			o.SetName(name)
			_ = unstructured.SetNestedSlice(o.Object, owner, "metadata", "ownerReferences")
		case "StatefulSet":
			vols, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
			for _, v := range vols {
				if m, _ := v.(map[string]any); m["secret"] != nil {
					m["secret"].(map[string]any)["secretName"] = name
				}
			}
			_ = unstructured.SetNestedSlice(o.Object, vols, "spec", "template", "spec", "volumes")
			_ = unstructured.SetNestedSlice(o.Object, owner, "metadata", "ownerReferences")
		}
	}
	env.Apply(t, ns, objs, 1)
	waitIssuer(t, ns, "pgpool-issuer")
	env.WaitPodsReady(t, ns, kubedbSelector, 1, 2*time.Minute)
	conf := func() string {
		t.Helper()
		s, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data["pgpool.conf"]) + string(s.Data["pool_hba.conf"])
	}
	for _, step := range []struct {
		args          []string
		want          string
		ssl, auth, by string
	}{
		{[]string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes"}, "hostssl    all             all             0.0.0.0/0               cert", "require", "cert", "pgpool-issuer"},
		{[]string{"tls", "remove", "pgpool", "--yes"}, "ssl = 'off'", "disable", "md5", ""},
	} {
		out, errOut, err := plugin(t, env.Kubeconfig, ns, step.args...)
		if err != nil || !strings.Contains(out+errOut, "Secret "+ns+"/"+name) {
			t.Fatalf("%s: %v\n%s\n%s", step.args[1], err, out, errOut)
		}
		if c := conf(); !strings.Contains(c, step.want) {
			t.Fatalf("%s: Secret %s lacks %q:\n%s", step.args[1], name, step.want, c)
		}
		env.CheckKubeDBSays(t, ns, step.args[1], step.ssl, step.auth, step.by)
	}
}
