package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
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

// Status is what `tls status` reports.
type Status struct {
	Workload     string             `json:"workload"`
	Config       string             `json:"config"`
	SSL          bool               `json:"ssl"`
	SSLMode      string             `json:"sslMode"`
	AuthMode     string             `json:"clientAuthMode"`
	HBAEnforced  bool               `json:"poolHBAEnforced"`
	Issuer       pgpool.IssuerRef   `json:"issuer,omitempty"`
	TLSVolume    bool               `json:"tlsVolume"`
	TLSMountPath string             `json:"tlsMountPath"`
	Certificates []CertStatus       `json:"certificates"`
	Pods         []PodStatus        `json:"pods"`
	CABundle     *BundleStatus      `json:"caBundle,omitempty"`
	ClientCerts  []ClientCertStatus `json:"clientCertificates,omitempty"`
	Backends     []BackendStatus    `json:"backends,omitempty"`
	LastOp       string             `json:"lastOperation,omitempty"`
	Paths        map[string]string  `json:"pgpoolPaths,omitempty"`
}

// BundleStatus is the CA bundle pgpool reads as ssl_ca_cert, in order.
type BundleStatus struct {
	ConfigMap string   `json:"configMap"`
	Issuer    []string `json:"issuerCA"`
	Previous  []string `json:"previousCA,omitempty"`
	Backend   []string `json:"backendCA,omitempty"`
}

// CertStatus is one Certificate and what its Secret holds.
type CertStatus struct {
	Name     string        `json:"name"`
	Ready    bool          `json:"ready"`
	Revision int           `json:"revision"`
	Secret   *tls.CertInfo `json:"secret,omitempty"`
}

// ClientCertStatus is a client certificate issued for one user (tls
// client-cert).
type ClientCertStatus struct {
	User     string    `json:"user"`
	Secret   string    `json:"secret"`
	Ready    bool      `json:"ready"`
	NotAfter time.Time `json:"notAfter,omitempty"`
}

// PodStatus is one pod and, unless --verify=false, what its handshake
// showed.
type PodStatus struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
	UID   string `json:"uid"`
	// Check is "ok" (serves what the Secret holds, or no TLS when TLS is
	// off), "mismatch", "unreachable", "error" or "skipped".
	Check  string         `json:"check,omitempty"`
	Detail string         `json:"detail,omitempty"`
	Served *verify.Served `json:"served,omitempty"`
	// Endpoint maps each Service of the pgpool that has EndpointSlices to
	// whether the pod is a ready endpoint of it (takes its traffic).
	Endpoint map[string]bool `json:"endpoint,omitempty"`
}

// Complete resolves NAME or the fleet, and the clients.
func (o *StatusOptions) Complete(args []string) error { return o.complete(&o.connection, args) }

// Run prints the status.
func (o *StatusOptions) Run(ctx context.Context) error {
	if o.on() {
		return o.runFleet(ctx)
	}
	t, err := discover.Discover(ctx, o.Clients.target(), o.Namespace, o.Name)
	if err != nil {
		return err
	}
	st := o.collect(ctx, t)
	if err := o.print(t, st); err != nil {
		return err
	}
	return o.required(t, st)
}

// required is --verify=required: an error unless every pod is proven.
func (o *StatusOptions) required(t *pgpool.Target, st *Status) error {
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

// collect reads everything status shows about t.
func (o *StatusOptions) collect(ctx context.Context, t *pgpool.Target) *Status {
	pc := conf.ParsePgpoolConf(t.Config.PgpoolConf)
	st := Status{Workload: t.String(), Config: t.Config.Kind + " " + t.Config.Name, SSL: t.State.Enabled,
		SSLMode: t.State.SSLMode, AuthMode: t.State.AuthMode, HBAEnforced: t.State.HBAEnforced, Issuer: t.State.Issuer, TLSVolume: t.State.VolumePresent,
		TLSMountPath: t.TLSMountPath, LastOp: t.Annotations[pgpool.AnnotationLastOperation], Paths: map[string]string{}}
	for _, k := range []string{"ssl_cert", "ssl_key", "ssl_ca_cert"} {
		if v, ok := pc.Get(k); ok {
			st.Paths[k] = v
		}
	}
	for _, n := range []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)} {
		crt := t.Certificates[n]
		if crt == nil {
			continue
		}
		cs := CertStatus{Name: n, Ready: tls.IsReady(crt), Revision: tls.Revision(crt)}
		if sec, err := o.Clients.Core.Secrets(t.Namespace).Get(ctx, crt.Spec.SecretName, metav1.GetOptions{}); err == nil {
			cs.Secret, _ = tls.ReadSecret(sec)
		}
		st.Certificates = append(st.Certificates, cs)
	}
	sel := tls.LabelInstance + "=" + t.Name + "," + LabelUser
	if users, err := o.Clients.CertManager.Certificates(t.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel}); err == nil {
		for _, c := range users.Items {
			cs := ClientCertStatus{User: c.Labels[LabelUser], Secret: c.Spec.SecretName, Ready: tls.IsReady(&c)}
			if c.Status.NotAfter != nil {
				cs.NotAfter = c.Status.NotAfter.Time
			}
			st.ClientCerts = append(st.ClientCerts, cs)
		}
	}
	for i := range t.Pods {
		st.Pods = append(st.Pods, PodStatus{Name: t.Pods[i].Name, Ready: pgpool.PodReady(&t.Pods[i]), UID: string(t.Pods[i].UID)})
	}
	o.endpoints(ctx, t, st.Pods)
	var trust []byte
	if t.Bundle != nil {
		st.CABundle = &BundleStatus{ConfigMap: t.Bundle.Name, Issuer: tls.Subjects([]byte(t.Bundle.Data[tls.IssuerCAKey])),
			Previous: tls.Subjects([]byte(t.Bundle.Data[tls.PreviousCAKey])), Backend: tls.Subjects([]byte(t.Bundle.Data[tls.BackendCAKey]))}
		trust = []byte(t.Bundle.Data[tls.BundleKey])
	} else if sec, err := o.Clients.Core.Secrets(t.Namespace).Get(ctx, pgpool.ServerCertName(t.Name), metav1.GetOptions{}); err == nil {
		trust = sec.Data["ca.crt"]
	}
	if o.Verify != runner.VerifyOff {
		probePods(ctx, o.Clients, t, st.Pods, o.Timeout)
		st.Backends = o.checkBackends(ctx, t, tls.Pool(trust), o.Timeout)
	}
	return &st
}

