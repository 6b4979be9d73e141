package operation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/lock"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/schedule"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// ScheduleRequest is what `tls schedule create` is asked for.
type ScheduleRequest struct {
	Window      schedule.Window
	TimeZone    string
	Every       time.Duration
	Image       string
	HostNetwork bool
	APIServer   string
	// NodeSelector and Tolerations place the job's pod.
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
}

// SchedulePlan is what `tls schedule create` will write.
type SchedulePlan struct {
	Target  *pgpool.Target
	Spec    schedule.Spec
	Objects *schedule.Objects
	// Certificates get renewal windows RenewalLead before each window.
	Certificates []string
	Window       schedule.Window
	Lines        []string
	// Warnings are said on stderr.
	Warnings []string
}

// renewalManager owns the renewal windows on the plugin's Certificates:
// another field manager than the plugin's, so that the plugin's own apply
// of a Certificate (add, change-issuer) leaves them, and schedule delete
// takes them away by applying nothing.
const renewalManager = "kubectl-pgpool-schedule"

// PlanSchedule reads the pgpool and computes the runner's objects, its
// Role from the permissions the plugin's own preflight computes for the
// scheduled rotate (planned as a client dry run, with every pod to
// restart), before any write.
func PlanSchedule(ctx context.Context, c *Clients, ref discover.Ref, req ScheduleRequest) (*SchedulePlan, error) {
	var out Outcome
	// What the job runs: restart the pods that do not serve what their
	// Secret holds, or, when the issuer's CA was renewed in place, re-issue
	// and restart; proven by handshake (--verify=required). The Role is
	// planned from the larger of the two, a rotate that re-issues, with
	// every pod to restart.
	intent := planner.Intent{Operation: planner.Rotate}
	err := Run(ctx, c, ref, intent, Options{DryRun: "client", Verify: runner.VerifyRequired, Timeout: time.Minute},
		Hooks{Planned: func(_ context.Context, o Outcome) error { out = o; return nil }})
	if err != nil {
		return nil, fmt.Errorf("plan the scheduled tls rotate --reissue=false: %w", err)
	}
	if out.Plan == nil {
		return nil, fmt.Errorf("plan the scheduled tls rotate --reissue=false: %s", out.NothingToDo)
	}
	t := out.Target
	if !t.State.Enabled {
		return nil, fmt.Errorf("%s has no TLS: a schedule keeps TLS current; run `kubectl pgpool tls add %s` first", t, t.Name)
	}
	rules := rulesOf(append(needs(t, out.Plan, true),
		// the run's own: its Event and record, and the waits that fail fast.
		access{"", "events", "", "create"}, access{t.GVR.Group, t.GVR.Resource, "", "get"}, access{t.GVR.Group, t.GVR.Resource, "", "patch"},
		access{"cert-manager.io", "certificaterequests", "", "list"}, access{"cert-manager.io", "certificaterequests", "", "watch"},
		access{"cert-manager.io", "issuers", "", "list"}, access{"cert-manager.io", "issuers", "", "watch"}, access{"cert-manager.io", "issuers", "", "get"},
		access{"cert-manager.io", "certificates", "", "get"}, access{"cert-manager.io", "certificates", "", "list"},
		access{"", "pods", "", "get"}, access{"", "services", "", "list"}, access{"", "configmaps", "", "list"}, access{"", "secrets", "", "list"},
		access{t.GVR.Group, t.GVR.Resource, "", "list"},
		// discovery looks the name up among every workload kind
		access{pgpool.StatefulSets.Group, pgpool.StatefulSets.Resource, "", "get"}, access{pgpool.Deployments.Group, pgpool.Deployments.Resource, "", "get"},
		access{pgpool.PetSets.Group, pgpool.PetSets.Resource, "", "get"}))
	name := schedule.Name(t.Name)
	labels := map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: t.Name}
	objs, err := schedule.Build(schedule.Params{Namespace: t.Namespace, Pgpool: t.Name, Window: req.Window, TimeZone: req.TimeZone, Every: req.Every,
		Image: req.Image, Rules: rules, HostNetwork: req.HostNetwork, APIServer: req.APIServer, Labels: labels,
		NodeSelector: req.NodeSelector, Tolerations: req.Tolerations})
	if err != nil {
		return nil, err
	}
	// Someone else's objects of those names are refused.
	for _, o := range scheduleKinds() {
		cur, err := c.Dynamic.Resource(o.gvr).Namespace(t.Namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil && !tls.Ours(cur, t.Name):
			return nil, &tls.NotOursError{Kind: o.kind, Namespace: t.Namespace, Name: name}
		case err != nil && !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("get %s %s/%s: %w", o.kind, t.Namespace, name, err)
		}
	}
	spec := schedule.Spec{Window: req.Window.String(), TimeZone: req.TimeZone, Every: req.Every.String(), CronJob: name, Image: req.Image}
	loc, _ := time.LoadLocation(req.TimeZone)
	p := &SchedulePlan{Target: t, Spec: spec, Objects: objs, Window: req.Window}
	for _, n := range []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)} {
		if crt := t.Certificates[n]; crt != nil && tls.Ours(crt, t.Name) {
			p.Certificates = append(p.Certificates, n)
		}
	}
	p.Lines = append(p.Lines,
		fmt.Sprintf("CronJob %s/%s: schedule %q in %s (concurrencyPolicy Forbid), each job ended by the window's end (activeDeadlineSeconds %d), image %s",
			t.Namespace, name, objs.CronJob.Spec.Schedule, req.TimeZone, *objs.CronJob.Spec.JobTemplate.Spec.ActiveDeadlineSeconds, req.Image),
		fmt.Sprintf("  each job runs: kubectl-pgpool %s", strings.Join(objs.CronJob.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args, " ")),
		fmt.Sprintf("  that is: inside the window %s (%s), tls rotate %s --reissue=false --only-stale --verify=required --yes (with the issuer's CA renewed in place: tls rotate %s --verify=required --yes, which re-issues; with a previous CA that may go: tls rotate %s --reissue=false --verify=required --yes, which drops it), ending by the window's end; outside it, nothing", req.Window, req.TimeZone, t.Name, t.Name, t.Name),
		fmt.Sprintf("ServiceAccount, Role and RoleBinding %s/%s: the Role grants what that rotate needs in namespace %s, nothing cluster-wide:", t.Namespace, name, t.Namespace))
	for _, r := range rules {
		p.Lines = append(p.Lines, fmt.Sprintf("  %s %s: %s", strings.Join(r.APIGroups, ","), strings.Join(r.Resources, ","), strings.Join(r.Verbs, ",")))
	}
	for _, n := range p.Certificates {
		p.Lines = append(p.Lines, fmt.Sprintf("Certificate %s/%s: renewal window %q (%s) for %s, so that cert-manager renews the Secret just before the maintenance window, not in the middle of a day (cert-manager v1.21+; older: its renewBefore, said when applied)",
			t.Namespace, n, req.Window.RenewalCron(), req.TimeZone, schedule.RenewalLead))
	}
	p.Lines = append(p.Lines, fmt.Sprintf("record the schedule on %s (annotation %s); the next window starts %s", t, schedule.AnnotationSchedule, req.Window.Next(time.Now(), loc).Format(time.RFC3339)))
	if tr, err := t.Trust(); err == nil && tr != nil {
		p.Warnings = append(p.Warnings, fmt.Sprintf("tls trust keeps the clients' copies of the CA (%s): a scheduled run that only restarts leaves them alone, but one that changes what clients trust (the issuer's CA renewed in place, a previous CA that may go) writes them, and the job's Role covers namespace %s only: that run fails, saying so, unless ServiceAccount %s/%s may get, create and patch ConfigMap %s there (or update the Bundle); or run that tls rotate yourself",
			tr.Where(), t.Namespace, t.Namespace, name, tr.Name))
	}
	return p, nil
}

