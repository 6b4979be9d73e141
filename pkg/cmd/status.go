package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/target"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// StatusOptions are the options of `tls status`.
type StatusOptions struct {
	OperationOptions
}

func newStatusCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &StatusOptions{OperationOptions{IOStreams: streams, ConfigFlags: flags, DryRun: "none", Apply: "IfReady", Timeout: time.Minute, Verify: "true"}}
	c := &cobra.Command{
		Use:               "status NAME",
		Short:             "Show what TLS is configured, its certificates and expiry, and the pods",
		Example:           "  kubectl pgpool tls status pgpool -n demo\n  kubectl pgpool tls status pgpool -n demo -o json",
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	c.Flags().StringVarP(&o.Output, "output", "o", "text", "text, json or yaml")
	return c
}

// Status is what `tls status` reports.
type Status struct {
	Workload     string            `json:"workload"`
	Config       string            `json:"config"`
	SSL          bool              `json:"ssl"`
	SSLMode      string            `json:"sslMode"`
	AuthMode     string            `json:"clientAuthMode"`
	Issuer       target.IssuerRef  `json:"issuer,omitempty"`
	TLSVolume    bool              `json:"tlsVolume"`
	TLSMountPath string            `json:"tlsMountPath"`
	Certificates []CertStatus      `json:"certificates"`
	Pods         []PodStatus       `json:"pods"`
	LastOp       string            `json:"lastOperation,omitempty"`
	Paths        map[string]string `json:"pgpoolPaths,omitempty"`
}

// CertStatus is one Certificate and what its Secret holds.
type CertStatus struct {
	Name     string        `json:"name"`
	Ready    bool          `json:"ready"`
	Revision int           `json:"revision"`
	Secret   *tls.CertInfo `json:"secret,omitempty"`
}

// PodStatus is one pod.
type PodStatus struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
	UID   string `json:"uid"`
}

// Run prints the status.
func (o *StatusOptions) Run(ctx context.Context) error {
	t, err := target.Discover(ctx, o.Clients.target(), o.Namespace, o.Name)
	if err != nil {
		return err
	}
	pc := conf.ParsePgpoolConf(t.Config.PgpoolConf)
	st := Status{Workload: t.String(), Config: t.Config.Kind + " " + t.Config.Name, SSL: t.State.Enabled,
		SSLMode: t.State.SSLMode, AuthMode: t.State.AuthMode, Issuer: t.State.Issuer, TLSVolume: t.State.VolumePresent,
		TLSMountPath: t.TLSMountPath, LastOp: t.Annotations[target.AnnotationLastOperation], Paths: map[string]string{}}
	for _, k := range []string{"ssl_cert", "ssl_key", "ssl_ca_cert"} {
		if v, ok := pc.Get(k); ok {
			st.Paths[k] = v
		}
	}
	for _, n := range []string{target.ServerCertName(t.Name), target.ClientCertName(t.Name)} {
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
	for i := range t.Pods {
		st.Pods = append(st.Pods, PodStatus{Name: t.Pods[i].Name, Ready: target.PodReady(&t.Pods[i]), UID: string(t.Pods[i].UID)})
	}
	switch o.Output {
	case "json":
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	case "yaml":
		b, err := yaml.Marshal(st)
		if err != nil {
			return err
		}
		_, err = o.Out.Write(b)
		return err
	}
	w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Workload:\t%s (%d replicas, %s)\n", st.Workload, t.Replicas, t.UpdateStrategy)
	fmt.Fprintf(w, "Config:\t%s (mounted at %s)\n", st.Config, t.Config.MountPath)
	fmt.Fprintf(w, "TLS:\t%s\n", map[bool]string{true: "on", false: "off"}[st.SSL])
	fmt.Fprintf(w, "sslMode / clientAuthMode:\t%s / %s\n", st.SSLMode, st.AuthMode)
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
	for _, p := range st.Pods {
		fmt.Fprintf(w, "Pod %s:\tReady=%v\n", p.Name, p.Ready)
	}
	if st.LastOp != "" {
		fmt.Fprintf(w, "Last operation:\t%s\n", st.LastOp)
	}
	return w.Flush()
}
