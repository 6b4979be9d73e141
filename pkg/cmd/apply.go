package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/opsrequest"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// ApplyOptions are the options of `tls apply`.
type ApplyOptions struct {
	OperationOptions
	Filenames []string
	// timeoutSet, applySet: the flags were given (they win over spec).
	timeoutSet, applySet bool
	requests             []opsrequest.Run
}

func newApplyCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &ApplyOptions{OperationOptions: newOperationOptions(streams, flags)}
	c := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Run KubeDB PgpoolOpsRequests of type ReconfigureTLS as written, without the ops-manager",
		Long: `Run the PgpoolOpsRequest manifests (ops.kubedb.com/v1alpha1, type
ReconfigureTLS) in FILE ("-" reads stdin) in order, as the plugin's own
commands: spec.tls.issuerRef with certificates, sslMode and clientAuthMode
is tls add (change-issuer when the pgpool has TLS and only issuerRef is
given), rotateCertificates is tls rotate, remove is tls remove; spec.timeout
and spec.apply are --timeout and --apply (the flags win when given).
Every document is read and checked before the first one runs: another
spec.type, an unknown field or a combination KubeDB forbids changes nothing.`,
		Example: `  # The KubeDB tutorial's manifests, unchanged
  kubectl pgpool tls apply -f ppops-add-tls.yaml
  kubectl pgpool tls apply -f ppops-rotate.yaml --dry-run=client
  cat ppops-change-issuer.yaml | kubectl pgpool tls apply -f - --yes`,
		Args: cobra.NoArgs,
		PreRun: func(c *cobra.Command, _ []string) {
			o.timeoutSet, o.applySet = c.Flags().Changed("timeout"), c.Flags().Changed("apply")
		},
		RunE: runE(o),
	}
	o.addFlags(c)
	o.addOnFailureFlag(c)
	c.Flags().StringSliceVarP(&o.Filenames, "filename", "f", nil, `file with PgpoolOpsRequest manifests ("-" for stdin; repeatable)`)
	return c
}

// Complete reads and checks every document, then builds the clients.
func (o *ApplyOptions) Complete(args []string) error {
	if len(o.Filenames) == 0 {
		return UsageError{fmt.Errorf("-f FILE is required: the PgpoolOpsRequest manifests to run (\"-\" reads stdin)")}
	}
	flagNS, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return fmt.Errorf("resolve the namespace: %w", err)
	}
	explicitNS := o.ConfigFlags.Namespace != nil && *o.ConfigFlags.Namespace != ""
	for _, f := range o.Filenames {
		var data []byte
		if f == "-" {
			data, err = io.ReadAll(o.In)
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		runs, err := opsrequest.Parse(f, data, flagNS, explicitNS)
		if err != nil {
			return err
		}
		o.requests = append(o.requests, runs...)
	}
	if len(o.requests) == 0 {
		return UsageError{fmt.Errorf("%s: no PgpoolOpsRequest found", strings.Join(o.Filenames, ", "))}
	}
	return o.completeClients()
}

// Run runs every request in order, stopping at the first that fails.
func (o *ApplyOptions) Run(ctx context.Context) error {
	for i, r := range o.requests {
		op := o.OperationOptions
		op.Name, op.Namespace = r.Name, r.Namespace
		if r.Timeout > 0 && !o.timeoutSet {
			op.Timeout = r.Timeout
		}
		if r.Apply != "" && !o.applySet {
			op.Apply = r.Apply
		}
		intent, err := op.normalize(r.Intent, opsrequest.Names)
		if err != nil {
			return fmt.Errorf("%s: %w", r.Source, err)
		}
		if len(o.requests) > 1 && o.Output == "text" {
			// Said once the operation is known (an issuer alone is add or
			// change-issuer, as the pgpool is).
			source, n := r.Source, i+1
			op.banner = func(operation string) string {
				return fmt.Sprintf("# %s (%d of %d): tls %s %s/%s", source, n, len(o.requests), operation, op.Namespace, op.Name)
			}
		}
		if err := op.run(ctx, intent); err != nil {
			return fmt.Errorf("%s: %w", r.Source, err)
		}
	}
	return nil
}
