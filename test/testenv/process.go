package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the plugin built once per test process, for the tests that run
// it as a process of its own (to kill it).
type binary struct {
	once sync.Once
	path string
	err  error
}

func (b *binary) remove() {
	if b.path != "" {
		_ = os.RemoveAll(filepath.Dir(b.path))
	}
}

// PluginBinary builds kubectl-pgpool (once) and returns its path; it is
// removed when the environment stops.
func (e *Env) PluginBinary(t testing.TB) string {
	t.Helper()
	e.bin.once.Do(func() {
		dir, err := os.MkdirTemp("", "kubectl-pgpool-test-")
		if err != nil {
			e.bin.err = err
			return
		}
		out := filepath.Join(dir, "kubectl-pgpool")
		c := exec.Command("go", "build", "-o", out, "./cmd/kubectl-pgpool")
		c.Dir = e.Root
		if b, err := c.CombinedOutput(); err != nil {
			e.bin.err = fmt.Errorf("go build: %v\n%s", err, b)
			return
		}
		e.bin.path = out
	})
	if e.bin.err != nil {
		t.Fatal(e.bin.err)
	}
	return e.bin.path
}

// KillAt runs `kubectl pgpool ARGS... --yes` in ns as a process of its own
// and sends it sig when a line of its progress (stderr) matches; it returns
// the exit code (-1: killed by the signal). A run that ends before the line
// shows fails the test.
func (e *Env) KillAt(t testing.TB, ns string, sig syscall.Signal, match func(string) bool, args ...string) int {
	t.Helper()
	ctx := Context(t, 10*time.Minute)
	c := exec.CommandContext(ctx, e.PluginBinary(t), append([]string{"--kubeconfig", e.Kubeconfig, "-n", ns}, append(args, "--yes")...)...)
	stderr, err := c.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	c.Stdout = &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	sent := false
	var seen []string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if !sent && match(sc.Text()) {
			if err := c.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			sent = true
		}
	}
	err = c.Wait()
	if !sent {
		t.Fatalf("the run ended (%v) before the line to stop it at:\n%s\n%s", err, strings.Join(seen, "\n"), out.String())
	}
	return c.ProcessState.ExitCode()
}
