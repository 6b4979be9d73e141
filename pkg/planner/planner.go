// Package planner builds the Plan of each TLS operation (add, rotate,
// change-issuer, remove) from a discovered target and the user's request.
// Building is pure: it reads the target snapshot and writes nothing; the
// same Plan is then printed, dry-run or executed.
package planner

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// Operations.
const (
	Add          = "add"
	Rotate       = "rotate"
	ChangeIssuer = "change-issuer"
	Remove       = "remove"
	Rollback     = "rollback"
)

// Request is what the user asked for.
type Request struct {
	Operation   string
	Issuer      pgpool.IssuerRef
	SSLMode     string
	AuthMode    string
	ClientUser  string
	ClientOrgs  []string
	ClientOUs   []string
	ExtraDNS    []string
	ExtraIPs    []string
	Duration    time.Duration
	RenewBefore time.Duration
	// Duration and RenewBefore are the server certificate's,
	// ClientDuration and ClientRenewBefore the client certificate's (0:
	// cert-manager's defaults).
	ClientDuration    time.Duration
	ClientRenewBefore time.Duration
	KeepCertificates  bool
	// TakeOverCertificates lets add apply over Certificates of that name
	// that another tool created (--take-over-certificates).
	TakeOverCertificates bool
	// RestartOnly: rotate without re-issuing (--reissue=false): restart the
	// pods so that pgpool loads the certificates the Secrets hold now (after
	// cert-manager renewed them by itself).
	RestartOnly bool
	// ApplyAlways: --apply Always (do not require every pod Ready first).
	ApplyAlways bool
	// BackendCA is the PEM of the CAs that pgpool must trust for its
	// backends (--backend-ca), nil to keep what the CA bundle holds.
	BackendCA []byte
	// BackendCASources name where BackendCA came from, for the plan.
	BackendCASources []string
	// CurrentCA is ca.crt of the server Secret today: the previous CA after
	// change-issuer.
	CurrentCA []byte
	// KeepPreviousCA: rotate keeps the previous issuer's CA in the bundle.
	KeepPreviousCA bool
	// Login says how the verify step logs in through each pod: "cert" (the
	// client certificate), "password" (--verify-login) or "" (not at all).
	Login string
	// Holder identifies who holds the lock (user, host, pid).
	Holder string
	// LeftoverTLS says what add does with ssl_ca_cert_dir and ssl_crl_file
	// settings it finds: "keep", "comment-out", or "" (refuse them with
	// cert auth, warn otherwise).
	LeftoverTLS string
	// Force: rollback discards edits made to the config since the
	// operation it undoes (--force).
	Force bool
	// ForceUnlock takes the lock even from a run that still holds it.
	ForceUnlock bool
	// Now is when the plan is made (the backup's time).
	Now time.Time
	// OnlyStale: rotate --reissue=false --only-stale (the cmd fills Current).
	OnlyStale bool
	// Current are the UIDs of pods proven (by handshake) to serve what the
	// Secret holds: rotate --only-stale restarts only the others.
	Current map[string]bool
}

// StateError is returned when the operation does not fit today's state.
type StateError struct{ Msg string }

func (e *StateError) Error() string { return e.Msg }

// NothingToDoError is returned when the operation's goal is already
// reached (a run that was killed after it got there, run again): the
// command succeeds without writing anything.
type NothingToDoError struct{ Msg string }

func (e *NothingToDoError) Error() string { return e.Msg }

// Build returns the plan for r on t, or an error that says why the
// operation does not fit (and which command does).
func Build(t *pgpool.Target, r Request) (*plan.Plan, error) {
	if err := fits(t, r); err != nil {
		return nil, err
	}
	b := &builder{t: t, r: r, p: &plan.Plan{Operation: r.Operation, Target: workloadObject(t)}}
	b.p.Warnings = append(b.p.Warnings, conf.ParsePgpoolConf(t.Config.PgpoolConf).CaseIgnored(pgpoolKeys...)...)
	if why := interruptedWhy(t, r.Operation); why != "" {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("resuming a tls %s that did not finish (%s): the plan starts from what the cluster holds now; steps already done change nothing", r.Operation, why))
	}
	b.lock()
	if r.Operation != Rollback {
		if err := b.backup(); err != nil {
			return nil, err
		}
	}
	switch r.Operation {
	case Add:
		if err := b.add(); err != nil {
			return nil, err
		}
	case Rotate:
		b.rotate()
	case ChangeIssuer:
		b.changeIssuer()
	case Remove:
		if err := b.remove(); err != nil {
			return nil, err
		}
	case Rollback:
		b.rollback()
	default:
		return nil, fmt.Errorf("unknown operation %q", r.Operation)
	}
	if b.login() == "" && b.r.Operation != Rollback {
		b.p.Warnings = append(b.p.Warnings, "no login proves that clients get through pgpool to its backend after the change (only the TLS handshake is checked): pass --verify-login SECRET, a Secret with the keys username and password")
	}
	b.record()
	if err := b.finishBackup(); err != nil {
		return nil, err
	}
	return b.p, nil
}

