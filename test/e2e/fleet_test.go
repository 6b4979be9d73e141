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
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// Five pgpools, four of them labelled for this test; in one, the new
// issuer is not Ready. change-issuer -A -l changes exactly the labelled
// ones, two at a time: three succeed, the broken one fails (and is rolled
// back or left unchanged), the summary and the exit code say so; rotate -o
// json gives one result per pgpool; status -A -l is a table of them.
func TestFleets(t *testing.T) {
	l := layouts[0]
	label := fmt.Sprintf("kubectl-pgpool-fleet=f%d", time.Now().UnixNano()%1e9)
	k, v, _ := strings.Cut(label, "=")
	var nss []string
	for i := 0; i < 5; i++ {
		ns := setup(t, l, 1)
		nss = append(nss, ns)
		if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes"); err != nil {
			t.Fatal(err)
		}
		if i < 4 {
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, k, v)
			if _, err := env.Kube.AppsV1().StatefulSets(ns).Patch(testenv.Context(t, time.Minute), "pgpool", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	broken := nss[1]
	ctx := testenv.Context(t, time.Minute)
	if _, err := env.CertMgr.CertmanagerV1().Issuers(broken).Patch(ctx, "pp-new-issuer", types.MergePatchType, []byte(`{"spec":{"ca":{"secretName":"nosuch"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	env.WaitIssuerNotReady(t, ctx, broken, "pp-new-issuer")

	out, errOut, err := testenv.Plugin(env.Kubeconfig, "", 5*time.Minute, "tls", "change-issuer", "-A", "-l", label, "--issuer", "pp-new-issuer", "--parallel", "2", "--yes")
	if err == nil || cmd.ExitCode(err) != 1 || !strings.Contains(err.Error(), "tls change-issuer failed on 1 of 4 pgpools: "+broken+"/pgpool") {
		t.Fatalf("change-issuer on the fleet: %v\n%s\n%s", err, out, errOut)
	}
	for i, ns := range nss {
		row := ""
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, ns+" ") {
				row = line
			}
		}
		want := map[bool]string{true: "succeeded", false: "FAILED"}[ns != broken]
		if i == 4 {
			want = "" // not labelled: not in the fleet
		}
		if (want == "" && row != "") || (want != "" && !strings.Contains(row, want)) {
			t.Fatalf("summary row of %s: %q, want %q\n%s", ns, row, want, out)
		}
		if !strings.Contains(errOut, "["+nss[0]+"/pgpool] ") {
			t.Fatalf("progress lines do not name their pgpool:\n%s", errOut)
		}
	}
	checkLastOperation(t, nss[4], l, "add", "Succeeded")

	out, _, err = testenv.Plugin(env.Kubeconfig, "", 5*time.Minute, "tls", "rotate", "-A", "-l", label, "--parallel", "3", "--yes", "-o", "json")
	var doc struct {
		Results []struct {
			Namespace string            `json:"namespace"`
			Succeeded bool              `json:"succeeded"`
			Output    []json.RawMessage `json:"output"`
		} `json:"results"`
	}
	if err != nil || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Results) != 4 {
		t.Fatalf("rotate -o json on the fleet: %v\n%s", err, out)
	}
	for _, r := range doc.Results {
		if !r.Succeeded || len(r.Output) != 1 {
			t.Fatalf("rotate on %s: %+v", r.Namespace, r)
		}
	}

	out, _, err = testenv.Plugin(env.Kubeconfig, "", time.Minute, "tls", "status", "-A", "-l", label, "--verify=false")
	if err != nil || strings.Count(out, "\n") != 5 || !strings.HasPrefix(out, "NAMESPACE") || strings.Contains(out, nss[4]) {
		t.Fatalf("status -A -l: %v\n%s", err, out)
	}
}
