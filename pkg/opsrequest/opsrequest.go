// Package opsrequest reads KubeDB's PgpoolOpsRequest manifests of type
// ReconfigureTLS (ops.kubedb.com/v1alpha1) into the plugin's requests:
// what `tls apply` runs. It refuses what KubeDB's API forbids or the plugin
// cannot run as written, naming the document and the field. No I/O.
package opsrequest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
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

// Run is one parsed document: where it came from and what it asks.
type Run struct {
	// Source names the document (file and PgpoolOpsRequest).
	Source string
	// Namespace and Name are the pgpool's (spec.databaseRef).
	Namespace, Name string
	Intent          planner.Intent
	// Timeout and Apply are spec.timeout and spec.apply (0 and "" when
	// not set).
	Timeout time.Duration
	Apply   string
}

// Parse reads the YAML documents of one file into runs; any
// problem in any document is an error naming it.
func Parse(file string, data []byte, flagNS string, explicitNS bool) ([]Run, error) {
	var runs []Run
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
			return nil, &InvalidError{fmt.Errorf("%s: %w", src, err)}
		}
		if or.Metadata.Name != "" {
			src = fmt.Sprintf("%s (PgpoolOpsRequest %s)", file, or.Metadata.Name)
		}
		r, err := toRun(or, flagNS, explicitNS)
		if err != nil {
			return nil, &InvalidError{fmt.Errorf("%s: %w; nothing was changed", src, err)}
		}
		r.Source = src
		runs = append(runs, r)
	}
	return runs, nil
}

// toRun maps one PgpoolOpsRequest onto a request, refusing what KubeDB's
// API forbids or the plugin cannot do as written.
func toRun(or OpsRequest, flagNS string, explicitNS bool) (Run, error) {
	var r Run
	if or.APIVersion != "ops.kubedb.com/v1alpha1" || or.Kind != "PgpoolOpsRequest" {
		return r, fmt.Errorf("apiVersion %q kind %q: only ops.kubedb.com/v1alpha1 PgpoolOpsRequest is understood", or.APIVersion, or.Kind)
	}
	if or.Spec.Type != "ReconfigureTLS" {
		return r, fmt.Errorf("spec.type %q: only ReconfigureTLS is run by kubectl pgpool (the other types need KubeDB's ops-manager)", or.Spec.Type)
	}
	if or.Spec.DatabaseRef.Name == "" {
		return r, fmt.Errorf("spec.databaseRef.name is required")
	}
	r.Name, r.Namespace = or.Spec.DatabaseRef.Name, flagNS
	if ns := or.Metadata.Namespace; ns != "" {
		if explicitNS && ns != flagNS {
			return r, fmt.Errorf("metadata.namespace %q does not match the namespace %q given with -n", ns, flagNS)
		}
		r.Namespace = ns
	}
	if or.Spec.Timeout != nil {
		if or.Spec.Timeout.Duration <= 0 {
			return r, fmt.Errorf("spec.timeout must be positive")
		}
		r.Timeout = or.Spec.Timeout.Duration
	}
	switch or.Spec.Apply {
	case "", "IfReady", "Always":
		r.Apply = or.Spec.Apply
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
		r.Intent = planner.Intent{Operation: planner.Remove}
		return r, nil
	case tl.RotateCertificates:
		r.Intent = planner.Intent{Operation: planner.Rotate}
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
	r.Intent = req
	if _, err := planner.Normalize(req, Names); err != nil {
		return r, err
	}
	return r, nil
}

// Names names the request's fields by a PgpoolOpsRequest's.
func Names(field string) string {
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

// InvalidError is a document that cannot run as written.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }
