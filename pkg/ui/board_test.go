package ui

import (
	"bytes"
	"strings"
	"testing"
)

// On a terminal a fleet shows one line per pgpool with its latest progress
// line, redrawn in place.
func TestLiveBoard(t *testing.T) {
	var buf bytes.Buffer
	b := NewBoard(&buf, []string{"a/pgpool", "b/pgpool"})
	w := b.Writer(1)
	_, _ = w.Write([]byte("[2/9] apply Secret b/x: started\n[2/9] apply Secret b/x: done in 1s"))
	_, _ = w.Write([]byte("\n"))
	b.Set(0, "succeeded")
	out := buf.String()
	last := out[strings.LastIndex(out, "\x1b[2A"):]
	if !strings.Contains(last, "a/pgpool") || !strings.Contains(last, "succeeded") || !strings.Contains(last, "b/pgpool") || !strings.Contains(last, "[2/9] apply Secret b/x: done in 1s") {
		t.Fatalf("last frame:\n%q", last)
	}
}
