// Package plan owns the Plan of a TLS operation as data: an ordered list of
// typed steps (create, patch, delete, evict, wait, verify, ...), each naming
// its target object and carrying a readable change. The same Plan is printed
// for --dry-run, executed by Execute, and compared with golden files in tests.
// Executing a step is delegated to a Runner, so this package does no
// Kubernetes I/O and prints nothing: progress leaves as Events.
package plan

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Kind is what a step does.
type Kind string

// The step kinds.
const (
	Lock    Kind = "lock"    // take the operation lock on the workload
	Apply   Kind = "apply"   // create or update an object (server-side apply)
	Patch   Kind = "patch"   // patch part of an object
	Trigger Kind = "trigger" // set a Certificate's Issuing condition (re-issue now)
	Wait    Kind = "wait"    // wait for a condition, by watch, with a deadline
	Evict   Kind = "evict"   // evict a pod and wait for its Ready replacement
	Rollout Kind = "rollout" // wait for the workload controller's own rolling update
	Verify  Kind = "verify"  // check the result
	Delete  Kind = "delete"  // delete an object
	Record  Kind = "record"  // record the outcome on the workload (annotation and Event)
	Unlock  Kind = "unlock"  // release the lock
)

// Writes reports whether a step of kind k writes to the API server.
func (k Kind) Writes() bool {
	switch k {
	case Lock, Apply, Patch, Trigger, Evict, Delete, Record, Unlock:
		return true
	}
	return false
}

// Object names a Kubernetes object.
type Object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