// pgpoolKeys are the pgpool.conf parameters the plugin reads or writes.
var pgpoolKeys = []string{"ssl", "ssl_cert", "ssl_key", "ssl_ca_cert", "enable_pool_hba", "ssl_ca_cert_dir", "ssl_crl_file"}

func fits(t *pgpool.Target, r Request) error {
	name := t.Namespace + "/" + t.Name
	if r.Operation != Rollback {
		if err := conf.ParsePgpoolConf(t.Config.PgpoolConf).Check("ssl", "enable_pool_hba"); err != nil {
			return fmt.Errorf("%s %s/%s: %w", t.Config.Kind, t.Namespace, t.Config.Name, err)
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
			return &NothingToDoError{fmt.Sprintf("pgpool %s already has TLS as asked (%s %q, sslMode %s, clientAuthMode %s, its Certificates as this add would apply them): nothing to do", name, tls.IssuerKind(r.Issuer.Kind), r.Issuer.Name, t.State.SSLMode, t.State.AuthMode)}
		}
		if t.State.Enabled && !Interrupted(t, Add) {
			return &StateError{fmt.Sprintf("pgpool %s already has TLS (ssl = on in %s %s): use `kubectl pgpool tls rotate %s` to re-issue its certificates, `kubectl pgpool tls change-issuer %s --issuer NAME` to move it to another issuer, or `kubectl pgpool tls remove %s` first", name, t.Config.Kind, t.Config.Name, t.Name, t.Name, t.Name)}
		}
		if err := conf.ValidateModes(r.SSLMode, r.AuthMode); err != nil {
			return err
		}
		if r.SSLMode == "disable" {
			return fmt.Errorf("--ssl-mode disable turns TLS off: use `kubectl pgpool tls remove %s` for that", t.Name)
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
		return &StateError{fmt.Sprintf("pgpool %s already uses %s %q: to re-issue from it use `kubectl pgpool tls rotate %s`", name, tls.IssuerKind(r.Issuer.Kind), r.Issuer.Name, t.Name)}
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
func addDone(t *pgpool.Target, r Request) bool {
	if !t.State.VolumePresent || t.State.SSLMode != r.SSLMode || (r.AuthMode != "" && t.State.AuthMode != r.AuthMode) {
		return false
	}
	b := &builder{t: t, r: r}
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
func removeDone(t *pgpool.Target, r Request) bool {
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
	return c != nil && c.Spec.IssuerRef.Name == issuer.Name && tls.IssuerKind(c.Spec.IssuerRef.Kind) == tls.IssuerKind(issuer.Kind)
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

type builder struct {
	t *pgpool.Target
	r Request
	p *plan.Plan
	// reissuing: the plan re-issues a Certificate, so every pod must load
	// it (none is current).
	reissuing bool
	// bk is the backup the plan takes, at step bkStep (its Secret is
	// rendered when the plan is complete).
	bk     *pgpool.Backup
	bkStep int
}

// add1 appends a step; its kind is its spec's.
func (b *builder) add1(s plan.Step) {
	s.Kind = s.Spec.StepKind()
	b.p.Steps = append(b.p.Steps, s)
}

// alongside appends a step that runs at the same time as the step before
// it when that does the same to an object of the same kind (the server and
// the client Certificate are independent: applied, re-issued, waited for
// and deleted together).
func (b *builder) alongside(s plan.Step) {
	n := len(b.p.Steps)
	b.add1(s)
	if prev, cur := b.p.Steps[max(n-1, 0)], b.p.Steps[n]; n > 0 && prev.Kind == cur.Kind && prev.Object.Kind == cur.Object.Kind && !prev.Always {
		b.p.Steps[n].Concurrent = true
	}
}

func workloadObject(t *pgpool.Target) plan.Object {
	return plan.Object{APIVersion: t.APIVersion, Kind: t.Kind, Namespace: t.Namespace, Name: t.Name}
}

func certObject(t *pgpool.Target, name string) plan.Object {
	return plan.Object{APIVersion: "cert-manager.io/v1", Kind: "Certificate", Namespace: t.Namespace, Name: name}
}

func (b *builder) lock() {
	b.add1(plan.Step{
		Object:      plan.Object{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: b.t.Namespace, Name: pgpool.LeaseName(b.t.Name)},
		Description: fmt.Sprintf("take the kubectl-pgpool lock on %s (no other operation may run until it is released; renewed while this runs; the next run takes it over %.0fs after a run dies)", b.t, pgpool.LockDuration.Seconds()),
		Spec:        plan.LockSpec{Holder: b.r.Holder, Operation: b.r.Operation, Force: b.r.ForceUnlock},
	})
}

func (b *builder) params() tls.Params {
	var pods []string
	if b.t.Layout.StablePodNames() {
		for i := int32(0); i < b.t.Replicas; i++ {
			pods = append(pods, b.t.Name+"-"+strconv.Itoa(int(i)))
		}
	}
	return tls.Params{
		Namespace: b.t.Namespace, Name: b.t.Name,
		Issuer:   cmmeta.IssuerReference{Name: b.r.Issuer.Name, Kind: tls.IssuerKind(b.r.Issuer.Kind), Group: "cert-manager.io"},
		Services: b.t.Services, Headless: b.t.Headless, PodNames: pods, ExtraDNS: b.r.ExtraDNS, ExtraIPs: b.r.ExtraIPs,
		ClientUser: b.r.ClientUser, ClientOrgs: b.r.ClientOrgs, ClientOUs: b.r.ClientOUs,
		Duration: b.r.Duration, RenewBefore: b.r.RenewBefore, ClientDuration: b.r.ClientDuration, ClientRenewBefore: b.r.ClientRenewBefore,
		ServerSecret: pgpool.ServerCertName(b.t.Name), ClientSecret: pgpool.ClientCertName(b.t.Name),
	}
}

func (b *builder) add() error {
	p := b.params()
	server := tls.ServerCertificate(p, pgpool.ServerCertName(b.t.Name))
	client := tls.ClientCertificate(p, pgpool.ClientCertName(b.t.Name))
	if err := tls.Validate(server, "the pgpool's name"); err != nil {
		return err
	}
	if err := tls.Validate(client, "the client user, --client-user"); err != nil {
		return err
	}
	for _, c := range []struct {
		what string
		obj  any
		name string
		desc string
	}{
		{"server", server, server.Name, fmt.Sprintf("server certificate from %s %q, CN=%s, %d DNS names + 127.0.0.1, secret %s", p.Issuer.Kind, p.Issuer.Name, server.Spec.CommonName, len(server.Spec.DNSNames), server.Spec.SecretName)},
		{"client", client, client.Name, fmt.Sprintf("client certificate from %s %q, CN=%s%s, secret %s", p.Issuer.Kind, p.Issuer.Name, client.Spec.CommonName, subjectSuffix(b.r), client.Spec.SecretName)},
	} {
		m, err := json.Marshal(c.obj)
		if err != nil {
			return err
		}
		b.alongside(plan.Step{Object: certObject(b.t, c.name), Description: c.desc, Spec: plan.ApplyCertificateSpec{Manifest: m}})
	}
	for i, n := range []string{server.Name, client.Name} {
		after := 0
		if old := b.t.Certificates[n]; old != nil && tls.IsReady(old) && sameIssuer(old.Spec.IssuerRef, p.Issuer) {
			after = tls.Revision(old) - 1 // kept from an earlier remove: Ready is enough
		}
		b.waitCert(n, after, i > 0)
	}
	b.writeBundle(nil)
	res, err := conf.AddTLS(conf.Files{PgpoolConf: b.t.Config.PgpoolConf, PoolHBA: b.t.Config.PoolHBA},
		conf.AddOptions{Paths: b.t.Paths(), SSLMode: b.r.SSLMode, AuthMode: b.r.AuthMode, LeftoverTLS: b.r.LeftoverTLS})
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w; nothing was changed", b.t.Config.Kind, b.t.Namespace, b.t.Config.Name, err)
	}
	edit := res.HBA
	b.p.Warnings = append(b.p.Warnings, res.Notes...)
	if b.r.AuthMode == "" {
		b.r.AuthMode = conf.GuessAuthMode(edit.Text)
	}
	summary := fmt.Sprintf("ssl = on with the certificate at %s; pool_hba.conf: %d remote rules changed for sslMode %s, clientAuthMode %s (every other line kept)", pgpool.PgpoolTLSDir, len(edit.Changed), b.r.SSLMode, b.r.AuthMode)
	for _, a := range edit.Added {
		b.p.Warnings = append(b.p.Warnings, "pool_hba.conf: a rule is added "+a)
	}
	if res.Enforced {
		summary += "; enable_pool_hba = on, so that pgpool enforces pool_hba.conf"
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("enable_pool_hba was off: pgpool did not read pool_hba.conf, so any client got in with or without TLS; the plan turns it on so that sslMode %s%s is enforced. From now on pgpool authenticates clients itself: md5 and scram users need a pool_passwd entry", b.r.SSLMode, map[bool]string{true: " and cert", false: ""}[b.r.AuthMode == "cert"]))
	}
	b.p.Warnings = append(b.p.Warnings, edit.Notes...)
	if edit.AddedDefault {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("pool_hba.conf has no rule for remote clients: the plan adds one block for all databases and users from any address with %s over TLS (remove restores the file)", b.r.AuthMode))
	}
	if edit.NoRemote {
		b.p.Warnings = append(b.p.Warnings, "pool_hba.conf has no rule that admits remote clients, so only clients on the pod itself get in, before and after this change; none is added")
	}
	b.patchConfig(res.PgpoolConf, res.PoolHBA, summary)
	if n := len(b.p.Steps); n > 1 && b.p.Steps[n-1].Kind == plan.Patch && b.p.Steps[n-2].Object.Kind == "ConfigMap" && b.p.Steps[n-2].Object.Name == tls.CABundleName(b.t.Name) {
		// The config and the CA bundle are independent (no pod reads
		// either before the TLS volume is mounted): written together.
		b.p.Steps[n-1].Concurrent = true
	}
	if !b.t.State.VolumePresent {
		b.addVolume()
	}
	if lines := conf.LoopbackTrust(b.t.Config.PoolHBA); len(lines) > 0 {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("pool_hba.conf trusts loopback addresses (%s): connections through `kubectl port-forward` arrive from 127.0.0.1 and skip TLS and %s auth (so the plugin's own login check, which comes that way too, proves the path to the backend but not client authentication); remove those lines if that is not what you want", strings.Join(lines, "; "), b.r.AuthMode))
	}
	if b.r.AuthMode == "cert" {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("clientAuthMode cert: pgpool still logs in to PostgreSQL itself as %q, so that user needs a pool_passwd entry (or trust for pgpool in the backend's pg_hba.conf); see the README", b.r.ClientUser))
	}
	b.roll(true)
	b.verify("on")
	return nil
}

