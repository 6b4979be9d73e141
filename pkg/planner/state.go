package planner

// What the operations find today, on which the plans depend: whether an
// operation fits the state, is already done, or finishes one that stopped.

import (
	"encoding/json"
	"fmt"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

func fits(t *pgpool.Target, r Intent) error {
	name := t.Namespace + "/" + t.Name
	if err := ownerFits(t, r); err != nil {
		return err
	}
	if r.Operation != Rollback {
		if err := conf.ParsePgpoolConf(t.Config.PgpoolConf).Check("ssl", "enable_pool_hba"); err != nil {
			return fmt.Errorf("%s %s/%s: %w", t.Config.Kind, t.Namespace, t.Config.Name, err)
		}
	}
	if t.Backup != nil && (r.Operation == Rollback || (!t.Backup.Done && t.Backup.Operation == r.Operation)) {
		if p := t.BackupProblem(); p != "" {
			return &StateError{fmt.Sprintf("%s. Nothing was changed. If %s is as you want it now, delete the Secret (`kubectl delete secret -n %s %s`) and run the command again: the next operation takes a new backup", p, t, t.Namespace, pgpool.BackupName(t.Name))}
		}
	}
	if r.Operation == Rollback {
		if t.Backup == nil {
			return &StateError{fmt.Sprintf("pgpool %s has no backup to roll back to (no Secret %s/%s of kubectl-pgpool): every operation keeps one from before its first write, and a rollback uses it up; there is nothing to undo", name, t.Namespace, pgpool.BackupName(t.Name))}
		}
		if c := changedSince(t); len(c) > 0 && !r.Force {
			return &StateError{fmt.Sprintf("%s changed since the tls %s of %s finished; a rollback would discard those changes, so it refuses (nothing was changed): undo them first, or pass --force to discard them", strings.Join(c, " and "), t.Backup.Operation, t.Backup.Taken)}
		}
		if d := editedSince(t); d != "" && !r.Force {
			return &StateError{fmt.Sprintf("%s %s/%s changed since the tls %s of %s wrote it; a rollback would discard these edits, so it refuses (nothing was changed): undo them first, or pass --force to discard them:\n%s", t.Config.Kind, t.Namespace, t.Config.Name, t.Backup.Operation, t.Backup.Taken, d)}
		}
		return nil
	}
	if t.BackupForeign {
		return &tls.NotOursError{Kind: "Secret", Namespace: t.Namespace, Name: pgpool.BackupName(t.Name)}
	}
	switch r.Operation {
	case Add:
		if t.State.Enabled && !Interrupted(t, Add) && addDone(t, r) {
			return &NothingToDoError{fmt.Sprintf("pgpool %s already has TLS as asked (%s %q, sslMode %s, clientAuthMode %s, its Certificates as this add would apply them): nothing to do", name, r.Issuer.Kind, r.Issuer.Name, t.State.SSLMode, t.State.AuthMode)}
		}
		if t.Config.Generated && t.Config.ResourceVersion != "" && !tls.Ours(&metav1.ObjectMeta{Labels: t.Config.Labels}, t.Name) {
			return &tls.NotOursError{Kind: "ConfigMap", Namespace: t.Namespace, Name: t.Config.Name}
		}
		if t.State.Enabled && !Interrupted(t, Add) && t.ForeignTLS == nil {
			return &StateError{fmt.Sprintf("pgpool %s already has TLS (ssl = on in %s %s): use `kubectl pgpool tls rotate %s` to re-issue its certificates, `kubectl pgpool tls change-issuer %s --issuer NAME` to move it to another issuer, or `kubectl pgpool tls remove %s` first", name, t.Config.Kind, t.Config.Name, t.Name, t.Name, t.Name)}
		}
	case Remove:
		if !t.State.Enabled && !Interrupted(t, Remove) && removeDone(t, r) {
			return &NothingToDoError{fmt.Sprintf("pgpool %s has no TLS (ssl is off in %s %s, no TLS volume, no Certificate of kubectl-pgpool): nothing to do", name, t.Config.Kind, t.Config.Name)}
		}
		if !t.State.Enabled && !Interrupted(t, Remove) {
			return &StateError{fmt.Sprintf("pgpool %s has no TLS (ssl is off in %s %s): use `kubectl pgpool tls add %s --issuer NAME` first", name, t.Config.Kind, t.Config.Name, t.Name)}
		}
	default:
		if Interrupted(t, Add) {
			return &StateError{fmt.Sprintf("a tls add on pgpool %s did not finish (%s): run `kubectl pgpool tls add %s --issuer NAME` again to finish it, or `kubectl pgpool tls remove %s` to undo it", name, interruptedWhy(t, Add), t.Name, t.Name)}
		}
		if !t.State.Enabled {
			if Interrupted(t, Remove) {
				return &StateError{fmt.Sprintf("a tls remove on pgpool %s did not finish (%s): run `kubectl pgpool tls remove %s` again to finish it", name, interruptedWhy(t, Remove), t.Name)}
			}
			return &StateError{fmt.Sprintf("pgpool %s has no TLS (ssl is off in %s %s): use `kubectl pgpool tls add %s --issuer NAME` first", name, t.Config.Kind, t.Config.Name, t.Name)}
		}
	}
	if r.Operation == Add && !r.TakeOverCertificates {
		for _, n := range []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)} {
			if c := t.Certificates[n]; c != nil && !tls.Ours(c, t.Name) {
				return &StateError{fmt.Sprintf("Certificate %s/%s exists and was not created by kubectl-pgpool (no label %s=%s); tls add would take it over: pass --take-over-certificates if that is what you want, or remove it first", t.Namespace, n, tls.LabelManagedBy, tls.ManagerName)}
			}
		}
	}
	if t.Bundle != nil && !t.BundleOurs && r.Operation != Remove {
		return &tls.NotOursError{Kind: "ConfigMap", Namespace: t.Namespace, Name: t.Bundle.Name}
	}
	if r.Operation == Rotate || r.Operation == ChangeIssuer {
		for _, n := range []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)} {
			if t.Certificates[n] == nil {
				return &StateError{fmt.Sprintf("pgpool %s has TLS but no Certificate %s/%s: its TLS was not set up by kubectl-pgpool or KubeDB; run `kubectl pgpool tls remove %s` and then `kubectl pgpool tls add %s --issuer NAME`", name, t.Namespace, n, t.Name, t.Name)}
			}
		}
	}
	if r.Operation == ChangeIssuer && changeIssuerDone(t, r.Issuer) {
		return &StateError{fmt.Sprintf("pgpool %s already uses %s %q: to re-issue from it use `kubectl pgpool tls rotate %s`", name, r.Issuer.Kind, r.Issuer.Name, t.Name)}
	}
	// A run that finishes an unfinished one does not wait for Ready pods:
	// the unfinished run's roll may be what is under way.
	if !r.ApplyAlways && !pending(t, r.Operation) {
		// A pod on its way out (an evicted Deployment pod whose
		// replacement is Ready) is neither counted nor waited for.
		var notReady []string
		ready := 0
		for i := range t.Pods {
			switch {
			case t.Pods[i].DeletionTimestamp != nil:
			case pgpool.PodReady(&t.Pods[i]):
				ready++
			default:
				notReady = append(notReady, t.Pods[i].Name)
			}
		}
		if len(notReady) > 0 || int32(ready) < t.Replicas {
			return &StateError{fmt.Sprintf("pgpool %s is not ready: %d of %d pods Ready (not Ready: %s); wait for it, or pass --apply Always to change it anyway", name, ready, t.Replicas, orNone(notReady))}
		}
	}
	return nil
}

