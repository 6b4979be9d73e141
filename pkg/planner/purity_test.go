package planner

import (
	"os/exec"
	"strings"
	"testing"
)

// The pure packages (the config text, the plan, the planner, the model,
// the certificates as data) import nothing that does Kubernetes I/O: a
// plan is built and tested without a cluster or a client.
func TestPurePackagesImportNoClient(t *testing.T) {
	pure := []string{"../conf", "../plan", ".", "../pgpool", "../tls", "../layout", "../opsrequest", "../owners", "../schedule"}
	out, err := exec.Command("go", append([]string{"list", "-deps"}, pure...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/client-go") || strings.Contains(dep, "cert-manager/pkg/client") {
			t.Errorf("a pure package depends on %s", dep)
		}
	}
}

// dataFlow is the order a request flows through the packages
// (docs/architecture.md): each may import only packages after it.
var dataFlow = []string{
	"cmd/kubectl-pgpool", "pkg/cmd", "pkg/ui", "pkg/opsrequest", "pkg/operation", "pkg/status", "pkg/runner",
	"pkg/restart", "pkg/lock", "pkg/verify", "pkg/tls/issuing", "pkg/planner", "pkg/discover", "pkg/layout",
	"pkg/plan", "pkg/pgpool", "pkg/owners", "pkg/conf", "pkg/tls", "pkg/schedule", "pkg/apiretry", "internal/parallel",
}

// No package imports one above it in the data flow, and the commands are
// imported by nothing but the binary.
func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "../../cmd/...", "../../pkg/...", "../../internal/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/kubectl-pgpool/kubectl-pgpool/"
	rank := map[string]int{}
	for i, p := range dataFlow {
		rank[p] = i
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		if strings.HasPrefix(pkg, "internal/fakes") || strings.HasPrefix(pkg, "internal/testfiles") {
			continue // test helpers
		}
		r, ok := rank[pkg]
		if !ok {
			t.Errorf("%s is not in the data flow: add it to dataFlow and docs/architecture.md", pkg)
			continue
		}
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			imp = strings.TrimPrefix(imp, mod)
			if ri, ok := rank[imp]; ok && ri <= r {
				t.Errorf("%s imports %s, which is above it in the data flow", pkg, imp)
			}
			if imp == "pkg/cmd" && pkg != "cmd/kubectl-pgpool" {
				t.Errorf("%s imports pkg/cmd: only the binary may", pkg)
			}
		}
	}
}
