package restart

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func pod(name string, l map[string]string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", Labels: l}}
}

type pdbOpt func(*policyv1.PodDisruptionBudget)

func pdb(name string, sel map[string]string, opts ...pdbOpt) policyv1.PodDisruptionBudget {
	b := policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", Generation: 1}}
	if sel != nil {
		b.Spec.Selector = &metav1.LabelSelector{MatchLabels: sel}
	}
	one := intstr.FromInt32(1)
	b.Spec.MaxUnavailable = &one
	b.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: 1, ExpectedPods: 3, CurrentHealthy: 3, DesiredHealthy: 2, DisruptionsAllowed: 1}
	for _, o := range opts {
		o(&b)
	}
	return b
}

func allowed(n int32) pdbOpt {
	return func(b *policyv1.PodDisruptionBudget) { b.Status.DisruptionsAllowed = n }
}

func healthy(n int32) pdbOpt {
	return func(b *policyv1.PodDisruptionBudget) { b.Status.CurrentHealthy = n }
}

func failed(msg string) pdbOpt {
	return func(b *policyv1.PodDisruptionBudget) {
		b.Status.DisruptionsAllowed = 0
		b.Status.Conditions = []metav1.Condition{{Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionFalse, Reason: policyv1.SyncFailedReason, Message: msg}}
	}
}

func TestCheckBudgets(t *testing.T) {
	app := map[string]string{"app": "pgpool"}
	other := map[string]string{"app": "other"}
	pods := []corev1.Pod{pod("pgpool-0", app), pod("pgpool-1", app), pod("pgpool-2", app)}
	cases := []struct {
		name string
		pdbs []policyv1.PodDisruptionBudget
		want []string // substrings of the error; none means no error
	}{
		{"no PDB", nil, nil},
		{"one PDB allowing one", []policyv1.PodDisruptionBudget{pdb("pgpool", app)}, nil},
		{"a PDB of other pods", []policyv1.PodDisruptionBudget{pdb("x", other, allowed(0))}, nil},
		{"a PDB without selector selects nothing", []policyv1.PodDisruptionBudget{pdb("pgpool", app), pdb("none", nil, allowed(0))}, nil},
		{"transient 0 (a pod not healthy yet)", []policyv1.PodDisruptionBudget{pdb("pgpool", app, allowed(0), healthy(2))}, nil},
		{"not yet observed", []policyv1.PodDisruptionBudget{pdb("pgpool", app, allowed(0), func(b *policyv1.PodDisruptionBudget) { b.Generation = 2 })}, nil},
		// The killed run's eviction is still counted: the replacement (same
		// name) is Ready, the budget allows one, but the controller keeps the
		// evicted pod in disruptedPods for up to two minutes.
		{"a recent eviction still counted", []policyv1.PodDisruptionBudget{pdb("pgpool", app, allowed(0), func(b *policyv1.PodDisruptionBudget) {
			b.Status.DisruptedPods = map[string]metav1.Time{"pgpool-0": metav1.Now()}
		})}, nil},
		{"two PDBs", []policyv1.PodDisruptionBudget{pdb("pgpool", app), pdb("all", map[string]string{})},
			[]string{"pod pgpool-0 is selected by 2 PodDisruptionBudgets (all, pgpool)", "keep one"}},
		{"sync failed", []policyv1.PodDisruptionBudget{pdb("pgpool", app, failed("petsets.apps.k8s.appscode.com does not implement the scale subresource"))},
			[]string{"cannot compute PodDisruptionBudget pgpool (petsets.apps.k8s.appscode.com does not implement the scale subresource)"}},
		{"maxUnavailable 0", []policyv1.PodDisruptionBudget{pdb("pgpool", app, allowed(0), func(b *policyv1.PodDisruptionBudget) {
			z := intstr.FromInt32(0)
			b.Spec.MaxUnavailable = &z
			b.Status.DesiredHealthy = 3
		})}, []string{"PodDisruptionBudget pgpool allows no disruption even though every pod it covers is healthy (maxUnavailable 0, 3 pods)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckBudgets(c.pdbs, pods)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			for _, w := range append(c.want, "nothing was changed") {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// A replacement pod that cannot start says why, so the roll stops at once
// instead of at --timeout; one that is only slow does not.
func TestStuck(t *testing.T) {
	waiting := func(reason string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "pgpool",
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "back-off 10s restarting failed container"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error"}}}}}}
	}
	for reason, stuck := range map[string]bool{"CrashLoopBackOff": true, "ImagePullBackOff": true, "CreateContainerConfigError": true, "ContainerCreating": false, "PodInitializing": false} {
		got := Stuck(waiting(reason))
		if (got != "") != stuck || (stuck && !strings.Contains(got, "container pgpool: "+reason)) {
			t.Errorf("%s: %q", reason, got)
		}
	}
	if got := Stuck(waiting("CrashLoopBackOff")); !strings.Contains(got, "last exit code 3 (Error)") {
		t.Errorf("no exit code: %q", got)
	}
	if Stuck(&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}}) == "" || Stuck(&corev1.Pod{}) != "" {
		t.Error("phase")
	}
}
