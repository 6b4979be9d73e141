package cmd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
)

// OpsRequest is the part of KubeDB's PgpoolOpsRequest (ops.kubedb.com/v1alpha1)
// of type ReconfigureTLS that `tls apply` runs. Unknown fields are refused.
type OpsRequest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace,omitempty"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Type        string `json:"type"`
		DatabaseRef struct {
			Name string `json:"name"`
		} `json:"databaseRef"`
		TLS *struct {
			IssuerRef *struct {
				Name     string `json:"name"`
				Kind     string `json:"kind,omitempty"`
				APIGroup string `json:"apiGroup,omitempty"`
			} `json:"issuerRef,omitempty"`
			Certificates []struct {
				Alias   string `json:"alias"`
				Subject *struct {
					Organizations       []string `json:"organizations,omitempty"`
					OrganizationalUnits []string `json:"organizationalUnits,omitempty"`
				} `json:"subject,omitempty"`
				DNSNames    []string         `json:"dnsNames,omitempty"`
				IPAddresses []string         `json:"ipAddresses,omitempty"`
				Duration    *metav1.Duration `json:"duration,omitempty"`
				RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
			} `json:"certificates,omitempty"`
			SSLMode            string `json:"sslMode,omitempty"`
			ClientAuthMode     string `json:"clientAuthMode,omitempty"`
			RotateCertificates bool   `json:"rotateCertificates,omitempty"`
			Remove             bool   `json:"remove,omitempty"`
		} `json:"tls,omitempty"`
		Timeout *metav1.Duration `json:"timeout,omitempty"`
		Apply   string           `json:"apply,omitempty"`
	} `json:"spec"`
}

// ApplyOptions are the options of `tls apply`.
type ApplyOptions struct {
	OperationOptions
	Filenames []string
	// timeoutSet, applySet: the flags were given (they win over spec).
	timeoutSet, applySet bool
	requests             []opsRun
}

// opsRun is one parsed document: where it came from and what it asks.
type opsRun struct {
	source    string
	namespace string
	name      string
	in        planner.Intent
	timeout   time.Duration
	apply     string
}

func newApplyCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &ApplyOptions{OperationOptions: newOperationOptions(streams, flags)}
	c := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Run KubeDB PgpoolOpsRequests of type ReconfigureTLS as written, without the ops-manager",
		Long: `Run the PgpoolOpsRequest manifests (ops.kubedb.com/v1alpha1, type
ReconfigureTLS) in FILE ("-" reads stdin) in order, as the plugin's own
commands: spec.tls.issuerRef with certificates, sslMode and clientAuthMode
is tls add (change-issuer when the pgpool has TLS and only issuerRef is
given), rotateCertificates is tls rotate, remove is tls remove; spec.timeout
and spec.apply are --timeout and --apply (the flags win when given).
Every document is read and checked before the first one runs: another
spec.type, an unknown field or a combination KubeDB forbids changes nothing.`,
		Example: `  # The KubeDB tutorial's manifests, unchanged
  kubectl pgpool tls apply -f ppops-add-tls.yaml
  kubectl pgpool tls apply -f ppops-rotate.yaml --dry-run=client
  cat ppops-change-issuer.yaml | kubectl pgpool tls apply -f - --yes`,
		Args: cobra.NoArgs,
		PreRun: func(c *cobra.Command, _ []string) {
			o.timeoutSet, o.applySet = c.Flags().Changed("timeout"), c.Flags().Changed("apply")
		},
		RunE: runE(o),
	}
	o.addFlags(c)
	o.addOnFailureFlag(c)
	c.Flags().StringSliceVarP(&o.Filenames, "filename", "f", nil, `file with PgpoolOpsRequest manifests ("-" for stdin; repeatable)`)
	return c
}

// Complete reads and checks every document, then builds the clients.
func (o *ApplyOptions) Complete(args []string) error {
	if len(o.Filenames) == 0 {
		return UsageError{fmt.Errorf("-f FILE is required: the PgpoolOpsRequest manifests to run (\"-\" reads stdin)")}
	}
	flagNS, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return fmt.Errorf("resolve the namespace: %w", err)
	}
	explicitNS := o.ConfigFlags.Namespace != nil && *o.ConfigFlags.Namespace != ""
	for _, f := range o.Filenames {
		var data []byte
		if f == "-" {
			data, err = io.ReadAll(o.In)
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		runs, err := parseOpsRequests(f, data, flagNS, explicitNS)
		if err != nil {
			return err
		}
		o.requests = append(o.requests, runs...)
	}
	if len(o.requests) == 0 {
		return UsageError{fmt.Errorf("%s: no PgpoolOpsRequest found", strings.Join(o.Filenames, ", "))}
	}
	return o.completeClients()
}

