package cmd

import (
	"context"
	"errors"
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
	// WarnWithin and FailWithin are the expiry thresholds as given
	// ("30d"); Thresholds what they say.
	WarnWithin, FailWithin string
	Thresholds             status.Thresholds
	// Now is the time the thresholds count from (time.Now unless a test
	// sets it).
	Now func() time.Time
	// Watch re-probes every Interval and prints only what changed.
	Watch    bool
	Interval time.Duration
}

// ExpiryWarning is a certificate that ends within --warn-within (and none
// within --fail-within, and nothing unproven): exit code 3.
type ExpiryWarning struct{ Msg string }

func (e *ExpiryWarning) Error() string { return e.Msg }

// Validate checks the flags (no I/O).
func (o *StatusOptions) Validate() error {
	if err := oneOf("--output", o.Output, "text json yaml prometheus"); err != nil {
		return err
	}
	for _, f := range []struct {
		flag, v string
		d       *time.Duration
	}{{"--warn-within", o.WarnWithin, &o.Thresholds.Warn}, {"--fail-within", o.FailWithin, &o.Thresholds.Fail}} {
		if f.v == "" {
			continue
		}
		d, err := status.ParseWithin(f.v)
		if err != nil {
			return UsageError{fmt.Errorf("%s %w", f.flag, err)}
		}
		*f.d = d
	}
	if o.Thresholds.Warn > 0 && o.Thresholds.Fail > 0 && o.Thresholds.Fail > o.Thresholds.Warn {
		return UsageError{fmt.Errorf("--fail-within (%s) is longer than --warn-within (%s): a warning would never be given", o.FailWithin, o.WarnWithin)}
	}
	if err := oneOf("--verify", o.Verify, "true false required"); err != nil {
		return err
	}
	if o.Timeout <= 0 {
		return UsageError{fmt.Errorf("--timeout must be positive")}
	}
	if o.Watch && o.Output != "text" {
		return UsageError{fmt.Errorf("--watch prints changes as lines of text; it does not go with -o %s (run without --watch for a document)", o.Output)}
	}
	if o.Watch && o.Interval <= 0 {
		return UsageError{fmt.Errorf("--interval must be positive")}
	}
	// A countdown ("in 19d 23h") would make a new verdict line every hour.
	o.Thresholds.NoCountdown = o.Watch
	return nil
}

func newStatusCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &StatusOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}, Timeout: 20 * time.Second, Now: time.Now, Interval: time.Minute}
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
  kubectl pgpool tls status -A --verify=required
  # for a monitor: exit 3 if a certificate ends within 30 days, 1 within 7 (or a pod is unproven)
  kubectl pgpool tls status -A --warn-within 30d --fail-within 7d
  # metrics for node_exporter's textfile collector
  kubectl pgpool tls status -A -o prometheus > /var/lib/node_exporter/pgpool_tls.prom
  # probe every 5 minutes and print only what changed, until Ctrl-C
  kubectl pgpool tls status pgpool -n demo --watch --interval 5m`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	c.Flags().StringVarP(&o.Output, "output", "o", "text", "text, json, yaml, or prometheus (text exposition: per pod the served certificate's end, whether it is the Secret's, and the negative proof)")
	c.Flags().StringVar(&o.WarnWithin, "warn-within", "", "exit 3 if a served certificate, or a Certificate's, ends within this long (30d, 72h)")
	c.Flags().StringVar(&o.FailWithin, "fail-within", "", "exit 1 if a served certificate, or a Certificate's, ends within this long (7d), or a pod's is not proven")
	c.Flags().StringVar(&o.Verify, "verify", "true", `handshake with each pod through port-forward and compare what it serves with the Secret: "true" (report), "false" (skip), or "required" (exit 1 unless every pod is proven)`)
	c.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "time limit of each pod's handshake")
	c.Flags().BoolVarP(&o.Watch, "watch", "w", false, "probe again every --interval and print, with a timestamp, only what changed (the first probe prints everything); runs until interrupted")
	c.Flags().DurationVar(&o.Interval, "interval", o.Interval, "time between two probes of --watch")
	o.addFleetFlags(c, false)
	return c
}

// Complete resolves NAME or the fleet, and the clients.
func (o *StatusOptions) Complete(args []string) error {
	return o.complete(&o.connection, args)
}

// Run prints the status.
func (o *StatusOptions) Run(ctx context.Context) error {
	if o.Watch {
		return o.runWatch(ctx)
	}
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
	if err := o.required(t, st); err != nil {
		return err
	}
	if fail, warn := o.expiry(t, st); fail != "" {
		return errors.New(fail)
	} else if warn != "" {
		return &ExpiryWarning{Msg: warn}
	}
	return nil
}

// expiry judges st by --fail-within and --warn-within: what fails (a
// certificate that ends within --fail-within, or a pod whose certificate
// is not proven), and what only warns.
func (o *StatusOptions) expiry(t *pgpool.Target, st *status.Status) (fail, warn string) {
	if !o.Thresholds.Set() {
		return "", ""
	}
	if o.Verify != runner.VerifyOff {
		for _, p := range st.Pods {
			if p.Check != "ok" && st.SSL {
				return fmt.Sprintf("pod %s of %s: the certificate it serves is not proven (%s: %s)", p.Name, t, p.Check, p.Detail), ""
			}
		}
	}
	fail, warn = o.Thresholds.Judge(st.Expiries(), o.Now())
	if fail != "" {
		fail = fmt.Sprintf("%s: %s", t, fail)
	}
	if warn != "" {
		warn = fmt.Sprintf("%s: %s", t, warn)
	}
	return fail, warn
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
	if why := st.CARenewed(); why != "" {
		return fmt.Errorf("%s: %s", t, why)
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
	if o.Output == "prometheus" {
		return ui.PrintPrometheus(o.Out, []ui.MetricsRow{{Namespace: t.Namespace, Name: t.Name, Status: st}}, o.Now())
	}
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
	var problems, warnings []string
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
			fail, warn := o.expiry(t, st)
			if fail != "" {
				problems = append(problems, fail)
			}
			if warn != "" {
				warnings = append(warnings, warn)
			}
		}
		rows = append(rows, row)
	}
	switch o.Output {
	case "prometheus":
		var m []ui.MetricsRow
		for _, r := range rows {
			m = append(m, ui.MetricsRow{Namespace: r.Namespace, Name: r.Name, Status: r.Status, Error: r.Error})
		}
		if err := ui.PrintPrometheus(o.Out, m, o.Now()); err != nil {
			return err
		}
	case "json", "yaml":
		if err := ui.PrintDoc(o.Out, o.Output, rows); err != nil {
			return err
		}
	default:
		table := make([]ui.StatusRow, len(rows))
		for i, r := range rows {
			table[i] = ui.StatusRow{Namespace: r.Namespace, Name: r.Name, Target: targets[i], Status: r.Status, Error: r.Error}
		}
		if err := ui.RenderStatusTable(o.Out, table, o.Verify != runner.VerifyOff); err != nil {
			return err
		}
	}
	if len(problems) > 0 && (o.Verify == runner.VerifyRequired || o.Thresholds.Set() || len(targets) < len(rows)) {
		return fmt.Errorf("%d of %d pgpools: %s", len(problems), len(rows), strings.Join(problems, "; "))
	}
	if len(warnings) > 0 {
		return &ExpiryWarning{Msg: fmt.Sprintf("%d of %d pgpools: %s", len(warnings), len(rows), strings.Join(warnings, "; "))}
	}
	return nil
}

// runWatch probes the pgpool (or each of the fleet's) every --interval and
// prints what changed since the probe before, one timestamped line per
// fact (status.Facts), including the verdict of --warn-within,
// --fail-within and --verify=required. The fleet is the one found at the
// start. An interruption ends it without error.
func (o *StatusOptions) runWatch(ctx context.Context) error {
	refs := o.refs
	if !o.on() {
		refs = []discover.Ref{{Namespace: o.Namespace, Name: o.Name}}
	}
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	var prev map[string]string
	for {
		cur := map[string]string{}
		for _, r := range refs {
			prefix := r.Namespace + "/" + r.Name + " "
			t, st, err := operation.StatusOf(ctx, o.Clients, r, o.Verify, o.Timeout)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				cur[prefix+"error"] = err.Error()
				continue
			}
			for k, v := range st.Facts() {
				cur[prefix+k] = v
			}
			verdict := "ok"
			if err := o.required(t, st); err != nil {
				verdict = "failing: " + err.Error()
			} else if fail, warn := o.expiry(t, st); fail != "" {
				verdict = "failing: " + fail
			} else if warn != "" {
				verdict = "warning: " + warn
			}
			if verdict != "ok" || o.Verify == runner.VerifyRequired || o.Thresholds.Set() {
				cur[prefix+"verdict"] = verdict
			}
		}
		now := o.Now().UTC().Format(time.RFC3339)
		for _, l := range status.Changes(prev, cur) {
			if _, err := fmt.Fprintf(o.Out, "%s %s\n", now, l); err != nil {
				return err
			}
		}
		prev = cur
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
