package planner

// The roll: which pods are replaced, and how (the controller, or
// evictions one at a time).

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// roll adds the pod replacement steps. templateChanged: the steps before
// changed the pod template, so a controller with a rolling update strategy
// replaces the pods by itself and we wait for that instead of evicting.
func (b *builder) roll(templateChanged bool) {
	expect := "on"
	if b.intent.Operation == Remove {
		expect = "off"
	}
	t := b.t
	if templateChanged && t.UpdateStrategy == "Recreate" {
		b.outage = fmt.Sprintf("%s has strategy Recreate: the change to its pod template makes its controller stop all %d pods before it starts any, so pgpool is down until the new ones are Ready", t, t.Replicas)
		b.p.Warnings = append(b.p.Warnings, b.outage+" (--allow-outage)")
	}
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
			Description: fmt.Sprintf("evict pod %s, wait for its replacement to be Ready, check by handshake that it serves TLS %s%s%s", p.Name, expect, refuseDesc(b.refuse()), loginDesc(b.login())),
			Spec: plan.EvictSpec{UID: string(p.UID), SameName: t.Layout.StablePodNames(), Pods: b.pods(),
				Check: plan.Check{TLS: expect == "on", Login: b.login(), Refuse: b.refuse()}, Next: i > 0},
		})
	}
}

// stale are the pods that do not run what the operation sets up yet: every
// pod, except, when resuming, those the unfinished run restarted (started
// since its backup, and after the server certificate they load was issued).
func (b *builder) stale() []corev1.Pod {
	var live []corev1.Pod // a pod on its way out, or proven current, is not restarted
	for _, p := range b.t.Pods {
		if p.DeletionTimestamp == nil && !b.f.Current[string(p.UID)] {
			live = append(live, p)
		}
	}
	if b.trustOnly {
		// Stage 1 of a CA renewal: the pods that started before the bundle
		// took the renewed CA.
		var out []corev1.Pod
		for _, p := range live {
			if slices.Contains(b.untrusting(), string(p.UID)) {
				out = append(out, p)
			}
		}
		return out
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

// refuseDesc says what the negative proof tries on each pod (logins that
// carry no credential).
func refuseDesc(r *plan.Refuse) string {
	switch {
	case r == nil:
		return ""
	case r.Plaintext && r.Certless:
		return " and refuses logins without TLS or a client certificate"
	case r.Plaintext:
		return " and refuses logins without TLS"
	case r.Certless:
		return " and refuses TLS logins without a client certificate"
	}
	return ""
}