// Run runs every request in order, stopping at the first that fails.
func (o *ApplyOptions) Run(ctx context.Context) error {
	for i, r := range o.requests {
		op := o.OperationOptions
		op.Name, op.Namespace = r.name, r.namespace
		if r.timeout > 0 && !o.timeoutSet {
			op.Timeout = r.timeout
		}
		if r.apply != "" && !o.applySet {
			op.Apply = r.apply
		}
		in, err := op.normalize(r.in, manifestNames)
		if err != nil {
			return fmt.Errorf("%s: %w", r.source, err)
		}
		if len(o.requests) > 1 && o.Output == "text" {
			what := in.Operation
			if in.IssuerOnly {
				what = "add or change-issuer"
			}
			fmt.Fprintf(o.Out, "# %s (%d of %d): tls %s %s/%s\n", r.source, i+1, len(o.requests), what, op.Namespace, op.Name)
		}
		if err := op.run(ctx, in); err != nil {
			return fmt.Errorf("%s: %w", r.source, err)
		}
	}
	return nil
}

// parseOpsRequests reads the YAML documents of one file into runs; any
// problem in any document is an error naming it.
func parseOpsRequests(file string, data []byte, flagNS string, explicitNS bool) ([]opsRun, error) {
	var runs []opsRun
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if strings.TrimSpace(strings.Trim(string(doc), "-\n")) == "" {
			continue // an empty document (a leading or doubled ---)
		}
		var or OpsRequest
		src := fmt.Sprintf("%s (document %d)", file, i)
		if err := yaml.UnmarshalStrict(doc, &or); err != nil {
			return nil, UsageError{fmt.Errorf("%s: %w", src, err)}
		}
		if or.Metadata.Name != "" {
			src = fmt.Sprintf("%s (PgpoolOpsRequest %s)", file, or.Metadata.Name)
		}
		r, err := toRun(or, flagNS, explicitNS)
		if err != nil {
			return nil, UsageError{fmt.Errorf("%s: %w; nothing was changed", src, err)}
		}
		r.source = src
		runs = append(runs, r)
	}
	return runs, nil
}

