package cmd

import (
	"context"
	"errors"
	"fmt"
	"time"
	_ "time/tzdata" // the job's image has no zoneinfo: --time-zone from the binary

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/operation"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/schedule"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ui"
)

func newScheduleCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags, info BuildInfo) *cobra.Command {
	c := &cobra.Command{
		Use:   "schedule",
		Short: "Keep TLS current with nobody at the keyboard: a CronJob that restarts stale pods in a maintenance window",
		Long: `cert-manager renews a Certificate's Secret, but pgpool serves the certificate it
loaded at start until it restarts. tls schedule create installs, in the
pgpool's namespace, a CronJob (with a ServiceAccount and a Role holding what
the plugin's preflight computes for the job, nothing cluster-wide) that runs
this plugin's image in the maintenance window: tls rotate --reissue=false
--only-stale --verify=required, ending by the window's end. Each run leaves
an Event and an annotation on the workload; tls status shows them.`,
	}
	c.AddCommand(newScheduleCreateCmd(streams, flags), newScheduleShowCmd(streams, flags), newScheduleDeleteCmd(streams, flags), newScheduleRunCmd(streams, flags, info))
	return c
}

// ScheduleCreateOptions are the options of `tls schedule create`.
type ScheduleCreateOptions struct {
	connection
	Fleet
	Tolerations []string
	WindowText  string
	Request     operation.ScheduleRequest
	DryRun      string
	Yes         bool
}

func newScheduleCreateCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &ScheduleCreateOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}, DryRun: "none",
		Request: operation.ScheduleRequest{TimeZone: "UTC", Every: 15 * time.Minute}}
	c := &cobra.Command{
		Use:   "create (NAME | -l SELECTOR | -A | --all) --window \"DAYS HH:MM-HH:MM\" --image IMAGE",
		Short: "Install (or update) the scheduled renewal of a pgpool (each in its own namespace)",
		Example: `  kubectl pgpool tls schedule create pgpool -n demo --window "Sat 02:00-04:00" --time-zone Europe/Berlin --image registry.example/kubectl-pgpool:v0.3.0
  kubectl pgpool tls schedule create -A -l tier=tenant --window "Sun 03:00-05:00" --image registry.example/kubectl-pgpool:v0.3.0 --yes
  kubectl pgpool tls schedule create pgpool -n demo --window "Mon-Fri 01:00-01:30" --every 5m --image registry.example/kubectl-pgpool:v0.3.0 --dry-run=client`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	c.Flags().StringVar(&o.WindowText, "window", "", `the maintenance window: DAYS HH:MM-HH:MM ("Sat 02:00-04:00", "Mon-Fri 01:00-02:30", "daily 23:00-01:00") (required)`)
	c.Flags().StringVar(&o.Request.TimeZone, "time-zone", o.Request.TimeZone, "the window's time zone (IANA name, as the CronJob's timeZone)")
	c.Flags().DurationVar(&o.Request.Every, "every", o.Request.Every, "how often the CronJob fires inside the window (1m, 5m, 15m, 30m, 1h, ...)")
	c.Flags().StringVar(&o.Request.Image, "image", "", "the plugin's image (make image; push it to your registry) (required)")
	c.Flags().BoolVar(&o.Request.HostNetwork, "host-network", false, "run the job in the node's network (a cluster whose API server only the nodes reach, such as the local test cluster)")
	c.Flags().StringVar(&o.Request.APIServer, "api-server", "", "HOST:PORT of the API server for the job (default: the kubernetes Service)")
	c.Flags().StringToStringVar(&o.Request.NodeSelector, "node-selector", nil, "KEY=VALUE labels of the nodes the job may run on (repeatable)")
	c.Flags().StringArrayVar(&o.Tolerations, "toleration", nil, "KEY[=VALUE][:EFFECT] taint the job tolerates (repeatable)")
	c.Flags().StringVar(&o.DryRun, "dry-run", o.DryRun, `"none", "client" (print what would be written) or "server" (also send each write with dryRun=All)`)
	c.Flags().BoolVarP(&o.Yes, "yes", "y", false, "do not ask for confirmation (none is asked without a terminal)")
	o.addFleetFlags(c, false)
	return c
}