func subjectSuffix(r Request) string {
	s := ""
	for _, o := range r.ClientOrgs {
		s += ",O=" + o
	}
	for _, o := range r.ClientOUs {
		s += ",OU=" + o
	}
	return s
}

func sameIssuer(a, b cmmeta.IssuerReference) bool {
	return a.Name == b.Name && tls.IssuerKind(a.Kind) == tls.IssuerKind(b.Kind)
}

// waitCert waits for Certificate name; together: at the same time as the
// wait before it.
func (b *builder) waitCert(name string, afterRevision int, together bool) {
	desc := fmt.Sprintf("wait for Certificate %s to be Ready", name)
	if afterRevision > 0 {
		desc = fmt.Sprintf("wait for Certificate %s to be Ready with a revision after %d", name, afterRevision)
	}
	s := plan.Step{Object: certObject(b.t, name), Description: desc, Spec: plan.WaitCertificateSpec{AfterRevision: afterRevision}}
	if together {
		b.alongside(s)
		return
	}
	b.add1(s)
}

func (b *builder) patchConfig(pgpoolConf, hba, summary string) {
	if pgpoolConf == b.t.Config.PgpoolConf && hba == b.t.Config.PoolHBA {
		return // already done (a run that is resumed)
	}
	diff := ""
	if d := conf.Diff(b.t.Config.PgpoolConf, pgpoolConf, 1); d != "" {
		diff += "pgpool.conf:\n" + maskSecrets(d)
	}
	if d := conf.Diff(b.t.Config.PoolHBA, hba, 1); d != "" {
		diff += "pool_hba.conf:\n" + d
	}
	b.add1(plan.Step{
		Object:      plan.Object{APIVersion: "v1", Kind: b.t.Config.Kind, Namespace: b.t.Namespace, Name: b.t.Config.Name},
		Description: summary,
		Diff:        diff,
		Spec: plan.ConfigPatchSpec{ResourceVersion: b.t.Config.ResourceVersion,
			PgpoolConf: pgpoolConf, PoolHBA: hba},
	})
}

