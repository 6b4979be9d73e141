package planner

// tls rotate: re-issue (or not), refresh the CA bundle, roll, verify.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

func (b *builder) rotate() {
	b.issuer = b.t.State.Issuer
	names := []string{pgpool.ServerCertName(b.t.Name), pgpool.ClientCertName(b.t.Name)}
	if !b.intent.RestartOnly {
		var reissue []string
		for _, n := range names {
			if b.reissued(n) {
				b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("Certificate %s was re-issued by the run that did not finish (revision %d): not again", n, tls.Revision(b.t.Certificates[n])))
				continue
			}
			reissue = append(reissue, n)
			b.reissuing = true
			b.alongside(plan.Step{Object: certObject(b.t, n),
				Description: fmt.Sprintf("re-issue Certificate %s now (set its Issuing condition, as cmctl renew does)", n), Spec: plan.TriggerSpec{}})
		}
		for i, n := range names {
			after := tls.Revision(b.t.Certificates[n])
			if !slices.Contains(reissue, n) {
				after-- // Ready is enough
			}
			b.waitCert(n, after, i > 0)
		}
	}
	var previous []byte
	if why := b.t.BundleChanged(); b.intent.KeepPreviousCA && why != "" {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("--keep-previous-ca: not kept, because %s; only a CA bundle as kubectl-pgpool wrote it says which CA is the previous issuer's", why))
	} else if b.intent.KeepPreviousCA && b.t.Bundle != nil {
		previous = []byte(b.t.Bundle.Data[tls.PreviousCAKey])
	} else if b.t.Bundle != nil && len(tls.Subjects([]byte(b.t.Bundle.Data[tls.PreviousCAKey]))) > 0 {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the previous issuer's CA (%s) leaves the CA bundle: client certificates it signed are refused after this roll (--keep-previous-ca keeps it)", strings.Join(tls.Subjects([]byte(b.t.Bundle.Data[tls.PreviousCAKey])), "; ")))
	}
	if b.f.RenewedCA != nil && len(tls.Subjects(b.f.CurrentCA)) > 0 {
		if b.intent.RestartOnly {
			b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the issuer's CA was renewed in place (now %s): the Secrets still hold certificates the previous CA signed, and restarting loads those again; run tls rotate without --reissue=false to re-issue them", strings.Join(tls.Subjects(b.f.RenewedCA), "; ")))
		} else if !inPEMAll(previous, b.f.CurrentCA) {
			// The CA that signed everything until now stays trusted: client
			// certificates it signed keep logging in until they are
			// re-issued, and the next rotate drops it.
			previous = tls.JoinCAs(previous, b.f.CurrentCA)
			b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the issuer's CA was renewed in place (now %s): the certificates are re-issued by it, and the CA that signed them until now (%s) stays in the CA bundle as the previous issuer's CA, so client certificates it signed keep logging in; re-issue those (tls client-cert) before the next tls rotate, which drops it (--keep-previous-ca keeps it)",
				strings.Join(tls.Subjects(b.f.RenewedCA), "; "), strings.Join(tls.Subjects(b.f.CurrentCA), "; ")))
		}
	}
	b.writeBundle(previous)
	changed := b.upgradeVolume()
	b.roll(changed)
	b.verify("on")
}

// inPEMAll reports whether every certificate of want is in have.
func inPEMAll(have, want []byte) bool {
	certs, _ := tls.ParseCerts(want)
	for _, c := range certs {
		sum := sha256.Sum256(c.Raw)
		if !inPEM(have, hex.EncodeToString(sum[:])) {
			return false
		}
	}
	return len(certs) > 0
}
