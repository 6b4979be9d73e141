package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
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

// StatusRow is one pgpool of `tls status -A|-l|--all` (or of several
// contexts).
type StatusRow struct {
	Context   string         `json:"-"`
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Status    *status.Status `json:"status,omitempty"`
	Error     string         `json:"error,omitempty"`
	target    *pgpool.Target
}

// fleetStatus is the status of several pgpools: a row each, and what
// fails and what only warns.
type fleetStatus struct {
	rows               []StatusRow
	problems, warnings []string
}

// collect reads the status of each of refs.
func (o *StatusOptions) collect(ctx context.Context, refs []discover.Ref) fleetStatus {
	var fs fleetStatus
	for _, r := range refs {
		row := StatusRow{Namespace: r.Namespace, Name: r.Name}
		t, st, err := operation.StatusOf(ctx, o.Clients, r, o.Verify, o.Timeout)
		if err != nil {
			row.Error = err.Error()
			fs.problems = append(fs.problems, err.Error())
		} else {
			row.target, row.Status = t, st
			if err := o.required(t, row.Status); err != nil {
				fs.problems = append(fs.problems, err.Error())
			}
			fail, warn := o.expiry(t, st)
			if fail != "" {
				fs.problems = append(fs.problems, fail)
			}
			if warn != "" {
				fs.warnings = append(fs.warnings, warn)
			}
		}
		fs.rows = append(fs.rows, row)
	}
	return fs
}

// runFleet shows every pgpool of the fleet: a table (namespace, name,
// sslMode, auth mode, issuer, days until the server certificate expires,
// pods serving the current certificate, last operation), or with -o the
// full status of each.
func (o *StatusOptions) runFleet(ctx context.Context) error {
	fs := o.collect(ctx, o.refs)
	var doc any = fs.rows
	return o.render(fs, doc)
}

// render prints fs (doc is its -o json|yaml document) and says how it
// ends: failures (exit 1), else expiry warnings (exit 3).
func (o *StatusOptions) render(fs fleetStatus, doc any) error {
	rows := fs.rows
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
		if err := ui.PrintDoc(o.Out, o.Output, doc); err != nil {
			return err
		}
	default:
		table := make([]ui.StatusRow, len(rows))
		for i, r := range rows {
			table[i] = ui.StatusRow{Context: r.Context, Namespace: r.Namespace, Name: r.Name, Target: r.target, Status: r.Status, Error: r.Error}
		}
		if err := ui.RenderStatusTable(o.Out, table, o.Verify != runner.VerifyOff); err != nil {
			return err
		}
	}
	found := 0
	for _, r := range rows {
		if r.Status != nil {
			found++
		}
	}
	if len(fs.problems) > 0 && (o.Verify == runner.VerifyRequired || o.Thresholds.Set() || found < len(rows)) {
		return fmt.Errorf("%d of %d pgpools: %s", len(fs.problems), len(rows), strings.Join(fs.problems, "; "))
	}
	if len(fs.warnings) > 0 {
		return &ExpiryWarning{Msg: fmt.Sprintf("%d of %d pgpools: %s", len(fs.warnings), len(rows), strings.Join(fs.warnings, "; "))}
	}
	return nil
}

// multiOK: status runs on several contexts in every form but --watch.
func (o *StatusOptions) multiOK() string {
	switch {
	case o.Watch:
		return "--watch follows one cluster: give one --context"
	case o.Output == "prometheus":
		return "-o prometheus is one cluster's metrics (for its own textfile collector): give one --context"
	}
	return ""
}

// runContexts shows NAME, or the fleet, in every context at once: one
// table with a CONTEXT column (or, with -o json|yaml, one document keyed
// by context). A context that cannot be reached is a row with its error,
// and the others go on.
func (o *StatusOptions) runContexts(ctx context.Context, names, args []string) error {
	results := make([]fleetStatus, len(names))
	runs := eachContext(ctx, names, len(names), func(ctx context.Context, name string, _ io.Writer) error {
		oc := *o
		oc.connection = connection{IOStreams: o.IOStreams, ConfigFlags: flagsFor(o.ConfigFlags, name)}
		oc.refs = nil
		if err := oc.complete(&oc.connection, args); err != nil {
			return err
		}
		i := slices.Index(names, name)
		results[i] = oc.collect(ctx, oc.targets(&oc.connection))
		return nil
	})
	var all fleetStatus
	doc := map[string]any{}
	for i, r := range runs {
		if r.err != nil {
			all.rows = append(all.rows, StatusRow{Context: r.name, Error: "context " + r.name + ": " + r.err.Error()})
			all.problems = append(all.problems, "context "+r.name+": "+r.err.Error())
			doc[r.name] = map[string]string{"error": r.err.Error()}
			continue
		}
		for j := range results[i].rows {
			results[i].rows[j].Context = r.name
		}
		all.rows = append(all.rows, results[i].rows...)
		all.problems = append(all.problems, prefixed(r.name, results[i].problems)...)
		all.warnings = append(all.warnings, prefixed(r.name, results[i].warnings)...)
		doc[r.name] = results[i].rows
	}
	return o.render(all, doc)
}

// prefixed are msgs, each said of a context.
func prefixed(context string, msgs []string) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = "context " + context + ": " + m
	}
	return out
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