// Complete resolves NAME (or the fleet) and the clients.
func (o *ScheduleCreateOptions) Complete(args []string) error { return o.complete(&o.connection, args) }

// targets are the pgpools a command acts on: NAME, or the fleet.
func (f *Fleet) targets(c *connection) []discover.Ref {
	if f.on() {
		return f.refs
	}
	return []discover.Ref{{Namespace: c.Namespace, Name: c.Name}}
}

func (o *connection) completeOne(args []string) error {
	if len(args) != 1 {
		return UsageError{fmt.Errorf("give one pgpool NAME")}
	}
	o.Name = args[0]
	return o.completeClients()
}

// Validate checks the flags (no I/O).
func (o *ScheduleCreateOptions) Validate() error {
	if o.WindowText == "" {
		return UsageError{fmt.Errorf("--window is required: when pods may restart, such as \"Sat 02:00-04:00\"")}
	}
	w, err := schedule.ParseWindow(o.WindowText)
	if err != nil {
		return UsageError{err}
	}
	o.Request.Window = w
	if _, err := time.LoadLocation(o.Request.TimeZone); err != nil {
		return UsageError{fmt.Errorf("--time-zone %q: %w", o.Request.TimeZone, err)}
	}
	if _, err := w.Cron(o.Request.Every); err != nil {
		return UsageError{err}
	}
	if o.Request.Every > w.Length {
		return UsageError{fmt.Errorf("--every %s is longer than the window (%s): it would fire at most once, at the start", o.Request.Every, w.Length)}
	}
	o.Request.Tolerations = nil
	for _, s := range o.Tolerations {
		tol, err := schedule.ParseToleration(s)
		if err != nil {
			return UsageError{fmt.Errorf("--toleration: %w", err)}
		}
		o.Request.Tolerations = append(o.Request.Tolerations, tol)
	}
	if o.Request.Image == "" {
		return UsageError{fmt.Errorf("--image is required: the plugin's image (make image), pushed where your nodes pull from")}
	}
	return oneOf("--dry-run", o.DryRun, "none client server")
}

// Run plans each pgpool's schedule, prints the plans, asks once (on a
// terminal) and writes them; one that cannot be planned or written does
// not stop the others, and fails the command.
func (o *ScheduleCreateOptions) Run(ctx context.Context) error {
	var plans []*operation.SchedulePlan
	var errs []error
	for _, ref := range o.targets(&o.connection) {
		p, err := operation.PlanSchedule(ctx, o.Clients, ref, o.Request)
		if err != nil {
			errs = append(errs, fleetErr(o.on(), ref, err))
			continue
		}
		for _, l := range p.Lines {
			fmt.Fprintln(o.Out, l)
		}
		plans = append(plans, p)
	}
	if len(plans) == 0 {
		return errors.Join(errs...)
	}
	prompt := fmt.Sprintf("Install this schedule for %s? [y/N] ", plans[0].Target)
	if len(plans) > 1 {
		prompt = fmt.Sprintf("Install these %d schedules? [y/N] ", len(plans))
	}
	dry, proceed, err := o.mayWrite(ctx, o.DryRun, o.Yes, prompt)
	if !proceed || err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, p := range plans {
		err := operation.ApplySchedule(ctx, o.Clients, p, dry)
		for _, w := range p.Warnings {
			fmt.Fprintf(o.ErrOut, "warning: %s\n", w)
		}
		if err != nil {
			errs = append(errs, fleetErr(o.on(), discover.Ref{Namespace: p.Target.Namespace, Name: p.Target.Name}, err))
			continue
		}
		fmt.Fprintf(o.Out, "schedule of %s installed: CronJob %s\n", p.Target, schedule.Name(p.Target.Name))
	}
	return errors.Join(errs...)
}

