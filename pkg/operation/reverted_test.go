package operation

import (
	"strings"
	"testing"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/owners"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
)

// TLS the plugin recorded but the config no longer has is reported as
// reverted; a Helm revision after the plugin's run is named as who did it,
// one before it is not; TLS on, or none recorded, is not reverted.
func TestReverted(t *testing.T) {
	ran := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	target := func(enabled bool, deployed time.Time) (*pgpool.Target, []planner.Managed) {
		tg := &pgpool.Target{Name: "pg", Namespace: "db", Annotations: map[string]string{
			pgpool.AnnotationTLS:           pgpool.TLSAnnotation("require", "cert", pgpool.IssuerRef{Name: "ca", Kind: "Issuer"}),
			pgpool.AnnotationLastOperation: `{"operation":"add","time":"` + ran.Format(time.RFC3339) + `","result":"Succeeded"}`,
		}, State: pgpool.TLSState{Enabled: enabled},
			HelmStored: map[string]owners.HelmStored{"db/pg": {Read: true, Revision: 3, Status: "deployed", Deployed: deployed}}}
		m := []planner.Managed{{What: "Deployment db/pg", Owner: owners.Owner{Tool: "Helm", Name: "release db/pg", Release: [2]string{"db", "pg"}}}}
		return tg, m
	}
	if got := reverted(target(false, ran.Add(time.Hour))); !strings.Contains(got, "Helm put the chart's values back") || !strings.Contains(got, "revision 3") {
		t.Errorf("reverted by a later Helm revision: %q", got)
	}
	if got := reverted(target(false, ran.Add(-time.Hour))); got == "" || strings.Contains(got, "Helm") {
		t.Errorf("reverted, Helm's revision before the run: %q", got)
	}
	if got := reverted(target(true, ran.Add(time.Hour))); got != "" {
		t.Errorf("TLS on: %q", got)
	}
	tg, m := target(false, ran.Add(time.Hour))
	delete(tg.Annotations, pgpool.AnnotationTLS)
	if got := reverted(tg, m); got != "" {
		t.Errorf("nothing recorded: %q", got)
	}
}
