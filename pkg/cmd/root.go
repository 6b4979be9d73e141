// Package cmd owns the cobra commands of kubectl-pgpool: one Options struct
// per command with Complete (resolve namespace, clients, defaults), Validate
// (flags only, no I/O) and Run, all IO through genericiooptions.IOStreams,
// and no package-level state.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/operation"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/opsrequest"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ui"
)

// BuildInfo is what `kubectl pgpool version` prints.
type BuildInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Date    string `json:"date"`
}

// NewRootCmd builds `kubectl pgpool`. configure, if given, may adjust the
// connection flags (benchmarks set WrapConfigFn to count API requests).
func NewRootCmd(streams genericiooptions.IOStreams, info BuildInfo, configure ...func(*genericclioptions.ConfigFlags)) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	for _, c := range configure {
		c(flags)
	}
	root := &cobra.Command{
		Use:   "kubectl-pgpool",
		Short: "Reconfigure TLS of pgpool-II on Kubernetes from your terminal",
		Long: `kubectl pgpool turns TLS on and off for a pgpool-II deployment, rotates its
certificates and moves it to another cert-manager issuer: it discovers the
pgpool, checks first, prints a plan, and carries it out with live progress,
restarting one pod at a time through the Eviction API.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl pgpool"},
	}
	flags.Context = nil // addContextFlags adds one that may be repeated
	flags.AddFlags(root.PersistentFlags())
	addContextFlags(root, flags)
	root.Args, root.RunE = cobra.ArbitraryArgs, unknownCommand
	root.AddCommand(newTLSCmd(streams, flags, info), newVersionCmd(streams, info))
	// The design's names, as top-level aliases of the tls subcommands.
	for _, a := range []struct {
		name string
		cmd  *cobra.Command
	}{
		{"add-tls", newAddCmd(streams, flags)},
		{"rotate", newRotateCmd(streams, flags)},
		{"change-issuer", newChangeIssuerCmd(streams, flags)},
		{"remove-tls", newRemoveCmd(streams, flags)},
	} {
		orig, rest, _ := strings.Cut(a.cmd.Use, " ")
		a.cmd.Use = a.name + " " + rest
		a.cmd.Short += " (as tls " + orig + ")"
		a.cmd.Example = ""
		root.AddCommand(a.cmd)
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetIn(streams.In)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return UsageError{fmt.Errorf("%w\nSee '%s --help'", err, c.CommandPath())}
	})
	return root
}

func newTLSCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags, info BuildInfo) *cobra.Command {
	c := &cobra.Command{
		Use:   "tls",
		Short: "Add, rotate, change the issuer of, remove, roll back or inspect TLS of a pgpool",
		Args:  cobra.ArbitraryArgs,
		RunE:  unknownCommand,
	}
	c.AddCommand(
		newAddCmd(streams, flags),
		newRotateCmd(streams, flags),
		newChangeIssuerCmd(streams, flags),
		newRemoveCmd(streams, flags),
		newRollbackCmd(streams, flags),
		newStatusCmd(streams, flags),
		newApplyCmd(streams, flags),
		newClientCertCmd(streams, flags),
		newTrustCmd(streams, flags),
		newScheduleCmd(streams, flags, info),
		newReportCmd(streams, flags, info),
	)
	return c
}

// unknownCommand is the RunE of a command that only groups others: without
// arguments it shows its help; anything else is an unknown command (exit 2,
// with cobra's suggestions), never a silent success.
func unknownCommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return c.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return UsageError{fmt.Errorf("%s\nSee '%s --help'", msg, c.CommandPath())}
}

// UsageError is bad usage: exit code 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// WithCause makes an error that ends a cancelled command say why the
// context ended: Ctrl-C during discovery or preflight surfaces as a
// client-go "context canceled", which must still exit 130.
func WithCause(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// ExitCode maps an error to the process exit code: 0 success, 1 failure,
// 2 bad usage, 3 a certificate ends within `tls status --warn-within`,
// 124 timeout, 130 interrupted.
func ExitCode(err error) int {
	var ue UsageError
	var ie *tls.InvalidCertificateError
	var re *runner.RefusedError
	var oe *opsrequest.InvalidError
	var intent *operation.InputError
	var ew *ExpiryWarning
	var pse *runner.PodSecurityError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ew):
		return 3
	case errors.As(err, &ue), errors.As(err, &ie), errors.As(err, &re), errors.As(err, &oe), errors.As(err, &intent), errors.As(err, &pse):
		return 2
	case errors.Is(err, plan.ErrInterrupted):
		return 130
	case errors.Is(err, plan.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return 124
	}
	return 1
}

// Explain turns known API errors into a sentence that says what to do.
func Explain(err error) string {
	msg := ui.Clean(err.Error())
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		switch se.Status().Code {
		case http.StatusForbidden:
			return msg + "\nYour credentials lack a permission kubectl-pgpool needs: see the RBAC section of the README (kubectl auth can-i --list -n NAMESPACE shows what you may do)."
		case http.StatusUnauthorized:
			return msg + "\nThe API server did not accept your credentials: check your kubeconfig (kubectl config current-context)."
		}
	}
	if strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host") {
		return msg + "\nThe API server cannot be reached: check --kubeconfig/--context (kubectl cluster-info)."
	}
	return msg
}

// completePgpools completes the names of workloads in the namespace that run
// a pgpool container.
func completePgpools(flags *genericclioptions.ConfigFlags) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cfg, err := flags.ToRESTConfig()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns, _, _ := flags.ToRawKubeConfigLoader().Namespace()
		dyn, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, _ := discover.List(cmd.Context(), dyn, ns)
		var out []string
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
