package cmd

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/operation"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ui"
)

// StatusOptions are the options of `tls status`.
type StatusOptions struct {
	connection
	Fleet
	Output  string
	Verify  string
	Timeout time.Duration
}

// Validate checks the flags (no I/O).
func (o *StatusOptions) Validate() error {
	if err := oneOf("--output", o.Output, "text json yaml"); err != nil {
		return err
	}
	if err := oneOf("--verify", o.Verify, "true false required"); err != nil {
		return err
	}
	if o.Timeout <= 0 {
		return UsageError{fmt.Errorf("--timeout must be positive")}
	}
	return nil
}

func newStatusCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &StatusOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}, Timeout: 20 * time.Second}
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
  kubectl pgpool tls status -A --verify=required`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	c.Flags().StringVarP(&o.Output, "output", "o", "text", "text, json or yaml")
	c.Flags().StringVar(&o.Verify, "verify", "true", `handshake with each pod through port-forward and compare what it serves with the Secret: "true" (report), "false" (skip), or "required" (exit 1 unless every pod is proven)`)
	c.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "time limit of each pod's handshake")
	o.addFleetFlags(c, false)
	return c
}

// Complete resolves NAME or the fleet, and the clients.
func (o *StatusOptions) Complete(args []string) error {
	return o.complete(&o.connection, args)
}

// Run prints the status.
func (o *StatusOptions) Run(ctx context.Context) error {
	if o.on() {
		return o.runFleet(ctx)
	}
	t, st, err := operation.StatusOf(ctx, o.Clients, o.Namespace, o.Name, o.Verify, o.Timeout)
	if err != nil {
		return err
	}
	if err := o.print(t, st); err != nil {
		return err
	}
	return o.required(t, st)
}

// required is --verify=required: an error unless every pod is proven.
func (o *StatusOptions) required(t *pgpool.Target, st *operation.Status) error {
	if o.Verify != runner.VerifyRequired {
		return nil
	}
	if len(st.Pods) == 0 {
		return fmt.Errorf("%s has no pods, so nothing is proven (--verify=required)", t)
	}
	for _, p := range st.Pods {
		if p.Check != "ok" {
			return fmt.Errorf("pod %s of %s is not proven to serve what it should (%s: %s)", p.Name, t, p.Check, p.Detail)
		}
	}
	return nil
}

func (o *StatusOptions) print(t *pgpool.Target, st *operation.Status) error {
	if o.Output != "text" {
		return printDoc(o.Out, o.Output, st)
	}
	w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Workload:\t%s (%d replicas, %s)\n", st.Workload, t.Replicas, t.UpdateStrategy)
	fmt.Fprintf(w, "Config:\t%s (mounted at %s)\n", st.Config, t.Config.MountPath)
	fmt.Fprintf(w, "TLS:\t%s\n", map[bool]string{true: "on", false: "off"}[st.SSL])
	fmt.Fprintf(w, "sslMode / clientAuthMode:\t%s / %s\n", st.SSLMode, st.AuthMode)
	if st.HBAEnforced {
		fmt.Fprintf(w, "pool_hba.conf:\tenforced (enable_pool_hba = on)\n")
	} else {
		fmt.Fprintf(w, "pool_hba.conf:\tNOT enforced (enable_pool_hba = off): pgpool admits clients without reading it, so sslMode require and cert are not enforced\n")
	}
	if st.Issuer.Name != "" {
		fmt.Fprintf(w, "Issuer:\t%s %s\n", st.Issuer.Kind, st.Issuer.Name)
	}
	fmt.Fprintf(w, "TLS volume at %s:\t%v\n", st.TLSMountPath, st.TLSVolume)
	for _, c := range st.Certificates {
		fmt.Fprintf(w, "Certificate %s:\tReady=%v revision %d\n", c.Name, c.Ready, c.Revision)
		if c.Secret != nil {
			fmt.Fprintf(w, "  subject / issuer:\t%s / %s\n", c.Secret.Subject, c.Secret.Issuer)
			fmt.Fprintf(w, "  serial / expires:\t%s / %s (in %s)\n", c.Secret.Serial, c.Secret.NotAfter.UTC().Format(time.RFC3339), time.Until(c.Secret.NotAfter).Round(time.Hour))
		}
	}
	for _, c := range st.ClientCerts {
		fmt.Fprintf(w, "Client certificate for user %s:\tSecret %s, Ready=%v, expires %s\n", c.User, c.Secret, c.Ready, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if b := st.CABundle; b != nil {
		fmt.Fprintf(w, "CA bundle (ssl_ca_cert):\tConfigMap %s\n", b.ConfigMap)
		for _, x := range b.Issuer {
			fmt.Fprintf(w, "  issuer's CA:\t%s\n", x)
		}
		for _, x := range b.Previous {
			fmt.Fprintf(w, "  previous issuer's CA:\t%s (leaves at the next tls rotate, unless --keep-previous-ca)\n", x)
		}
		for _, x := range b.Backend {
			fmt.Fprintf(w, "  backend CA:\t%s\n", x)
		}
	}
	for _, b := range st.Backends {
		what := b.Check
		switch b.Check {
		case "tls-trusted":
			what = "TLS, issued by " + b.Issuer + ", trusted by the CA bundle"
		case "tls-untrusted":
			what = "TLS, issued by " + b.Issuer + ", NOT trusted: pgpool cannot log in to it; add its CA with tls rotate --reissue=false --backend-ca"
		case "plain":
			what = "no TLS"
		}
		if b.Detail != "" && b.Check != "tls-untrusted" {
			what += " (" + b.Detail + ")"
		}
		fmt.Fprintf(w, "Backend %d:\t%s:%d: %s\n", b.Index, b.Host, b.Port, what)
	}
	for _, p := range st.Pods {
		fmt.Fprintf(w, "Pod %s:\tReady=%v\n", p.Name, p.Ready)
		if len(p.Endpoint) > 0 {
			var in, out []string
			for svc, ready := range p.Endpoint {
				if ready {
					in = append(in, svc)
				} else {
					out = append(out, svc)
				}
			}
			sort.Strings(in)
			sort.Strings(out)
			var parts []string
			if len(in) > 0 {
				parts = append(parts, "a ready endpoint of Service "+strings.Join(in, ", "))
			}
			if len(out) > 0 {
				parts = append(parts, "not a ready endpoint of Service "+strings.Join(out, ", ")+" (no traffic through it)")
			}
			line := strings.Join(parts, "; ")
			fmt.Fprintf(w, "  endpoint:\t%s\n", line)
		}
		if p.Check != "" {
			fmt.Fprintf(w, "  handshake:\t%s: %s\n", p.Check, p.Detail)
		}
	}
	if st.LastOp != "" {
		fmt.Fprintf(w, "Last operation:\t%s\n", st.LastOp)
	}
	return w.Flush()
}

// StatusRow is one pgpool of `tls status -A|-l|--all`.
type StatusRow struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Status    *operation.Status `json:"status,omitempty"`
	Error     string            `json:"error,omitempty"`
}

// runFleet shows every pgpool of the fleet: a table (namespace, name,
// sslMode, auth mode, issuer, days until the server certificate expires,
// pods serving the current certificate, last operation), or with -o the
// full status of each.
func (o *StatusOptions) runFleet(ctx context.Context) error {
	var rows []StatusRow
	var problems []string
	targets := map[int]*pgpool.Target{}
	for i, r := range o.refs {
		row := StatusRow{Namespace: r.Namespace, Name: r.Name}
		t, st, err := operation.StatusOf(ctx, o.Clients, r.Namespace, r.Name, o.Verify, o.Timeout)
		if err != nil {
			row.Error = err.Error()
			problems = append(problems, err.Error())
		} else {
			targets[i] = t
			row.Status = st
			if err := o.required(t, row.Status); err != nil {
				problems = append(problems, err.Error())
			}
		}
		rows = append(rows, row)
	}
	if o.Output != "text" {
		if err := printDoc(o.Out, o.Output, rows); err != nil {
			return err
		}
	} else {
		sty := ui.NewStyles(o.Out, os.Getenv("NO_COLOR") == "" && ui.IsTerminal(o.Out))
		w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAMESPACE\tNAME\tTLS\tSSLMODE\tAUTH\tISSUER\tEXPIRES\tCURRENT\tLAST OPERATION")
		for i, r := range rows {
			if r.Status == nil {
				fmt.Fprintf(w, "%s\t%s\t?\t\t\t\t\t\t%s\n", r.Namespace, r.Name, firstLine(r.Error))
				continue
			}
			st, t := r.Status, targets[i]
			tlsOn, issuer, expires, current := "off", "", "", ""
			if st.SSL {
				tlsOn = "on"
			}
			if st.Issuer.Name != "" {
				issuer = st.Issuer.Kind + "/" + st.Issuer.Name
			}
			for _, c := range st.Certificates {
				if c.Name == pgpool.ServerCertName(t.Name) && c.Secret != nil {
					days := int(time.Until(c.Secret.NotAfter).Hours() / 24)
					expires = fmt.Sprintf("%dd", days)
					switch {
					case days < 7:
						expires = sty.Failure(expires)
					case days < 30:
						expires = sty.Warning(expires)
					}
				}
			}
			if o.Verify != runner.VerifyOff {
				ok := 0
				for _, p := range st.Pods {
					if p.Check == "ok" {
						ok++
					}
				}
				current = fmt.Sprintf("%d/%d", ok, len(st.Pods))
			}
			last := t.LastOperation()
			lastOp := ""
			if last.Operation != "" {
				lastOp = last.Operation + " " + last.Result + " " + last.Time
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Name, tlsOn, st.SSLMode, st.AuthMode, issuer, expires, current, lastOp)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if len(problems) > 0 && (o.Verify == runner.VerifyRequired || len(targets) < len(rows)) {
		return fmt.Errorf("%d of %d pgpools: %s", len(problems), len(rows), strings.Join(problems, "; "))
	}
	return nil
}
