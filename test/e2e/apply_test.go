package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// The KubeDB tutorial's four PgpoolOpsRequests, unchanged (namespace demo),
// run in order with `tls apply` against the KubeDB-layout pgpool; after each
// the objects are what the matching command leaves. A bad manifest among
// good ones runs none of them.
func TestSeedOpsRequestsApply(t *testing.T) {
	l := layouts[0]
	ctx := testenv.Context(t, 5*time.Minute)
	const ns = "demo"
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace demo (the manifests name it; delete a left-over one): %v", err)
	}
	t.Cleanup(func() { _ = env.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	env.Apply(t, ns, env.Fixture(t, "issuers.yaml"), 0)
	env.Apply(t, ns, env.Fixture(t, l.fixture), 1)
	waitIssuer(t, ns, "pgpool-issuer")
	waitIssuer(t, ns, "pp-new-issuer")
	env.WaitPodsReady(t, ns, l.selector, 1, 2*time.Minute)
	waitSettled(t, ns, l)
	// As KubeDB runs it: a Pgpool object controls the pgpool, and after
	// each request it says what the ops-manager would have written.
	env.InstallKubeDBAPI(t)
	env.KubeDBOwned(t, ns, pgpool.StatefulSets)
	file := func(n string) string { return filepath.Join(env.Root, "test", "fixtures", "kubedb-ops", n) }

	// A file whose second document is not ReconfigureTLS: nothing runs.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, readFile(t, file("ppops-add-tls.yaml"))+"---\napiVersion: ops.kubedb.com/v1alpha1\nkind: PgpoolOpsRequest\nmetadata: {name: ppops-restart, namespace: demo}\nspec: {type: Restart, databaseRef: {name: pgpool}}\n")
	before := written(t, ns, l)
	_, _, err := testenv.Plugin(env.Kubeconfig, "", 5*time.Minute, "tls", "apply", "-f", bad, "--yes")
	if err == nil || !strings.Contains(err.Error(), `(PgpoolOpsRequest ppops-restart): spec.type "Restart"`) || cmd.ExitCode(err) != 2 {
		t.Fatalf("a file with a Restart request: %v", err)
	}
	if after := written(t, ns, l); after != before {
		t.Fatalf("a refused file changed objects:\n%s\n%s", before, after)
	}

	apply := func(n string) {
		t.Helper()
		out, errOut, err := testenv.Plugin(env.Kubeconfig, "", 5*time.Minute, "tls", "apply", "-f", file(n), "--yes")
		if err != nil {
			t.Fatalf("tls apply -f %s: %v\n%s\n%s", n, err, out, errOut)
		}
	}
	apply("ppops-add-tls.yaml")
	checkConfig(t, ns, l, true, "hostssl all all 0.0.0.0/0 cert")
	checkVolume(t, ns, l, true)
	checkLastOperation(t, ns, l, "add", "Succeeded")
	env.CheckKubeDBSays(t, ns, "ppops-add-tls", "require", "cert", "pgpool-issuer")
	cli := secretInfo(t, ns, "pgpool-client-cert")
	if !strings.Contains(cli.Subject, "O=pgpool") || !strings.Contains(cli.Subject, "OU=client") {
		t.Fatalf("client certificate subject %q, want O=pgpool, OU=client", cli.Subject)
	}
	revs := revisions(t, ns)
	apply("ppops-rotate.yaml")
	checkLastOperation(t, ns, l, "rotate", "Succeeded")
	env.CheckKubeDBSays(t, ns, "ppops-rotate", "require", "cert", "pgpool-issuer")
	for n, r := range revisions(t, ns) {
		if r <= revs[n] {
			t.Fatalf("ppops-rotate did not re-issue %s", n)
		}
	}
	apply("ppops-change-issuer.yaml")
	checkLastOperation(t, ns, l, "change-issuer", "Succeeded")
	env.CheckKubeDBSays(t, ns, "ppops-change-issuer", "require", "cert", "pp-new-issuer")
	if s := secretInfo(t, ns, "pgpool-server-cert"); s.Issuer != "CN=ca-updated,O=kubedb-updated" {
		t.Fatalf("issuer after ppops-change-issuer: %q", s.Issuer)
	}
	apply("ppops-remove.yaml")
	checkLastOperation(t, ns, l, "remove", "Succeeded")
	env.CheckKubeDBSays(t, ns, "ppops-remove", "disable", "md5", "")
	checkConfig(t, ns, l, false, "host all all 0.0.0.0/0 md5")
	checkVolume(t, ns, l, false)
	if _, err := env.CertMgr.CertmanagerV1().Certificates(ns).Get(ctx, "pgpool-server-cert", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the server Certificate is left after ppops-remove: %v", err)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
