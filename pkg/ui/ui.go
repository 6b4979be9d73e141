// Package ui owns what a person sees: plans rendered with lipgloss on a
// terminal (plain text in a pipe or with --no-color), live progress of an
// executing plan (a spinner line per running step on a TTY, one plain line
// per event otherwise), and the final summary. It only writes to the
// writers it is given.
package ui

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/mattn/go-isatty"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// IsTerminal reports whether w is a terminal.
func IsTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// Styles are the lipgloss styles; the zero Styles render plain text.
type Styles struct {
	on                                                 bool
	Title, Kind, Object, Dim, Add, Del, OK, Fail, Warn lipgloss.Style
}

// Failure and Warning render text red and yellow (plain without colour).
func (s Styles) Failure(text string) string { return s.r(s.Fail, text) }

// Warning renders text yellow (plain without colour).
func (s Styles) Warning(text string) string { return s.r(s.Warn, text) }

// NewStyles returns coloured styles when color is true, plain ones otherwise.
func NewStyles(w io.Writer, color bool) Styles {
	if !color {
		return Styles{}
	}
	r := lipgloss.NewRenderer(w)
	return Styles{
		on:     true,
		Title:  r.NewStyle().Bold(true),
		Kind:   r.NewStyle().Foreground(lipgloss.Color("12")).Bold(true),
		Object: r.NewStyle().Foreground(lipgloss.Color("14")),
		Dim:    r.NewStyle().Faint(true),
		Add:    r.NewStyle().Foreground(lipgloss.Color("10")),
		Del:    r.NewStyle().Foreground(lipgloss.Color("9")),
		OK:     r.NewStyle().Foreground(lipgloss.Color("10")).Bold(true),
		Fail:   r.NewStyle().Foreground(lipgloss.Color("9")).Bold(true),
		Warn:   r.NewStyle().Foreground(lipgloss.Color("11")).Bold(true),
	}
}

func (s Styles) r(st lipgloss.Style, text string) string {
	if !s.on {
		return text
	}
	return st.Render(text)
}

// RenderPlan writes the plan as numbered steps with their diffs.
func RenderPlan(w io.Writer, p *plan.Plan, s Styles, dryRun string) {
	title := fmt.Sprintf("Plan: tls %s on %s %s/%s", p.Operation, p.Target.Kind, p.Target.Namespace, p.Target.Name)
	if p.Restart != "" {
		title += fmt.Sprintf(" (pods replaced by %s)", p.Restart)
	}
	if dryRun != "" && dryRun != "none" {
		title += fmt.Sprintf(" [dry run: %s]", dryRun)
	}
	fmt.Fprintln(w, s.r(s.Title, title))
	for _, warn := range p.Warnings {
		fmt.Fprintln(w, s.r(s.Fail, "warning: ")+Clean(warn))
	}
	for i, st := range p.Steps {
		with := ""
		if st.Concurrent {
			with = s.r(s.Dim, fmt.Sprintf(" (at the same time as %d)", i))
		}
		fmt.Fprintf(w, "%3d. %s %s%s\n", i+1, s.r(s.Kind, fmt.Sprintf("%-7s", st.Kind)), s.r(s.Object, st.Object.String()), with)
		fmt.Fprintf(w, "     %s\n", s.r(s.Dim, Clean(st.Description)))
		for _, l := range strings.Split(strings.TrimSuffix(Clean(st.Diff), "\n"), "\n") {
			if l == "" {
				continue
			}
			switch {
			case strings.HasPrefix(l, "+"):
				l = s.r(s.Add, l)
			case strings.HasPrefix(l, "-"):
				l = s.r(s.Del, l)
			default:
				l = s.r(s.Dim, l)
			}
			fmt.Fprintf(w, "       %s\n", l)
		}
	}
	if p.Then != "" {
		fmt.Fprintf(w, "%s %s\n", s.r(s.Title, "Then:"), Clean(p.Then))
	}
}

// RenderResult writes the summary of an executed plan.
func RenderResult(w io.Writer, res *plan.Result, s Styles) {
	if res.Succeeded {
		fmt.Fprintf(w, "%s tls %s on %s %s/%s succeeded in %s\n", s.r(s.OK, "✓"), res.Operation, res.Target.Kind, res.Target.Namespace, res.Target.Name, dur(res.Seconds))
		return
	}
	fmt.Fprintf(w, "%s tls %s on %s %s/%s failed after %s: %s\n", s.r(s.Fail, "✗"), res.Operation, res.Target.Kind, res.Target.Namespace, res.Target.Name, dur(res.Seconds), Clean(res.Error))
}

