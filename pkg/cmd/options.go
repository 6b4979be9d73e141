package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/lock"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/operation"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ui"
)

// connection is what every command on one pgpool completes: its name and
// namespace, and the clients.
type connection struct {
	genericiooptions.IOStreams
	ConfigFlags *genericclioptions.ConfigFlags

	Name      string
	Namespace string
	// Clients are built by Complete from the kubeconfig unless already set
	// (the command tests set fake clientsets here).
	Clients *operation.Clients
	// parallel is how many pgpools run at once (fleets): the client-side
	// rate limit scales with it.
	parallel int
}

// OperationOptions are the flags and state every mutating command shares.
type OperationOptions struct {
	connection

	DryRun  string
	Output  string
	Timeout time.Duration
	Apply   string
	Yes     bool
	NoColor bool
	Verify  string
	// ShowSecrets prints secret values (--show-secrets); by default they
	// are shown as <redacted>.
	ShowSecrets bool
	// VerifyLogin names a Secret (keys username, password, optionally
	// database) to log in with through each replaced pod.
	VerifyLogin string
	// BackendCA are --backend-ca sources (add, rotate, change-issuer).
	BackendCA []string
	// KeepCA are --keep-ca SHA-256 prefixes (add, rotate, change-issuer).
	KeepCA []string
	// ForceUnlock takes the lock from another run (--force-unlock); Force
	// goes on under a KubeDB pause or ops request (rollback: see there).
	ForceUnlock, Force bool
	// AllowOutage goes on when the plan takes every pod down at once
	// (--allow-outage).
	AllowOutage bool
	Owner       string
	// LockDuration is the lock's duration (hidden --lock-duration: tests
	// shorten it; 0 is 60s).
	LockDuration time.Duration
	// OnFailure is what happens when a step fails after the first change:
	// "rollback" (restore the backup) or "stop".
	OnFailure string
	// cache holds what the run reads once (the pgpools of a fleet share
	// it); nil reads every time.
	cache *operation.Cache
	// identity is this run's lock identity (lock.Self(), once).
	identity lock.Identity
	// banner, when set, is a line printed (text only) before the first
	// plan or answer, given the operation that runs.
	banner func(operation string) string
}

// newOperationOptions are the shared options of a mutating command.
func newOperationOptions(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) OperationOptions {
	return OperationOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}, OnFailure: "rollback"}
}

func (o *OperationOptions) addFlags(c *cobra.Command) {
	c.Flags().StringVar(&o.DryRun, "dry-run", "none", `"none", "client" (print the plan, change nothing) or "server" (also send every write with dryRun=All and show the server's answers)`)
	c.Flags().Lookup("dry-run").NoOptDefVal = "client"
	c.Flags().StringVarP(&o.Output, "output", "o", "text", "output format of the plan and the result: text, json or yaml; patch prints the changes to objects that exist as patches for a source of truth (GitOps)")
	c.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "time limit of each step (as KubeDB's spec.timeout)")
	c.Flags().StringVar(&o.Apply, "apply", "IfReady", `"IfReady" (refuse unless every pod is Ready) or "Always" (as KubeDB's spec.apply)`)
	c.Flags().BoolVarP(&o.Yes, "yes", "y", false, "do not ask for confirmation (none is asked without a terminal)")
	c.Flags().BoolVar(&o.NoColor, "no-color", false, "plain output even on a terminal")
	c.Flags().BoolVar(&o.ShowSecrets, "show-secrets", false, "print secret values (password environment variables, pool_hba.conf's ldapbindpasswd) in -o json|yaml|patch instead of <redacted>")
	c.Flags().BoolVar(&o.ForceUnlock, "force-unlock", false, "take the lock even if another run still holds it (only when you know that run is gone)")
	c.Flags().BoolVar(&o.Force, "force", false, "go on although the KubeDB Pgpool is paused by someone else or has a PgpoolOpsRequest that has not ended (rollback: also when the config changed since the operation; those edits are lost)")
	c.Flags().BoolVar(&o.AllowOutage, "allow-outage", false, "go on when the plan takes every pod down at once (a Deployment with strategy Recreate whose pod template changes)")
	c.Flags().StringVar(&o.Owner, "owner", "", `"ignore": go on although a tool that reverts changes at once (Flux's kustomize-controller) manages an object the plan changes`)
	c.Flags().DurationVar(&o.LockDuration, "lock-duration", 0, "the lock's duration (tests only)")
	_ = c.Flags().MarkHidden("lock-duration")
	c.Flags().StringVar(&o.VerifyLogin, "verify-login", "", "Secret with the keys username and password (and optionally database): log in with it through each replaced pod and run SELECT 1, proving the path to the backend (cert auth logs in with the client certificate by itself)")
	c.Flags().StringVar(&o.Verify, "verify", "true", `prove by a TLS handshake (through port-forward) that each replaced pod serves the new certificate: "true" (skip, with a note, where pods cannot be reached), "false", or "required"`)
}