// toRun maps one PgpoolOpsRequest onto a request, refusing what KubeDB's
// API forbids or the plugin cannot do as written.
func toRun(or OpsRequest, flagNS string, explicitNS bool) (opsRun, error) {
	var r opsRun
	if or.APIVersion != "ops.kubedb.com/v1alpha1" || or.Kind != "PgpoolOpsRequest" {
		return r, fmt.Errorf("apiVersion %q kind %q: only ops.kubedb.com/v1alpha1 PgpoolOpsRequest is understood", or.APIVersion, or.Kind)
	}
	if or.Spec.Type != "ReconfigureTLS" {
		return r, fmt.Errorf("spec.type %q: only ReconfigureTLS is run by kubectl pgpool (the other types need KubeDB's ops-manager)", or.Spec.Type)
	}
	if or.Spec.DatabaseRef.Name == "" {
		return r, fmt.Errorf("spec.databaseRef.name is required")
	}
	r.name, r.namespace = or.Spec.DatabaseRef.Name, flagNS
	if ns := or.Metadata.Namespace; ns != "" {
		if explicitNS && ns != flagNS {
			return r, fmt.Errorf("metadata.namespace %q does not match the namespace %q given with -n", ns, flagNS)
		}
		r.namespace = ns
	}
	if or.Spec.Timeout != nil {
		if or.Spec.Timeout.Duration <= 0 {
			return r, fmt.Errorf("spec.timeout must be positive")
		}
		r.timeout = or.Spec.Timeout.Duration
	}
	switch or.Spec.Apply {
	case "", "IfReady", "Always":
		r.apply = or.Spec.Apply
	default:
		return r, fmt.Errorf("spec.apply %q: must be IfReady or Always", or.Spec.Apply)
	}
	tl := or.Spec.TLS
	if tl == nil {
		return r, fmt.Errorf("spec.tls is required for ReconfigureTLS")
	}
	set := 0
	for _, b := range []bool{tl.Remove, tl.RotateCertificates, tl.IssuerRef != nil} {
		if b {
			set++
		}
	}
	more := len(tl.Certificates) > 0 || tl.SSLMode != "" || tl.ClientAuthMode != ""
	switch {
	case set > 1:
		return r, fmt.Errorf("spec.tls: remove, rotateCertificates and issuerRef exclude each other (KubeDB's API allows one of them per request)")
	case (tl.Remove || tl.RotateCertificates) && more:
		return r, fmt.Errorf("spec.tls: remove and rotateCertificates take no certificates, sslMode or clientAuthMode")
	case tl.Remove:
		r.in = planner.Intent{Operation: planner.Remove}
		return r, nil
	case tl.RotateCertificates:
		r.in = planner.Intent{Operation: planner.Rotate}
		return r, nil
	case tl.IssuerRef == nil:
		return r, fmt.Errorf("spec.tls needs issuerRef (add TLS or change the issuer), rotateCertificates or remove")
	}
	ref := tl.IssuerRef
	if ref.Name == "" {
		return r, fmt.Errorf("spec.tls.issuerRef.name is required")
	}
	if ref.APIGroup != "" && ref.APIGroup != "cert-manager.io" {
		return r, fmt.Errorf("spec.tls.issuerRef.apiGroup %q: only cert-manager.io issuers are supported", ref.APIGroup)
	}
	req := planner.Intent{Operation: planner.Add, Issuer: pgpool.IssuerRef{Name: ref.Name, Kind: ref.Kind},
		SSLMode: tl.SSLMode, AuthMode: tl.ClientAuthMode, ClientUser: "postgres", IssuerOnly: !more}
	// Each certificate may have its own duration and renewBefore.
	durs, renews := map[string]time.Duration{}, map[string]time.Duration{}
	for _, c := range tl.Certificates {
		switch c.Alias {
		case "server":
			req.ExtraDNS = append(req.ExtraDNS, c.DNSNames...)
			req.ExtraIPs = append(req.ExtraIPs, c.IPAddresses...)
			if c.Subject != nil {
				return r, fmt.Errorf("spec.tls.certificates[server].subject: the server certificate's subject is the pgpool's (CN=NAME); only dnsNames, duration and renewBefore may be set")
			}
		case "client":
			if len(c.DNSNames) > 0 || len(c.IPAddresses) > 0 {
				return r, fmt.Errorf("spec.tls.certificates[client]: a client certificate has no dnsNames or ipAddresses (its CN is the user)")
			}
			if c.Subject != nil {
				req.ClientOrgs, req.ClientOUs = c.Subject.Organizations, c.Subject.OrganizationalUnits
			}
		default:
			return r, fmt.Errorf("spec.tls.certificates: alias %q: must be server or client", c.Alias)
		}
		if c.Duration != nil {
			if c.Duration.Duration <= 0 {
				return r, fmt.Errorf("spec.tls.certificates[%s].duration must be positive, not %s", c.Alias, c.Duration.Duration)
			}
			durs[c.Alias] = c.Duration.Duration
		}
		if c.RenewBefore != nil {
			if c.RenewBefore.Duration <= 0 {
				return r, fmt.Errorf("spec.tls.certificates[%s].renewBefore must be positive, not %s", c.Alias, c.RenewBefore.Duration)
			}
			renews[c.Alias] = c.RenewBefore.Duration
		}
	}
	for _, a := range []string{"server", "client"} {
		if err := planner.Shorter("spec.tls.certificates["+a+"].renewBefore", renews[a], "duration", durs[a]); err != nil {
			return r, err
		}
	}
	req.Duration, req.RenewBefore = durs["server"], renews["server"]
	req.ClientDuration, req.ClientRenewBefore = durs["client"], renews["client"]
	r.in = req
	if _, err := planner.Normalize(req, manifestNames); err != nil {
		return r, err
	}
	return r, nil
}

// manifestNames names the request's fields by a PgpoolOpsRequest's.
func manifestNames(field string) string {
	switch field {
	case "issuer":
		return "spec.tls.issuerRef.name"
	case "issuerKind":
		return "spec.tls.issuerRef.kind"
	case "remove":
		return "spec.tls.remove"
	case "serverDNSName":
		return "spec.tls.certificates[server].dnsNames"
	case "serverIP":
		return "spec.tls.certificates[server].ipAddresses"
	case "duration", "renewBefore":
		return "spec.tls.certificates[server]." + field
	case "clientDuration":
		return "spec.tls.certificates[client].duration"
	case "clientRenewBefore":
		return "spec.tls.certificates[client].renewBefore"
	case "authMode":
		return "spec.tls.clientAuthMode"
	}
	return "spec.tls." + field
}
