package planner

// The CA bundle ConfigMap pgpool reads as ssl_ca_cert.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// BackendCAs are the backends' CAs pgpool will trust: those of
// --backend-ca, else those the CA bundle holds today (when it is as the
// plugin wrote it: bundleTrust refuses otherwise).
func BackendCAs(t *pgpool.Target, f Facts) []byte {
	if f.BackendCA == nil && t.Bundle != nil && t.BundleChanged() == "" {
		return []byte(t.Bundle.Data[tls.BackendCAKey])
	}
	return f.BackendCA
}

// bundleTrust refuses to carry the backends' CAs over from a CA bundle that
// is not as the plugin wrote it (someone who may write ConfigMaps could
// have put a CA there, which pgpool would trust for client certificates):
// --backend-ca must say where they come from.
func bundleTrust(t *pgpool.Target, intent Intent, f Facts) error {
	switch intent.Operation {
	case Add, Rotate, ChangeIssuer:
	default:
		return nil
	}
	why := t.BundleChanged()
	if why == "" || f.BackendCA != nil || len(tls.Subjects([]byte(t.Bundle.Data[tls.BackendCAKey]))) == 0 {
		return nil
	}
	return &StateError{fmt.Sprintf("the CA bundle of %s holds backend CAs (%s), but %s: they are not carried over as found, and nothing was changed. Pass --backend-ca with where they come from (secret/NAME, configmap/NAME or a file)", t, strings.Join(tls.Subjects([]byte(t.Bundle.Data[tls.BackendCAKey])), "; "), why)}
}

// cas are the CAs the bundle holds beside the issuer's and the backends':
// next (the issuer's renewed CA, before it signs what pgpool serves),
// previous (a CA clients and backends may still use), and the record of
// when each came and may go.
type cas struct {
	next, previous []byte
	records        []tls.CARecord
}

// writeBundle writes the CA bundle pgpool reads as ssl_ca_cert: the
// issuer's CA (ca.crt of the server Secret, read when the step runs), then
// the next and previous CAs, then the backends'.
func (b *builder) writeBundle(c cas) {
	previous := c.previous
	backend := BackendCAs(b.t, b.f)
	desc := fmt.Sprintf("write the CA bundle pgpool reads as ssl_ca_cert (for client certificates and its backends): first the issuer's CA (ca.crt of Secret %s)", pgpool.ServerCertName(b.t.Name))
	var diff strings.Builder
	if s := tls.Subjects(c.next); len(s) > 0 {
		desc += ", then the issuer's renewed CA"
		for _, x := range s {
			fmt.Fprintf(&diff, "+ the issuer's renewed CA (next): %s\n", x)
		}
	}
	if s := tls.Subjects(previous); len(s) > 0 {
		desc += ", then the previous issuer's CA"
		for _, x := range s {
			fmt.Fprintf(&diff, "  previous issuer's CA: %s\n", x)
		}
	}
	if s := tls.Subjects(backend); len(s) > 0 {
		auth := b.authMode
		if b.intent.Operation != Add {
			auth = b.t.State.AuthMode
		}
		if auth == "cert" {
			b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("pgpool reads one CA file both to verify its backends and to verify client certificates: with cert auth, a client certificate signed by the backend's CA (%s) is accepted too, as the user its CN names; use a backend CA that signs nothing for other clients", strings.Join(s, "; ")))
		}
		desc += ", then the backends' CAs"
		if len(b.intent.BackendCASources) > 0 {
			desc += " from " + strings.Join(b.intent.BackendCASources, ", ")
		} else if b.f.BackendCAFrom != "" {
			desc += " from " + b.f.BackendCAFrom
		}
		for _, x := range s {
			fmt.Fprintf(&diff, "  backend CA: %s\n", x)
		}
	}
	var kept []string
	if b.t.Bundle != nil {
		// The bundle is written from its sources: a CA someone else added
		// to it is dropped, and said, unless --keep-ca names it; one kept
		// so before stays.
		for _, ca := range tls.AuditBundle(b.t.Bundle.Data, b.f.CurrentCA, b.t.BundleChanged()) {
			if inPEM(backend, ca.SHA256) || inPEM(previous, ca.SHA256) || inPEM(c.next, ca.SHA256) {
				continue
			}
			switch {
			case ca.Origin == tls.OriginKept:
				kept = append(kept, ca.SHA256)
				fmt.Fprintf(&diff, "  kept CA (--keep-ca before): %s\n", ca.Subject)
			case ca.Origin == tls.OriginUnknown && keeps(b.intent.KeepCAs, ca.SHA256):
				kept = append(kept, ca.SHA256)
				b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("--keep-ca: the CA of unknown origin %s (sha256 %s; %s) stays in the CA bundle: pgpool accepts client certificates it signs, as the user their CN names", ca.Subject, ca.SHA256, ca.Why))
				fmt.Fprintf(&diff, "+ kept CA (--keep-ca): %s\n", ca.Subject)
			case ca.Origin == tls.OriginUnknown:
				b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the CA bundle holds a CA of unknown origin, %s (sha256 %s; %s): it could sign client certificates pgpool accepts, and it is dropped (--keep-ca %.16s keeps it)", ca.Subject, ca.SHA256, ca.Why, ca.SHA256))
				fmt.Fprintf(&diff, "- unknown CA dropped: %s (sha256 %.16s...)\n", ca.Subject, ca.SHA256)
			}
		}
	}
	var keptPEM []byte
	if len(kept) > 0 {
		keptPEM = tls.PEMOf([]byte(b.t.Bundle.Data[tls.BundleKey]), kept)
	}
	b.add1(plan.Step{
		Object:      plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: b.t.Namespace, Name: tls.CABundleName(b.t.Name)},
		Description: desc,
		Diff:        diff.String(),
		Spec:        plan.ApplyBundleSpec{IssuerCAFrom: pgpool.ServerCertName(b.t.Name), NextCA: c.next, PreviousCA: previous, BackendCA: backend, KeptCA: keptPEM, Records: c.records},
	})
	b.distributeTrust(c)
}

