package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/operation"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// TrustOptions are the options of `tls trust`.
type TrustOptions struct {
	connection
	Request operation.TrustRequest
	DryRun  string
	Yes     bool
}

func newTrustCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &TrustOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}, DryRun: "none", Request: operation.TrustRequest{TrustManager: "auto"}}
	c := &cobra.Command{
		Use:   "trust NAME (--to-namespace NS,... | --to-selector SELECTOR | --stop)",
		Short: "Give the pgpool's CA to its clients: a ConfigMap NAME-ca in their namespaces, kept current",
		Long: `Write the CAs a client needs to verify pgpool (the issuer's CA, and during an
overlap after change-issuer the previous one too) as ca.crt of a ConfigMap
NAME-ca in each namespace named, or picked by a label selector on namespaces.
Where trust-manager is installed, write one trust-manager Bundle of that name
instead, which trust-manager syncs into those namespaces. The places are
recorded on the workload: tls rotate and change-issuer update the copies
before any pod restarts. --stop deletes them.`,
		Example: `  kubectl pgpool tls trust pgpool -n demo --to-namespace shop,billing
  kubectl pgpool tls trust pgpool -n demo --to-selector pgpool-client=demo
  # in a client pod: sslrootcert=/etc/pgpool-ca/ca.crt, mounting ConfigMap pgpool-ca
  kubectl pgpool tls trust pgpool -n demo --stop`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	c.Flags().StringSliceVar(&o.Request.Namespaces, "to-namespace", nil, "namespaces of the clients (repeat, or comma-separated)")
	c.Flags().StringVar(&o.Request.Selector, "to-selector", "", "a label selector on namespaces: every namespace it picks, now and at each rotate")
	c.Flags().StringVar(&o.Request.Name, "name", "", "name of the ConfigMaps (and of the Bundle) (default NAME-ca)")
	c.Flags().StringVar(&o.Request.TrustManager, "trust-manager", o.Request.TrustManager, `"auto" (a trust-manager Bundle when trust-manager is installed), "true" or "false" (ConfigMaps written by the plugin)`)
	c.Flags().BoolVar(&o.Request.Stop, "stop", false, "delete every copy and the record")
	c.Flags().StringVar(&o.DryRun, "dry-run", o.DryRun, `"none", "client" (print what would change) or "server" (also send each write with dryRun=All)`)
	c.Flags().BoolVarP(&o.Yes, "yes", "y", false, "do not ask for confirmation (none is asked without a terminal)")
	return c
}

// Complete resolves NAME and the clients.
func (o *TrustOptions) Complete(args []string) error {
	if len(args) != 1 {
		return UsageError{fmt.Errorf("tls trust takes one pgpool NAME")}
	}
	o.Name = args[0]
	return o.completeClients()
}

// Validate checks the flags (no I/O).
func (o *TrustOptions) Validate() error {
	r := o.Request
	where := len(r.Namespaces) > 0 || r.Selector != ""
	switch {
	case r.Stop && where:
		return UsageError{fmt.Errorf("--stop deletes every copy: it does not go with --to-namespace or --to-selector")}
	case !r.Stop && !where:
		return UsageError{fmt.Errorf("say where the clients are: --to-namespace NS,... or --to-selector SELECTOR (or --stop)")}
	case len(r.Namespaces) > 0 && r.Selector != "":
		return UsageError{fmt.Errorf("--to-namespace and --to-selector do not go together (trust-manager would take only the namespaces both pick): label the namespaces and use --to-selector")}
	}
	for _, ns := range r.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return UsageError{fmt.Errorf("--to-namespace %q is not a namespace name: %s", ns, errs[0])}
		}
	}
	if r.Selector != "" {
		if _, err := labels.Parse(r.Selector); err != nil {
			return UsageError{fmt.Errorf("--to-selector %q: %w", r.Selector, err)}
		}
	}
	if r.Name != "" {
		if errs := validation.IsDNS1123Subdomain(r.Name); len(errs) > 0 {
			return UsageError{fmt.Errorf("--name %q is not a ConfigMap name: %s", r.Name, errs[0])}
		}
	}
	if err := oneOf("--trust-manager", r.TrustManager, "auto true false"); err != nil {
		return err
	}
	return oneOf("--dry-run", o.DryRun, "none client server")
}

// Run plans, prints, asks (on a terminal) and applies.
func (o *TrustOptions) Run(ctx context.Context) error {
	p, err := operation.PlanTrust(ctx, o.Clients, discover.Ref{Namespace: o.Namespace, Name: o.Name}, o.Request)
	if err != nil {
		return err
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(o.ErrOut, "warning: %s\n", w)
	}
	for _, l := range p.Lines {
		fmt.Fprintln(o.Out, l)
	}
	if p.Trust == nil && len(p.Stale) == 0 && p.DeleteBundle == "" && p.Target.Annotations[pgpool.AnnotationTrust] == "" {
		return nil
	}
	dry, proceed, err := o.mayWrite(ctx, o.DryRun, o.Yes, fmt.Sprintf("Apply to %s? [y/N] ", p.Target))
	if !proceed || err != nil {
		return err
	}
	done, err := operation.ApplyTrust(ctx, o.Clients, p, dry)
	for _, d := range done {
		fmt.Fprintln(o.Out, d)
	}
	if err != nil {
		return err
	}
	if o.DryRun == "server" {
		fmt.Fprintln(o.Out, "(server dry run: the API server checked each write; nothing was changed)")
	}
	return nil
}
