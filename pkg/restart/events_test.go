package restart

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

func TestMain(m *testing.M) {
	// client-go's fakes do not serve WatchList: informers list then watch.
	_ = os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}

func wpod(name, uid string, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", UID: types.UID(uid), Labels: map[string]string{"app": "pgpool"}, CreationTimestamp: metav1.Now()},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

// A replacement whose volume keeps failing to mount, or whose readiness
// probe keeps failing, fails the wait after the limit with the kubelet's
// message, long before the step's deadline; an Event of another pod does not.
func TestStuckByEvents(t *testing.T) {
	for _, tc := range []struct {
		reason, message, want string
	}{
		{"FailedMount", `MountVolume.SetUp failed for volume "certs" : secret "pgpool-server-cert" not found`, `its volumes fail to mount (for 300ms): MountVolume.SetUp failed for volume "certs"`},
		{"Unhealthy", "Readiness probe failed: 127.0.0.1:9999 - no response", "its readiness probe fails (for 300ms): Readiness probe failed: 127.0.0.1:9999 - no response"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			cs := fake.NewClientset(wpod("pgpool-1", "old", true))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			waiting := make(chan struct{}, 10)
			done := make(chan error, 1)
			go func() {
				_, err := WaitReplaced(ctx, cs.CoreV1(), "demo", "pgpool-1", "old", Replacement{SameName: true, Selector: "app=pgpool"},
					Options{MountFailingFor: 300 * time.Millisecond, UnreadyFor: 300 * time.Millisecond, OnProgress: func(s string) {
						if strings.Contains(s, "waiting for it to be Ready") {
							waiting <- struct{}{}
						}
					}})
				done <- err
			}()
			if err := cs.CoreV1().Pods("demo").Delete(ctx, "pgpool-1", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := cs.CoreV1().Pods("demo").Create(ctx, wpod("pgpool-1", "new", false), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-waiting:
			case <-ctx.Done():
				t.Fatal("the wait never saw the replacement")
			}
			for _, uid := range []string{"someone-else", "new"} {
				ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "ev-" + uid, Namespace: "demo"},
					InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "demo", Name: "pgpool-1", UID: types.UID(uid)},
					Reason:         tc.reason, Message: tc.message, Type: corev1.EventTypeWarning, FirstTimestamp: metav1.Now()}
				if _, err := cs.CoreV1().Events("demo").Create(ctx, ev, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			t0 := time.Now()
			err := <-done
			var se *StuckError
			if !errors.As(err, &se) || se.Pod != "pgpool-1" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WaitReplaced: %v, want stuck: %s", err, tc.want)
			}
			if d := time.Since(t0); d > 10*time.Second {
				t.Fatalf("took %s", d)
			}
		})
	}
}

// During a controller's rollout, a new pod that crash-loops cancels the
// guarded wait with the reason; the pods from before are not judged.
func TestGuardStopsARolloutAtAStuckPod(t *testing.T) {
	old := wpod("pgpool-a", "old", true)
	cs := fake.NewClientset(old)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g, stop := Guard(ctx, cs.CoreV1(), "demo", "app=pgpool", map[types.UID]bool{"old": true}, nil, Options{})
	defer stop()
	bad := wpod("pgpool-b", "new", false)
	bad.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "pgpool", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 10s"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}}
	if _, err := cs.CoreV1().Pods("demo").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	<-g.Done()
	se := StuckCause(g)
	if se == nil || se.Pod != "pgpool-b" || !strings.Contains(se.Error(), "CrashLoopBackOff: back-off 10s; last exit code 1 (Error)") {
		t.Fatalf("guard: %v (ctx %v)", se, ctx.Err())
	}
}

// A replacement counts once it is a ready endpoint of every Service that
// has EndpointSlices and the pod it replaced is listed in none; a Service
// without any is skipped.
func TestWaitEndpoints(t *testing.T) {
	p := wpod("pgpool-1", "new", true)
	f := false
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-x", Namespace: "demo", Labels: map[string]string{discoveryv1.LabelServiceName: "pgpool"}},
		Endpoints: []discoveryv1.Endpoint{{TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "pgpool-1", UID: "new"}, Conditions: discoveryv1.EndpointConditions{Ready: &f}},
			{TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "pgpool-0", UID: "old"}}}}
	cs := fake.NewClientset(slice)
	// Not a ready endpoint: it waits (here until a short deadline).
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := WaitEndpoints(short, cs.DiscoveryV1(), "demo", []string{"pgpool"}, p, "old", Options{}); err == nil || !strings.Contains(err.Error(), "to be a ready endpoint of Service pgpool") {
		t.Fatalf("not ready: %v", err)
	}
	tr := true
	slice.Endpoints[0].Conditions.Ready = &tr
	ctx, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	if _, err := cs.DiscoveryV1().EndpointSlices("demo").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Ready, but the old pod is still a ready endpoint (Ready unset counts
	// as ready): it waits.
	short2, cancel3 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel3()
	if _, err := WaitEndpoints(short2, cs.DiscoveryV1(), "demo", []string{"pgpool"}, p, "old", Options{}); err == nil || !strings.Contains(err.Error(), "the pod it replaced not to be") {
		t.Fatalf("old still listed: %v", err)
	}
	slice.Endpoints[1].Conditions.Ready = &f // terminating
	if _, err := cs.DiscoveryV1().EndpointSlices("demo").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	skipped, err := WaitEndpoints(ctx, cs.DiscoveryV1(), "demo", []string{"pgpool", "no-slices"}, p, "old", Options{})
	if err != nil || len(skipped) != 1 || skipped[0] != "no-slices" {
		t.Fatalf("WaitEndpoints: %v, skipped %v", err, skipped)
	}
}