// maskSecrets hides the values of secret keys (passwords, wd_authkey,
// passphrases) in a diff of pgpool.conf.
func maskSecrets(diff string) string { return conf.MaskSecrets(diff, true) }

func (b *builder) volumeName() string {
	name := pgpool.TLSVolumeName
	for _, v := range b.t.Template.Spec.Volumes {
		if v.Name == name {
			return "kubectl-pgpool-tls"
		}
	}
	return name
}

func (b *builder) addVolume() {
	name := b.volumeName()
	vol := b.tlsVolume(name)
	mount := corev1.VolumeMount{Name: name, MountPath: b.t.TLSMountPath, ReadOnly: true}
	ci := strconv.Itoa(b.t.ContainerIndex)
	ops := []map[string]any{{"op": "test", "path": "/spec/template/spec/containers/" + ci + "/name", "value": b.t.Container}}
	if len(b.t.Template.Spec.Volumes) == 0 {
		ops = append(ops, map[string]any{"op": "add", "path": "/spec/template/spec/volumes", "value": []corev1.Volume{vol}})
	} else {
		ops = append(ops, map[string]any{"op": "add", "path": "/spec/template/spec/volumes/-", "value": vol})
	}
	if len(b.t.Template.Spec.Containers[b.t.ContainerIndex].VolumeMounts) == 0 {
		ops = append(ops, map[string]any{"op": "add", "path": "/spec/template/spec/containers/" + ci + "/volumeMounts", "value": []corev1.VolumeMount{mount}})
	} else {
		ops = append(ops, map[string]any{"op": "add", "path": "/spec/template/spec/containers/" + ci + "/volumeMounts/-", "value": mount})
	}
	patch, _ := json.Marshal(ops)
	sc := b.t.Template.Spec.SecurityContext
	if sc == nil || sc.FSGroup == nil {
		if cs := b.t.Template.Spec.Containers[b.t.ContainerIndex].SecurityContext; cs != nil && cs.RunAsUser != nil && *cs.RunAsUser != 0 {
			b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the pod runs as UID %d without an fsGroup: tls.key (mode 0600, owned by root) will not be readable by pgpool; set spec.template.spec.securityContext.fsGroup", *cs.RunAsUser))
		}
	}
	b.add1(plan.Step{
		Object:      workloadObject(b.t),
		Description: fmt.Sprintf("mount Secret %s (tls.crt, tls.key mode 0600) and the CA bundle ConfigMap %s (ca.pem) as volume %q at %s in container %s", pgpool.ServerCertName(b.t.Name), tls.CABundleName(b.t.Name), name, b.t.TLSMountPath, b.t.Container),
		Diff:        fmt.Sprintf("+ volume %s: projected secret %s + configMap %s\n+ container %s volumeMount %s -> %s (readOnly)\n", name, pgpool.ServerCertName(b.t.Name), tls.CABundleName(b.t.Name), b.t.Container, name, b.t.TLSMountPath),
		Spec:        plan.WorkloadPatchSpec{Patch: patch},
	})
}

