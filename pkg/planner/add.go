package planner

// tls add: issue both Certificates, write the CA bundle and the config,
// mount the TLS volume, roll, verify.

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/layout"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

func (b *builder) params() tls.Params {
	var pods []string
	if b.t.Layout.StablePodNames() {
		for i := int32(0); i < b.t.Replicas; i++ {
			pods = append(pods, b.t.Name+"-"+strconv.Itoa(int(i)))
		}
	}
	return tls.Params{
		Namespace: b.t.Namespace, Name: b.t.Name,
		Issuer:   cmmeta.IssuerReference{Name: b.issuer.Name, Kind: b.issuer.Kind, Group: "cert-manager.io"},
		Services: b.t.Services, Headless: b.t.Headless, PodNames: pods, ExtraDNS: b.intent.ExtraDNS, ExtraIPs: b.intent.ExtraIPs,
		ClientUser: b.intent.ClientUser, ClientOrgs: b.intent.ClientOrgs, ClientOUs: b.intent.ClientOUs,
		Duration: b.intent.Duration, RenewBefore: b.intent.RenewBefore, ClientDuration: b.intent.ClientDuration, ClientRenewBefore: b.intent.ClientRenewBefore,
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
		{"client", client, client.Name, fmt.Sprintf("client certificate from %s %q, CN=%s%s, secret %s", p.Issuer.Kind, p.Issuer.Name, client.Spec.CommonName, subjectSuffix(b.intent), client.Spec.SecretName)},
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
	b.writeBundle(cas{})
	res, err := conf.AddTLS(conf.Files{PgpoolConf: b.t.Config.PgpoolConf, PoolHBA: b.t.Config.PoolHBA},
		conf.AddOptions{Paths: b.t.Paths(), SSLMode: b.intent.SSLMode, AuthMode: b.authMode, LeftoverTLS: b.intent.LeftoverTLS, RemoteTrust: b.intent.RemoteTrust})
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w; nothing was changed", b.t.Config.Kind, b.t.Namespace, b.t.Config.Name, err)
	}
	edit := res.HBA
	b.hbaAfter, b.hbaEnforced, b.hbaKnown = res.PoolHBA, res.Enforced || b.t.State.HBAEnforced, true
	b.p.Warnings = append(b.p.Warnings, res.Notes...)
	if b.authMode == "" {
		b.authMode = conf.GuessAuthMode(edit.Text)
	}
	summary := fmt.Sprintf("ssl = on with the certificate at %s; pool_hba.conf: %d remote rules changed for sslMode %s, clientAuthMode %s (every other line kept)", path.Dir(b.t.Paths().Cert), len(edit.Changed), b.intent.SSLMode, b.authMode)
	for _, a := range edit.Added {
		b.p.Warnings = append(b.p.Warnings, "pool_hba.conf: a rule is added "+a)
	}
	if res.Enforced {
		summary += "; enable_pool_hba = on, so that pgpool enforces pool_hba.conf"
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("enable_pool_hba was off: pgpool did not read pool_hba.conf, so any client got in with or without TLS; the plan turns it on so that sslMode %s%s is enforced. From now on pgpool authenticates clients itself: md5 and scram users need a pool_passwd entry", b.intent.SSLMode, map[bool]string{true: " and cert", false: ""}[b.authMode == "cert"]))
	}
	b.p.Warnings = append(b.p.Warnings, edit.Notes...)
	if edit.AddedDefault {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("pool_hba.conf has no rule for remote clients: the plan adds one block for all databases and users from any address with %s over TLS (remove restores the file)", b.authMode))
	}
	if edit.NoRemote {
		b.p.Warnings = append(b.p.Warnings, "pool_hba.conf has no rule that admits remote clients, so only clients on the pod itself get in, before and after this change; none is added")
	}
	if inTemplate(b.t) {
		if o := layout.UserConfOverrides(b.t.Config.PgpoolConf); len(o) > 0 {
			return fmt.Errorf("%s: the pgpool.conf the container appends last (PGPOOL_USER_CONF_FILE) sets %s, which would undo what tls add writes through the environment; nothing was changed: remove those lines from it and run again", b.t, strings.Join(o, ", "))
		}
		b.templateTLS(true, res.PoolHBA, res.Enforced)
	} else {
		b.patchConfig(res.PgpoolConf, res.PoolHBA, summary)
		if n := len(b.p.Steps); n > 1 && b.p.Steps[n-1].Kind == plan.Patch && b.p.Steps[n-2].Object.Kind == "ConfigMap" && b.p.Steps[n-2].Object.Name == tls.CABundleName(b.t.Name) {
			// The config and the CA bundle are independent (no pod reads
			// either before the TLS volume is mounted): written together.
			b.p.Steps[n-1].Concurrent = true
		}
		if !b.t.State.VolumePresent {
			b.addVolume()
		}
	}
	if lines := conf.LoopbackTrust(b.t.Config.PoolHBA); len(lines) > 0 {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("pool_hba.conf trusts loopback addresses (%s): connections through `kubectl port-forward` arrive from 127.0.0.1 and skip TLS and %s auth (so the plugin's own login check, which comes that way too, proves the path to the backend but not client authentication); remove those lines if that is not what you want", strings.Join(lines, "; "), b.authMode))
	}
	if b.authMode == "cert" {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("clientAuthMode cert: pgpool still logs in to PostgreSQL itself as %q, so that user needs a pool_passwd entry (or trust for pgpool in the backend's pg_hba.conf); see the README", b.intent.ClientUser))
	}
	b.roll(true)
	b.verify("on")
	return nil
}

func subjectSuffix(r Intent) string {
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
