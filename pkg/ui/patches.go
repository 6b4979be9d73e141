package ui

import (
	"fmt"
	"io"

	"sigs.k8s.io/yaml"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// PrintPatches prints -o patch: the plan's changes to objects that exist,
// one YAML document per object (an entry for a kustomization's patches,
// or `kubectl patch` input), after comments naming what it creates and
// what it does not print. nothing, when set, says why there is no plan.
func PrintPatches(out io.Writer, p *plan.Plan, nothing string, showSecrets bool) error {
	if p == nil {
		_, err := fmt.Fprintf(out, "# %s\n", nothing)
		return err
	}
	fmt.Fprintf(out, "# kubectl-pgpool tls %s on %s/%s %s: its changes to objects that exist, as patches.\n", p.Operation, p.Target.Namespace, p.Target.Name, p.Target.Kind)
	fmt.Fprintln(out, "# Each document is an entry for a kustomization's patches; to apply one with kubectl:")
	fmt.Fprintln(out, "#   kubectl patch KIND NAME -n NAMESPACE --type json (a list of operations) or merge (an object) -p PATCH")
	for _, o := range p.Creates {
		fmt.Fprintf(out, "# creates %s %s/%s (not a patch: put the object itself into the source of truth, or leave it to kubectl-pgpool)\n", o.Kind, o.Namespace, o.Name)
	}
	for _, u := range p.Unprinted {
		fmt.Fprintf(out, "# not printed: %s\n", u)
	}
	if !showSecrets {
		fmt.Fprintf(out, "# secret values (password environment variables, pool_hba.conf's ldapbindpasswd) are shown as %s: --show-secrets prints them\n", conf.Redacted)
	}
	for _, d := range p.Patches {
		var doc any = d
		if !showSecrets {
			r, err := Redact(d)
			if err != nil {
				return err
			}
			doc = r
		}
		b, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		kind := map[bool]string{true: "json", false: "merge"}[d.JSONPatch()]
		if _, err := fmt.Fprintf(out, "---\n# kubectl patch %s %s -n %s --type %s -p PATCH\n%s", d.Target.Kind, d.Target.Name, d.Target.Namespace, kind, b); err != nil {
			return err
		}
	}
	return nil
}