// tlsVolume is the TLS volume: the server Secret's certificate and key and
// the CA bundle, projected into one directory (the image copies it to where
// pgpool reads it).
func (b *builder) tlsVolume(name string) corev1.Volume {
	keyMode, readMode := int32(0o600), int32(0o444)
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: &readMode,
		Sources: []corev1.VolumeProjection{
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: pgpool.ServerCertName(b.t.Name)},
				Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "tls.crt"}, {Key: "tls.key", Path: "tls.key", Mode: &keyMode}}}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: tls.CABundleName(b.t.Name)},
				Items: []corev1.KeyToPath{{Key: tls.BundleKey, Path: "ca.pem"}}}},
		},
	}}}
}

// upgradeVolume replaces a TLS volume that mounts the server Secret's
// ca.crt as ca.pem (written by earlier versions) with the projected one
// that reads the CA bundle. It reports whether the pod template changes.
func (b *builder) upgradeVolume() bool {
	c := b.t.Template.Spec.Containers[b.t.ContainerIndex]
	name := ""
	for _, m := range c.VolumeMounts {
		if m.MountPath == b.t.TLSMountPath {
			name = m.Name
		}
	}
	for i, v := range b.t.Template.Spec.Volumes {
		if v.Name != name || v.Secret == nil || v.Secret.SecretName != pgpool.ServerCertName(b.t.Name) {
			continue
		}
		vp := "/spec/template/spec/volumes/" + strconv.Itoa(i)
		patch, _ := json.Marshal([]map[string]any{
			{"op": "test", "path": vp + "/name", "value": name},
			{"op": "replace", "path": vp, "value": b.tlsVolume(name)},
		})
		b.add1(plan.Step{
			Object:      workloadObject(b.t),
			Description: fmt.Sprintf("volume %q: read ca.pem from the CA bundle ConfigMap %s instead of the server Secret's ca.crt", name, tls.CABundleName(b.t.Name)),
			Diff:        fmt.Sprintf("- volume %s: secret %s\n+ volume %s: projected secret %s + configMap %s\n", name, pgpool.ServerCertName(b.t.Name), name, pgpool.ServerCertName(b.t.Name), tls.CABundleName(b.t.Name)),
			Spec:        plan.WorkloadPatchSpec{Patch: patch},
		})
		return true
	}
	return false
}

// BackendCAs are the backends' CAs pgpool will trust: those of
// --backend-ca, else those the CA bundle holds today.
func BackendCAs(t *pgpool.Target, r Request) []byte {
	if r.BackendCA == nil && t.Bundle != nil {
		return []byte(t.Bundle.Data[tls.BackendCAKey])
	}
	return r.BackendCA
}

// writeBundle writes the CA bundle pgpool reads as ssl_ca_cert: the
// issuer's CA (ca.crt of the server Secret, read when the step runs), then
// previous (a CA clients and backends may still use), then the backends'.
func (b *builder) writeBundle(previous []byte) {
	backend := BackendCAs(b.t, b.r)
	desc := fmt.Sprintf("write the CA bundle pgpool reads as ssl_ca_cert (for client certificates and its backends): first the issuer's CA (ca.crt of Secret %s)", pgpool.ServerCertName(b.t.Name))
	var diff strings.Builder
	if s := tls.Subjects(previous); len(s) > 0 {
		desc += ", then the previous issuer's CA"
		for _, x := range s {
			fmt.Fprintf(&diff, "  previous issuer's CA: %s\n", x)
		}
	}
	if s := tls.Subjects(backend); len(s) > 0 {
		auth := b.r.AuthMode
		if b.r.Operation != Add {
			auth = b.t.State.AuthMode
		}
		if auth == "cert" {
			b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("pgpool reads one CA file both to verify its backends and to verify client certificates: with cert auth, a client certificate signed by the backend's CA (%s) is accepted too, as the user its CN names; use a backend CA that signs nothing for other clients", strings.Join(s, "; ")))
		}
		desc += ", then the backends' CAs"
		if len(b.r.BackendCASources) > 0 {
			desc += " from " + strings.Join(b.r.BackendCASources, ", ")
		}
		for _, x := range s {
			fmt.Fprintf(&diff, "  backend CA: %s\n", x)
		}
	}
	b.add1(plan.Step{
		Object:      plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: b.t.Namespace, Name: tls.CABundleName(b.t.Name)},
		Description: desc,
		Diff:        diff.String(),
		Spec:        plan.ApplyBundleSpec{IssuerCAFrom: pgpool.ServerCertName(b.t.Name), PreviousCA: previous, BackendCA: backend},
	})
}

