package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"sigs.k8s.io/yaml"
)

// PrintDoc writes d as JSON or YAML when -o asks for it (text is printed
// by the caller).
func PrintDoc(out io.Writer, output string, d any) error {
	return printDoc(out, output, d, false)
}

// PrintDocSecrets is PrintDoc that shows secrets (--show-secrets).
func PrintDocSecrets(out io.Writer, output string, d any, show bool) error {
	return printDoc(out, output, d, show)
}

func printDoc(out io.Writer, output string, d any, show bool) error {
	if !show && (output == "json" || output == "yaml") {
		r, err := Redact(d)
		if err != nil {
			return err
		}
		d = r
	}
	switch output {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(d)
	case "yaml":
		b, err := yaml.Marshal(d)
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	return nil
}

// Confirm asks q and reads the answer; Ctrl-C at the prompt ends it at once
// (the read goes on in the background until the process exits).
func Confirm(ctx context.Context, in io.Reader, out io.Writer, q string) (bool, error) {
	fmt.Fprint(out, q)
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(in).ReadString('\n')
		ch <- answer{line, err}
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(out)
		return false, context.Cause(ctx)
	case a := <-ch:
		if a.err != nil && a.line == "" {
			return false, a.err
		}
		s := strings.ToLower(strings.TrimSpace(a.line))
		return s == "y" || s == "yes", nil
	}
}
