// Package planner owns the request and its plan: the user's request as an
// Intent, normalised and checked once (Normalize), and the Plan of each
// operation (add, rotate, change-issuer, remove, rollback; one file each)
// built from a discovered target, the Intent and what the preflight learned
// (Facts). Building is pure: it reads the target snapshot and writes
// nothing; the same Plan is then printed, dry-run or executed.
package planner

import (
	"fmt"
	"strings"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/layout"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// StateError is returned when the operation does not fit today's state.
type StateError struct{ Msg string }

func (e *StateError) Error() string { return e.Msg }

// NothingToDoError is returned when the operation's goal is already
// reached (a run that was killed after it got there, run again): the
// command succeeds without writing anything.
type NothingToDoError struct{ Msg string }

func (e *NothingToDoError) Error() string { return e.Msg }

// Build returns the plan for intent (normalised) on t with what the preflight
// learned, or an error that says why the operation does not fit (and which
// command does).
func Build(t *pgpool.Target, intent Intent, f Facts) (*plan.Plan, error) {
	if err := fits(t, intent); err != nil {
		return nil, err
	}
	managed, err := managers(t, intent)
	if err != nil {
		return nil, err
	}
	if err := bundleTrust(t, intent, f); err != nil {
		return nil, err
	}
	b := newBuilder(t, intent, f)
	b.p.Warnings = append(b.p.Warnings, managed...)
	b.p.Warnings = append(b.p.Warnings, conf.ParsePgpoolConf(t.Config.PgpoolConf).CaseIgnored(pgpoolKeys...)...)
	if t.Layout.Name() == "bitnami" {
		if src := layout.InitScripts(&t.Template.Spec, &t.Template.Spec.Containers[t.ContainerIndex]); len(src) > 0 {
			b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("container %s runs init scripts from %s (%s) after it writes pgpool.conf and pool_hba.conf, and they can change either: the plan cannot see what they do; the proof after each restart checks what pgpool enforces", t.Container, strings.Join(src, ", "), layout.BitnamiInitScriptsDir))
		}
	}
	if o := t.Layout.Owner(t); o != nil && t.Owner == nil {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("%s is controlled by %s %s/%s (%s), which could not be read (it is gone, or its API is not served): it is neither paused nor told of this change", t, o.Kind, t.Namespace, o.Name, o.APIVersion))
	}
	if why := interruptedWhy(t, intent.Operation); why != "" {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("resuming a tls %s that did not finish (%s): the plan starts from what the cluster holds now; steps already done change nothing", intent.Operation, why))
	}
	b.lock()
	b.pause()
	if intent.Operation != Rollback {
		if err := b.backup(); err != nil {
			return nil, err
		}
	}
	switch intent.Operation {
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
		return nil, fmt.Errorf("unknown operation %q", intent.Operation)
	}
	if b.login() == "" && b.intent.Operation != Rollback {
		b.p.Warnings = append(b.p.Warnings, "no login proves that clients get through pgpool to its backend after the change (only the TLS handshake is checked): pass --verify-login SECRET, a Secret with the keys username and password")
	}
	if b.outage != "" && !intent.AllowOutage {
		return nil, &StateError{b.outage + "; nothing was changed: pass --allow-outage to go on anyway, or set the strategy to RollingUpdate first"}
	}
	b.updateOwner()
	b.record()
	if err := b.finishBackup(); err != nil {
		return nil, err
	}
	patchDocs(t, b.p)
	return b.p, nil
}

// pgpoolKeys are the pgpool.conf parameters the plugin reads or writes.
var pgpoolKeys = []string{"ssl", "ssl_cert", "ssl_key", "ssl_ca_cert", "enable_pool_hba", "ssl_ca_cert_dir", "ssl_crl_file"}

type builder struct {
	t      *pgpool.Target
	intent Intent
	f      Facts
	p      *plan.Plan
	// issuer is the issuer the Certificates are on when the plan is done:
	// the one asked (add, change-issuer), today's (rotate, remove), the
	// backup's (rollback).
	issuer pgpool.IssuerRef
	// authMode is the clientAuthMode of pool_hba.conf when the plan is
	// done: the one asked, else what add's edit leaves, else today's.
	authMode string
	// reissuing: the plan re-issues a Certificate, so every pod must load
	// it (none is current).
	reissuing bool
	// bk is the backup the plan takes, at step bkStep (its Secret is
	// rendered when the plan is complete).
	bk     *pgpool.Backup
	bkStep int
	// wrote are pgpool.conf and pool_hba.conf as a layout that keeps them
	// in the pod template leaves them (nil: the ConfigPatch step says).
	wrote *[2]string
	// hbaAfter is pool_hba.conf when the plan is done, and whether pgpool
	// reads it then (hbaKnown false: as today).
	hbaAfter              string
	hbaEnforced, hbaKnown bool
	// outage says why the plan takes every pod down at once ("" when it
	// does not).
	outage string
	// trustOnly: the roll only makes the pods trust the issuer's renewed
	// CA (stage 1 of its renewal): the pods that started before the
	// bundle took it are restarted.
	trustOnly bool
	// notices are Events the record step leaves on success (a re-issued
	// client certificate, for its user).
	notices []plan.Notice
}