func (b *builder) removeVolume() {
	c := b.t.Template.Spec.Containers[b.t.ContainerIndex]
	mi, name := -1, ""
	for i, m := range c.VolumeMounts {
		if m.MountPath == b.t.TLSMountPath {
			mi, name = i, m.Name
		}
	}
	if mi < 0 {
		return
	}
	vi := -1
	for i, v := range b.t.Template.Spec.Volumes {
		if v.Name == name {
			vi = i
		}
	}
	ci := strconv.Itoa(b.t.ContainerIndex)
	mp := "/spec/template/spec/containers/" + ci + "/volumeMounts/" + strconv.Itoa(mi)
	ops := []map[string]any{
		{"op": "test", "path": mp + "/name", "value": name},
		{"op": "remove", "path": mp},
	}
	if vi >= 0 {
		vp := "/spec/template/spec/volumes/" + strconv.Itoa(vi)
		ops = append(ops, map[string]any{"op": "test", "path": vp + "/name", "value": name}, map[string]any{"op": "remove", "path": vp})
	}
	patch, _ := json.Marshal(ops)
	b.add1(plan.Step{
		Object:      workloadObject(b.t),
		Description: fmt.Sprintf("remove the TLS volume %q (mounted at %s) from the pod template", name, b.t.TLSMountPath),
		Diff:        fmt.Sprintf("- volume %s\n- container %s volumeMount %s -> %s\n", name, c.Name, name, b.t.TLSMountPath),
		Spec:        plan.WorkloadPatchSpec{Patch: patch},
	})
}

// roll adds the pod replacement steps. templateChanged: the steps before
// changed the pod template, so a controller with a rolling update strategy
// replaces the pods by itself and we wait for that instead of evicting.
func (b *builder) roll(templateChanged bool) {
	expect := "on"
	if b.r.Operation == Remove {
		expect = "off"
	}
	t := b.t
	if templateChanged && t.UpdateStrategy != "OnDelete" {
		b.p.Restart = "rollout"
		b.add1(plan.Step{Object: workloadObject(t),
			Description: fmt.Sprintf("wait for the %s controller's rolling update (%s strategy) to replace all %d pods, and for the old pods to be gone", t.Kind, t.UpdateStrategy, t.Replicas),
			Spec:        plan.RolloutSpec{Pods: b.pods()}})
		return
	}
	b.p.Restart = "evict"
	if done := len(t.Pods) - len(b.stale()); done > 0 {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("%d of %d pods were restarted by the run that did not finish and already run what it set up: only the other %d are restarted", done, len(t.Pods), len(t.Pods)-done))
	}
	stale := b.stale()
	for i := len(stale) - 1; i >= 0; i-- { // highest ordinal first
		p := stale[i]
		b.add1(plan.Step{
			Object:      plan.Object{APIVersion: "v1", Kind: "Pod", Namespace: t.Namespace, Name: p.Name},
			Description: fmt.Sprintf("evict pod %s, wait for its replacement to be Ready, check by handshake that it serves TLS %s%s", p.Name, expect, loginDesc(b.login())),
			Spec: plan.EvictSpec{UID: string(p.UID), SameName: t.Layout.StablePodNames(), Pods: b.pods(),
				Check: plan.Check{TLS: expect == "on", Login: b.login()}},
		})
	}
}

// resuming reports whether this run finishes one of the same operation
// that did not (its backup is still pending).
func (b *builder) resuming() bool { return pending(b.t, b.r.Operation) }

// pending reports whether a run of op on t did not finish: its backup is
// there and not marked done.
func pending(t *pgpool.Target, op string) bool {
	return t.Backup != nil && !t.Backup.Done && t.Backup.Operation == op
}

// stale are the pods that do not run what the operation sets up yet: every
// pod, except, when resuming, those the unfinished run restarted (started
// since its backup, and after the server certificate they load was issued).
func (b *builder) stale() []corev1.Pod {
	var live []corev1.Pod // a pod on its way out, or proven current, is not restarted
	for _, p := range b.t.Pods {
		if p.DeletionTimestamp == nil && !b.r.Current[string(p.UID)] {
			live = append(live, p)
		}
	}
	if !b.resuming() || b.reissuing {
		return live
	}
	before := map[string]bool{}
	for _, u := range b.t.Backup.Pods {
		before[u] = true
	}
	var issued time.Time
	if c := b.t.Certificates[pgpool.ServerCertName(b.t.Name)]; c != nil && c.Status.NotBefore != nil {
		issued = c.Status.NotBefore.Time
	}
	var out []corev1.Pod
	for _, p := range live {
		if before[string(p.UID)] || p.CreationTimestamp.Time.Before(issued) {
			out = append(out, p)
		}
	}
	return out
}

