package cmd

// Many clusters: --context repeated, or --all-contexts, on tls status and
// on the fleet forms of tls rotate. Each context runs as the command would
// alone (its own clients, namespace and fleet); one that cannot be
// reached is reported and the others go on.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ui"
)

// multiContext is a command that runs on several kubeconfig contexts.
type multiContext interface {
	options
	// multiOK says why the command, as given, cannot run on several
	// contexts ("" when it can).
	multiOK() string
	runContexts(ctx context.Context, contexts, args []string) error
}

// addContextFlags replaces kubectl's --context (one) by one that may be
// repeated, and adds --all-contexts; single receives the context when
// exactly one is given, for the ConfigFlags.
func addContextFlags(root *cobra.Command, flags *genericclioptions.ConfigFlags) {
	var names []string
	single := ""
	root.PersistentFlags().StringArrayVar(&names, "context", nil, "the kubeconfig context to use; tls status and tls rotate -l/-A/--all take it more than once, to run on several clusters")
	root.PersistentFlags().Bool("all-contexts", false, "tls status and tls rotate -l/-A/--all: run on every context of the kubeconfig")
	flags.Context = &single
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if len(names) == 1 {
			single = names[0]
		}
		return nil
	}
}

// contextsOf are the contexts the command runs on when it is more than
// one (--context repeated, --all-contexts: the kubeconfig's, sorted); nil
// for one.
func contextsOf(cmd *cobra.Command, flags *genericclioptions.ConfigFlags) ([]string, error) {
	names, _ := cmd.Flags().GetStringArray("context")
	all, _ := cmd.Flags().GetBool("all-contexts")
	if all {
		if len(names) > 0 {
			return nil, UsageError{fmt.Errorf("give --context or --all-contexts, not both")}
		}
		raw, err := flags.ToRawKubeConfigLoader().RawConfig()
		if err != nil {
			return nil, fmt.Errorf("read the kubeconfig's contexts: %w", err)
		}
		for n := range raw.Contexts {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) == 0 {
			return nil, UsageError{fmt.Errorf("--all-contexts: the kubeconfig has no context")}
		}
		return names, nil
	}
	if len(names) < 2 {
		return nil, nil
	}
	return names, nil
}

// flagsFor are base's connection flags for one context.
func flagsFor(base *genericclioptions.ConfigFlags, name string) *genericclioptions.ConfigFlags {
	f := genericclioptions.NewConfigFlags(true)
	f.KubeConfig, f.Namespace, f.Timeout, f.CacheDir = base.KubeConfig, base.Namespace, base.Timeout, base.CacheDir
	f.Impersonate, f.ImpersonateUID, f.ImpersonateGroup = base.Impersonate, base.ImpersonateUID, base.ImpersonateGroup
	f.WrapConfigFn = base.WrapConfigFn
	f.Context = &name
	return f
}

// contextRun is what one context's run wrote and how it ended.
type contextRun struct {
	name string
	out  bytes.Buffer
	err  error
}

// eachContext runs run for every context, at most parallel at once, each
// given its own connection flags and an output buffer; the results come
// back in the contexts' order.
func eachContext(ctx context.Context, names []string, parallel int, run func(ctx context.Context, name string, out io.Writer) error) []*contextRun {
	runs := make([]*contextRun, len(names))
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for i, n := range names {
		runs[i] = &contextRun{name: n}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			runs[i].err = run(ctx, n, &runs[i].out)
		}()
	}
	wg.Wait()
	return runs
}

// prefixWriter writes each line to w prefixed with "[context] ", whole
// lines at a time (under mu, shared by the contexts that write to w).
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		_, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
		if err != nil {
			return len(b), err
		}
	}
}

// contextsError is the end of a run on several contexts: those that
// failed, and why.
func contextsError(runs []*contextRun) error {
	var failed []string
	var errs []error
	for _, r := range runs {
		if r.err != nil {
			failed = append(failed, r.name)
			errs = append(errs, fmt.Errorf("context %s: %w", r.name, r.err))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return &fleetError{msg: fmt.Sprintf("%d of %d contexts failed (%s): %s", len(failed), len(runs), strings.Join(failed, ", "), strings.Join(msgs, "; ")), errs: errs}
}

// multiOK: rotate runs on several contexts in its fleet forms.
func (o *RotateOptions) multiOK() string {
	if !o.on() {
		return "several contexts take the fleet forms of tls rotate: -l SELECTOR, -A or --all (a NAME is one pgpool, in one cluster)"
	}
	return ""
}

// runContexts rotates the fleet in every context, --parallel contexts at
// once, each as it would alone (its own plans, locks, rollbacks and
// summary); progress lines carry the context. Then each context's output
// under its name (or, with -o json|yaml, one document keyed by context)
// and a line per context. A context that cannot be reached is reported,
// and the others go on; any failure exits 1.
func (o *RotateOptions) runContexts(ctx context.Context, names, args []string) error {
	if o.DryRun == "none" && !o.Yes && ui.IsTerminal(o.In) && ui.IsTerminal(o.ErrOut) {
		ok, err := ui.Confirm(ctx, o.In, o.ErrOut, fmt.Sprintf("tls rotate the pgpools picked in %d contexts (%s), each plan printed as it runs? [y/N] ", len(names), strings.Join(names, ", ")))
		if err != nil || !ok {
			return fmt.Errorf("cancelled: nothing was changed")
		}
	}
	var mu sync.Mutex
	runs := eachContext(ctx, names, o.Parallel, func(ctx context.Context, name string, out io.Writer) error {
		oc := *o
		oc.connection = connection{IOStreams: genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: out, ErrOut: &prefixWriter{mu: &mu, w: o.ErrOut, prefix: "[" + name + "] "}},
			ConfigFlags: flagsFor(o.ConfigFlags, name)}
		oc.refs = nil
		oc.Yes, oc.NoColor = true, true
		if err := oc.complete(&oc.connection, args); err != nil {
			return err
		}
		return oc.runFleet(ctx, &oc.Fleet, oc.intent)
	})
	switch o.Output {
	case "json", "yaml":
		doc := map[string]any{}
		for _, r := range runs {
			var v any
			if err := yaml.Unmarshal(r.out.Bytes(), &v); err != nil || v == nil {
				v = map[string]string{}
			}
			if r.err != nil {
				v = map[string]any{"error": r.err.Error(), "output": v}
			}
			doc[r.name] = v
		}
		if err := ui.PrintDoc(o.Out, o.Output, doc); err != nil {
			return err
		}
	default:
		for _, r := range runs {
			fmt.Fprintf(o.Out, "== context %s ==\n", r.name)
			_, _ = o.Out.Write(r.out.Bytes())
		}
		for _, r := range runs {
			if r.err != nil {
				fmt.Fprintf(o.Out, "context %s: failed: %s\n", r.name, ui.Clean(ui.FirstLine(r.err.Error())))
			} else {
				fmt.Fprintf(o.Out, "context %s: succeeded\n", r.name)
			}
		}
	}
	return contextsError(runs)
}
