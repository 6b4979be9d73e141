package ui

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// In a pipe: one plain line per event, no escape sequences.
func TestPlainProgress(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b, NewStyles(&b, false), 2, false)
	p.Start()
	s := plan.Step{Kind: plan.Evict, Object: plan.Object{Kind: "Pod", Namespace: "demo", Name: "pgpool-0"}, Description: "evict"}
	p.Event(plan.Event{Type: plan.StepStarted, Index: 0, Step: s})
	p.Event(plan.Event{Type: plan.StepProgress, Index: 0, Step: s, Message: "PDB said no"})
	p.Event(plan.Event{Type: plan.StepSucceeded, Index: 0, Step: s, Elapsed: 1500 * time.Millisecond, Message: "replaced"})
	p.Event(plan.Event{Type: plan.StepFailed, Index: 1, Step: s, Message: "x"})
	p.Stop()
	out := b.String()
	if strings.Contains(out, "\033") || strings.Contains(out, "\r") {
		t.Fatalf("escape sequences in plain output: %q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.Contains(lines[2], "done in 1.5s: replaced") || !strings.Contains(lines[3], "FAILED") {
		t.Fatalf("unexpected lines:\n%s", out)
	}
}

func TestPlainPlanHasNoColour(t *testing.T) {
	var b bytes.Buffer
	RenderPlan(&b, &plan.Plan{Operation: "add", Target: plan.Object{Kind: "StatefulSet", Namespace: "d", Name: "p"},
		Steps: []plan.Step{{Kind: plan.Patch, Diff: "- a\n+ b\n"}}}, NewStyles(&b, false), "client")
	if strings.Contains(b.String(), "\033") || !strings.Contains(b.String(), "[dry run: client]") {
		t.Fatalf("%q", b.String())
	}
}

// Two concurrent steps get a spinner line each; when one ends, its line
// becomes the done line and the other's spinner is drawn again.
func TestLiveProgressConcurrent(t *testing.T) {
	var b strings.Builder
	p := NewProgress(&b, NewStyles(&b, false), 4, true)
	a := plan.Step{Kind: plan.Apply, Object: plan.Object{Kind: "Certificate", Namespace: "demo", Name: "server"}}
	c := plan.Step{Kind: plan.Apply, Object: plan.Object{Kind: "Certificate", Namespace: "demo", Name: "client"}}
	p.Event(plan.Event{Type: plan.StepStarted, Index: 2, Step: a})
	p.Event(plan.Event{Type: plan.StepStarted, Index: 3, Step: c})
	if !strings.Contains(b.String(), "[3/4] apply Certificate demo/server (0s)\n⠋ [4/4] apply Certificate demo/client") {
		t.Fatalf("two spinner lines expected:\n%q", b.String())
	}
	b.Reset()
	p.Event(plan.Event{Type: plan.StepSucceeded, Index: 2, Step: a, Message: "applied"})
	got := b.String()
	// Both lines erased (one up), the done line, then the other spinner.
	if !strings.HasPrefix(got, "\r\033[2K\033[1A\r\033[2K✓ [3/4] apply Certificate demo/server (0s): applied\n") || !strings.HasSuffix(got, "[4/4] apply Certificate demo/client (0s)") {
		t.Fatalf("after one ended:\n%q", got)
	}
}