// scheduleKinds are the runner's objects, in the order they are deleted
// (the CronJob first, so that no job starts without its permissions).
func scheduleKinds() []scheduleKind {
	return []scheduleKind{
		{"CronJob", schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}},
		{"RoleBinding", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}},
		{"Role", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}},
		{"ServiceAccount", schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}},
	}
}

type scheduleKind struct {
	kind string
	gvr  schema.GroupVersionResource
}

// rulesOf groups the permissions into RBAC rules, one per group and
// resource, sorted.
func rulesOf(as []access) []rbacv1.PolicyRule {
	type key struct{ group, res string }
	verbs := map[key][]string{}
	for _, a := range as {
		k := key{a.group, a.path()}
		if !slices.Contains(verbs[k], a.verb) {
			verbs[k] = append(verbs[k], a.verb)
		}
	}
	var keys []key
	for k := range verbs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].group != keys[j].group {
			return keys[i].group < keys[j].group
		}
		return keys[i].res < keys[j].res
	})
	var out []rbacv1.PolicyRule
	for _, k := range keys {
		v := verbs[k]
		sort.Strings(v)
		out = append(out, rbacv1.PolicyRule{APIGroups: []string{k.group}, Resources: []string{k.res}, Verbs: v})
	}
	return out
}

// ApplySchedule writes the plan's objects (server-side apply) and records
// the schedule on the workload.
func ApplySchedule(ctx context.Context, c *Clients, p *SchedulePlan, dryRun []string) (err error) {
	t := p.Target
	release, err := lockFor(ctx, c, t, "schedule", dryRun)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, release()) }()
	force := true
	opts := metav1.PatchOptions{FieldManager: runner.FieldManager, Force: &force, DryRun: dryRun}
	for _, o := range []struct {
		obj any
		gvr schema.GroupVersionResource
	}{
		{p.Objects.ServiceAccount, schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}},
		{p.Objects.Role, schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}},
		{p.Objects.RoleBinding, schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}},
		{p.Objects.CronJob, schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}},
	} {
		body, err := json.Marshal(o.obj)
		if err != nil {
			return err
		}
		if _, err := c.Dynamic.Resource(o.gvr).Namespace(t.Namespace).Patch(ctx, schedule.Name(t.Name), types.ApplyPatchType, body, opts); err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", o.gvr.Resource, t.Namespace, schedule.Name(t.Name), err)
		}
	}
	for _, n := range p.Certificates {
		w, err := applyRenewal(ctx, c, t, n, &p.Window, p.Spec.TimeZone, dryRun)
		if err != nil {
			return err
		}
		if w != "" {
			p.Warnings = append(p.Warnings, w)
		}
	}
	rec, _ := json.Marshal(p.Spec)
	return annotate(ctx, c, t, map[string]any{schedule.AnnotationSchedule: string(rec)}, dryRun)
}

