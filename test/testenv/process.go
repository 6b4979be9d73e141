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

// Group is the plugin run as a process group of its own, in a new pid
// namespace (unshare --pid --fork --mount-proc), as on another machine or
// in a container with the same host name.
type Group struct {
	cmd    *exec.Cmd
	Stdout bytes.Buffer
	lines  chan string
	seen   []string
}

// StartInPIDNamespace runs `kubectl pgpool ARGS...` in ns in a new pid
// namespace; lastPID (>0) is written to that namespace's ns_last_pid
// first, so that the plugin runs as lastPID+1 there.
func (e *Env) StartInPIDNamespace(t testing.TB, ns string, lastPID int, args ...string) *Group {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs unshare and root (new pid namespaces)")
	}
	script := `"$0" "$@"; exit $?`
	if lastPID > 0 {
		script = fmt.Sprintf(`echo %d > /proc/sys/kernel/ns_last_pid && "$0" "$@"; exit $?`, lastPID)
	}
	full := append([]string{"--pid", "--fork", "--mount-proc", "sh", "-c", script, e.PluginBinary(t), "--kubeconfig", e.Kubeconfig, "-n", ns}, args...)
	g := &Group{cmd: exec.Command("unshare", full...), lines: make(chan string, 1024)}
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	g.cmd.Stdout = &g.Stdout
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(g.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			g.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		_ = g.cmd.Wait()
	})
	return g
}

// WaitLine reads the run's progress (stderr) until a line matches; false
// when the run ended first.
func (g *Group) WaitLine(match func(string) bool) bool {
	for l := range g.lines {
		g.seen = append(g.seen, l)
		if match(l) {
			return true
		}
	}
	return false
}

// Signal sends sig to the whole group (SIGSTOP, SIGCONT, SIGKILL).
func (g *Group) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(-g.cmd.Process.Pid, sig); err != nil {
		t.Fatal(err)
	}
}

// Wait waits for the run to end and returns its exit code and its whole
// progress output.
func (g *Group) Wait() (int, string) {
	for l := range g.lines {
		g.seen = append(g.seen, l)
	}
	_ = g.cmd.Wait()
	return g.cmd.ProcessState.ExitCode(), strings.Join(g.seen, "\n")
}