// Watches started before the eviction (as the runner starts them) miss
// nothing that happens before the waits read them: the old pod's deletion,
// its replacement and the EndpointSlice change all queue until then.
func TestWatchesStartedBeforeTheWait(t *testing.T) {
	f, tr := false, true
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-x", Namespace: "demo", Labels: map[string]string{discoveryv1.LabelServiceName: "pgpool"}},
		Endpoints: []discoveryv1.Endpoint{{TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "pgpool-0", UID: "old"}, Conditions: discoveryv1.EndpointConditions{Ready: &tr}}}}
	cs := fake.NewClientset(wpod("pgpool-0", "old", true), slice)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pods := WatchPods(ctx, cs.CoreV1(), "demo", "app=pgpool")
	defer pods.Stop()
	slices := WatchEndpoints(ctx, cs.DiscoveryV1(), "demo", []string{"pgpool"})
	defer slices.Stop()
	for _, w := range []*Watch{pods, slices} {
		if !cache.WaitFor(ctx, "", w.informer.HasSyncedChecker()) {
			t.Fatal("the watches did not sync")
		}
	}
	// The eviction and the replacement, before anyone waits.
	if err := cs.CoreV1().Pods("demo").Delete(ctx, "pgpool-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("demo").Create(ctx, wpod("pgpool-0", "new", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice.Endpoints = []discoveryv1.Endpoint{
		{TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "pgpool-0", UID: "old"}, Conditions: discoveryv1.EndpointConditions{Ready: &f}},
		{TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "pgpool-0", UID: "new"}, Conditions: discoveryv1.EndpointConditions{Ready: &tr}},
	}
	if _, err := cs.DiscoveryV1().EndpointSlices("demo").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := WaitReplaced(ctx, cs.CoreV1(), "demo", "pgpool-0", "old", Replacement{SameName: true, Selector: "app=pgpool", Pods: pods}, Options{})
	if err != nil || p.UID != "new" {
		t.Fatalf("WaitReplaced: %v, %v; want the pod with uid new", p, err)
	}
	if _, err := WaitEndpointsOn(ctx, slices, "demo", []string{"pgpool"}, p, "old", Options{}); err != nil {
		t.Fatalf("WaitEndpointsOn: %v", err)
	}
}

// WaitEndpoints (the tests' shorthand) waits, by one watch of the EndpointSlices of services,
// until pod p is a ready endpoint of each of them and the pod it replaced
// (old, "" when none) is a ready endpoint of none (gone, or terminating:
// kube-proxy sends it no new connections), so that new connections through
// the Services reach the new pod and no longer the old one before the next
// pod goes. A Service without any EndpointSlice (no controller maintains them)
// is skipped and returned.
func WaitEndpoints(ctx context.Context, c discoveryv1client.DiscoveryV1Interface, ns string, services []string, p *corev1.Pod, old types.UID, o Options) ([]string, error) {
	if len(services) == 0 {
		return nil, nil
	}
	w := WatchEndpoints(ctx, c, ns, services)
	defer w.Stop()
	return WaitEndpointsOn(ctx, w, ns, services, p, old, o)
}

// A replacement that its controller deletes again (kubeops/petset, acting
// on a stale view, deletes the fresh pod it takes for the evicted one; the
// pod reaches phase Failed while it goes) does not stop the roll: the wait
// goes on to the next replacement.
func TestReplacementDeletedByItsController(t *testing.T) {
	cs := fake.NewClientset(wpod("pgpool-0", "old", true))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pods := WatchPods(ctx, cs.CoreV1(), "demo", "app=pgpool")
	defer pods.Stop()
	if !cache.WaitFor(ctx, "", pods.informer.HasSyncedChecker()) {
		t.Fatal("the watch did not sync")
	}
	if err := cs.CoreV1().Pods("demo").Delete(ctx, "pgpool-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	gone := wpod("pgpool-0", "second", false)
	now := metav1.Now()
	gone.DeletionTimestamp = &now
	gone.Status.Phase = corev1.PodFailed
	if _, err := cs.CoreV1().Pods("demo").Create(ctx, gone, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if Stuck(gone) != "" {
		t.Fatalf("a pod being deleted is judged stuck: %s", Stuck(gone))
	}
	if err := cs.CoreV1().Pods("demo").Delete(ctx, "pgpool-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("demo").Create(ctx, wpod("pgpool-0", "third", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var said []string
	p, err := WaitReplaced(ctx, cs.CoreV1(), "demo", "pgpool-0", "old", Replacement{SameName: true, Selector: "app=pgpool", Pods: pods}, Options{OnProgress: func(s string) { said = append(said, s) }})
	if err != nil || p.UID != "third" {
		t.Fatalf("WaitReplaced: %v, %v; want the pod with uid third (%q)", p, err, said)
	}
	if !strings.Contains(strings.Join(said, "\n"), "is being deleted by its controller") {
		t.Fatalf("progress: %q", said)
	}
}
