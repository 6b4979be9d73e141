// Command kubectl-pgpool is the kubectl plugin `kubectl pgpool`: it builds the
// root command, runs it, and maps errors to exit codes. Nothing else.
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
)

// Set by -ldflags at build time.
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: version, Commit: commit, Date: date})
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", cmd.Explain(err))
	}
	os.Exit(cmd.ExitCode(err))
}
