package cmd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/apiretry"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/lock"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/restart"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ui"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
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
	Clients *Clients
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
	// VerifyLogin names a Secret (keys username, password, optionally
	// database) to log in with through each replaced pod.
	VerifyLogin string
	// BackendCA are --backend-ca sources (add, rotate, change-issuer).
	BackendCA []string
	// ForceUnlock takes the lock from another run (--force-unlock).
	ForceUnlock bool
	// LockDuration is the lock's duration (hidden --lock-duration: tests
	// shorten it; 0 is 60s).
	LockDuration time.Duration
	// OnFailure is what happens when a step fails after the first change:
	// "rollback" (restore the backup) or "stop".
	OnFailure string
	// cache holds what the run reads once (the pgpools of a fleet share
	// it); nil reads every time.
	cache *runCache
	// identity is this run's lock identity (lock.Self(), once).
	identity lock.Identity
}

// newOperationOptions are the shared options of a mutating command.
func newOperationOptions(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) OperationOptions {
	return OperationOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}, OnFailure: "rollback"}
}

func (o *OperationOptions) addFlags(c *cobra.Command) {
	c.Flags().StringVar(&o.DryRun, "dry-run", "none", `"none", "client" (print the plan, change nothing) or "server" (also send every write with dryRun=All and show the server's answers)`)
	c.Flags().Lookup("dry-run").NoOptDefVal = "client"
	c.Flags().StringVarP(&o.Output, "output", "o", "text", "output format of the plan and the result: text, json or yaml")
	c.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "time limit of each step (as KubeDB's spec.timeout)")
	c.Flags().StringVar(&o.Apply, "apply", "IfReady", `"IfReady" (refuse unless every pod is Ready) or "Always" (as KubeDB's spec.apply)`)
	c.Flags().BoolVarP(&o.Yes, "yes", "y", false, "do not ask for confirmation (none is asked without a terminal)")
	c.Flags().BoolVar(&o.NoColor, "no-color", false, "plain output even on a terminal")
	c.Flags().BoolVar(&o.ForceUnlock, "force-unlock", false, "take the lock even if another run still holds it (only when you know that run is gone)")
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
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(apiretry.Wrap) // transient API errors are retried under every client
	cfg.UserAgent = "kubectl-pgpool"
	if cfg.QPS == 0 {
		// Client-side rate limit: kubectl's is 50/100 per command; a fleet
		// of N pgpools at once gets N times that (the API server's own
		// priority and fairness still applies).
		scale := max(o.parallel, 1)
		cfg.QPS, cfg.Burst = float32(50*scale), 100*scale
	}
	o.Clients, err = NewClients(cfg)
	return err
}