// Complete resolves the namespace and builds the clients.
func (o *connection) Complete(args []string) error {
	if len(args) != 1 {
		return UsageError{fmt.Errorf("expected exactly one argument, the pgpool's name (got %d)", len(args))}
	}
	o.Name = args[0]
	return o.completeClients()
}

// flags are the connection flags (the kubeconfig, its context).
func (o *connection) flags() *genericclioptions.ConfigFlags { return o.ConfigFlags }

// completeClients resolves the namespace and builds the clients.
func (o *connection) completeClients() error {
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return fmt.Errorf("resolve the namespace: %w", err)
	}
	o.Namespace = ns
	if o.Clients != nil {
		return nil
	}
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	o.Clients, err = operation.ClientsFor(cfg, o.parallel)
	return err
}

// Validate checks the shared flags (no I/O).
func (o *OperationOptions) Validate() error {
	for _, c := range []struct{ flag, value, choices string }{
		{"--dry-run", o.DryRun, "none client server"},
		{"--output", o.Output, "text json yaml patch"},
		{"--apply", o.Apply, "IfReady Always"},
		{"--verify", o.Verify, "true false required"},
		{"--on-failure", o.OnFailure, "rollback stop"},
	} {
		if err := oneOf(c.flag, c.value, c.choices); err != nil {
			return err
		}
	}
	if o.Timeout <= 0 {
		return UsageError{fmt.Errorf("--timeout must be positive")}
	}
	if o.LockDuration < 0 {
		return UsageError{fmt.Errorf("--lock-duration must not be negative (0 is the default, 60s)")}
	}
	return nil
}

// oneOf refuses a flag value outside its choices (space-separated), naming
// them all.
func oneOf(flag, value, choices string) error {
	cs := strings.Fields(choices)
	for _, c := range cs {
		if value == c {
			return nil
		}
	}
	q := make([]string, len(cs))
	for i, c := range cs {
		q[i] = strconv.Quote(c)
	}
	return UsageError{fmt.Errorf("%s must be %s or %s, not %q", flag, strings.Join(q[:len(q)-1], ", "), q[len(q)-1], value)}
}

// options is what every command's Options struct does.
type options interface {
	Complete(args []string) error
	Validate() error
	Run(ctx context.Context) error
}

// runE is the RunE of every command: Complete, Validate, Run.
func runE(o options) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if c, ok := o.(interface {
			flags() *genericclioptions.ConfigFlags
		}); ok {
			names, err := contextsOf(cmd, c.flags())
			if err != nil {
				return err
			}
			if len(names) > 0 {
				mc, ok := o.(multiContext)
				if !ok {
					return UsageError{fmt.Errorf("%s runs on one cluster: give one --context (several are for tls status and tls rotate -l/-A/--all)", cmd.CommandPath())}
				}
				if why := mc.multiOK(); why != "" {
					return UsageError{fmt.Errorf("%s", why)}
				}
				if err := o.Validate(); err != nil {
					return err
				}
				return mc.runContexts(cmd.Context(), names, args)
			}
		}
		if err := o.Complete(args); err != nil {
			return err
		}
		if err := o.Validate(); err != nil {
			return err
		}
		return o.Run(cmd.Context())
	}
}

// Output document of -o json|yaml.
type outputDoc struct {
	DryRun string     `json:"dryRun"`
	Plan   *plan.Plan `json:"plan"`
	// NothingToDo says why there is no plan: the goal is already reached.
	NothingToDo string       `json:"nothingToDo,omitempty"`
	Result      *plan.Result `json:"result,omitempty"`
}

// doc is the -o json|yaml document of one plan's outcome.
func (o *OperationOptions) doc(out operation.Outcome) outputDoc {
	if out.NothingToDo != "" {
		return outputDoc{DryRun: o.DryRun, NothingToDo: out.NothingToDo}
	}
	return outputDoc{DryRun: o.DryRun, Plan: out.Plan, Result: out.Result}
}

// addOnFailureFlag adds --on-failure (the four operations; not rollback).
func (o *OperationOptions) addOnFailureFlag(c *cobra.Command) {
	c.Flags().StringVar(&o.OnFailure, "on-failure", o.OnFailure, `when a step fails after the first change: "rollback" (restore the backup taken before it and restart the pods already changed, so every pod runs one config) or "stop" (leave it for you: run the command again to finish, or tls rollback to undo)`)
}

// options are how the operation runs, from the flags.
func (o *OperationOptions) options() operation.Options {
	if o.identity.Holder == "" {
		o.identity = lock.Self()
	}
	return operation.Options{DryRun: o.DryRun, Timeout: o.Timeout, Verify: o.Verify, VerifyLogin: o.VerifyLogin,
		OnFailure: o.OnFailure, LockDuration: o.LockDuration, Identity: o.identity, Cache: o.cache}
}