func (o Object) String() string {
	if o.Namespace == "" {
		return o.Kind + "/" + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// Step is one typed step of a Plan.
type Step struct {
	Kind        Kind   `json:"kind"`
	Object      Object `json:"object"`
	Description string `json:"description"`
	// Diff is a readable change (e.g. of pgpool.conf); never Secret data.
	Diff string `json:"diff,omitempty"`
	// Always steps run even after an earlier step failed (unlock, record).
	Always bool `json:"always,omitempty"`
	// Concurrent: the step runs at the same time as the step before it
	// (independent writes or waits, such as the server and the client
	// Certificate), to save round trips to the API server.
	Concurrent bool `json:"concurrent,omitempty"`
	// Spec is what the Runner needs to carry out the step, typed by kind.
	Spec Spec `json:"spec"`
}

// Plan is the ordered list of steps of one operation on one pgpool.
type Plan struct {
	Operation string `json:"operation"`
	Target    Object `json:"target"`
	// Restart says how pods are replaced: "evict" or "rollout".
	Restart  string   `json:"restart,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Steps    []Step   `json:"steps"`
	// Then says what the command plans and runs next when this plan
	// succeeds (a renewal of the issuer's CA goes in stages, each its own
	// plan: a plan can restart only pods that exist when it is made); ""
	// when nothing follows.
	Then string `json:"then,omitempty"`
	// Patches are the plan's changes to objects that exist, as patches
	// for a source of truth (-o patch); Creates names the objects it
	// creates; Unprinted names changes that are not printed (a Secret's
	// data), with why.
	Patches   []PatchDoc `json:"-"`
	Creates   []Object   `json:"-"`
	Unprinted []string   `json:"-"`
}

// PatchDoc is one existing object's change as a patch: a JSON patch (a
// list of operations, with the tests that pin what it was planned
// against) or a merge patch (an object with apiVersion, kind and
// metadata, which kustomize takes as a strategic merge patch). A document
// is an entry of a kustomization's patches, and its patch goes to
// `kubectl patch --type json|merge`.
type PatchDoc struct {
	Target PatchTarget `json:"target"`
	Patch  string      `json:"patch"`
}

// PatchTarget names the object a PatchDoc changes, as kustomize does.
type PatchTarget struct {
	Group     string `json:"group,omitempty"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// JSONPatch reports whether the patch is a JSON patch (else a merge patch).
func (d PatchDoc) JSONPatch() bool { return strings.HasPrefix(strings.TrimSpace(d.Patch), "[") }

// Runner carries out one step against a cluster. failure is the error
// that failed the operation so far (nil while every step succeeded): only
// Always steps run after one, and those that record the outcome need it.
// report sends progress lines while the step runs (e.g. "PDB refused
// eviction, retrying").
type Runner interface {
	Run(ctx context.Context, s Step, failure error, report func(msg string)) (result string, err error)
}

// EventType is the kind of progress event.
type EventType string

// Event types.
const (
	StepStarted   EventType = "started"
	StepProgress  EventType = "progress"
	StepSucceeded EventType = "succeeded"
	StepFailed    EventType = "failed"
	StepSkipped   EventType = "skipped"
)

// Event is a progress event of Execute.
type Event struct {
	Type    EventType     `json:"type"`
	Index   int           `json:"index"`
	Step    Step          `json:"-"`
	Message string        `json:"message,omitempty"`
	Elapsed time.Duration `json:"elapsed"`
}

// StepResult is what happened to one step.
type StepResult struct {
	Kind        Kind    `json:"kind"`
	Object      Object  `json:"object"`
	Description string  `json:"description"`
	Status      string  `json:"status"` // succeeded, failed, skipped
	Message     string  `json:"message,omitempty"`
	Seconds     float64 `json:"seconds"`
}

// Result is the outcome of Execute.
type Result struct {
	Operation string `json:"operation"`
	Target    Object `json:"target"`
	Succeeded bool   `json:"succeeded"`
	Error     string `json:"error,omitempty"`
	// Warning: the change succeeded and was verified, but a bookkeeping
	// step after it (record, unlock) failed; nothing was undone.
	Warning string       `json:"warning,omitempty"`
	Seconds float64      `json:"seconds"`
	Steps   []StepResult `json:"steps"`
}

// Execute runs the steps in order; a run of Concurrent steps (with the
// step before them) runs at once, and the next step starts when all of them
// ended. After the first failure the remaining steps are skipped, except
// those marked Always, which still run (with a context that is not
// cancelled, so a lock is released after Ctrl-C). The returned error is the
// first failure in step order. onEvent may be called from several
// goroutines, one at a time.
func Execute(ctx context.Context, p *Plan, r Runner, onEvent func(Event)) (*Result, error) {
	var mu sync.Mutex
	emit := func(e Event) {
		if onEvent != nil {
			mu.Lock()
			defer mu.Unlock()
			onEvent(e)
		}
	}
	start := time.Now()
	res := &Result{Operation: p.Operation, Target: p.Target, Steps: make([]StepResult, len(p.Steps))}
	var firstErr error
	for i := 0; i < len(p.Steps); {
		j := i + 1
		for j < len(p.Steps) && p.Steps[j].Concurrent {
			j++
		}
		errs := make([]error, j-i)
		var wg sync.WaitGroup
		for k := i; k < j; k++ {
			s := p.Steps[k]
			res.Steps[k] = StepResult{Kind: s.Kind, Object: s.Object, Description: s.Description}
			if firstErr != nil && !s.Always {
				res.Steps[k].Status = "skipped"
				emit(Event{Type: StepSkipped, Index: k, Step: s})
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[k-i] = runStep(ctx, r, k, s, firstErr, &res.Steps[k], emit)
			}()
		}
		wg.Wait()
		for k, err := range errs {
			if err != nil && firstErr == nil {
				s := p.Steps[i+k]
				firstErr = fmt.Errorf("step %d (%s %s): %w", i+k+1, s.Kind, s.Object, err)
			}
		}
		i = j
	}
	res.Seconds = time.Since(start).Seconds()
	res.Succeeded = firstErr == nil
	if firstErr != nil {
		res.Error = firstErr.Error()
	}
	return res, firstErr
}

// OnlyBookkeepingFailed reports whether every failed step of res records
// or unlocks, and no step was skipped: the change itself was done and
// proven, so a failure there must not undo it.
func OnlyBookkeepingFailed(res *Result) bool {
	failed := false
	for _, s := range res.Steps {
		switch s.Status {
		case "skipped":
			return false
		case "failed":
			if s.Kind != Record && s.Kind != Unlock {
				return false
			}
			failed = true
		}
	}
	return failed
}

// runStep runs step i and fills sr.
func runStep(ctx context.Context, r Runner, i int, s Step, failure error, sr *StepResult, emit func(Event)) error {
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if s.Always {
		runCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	}
	defer cancel()
	t0 := time.Now()
	emit(Event{Type: StepStarted, Index: i, Step: s})
	msg, err := r.Run(runCtx, s, failure, func(m string) {
		emit(Event{Type: StepProgress, Index: i, Step: s, Message: m, Elapsed: time.Since(t0)})
	})
	el := time.Since(t0)
	sr.Seconds = el.Seconds()
	sr.Message = msg
	if err != nil {
		sr.Status = "failed"
		sr.Message = err.Error()
		emit(Event{Type: StepFailed, Index: i, Step: s, Elapsed: el, Message: err.Error()})
		return err
	}
	sr.Status = "succeeded"
	emit(Event{Type: StepSucceeded, Index: i, Step: s, Elapsed: el, Message: msg})
	return nil
}

// ErrTimeout marks a step that ran out of time; the command maps it to
// exit code 124.
var ErrTimeout = errors.New("timed out")

// ErrInterrupted is the cause of a context cancelled by Ctrl-C, SIGTERM or
// SIGHUP; a step stopped by it is not a timeout, and the command maps it to
// exit code 130.
var ErrInterrupted = errors.New("interrupted")
