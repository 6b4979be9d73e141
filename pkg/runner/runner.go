// Package runner carries out plan steps against the API server: it is the
// plan.Runner that turns each typed step into Kubernetes calls (server-side
// apply of Certificates, patches with resourceVersion preconditions,
// evictions, watches, the lock), honouring --dry-run=server and the per-step
// timeout. It does not decide what to do (the planner does), never changes
// or deletes an object that is not the plugin's, and prints nothing
// (progress leaves through the report callback).
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/typed/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	policyv1client "k8s.io/client-go/kubernetes/typed/policy/v1"
	"k8s.io/client-go/rest"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/lock"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/restart"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
)

// FieldManager is the field manager of every write.
const FieldManager = "kubectl-pgpool"

// Clients are the API clients the Runner writes with.
type Clients struct {
	Config       *rest.Config
	Core         corev1client.CoreV1Interface
	Policy       policyv1client.PolicyV1Interface
	Coordination coordinationv1client.CoordinationV1Interface
	CertManager  cmclient.CertmanagerV1Interface
	Dynamic      dynamic.Interface
	// EndpointSlices, when set, lets a roll wait until each replacement
	// is a ready endpoint of the pgpool's Services before the next pod.
	EndpointSlices discoveryv1client.DiscoveryV1Interface
}

// Runner executes steps. ServerDryRun sends every write with DryRun All and
// skips waits.
type Runner struct {
	Clients      Clients
	Target       *pgpool.Target
	ServerDryRun bool
	// Timeout bounds each step (default 5m, as KubeDB's spec.timeout).
	Timeout time.Duration
	// Verify is --verify: "true" (handshake with every replaced pod when it
	// can be reached), "false", or "required".
	Verify string
	// Password is the --verify-login user and password (steps whose login
	// is "password"); Database is the database every login asks for
	// (default postgres).
	Password verify.Login
	Database string
	// Started is when the operation began: a certificate failure cert-manager
	// recorded before it is not this operation's.
	Started time.Time

	// Identity is this run's lock identity (lock.Self() when empty);
	// LockOptions tune the lock (tests shorten its duration).
	Identity    lock.Identity
	LockOptions lock.Options

	held *lock.Held
	// verifyUnavailable: handshakes stopped after two pods in a row could
	// not be reached; dialFailures counts those in a row, unreached names
	// every pod that could not be.
	verifyUnavailable bool
	dialFailures      int
	unreached         []string
	// want caches the expectation read from the TLS Secrets for the step
	// that runs (reset for every step that does not run concurrently: the
	// Secrets change between steps; the steps that check pods never run
	// concurrently).
	want *verify.Expect
}

var _ plan.Runner = (*Runner)(nil)

