package ui

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
)

// lineWriter hands each whole line written to it to emit.
type lineWriter struct {
	emit func(line string)
	buf  []byte
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		l.emit(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

// Prefixed writes whole lines to w, each after prefix, one writer at a time
// (the pgpools of a fleet share stderr).
func Prefixed(w io.Writer, mu *sync.Mutex, prefix string) io.Writer {
	return &lineWriter{emit: func(line string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "%s%s\n", prefix, line)
	}}
}

// Board shows one line per pgpool of a fleet on a terminal: its name
// and its latest progress line, redrawn in place as they change.
type Board struct {
	w     io.Writer
	mu    sync.Mutex
	names []string
	lines []string
	drawn bool
}

// NewBoard draws a board of one line per name, each "waiting".
func NewBoard(w io.Writer, names []string) *Board {
	b := &Board{w: w, names: names}
	for range names {
		b.lines = append(b.lines, "waiting")
	}
	b.draw()
	return b
}

// Set replaces pgpool i's line and redraws.
func (b *Board) Set(i int, line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines[i] = line
	b.drawLocked()
}

func (b *Board) draw() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drawLocked()
}

func (b *Board) drawLocked() {
	var sb strings.Builder
	if b.drawn {
		fmt.Fprintf(&sb, "\x1b[%dA", len(b.lines)) // back to the first line
	}
	for i, l := range b.lines {
		line := fmt.Sprintf("%-30s %s", b.names[i], l)
		if len(line) > 150 {
			line = line[:147] + "..."
		}
		fmt.Fprintf(&sb, "\x1b[2K%s\n", line)
	}
	b.drawn = true
	_, _ = io.WriteString(b.w, sb.String())
}

// Stop draws the board one last time.
func (b *Board) Stop() { b.draw() }

// Writer is pgpool i's progress stream: each whole line becomes its line.
func (b *Board) Writer(i int) io.Writer {
	return &lineWriter{emit: func(line string) {
		if line = strings.TrimSpace(line); line != "" {
			b.Set(i, line)
		}
	}}
}
