package planner

// tls rotate: re-issue (or not), refresh the CA bundle, roll, verify. When
// the issuer's CA was renewed in place (same issuer, a new key), in the
// order that never refuses a client: first every pod trusts the renewed
// CA (its own plan: Plan.Then), then the certificates are re-issued under
// it and the pods restarted onto them, the CA before it kept as the
// previous one; a later rotate drops that once it may go (--ca-overlap).

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

func (b *builder) rotate() {
	b.issuer = b.t.State.Issuer
	renewed := b.f.RenewedCA != nil && len(tls.Subjects(b.f.CurrentCA)) > 0
	if renewed && b.intent.RestartOnly {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the issuer's CA was renewed in place (now %s): the Secrets still hold certificates the previous CA signed, and restarting loads those again; run tls rotate without --reissue=false to re-issue them", strings.Join(tls.Subjects(b.f.RenewedCA), "; ")))
	}
	if renewed && !b.intent.RestartOnly && !b.trustsRenewedCA() {
		b.trustRenewedCA()
		return
	}
	names := []string{pgpool.ServerCertName(b.t.Name), pgpool.ClientCertName(b.t.Name)}
	var users []string
	if !b.intent.RestartOnly {
		users = b.staleUserCerts()
		var reissue []string
		for _, n := range append(slices.Clone(names), users...) {
			if b.reissued(n) {
				b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("Certificate %s was re-issued by the run that did not finish (revision %d): not again", n, tls.Revision(b.t.Certificates[n])))
				continue
			}
			reissue = append(reissue, n)
			b.reissuing = b.reissuing || slices.Contains(names, n)
			desc := fmt.Sprintf("re-issue Certificate %s now (set its Issuing condition, as cmctl renew does)", n)
			if slices.Contains(users, n) {
				desc = fmt.Sprintf("re-issue Certificate %s (tls client-cert for user %s) under the issuer's CA of today; its user is told by an Event on it, and tls status", n, b.f.UserCerts[n].User)
			}
			b.alongside(plan.Step{Object: certObject(b.t, n), Description: desc, Spec: plan.TriggerSpec{}})
		}
		for i, n := range append(slices.Clone(names), users...) {
			after := 0
			if c := b.t.Certificates[n]; c != nil {
				after = tls.Revision(c)
			} else {
				after = b.f.UserCerts[n].Revision
			}
			if !slices.Contains(reissue, n) {
				after-- // Ready is enough
			}
			b.waitCert(n, after, i > 0)
		}
	}
	c := b.previousCAs()
	if renewed && !b.intent.RestartOnly {
		// The CA that signed everything until now stays trusted, so client
		// certificates it signed keep logging in until they are re-issued.
		rec := b.previousRecord(b.f.CurrentCA)
		if !inPEMAll(c.previous, b.f.CurrentCA) {
			c.previous = tls.JoinCAs(c.previous, b.f.CurrentCA)
			c.records = append(c.records, rec...)
		}
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the issuer's CA was renewed in place (now %s): the certificates are re-issued by it (stage 2 of 3), and the CA that signed them until now (%s) stays in the CA bundle as the previous issuer's CA, so client certificates it signed keep logging in; it may go %s, and a tls rotate after that drops it (stage 3)",
			strings.Join(tls.Subjects(b.f.RenewedCA), "; "), strings.Join(tls.Subjects(b.f.CurrentCA), "; "), rec[0].MayGo()))
	}
	b.writeBundle(c)
	changed := b.upgradeVolume()
	b.roll(changed)
	b.verify("on")
	for _, n := range users {
		u := b.f.UserCerts[n]
		b.notices = append(b.notices, plan.Notice{Object: certObject(b.t, n), UID: u.UID, Reason: "ClientCertificateReissued",
			Message: fmt.Sprintf("re-issued under the issuer's renewed CA (%s): fetch the new certificate from Secret %s (kubectl pgpool tls client-cert %s --user %s --write-dir DIR writes it); the one before is accepted while the CA bundle keeps the CA that signed it",
				strings.Join(tls.Subjects(b.f.IssuerCA), "; "), u.Secret, b.t.Name, u.User)})
	}
}

