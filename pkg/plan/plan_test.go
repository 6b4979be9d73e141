package plan

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

type fakeRunner struct {
	fail    map[int]bool
	ran     []int
	failure []error
}

func (f *fakeRunner) Run(_ context.Context, _ Step, failure error, report func(string)) (string, error) {
	i := len(f.ran)
	f.ran = append(f.ran, i)
	f.failure = append(f.failure, failure)
	report("working")
	if f.fail[i] {
		return "", errors.New("boom")
	}
	return "ok", nil
}

// After a failure the remaining steps are skipped, but Always steps (record,
// unlock) still run and see the failure; the first error is returned.
func TestExecuteSkipsAfterFailureButRunsAlways(t *testing.T) {
	p := &Plan{Operation: "add", Steps: []Step{
		{Kind: Lock}, {Kind: Apply}, {Kind: Patch}, {Kind: Record, Always: true}, {Kind: Unlock, Always: true},
	}}
	r := &fakeRunner{fail: map[int]bool{1: true}}
	var events []EventType
	res, err := Execute(context.Background(), p, r, func(e Event) { events = append(events, e.Type) })
	if err == nil || res.Succeeded {
		t.Fatal("want a failure")
	}
	want := []string{"succeeded", "failed", "skipped", "succeeded", "succeeded"}
	for i, s := range res.Steps {
		if s.Status != want[i] {
			t.Errorf("step %d: %s, want %s", i, s.Status, want[i])
		}
	}
	if len(r.ran) != 4 {
		t.Fatalf("ran %d steps, want 4 (the skipped one not run)", len(r.ran))
	}
	if r.failure[2] == nil || r.failure[3] == nil {
		t.Fatal("Always steps after a failure must be given it")
	}
	if r.failure[0] != nil {
		t.Fatal("steps before the failure must not see one")
	}
	progress := 0
	for _, e := range events {
		if e == StepProgress {
			progress++
		}
	}
	if progress != 4 {
		t.Fatalf("%d progress events, want 4", progress)
	}
}

// Always steps run even when the context was cancelled (Ctrl-C), so the
// lock is released.
func TestAlwaysStepsRunAfterCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := &Plan{Steps: []Step{{Kind: Unlock, Always: true}}}
	var sawCancelled bool
	r := runnerFunc(func(ctx context.Context, s Step, _ error, _ func(string)) (string, error) {
		sawCancelled = ctx.Err() != nil
		return "", nil
	})
	if _, err := Execute(ctx, p, r, nil); err != nil {
		t.Fatal(err)
	}
	if sawCancelled {
		t.Fatal("the unlock step got a cancelled context")
	}
}

type runnerFunc func(context.Context, Step, error, func(string)) (string, error)

func (f runnerFunc) Run(ctx context.Context, s Step, failure error, r func(string)) (string, error) {
	return f(ctx, s, failure, r)
}

func TestWrites(t *testing.T) {
	if Wait.Writes() || Verify.Writes() || Rollout.Writes() || !Patch.Writes() || !Evict.Writes() {
		t.Fatal("Writes")
	}
}

// Concurrent steps run at once (each waits here for the other to start);
// the error is the first in step order, not the first to happen; the step
// after the group is skipped.
func TestConcurrentSteps(t *testing.T) {
	a, b, bDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	steps := []Step{
		{Kind: Apply, Object: Object{Name: "a"}},
		{Kind: Apply, Object: Object{Name: "b"}, Concurrent: true},
		{Kind: Wait, Object: Object{Name: "c"}},
	}
	r := runnerFunc(func(ctx context.Context, s Step, _ error, _ func(string)) (string, error) {
		switch s.Object.Name {
		case "a":
			close(a)
			<-b
			<-bDone // a fails after b
			return "", errors.New("a failed")
		case "b":
			close(b)
			<-a
			defer close(bDone)
			return "", errors.New("b failed")
		}
		return "ran", nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := Execute(ctx, &Plan{Steps: steps}, r, nil)
	if err == nil || !strings.Contains(err.Error(), "step 1 (apply") || !strings.Contains(err.Error(), "a failed") {
		t.Fatalf("error: %v", err)
	}
	got := []string{res.Steps[0].Status, res.Steps[1].Status, res.Steps[2].Status}
	if strings.Join(got, ",") != "failed,failed,skipped" {
		t.Fatalf("statuses %v", got)
	}
}

// Only a failed record or unlock, with nothing skipped, is bookkeeping.
func TestOnlyBookkeepingFailed(t *testing.T) {
	res := func(steps ...StepResult) *Result { return &Result{Steps: steps} }
	ok, failed, skipped := "succeeded", "failed", "skipped"
	for _, tc := range []struct {
		res  *Result
		want bool
	}{
		{res(StepResult{Kind: Verify, Status: ok}, StepResult{Kind: Record, Status: failed}, StepResult{Kind: Unlock, Status: ok}), true},
		{res(StepResult{Kind: Verify, Status: ok}, StepResult{Kind: Record, Status: ok}, StepResult{Kind: Unlock, Status: failed}), true},
		{res(StepResult{Kind: Verify, Status: failed}, StepResult{Kind: Record, Status: ok}, StepResult{Kind: Unlock, Status: ok}), false},
		{res(StepResult{Kind: Evict, Status: skipped}, StepResult{Kind: Record, Status: failed}), false},
		{res(StepResult{Kind: Verify, Status: ok}, StepResult{Kind: Record, Status: ok}), false},
	} {
		if got := OnlyBookkeepingFailed(tc.res); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.res.Steps, got, tc.want)
		}
	}
}
