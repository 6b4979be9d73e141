package planner

// tls change-issuer: server Certificate first, a CA bundle that holds both
// CAs during the roll, then the client Certificate.

import (
	"encoding/json"
	"fmt"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// changeIssuer moves the server Certificate first, rolls the pods onto a CA
// bundle that holds the old and the new CA, and only then moves the client
// Certificate: at every moment of the roll, every pod accepts a client
// certificate from either CA, and its backends stay trusted.
func (b *builder) changeIssuer() {
	server, client := pgpool.ServerCertName(b.t.Name), pgpool.ClientCertName(b.t.Name)
	ref := map[string]any{"spec": map[string]any{"issuerRef": map[string]string{"name": b.issuer.Name, "kind": b.issuer.Kind, "group": "cert-manager.io"}}}
	patch, _ := json.Marshal(ref)
	move := func(n, why string) {
		old := b.t.Certificates[n].Spec.IssuerRef
		b.add1(plan.Step{Object: certObject(b.t, n),
			Description: fmt.Sprintf("move Certificate %s to %s %q (cert-manager re-issues it)%s", n, b.issuer.Kind, b.issuer.Name, why),
			Diff:        fmt.Sprintf("- issuerRef: %s %s\n+ issuerRef: %s %s\n", tls.IssuerKind(old.Kind), old.Name, b.issuer.Kind, b.issuer.Name),
			Spec:        plan.CertificatePatchSpec{Patch: patch}})
		b.waitCert(n, tls.Revision(b.t.Certificates[n]), false)
	}
	previous := b.f.CurrentCA
	if onIssuer(b.t, server, b.issuer) {
		// Resuming: the server Certificate moved already, so ca.crt is the
		// new CA; the old one is in the bundle the stopped run wrote.
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("resuming a tls change-issuer that did not finish: Certificate %s is already on %s %q", server, b.issuer.Kind, b.issuer.Name))
		b.waitCert(server, b.movedRevision(server), false)
		previous = nil
		if b.t.Bundle != nil && b.t.BundleChanged() == "" {
			if p := b.t.Bundle.Data[tls.PreviousCAKey]; len(tls.Subjects([]byte(p))) > 0 {
				previous = []byte(p)
			} else if ic := b.t.Bundle.Data[tls.IssuerCAKey]; ic != string(b.f.CurrentCA) {
				previous = []byte(ic)
			}
		}
		if previous == nil {
			b.p.Warnings = append(b.p.Warnings, "the previous issuer's CA is no longer known (no CA bundle holds it): client certificates it signed may be refused by the restarted pods")
		}
	} else {
		move(server, "")
	}
	b.writeBundle(cas{previous: previous})
	changed := b.upgradeVolume()
	b.roll(changed)
	if !onIssuer(b.t, client, b.issuer) {
		move(client, ", now that every pod trusts both CAs")
	} else if r := b.movedRevision(client); r > 0 {
		// Resuming after the client Certificate moved: wait for its re-issue.
		b.waitCert(client, r, false)
	}
	b.verify("on")
}