func (r *Runner) dryRun() []string {
	if r.ServerDryRun {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// Run carries out one step.
func (r *Runner) Run(ctx context.Context, s plan.Step, failure error, report func(string)) (string, error) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	stepCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !s.Concurrent {
		r.want = nil // only steps that run alone check pods (evict, verify)
	}
	msg, err := r.run(stepCtx, s, failure, report)
	switch {
	case err == nil:
	case errors.Is(context.Cause(ctx), plan.ErrInterrupted):
		err = fmt.Errorf("%w: %w", plan.ErrInterrupted, err)
	case errors.Is(stepCtx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("%w (step timeout %s; raise it with --timeout): %w", err, timeout, plan.ErrTimeout)
	}
	return msg, err
}

func (r *Runner) run(ctx context.Context, s plan.Step, failure error, report func(string)) (string, error) {
	if r.ServerDryRun && !s.Kind.Writes() {
		return "skipped: nothing to wait for in a server dry run", nil
	}
	if err := r.held.Check(ctx); err != nil && !s.Always {
		return "", err
	}
	switch spec := s.Spec.(type) {
	case plan.LockSpec:
		return r.lock(ctx, s, spec, report)
	case plan.UnlockSpec:
		return r.unlock(ctx, s)
	case plan.ApplyCertificateSpec:
		return r.applyCertificate(ctx, s, spec)
	case plan.ApplyBundleSpec:
		return r.applyBundle(ctx, s, spec)
	case plan.BackupSpec:
		return r.backup(ctx, s, spec)
	case plan.WaitCertificateSpec:
		crt, err := issuing.WaitReady(ctx, r.Clients.CertManager, s.Object.Namespace, s.Object.Name, spec.AfterRevision, r.Started, report)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Ready, revision %d", tls.Revision(crt)), nil
	case plan.TriggerSpec:
		if err := issuing.TriggerIssuance(ctx, r.Clients.CertManager, s.Object.Namespace, s.Object.Name, r.dryRun()); err != nil {
			return "", err
		}
		return "Issuing condition set", nil
	case plan.ConfigPatchSpec:
		return r.patchConfig(ctx, s, spec)
	case plan.WorkloadPatchSpec:
		return r.patchWorkload(ctx, s, spec)
	case plan.CertificatePatchSpec:
		_, err := r.Clients.CertManager.Certificates(s.Object.Namespace).Patch(ctx, s.Object.Name, types.MergePatchType, spec.Patch,
			metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()})
		if err != nil {
			return "", fmt.Errorf("patch Certificate %s/%s: %w", s.Object.Namespace, s.Object.Name, err)
		}
		return r.answer("patched"), nil
	case plan.EvictSpec:
		return r.evict(ctx, s, spec, report)
	case plan.RolloutSpec:
		// A new pod that cannot start ends the wait at once, with why.
		gctx, stop := restart.Guard(ctx, r.Clients.Core, s.Object.Namespace, spec.Pods.Selector, knownUIDs(spec.Pods), r.Target.Owns, restart.Options{})
		defer stop()
		err := restart.WaitRollout(gctx, r.Clients.Dynamic.Resource(r.Target.GVR), s.Object.Namespace, s.Object.Name, r.Target.Layout.RolloutDone, restart.Options{OnProgress: report})
		if err == nil {
			err = restart.WaitGone(gctx, r.Clients.Core, s.Object.Namespace, spec.Pods.Selector, knownUIDs(spec.Pods), restart.Options{OnProgress: report})
		}
		if se := restart.StuckCause(gctx); se != nil && ctx.Err() == nil {
			return "", se
		}
		if err != nil {
			return "", err
		}
		return "all pods replaced and Ready, the old ones gone", nil
	case plan.VerifySpec:
		return r.verify(ctx, s, spec, report)
	case plan.DeleteSpec:
		return r.delete(ctx, s)
	case plan.RecordSpec:
		return r.record(ctx, s, spec, failure)
	}
	return "", fmt.Errorf("step %s %s: no runner for %T", s.Kind, s.Object, s.Spec)
}

func knownUIDs(p plan.Pods) map[types.UID]bool {
	known := map[types.UID]bool{}
	for _, u := range p.Known {
		known[types.UID(u)] = true
	}
	return known
}

// holder names this run (its lock identity).
func (r *Runner) holder() string {
	if r.held != nil {
		return r.held.Holder()
	}
	if r.Identity.Holder != "" {
		return r.Identity.Holder
	}
	return lock.Self().Holder
}

func (r *Runner) answer(what string) string {
	if r.ServerDryRun {
		return "server accepted (dry run): " + what
	}
	return what
}

func (r *Runner) applyCertificate(ctx context.Context, s plan.Step, spec plan.ApplyCertificateSpec) (string, error) {
	crt, err := applyCertificate(ctx, r.Clients, s, spec, r.dryRun())
	if err != nil {
		return "", fmt.Errorf("apply Certificate %s/%s: %w", s.Object.Namespace, s.Object.Name, err)
	}
	return r.answer(fmt.Sprintf("applied (generation %d)", crt.Generation)), nil
}

// patchConfig writes the new config contents by a merge patch with the
// resourceVersion that was read: if anyone changed the config since
// discovery, the server answers 409 instead of us overwriting their change.
func (r *Runner) patchConfig(ctx context.Context, s plan.Step, spec plan.ConfigPatchSpec) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	opts := metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()}
	b := r.Target.Layout.ConfigPatch(pgpool.Config{Kind: s.Object.Kind, Name: name, ResourceVersion: spec.ResourceVersion}, spec.PgpoolConf, spec.PoolHBA)
	var err error
	if s.Object.Kind == "Secret" {
		_, err = r.Clients.Core.Secrets(ns).Patch(ctx, name, types.MergePatchType, b, opts)
	} else {
		_, err = r.Clients.Core.ConfigMaps(ns).Patch(ctx, name, types.MergePatchType, b, opts)
	}
	if apierrors.IsConflict(err) {
		return "", fmt.Errorf("%s %s/%s changed since it was read: run the command again to plan against the new contents", s.Object.Kind, ns, name)
	}
	if err != nil {
		return "", fmt.Errorf("patch %s %s/%s: %w", s.Object.Kind, ns, name, err)
	}
	return r.answer("patched"), nil
}