// applyRenewal sets (w) or takes away (nil) the renewal windows of
// Certificate name. A cert-manager without renewal windows (before v1.21)
// drops the field: then a warning says when the Secret renews instead, and
// whether a window comes before the certificate ends.
func applyRenewal(ctx context.Context, c *Clients, t *pgpool.Target, name string, w *schedule.Window, tz string, dryRun []string) (string, error) {
	obj := map[string]any{"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": map[string]any{"name": name, "namespace": t.Namespace}}
	if w != nil {
		obj["spec"] = map[string]any{"renewal": map[string]any{"policy": "RenewBefore", "windows": []any{map[string]any{
			"cron": w.RenewalCron(), "timezone": tz, "windowDuration": schedule.RenewalLead.String()}}}}
	}
	body, _ := json.Marshal(obj)
	force := true
	crt, err := c.CertManager.Certificates(t.Namespace).Patch(ctx, name, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: renewalManager, Force: &force, DryRun: dryRun})
	if err != nil {
		return "", fmt.Errorf("set the renewal windows of Certificate %s/%s: %w", t.Namespace, name, err)
	}
	if w == nil || crt.Spec.Renewal != nil {
		return "", nil
	}
	before := "a third of its lifetime (cert-manager's default)"
	if crt.Spec.RenewBefore != nil {
		before = crt.Spec.RenewBefore.Duration.String()
		if crt.Spec.RenewBefore.Duration < w.Period()+24*time.Hour {
			return fmt.Sprintf("this cert-manager has no renewal windows (v1.21+): Certificate %s renews %s before it ends, and the next maintenance window may be %s later: raise --renew-before (tls rotate) above %s, or a certificate may end before a window restarts the pods", name, before, w.Period(), w.Period()+24*time.Hour), nil
		}
	}
	return fmt.Sprintf("this cert-manager has no renewal windows (v1.21+): Certificate %s renews %s before it ends, at any hour; the next window restarts the pods", name, before), nil
}

func annotate(ctx context.Context, c *Clients, t *pgpool.Target, ann map[string]any, dryRun []string) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if _, err := c.Dynamic.Resource(t.GVR).Namespace(t.Namespace).Patch(ctx, t.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: runner.FieldManager, DryRun: dryRun}); err != nil {
		return fmt.Errorf("annotate %s: %w", t, err)
	}
	return nil
}