// addDone reports whether t already has what add r asks: TLS on with the
// volume mounted, the same sslMode and clientAuthMode, and both
// Certificates as add would apply them (issuer, names, subject, lifetime).
func addDone(t *pgpool.Target, r Intent) bool {
	if !t.State.VolumePresent || t.State.SSLMode != r.SSLMode || (r.AuthMode != "" && t.State.AuthMode != r.AuthMode) {
		return false
	}
	b := newBuilder(t, r, Facts{})
	p := b.params()
	for _, want := range []*cmapi.Certificate{tls.ServerCertificate(p, pgpool.ServerCertName(t.Name)), tls.ClientCertificate(p, pgpool.ClientCertName(t.Name))} {
		have := t.Certificates[want.Name]
		if have == nil || !tls.Ours(have, t.Name) || !specCovers(want.Spec, have.Spec) {
			return false
		}
	}
	return true
}

// specCovers reports whether every field set in want has the same value in
// have (fields cert-manager or others added to have do not count).
func specCovers(want, have cmapi.CertificateSpec) bool {
	var w, h map[string]any
	wj, _ := json.Marshal(want)
	hj, _ := json.Marshal(have)
	if json.Unmarshal(wj, &w) != nil || json.Unmarshal(hj, &h) != nil {
		return false
	}
	return covers(w, h)
}

