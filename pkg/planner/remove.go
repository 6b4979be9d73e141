package planner

// tls remove: config back, volume out, roll, then delete what is ours.

import (
	"fmt"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

func (b *builder) remove() error {
	res, err := conf.RemoveTLS(conf.Files{PgpoolConf: b.t.Config.PgpoolConf, PoolHBA: b.t.Config.PoolHBA}, b.t.Paths(), b.intent.AuthMode)
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w; nothing was changed", b.t.Config.Kind, b.t.Namespace, b.t.Config.Name, err)
	}
	b.p.Warnings = append(b.p.Warnings, res.Notes...)
	if tr, err := b.t.Trust(); err == nil && tr != nil {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("the clients' copies of the CA (tls trust: %s) stay and are no longer kept current: applications may mount them, and a pod whose ConfigMap is gone cannot start; `kubectl pgpool tls trust %s --stop` deletes them once nothing uses them", tr.Where(), b.t.Name))
	}
	if inTemplate(b.t) {
		ours := b.hbaOurs()
		b.roll(b.templateTLS(false, res.PoolHBA, false))
		b.verify("off")
		if ours {
			b.add1(plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: b.t.Namespace, Name: b.t.Config.Name},
				Description: "delete ConfigMap " + b.t.Config.Name + " (the pool_hba.conf tls add wrote; the container generates its own again)", Spec: plan.DeleteSpec{}})
		}
	} else {
		b.patchConfig(res.PgpoolConf, res.PoolHBA, "ssl off, certificate paths dropped; pool_hba.conf and enable_pool_hba as they were before tls add")
		b.removeVolume()
		b.roll(b.t.State.VolumePresent)
		b.verify("off")
	}
	if b.t.Bundle != nil && b.t.BundleOurs {
		b.add1(plan.Step{Object: plan.Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: b.t.Namespace, Name: b.t.Bundle.Name},
			Description: "delete the CA bundle ConfigMap " + b.t.Bundle.Name + " (no pod mounts it any more)", Spec: plan.DeleteSpec{}})
	}
	if !b.intent.KeepCertificates {
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