// endpoints fills in, for each pod, whether it is a ready endpoint of each
// of the pgpool's Services (those without EndpointSlices are left out).
func (o *StatusOptions) endpoints(ctx context.Context, t *pgpool.Target, pods []PodStatus) {
	if o.Clients.EndpointSlices == nil || len(t.Services) == 0 {
		return
	}
	sel := fmt.Sprintf("%s in (%s)", discoveryv1.LabelServiceName, strings.Join(t.Services, ","))
	slices, err := o.Clients.EndpointSlices.EndpointSlices(t.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return // not allowed, or not served: status shows what it can
	}
	for _, es := range slices.Items {
		svc := es.Labels[discoveryv1.LabelServiceName]
		for i := range pods {
			if pods[i].Endpoint == nil {
				pods[i].Endpoint = map[string]bool{}
			}
			if _, seen := pods[i].Endpoint[svc]; !seen {
				pods[i].Endpoint[svc] = false
			}
			for _, ep := range es.Endpoints {
				if ep.TargetRef != nil && string(ep.TargetRef.UID) == pods[i].UID && ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					pods[i].Endpoint[svc] = true
				}
			}
		}
	}
}

// probePods fills in each pod's handshake result (each bounded by
// timeout). Once a pod cannot be reached at all (a kwok node has no kubelet
// to port-forward), the rest are skipped.
func probePods(ctx context.Context, c *Clients, t *pgpool.Target, pods []PodStatus, timeout time.Duration) {
	dial := verify.PortForwardDialer(c.Config, c.Core, t.Namespace, t.Port())
	want, wantErr := verify.Expectation(ctx, c.Core, t.Namespace, t.Name, t.State.Enabled)
	unreachable := ""
	for i := range pods {
		p := &pods[i]
		if unreachable != "" {
			p.Check, p.Detail = "skipped", "pod "+unreachable+" could not be reached"
			continue
		}
		s, err := (*verify.Served)(nil), wantErr
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			s, err = verify.Check(pctx, dial, p.Name, want)
			cancel()
		}
		p.Served = s
		var de *verify.DialError
		var me *verify.MismatchError
		switch {
		case err == nil && s.TLS:
			ca := "verified against its ca.crt"
			if !s.Verified {
				ca = "not verified: the Secret has no ca.crt"
			}
			p.Check, p.Detail = "ok", fmt.Sprintf("serves serial %s over %s, the Secret's certificate, %s", s.Serial, s.Version, ca)
		case err == nil:
			p.Check, p.Detail = "ok", "answers the SSLRequest with 'N' (no TLS), as configured"
		case errors.As(err, &de):
			p.Check, p.Detail = "unreachable", err.Error()
			unreachable = p.Name
		case errors.As(err, &me):
			p.Check, p.Detail = "mismatch", err.Error()
		default:
			p.Check, p.Detail = "error", err.Error()
		}
	}
}

func (o *StatusOptions) print(t *pgpool.Target, st *Status) error {
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
	Namespace string  `json:"namespace"`
	Name      string  `json:"name"`
	Status    *Status `json:"status,omitempty"`
	Error     string  `json:"error,omitempty"`
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
		t, err := discover.Discover(ctx, o.Clients.target(), r.Namespace, r.Name)
		if err != nil {
			row.Error = err.Error()
			problems = append(problems, err.Error())
		} else {
			targets[i] = t
			row.Status = o.collect(ctx, t)
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