// patchWorkload applies the JSON patch to the pod template; its test
// operations make the server refuse it (422) when the template changed
// since it was read.
func (r *Runner) patchWorkload(ctx context.Context, s plan.Step, spec plan.WorkloadPatchSpec) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	res := r.Clients.Dynamic.Resource(r.Target.GVR).Namespace(ns)
	u, err := res.Patch(ctx, name, types.JSONPatchType, spec.Patch, metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()})
	if err == nil {
		return r.answer(fmt.Sprintf("patched (generation %d)", u.GetGeneration())), nil
	}
	// The server says only "invalid" when a test operation fails; an
	// admission policy's refusal says why. Tell them apart by checking the
	// tests against the object as it is now.
	if apierrors.IsInvalid(err) {
		if cur, gerr := res.Get(ctx, name, metav1.GetOptions{}); gerr == nil {
			if path, failed := failedTest(cur.Object, spec.Patch); failed {
				return "", fmt.Errorf("patch %s %s/%s: its pod template changed since it was read (%s is no longer what the plan expects): run the command again", s.Object.Kind, ns, name, path)
			}
		}
	}
	return "", fmt.Errorf("patch %s %s/%s: %w", s.Object.Kind, ns, name, err)
}

// failedTest returns the path of the first "test" operation of a JSON patch
// that does not hold on obj.
func failedTest(obj map[string]any, patch []byte) (string, bool) {
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if json.Unmarshal(patch, &ops) != nil {
		return "", false
	}
	for _, op := range ops {
		if op.Op != "test" {
			continue
		}
		var cur any = obj
		for _, tok := range strings.Split(strings.TrimPrefix(op.Path, "/"), "/") {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			switch c := cur.(type) {
			case map[string]any:
				cur = c[tok]
			case []any:
				i, err := strconv.Atoi(tok)
				if err != nil || i < 0 || i >= len(c) {
					return op.Path, true
				}
				cur = c[i]
			default:
				return op.Path, true
			}
		}
		var want any
		_ = json.Unmarshal(op.Value, &want)
		a, _ := json.Marshal(cur)
		b, _ := json.Marshal(want)
		if string(a) != string(b) {
			return op.Path, true
		}
	}
	return "", false
}

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
	var pods, slices *restart.Watch
	endpoints := r.Clients.EndpointSlices != nil && len(r.Target.Services) > 0
	if !r.ServerDryRun {
		pods = restart.WatchPods(ctx, r.Clients.Core, ns, spec.Pods.Selector)
		defer pods.Stop()
		if endpoints {
			slices = restart.WatchEndpoints(ctx, r.Clients.EndpointSlices, ns, r.Target.Services)
			defer slices.Stop()
		}
	}
	if err := restart.Evict(ctx, r.Clients.Policy, ns, name, uid, o); err != nil {
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
	if hs != "" && hs != "handshake not checked" && spec.Check.Login != "" {
		li, err := r.loginPod(ctx, p.Name, spec.Check.TLS, spec.Check.Login)
		if err != nil {
			return "", fmt.Errorf("the roll stops at pod %s: %w", p.Name, err)
		}
		msg += "; " + li
	}
	return msg, nil
}

func shortUID(u types.UID) string {
	if len(u) > 8 {
		return string(u[:8])
	}
	return string(u)
}