func covers(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range w {
			if !covers(v, h[k]) {
				return false
			}
		}
		return true
	default:
		wj, _ := json.Marshal(want)
		hj, _ := json.Marshal(have)
		return string(wj) == string(hj)
	}
}

// removeDone reports whether t has nothing of TLS left that remove r would
// take away: no TLS volume, no CA bundle of ours, and (unless
// --keep-certificates) no Certificate of ours.
func removeDone(t *pgpool.Target, r Intent) bool {
	if t.State.VolumePresent || (t.Bundle != nil && t.BundleOurs) {
		return false
	}
	if r.KeepCertificates {
		return true
	}
	for _, n := range []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)} {
		if c := t.Certificates[n]; c != nil && tls.Ours(c, t.Name) {
			return false
		}
	}
	return true
}

// Interrupted reports whether an add or remove on t stopped part-way, so
// that running it again finishes it: the config and the pod template
// disagree (ssl on without the TLS volume, or off with it), or the
// recorded last operation of that kind failed and the config is already
// on its way.
func Interrupted(t *pgpool.Target, op string) bool {
	return interruptedWhy(t, op) != ""
}

func interruptedWhy(t *pgpool.Target, op string) string {
	last := t.LastOperation()
	switch op {
	case Add:
		if !t.State.Enabled {
			return ""
		}
		if pending(t, Add) {
			return "its run that began at " + t.Backup.Taken + " did not finish (it was killed, or stopped)"
		}
		if !t.State.VolumePresent {
			return "ssl is on in the config, but the TLS volume is not mounted"
		}
		if last.Operation == Add && last.Result != "Succeeded" {
			return "its last run ended with: " + last.Result + " " + last.Error
		}
	case Remove:
		if t.State.Enabled {
			return ""
		}
		if pending(t, Remove) {
			return "its run that began at " + t.Backup.Taken + " did not finish (it was killed, or stopped)"
		}
		if t.State.VolumePresent {
			return "ssl is off in the config, but the TLS volume is still mounted"
		}
		if last.Operation == Remove && last.Result != "Succeeded" {
			return "its last run ended with: " + last.Result + " " + last.Error
		}
	}
	return ""
}

// onIssuer reports whether Certificate n of t names issuer.
func onIssuer(t *pgpool.Target, n string, issuer pgpool.IssuerRef) bool {
	c := t.Certificates[n]
	return c != nil && c.Spec.IssuerRef.Name == issuer.Name && tls.IssuerKind(c.Spec.IssuerRef.Kind) == issuer.Kind
}

// changeIssuerDone reports whether both Certificates are on issuer and no
// change-issuer to it stopped part-way (which running it again finishes).
func changeIssuerDone(t *pgpool.Target, issuer pgpool.IssuerRef) bool {
	last := t.LastOperation()
	return onIssuer(t, pgpool.ServerCertName(t.Name), issuer) && onIssuer(t, pgpool.ClientCertName(t.Name), issuer) &&
		(last.Operation != ChangeIssuer || last.Result == "Succeeded") && !pending(t, ChangeIssuer)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "missing pods"
	}
	return strings.Join(s, ", ")
}

// resuming reports whether this run finishes one of the same operation
// that did not (its backup is still pending).
func (b *builder) resuming() bool { return pending(b.t, b.intent.Operation) }

// pending reports whether a run of op on t did not finish: its backup is
// there and not marked done.
func pending(t *pgpool.Target, op string) bool {
	return t.Backup != nil && !t.Backup.Done && t.Backup.Operation == op
}

// movedRevision is what a Certificate that the unfinished run already moved
// to the new issuer must be issued after: its revision in that run's backup
// (cert-manager re-issues a moved Certificate, and until it has, Ready may
// still describe the old issuer's certificate); 0 (Ready is enough) when
// no run is being resumed.
func (b *builder) movedRevision(n string) int {
	if !b.resuming() {
		return 0
	}
	return b.t.Backup.Revisions[n]
}

// reissued reports whether Certificate n was issued after the backup of the
// unfinished run of this operation was taken (that run re-issued it).
func (b *builder) reissued(n string) bool {
	c := b.t.Certificates[n]
	if !b.resuming() || c == nil {
		return false
	}
	r, ok := b.t.Backup.Revisions[n]
	return ok && tls.Revision(c) > r
}
