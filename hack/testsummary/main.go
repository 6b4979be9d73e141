// Command testsummary reads `go test -json` on stdin and writes what plain
// `go test` writes (the output of the tests that failed, a line per
// package), then the ten slowest tests with their times. It exits 1 when a
// test or a package failed, so that `go test -json ... | testsummary`
// fails as `go test` does.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

type timing struct {
	name    string
	elapsed float64
}

func main() {
	os.Exit(run(os.Stdin, os.Stdout))
}

func run(in io.Reader, out io.Writer) int {
	outputs := map[string]*strings.Builder{} // by package + test
	var slow []timing
	failed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Fprintln(out, sc.Text()) // not an event (a build error): as it is
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			b := outputs[key]
			if b == nil {
				b = &strings.Builder{}
				outputs[key] = b
			}
			b.WriteString(e.Output)
		case "pass", "skip":
			if e.Test != "" && !strings.Contains(e.Test, "/") && e.Action == "pass" {
				slow = append(slow, timing{e.Package[strings.LastIndex(e.Package, "/")+1:] + "." + e.Test, e.Elapsed})
			}
			if e.Test == "" {
				fmt.Fprintf(out, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(outputs, key)
		case "fail":
			failed = true
			if b := outputs[key]; b != nil {
				fmt.Fprint(out, b.String())
			}
			delete(outputs, key)
			if e.Test == "" {
				// A package that failed without a test failing (a panic, a
				// timeout): what its unfinished tests wrote, then its line.
				for k, b := range outputs {
					if strings.HasPrefix(k, e.Package+" ") {
						fmt.Fprint(out, b.String())
						delete(outputs, k)
					}
				}
				fmt.Fprintf(out, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			if e.Test != "" && !strings.Contains(e.Test, "/") {
				slow = append(slow, timing{e.Package[strings.LastIndex(e.Package, "/")+1:] + "." + e.Test + " (FAILED)", e.Elapsed})
			}
		}
	}
	sort.Slice(slow, func(i, j int) bool { return slow[i].elapsed > slow[j].elapsed })
	if len(slow) > 0 {
		fmt.Fprintln(out, "\nthe ten slowest tests:")
		for i, s := range slow {
			if i == 10 {
				break
			}
			fmt.Fprintf(out, "  %7.1fs  %s\n", s.elapsed, s.name)
		}
	}
	if failed {
		return 1
	}
	return 0
}