func (r *Runner) verify(ctx context.Context, s plan.Step, spec plan.VerifySpec, report func(string)) (string, error) {
	ns := s.Object.Namespace
	on := spec.Check.TLS
	ssl := map[bool]string{true: "on", false: "off"}[on]
	// The reads are independent: the config, the workload, the server
	// Secret and the CA bundle are read while the pods are waited for.
	var (
		problems   []string
		pgpoolConf string
		workload   *unstructured.Unstructured
		sec        *corev1.Secret
		bundle     *corev1.ConfigMap
		pods       []corev1.Pod
	)
	kind, cname := spec.Config.Kind, spec.Config.Name
	err := parallel.All(func() error {
		// 1. The config says what it should.
		if kind == "Secret" {
			cs, err := r.Clients.Core.Secrets(ns).Get(ctx, cname, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("verify: get Secret %s/%s: %w", ns, cname, err)
			}
			pgpoolConf = string(cs.Data["pgpool.conf"])
			return nil
		}
		cm, err := r.Clients.Core.ConfigMaps(ns).Get(ctx, cname, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("verify: get ConfigMap %s/%s: %w", ns, cname, err)
		}
		pgpoolConf = cm.Data["pgpool.conf"]
		return nil
	}, func() (err error) {
		// 2. The pod template mounts the TLS volume or not.
		workload, err = r.Clients.Dynamic.Resource(r.Target.GVR).Namespace(ns).Get(ctx, s.Object.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("verify: get %s %s/%s: %w", s.Object.Kind, ns, s.Object.Name, err)
		}
		return nil
	}, func() (err error) {
		// 3. Every pod is new and Ready (a roll another run started, or
		// the controller's, may still be ending: wait for it).
		pods, err = restart.WaitReady(ctx, r.Clients.Core, ns, spec.Pods.Selector, spec.Pods.Want, r.Target.Owns, restart.Options{OnProgress: report})
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		return nil
	}, func() (err error) {
		// 4. The served certificate comes from the expected issuer.
		if !on {
			return nil
		}
		sec, err = r.Clients.Core.Secrets(ns).Get(ctx, pgpool.ServerCertName(r.Target.Name), metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("verify: get Secret %s/%s: %w", ns, pgpool.ServerCertName(r.Target.Name), err)
		}
		return nil
	}, func() (err error) {
		if on {
			bundle, err = r.readBundle(ctx, ns)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	if conf.ParsePgpoolConf(pgpoolConf).Bool("ssl") != on {
		problems = append(problems, fmt.Sprintf("%s %s/%s: pgpool.conf does not have ssl %s", kind, ns, cname, ssl))
	}
	if mounted(workload, spec.TLSMountPath) != on {
		problems = append(problems, fmt.Sprintf("%s %s/%s: TLS volume at %s is %s", s.Object.Kind, ns, s.Object.Name, spec.TLSMountPath, map[bool]string{true: "still mounted", false: "not mounted"}[mounted(workload, spec.TLSMountPath)]))
	}
	known := knownUIDs(spec.Pods)
	readyN := 0
	handshakes, logins := 0, 0
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || !r.Target.Owns(p) {
			// An evicted pod of a Deployment may still be shutting down
			// (its replacement has another name): it is on its way out. A
			// pod that only shares the labels is not the workload's.
			continue
		}
		if known[p.UID] {
			problems = append(problems, fmt.Sprintf("pod %s was not restarted", p.Name))
		}
		if pgpool.PodReady(p) {
			readyN++
			hs, err := r.checkPod(ctx, p.Name, on, func(string) {})
			if err != nil {
				problems = append(problems, err.Error())
			} else if hs != "" && hs != "handshake not checked" {
				handshakes++
				if spec.Check.Login != "" {
					if _, err := r.loginPod(ctx, p.Name, on, spec.Check.Login); err != nil {
						problems = append(problems, err.Error())
					} else {
						logins++
					}
				}
			}
		}
	}
	if readyN < spec.Pods.Want {
		problems = append(problems, fmt.Sprintf("%d of %d pods Ready", readyN, spec.Pods.Want))
	}
	detail := ""
	if on {
		if got := sec.Annotations[cmapi.IssuerNameAnnotationKey]; got != spec.Issuer {
			problems = append(problems, fmt.Sprintf("Secret %s/%s was issued by %q, expected %q", ns, sec.Name, got, spec.Issuer))
		}
		if p := bundleProblem(bundle, sec); p != "" {
			problems = append(problems, p)
		}
		if info, err := tls.ReadSecret(sec); err == nil {
			detail = fmt.Sprintf("; server certificate serial %s, issuer %s, expires %s", info.Serial, info.Issuer, info.NotAfter.UTC().Format(time.RFC3339))
		} else {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return "", fmt.Errorf("verify failed: %s", strings.Join(problems, "; "))
	}
	hs := fmt.Sprintf("; handshake checked on %d pods", handshakes)
	if spec.Check.Login != "" {
		hs += fmt.Sprintf(", login with SELECT 1 on %d", logins)
	}
	switch {
	case r.Verify == VerifyOff:
		hs = "; handshake check off (--verify=false)"
	case r.verifyUnavailable && handshakes == 0:
		hs = "; handshake not checked (pods cannot be reached by port-forward)"
	case handshakes < readyN:
		hs = fmt.Sprintf("; handshake checked on %d of %d pods (not reached by port-forward during the run: %s)", handshakes, readyN, strings.Join(slices.Compact(slices.Sorted(slices.Values(r.unreached))), ", "))
	}
	return fmt.Sprintf("%d pods replaced and Ready, ssl %s%s%s", readyN, ssl, detail, hs), nil
}

func mounted(u *unstructured.Unstructured, path string) bool {
	cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		cm, _ := c.(map[string]any)
		ms, _, _ := unstructured.NestedSlice(cm, "volumeMounts")
		for _, m := range ms {
			mm, _ := m.(map[string]any)
			if mm["mountPath"] == path {
				return true
			}
		}
	}
	return false
}

func (r *Runner) delete(ctx context.Context, s plan.Step) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	opts := metav1.DeleteOptions{DryRun: r.dryRun()}
	var obj metav1.Object
	var del func(context.Context, string, metav1.DeleteOptions) error
	var err error
	switch s.Object.Kind {
	case "Certificate":
		del = r.Clients.CertManager.Certificates(ns).Delete
	case "Secret":
		obj, err = r.Clients.Core.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		del = r.Clients.Core.Secrets(ns).Delete
	case "ConfigMap":
		obj, err = r.Clients.Core.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		del = r.Clients.Core.ConfigMaps(ns).Delete
	default:
		return "", fmt.Errorf("cannot delete a %s", s.Object.Kind)
	}
	if err == nil && obj != nil {
		// Only what is ours: our label, or (a Secret) written by our
		// Certificate, as cert-manager's annotation says; and only the
		// object just checked (UID precondition).
		cert := obj.GetAnnotations()[cmapi.CertificateNameKey]
		byOurCert := s.Object.Kind == "Secret" && cert != "" && (cert == pgpool.ServerCertName(r.Target.Name) || cert == pgpool.ClientCertName(r.Target.Name))
		if !byOurCert && !tls.Ours(obj, r.Target.Name) {
			return "", &tls.NotOursError{Kind: s.Object.Kind, Namespace: ns, Name: name}
		}
		uid := obj.GetUID()
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	if err == nil {
		err = del(ctx, name, opts)
	}
	if apierrors.IsNotFound(err) {
		return "already gone", nil
	}
	if err != nil {
		return "", fmt.Errorf("delete %s %s/%s: %w", s.Object.Kind, ns, name, err)
	}
	return r.answer("deleted"), nil
}

func (r *Runner) record(ctx context.Context, s plan.Step, spec plan.RecordSpec, failure error) (string, error) {
	if r.held == nil && !r.ServerDryRun {
		// This run did not get the lock (another run holds it and is
		// changing the workload): there is nothing of ours to record.
		return "not recorded: this run did not hold the lock", nil
	}
	lo := pgpool.LastOperation{Operation: spec.Operation, Time: time.Now().UTC().Format(time.RFC3339), Result: "Succeeded", By: r.holder()}
	if failure != nil {
		lo.Result, lo.Error = "Failed", failure.Error()
	}
	b, _ := json.Marshal(lo)
	ann := map[string]any{pgpool.AnnotationLastOperation: string(b)}
	if failure == nil {
		if spec.TLS == "" {
			ann[pgpool.AnnotationTLS] = nil
		} else {
			ann[pgpool.AnnotationTLS] = spec.TLS
		}
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	ns, name := s.Object.Namespace, s.Object.Name
	reason, typ, msg := "TLS"+camel(lo.Operation)+"Succeeded", corev1.EventTypeNormal, fmt.Sprintf("kubectl-pgpool tls %s succeeded", lo.Operation)
	if failure != nil {
		reason, typ, msg = "TLS"+camel(lo.Operation)+"Failed", corev1.EventTypeWarning, fmt.Sprintf("kubectl-pgpool tls %s failed: %s", lo.Operation, failure)
	}
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name + ".", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{APIVersion: s.Object.APIVersion, Kind: s.Object.Kind, Namespace: ns, Name: name,
			UID: types.UID(r.Target.UID)},
		Reason: reason, Message: truncate(msg, 1000), Type: typ, FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source: corev1.EventSource{Component: FieldManager}, ReportingController: "kubectl-pgpool.io/cli", ReportingInstance: r.holder(),
	}
	// Three independent writes: at once, errors in this order.
	err := parallel.All(
		func() error {
			if failure == nil && spec.BackupDone {
				return r.backupDone(ctx, ns)
			}
			return nil
		},
		func() error {
			if _, err := r.Clients.Dynamic.Resource(r.Target.GVR).Namespace(ns).Patch(ctx, name, types.MergePatchType, patch,
				metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()}); err != nil {
				return fmt.Errorf("annotate %s %s/%s: %w", s.Object.Kind, ns, name, err)
			}
			return nil
		},
		func() error {
			if _, err := r.Clients.Core.Events(ns).Create(ctx, ev, metav1.CreateOptions{DryRun: r.dryRun()}); err != nil {
				return fmt.Errorf("create Event on %s %s/%s: %w", s.Object.Kind, ns, name, err)
			}
			return nil
		},
	)
	if err != nil {
		return "", err
	}
	return r.answer(fmt.Sprintf("%s recorded (Event %s)", lo.Result, reason)), nil
}

func camel(op string) string {
	var sb strings.Builder
	for _, p := range strings.Split(op, "-") {
		if p != "" {
			sb.WriteString(strings.ToUpper(p[:1]) + p[1:])
		}
	}
	return sb.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// applyBundle writes the CA bundle ConfigMap: the issuer's CA from the
// server Secret as it is now, then the CAs the plan carries. It refuses to
// take over a ConfigMap of that name that is not the plugin's.
func (r *Runner) applyBundle(ctx context.Context, s plan.Step, spec plan.ApplyBundleSpec) (string, error) {
	ns := s.Object.Namespace
	// The ConfigMap as it is and the issuer's CA: read at once.
	var sec *corev1.Secret
	err := parallel.All(func() error {
		cur, err := r.Clients.Core.ConfigMaps(ns).Get(ctx, s.Object.Name, metav1.GetOptions{})
		switch {
		case err == nil && !tls.Ours(cur, r.Target.Name):
			return &tls.NotOursError{Kind: "ConfigMap", Namespace: ns, Name: s.Object.Name}
		case err != nil && !apierrors.IsNotFound(err):
			return fmt.Errorf("get ConfigMap %s/%s: %w", ns, s.Object.Name, err)
		}
		return nil
	}, func() (err error) {
		if spec.Data != nil {
			return nil
		}
		sec, err = r.Clients.Core.Secrets(ns).Get(ctx, spec.IssuerCAFrom, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && r.ServerDryRun {
			// Not issued yet (a dry run issues nothing): send the rest, so
			// the server still checks the object and our permission.
			sec, err = &corev1.Secret{}, nil
		}
		if err != nil {
			return fmt.Errorf("read the issuer's CA from Secret %s/%s: %w", ns, spec.IssuerCAFrom, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if spec.Data != nil {
		cm := tls.BundleConfigMap(ns, r.Target.Name, nil, nil, nil)
		cm.Data = spec.Data
		return r.writeBundle(ctx, cm)
	}
	issuerCA := sec.Data["ca.crt"]
	if len(tls.Subjects(issuerCA)) == 0 && !r.ServerDryRun {
		return "", fmt.Errorf("Secret %s/%s has no ca.crt: its issuer does not publish its CA, which pgpool needs (ssl_ca_cert) to verify client certificates; use an issuer that writes ca.crt (CA, Vault, self-signed)", ns, sec.Name)
	}
	return r.writeBundle(ctx, tls.BundleConfigMap(ns, r.Target.Name, issuerCA, spec.PreviousCA, spec.BackendCA))
}

// writeBundle applies the CA bundle ConfigMap.
func (r *Runner) writeBundle(ctx context.Context, cm *corev1.ConfigMap) (string, error) {
	body, err := json.Marshal(cm)
	if err != nil {
		return "", err
	}
	force := true
	if _, err := r.Clients.Core.ConfigMaps(cm.Namespace).Patch(ctx, cm.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: FieldManager, Force: &force, DryRun: r.dryRun()}); err != nil {
		return "", fmt.Errorf("apply ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return r.answer(fmt.Sprintf("CA bundle: %s", strings.Join(tls.Subjects([]byte(cm.Data[tls.BundleKey])), "; "))), nil
}

// readBundle reads the CA bundle ConfigMap (nil when there is none).
func (r *Runner) readBundle(ctx context.Context, ns string) (*corev1.ConfigMap, error) {
	name := tls.CABundleName(r.Target.Name)
	cm, err := r.Clients.Core.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("verify: get ConfigMap %s/%s: %w", ns, name, err)
	}
	return cm, nil
}

// bundleProblem checks that the CA bundle starts with the server Secret's
// CA (what pgpool reads as the first certificate of ca.pem).
func bundleProblem(cm *corev1.ConfigMap, sec *corev1.Secret) string {
	if cm == nil {
		return ""
	}
	got, want := tls.Subjects([]byte(cm.Data[tls.BundleKey])), tls.Subjects(sec.Data["ca.crt"])
	if len(want) > 0 && (len(got) == 0 || got[0] != want[0]) {
		return fmt.Sprintf("ConfigMap %s/%s: the CA bundle starts with %v, not the issuer's CA %s", cm.Namespace, cm.Name, got, want[0])
	}
	return ""
}

// loginPod logs in through one pod and runs SELECT 1: with the client
// certificate ("cert") or the --verify-login user ("password"), over TLS
// when tlsOn.
func (r *Runner) loginPod(ctx context.Context, pod string, tlsOn bool, how string) (string, error) {
	l := verify.Login{TLS: tlsOn, ServerName: "localhost", Database: r.Database}
	if l.Database == "" {
		l.Database = "postgres"
	}
	want, err := r.expectation(ctx, tlsOn)
	if err != nil {
		return "", err
	}
	l.Roots = want.Roots
	switch how {
	case "cert":
		if want.ClientCert == nil || want.ClientCert.Leaf == nil {
			return "", fmt.Errorf("login check: Secret %s/%s holds no usable client certificate", r.Target.Namespace, pgpool.ClientCertName(r.Target.Name))
		}
		l.ClientCert, l.User = want.ClientCert, want.ClientCert.Leaf.Subject.CommonName
	case "password":
		l.User, l.Password = r.Password.User, r.Password.Password
		if r.Password.Database != "" {
			l.Database = r.Password.Database
		}
		l.ClientCert = want.ClientCert
	}
	res, err := verify.LoginAndQuery(ctx, r.dialer(), pod, l)
	if err != nil {
		return "", err
	}
	backend := "plain"
	if res.BackendSSL {
		backend = "TLS"
	}
	via := "without TLS"
	if res.TLSVersion != "" {
		via = "over " + res.TLSVersion
	}
	return fmt.Sprintf("logged in as %s %s, SELECT 1 answered (pgpool to backend: %s)", l.User, via, backend), nil
}

// backup writes the backup Secret, unless a Secret of that name that is not
// the plugin's is there (it is never changed). What discovery read saves a
// round trip: no backup then means create (which fails if one appeared
// since), ours then means apply on the resourceVersion read (which fails if
// it changed since); only then is the Secret read again.
func (r *Runner) backup(ctx context.Context, s plan.Step, spec plan.BackupSpec) (string, error) {
	ns, name := s.Object.Namespace, s.Object.Name
	secrets := r.Clients.Core.Secrets(ns)
	sec := spec.Secret.DeepCopy()
	var err error
	switch {
	case r.Target.BackupForeign:
		return "", &tls.NotOursError{Kind: "Secret", Namespace: ns, Name: name}
	case r.Target.Backup == nil:
		_, err = secrets.Create(ctx, sec, metav1.CreateOptions{FieldManager: FieldManager, DryRun: r.dryRun()})
	default:
		sec.ResourceVersion = r.Target.Backup.ResourceVersion
		err = r.applyBackup(ctx, sec)
	}
	if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
		// Changed since discovery: read it, and write it unless it is not ours.
		cur, gerr := secrets.Get(ctx, name, metav1.GetOptions{})
		switch {
		case gerr == nil && !tls.Ours(cur, r.Target.Name):
			return "", &tls.NotOursError{Kind: "Secret", Namespace: ns, Name: name}
		case gerr != nil && !apierrors.IsNotFound(gerr):
			return "", fmt.Errorf("get Secret %s/%s: %w", ns, name, gerr)
		}
		sec.ResourceVersion = ""
		err = r.applyBackup(ctx, sec)
	}
	if err != nil {
		return "", fmt.Errorf("write the backup Secret %s/%s: %w", ns, name, err)
	}
	return r.answer("backed up"), nil
}

// applyBackup server-side applies the backup Secret (on its
// resourceVersion, when set).
func (r *Runner) applyBackup(ctx context.Context, sec *corev1.Secret) error {
	body, err := json.Marshal(sec)
	if err != nil {
		return err
	}
	force := true
	_, err = r.Clients.Core.Secrets(sec.Namespace).Patch(ctx, sec.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: FieldManager, Force: &force, DryRun: r.dryRun()})
	return err
}

// backupDone marks the backup as that of a finished operation.
func (r *Runner) backupDone(ctx context.Context, ns string) error {
	name := pgpool.BackupName(r.Target.Name)
	ann := map[string]string{pgpool.AnnotationBackupDone: "true"}
	if after, err := r.digestsNow(ctx, ns); err == nil {
		b, _ := json.Marshal(after)
		ann[pgpool.AnnotationBackupAfter] = string(b)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	_, err := r.Clients.Core.Secrets(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager, DryRun: r.dryRun()})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("mark the backup Secret %s/%s as done: %w", ns, name, err)
	}
	return nil
}

// digestsNow reads the Certificates and the workload as the operation
// left them and returns their digests (pgpool.Digests), for the backup:
// a later rollback refuses to discard changes made to them since.
func (r *Runner) digestsNow(ctx context.Context, ns string) (map[string]string, error) {
	t := r.Target
	names := []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)}
	certs := map[string]*cmapi.Certificate{}
	for _, n := range names {
		c, err := r.Clients.CertManager.Certificates(ns).Get(ctx, n, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, err
		default:
			certs[n] = c
		}
	}
	w, err := r.Clients.Dynamic.Resource(t.GVR).Namespace(ns).Get(ctx, t.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	raw, _, _ := unstructured.NestedMap(w.Object, "spec", "template")
	var tmpl corev1.PodTemplateSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &tmpl); err != nil {
		return nil, err
	}
	return pgpool.Digests(certs, names, &tmpl, t.ContainerIndex, t.TLSMountPath), nil
}

// RefusedError is a Certificate the plan would apply that the API server's
// admission refuses (cert-manager's webhook, or a policy of the cluster's),
// found by a dry run before the first write.
type RefusedError struct {
	Namespace, Name string
	Err             error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the API server refuses Certificate %s/%s as the plan would apply it (server-side dry run): %v; nothing was changed: change what the certificate asks for, or ask the cluster's admins about the policy", e.Namespace, e.Name, e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// applyCertificate is the apply step's write (server-side apply, forced,
// as the plugin's field manager), also sent as a dry run by
// CheckCertificates.
func applyCertificate(ctx context.Context, c Clients, s plan.Step, spec plan.ApplyCertificateSpec, dryRun []string) (*cmapi.Certificate, error) {
	force := true
	return c.CertManager.Certificates(s.Object.Namespace).Patch(ctx, s.Object.Name, types.ApplyPatchType,
		spec.Manifest, metav1.PatchOptions{FieldManager: FieldManager, Force: &force, DryRun: dryRun})
}

// CheckCertificates sends each Certificate the plan applies to the API
// server as the step will (server-side apply) but with dryRun=All, all at
// once, so that what admission refuses (cert-manager's webhook, a
// ValidatingAdmissionPolicy, Kyverno or Gatekeeper) is reported before the
// first write instead of after the backup and the lock. Refusals are
// *RefusedError; the first in plan order is returned.
func CheckCertificates(ctx context.Context, c Clients, p *plan.Plan) error {
	var steps []plan.Step
	for _, s := range p.Steps {
		if _, ok := s.Spec.(plan.ApplyCertificateSpec); ok {
			steps = append(steps, s)
		}
	}
	return parallel.Each(len(steps), func(i int) error {
		s := steps[i]
		_, err := applyCertificate(ctx, c, s, s.Spec.(plan.ApplyCertificateSpec), []string{metav1.DryRunAll})
		switch {
		case err == nil:
			return nil
		case apierrors.IsInvalid(err), apierrors.IsForbidden(err), apierrors.IsBadRequest(err):
			return &RefusedError{Namespace: s.Object.Namespace, Name: s.Object.Name, Err: err}
		default:
			return fmt.Errorf("check Certificate %s/%s by a server-side dry run: %w", s.Object.Namespace, s.Object.Name, err)
		}
	})
}