// distributeTrust keeps the clients' copies of the CA (tls trust) current,
// right after the bundle and before any pod restarts: a client that reads
// its copy trusts the new CA before a pod serves a certificate it signed,
// and the previous CA stays while the bundle keeps it. A plan that changes
// nothing clients must trust (a restart, or a scheduled run of
// --only-stale) has no such step: the copies hold that already, and the
// scheduled job, whose Role is its own namespace's, need not write into
// the clients' namespaces.
func (b *builder) distributeTrust(c cas) {
	if b.t.Bundle != nil && b.t.BundleChanged() == "" && b.intent.RestartOnly && b.f.RenewedCA == nil && len(b.f.CurrentCA) > 0 &&
		bytes.Equal(tls.ClientTrust(b.t.Bundle.Data), tls.JoinCAs(b.f.CurrentCA, c.next, c.previous)) {
		return
	}
	tr, err := b.t.Trust()
	if err != nil {
		b.p.Warnings = append(b.p.Warnings, err.Error()+"; the clients' copies of the CA are not updated")
		return
	}
	if tr == nil {
		return
	}
	obj := plan.Object{APIVersion: "v1", Kind: "ConfigMap", Name: tr.Name}
	if tr.Bundle {
		obj = plan.Object{APIVersion: tls.Bundles.GroupVersion().String(), Kind: "Bundle", Name: tr.Name}
	}
	b.add1(plan.Step{Object: obj,
		Description: "keep the clients' copy of the CA current (tls trust): " + tr.Where() + " gets the issuer's CA, then the next and the previous one if any, from the bundle just written",
		Spec:        plan.DistributeTrustSpec{Trust: *tr}})
}

// inPEM reports whether a PEM text holds the certificate with this SHA-256.
func inPEM(data []byte, sum string) bool {
	certs, _ := tls.ParseCerts(data)
	for _, c := range certs {
		if s := sha256.Sum256(c.Raw); hex.EncodeToString(s[:]) == sum {
			return true
		}
	}
	return false
}

// keeps reports whether --keep-ca names the CA with this SHA-256.
func keeps(prefixes []string, sum string) bool {
	for _, p := range prefixes {
		if p != "" && strings.HasPrefix(sum, strings.ToLower(p)) {
			return true
		}
	}
	return false
}