func newBuilder(t *pgpool.Target, intent Intent, f Facts) *builder {
	b := &builder{t: t, intent: intent, f: f, p: &plan.Plan{Operation: intent.Operation, Target: workloadObject(t)}, issuer: intent.Issuer, authMode: intent.AuthMode}
	if intent.Operation == Rotate || intent.Operation == Remove {
		b.issuer = t.State.Issuer
	}
	if intent.Operation == Rotate || intent.Operation == ChangeIssuer {
		b.authMode = t.State.AuthMode
	}
	return b
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
		Spec:        plan.LockSpec{Holder: b.f.Holder, Operation: b.intent.Operation, Force: b.intent.ForceUnlock},
	})
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

// login is how the roll and the verify step log in through each pod: with
// the client certificate when clients authenticate with one, with the
// --verify-login password, or not at all.
func (b *builder) login() string {
	if b.f.Login != "" {
		return b.f.Login
	}
	auth := b.authMode
	if b.intent.Operation == Rotate || b.intent.Operation == ChangeIssuer {
		auth = b.t.State.AuthMode
	}
	if auth == "cert" && b.intent.Operation != Remove {
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

// refuse is the negative proof of add, rotate and change-issuer: what
// every pod must refuse once TLS is on (remove and rollback prove the
// handshake only).
func (b *builder) refuse() *plan.Refuse {
	op := b.intent.Operation
	if op != Add && op != Rotate && op != ChangeIssuer {
		return nil
	}
	ssl, hba, enforced := b.t.State.SSLMode, b.t.Config.PoolHBA, b.t.State.HBAEnforced
	if op == Add {
		ssl = b.intent.SSLMode
	}
	if b.hbaKnown {
		hba, enforced = b.hbaAfter, b.hbaEnforced
	}
	return &plan.Refuse{Plaintext: conf.TLSRequired(ssl), Certless: b.authMode == "cert", PoolHBA: hba, Enforced: enforced, KeepTrust: b.intent.RemoteTrust == "keep"}
}

func (b *builder) verify(ssl string) {
	what := "ssl = on in the config, the TLS volume mounted, the server certificate issued by " + b.issuer.Name
	issuer := b.issuer.Name
	if ssl == "off" {
		what, issuer = "ssl off in the config, no TLS volume", ""
	}
	b.add1(plan.Step{
		Object:      workloadObject(b.t),
		Description: fmt.Sprintf("verify: %s; every pod replaced once and Ready%s", what, verifyLoginDesc(b.login())),
		Spec: plan.VerifySpec{
			Config:       plan.Object{APIVersion: "v1", Kind: b.t.Config.Kind, Namespace: b.t.Namespace, Name: b.t.Config.Name},
			TLSMountPath: b.t.TLSMountPath, Issuer: issuer, Pods: b.pods(),
			Check: plan.Check{TLS: ssl == "on", Login: b.login(), Refuse: b.refuse()},
		},
	})
}

func (b *builder) record() {
	tlsAnn := ""
	if b.intent.Operation == Rollback {
		tlsAnn = b.t.Backup.TLSAnnotation
	} else if b.intent.Operation != Remove {
		ssl, auth := b.intent.SSLMode, b.authMode
		if b.intent.Operation != Add {
			ssl, auth = b.t.State.SSLMode, b.t.State.AuthMode
		}
		tlsAnn = pgpool.TLSAnnotation(ssl, auth, pgpool.IssuerRef{Name: b.issuer.Name, Kind: b.issuer.Kind})
	}
	b.add1(plan.Step{Object: workloadObject(b.t), Always: true,
		Description: fmt.Sprintf("record the outcome: annotation %s and an Event on %s", pgpool.AnnotationLastOperation, b.t),
		Spec:        plan.RecordSpec{Operation: b.intent.Operation, TLS: tlsAnn, BackupDone: b.intent.Operation != Rollback, Notices: b.notices}})
	b.unpause()
	b.add1(plan.Step{Object: plan.Object{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: b.t.Namespace, Name: pgpool.LeaseName(b.t.Name)},
		Always: true, Description: "release the lock", Spec: plan.UnlockSpec{}})
}
