package cmd

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// Ctrl-C during discovery or preflight (a client-go "context canceled")
// exits 130, not 1.
func TestInterruptedBeforeThePlanExits130(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(plan.ErrInterrupted)
	err := WithCause(ctx, fmt.Errorf("get statefulsets.apps pgpool: %w", context.Canceled))
	if ExitCode(err) != 130 {
		t.Fatalf("exit %d for %v", ExitCode(err), err)
	}
	if err := WithCause(context.Background(), errors.New("x")); ExitCode(err) != 1 {
		t.Fatalf("an uncancelled failure: exit %d", ExitCode(err))
	}
}