// DeleteSchedule deletes the runner's objects (each only if it is the
// plugin's) and the record; it returns what it deleted.
func DeleteSchedule(ctx context.Context, c *Clients, ref discover.Ref, dryRun []string) ([]string, error) {
	t, err := discover.DiscoverRef(ctx, c.discover(), ref)
	if err != nil {
		return nil, err
	}
	name := schedule.Name(t.Name)
	var done []string
	for _, o := range scheduleKinds() {
		cur, err := c.Dynamic.Resource(o.gvr).Namespace(t.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return done, fmt.Errorf("get %s %s/%s: %w", o.kind, t.Namespace, name, err)
		}
		if !tls.Ours(cur, t.Name) {
			done = append(done, fmt.Sprintf("left %s %s/%s: not the plugin's", o.kind, t.Namespace, name))
			continue
		}
		uid := cur.GetUID()
		prop := metav1.DeletePropagationBackground
		if err := c.Dynamic.Resource(o.gvr).Namespace(t.Namespace).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &prop, DryRun: dryRun}); err != nil && !apierrors.IsNotFound(err) {
			return done, fmt.Errorf("delete %s %s/%s: %w", o.kind, t.Namespace, name, err)
		}
		done = append(done, fmt.Sprintf("deleted %s %s/%s", o.kind, t.Namespace, name))
	}
	for _, n := range []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)} {
		if crt := t.Certificates[n]; crt != nil && crt.Spec.Renewal != nil && tls.Ours(crt, t.Name) {
			if _, err := applyRenewal(ctx, c, t, n, nil, "", dryRun); err != nil {
				return done, err
			}
			done = append(done, fmt.Sprintf("took the renewal windows off Certificate %s/%s", t.Namespace, n))
		}
	}
	if t.Annotations[schedule.AnnotationSchedule] != "" {
		if err := annotate(ctx, c, t, map[string]any{schedule.AnnotationSchedule: nil}, dryRun); err != nil {
			return done, err
		}
		done = append(done, "removed the record from "+t.String())
	}
	return done, nil
}

// ScheduleStatus finds the pgpool and reads its schedule and last run.
func ScheduleStatus(ctx context.Context, c *Clients, ref discover.Ref) (*pgpool.Target, *schedule.Spec, *schedule.Run, error) {
	t, err := discover.DiscoverRef(ctx, c.discover(), ref)
	if err != nil {
		return nil, nil, nil, err
	}
	s, r := ScheduleOf(t)
	return t, s, r, nil
}

// ScheduleOf reads the schedule and the last run recorded on t (nil when
// none, or not readable).
func ScheduleOf(t *pgpool.Target) (*schedule.Spec, *schedule.Run) {
	var s *schedule.Spec
	if a := t.Annotations[schedule.AnnotationSchedule]; a != "" {
		s = &schedule.Spec{}
		if json.Unmarshal([]byte(a), s) != nil {
			s = nil
		}
	}
	var r *schedule.Run
	if a := t.Annotations[schedule.AnnotationLastRun]; a != "" {
		r = &schedule.Run{}
		if json.Unmarshal([]byte(a), r) != nil {
			r = nil
		}
	}
	return s, r
}

// CARenewedFor reports whether t's issuer's CA was renewed in place after
// its server certificate was issued (that CA did not sign it).
func CARenewedFor(ctx context.Context, c *Clients, t *pgpool.Target) bool {
	ca, _ := IssuerSigningCA(ctx, c, t.Namespace, t.State.Issuer)
	if ca == nil {
		return false
	}
	sec, err := c.Core.Secrets(t.Namespace).Get(ctx, pgpool.ServerCertName(t.Name), metav1.GetOptions{})
	return err == nil && len(sec.Data[corev1.TLSCertKey]) > 0 && !tls.SignedBy(sec.Data[corev1.TLSCertKey], ca)
}

// What a scheduled run has rotate do.
const (
	// ScheduledOnlyStale restarts the pods that serve an older certificate
	// than their Secret's (rotate --reissue=false --only-stale).
	ScheduledOnlyStale = "only-stale"
	// ScheduledReissue re-issues under the issuer's CA renewed in place
	// (rotate: its stages).
	ScheduledReissue = "reissue"
	// ScheduledDropPrevious restarts every pod onto a bundle without the
	// previous CA, which may go now (rotate --reissue=false).
	ScheduledDropPrevious = "drop-previous"
)

