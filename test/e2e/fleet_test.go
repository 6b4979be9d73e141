package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// Five pgpools in three namespaces, four of them labelled for this test; in
// one namespace the new issuer is not Ready. change-issuer -A -l changes
// exactly the labelled ones, two at a time: three succeed, the one whose
// issuer is broken fails, the summary and the exit code say so; rotate -o
// json gives one result per pgpool; status -A -l is a table of them.
func TestFleets(t *testing.T) {
	l := layouts[0]
	label := fmt.Sprintf("kubectl-pgpool-fleet=f%d", time.Now().UnixNano()%1e9)
	k, v, _ := strings.Cut(label, "=")
	type pp struct {
		ns, name string
		labelled bool
	}
	a, b, c := setup(t, l, 1), setup(t, l, 1), setup(t, l, 1)
	for _, ns := range []string{a, b} {
		env.Apply(t, ns, env.KubeDBFixtureNamed(t, "pgpool-b"), 1)
		env.WaitPodsReady(t, ns, "app.kubernetes.io/instance=pgpool-b", 1, 2*time.Minute)
	}
	all := []pp{{a, "pgpool", true}, {a, "pgpool-b", true}, {b, "pgpool", true}, {b, "pgpool-b", false}, {c, "pgpool", true}}
	for _, p := range all {
		if _, _, err := plugin(t, env.Kubeconfig, p.ns, "tls", "add", p.name, "--issuer", "pgpool-issuer", "--yes"); err != nil {
			t.Fatal(err)
		}
		if p.labelled {
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, k, v)
			if _, err := env.Kube.AppsV1().StatefulSets(p.ns).Patch(testenv.Context(t, time.Minute), p.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := testenv.Context(t, time.Minute)
	if _, err := env.CertMgr.CertmanagerV1().Issuers(b).Patch(ctx, "pp-new-issuer", types.MergePatchType, []byte(`{"spec":{"ca":{"secretName":"nosuch"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	env.WaitIssuerNotReady(t, ctx, b, "pp-new-issuer")

	out, errOut, err := testenv.Plugin(env.Kubeconfig, "", 5*time.Minute, "tls", "change-issuer", "-A", "-l", label, "--issuer", "pp-new-issuer", "--parallel", "2", "--yes")
	if err == nil || cmd.ExitCode(err) != 1 || !strings.Contains(err.Error(), "tls change-issuer failed on 1 of 4 pgpools: "+b+"/pgpool") {
		t.Fatalf("change-issuer on the fleet: %v\n%s\n%s", err, out, errOut)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			rows[f[0]+"/"+f[1]] = f[2]
		}
	}
	for _, p := range all {
		want := map[bool]string{true: "succeeded", false: "FAILED"}[p.ns != b]
		if !p.labelled {
			want = "" // not in the fleet
		}
		if got := rows[p.ns+"/"+p.name]; got != want {
			t.Fatalf("summary of %s/%s: %q, want %q\n%s", p.ns, p.name, got, want, out)
		}
	}
	if !strings.Contains(errOut, "["+a+"/pgpool-b] ") {
		t.Fatalf("progress lines do not name their pgpool:\n%s", errOut)
	}
	// The pgpool outside the fleet was not touched.
	if sts, err := env.Kube.AppsV1().StatefulSets(b).Get(ctx, "pgpool-b", metav1.GetOptions{}); err != nil || !strings.Contains(sts.Annotations[pgpool.AnnotationLastOperation], `"operation":"add"`) {
		t.Fatalf("%s/pgpool-b, not labelled, was changed: %v %v", b, err, sts.Annotations)
	}

	out, _, err = testenv.Plugin(env.Kubeconfig, "", 5*time.Minute, "tls", "rotate", "-A", "-l", label, "--parallel", "3", "--yes", "-o", "json")
	var doc struct {
		Results []struct {
			Namespace string            `json:"namespace"`
			Name      string            `json:"name"`
			Succeeded bool              `json:"succeeded"`
			Output    []json.RawMessage `json:"output"`
		} `json:"results"`
	}
	if err != nil || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Results) != 4 {
		t.Fatalf("rotate -o json on the fleet: %v\n%s", err, out)
	}
	for _, r := range doc.Results {
		if !r.Succeeded || len(r.Output) != 1 {
			t.Fatalf("rotate on %s/%s: %+v", r.Namespace, r.Name, r)
		}
	}

	out, _, err = testenv.Plugin(env.Kubeconfig, "", time.Minute, "tls", "status", "-A", "-l", label, "--verify=false")
	if err != nil || strings.Count(out, "\n") != 5 || !strings.HasPrefix(out, "NAMESPACE") || strings.Contains(out, b+"  pgpool-b") {
		t.Fatalf("status -A -l: %v\n%s", err, out)
	}
}
