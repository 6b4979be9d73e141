package restart

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// CheckBudgets says, before anything is written, whether the
// PodDisruptionBudgets in the pods' namespace would refuse every eviction
// of the roll, so that it fails in preflight rather than after --timeout of
// HTTP 429s. It refuses:
//   - a pod selected by more than one PDB (the Eviction API answers 500 for
//     such pods);
//   - a PDB the disruption controller cannot compute (condition
//     DisruptionAllowed=False, reason SyncFailed: e.g. a maxUnavailable or
//     percentage budget over pods whose controller has no scale
//     subresource, or over pods with no controller);
//   - a PDB that can never allow a disruption: every pod it expects is
//     healthy and it still wants all of them (maxUnavailable 0, or
//     minAvailable equal to the replicas): desiredHealthy >= expectedPods.
//
// It judges the budget by what it wants (desiredHealthy), not by
// disruptionsAllowed: that is 0 for a while after any eviction (the
// evicted pod stays in status.disruptedPods until the controller sees it
// gone, up to two minutes, also when a StatefulSet's replacement has the
// same name and is Ready: kubernetes' pkg/controller/disruption keys that
// map by pod name and keeps an entry whose pod has no deletionTimestamp
// until DeletionTimeout, 2m, in buildDisruptedPodMap), or while a pod is
// not healthy yet; both are transient, and the eviction's 429 is retried.
func CheckBudgets(pdbs []policyv1.PodDisruptionBudget, pods []corev1.Pod) error {
	var problems []string
	used := map[string]bool{}
	for i := range pods {
		var names []string
		for j := range pdbs {
			if selects(&pdbs[j], &pods[i]) {
				names = append(names, pdbs[j].Name)
				used[pdbs[j].Name] = true
			}
		}
		if len(names) > 1 {
			sort.Strings(names)
			problems = append(problems, fmt.Sprintf("pod %s is selected by %d PodDisruptionBudgets (%s) and the Eviction API refuses to evict such a pod: keep one of them", pods[i].Name, len(names), strings.Join(names, ", ")))
		}
	}
	for i := range pdbs {
		b := &pdbs[i]
		if !used[b.Name] {
			continue
		}
		if c := syncFailed(b); c != nil {
			problems = append(problems, fmt.Sprintf("the disruption controller cannot compute PodDisruptionBudget %s (%s), so it refuses every eviction: fix it or use an integer minAvailable", b.Name, c.Message))
			continue
		}
		st := b.Status
		if st.ObservedGeneration >= b.Generation && st.ExpectedPods > 0 && st.CurrentHealthy >= st.ExpectedPods && st.DesiredHealthy >= st.ExpectedPods {
			problems = append(problems, fmt.Sprintf("PodDisruptionBudget %s allows no disruption even though every pod it covers is healthy (%s, %d pods), so no pod can be restarted: allow at least 1 (e.g. maxUnavailable: 1)", b.Name, budget(b), st.ExpectedPods))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("the pods cannot be restarted through the Eviction API; nothing was changed:\n  - %s", strings.Join(problems, "\n  - "))
}

// selects is the PDB's pod selection (policy/v1: an empty selector selects
// every pod in the namespace, a missing one none).
func selects(b *policyv1.PodDisruptionBudget, p *corev1.Pod) bool {
	if b.Namespace != p.Namespace || b.Spec.Selector == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
	if err != nil {
		return false
	}
	return sel.Matches(labels.Set(p.Labels))
}

func syncFailed(b *policyv1.PodDisruptionBudget) *metav1.Condition {
	for i, c := range b.Status.Conditions {
		if c.Type == policyv1.DisruptionAllowedCondition && c.Status == metav1.ConditionFalse && c.Reason == policyv1.SyncFailedReason {
			return &b.Status.Conditions[i]
		}
	}
	return nil
}

func budget(b *policyv1.PodDisruptionBudget) string {
	switch {
	case b.Spec.MaxUnavailable != nil:
		return "maxUnavailable " + b.Spec.MaxUnavailable.String()
	case b.Spec.MinAvailable != nil:
		return "minAvailable " + b.Spec.MinAvailable.String()
	}
	return "no budget set"
}
