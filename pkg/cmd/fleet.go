package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/operation"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ui"
)

// Fleet picks several pgpools instead of one NAME (-l, -A, --all).
type Fleet struct {
	Selector      string
	AllNamespaces bool
	All           bool
	// Parallel is how many pgpools change at once (operations only).
	Parallel int
	refs     []discover.Ref
}

func (f *Fleet) addFleetFlags(c *cobra.Command, parallel bool) {
	c.Flags().StringVarP(&f.Selector, "selector", "l", "", "instead of NAME: every pgpool whose workload has these labels (in the namespace; every namespace with -A)")
	c.Flags().BoolVarP(&f.AllNamespaces, "all-namespaces", "A", false, "instead of NAME: the pgpools of every namespace")
	c.Flags().BoolVar(&f.All, "all", false, "instead of NAME: every pgpool in the namespace")
	if parallel {
		c.Flags().IntVar(&f.Parallel, "parallel", 1, "with -l, -A or --all: how many pgpools to change at once")
	}
}

func (f *Fleet) on() bool { return f.Selector != "" || f.AllNamespaces || f.All }

// complete resolves NAME, or the pgpools the fleet flags pick.
func (f *Fleet) complete(c *connection, args []string) error {
	if !f.on() {
		return c.Complete(args)
	}
	if len(args) > 0 {
		return UsageError{fmt.Errorf("give a NAME or -l/-A/--all, not both")}
	}
	c.parallel = f.Parallel
	if err := c.completeClients(); err != nil {
		return err
	}
	ns, where := c.Namespace, "namespace "+c.Namespace
	if f.AllNamespaces {
		ns, where = "", "any namespace"
	}
	refs, err := discover.Find(context.Background(), c.Clients.Dynamic, ns, f.Selector)
	if err != nil {
		return err
	}
	if len(refs) == 0 {
		sel := ""
		if f.Selector != "" {
			sel = " with labels " + f.Selector
		}
		return fmt.Errorf("no pgpool%s in %s (a StatefulSet, Deployment or PetSet running a pgpool container)", sel, where)
	}
	f.refs = refs
	return nil
}

// fleetResult is how one pgpool of a fleet fared.
type fleetResult struct {
	discover.Ref
	Succeeded bool        `json:"succeeded"`
	Error     string      `json:"error,omitempty"`
	Seconds   float64     `json:"seconds"`
	Output    []outputDoc `json:"output,omitempty"`
	text      []byte
	err       error
}

// runFleet runs the operation on every pgpool of the fleet, Parallel at a
// time; one failure does not stop the others. Progress lines carry the
// pgpool's name; then each pgpool's plan and result, and a summary table
// (or, with -o json|yaml, one document with a result per pgpool).
func (o *OperationOptions) runFleet(ctx context.Context, f *Fleet, intent planner.Intent) error {
	if o.DryRun == "none" && !o.Yes && ui.IsTerminal(o.In) && ui.IsTerminal(o.ErrOut) {
		fmt.Fprintf(o.ErrOut, "tls %s on %d pgpools:\n", intent.Operation, len(f.refs))
		for _, r := range f.refs {
			fmt.Fprintf(o.ErrOut, "  %s/%s\n", r.Namespace, r.Name)
		}
		ok, err := ui.Confirm(ctx, o.In, o.ErrOut, "Change all of them (each plan is printed as it runs)? [y/N] ")
		if err != nil || !ok {
			return fmt.Errorf("cancelled: nothing was changed")
		}
	}
	parallel := max(f.Parallel, 1)
	// The pgpools share what is read once: the user's rules per namespace,
	// cert-manager's API.
	o.cache = &operation.Cache{}
	opts := o.options()
	results := make([]fleetResult, len(f.refs))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	// On a terminal: one line per pgpool, its latest step, redrawn; in a
	// pipe: every progress line, prefixed with the pgpool.
	var board *ui.Board
	if !o.NoColor && ui.IsTerminal(o.ErrOut) {
		board = ui.NewBoard(o.ErrOut, discover.Names(f.refs))
		defer board.Stop()
	}
	for i, r := range f.refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var out bytes.Buffer
			op := *o
			op.Name, op.Namespace, op.Yes = r.Name, r.Namespace, true
			errOut := ui.Prefixed(o.ErrOut, &mu, "["+r.Namespace+"/"+r.Name+"] ")
			if board != nil {
				errOut = board.Writer(i)
			}
			op.IOStreams = genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: errOut}
			h := op.hooks(false)
			var docs []outputDoc
			if o.Output != "text" {
				// One document per plan, in the fleet's document.
				h.Planned = nil
				h.Done = func(out operation.Outcome) error {
					docs = append(docs, op.doc(out))
					return nil
				}
			}
			if board != nil {
				board.Set(i, "running")
			}
			t0 := time.Now()
			err := operation.Run(ctx, o.Clients, r, intent, opts, h)
			if board != nil {
				board.Set(i, map[bool]string{true: "succeeded", false: "FAILED: " + ui.FirstLine(fmt.Sprint(err))}[err == nil])
			}
			res := fleetResult{Ref: r, Succeeded: err == nil, Seconds: time.Since(t0).Seconds(), text: out.Bytes(), Output: docs}
			if err != nil {
				res.Error, res.err = err.Error(), err
			}
			results[i] = res
		}()
	}
	wg.Wait()
	var failed []string
	var errs []error
	for _, r := range results {
		if !r.Succeeded {
			failed = append(failed, r.Namespace+"/"+r.Name)
			errs = append(errs, r.err)
		}
	}
	if o.Output != "text" {
		if err := ui.PrintDoc(o.Out, o.Output, map[string]any{"operation": intent.Operation, "results": results}); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			fmt.Fprintf(o.Out, "=== %s/%s\n%s\n", r.Namespace, r.Name, strings.TrimRight(string(r.text), "\n"))
		}
		rows := make([]ui.FleetRow, len(results))
		for i, r := range results {
			rows[i] = ui.FleetRow{Namespace: r.Namespace, Name: r.Name, Succeeded: r.Succeeded, Seconds: r.Seconds, Error: r.Error}
		}
		if err := ui.RenderFleet(o.Out, rows); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		// The pgpools' own errors are kept (not printed again) so that the
		// exit code says what happened (an interrupted fleet exits 130).
		return &fleetError{msg: fmt.Sprintf("tls %s failed on %d of %d pgpools: %s", intent.Operation, len(failed), len(results), strings.Join(failed, ", ")), errs: fleetCauses(ctx, errs)}
	}
	return nil
}

// fleetCauses are what of the members' errors the fleet's own exit code
// shows: an interruption (130), or the fleet's own deadline (124). A member
// that failed for any other reason, its own step timeout included, makes
// the fleet exit 1.
func fleetCauses(ctx context.Context, errs []error) []error {
	var out []error
	for _, err := range errs {
		if errors.Is(err, plan.ErrInterrupted) {
			out = append(out, err)
		}
	}
	if len(out) == 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		out = append(out, fmt.Errorf("the fleet's deadline passed: %w", context.DeadlineExceeded))
	}
	return out
}

// fleetError is a fleet's failure: its message names the pgpools that
// failed, and it unwraps to their errors.
type fleetError struct {
	msg  string
	errs []error
}

func (e *fleetError) Error() string   { return e.msg }
func (e *fleetError) Unwrap() []error { return e.errs }
