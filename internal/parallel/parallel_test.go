package parallel

import (
	"errors"
	"testing"
)

// The error reported is the first in order, not the first to happen.
func TestFirstErrorInOrder(t *testing.T) {
	slow, fast := errors.New("first in order"), errors.New("first to happen")
	release := make(chan struct{})
	err := All(
		func() error { <-release; return slow },
		func() error { defer close(release); return fast },
	)
	if !errors.Is(err, slow) {
		t.Fatalf("got %v, want %v", err, slow)
	}
	ran := make([]bool, 3)
	if err := Each(3, func(i int) error { ran[i] = true; return nil }); err != nil || !ran[0] || !ran[1] || !ran[2] {
		t.Fatalf("Each: %v %v", err, ran)
	}
}