// trustsRenewedCA reports whether every pod trusts the issuer's renewed
// CA already: the bundle (as the plugin wrote it) holds it, and every pod
// started after it was written.
func (b *builder) trustsRenewedCA() bool {
	bd := b.t.Bundle
	if bd == nil || b.t.BundleChanged() != "" || !inPEMAll([]byte(bd.Data[tls.NextCAKey]+bd.Data[tls.IssuerCAKey]), b.f.RenewedCA) {
		return false
	}
	return len(b.untrusting()) == 0
}

// untrusting are the live pods that started before the bundle took the
// renewed CA (all of them when it does not hold it yet).
func (b *builder) untrusting() []string {
	var since time.Time
	if b.t.Bundle != nil && b.t.BundleChanged() == "" {
		for _, c := range mustCerts(b.f.RenewedCA) {
			if r, ok := tls.RecordOf(tls.Records(b.t.Bundle.Data), tls.Fingerprint(c)); ok && r.Origin == tls.OriginNext {
				since = r.Since
			}
		}
	}
	var out []string
	for _, p := range b.t.Pods {
		if p.DeletionTimestamp == nil && (since.IsZero() || p.CreationTimestamp.Time.Before(since)) {
			out = append(out, string(p.UID))
		}
	}
	return out
}

// trustRenewedCA is stage 1 of a CA renewed in place: the renewed CA joins
// the bundle as the next CA, and every pod that started before is
// restarted, while they all still serve certificates the CA before signed.
// Clients that verify pgpool with that CA still do; a client certificate
// the renewed CA signs is accepted by every pod from now on.
func (b *builder) trustRenewedCA() {
	c := b.previousCAs()
	c.next = b.f.RenewedCA
	since := b.f.Now.UTC().Truncate(time.Second)
	for _, ca := range mustCerts(b.f.RenewedCA) {
		if b.t.Bundle != nil && b.t.BundleChanged() == "" {
			if r, ok := tls.RecordOf(tls.Records(b.t.Bundle.Data), tls.Fingerprint(ca)); ok && r.Origin == tls.OriginNext {
				since = r.Since // resuming: pods started since then trust it
			}
		}
		c.records = append(c.records, tls.CARecord{SHA256: tls.Fingerprint(ca), Subject: ca.Subject.String(), Origin: tls.OriginNext, Since: since})
	}
	b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the issuer's CA was renewed in place (now %s; the certificates pgpool serves were signed by %s): stage 1 of 3 adds it to the CA bundle and restarts the pods, which go on serving the certificates they serve, so clients that verify pgpool with the CA before still do. Stage 2 re-issues the certificates under the renewed CA (clients must trust it by then: tls trust hands them both CAs now); stage 3, a tls rotate once the CA before may go (--ca-overlap), drops it",
		strings.Join(tls.Subjects(b.f.RenewedCA), "; "), strings.Join(tls.Subjects(b.f.CurrentCA), "; ")))
	b.writeBundle(c)
	changed := b.upgradeVolume()
	b.trustOnly = true
	b.roll(changed)
	b.verify("on")
	if b.intent.CATrustOnly {
		b.p.Warnings = append(b.p.Warnings, "--ca-trust-only: this run stops after stage 1; run tls rotate again to re-issue the certificates under the renewed CA (stage 2)")
		return
	}
	b.p.Then = "tls rotate plans stage 2 once every pod trusts the renewed CA: re-issue the certificates under it, and restart every pod onto them (printed, and asked, before it runs)"
}

// previousCAs are the previous CAs of the bundle that stay, with their
// record: those --keep-previous-ca keeps and those that may not go yet
// (their record, --ca-overlap). The others leave, said in a warning.
func (b *builder) previousCAs() cas {
	var c cas
	bd := b.t.Bundle
	if bd == nil || len(tls.Subjects([]byte(bd.Data[tls.PreviousCAKey]))) == 0 {
		return c
	}
	if why := b.t.BundleChanged(); why != "" {
		if b.intent.KeepPreviousCA {
			b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("--keep-previous-ca: not kept, because %s; only a CA bundle as kubectl-pgpool wrote it says which CA is the previous issuer's", why))
		}
		return c
	}
	recs := tls.Records(bd.Data)
	var going []string
	for _, ca := range mustCerts([]byte(bd.Data[tls.PreviousCAKey])) {
		r, recorded := tls.RecordOf(recs, tls.Fingerprint(ca))
		due, why := b.due(r, ca)
		switch {
		case b.intent.KeepPreviousCA:
		case recorded && r.Origin == tls.OriginPrevious && !due:
			b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the previous issuer's CA %s stays in the CA bundle: it may go %s%s (--keep-previous-ca keeps it after that too)", ca.Subject, r.MayGo(), why))
		default:
			going = append(going, ca.Subject.String())
			continue
		}
		c.previous = tls.JoinCAs(c.previous, pemOf(ca))
		if recorded {
			c.records = append(c.records, r)
		}
	}
	if len(going) > 0 {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the previous issuer's CA (%s) leaves the CA bundle: client certificates it signed are refused after this roll (--keep-previous-ca keeps it)", strings.Join(going, "; ")))
	}
	return c
}

