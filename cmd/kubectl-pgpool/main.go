// Command kubectl-pgpool is the kubectl plugin `kubectl pgpool`: it builds the
// root command, runs it with a context that signals cancel, and maps errors
// to exit codes. Nothing else.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	_ "k8s.io/client-go/plugin/pkg/client/auth" // exec, OIDC and cloud auth plugins

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// Set by -ldflags at build time.
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

func main() {
	// Ctrl-C, SIGTERM and SIGHUP (a closed terminal) stop the command at a
	// safe point: the running step ends, the lock is released and the
	// outcome recorded. A second signal exits at once.
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\n%s: stopping at a safe point and releasing the lock (signal again to quit at once)\n", s)
		cancel(plan.ErrInterrupted)
		<-sigs
		os.Exit(130)
	}()
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: version, Commit: commit, Date: date})
	err := cmd.WithCause(ctx, root.ExecuteContext(ctx))
	signal.Stop(sigs)
	code := cmd.ExitCode(err)
	switch {
	case code == 3:
		fmt.Fprintln(os.Stderr, "warning:", cmd.Explain(err))
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", cmd.Explain(err))
	}
	os.Exit(code)
}