func dur(sec float64) string {
	return (time.Duration(sec * float64(time.Second))).Round(10 * time.Millisecond).String()
}

// Progress renders plan events. On a terminal it keeps a live spinner line
// for each running step (concurrent steps run together); otherwise it
// writes one plain line per event.
type Progress struct {
	w     io.Writer
	s     Styles
	live  bool
	total int

	mu      sync.Mutex
	running []*running // in step order
	drawn   int        // spinner lines on the screen
	frame   int
	stop    chan struct{}
	done    chan struct{}
}

// running is a step on a spinner line.
type running struct {
	index   int
	label   string
	sub     string
	started time.Time
}

const spinner = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

// NewProgress returns a renderer for a plan of total steps; live selects the
// terminal view.
func NewProgress(w io.Writer, s Styles, total int, live bool) *Progress {
	return &Progress{w: w, s: s, total: total, live: live}
}

// Start begins the spinner (live mode only).
func (p *Progress) Start() {
	if !p.live {
		return
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.mu.Lock()
				p.frame++
				p.redraw()
				p.mu.Unlock()
			}
		}
	}()
}

// Stop ends the spinner.
func (p *Progress) Stop() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.done
	p.mu.Lock()
	p.clear()
	p.mu.Unlock()
}

// clear erases the spinner lines (the cursor ends at the start of the
// first).
func (p *Progress) clear() {
	if !p.live || p.drawn == 0 {
		return
	}
	fmt.Fprint(p.w, "\r\033[2K"+strings.Repeat("\033[1A\r\033[2K", p.drawn-1))
	p.drawn = 0
}

func (p *Progress) redraw() {
	p.clear()
	lines := make([]string, 0, len(p.running))
	for _, r := range p.running {
		line := fmt.Sprintf("%s %s %s", string([]rune(spinner)[p.frame%len([]rune(spinner))]), r.label, p.s.r(p.s.Dim, "("+time.Since(r.started).Round(100*time.Millisecond).String()+")"))
		if r.sub != "" {
			line += p.s.r(p.s.Dim, " — "+r.sub)
		}
		lines = append(lines, line)
	}
	if len(lines) > 0 {
		fmt.Fprint(p.w, strings.Join(lines, "\n"))
	}
	p.drawn = len(lines)
}

// Event renders one plan event.
func (p *Progress) Event(e plan.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	label := fmt.Sprintf("[%d/%d] %s %s", e.Index+1, p.total, e.Step.Kind, e.Step.Object)
	if !p.live {
		switch e.Type {
		case plan.StepStarted:
			fmt.Fprintf(p.w, "%s: started: %s\n", label, Clean(e.Step.Description))
		case plan.StepProgress:
			fmt.Fprintf(p.w, "%s: %s\n", label, Clean(e.Message))
		case plan.StepSucceeded:
			fmt.Fprintf(p.w, "%s: done in %s%s\n", label, e.Elapsed.Round(10*time.Millisecond), suffix(Clean(e.Message)))
		case plan.StepFailed:
			fmt.Fprintf(p.w, "%s: FAILED after %s: %s\n", label, e.Elapsed.Round(10*time.Millisecond), Clean(e.Message))
		case plan.StepSkipped:
			fmt.Fprintf(p.w, "%s: skipped (an earlier step failed)\n", label)
		}
		return
	}
	switch e.Type {
	case plan.StepStarted:
		p.running = append(p.running, &running{index: e.Index, label: label, started: time.Now()})
		p.redraw()
	case plan.StepProgress:
		for _, r := range p.running {
			if r.index == e.Index {
				r.sub = Clean(e.Message)
			}
		}
		p.redraw()
	case plan.StepSucceeded, plan.StepFailed, plan.StepSkipped:
		p.clear()
		mark, msg := p.s.r(p.s.OK, "✓"), suffix(e.Message)
		switch e.Type {
		case plan.StepFailed:
			mark, msg = p.s.r(p.s.Fail, "✗"), ": "+e.Message
		case plan.StepSkipped:
			mark, msg = p.s.r(p.s.Dim, "-"), " skipped"
		}
		fmt.Fprintf(p.w, "%s %s %s%s\n", mark, label, p.s.r(p.s.Dim, "("+e.Elapsed.Round(10*time.Millisecond).String()+")"), msg)
		for i, r := range p.running {
			if r.index == e.Index {
				p.running = append(p.running[:i], p.running[i+1:]...)
				break
			}
		}
		p.redraw()
	}
}

func suffix(m string) string {
	if m == "" {
		return ""
	}
	return ": " + m
}
