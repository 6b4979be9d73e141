package planner

// tls rotate: re-issue (or not), refresh the CA bundle, roll, verify.

import (
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
	b.writeBundle(previous)
	changed := b.upgradeVolume()
	b.roll(changed)
	b.verify("on")
}