// pods are the workload's pods as the plan knows them: its selector, how
// many there must be, and the UIDs before the change (when resuming: before
// the unfinished run).
func (b *builder) pods() plan.Pods {
	known := make([]string, 0, len(b.t.Pods))
	for _, p := range b.stale() {
		known = append(known, string(p.UID))
	}
	if b.resuming() && !b.reissuing {
		known = append([]string(nil), b.t.Backup.Pods...)
	}
	sel, _ := metav1.LabelSelectorAsSelector(b.t.Selector)
	return plan.Pods{Selector: sel.String(), Known: known, Want: int(b.t.Replicas)}
}

// login is how the roll and the verify step log in through each pod: with
// the client certificate when clients authenticate with one, with the
// --verify-login password, or not at all.
func (b *builder) login() string {
	if b.r.Login != "" {
		return b.r.Login
	}
	auth := b.r.AuthMode
	if b.r.Operation == Rotate || b.r.Operation == ChangeIssuer {
		auth = b.t.State.AuthMode
	}
	if auth == "cert" && b.r.Operation != Remove {
		return "cert"
	}
	return ""
}

func loginDesc(login string) string {
	switch login {
	case "cert":
		return ", and log in through it with the client certificate (SELECT 1 reaches the backend)"
	case "password":
		return ", and log in through it with the --verify-login user (SELECT 1 reaches the backend)"
	}
	return ""
}

func verifyLoginDesc(login string) string {
	switch login {
	case "cert":
		return "; a login through each pod with the client certificate (SELECT 1 reaches the backend)"
	case "password":
		return "; a login through each pod with the --verify-login user (SELECT 1 reaches the backend)"
	}
	return ""
}

func (b *builder) verify(ssl string) {
	what := "ssl = on in the config, the TLS volume mounted, the server certificate issued by " + b.r.Issuer.Name
	issuer := b.r.Issuer.Name
	if ssl == "off" {
		what, issuer = "ssl off in the config, no TLS volume", ""
	}
	b.add1(plan.Step{
		Object:      workloadObject(b.t),
		Description: fmt.Sprintf("verify: %s; every pod replaced once and Ready%s", what, verifyLoginDesc(b.login())),
		Spec: plan.VerifySpec{
			Config:       plan.Object{APIVersion: "v1", Kind: b.t.Config.Kind, Namespace: b.t.Namespace, Name: b.t.Config.Name},
			TLSMountPath: b.t.TLSMountPath, Issuer: issuer, Pods: b.pods(),
			Check: plan.Check{TLS: ssl == "on", Login: b.login()},
		},
	})
}

func (b *builder) rotate() {
	b.r.Issuer = b.t.State.Issuer
	names := []string{pgpool.ServerCertName(b.t.Name), pgpool.ClientCertName(b.t.Name)}
	if !b.r.RestartOnly {
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
	if b.r.KeepPreviousCA && b.t.Bundle != nil {
		previous = []byte(b.t.Bundle.Data[tls.PreviousCAKey])
	} else if b.t.Bundle != nil && len(tls.Subjects([]byte(b.t.Bundle.Data[tls.PreviousCAKey]))) > 0 {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the previous issuer's CA (%s) leaves the CA bundle: client certificates it signed are refused after this roll (--keep-previous-ca keeps it)", strings.Join(tls.Subjects([]byte(b.t.Bundle.Data[tls.PreviousCAKey])), "; ")))
	}
	b.writeBundle(previous)
	changed := b.upgradeVolume()
	b.roll(changed)
	b.verify("on")
}

// changeIssuer moves the server Certificate first, rolls the pods onto a CA
// bundle that holds the old and the new CA, and only then moves the client
// Certificate: at every moment of the roll, every pod accepts a client
// certificate from either CA, and its backends stay trusted.
func (b *builder) changeIssuer() {
	server, client := pgpool.ServerCertName(b.t.Name), pgpool.ClientCertName(b.t.Name)
	ref := map[string]any{"spec": map[string]any{"issuerRef": map[string]string{"name": b.r.Issuer.Name, "kind": tls.IssuerKind(b.r.Issuer.Kind), "group": "cert-manager.io"}}}
	patch, _ := json.Marshal(ref)
	move := func(n, why string) {
		old := b.t.Certificates[n].Spec.IssuerRef
		b.add1(plan.Step{Object: certObject(b.t, n),
			Description: fmt.Sprintf("move Certificate %s to %s %q (cert-manager re-issues it)%s", n, tls.IssuerKind(b.r.Issuer.Kind), b.r.Issuer.Name, why),
			Diff:        fmt.Sprintf("- issuerRef: %s %s\n+ issuerRef: %s %s\n", tls.IssuerKind(old.Kind), old.Name, tls.IssuerKind(b.r.Issuer.Kind), b.r.Issuer.Name),
			Spec:        plan.CertificatePatchSpec{Patch: patch}})
		b.waitCert(n, tls.Revision(b.t.Certificates[n]), false)
	}
	previous := b.r.CurrentCA
	if onIssuer(b.t, server, b.r.Issuer) {
		// Resuming: the server Certificate moved already, so ca.crt is the
		// new CA; the old one is in the bundle the stopped run wrote.
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("resuming a tls change-issuer that did not finish: Certificate %s is already on %s %q", server, tls.IssuerKind(b.r.Issuer.Kind), b.r.Issuer.Name))
		b.waitCert(server, b.movedRevision(server), false)
		previous = nil
		if b.t.Bundle != nil {
			if p := b.t.Bundle.Data[tls.PreviousCAKey]; len(tls.Subjects([]byte(p))) > 0 {
				previous = []byte(p)
			} else if ic := b.t.Bundle.Data[tls.IssuerCAKey]; ic != string(b.r.CurrentCA) {
				previous = []byte(ic)
			}
		}
		if previous == nil {
			b.p.Warnings = append(b.p.Warnings, "the previous issuer's CA is no longer known (no CA bundle holds it): client certificates it signed may be refused by the restarted pods")
		}
	} else {
		move(server, "")
	}
	b.writeBundle(previous)
	changed := b.upgradeVolume()
	b.roll(changed)
	if !onIssuer(b.t, client, b.r.Issuer) {
		move(client, ", now that every pod trusts both CAs")
	} else if r := b.movedRevision(client); r > 0 {
		// Resuming after the client Certificate moved: wait for its re-issue.
		b.waitCert(client, r, false)
	}
	b.verify("on")
}

