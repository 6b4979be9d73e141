package cmd

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// VersionOptions are the options of `version`.
type VersionOptions struct {
	genericiooptions.IOStreams
	Info   BuildInfo
	Output string
}

func newVersionCmd(streams genericiooptions.IOStreams, info BuildInfo) *cobra.Command {
	o := &VersionOptions{IOStreams: streams, Info: info}
	c := &cobra.Command{
		Use:     "version",
		Short:   "Print the version of kubectl-pgpool",
		Example: "  kubectl pgpool version\n  kubectl pgpool version -o json",
		RunE:    func(*cobra.Command, []string) error { return o.Run() },
	}
	c.Flags().StringVarP(&o.Output, "output", "o", "text", "text or json")
	return c
}

// Run prints the version.
func (o *VersionOptions) Run() error {
	if o.Output == "json" {
		return json.NewEncoder(o.Out).Encode(o.Info)
	}
	_, err := fmt.Fprintf(o.Out, "kubectl-pgpool %s (commit %s, built %s, %s)\n", o.Info.Version, o.Info.Commit, o.Info.Date, runtime.Version())
	return err
}