// due reports whether a previous CA may go by its record, and if not,
// which client certificates it still signs.
func (b *builder) due(r tls.CARecord, ca *x509.Certificate) (bool, string) {
	now := b.f.Now
	switch {
	case !r.After.IsZero():
		return !now.Before(r.After), ""
	case !r.UntilReissued:
		return true, ""
	case !r.Expires.IsZero() && !now.Before(r.Expires):
		return true, ""
	case b.f.ClientLeaves == nil:
		return false, " (the client certificates it may sign were not read)"
	}
	var signs []string
	for n, leaf := range b.f.ClientLeaves {
		if l, err := tls.ParseFirstCert(leaf); err == nil && l.CheckSignatureFrom(ca) == nil && now.Before(l.NotAfter) {
			signs = append(signs, n)
		}
	}
	if len(signs) == 0 {
		return true, ""
	}
	slices.Sort(signs)
	return false, "; it still signs the certificate of " + strings.Join(signs, ", ")
}

// previousRecord is the record of the issuer's CA before its renewal, as
// it becomes the previous CA: since now, until --ca-overlap, or until the
// client certificates it signed are re-issued (at the latest their expiry).
func (b *builder) previousRecord(pemCA []byte) []tls.CARecord {
	var out []tls.CARecord
	for _, ca := range mustCerts(pemCA) {
		r := tls.CARecord{SHA256: tls.Fingerprint(ca), Subject: ca.Subject.String(), Origin: tls.OriginPrevious, Since: b.f.Now.UTC().Truncate(time.Second)}
		if b.intent.CAOverlap > 0 {
			r.After = r.Since.Add(b.intent.CAOverlap)
		} else {
			r.UntilReissued = true
			for _, leaf := range b.f.ClientLeaves {
				if l, err := tls.ParseFirstCert(leaf); err == nil && l.CheckSignatureFrom(ca) == nil && l.NotAfter.After(r.Expires) {
					r.Expires = l.NotAfter.UTC().Truncate(time.Second)
				}
			}
		}
		out = append(out, r)
	}
	return out
}

// staleUserCerts are the Certificates of tls client-cert whose certificate
// the issuer's CA of today did not sign, sorted.
func (b *builder) staleUserCerts() []string {
	if len(b.f.IssuerCA) == 0 {
		return nil
	}
	var out []string
	for n := range b.f.UserCerts {
		if leaf := b.f.ClientLeaves[n]; len(leaf) > 0 && !tls.SignedBy(leaf, b.f.IssuerCA) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// inPEMAll reports whether every certificate of want is in have.
func inPEMAll(have, want []byte) bool {
	certs := mustCerts(want)
	for _, c := range certs {
		if !inPEM(have, tls.Fingerprint(c)) {
			return false
		}
	}
	return len(certs) > 0
}

// mustCerts are the certificates of a PEM text (those that parse).
func mustCerts(data []byte) []*x509.Certificate {
	certs, _ := tls.ParseCerts(data)
	return certs
}

// pemOf is one certificate as PEM.
func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// PreviousCAsDue names the previous CAs of t's bundle that its record says
// may go now (f: Now and ClientLeaves): a tls rotate drops them.
func PreviousCAsDue(t *pgpool.Target, f Facts) []string {
	if t.Bundle == nil || t.BundleChanged() != "" {
		return nil
	}
	b := &builder{t: t, f: f, p: &plan.Plan{}}
	var out []string
	for _, ca := range mustCerts([]byte(t.Bundle.Data[tls.PreviousCAKey])) {
		if r, ok := tls.RecordOf(tls.Records(t.Bundle.Data), tls.Fingerprint(ca)); ok && r.Origin == tls.OriginPrevious {
			if due, _ := b.due(r, ca); due {
				out = append(out, ca.Subject.String())
			}
		}
	}
	return out
}
