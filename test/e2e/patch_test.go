package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// -o patch prints what a GitOps user puts into the source of truth: each
// patch, applied with kubectl patch to a copy of the objects as they were,
// gives the objects the plugin wrote (the pod template and the config).
func TestPatchOutputGivesWhatWasWritten(t *testing.T) {
	l := layouts[1] // a Deployment and a ConfigMap
	ns := setup(t, l, 1)
	cp := env.Namespace(t)
	env.Apply(t, cp, env.Fixture(t, l.fixture), 1)
	out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes", "-o", "patch", "--show-secrets")
	if err != nil {
		t.Fatalf("add -o patch: %v\n%s\n%s", err, out, errOut)
	}
	if !strings.Contains(out, "# creates Certificate "+ns+"/pgpool-server-cert") {
		t.Fatalf("-o patch does not name what add creates:\n%s", out)
	}
	var docs []plan.PatchDoc
	for _, d := range strings.Split(out, "\n---\n")[1:] {
		var doc plan.PatchDoc
		if err := yaml.UnmarshalStrict([]byte(d), &doc); err != nil {
			t.Fatalf("a document of -o patch: %v\n%s", err, d)
		}
		docs = append(docs, doc)
	}
	kinds := map[string]bool{}
	for _, d := range docs {
		kinds[d.Target.Kind] = true
		typ := "merge"
		if d.JSONPatch() {
			typ = "json"
		}
		res := strings.ToLower(d.Target.Kind)
		if d.Target.Group != "" {
			res += "." + d.Target.Group
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		b, err := exec.CommandContext(ctx, filepath.Join(env.Cluster.BinDir, "kubectl"), "--kubeconfig", env.Kubeconfig, "-n", cp,
			"patch", res, d.Target.Name, "--type", typ, "-p", d.Patch).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("kubectl patch %s %s: %v\n%s\n%s", res, d.Target.Name, err, b, d.Patch)
		}
	}
	if !kinds["Deployment"] || !kinds["ConfigMap"] {
		t.Fatalf("-o patch has patches for %v, want the Deployment and the ConfigMap", kinds)
	}
	ctx := testenv.Context(t, time.Minute)
	for _, get := range []func(string) (any, error){
		func(n string) (any, error) {
			d, err := env.Kube.AppsV1().Deployments(n).Get(ctx, "pgpool", metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return d.Spec.Template.Spec, nil
		},
		func(n string) (any, error) {
			c, err := env.Kube.CoreV1().ConfigMaps(n).Get(ctx, "pgpool-config", metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return c.Data, nil
		},
	} {
		wrote, err := get(ns)
		if err != nil {
			t.Fatal(err)
		}
		patched, err := get(cp)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(wrote, patched) {
			a, _ := json.MarshalIndent(wrote, "", " ")
			b, _ := json.MarshalIndent(patched, "", " ")
			t.Errorf("the plugin wrote\n%s\nthe patches give\n%s", a, b)
		}
	}
}
