package planner

// The KubeDB Pgpool object that controls a workload: refused while KubeDB
// is changing it, paused for the change (the seed's DatabasePauseSucceeded),
// told what the change did after the proof (UpdateDatabase), and unpaused.

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/owners"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// ownerFits refuses while KubeDB is changing the Pgpool (an ops request
// that has not ended, or a pause that is not the plugin's), unless --force.
func ownerFits(t *pgpool.Target, r Intent) error {
	o := t.Owner
	if o == nil || r.Force {
		return nil
	}
	if len(o.Pending) > 0 {
		return &StateError{fmt.Sprintf("%s/%s has a PgpoolOpsRequest that has not ended: %s; KubeDB's ops-manager may be changing it, so kubectl-pgpool refuses (nothing was changed): wait for it to end (kubectl get pgpoolopsrequests -n %s), delete it if no ops-manager will run it, or pass --force to go on anyway", o.Kind, t.Namespace+"/"+o.Name, strings.Join(o.Pending, ", "), t.Namespace)}
	}
	if o.PausedByOther() {
		return &StateError{fmt.Sprintf("%s %s/%s is paused by someone else (condition Paused, reason %q: %s): KubeDB's ops-manager or a person is changing it, so kubectl-pgpool refuses (nothing was changed): wait until the pause is lifted, or pass --force to go on anyway (the pause is then left as it is)", o.Kind, t.Namespace, o.Name, o.Paused.Reason, o.Paused.Message)}
	}
	return nil
}

// Managed is one object the plans change and a tool that manages it.
type Managed struct {
	What  string // e.g. "StatefulSet demo/pgpool"
	Owner owners.Owner
}

// Managers names who else manages the objects the plans change (the
// workload, its config, the Certificates and the CA bundle that exist:
// Helm, Argo CD, Flux, with what an Argo CD Application says; a
// controller of the workload that no layout knows), and what they will do
// to a change.
func Managers(t *pgpool.Target) []Managed {
	type object struct {
		what         string
		labels, anns map[string]string
	}
	objs := []object{
		{t.String(), t.Labels, t.Annotations},
		{fmt.Sprintf("%s %s/%s", t.Config.Kind, t.Namespace, t.Config.Name), t.Config.Labels, t.Config.Annotations},
	}
	for _, n := range []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)} {
		if c := t.Certificates[n]; c != nil {
			objs = append(objs, object{"Certificate " + t.Namespace + "/" + n, c.Labels, c.Annotations})
		}
	}
	if t.Bundle != nil {
		objs = append(objs, object{"ConfigMap " + t.Namespace + "/" + t.Bundle.Name, t.Bundle.Labels, t.Bundle.Annotations})
	}
	var out []Managed
	if t.Layout.Owner(t) == nil {
		for _, r := range t.Owners {
			if r.Controller != nil && *r.Controller {
				out = append(out, Managed{What: t.String(), Owner: owners.Owner{Tool: "its controller", Name: fmt.Sprintf("%s %s/%s, %s", r.Kind, t.Namespace, r.Name, r.APIVersion),
					Then: "kubectl-pgpool does not know it: it may put the pod template back when it next reconciles"}})
			}
		}
	}
	for _, obj := range objs {
		for _, o := range owners.Of(obj.labels, obj.anns) {
			if o.App != "" {
				a := t.Argo[o.App]
				if o.ByLabel && !a.Read {
					continue // no such Application: the label is someone else's
				}
				o = owners.WithArgo(o, a)
			}
			if o.Tool == "Helm" && o.Release[1] != "" {
				ns := o.Release[0]
				if ns == "" {
					ns = t.Namespace
				}
				o = owners.WithHelm(o, t.HelmStored[ns+"/"+o.Release[1]])
			}
			if o.Tool == "Flux helm-controller" {
				o = owners.HelmReleaseDrift(o, t.HelmReleaseDrift[o.Name])
			}
			out = append(out, Managed{What: obj.what, Owner: o})
		}
	}
	return out
}

// managers warns of each tool that manages an object the plan changes,
// and refuses when one reverts the change at once, unless --owner=ignore.
func managers(t *pgpool.Target, r Intent) (warnings []string, err error) {
	for _, m := range Managers(t) {
		o := m.Owner
		if o.AtOnce && r.Owner != "ignore" {
			return nil, &StateError{fmt.Sprintf("%s is managed by %s (%s): %s, so this change would not last and kubectl-pgpool refuses (nothing was changed): make the change in its source of truth, stop it from reconciling this object (Flux: annotation kustomize.toolkit.fluxcd.io/reconcile: disabled, or suspend the Kustomization; Argo CD: turn selfHeal off), or pass --owner=ignore to go on anyway", m.What, o.Tool, o.Name, o.Then)}
		}
		warnings = append(warnings, fmt.Sprintf("%s is managed by %s (%s): %s; put the change into its source of truth so that it lasts", m.What, o.Tool, o.Name, o.Then))
	}
	return warnings, nil
}

