package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// manyContexts writes a kubeconfig with three contexts: "east" and "west"
// (the test cluster, under the admin user; west's default namespace is
// another) and "down" (an API server nobody listens on).
func manyContexts(t *testing.T, westNS string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cur := cfg.Contexts[cfg.CurrentContext]
	cfg.Contexts["east"] = &clientcmdapi.Context{Cluster: cur.Cluster, AuthInfo: cur.AuthInfo}
	cfg.Contexts["west"] = &clientcmdapi.Context{Cluster: cur.Cluster, AuthInfo: cur.AuthInfo, Namespace: westNS}
	cfg.Clusters["nowhere"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}
	cfg.Contexts["down"] = &clientcmdapi.Context{Cluster: "nowhere", AuthInfo: cur.AuthInfo}
	delete(cfg.Contexts, cfg.CurrentContext)
	cfg.CurrentContext = "east"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// Issue 29, many clusters: tls status and the fleet form of tls rotate on
// several kubeconfig contexts (--context repeated, --all-contexts): one
// table with a CONTEXT column, -o json keyed by context, the unreachable
// context reported while the others go on, exit 1.
func TestManyContexts(t *testing.T) {
	east, west := setup(t, layouts[0], 1), setup(t, layouts[0], 1)
	label := fmt.Sprintf("ctx-%d", time.Now().UnixNano())
	ctx := testenv.Context(t, 3*time.Minute)
	for _, ns := range []string{east, west} {
		if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes"); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Kube.AppsV1().StatefulSets(ns).Patch(ctx, "pgpool", types.MergePatchType, []byte(`{"metadata":{"labels":{"tier":"`+label+`"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kc := manyContexts(t, west)

	// NAME (in namespace east: -n applies to every context).
	out, _, err := testenv.Plugin(kc, east, time.Minute, "tls", "status", "pgpool", "--verify=false", "--context", "east", "--context", "down")
	if err == nil || cmd.ExitCode(err) != 1 || !strings.Contains(out, "CONTEXT") || !strings.Contains(out, "east") || !strings.Contains(out, "down") {
		t.Fatalf("status on east and down: exit %d (%v)\n%s", cmd.ExitCode(err), err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "east ") || !strings.Contains(lines[1], " on ") || !strings.HasPrefix(lines[2], "down ") || !strings.Contains(lines[2], "127.0.0.1:1") {
		t.Fatalf("status table:\n%s", out)
	}

	out, _, err = testenv.Plugin(kc, east, time.Minute, "tls", "status", "-A", "-l", "tier="+label, "--verify=false", "--all-contexts", "-o", "json")
	var doc map[string]json.RawMessage
	if jerr := json.Unmarshal([]byte(out), &doc); jerr != nil || cmd.ExitCode(err) != 1 || len(doc) != 3 {
		t.Fatalf("status -A --all-contexts -o json: exit %d (%v), %v\n%s", cmd.ExitCode(err), err, jerr, out)
	}
	var rows []struct {
		Namespace string `json:"namespace"`
	}
	if err := json.Unmarshal(doc["west"], &rows); err != nil || len(rows) != 2 {
		t.Fatalf("west's rows: %v\n%s", err, doc["west"])
	}
	if !strings.Contains(string(doc["down"]), `"error"`) {
		t.Fatalf("down is not reported: %s", doc["down"])
	}

	// The fleet rotate on east (both pgpools) and down.
	out, errOut, err := testenv.Plugin(kc, east, 5*time.Minute, "tls", "rotate", "-A", "-l", "tier="+label, "--context", "east", "--context", "down", "--yes")
	if cmd.ExitCode(err) != 1 || !strings.Contains(out, "context east: succeeded") || !strings.Contains(out, "context down: failed") || !strings.Contains(errOut, "[east] ") {
		t.Fatalf("rotate on east and down: exit %d (%v)\n%s\n%s", cmd.ExitCode(err), err, out, errOut)
	}
	// A NAME is one pgpool in one cluster.
	if _, _, err := testenv.Plugin(kc, east, time.Minute, "tls", "rotate", "pgpool", "--context", "east", "--context", "west", "--yes"); cmd.ExitCode(err) != 2 {
		t.Fatalf("rotate NAME on two contexts: %v, want a usage error", err)
	}
}