// normalize completes intent with the shared flags that belong to the request
// and normalises it (planner.Normalize: the one check of a request), its
// errors naming the flags (names, or flagNames).
func (o *OperationOptions) normalize(intent planner.Intent, names planner.Names) (planner.Intent, error) {
	intent.ApplyAlways, intent.ForceUnlock, intent.Force, intent.Owner = o.Apply == "Always", o.ForceUnlock, o.Force, o.Owner
	intent.AllowOutage = o.AllowOutage
	if intent.Operation != planner.Remove && intent.Operation != planner.Rollback {
		intent.BackendCASources = o.BackendCA
		for _, k := range o.KeepCA {
			if !sha256Prefix.MatchString(k) {
				return intent, UsageError{fmt.Errorf("--keep-ca %q: give the CA's SHA-256 in hex, at least 16 digits (tls status prints it)", k)}
			}
		}
		intent.KeepCAs = o.KeepCA
	}
	if names == nil {
		names = flagNames
	}
	intent, err := planner.Normalize(intent, names)
	if err != nil {
		return intent, UsageError{err}
	}
	return intent, nil
}

// sha256Prefix is a --keep-ca value.
var sha256Prefix = regexp.MustCompile(`^[0-9a-fA-F]{16,64}$`)

// flagNames names the request's fields by their flags.
func flagNames(field string) string {
	switch field {
	case "remove":
		return "`kubectl pgpool tls remove`"
	case "authMode":
		return "--client-auth-mode"
	case "serverDNSName":
		return "--server-dns-name"
	case "serverIP":
		return "--server-ip-address"
	case "leftoverTLS":
		return "--leftover-tls"
	}
	var b strings.Builder
	b.WriteString("--")
	for _, r := range field {
		if unicode.IsUpper(r) {
			b.WriteByte('-')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// run carries out intent (normalised) on the pgpool NAME, printing the plan,
// the progress and the result.
func (o *OperationOptions) run(ctx context.Context, intent planner.Intent) error {
	return operation.Run(ctx, o.Clients, discover.Ref{Namespace: o.Namespace, Name: o.Name}, intent, o.options(), o.hooks(true))
}

// hooks print a run as the flags ask: the plan (text) and a confirmation
// on a terminal (ask), live progress on stderr, the result and, with -o
// json|yaml, one document per plan.
func (o *OperationOptions) hooks(ask bool) operation.Hooks {
	color := !o.NoColor && os.Getenv("NO_COLOR") == ""
	bannerOnce := func(operation string) {
		if o.banner != nil && o.Output == "text" {
			fmt.Fprintln(o.Out, o.banner(operation))
			o.banner = nil
		}
	}
	return operation.Hooks{
		Planned: func(ctx context.Context, out operation.Outcome) error {
			bannerOnce(out.Operation)
			if out.RollingBack && o.Output == "yaml" {
				fmt.Fprintln(o.Out, "---")
			}
			if o.Output == "text" {
				ui.RenderPlan(o.Out, out.Plan, ui.NewStyles(o.Out, color && ui.IsTerminal(o.Out)), o.DryRun)
			}
			if !ask || out.RollingBack || o.DryRun != "none" || o.Yes || !ui.IsTerminal(o.In) || !ui.IsTerminal(o.ErrOut) {
				return nil
			}
			ok, err := ui.Confirm(ctx, o.In, o.ErrOut, fmt.Sprintf("Apply this plan to %s? [y/N] ", out.Target))
			if errors.Is(err, plan.ErrInterrupted) {
				return fmt.Errorf("%w at the prompt: nothing was changed", err)
			}
			if err != nil || !ok {
				return fmt.Errorf("cancelled: nothing was changed")
			}
			return nil
		},
		Progress: func(n int) (func(plan.Event), func()) {
			live := color && ui.IsTerminal(o.ErrOut)
			prog := ui.NewProgress(o.ErrOut, ui.NewStyles(o.ErrOut, live), n, live)
			prog.Start()
			return prog.Event, prog.Stop
		},
		Done: func(out operation.Outcome) error {
			bannerOnce(out.Operation)
			if o.Output == "patch" {
				return ui.PrintPatches(o.Out, out.Plan, out.NothingToDo, o.ShowSecrets)
			}
			if out.NothingToDo != "" && o.Output == "text" {
				fmt.Fprintln(o.Out, out.NothingToDo)
				return nil
			}
			if o.Output == "text" && out.Result != nil {
				ui.RenderResult(o.Out, out.Result, ui.NewStyles(o.Out, color && ui.IsTerminal(o.Out)))
				if o.DryRun == "server" {
					for i, s := range out.Result.Steps {
						fmt.Fprintf(o.Out, "%3d. %-7s %s: %s\n", i+1, s.Kind, s.Object, s.Message)
					}
				}
			}
			return ui.PrintDocSecrets(o.Out, o.Output, o.doc(out), o.ShowSecrets)
		},
		Notice: func(msg string) { fmt.Fprintln(o.ErrOut, msg) },
	}
}