func ownerObject(t *pgpool.Target) plan.Object {
	return plan.Object{APIVersion: t.Owner.APIVersion, Kind: t.Owner.Kind, Namespace: t.Namespace, Name: t.Owner.Name}
}

// pause sets the Pgpool's Paused condition before the first change (not
// when someone else's pause is there: --force went on under it).
func (b *builder) pause() {
	o := b.t.Owner
	if o == nil {
		return
	}
	if len(o.Pending) > 0 {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("--force: going on although %s/%s has a PgpoolOpsRequest that has not ended (%s)", o.Kind, o.Name, strings.Join(o.Pending, ", ")))
	}
	if o.PausedByOther() {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("--force: going on although %s %s/%s is paused by someone else (reason %q); that pause is left as it is", o.Kind, b.t.Namespace, o.Name, o.Paused.Reason))
		return
	}
	if o.PausedByUs() {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("%s %s/%s is still paused by a run of kubectl-pgpool that did not end (%s): this run lifts the pause when it ends", o.Kind, b.t.Namespace, o.Name, o.Paused.Message))
	}
	b.add1(plan.Step{Object: ownerObject(b.t),
		Description: fmt.Sprintf("DatabasePauseSucceeded: pause %s %s/%s (status condition Paused=True, reason %s) so that KubeDB's provisioner leaves its %s and config alone until this ends", o.Kind, b.t.Namespace, o.Name, pgpool.PauseReason, b.t.Kind),
		Spec:        plan.PauseSpec{Pause: true, Message: fmt.Sprintf("kubectl-pgpool tls %s by %s", b.intent.Operation, b.f.Holder)}})
}

// unpause lifts the plugin's pause at the end, whatever happened (a pause
// that is not the plugin's is left).
func (b *builder) unpause() {
	o := b.t.Owner
	if o == nil || o.PausedByOther() {
		return
	}
	b.add1(plan.Step{Object: ownerObject(b.t), Always: true,
		Description: fmt.Sprintf("lift the pause of %s %s/%s (its Paused condition, if it is kubectl-pgpool's), also when a step failed", o.Kind, b.t.Namespace, o.Name),
		Spec:        plan.PauseSpec{Pause: false}})
}

// updateOwner writes what the operation did into the Pgpool's spec, after
// the proof (the seed's UpdateDatabase): spec.tls (issuer and the server
// and client certificates as applied), sslMode and clientAuthMode; remove
// clears spec.tls with sslMode disable and clientAuthMode md5 in one patch,
// which KubeDB's admission rules accept; rollback puts back the backup's.
func (b *builder) updateOwner() {
	o := b.t.Owner
	if o == nil {
		return
	}
	var want pgpool.OwnerSpec
	switch b.intent.Operation {
	case Rollback:
		if b.t.Backup.Owner == nil {
			return
		}
		want = *b.t.Backup.Owner
	case Remove:
		want = pgpool.OwnerSpec{SSLMode: "disable", ClientAuthMode: "md5"}
	default:
		ssl, auth := b.intent.SSLMode, b.authMode
		if b.intent.Operation != Add {
			ssl, auth = b.t.State.SSLMode, b.t.State.AuthMode
		}
		want = pgpool.OwnerSpec{TLS: ownerTLS(o.Spec.TLS, b.issuer, b.certSpecs()), SSLMode: ssl, ClientAuthMode: auth}
		if !kubedbSSLModes[ssl] {
			want.SSLMode = o.Spec.SSLMode
		}
		if !kubedbAuthModes[auth] {
			want.ClientAuthMode = o.Spec.ClientAuthMode
			b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("pool_hba.conf's client authentication (%s) is none of KubeDB's clientAuthModes (md5, scram, cert): %s %s/%s keeps spec.clientAuthMode %q", auth, o.Kind, b.t.Namespace, o.Name, o.Spec.ClientAuthMode))
		}
	}
	if sameOwnerSpec(o.Spec, want) {
		return
	}
	null := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	var tlsField any
	if want.TLS != nil {
		tlsField = want.TLS
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"tls": tlsField, "sslMode": null(want.SSLMode), "clientAuthMode": null(want.ClientAuthMode)}})
	b.add1(plan.Step{Object: ownerObject(b.t),
		Description: fmt.Sprintf("UpdateDatabase: write the result into %s %s/%s (spec.tls, spec.sslMode, spec.clientAuthMode), as KubeDB's ops-manager does", o.Kind, b.t.Namespace, o.Name),
		Diff:        fmt.Sprintf("- %s\n+ %s\n", o.Spec.Summary(), want.Summary()),
		Spec:        plan.OwnerPatchSpec{Patch: patch}})
}

