package runner

// The roll: one pod at a time through the Eviction API.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/restart"
)

func (r *Runner) evict(ctx context.Context, s plan.Step, spec plan.EvictSpec, report func(string)) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	uid := types.UID(spec.UID)
	o := restart.Options{DryRun: r.dryRun(), OnProgress: report}
	t0 := time.Now()
	// What the replacement must serve is read from the Secrets while the
	// pod is replaced (a round trip saved); checkPod reads them again if the
	// pod serves something else (cert-manager may have written them since).
	var prefetch sync.WaitGroup
	defer prefetch.Wait()
	if !r.ServerDryRun && r.Verify != VerifyOff && !r.verifyUnavailable {
		prefetch.Go(func() { _, _ = r.expectation(ctx, spec.Check.TLS) })
	}
	// The watches that judge the replacement start with the eviction, so
	// that their first lists are in when it is gone (two round trips saved).
	var pods, slices, workload *restart.Watch
	endpoints := r.Clients.EndpointSlices != nil && len(r.Target.Services) > 0
	if !r.ServerDryRun {
		pods = restart.WatchPods(ctx, r.Clients.Core, ns, spec.Pods.Selector)
		defer pods.Stop()
		if spec.Next {
			workload = restart.WatchWorkload(ctx, r.Clients.Dynamic.Resource(r.Target.GVR), ns, r.Target.Name)
			defer workload.Stop()
		}
		if endpoints {
			slices = restart.WatchEndpoints(ctx, r.Clients.EndpointSlices, ns, r.Target.Services)
			defer slices.Stop()
		}
	}
	refused, err := restart.Evict(ctx, r.Clients.Policy, ns, name, uid, o)
	if err != nil {
		return "", err
	}
	if r.ServerDryRun {
		return r.answer("eviction allowed"), nil
	}
	report(fmt.Sprintf("evicted pod %s", name))
	p, err := restart.WaitReplaced(ctx, r.Clients.Core, ns, name, uid, restart.Replacement{
		SameName: spec.SameName, Selector: spec.Pods.Selector, Known: knownUIDs(spec.Pods), Want: spec.Pods.Want, Owns: r.Target.Owns, Pods: pods,
	}, o)
	if err != nil {
		return "", err
	}
	msg := fmt.Sprintf("replaced by %s (uid %s) and Ready in %s", p.Name, shortUID(p.UID), time.Since(t0).Round(100*time.Millisecond))
	if refused > 0 {
		msg += fmt.Sprintf("; %s %s", budgetWaited, refused.Round(time.Second))
	}
	if endpoints {
		// The next pod goes only once this one takes Service traffic.
		skipped, err := restart.WaitEndpointsOn(ctx, slices, ns, r.Target.Services, p, uid, o)
		if err != nil {
			return "", fmt.Errorf("the roll stops at pod %s: %w", p.Name, err)
		}
		if n := len(r.Target.Services) - len(skipped); n > 0 {
			msg += fmt.Sprintf("; a ready endpoint of %d Service(s), the old pod no longer one", n)
		}
	}
	prefetch.Wait()
	hs, err := r.checkPod(ctx, p.Name, spec.Check.TLS, report)
	if err != nil {
		return "", fmt.Errorf("the roll stops at pod %s: %w", p.Name, err)
	}
	if hs != "" {
		msg += "; " + hs
	}
	proven := hs != "" && hs != "handshake not checked"
	if proven {
		rf, err := r.refusePod(ctx, p.Name, spec.Check.Refuse, spec.Check.TLS, report)
		if err != nil {
			return "", fmt.Errorf("the roll stops at pod %s: %w", p.Name, err)
		}
		if rf != "" {
			msg += "; " + rf
		}
	}
	if proven && spec.Check.Login != "" {
		li, err := r.loginPod(ctx, p.Name, spec.Check.TLS, spec.Check.Login)
		if err != nil {
			return "", fmt.Errorf("the roll stops at pod %s: %w", p.Name, err)
		}
		msg += "; " + li
	}
	if proven {
		r.remember(p, spec.Check.TLS, spec.Check.Login)
	}
	// The next pod goes only once the workload's controller counts this
	// one Ready: one acting on a stale view would delete it again (after
	// the last pod, the verify step waits for whatever it does).
	if !spec.Next {
		return msg, nil
	}
	ready := 0
	for _, o := range pods.Objects() {
		if q, ok := o.(*corev1.Pod); ok && q.DeletionTimestamp == nil && pgpool.PodReady(q) && r.Target.Owns(q) {
			ready++
		}
	}
	if err := restart.WaitControllerSaw(ctx, workload, ready, 30*time.Second, o); err != nil {
		return "", fmt.Errorf("the roll stops at pod %s: %w", p.Name, err)
	}
	return msg, nil
}

func shortUID(u types.UID) string {
	if len(u) > 8 {
		return string(u[:8])
	}
	return string(u)
}

// budgetWaited starts what an eviction step's result says when a
// PodDisruptionBudget refused it for a while; BudgetWait reads it back.
const budgetWaited = "waited while a PodDisruptionBudget refused the eviction:"

// BudgetWait is how long an eviction step waited for a
// PodDisruptionBudget, from its result (0 when it did not).
func BudgetWait(result string) time.Duration {
	_, after, ok := strings.Cut(result, budgetWaited+" ")
	if !ok {
		return 0
	}
	d, _ := time.ParseDuration(strings.SplitN(after, ";", 2)[0])
	return d
}
