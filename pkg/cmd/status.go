package cmd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/operation"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ui"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
)

// StatusOptions are the options of `tls status`.
type StatusOptions struct {
	connection
	Fleet
	Output  string
	Verify  string
	Timeout time.Duration
}

// Validate checks the flags (no I/O).
func (o *StatusOptions) Validate() error {
	if err := oneOf("--output", o.Output, "text json yaml"); err != nil {
		return err
	}
	if err := oneOf("--verify", o.Verify, "true false required"); err != nil {
		return err
	}
	if o.Timeout <= 0 {
		return UsageError{fmt.Errorf("--timeout must be positive")}
	}
	return nil
}

func newStatusCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &StatusOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}, Timeout: 20 * time.Second}
	c := &cobra.Command{
		Use:   "status (NAME | -l SELECTOR | -A | --all)",
		Short: "Show what TLS is configured, its certificates and expiry, and the pods",
		Long: `Show the TLS configuration of a pgpool, its cert-manager Certificates and, by a
TLS handshake with each pod through port-forward, what every pod really serves
compared with the Certificate's Secret.`,
		Example: `  kubectl pgpool tls status pgpool -n demo
  kubectl pgpool tls status pgpool -n demo -o json
  # exit 1 unless every pod is proven to serve the Secret's certificate
  kubectl pgpool tls status pgpool -n demo --verify=required
  # a table of every pgpool in the cluster; exit 1 if any pod serves an old certificate
  kubectl pgpool tls status -A --verify=required`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	c.Flags().StringVarP(&o.Output, "output", "o", "text", "text, json or yaml")
	c.Flags().StringVar(&o.Verify, "verify", "true", `handshake with each pod through port-forward and compare what it serves with the Secret: "true" (report), "false" (skip), or "required" (exit 1 unless every pod is proven)`)
	c.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "time limit of each pod's handshake")
	o.addFleetFlags(c, false)
	return c
}

// Complete resolves NAME or the fleet, and the clients.
func (o *StatusOptions) Complete(args []string) error {
	return o.complete(&o.connection, args)
}

// Run prints the status.
func (o *StatusOptions) Run(ctx context.Context) error {
	if o.on() {
		return o.runFleet(ctx)
	}
	t, st, err := operation.StatusOf(ctx, o.Clients, discover.Ref{Namespace: o.Namespace, Name: o.Name}, o.Verify, o.Timeout)
	if err != nil {
		return err
	}
	if err := o.print(t, st); err != nil {
		return err
	}
	return o.required(t, st)
}

// required is --verify=required: an error unless every pod is proven.
func (o *StatusOptions) required(t *pgpool.Target, st *status.Status) error {
	if o.Verify != runner.VerifyRequired {
		return nil
	}
	if len(st.Pods) == 0 {
		return fmt.Errorf("%s has no pods, so nothing is proven (--verify=required)", t)
	}
	if u := st.UnknownCAs(); len(u) > 0 {
		return fmt.Errorf("the CA bundle of %s holds a CA of unknown origin, which can sign client certificates pgpool accepts: %s (sha256 %s, %s); the next tls rotate drops it", t, u[0].Subject, u[0].SHA256, u[0].Why)
	}
	pol := operation.RefusalPolicy(t)
	for _, p := range st.Pods {
		if p.Check != "ok" {
			return fmt.Errorf("pod %s of %s is not proven to serve what it should (%s: %s)", p.Name, t, p.Check, p.Detail)
		}
		r := verify.Refusal{Plaintext: p.Plaintext, Certless: p.Certless, Detail: p.Refusal}
		if err := r.Failure(pol); err != nil {
			return fmt.Errorf("pod %s of %s: %w", p.Name, t, err)
		}
	}
	return nil
}

func (o *StatusOptions) print(t *pgpool.Target, st *status.Status) error {
	if o.Output != "text" {
		return ui.PrintDoc(o.Out, o.Output, st)
	}
	return ui.RenderStatus(o.Out, t, st)
}

// StatusRow is one pgpool of `tls status -A|-l|--all`.
type StatusRow struct {
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Status    *status.Status `json:"status,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// runFleet shows every pgpool of the fleet: a table (namespace, name,
// sslMode, auth mode, issuer, days until the server certificate expires,
// pods serving the current certificate, last operation), or with -o the
// full status of each.
func (o *StatusOptions) runFleet(ctx context.Context) error {
	var rows []StatusRow
	var problems []string
	targets := map[int]*pgpool.Target{}
	for i, r := range o.refs {
		row := StatusRow{Namespace: r.Namespace, Name: r.Name}
		t, st, err := operation.StatusOf(ctx, o.Clients, r, o.Verify, o.Timeout)
		if err != nil {
			row.Error = err.Error()
			problems = append(problems, err.Error())
		} else {
			targets[i] = t
			row.Status = st
			if err := o.required(t, row.Status); err != nil {
				problems = append(problems, err.Error())
			}
		}
		rows = append(rows, row)
	}
	if o.Output != "text" {
		if err := ui.PrintDoc(o.Out, o.Output, rows); err != nil {
			return err
		}
	} else {
		table := make([]ui.StatusRow, len(rows))
		for i, r := range rows {
			table[i] = ui.StatusRow{Namespace: r.Namespace, Name: r.Name, Target: targets[i], Status: r.Status, Error: r.Error}
		}
		if err := ui.RenderStatusTable(o.Out, table, o.Verify != runner.VerifyOff); err != nil {
			return err
		}
	}
	if len(problems) > 0 && (o.Verify == runner.VerifyRequired || len(targets) < len(rows)) {
		return fmt.Errorf("%d of %d pgpools: %s", len(problems), len(rows), strings.Join(problems, "; "))
	}
	return nil
}