// certSpecs are the server's and the client's Certificate specs as the
// operation leaves them, by KubeDB's alias.
func (b *builder) certSpecs() map[string]cmapi.CertificateSpec {
	out := map[string]cmapi.CertificateSpec{}
	if b.intent.Operation == Add {
		p := b.params()
		out["server"] = tls.ServerCertificate(p, pgpool.ServerCertName(b.t.Name)).Spec
		out["client"] = tls.ClientCertificate(p, pgpool.ClientCertName(b.t.Name)).Spec
		return out
	}
	for alias, n := range map[string]string{"server": pgpool.ServerCertName(b.t.Name), "client": pgpool.ClientCertName(b.t.Name)} {
		if c := b.t.Certificates[n]; c != nil {
			out[alias] = c.Spec
		}
	}
	return out
}

// ownerTLS is spec.tls with the issuer and the server and client
// certificates replaced; everything else in it (other aliases, fields the
// plugin does not set) is kept.
func ownerTLS(cur map[string]any, issuer pgpool.IssuerRef, certs map[string]cmapi.CertificateSpec) map[string]any {
	out := runtime.DeepCopyJSON(cur)
	if out == nil {
		out = map[string]any{}
	}
	out["issuerRef"] = map[string]any{"apiGroup": "cert-manager.io", "kind": tls.IssuerKind(issuer.Kind), "name": issuer.Name}
	var list []any
	done := map[string]bool{}
	old, _ := out["certificates"].([]any)
	for _, c := range old {
		m, _ := c.(map[string]any)
		alias, _ := m["alias"].(string)
		if spec, ok := certs[alias]; ok {
			list = append(list, certEntry(alias, m, spec))
			done[alias] = true
			continue
		}
		list = append(list, c)
	}
	for _, alias := range []string{"server", "client"} {
		if spec, ok := certs[alias]; ok && !done[alias] {
			list = append(list, certEntry(alias, nil, spec))
		}
	}
	out["certificates"] = list
	return out
}

// certEntry is one entry of spec.tls.certificates, KubeDB's way: what the
// Certificate carries, over what the entry had.
func certEntry(alias string, cur map[string]any, s cmapi.CertificateSpec) map[string]any {
	e := map[string]any{}
	for k, v := range cur {
		e[k] = v
	}
	e["alias"], e["secretName"] = alias, s.SecretName
	set := func(k string, v any, ok bool) {
		if ok {
			e[k] = v
		} else {
			delete(e, k)
		}
	}
	strs := func(xs []string) []any {
		out := make([]any, len(xs))
		for i, x := range xs {
			out[i] = x
		}
		return out
	}
	set("dnsNames", strs(s.DNSNames), len(s.DNSNames) > 0)
	set("ipAddresses", strs(s.IPAddresses), len(s.IPAddresses) > 0)
	subject := map[string]any{}
	if s.Subject != nil {
		if len(s.Subject.Organizations) > 0 {
			subject["organizations"] = strs(s.Subject.Organizations)
		}
		if len(s.Subject.OrganizationalUnits) > 0 {
			subject["organizationalUnits"] = strs(s.Subject.OrganizationalUnits)
		}
	}
	set("subject", subject, len(subject) > 0)
	if s.Duration != nil {
		e["duration"] = s.Duration.Duration.String()
	} else {
		delete(e, "duration")
	}
	if s.RenewBefore != nil {
		e["renewBefore"] = s.RenewBefore.Duration.String()
	} else {
		delete(e, "renewBefore")
	}
	return e
}

// KubeDB's enums: a value the Pgpool's schema refuses is not written (the
// field keeps what it had).
var (
	kubedbSSLModes  = map[string]bool{"disable": true, "allow": true, "prefer": true, "require": true, "verify-ca": true, "verify-full": true}
	kubedbAuthModes = map[string]bool{"md5": true, "scram": true, "cert": true}
)

// sameOwnerSpec compares two specs as JSON (numbers and nils alike).
func sameOwnerSpec(a, b pgpool.OwnerSpec) bool {
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	var x, y any
	_ = json.Unmarshal(aj, &x)
	_ = json.Unmarshal(bj, &y)
	return reflect.DeepEqual(x, y)
}