func (b *builder) remove() error {
	res, err := conf.RemoveTLS(conf.Files{PgpoolConf: b.t.Config.PgpoolConf, PoolHBA: b.t.Config.PoolHBA}, b.t.Paths(), b.r.AuthMode)
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w; nothing was changed", b.t.Config.Kind, b.t.Namespace, b.t.Config.Name, err)
	}
	edit := res.HBA
	b.p.Warnings = append(b.p.Warnings, res.Notes...)
	b.r.SSLMode, b.r.AuthMode = "disable", conf.GuessAuthMode(edit.Text)
	b.patchConfig(res.PgpoolConf, res.PoolHBA, "ssl off, certificate paths dropped; pool_hba.conf and enable_pool_hba as they were before tls add")
	b.removeVolume()
	b.roll(b.t.State.VolumePresent)
	b.verify("off")
	if b.t.Bundle != nil && b.t.BundleOurs {
		b.add1(plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: b.t.Namespace, Name: b.t.Bundle.Name},
			Description: "delete the CA bundle ConfigMap " + b.t.Bundle.Name + " (no pod mounts it any more)", Spec: plan.DeleteSpec{}})
	}
	if !b.r.KeepCertificates {
		// Only Certificates kubectl-pgpool created, and the Secrets they
		// wrote, are deleted; anything else is someone else's. Both
		// Certificates go first (together), then their Secrets (together):
		// a Secret deleted before its Certificate would be issued again.
		var secrets []plan.Step
		for _, n := range []string{pgpool.ServerCertName(b.t.Name), pgpool.ClientCertName(b.t.Name)} {
			c := b.t.Certificates[n]
			if c != nil && !tls.Ours(c, b.t.Name) {
				b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("Certificate %s/%s was not created by kubectl-pgpool (no label %s=%s): it and its Secret are kept; delete them yourself if nothing else uses them", b.t.Namespace, n, tls.LabelManagedBy, tls.ManagerName))
				continue
			}
			secret := n
			if c != nil {
				b.alongside(plan.Step{Object: certObject(b.t, n), Description: "delete Certificate " + n, Spec: plan.DeleteSpec{}})
				secret = c.Spec.SecretName
			} else if m := b.t.CertSecrets[n]; m == nil || !tls.Ours(m, b.t.Name) {
				continue // no Certificate, and no Secret of ours left behind
			}
			secrets = append(secrets, plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "Secret", Namespace: b.t.Namespace, Name: secret},
				Description: "delete its Secret " + secret + " (the private key goes with it)", Spec: plan.DeleteSpec{}})
		}
		for _, s := range secrets {
			b.alongside(s)
		}
	}
	return nil
}

func (b *builder) record() {
	tlsAnn := ""
	if b.r.Operation == Rollback {
		tlsAnn = b.t.Backup.TLSAnnotation
	} else if b.r.Operation != Remove {
		ssl, auth := b.r.SSLMode, b.r.AuthMode
		if b.r.Operation != Add {
			ssl, auth = b.t.State.SSLMode, b.t.State.AuthMode
		}
		tlsAnn = pgpool.TLSAnnotation(ssl, auth, pgpool.IssuerRef{Name: b.r.Issuer.Name, Kind: tls.IssuerKind(b.r.Issuer.Kind)})
	}
	b.add1(plan.Step{Object: workloadObject(b.t), Always: true,
		Description: fmt.Sprintf("record the outcome: annotation %s and an Event on %s", pgpool.AnnotationLastOperation, b.t),
		Spec:        plan.RecordSpec{Operation: b.r.Operation, TLS: tlsAnn, BackupDone: b.r.Operation != Rollback}})
	b.add1(plan.Step{Object: plan.Object{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: b.t.Namespace, Name: pgpool.LeaseName(b.t.Name)},
		Always: true, Description: "release the lock", Spec: plan.UnlockSpec{}})
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
