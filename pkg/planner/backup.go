package planner

// The backup every operation takes before its first write, and what a
// rollback must not discard: changes made since the operation.

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// backup adds the step that keeps the state before the first write, unless
// the backup of an unfinished operation is there: that one holds the state
// before it, and is kept until an operation finishes or is rolled back.
func (b *builder) backup() error {
	t := b.t
	if bk := t.Backup; bk != nil && !bk.Done {
		b.p.Warnings = append(b.p.Warnings, fmt.Sprintf("keeping the backup taken before the unfinished tls %s (%s): `kubectl pgpool tls rollback %s` restores the state before it", bk.Operation, bk.Taken, t.Name))
		return nil
	}
	b.bk = pgpool.TakeBackup(t, b.intent.Operation, b.f.Now.UTC().Format(time.RFC3339))
	b.bkStep = len(b.p.Steps)
	b.add1(plan.Step{
		Object:      plan.Object{APIVersion: "v1", Kind: "Secret", Namespace: t.Namespace, Name: pgpool.BackupName(t.Name)},
		Description: fmt.Sprintf("back up pgpool.conf, pool_hba.conf, the TLS volume and mount, the Certificates and the CA bundle as they are now (never printed: the config may hold passwords), for `kubectl pgpool tls rollback %s`", t.Name),
		Spec:        plan.BackupSpec{},
	})
	return nil
}

// finishBackup renders the backup step's Secret once the plan is built:
// it records the config files as the operation leaves them, so that a
// later rollback can tell edits made since.
func (b *builder) finishBackup() error {
	if b.bk == nil {
		return nil
	}
	b.bk.WrotePgpoolConf, b.bk.WrotePoolHBA, b.bk.Wrote = b.t.Config.PgpoolConf, b.t.Config.PoolHBA, true
	if b.wrote != nil {
		b.bk.WrotePgpoolConf, b.bk.WrotePoolHBA = b.wrote[0], b.wrote[1]
	}
	for _, s := range b.p.Steps {
		if c, ok := s.Spec.(plan.ConfigPatchSpec); ok {
			b.bk.WrotePgpoolConf, b.bk.WrotePoolHBA = c.PgpoolConf, c.PoolHBA
		}
	}
	sec, err := b.bk.Secret(b.t.Namespace, b.t.Name)
	if err != nil {
		return err
	}
	b.p.Steps[b.bkStep].Spec = plan.BackupSpec{Secret: sec}
	return nil
}

// changedSince names the Certificates and the TLS volume that changed
// since the operation that took the backup finished (its record holds
// their digests then).
func changedSince(t *pgpool.Target) []string {
	bk := t.Backup
	if bk == nil || len(bk.After) == 0 {
		return nil
	}
	now := t.Digests()
	var out []string
	for k, v := range bk.After {
		if now[k] != v {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// editedSince says how the config files changed since the operation that
// took the backup wrote them ("" when they did not: they are as it left
// them, or as they were before it wrote anything).
func editedSince(t *pgpool.Target) string {
	bk := t.Backup
	if bk == nil || !bk.Wrote {
		return ""
	}
	cur := t.Config
	if (cur.PgpoolConf == bk.WrotePgpoolConf && cur.PoolHBA == bk.WrotePoolHBA) || (cur.PgpoolConf == bk.PgpoolConf && cur.PoolHBA == bk.PoolHBA) {
		return ""
	}
	var out strings.Builder
	if d := conf.Diff(bk.WrotePgpoolConf, cur.PgpoolConf, 0); d != "" {
		out.WriteString("pgpool.conf:\n" + conf.MaskSecrets(d, true))
	}
	if d := conf.Diff(bk.WrotePoolHBA, cur.PoolHBA, 0); d != "" {
		out.WriteString("pool_hba.conf:\n" + d)
	}
	return out.String()
}
