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
	pure := []string{"../conf", "../plan", ".", "../pgpool", "../tls"}
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