// fleetErr names the pgpool an error is about when a command acts on
// several.
func fleetErr(fleet bool, ref discover.Ref, err error) error {
	if !fleet {
		return err
	}
	return fmt.Errorf("%s/%s: %w", ref.Namespace, ref.Name, err)
}

// mayWrite is the step between a printed plan and its writes, for the
// commands that plan without pkg/operation's Run: --dry-run=client ends
// here (said), a terminal is asked unless --yes, and --dry-run=server
// gives the DryRun the writes carry.
func (o *connection) mayWrite(ctx context.Context, dryRun string, yes bool, prompt string) (dry []string, proceed bool, err error) {
	switch {
	case dryRun == "client":
		fmt.Fprintln(o.Out, "(dry run: nothing was changed)")
		return nil, false, nil
	case dryRun == "server":
		return []string{metav1.DryRunAll}, true, nil
	case !yes && ui.IsTerminal(o.In) && ui.IsTerminal(o.ErrOut):
		ok, err := ui.Confirm(ctx, o.In, o.ErrOut, prompt)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			return nil, false, errors.New("not confirmed: nothing was changed")
		}
	}
	return nil, true, nil
}

// ScheduleShowOptions are the options of `tls schedule show`.
type ScheduleShowOptions struct {
	connection
	Fleet
}

func newScheduleShowCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &ScheduleShowOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}}
	c := &cobra.Command{Use: "show (NAME | -l SELECTOR | -A | --all)", Short: "Show a pgpool's schedule and its last run",
		Example:           "  kubectl pgpool tls schedule show pgpool -n demo\n  kubectl pgpool tls schedule show -A",
		ValidArgsFunction: completePgpools(flags), RunE: runE(o)}
	o.addFleetFlags(c, false)
	return c
}

// Complete resolves NAME (or the fleet) and the clients.
func (o *ScheduleShowOptions) Complete(args []string) error { return o.complete(&o.connection, args) }

// Validate has nothing to check.
func (o *ScheduleShowOptions) Validate() error { return nil }

// Run prints each schedule (a fleet: headed by its pgpool).
func (o *ScheduleShowOptions) Run(ctx context.Context) error {
	var errs []error
	for _, ref := range o.targets(&o.connection) {
		t, s, r, err := operation.ScheduleStatus(ctx, o.Clients, ref)
		if err != nil {
			errs = append(errs, fleetErr(o.on(), ref, err))
			continue
		}
		if o.on() {
			fmt.Fprintf(o.Out, "%s:\n", t)
		}
		if s == nil {
			fmt.Fprintf(o.Out, "%s has no schedule (kubectl pgpool tls schedule create %s --window ...)\n", t, t.Name)
			continue
		}
		fmt.Fprint(o.Out, ui.ScheduleText(s, r, time.Now()))
	}
	return errors.Join(errs...)
}

// ScheduleDeleteOptions are the options of `tls schedule delete`.
type ScheduleDeleteOptions struct {
	connection
	Fleet
	DryRun string
}

func newScheduleDeleteCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &ScheduleDeleteOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}, DryRun: "none"}
	c := &cobra.Command{Use: "delete (NAME | -l SELECTOR | -A | --all)", Short: "Delete a pgpool's schedule (its CronJob, ServiceAccount, Role, RoleBinding)",
		Example: "  kubectl pgpool tls schedule delete pgpool -n demo\n  kubectl pgpool tls schedule delete --all -n tenants", ValidArgsFunction: completePgpools(flags), RunE: runE(o)}
	c.Flags().StringVar(&o.DryRun, "dry-run", o.DryRun, `"none" or "server" (send each delete with dryRun=All)`)
	o.addFleetFlags(c, false)
	return c
}

// Complete resolves NAME (or the fleet) and the clients.
func (o *ScheduleDeleteOptions) Complete(args []string) error { return o.complete(&o.connection, args) }