// RunScheduled is one scheduled run (the CronJob's job): inside an
// occurrence of the window it runs rotate (given a context that ends with
// the window, and what to do: ScheduledReissue when the issuer's CA was
// renewed in place, ScheduledDropPrevious when the CA before may go,
// else ScheduledOnlyStale) and reports which pods it restarted; outside,
// nothing. Both are recorded: an Event and the annotation on the workload.
func RunScheduled(ctx context.Context, c *Clients, ref discover.Ref, w schedule.Window, loc *time.Location, now time.Time, rotate func(ctx context.Context, mode string) error) (schedule.Run, error) {
	run := schedule.Run{Time: now.UTC(), NextRun: w.Next(now, loc).UTC()}
	t, err := discover.DiscoverRef(ctx, c.discover(), ref)
	if err != nil {
		return run, err
	}
	_, end, open := w.Occurrence(now, loc)
	var runErr error
	if !open {
		run.Result, run.Message = "WindowClosed", fmt.Sprintf("outside the window %s (%s): nothing done", w, loc)
	} else {
		before := uids(t.Pods)
		mode, why := ScheduledOnlyStale, ""
		if CARenewedFor(ctx, c, t) {
			mode, why = ScheduledReissue, "the issuer's CA was renewed in place: trusted it, re-issued the certificates (the CA before kept in the bundle) and "
		} else if due := previousCAsDue(ctx, c, t, now); len(due) > 0 {
			mode, why = ScheduledDropPrevious, fmt.Sprintf("the previous CA (%s) may go now: dropped it from the CA bundle and ", strings.Join(due, "; "))
		}
		var mu sync.Mutex
		var waited time.Duration
		rctx, cancel := context.WithDeadline(WithObserver(ctx, func(o Outcome) {
			if o.Result == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, s := range o.Result.Steps {
				if s.Kind == plan.Evict {
					waited += runner.BudgetWait(s.Message)
				}
			}
		}), end)
		runErr = rotate(rctx, mode)
		cancel()
		if waited > 0 {
			run.Waited = waited.String()
			why += fmt.Sprintf("waited %s in all while PodDisruptionBudgets refused evictions, and ", waited)
		}
		after, err := discover.DiscoverRef(ctx, c.discover(), ref)
		if err == nil {
			for _, p := range after.Pods {
				if old, ok := before[p.Name]; ok && old != p.UID {
					run.Restarted = append(run.Restarted, p.Name)
				}
			}
		}
		switch {
		case runErr != nil:
			run.Result, run.Message = "Failed", runErr.Error()
		case len(run.Restarted) == 0:
			run.Result, run.Message = "NothingToDo", "every pod serves the certificate its Secret holds"
		default:
			run.Result, run.Message = "Succeeded", fmt.Sprintf("restarted %s; each proven by handshake", strings.Join(run.Restarted, ", "))
		}
		if why != "" && (runErr == nil || waited > 0) {
			run.Message = why + run.Message
		}
	}
	rec, _ := json.Marshal(run)
	if err := annotate(ctx, c, t, map[string]any{schedule.AnnotationLastRun: string(rec)}, nil); err != nil {
		return run, err
	}
	typ := corev1.EventTypeNormal
	if run.Result == "Failed" {
		typ = corev1.EventTypeWarning
	}
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: t.Name + ".", Namespace: t.Namespace},
		InvolvedObject: corev1.ObjectReference{APIVersion: t.APIVersion, Kind: t.Kind, Namespace: t.Namespace, Name: t.Name, UID: types.UID(t.UID)},
		Reason:         "ScheduledTLS" + run.Result, Message: "scheduled tls rotate: " + run.Message, Type: typ,
		Source: corev1.EventSource{Component: tls.ManagerName}, FirstTimestamp: metav1.NewTime(now), LastTimestamp: metav1.NewTime(now), Count: 1}
	if _, err := c.Core.Events(t.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return run, fmt.Errorf("record the Event on %s: %w", t, err)
	}
	return run, runErr
}

// previousCAsDue names the previous CAs of t's bundle that may go now.
func previousCAsDue(ctx context.Context, c *Clients, t *pgpool.Target, now time.Time) []string {
	if t.Bundle == nil || t.Bundle.Data[tls.RecordKey] == "" {
		return nil
	}
	leaves, _, err := c.clientLeaves(ctx, t)
	if err != nil {
		return nil // unknown: it stays
	}
	return planner.PreviousCAsDue(t, planner.Facts{Now: now, ClientLeaves: leaves})
}

func uids(pods []corev1.Pod) map[string]types.UID {
	m := map[string]types.UID{}
	for _, p := range pods {
		m[p.Name] = p.UID
	}
	return m
}

// lockFor takes t's lock for a change outside an operation's plan (tls
// trust, tls schedule), as an operation's first step does: a run that
// holds it makes the change wait its turn (refused, said), and a change
// killed half-way is finished by running it again. The release says
// whether it was released. A dry run takes nothing.
func lockFor(ctx context.Context, c *Clients, t *pgpool.Target, op string, dryRun []string) (release func() error, err error) {
	if len(dryRun) > 0 {
		return func() error { return nil }, nil
	}
	labels := map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: t.Name}
	held, _, err := lock.Acquire(ctx, c.Coordination, t.Namespace, pgpool.LeaseName(t.Name), op, labels, lock.Self(), lock.Options{Duration: pgpool.LockDuration})
	if err != nil {
		return nil, err
	}
	return func() error {
		if _, err := held.Release(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("release the lock of %s: %w", t, err)
		}
		return nil
	}, nil
}