// Validate checks the shared flags (no I/O).
func (o *OperationOptions) Validate() error {
	for _, c := range []struct{ flag, value, choices string }{
		{"--dry-run", o.DryRun, "none client server"},
		{"--output", o.Output, "text json yaml"},
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
	for _, ref := range o.BackendCA {
		if _, err := parseCARef(ref); err != nil {
			return err
		}
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

// addOnFailureFlag adds --on-failure (the four operations; not rollback).
func (o *OperationOptions) addOnFailureFlag(c *cobra.Command) {
	c.Flags().StringVar(&o.OnFailure, "on-failure", o.OnFailure, `when a step fails after the first change: "rollback" (restore the backup taken before it and restart the pods already changed, so every pod runs one config) or "stop" (leave it for you: run the command again to finish, or tls rollback to undo)`)
}

// run carries out the operation; when a step fails after the first change
// it rolls back (--on-failure=rollback) or stops and says how to go on.
func (o *OperationOptions) run(ctx context.Context, req planner.Request) error {
	changed, err := o.execute(ctx, req, true)
	if err == nil || !changed || req.Operation == planner.Rollback || o.DryRun != "none" {
		return err
	}
	// A run that lost its lock stops: another run holds the pgpool now,
	// and undoing would undo that run's work too.
	var lost *lock.LostError
	if errors.As(err, &lost) {
		return err
	}
	undo := fmt.Sprintf("kubectl pgpool tls rollback %s -n %s", o.Name, o.Namespace)
	if errors.Is(err, plan.ErrInterrupted) || o.OnFailure == "stop" {
		return fmt.Errorf("%w\nstopped part-way: run the same command again to finish it, or `%s` to undo it", err, undo)
	}
	fmt.Fprintf(o.ErrOut, "tls %s failed: %v\nrolling back to the state before it (--on-failure=rollback)\n", req.Operation, err)
	if o.Output == "yaml" {
		fmt.Fprintln(o.Out, "---")
	}
	if _, rerr := o.execute(ctx, planner.Request{Operation: planner.Rollback}, false); rerr != nil {
		return fmt.Errorf("%w\nthe rollback failed too: %v\nfix that, then run `%s` again", err, rerr, undo)
	}
	return fmt.Errorf("%w\nrolled back: the config, the TLS volume and the certificates are as they were before tls %s, and every pod changed since was restarted onto them; fix the cause, then run the command again", err, req.Operation)
}

// execute is discover -> preflight -> plan -> print -> confirm -> execute
// -> result. changed: a step after the backup changed the cluster.
func (o *OperationOptions) execute(ctx context.Context, req planner.Request, ask bool) (changed bool, err error) {
	// Discovery and the checks that need only the name at once; a
	// discovery error is reported first.
	var t *pgpool.Target
	pf := &preflighted{}
	if o.identity.Holder == "" {
		o.identity = lock.Self()
	}
	err = parallel.All(func() (err error) {
		t, err = discover.Discover(ctx, o.Clients.target(), o.Namespace, o.Name)
		return err
	}, func() error { return o.preflightReads(ctx, req, pf) })
	if err != nil {
		return false, err
	}
	if err := o.preflight(ctx, t, &req, pf); err != nil {
		return false, err
	}
	req.ApplyAlways = o.Apply == "Always"
	req.Holder = o.identity.Holder
	req.ForceUnlock = o.ForceUnlock
	req.Now = time.Now()
	if req.OnlyStale {
		done, err := o.current(ctx, t, &req)
		if err != nil || done {
			return false, err
		}
	}
	if req.Operation == planner.Rotate || req.Operation == planner.Remove {
		req.Issuer = t.State.Issuer
	}
	p, err := planner.Build(t, req)
	var done *planner.NothingToDoError
	if errors.As(err, &done) {
		if o.Output == "text" {
			fmt.Fprintln(o.Out, done.Msg)
			return false, nil
		}
		return false, printDoc(o.Out, o.Output, outputDoc{DryRun: o.DryRun, NothingToDo: done.Msg})
	}
	if err != nil {
		return false, err
	}
	p.Warnings = append(p.Warnings, pf.warnings...)
	// The backends, permissions, budgets and a dry run of the Certificates
	// at once; their errors are reported in this order.
	var backendWarnings []string
	checks := []func() error{func() (err error) {
		if pf.backends != nil {
			backendWarnings, err = pf.backends()
		}
		return err
	}, func() error { return o.checkAccess(ctx, t, p) }}
	if p.Restart == "evict" && req.Operation != planner.Rollback {
		checks = append(checks, func() error { return o.checkBudgets(ctx, t) })
	}
	checks = append(checks, func() error { return runner.CheckCertificates(ctx, o.Clients.Clients, p) })
	if err := parallel.All(checks...); err != nil {
		return false, err
	}
	p.Warnings = append(p.Warnings, backendWarnings...)
	color := !o.NoColor && os.Getenv("NO_COLOR") == ""
	if o.Output == "text" {
		ui.RenderPlan(o.Out, p, ui.NewStyles(o.Out, color && ui.IsTerminal(o.Out)), o.DryRun)
	}
	if o.DryRun == "client" {
		return false, printDoc(o.Out, o.Output, outputDoc{DryRun: o.DryRun, Plan: p})
	}
	if ask && o.DryRun == "none" && !o.Yes && ui.IsTerminal(o.In) && ui.IsTerminal(o.ErrOut) {
		ok, err := confirm(ctx, o.In, o.ErrOut, fmt.Sprintf("Apply this plan to %s? [y/N] ", t))
		if errors.Is(err, plan.ErrInterrupted) {
			return false, fmt.Errorf("%w at the prompt: nothing was changed", err)
		}
		if err != nil || !ok {
			return false, fmt.Errorf("cancelled: nothing was changed")
		}
	}
	live := color && ui.IsTerminal(o.ErrOut)
	prog := ui.NewProgress(o.ErrOut, ui.NewStyles(o.ErrOut, live), len(p.Steps), live)
	rn := &runner.Runner{Clients: o.Clients.Clients, Target: t, ServerDryRun: o.DryRun == "server", Timeout: o.Timeout, Verify: o.Verify, Password: pf.login, Started: time.Now(), Identity: o.identity,
		LockOptions: lock.Options{Duration: o.LockDuration}}
	prog.Start()
	res, execErr := plan.Execute(ctx, p, rn, prog.Event)
	prog.Stop()
	if execErr != nil && o.DryRun == "none" && plan.OnlyBookkeepingFailed(res) && !errors.Is(execErr, plan.ErrInterrupted) {
		// The change is done and verified: a failed record or unlock is a
		// warning, never a reason to roll back.
		res.Succeeded, res.Error = true, ""
		res.Warning = fmt.Sprintf("tls %s is done and verified on %s, but %v; nothing was undone. %s", req.Operation, t, execErr, bookkeepingAdvice(t))
		fmt.Fprintln(o.ErrOut, "warning: "+res.Warning)
		execErr = nil
	}
	if o.Output == "text" {
		ui.RenderResult(o.Out, res, ui.NewStyles(o.Out, color && ui.IsTerminal(o.Out)))
		if o.DryRun == "server" {
			for i, s := range res.Steps {
				fmt.Fprintf(o.Out, "%3d. %-7s %s: %s\n", i+1, s.Kind, s.Object, s.Message)
			}
		}
	}
	if err := printDoc(o.Out, o.Output, outputDoc{DryRun: o.DryRun, Plan: p, Result: res}); err != nil {
		return false, err
	}
	return changedAfterBackup(res, t.Name), execErr
}

// bookkeepingAdvice says what to do after a failed record or unlock.
func bookkeepingAdvice(t *pgpool.Target) string {
	return fmt.Sprintf("If the record failed, the workload's %s annotation or its Event may still show the previous operation (kubectl pgpool tls status shows what pgpool serves); if the unlock failed, the lock Lease %s/%s stays until the next run takes it over, or `kubectl delete lease -n %s %s`.",
		pgpool.AnnotationLastOperation, t.Namespace, pgpool.LeaseName(t.Name), t.Namespace, pgpool.LeaseName(t.Name))
}

// changedAfterBackup reports whether a step that changes the pgpool (not
// the lock, the backup or the record) succeeded.
func changedAfterBackup(res *plan.Result, name string) bool {
	for _, s := range res.Steps {
		if s.Status != "succeeded" || !s.Kind.Writes() {
			continue
		}
		switch s.Kind {
		case plan.Lock, plan.Unlock, plan.Record:
			continue
		}
		if s.Object.Kind == "Secret" && s.Object.Name == pgpool.BackupName(name) {
			continue
		}
		return true
	}
	return false
}

// printDoc writes d as JSON or YAML when -o asks for it (text is printed
// by the caller).
func printDoc(out io.Writer, output string, d any) error {
	switch output {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(d)
	case "yaml":
		b, err := yaml.Marshal(d)
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	return nil
}

// confirm asks q and reads the answer; Ctrl-C at the prompt ends it at once
// (the read goes on in the background until the process exits).
func confirm(ctx context.Context, in io.Reader, out io.Writer, q string) (bool, error) {
	fmt.Fprint(out, q)
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(in).ReadString('\n')
		ch <- answer{line, err}
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(out)
		return false, context.Cause(ctx)
	case a := <-ch:
		if a.err != nil && a.line == "" {
			return false, a.err
		}
		s := strings.ToLower(strings.TrimSpace(a.line))
		return s == "y" || s == "yes", nil
	}
}

// checkBudgets refuses a roll that the PodDisruptionBudgets would block
// outright (read-only, before the first write).
func (o *OperationOptions) checkBudgets(ctx context.Context, t *pgpool.Target) error {
	pdbs, err := o.Clients.Policy.PodDisruptionBudgets(t.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list the PodDisruptionBudgets in %s: %w", t.Namespace, err)
	}
	return restart.CheckBudgets(pdbs.Items, t.Pods)
}

// preflighted is what preflight found: warnings for the plan, the
// --verify-login credentials, the CAs it read, and the check that pgpool
// will trust every backend that serves TLS (nil when the operation adds no
// CA), which runs with the permission checks once the plan is built.
type preflighted struct {
	warnings                       []string
	login                          verify.Login
	backendCA, currentCA, issuerCA []byte
	issuerSpec                     cmapi.IssuerSpec
	backends                       func() (warnings []string, err error)
}

// preflightReads runs the read-only checks that need only the pgpool's
// name, at the same time as its discovery: cert-manager is served, the
// issuer is Ready, nobody holds the lock; and it reads the CAs pgpool will
// trust for its backends. The reads are independent: all at once (one round
// trip of latency, two for an Issuer's CA), their errors reported in this
// order, as if one after another.
func (o *OperationOptions) preflightReads(ctx context.Context, req planner.Request, pf *preflighted) error {
	ns, name := o.Namespace, o.Name
	withCAs := req.Operation != planner.Remove && req.Operation != planner.Rollback
	newIssuer := req.Operation == planner.Add || req.Operation == planner.ChangeIssuer
	var notice string
	reads := []func() error{func() error {
		return o.cache.certManagerServed(o.Clients.Discovery)
	}}
	if newIssuer {
		reads = append(reads, func() (err error) {
			// One read of the issuer: ready, and (then) its CA. change-issuer
			// with cert auth judges its spec again once the pgpool's auth
			// mode is known (preflight).
			ref := cmmeta.IssuerReference{Name: req.Issuer.Name, Kind: req.Issuer.Kind}
			pf.issuerSpec, err = issuing.IssuerReady(ctx, o.Clients.CertManager, ns, ref, req.Operation == planner.Add && req.AuthMode == "cert")
			if err == nil && withCAs {
				pf.issuerCA = o.issuerCA(ctx, ns, req.Issuer, pf.issuerSpec)
			}
			return err
		})
	}
	reads = append(reads, func() (err error) {
		notice, err = lock.Inspect(ctx, o.Clients.Coordination, ns, pgpool.LeaseName(name), o.identity, o.ForceUnlock)
		return err
	})
	if o.VerifyLogin != "" {
		reads = append(reads, func() error {
			s, err := o.Clients.Core.Secrets(ns).Get(ctx, o.VerifyLogin, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("--verify-login: get Secret %s/%s: %w", ns, o.VerifyLogin, err)
			}
			pf.login = verify.Login{User: string(s.Data["username"]), Password: string(s.Data["password"]), Database: string(s.Data["database"])}
			if pf.login.User == "" || pf.login.Password == "" {
				return fmt.Errorf("--verify-login: Secret %s/%s needs the keys username and password", ns, o.VerifyLogin)
			}
			return nil
		})
	}
	if withCAs {
		if len(o.BackendCA) > 0 {
			reads = append(reads, func() (err error) {
				pf.backendCA, err = o.readCAs(ctx, ns, o.BackendCA)
				return err
			})
		}
		reads = append(reads, func() error {
			if sec, err := o.Clients.Core.Secrets(ns).Get(ctx, pgpool.ServerCertName(name), metav1.GetOptions{}); err == nil {
				pf.currentCA = sec.Data["ca.crt"]
			}
			return nil
		})
	}
	if err := parallel.All(reads...); err != nil {
		return err
	}
	if notice != "" {
		pf.warnings = append(pf.warnings, notice)
	}
	return nil
}

// preflight completes the checks with the discovered target: a SelfSigned
// issuer for cert auth, and the CAs pgpool will read. It completes req with
// what was read (the backends' CAs, the CA today). (Checks of today's state
// against the operation are part of planner.Build.)
func (o *OperationOptions) preflight(ctx context.Context, t *pgpool.Target, req *planner.Request, pf *preflighted) error {
	if req.Operation == planner.ChangeIssuer && t.State.AuthMode == "cert" {
		if err := issuing.RefuseSelfSigned(pf.issuerSpec, cmmeta.IssuerReference{Name: req.Issuer.Name, Kind: req.Issuer.Kind}); err != nil {
			return err
		}
	}
	if o.VerifyLogin != "" {
		req.Login = "password"
	}
	if req.Operation == planner.Remove || req.Operation == planner.Rollback {
		return nil
	}
	if len(o.BackendCA) > 0 {
		req.BackendCA, req.BackendCASources = pf.backendCA, o.BackendCA
	}
	req.CurrentCA = pf.currentCA
	issuerCA := pf.issuerCA
	if req.Operation != planner.Add && req.Operation != planner.ChangeIssuer {
		issuerCA = req.CurrentCA
	}
	// The CAs pgpool will read: the issuer's, the previous one (kept during
	// change-issuer), the backends'.
	backendCA := planner.BackendCAs(t, *req)
	var previous []byte
	if req.Operation == planner.ChangeIssuer {
		previous = req.CurrentCA
	}
	trust := tls.Pool(issuerCA, previous, backendCA)
	pf.backends = func() ([]string, error) {
		var warnings []string
		backends := o.checkBackends(ctx, t, trust, o.Timeout)
		for _, b := range backends {
			if b.Check != "not-checked" {
				continue
			}
			if o.Verify == runner.VerifyRequired && b.Via != "" {
				return nil, fmt.Errorf("backend %d (%s:%d): %s (--verify=required)", b.Index, b.Host, b.Port, b.Detail)
			}
			warnings = append(warnings, fmt.Sprintf("backend %d (%s:%d) not checked for TLS: %s", b.Index, b.Host, b.Port, b.Detail))
		}
		return warnings, backendProblems(backends)
	}
	return nil
}

// current fills req.Current with the pods that serve what the Secret holds
// (rotate --only-stale), proven by a handshake with each; it reports done
// when no pod is stale. A pod that cannot be checked stops the command: it
// cannot be told stale or current.
func (o *OperationOptions) current(ctx context.Context, t *pgpool.Target, req *planner.Request) (bool, error) {
	pods := make([]PodStatus, 0, len(t.Pods))
	for i := range t.Pods {
		pods = append(pods, PodStatus{Name: t.Pods[i].Name, UID: string(t.Pods[i].UID)})
	}
	probePods(ctx, o.Clients, t, pods, o.Timeout)
	req.Current = map[string]bool{}
	var stale []string
	for _, p := range pods {
		switch p.Check {
		case "ok":
			req.Current[p.UID] = true
		case "mismatch":
			stale = append(stale, p.Name)
		default:
			return false, fmt.Errorf("--only-stale: pod %s cannot be told stale or current (%s: %s); nothing was changed: run without --only-stale to restart every pod", p.Name, p.Check, p.Detail)
		}
	}
	if len(stale) == 0 {
		fmt.Fprintf(o.Out, "all %d pods current: each serves the certificate its Secret holds; nothing to restart\n", len(pods))
		return true, nil
	}
	fmt.Fprintf(o.ErrOut, "--only-stale: %d of %d pods serve an older certificate than the Secret holds: %s\n", len(stale), len(pods), strings.Join(stale, ", "))
	return false, nil
}