// Validate checks --dry-run.
func (o *ScheduleDeleteOptions) Validate() error { return oneOf("--dry-run", o.DryRun, "none server") }

// Run deletes.
func (o *ScheduleDeleteOptions) Run(ctx context.Context) error {
	var dry []string
	if o.DryRun == "server" {
		dry = []string{"All"}
	}
	var errs []error
	for _, ref := range o.targets(&o.connection) {
		done, err := operation.DeleteSchedule(ctx, o.Clients, ref, dry)
		for _, d := range done {
			fmt.Fprintln(o.Out, d)
		}
		if err != nil {
			errs = append(errs, fleetErr(o.on(), ref, err))
		} else if len(done) == 0 {
			fmt.Fprintf(o.Out, "%s/%s has no schedule: nothing to delete\n", ref.Namespace, ref.Name)
		}
	}
	return errors.Join(errs...)
}

// ScheduleRunOptions are the options of `tls schedule run`, what the
// CronJob's job runs.
type ScheduleRunOptions struct {
	connection
	WindowText, TimeZone string
	Timeout              time.Duration
	info                 BuildInfo
	window               schedule.Window
	loc                  *time.Location
}

func newScheduleRunCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags, info BuildInfo) *cobra.Command {
	o := &ScheduleRunOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}, TimeZone: "UTC", Timeout: 5 * time.Minute, info: info}
	c := &cobra.Command{Use: "run NAME --window W --time-zone TZ", Hidden: true,
		Short: "One scheduled run (what the CronJob runs): inside the window, rotate --reissue=false --only-stale --verify=required; outside, nothing",
		RunE:  runE(o)}
	c.Flags().StringVar(&o.WindowText, "window", "", "the maintenance window")
	c.Flags().StringVar(&o.TimeZone, "time-zone", o.TimeZone, "its time zone")
	c.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "time limit of each step (the window's end bounds the whole run)")
	return c
}

// Complete resolves NAME and the clients.
func (o *ScheduleRunOptions) Complete(args []string) error { return o.completeOne(args) }

// Validate parses the window.
func (o *ScheduleRunOptions) Validate() error {
	w, err := schedule.ParseWindow(o.WindowText)
	if err != nil {
		return UsageError{err}
	}
	loc, err := time.LoadLocation(o.TimeZone)
	if err != nil {
		return UsageError{fmt.Errorf("--time-zone %q: %w", o.TimeZone, err)}
	}
	o.window, o.loc = w, loc
	return nil
}

// Run is one scheduled run.
func (o *ScheduleRunOptions) Run(ctx context.Context) error {
	rotate := func(ctx context.Context, mode string) error {
		root := NewRootCmd(o.IOStreams, o.info)
		args := []string{"tls", "rotate", o.Name, "-n", o.Namespace, "--verify=required", "--yes", "--timeout", o.Timeout.String()}
		switch mode {
		case operation.ScheduledOnlyStale:
			args = append(args, "--reissue=false", "--only-stale")
		case operation.ScheduledDropPrevious:
			args = append(args, "--reissue=false")
		}
		if f := o.ConfigFlags; f.KubeConfig != nil && *f.KubeConfig != "" {
			args = append(args, "--kubeconfig", *f.KubeConfig)
		}
		if f := o.ConfigFlags; f.Context != nil && *f.Context != "" {
			args = append(args, "--context", *f.Context)
		}
		root.SetArgs(args)
		root.SilenceErrors, root.SilenceUsage = true, true
		return root.ExecuteContext(ctx)
	}
	run, err := operation.RunScheduled(ctx, o.Clients, discover.Ref{Namespace: o.Namespace, Name: o.Name}, o.window, o.loc, time.Now(), rotate)
	if run.Result == "" {
		run.Result, run.Message = "Failed", fmt.Sprint(err)
	}
	fmt.Fprintf(o.Out, "scheduled run of %s/%s: %s: %s (next window %s)\n", o.Namespace, o.Name, run.Result, run.Message, run.NextRun.Format(time.RFC3339))
	return err
}
