package planner

import "testing"

// Issue 27, item 9: names from the cluster printed in a command line to
// paste are quoted when a shell would read them otherwise.
func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"pg-ha": "pg-ha", "": "", "a b": "'a b'", "x;rm -rf /": "'x;rm -rf /'", "it's": `'it'"'"'s'`} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
