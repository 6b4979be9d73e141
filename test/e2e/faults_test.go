package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
)

// faults sits between the plugin's clients and the API server and breaks
// every third request in turn: the API server is unreachable (never sent),
// answers 503 without Retry-After, a read answers 500 or loses its
// connection after the server handled it, and a watch ends early.
type faults struct {
	mu   sync.Mutex
	n    int
	seen map[string]int
}

// faultyTransport is one wrapped transport; they share the counts.
type faultyTransport struct {
	*faults
	next http.RoundTripper
}

func (f faultyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	if strings.Contains(req.URL.Path, "/portforward") || req.Header.Get("Upgrade") != "" {
		return f.next.RoundTrip(req)
	}
	read := req.Method == http.MethodGet
	watch := req.URL.Query().Get("watch") == "true"
	kind := ""
	switch {
	case n%3 != 0:
	case watch && n%2 == 0:
		kind = "watch closed"
	default:
		kind = []string{"unreachable", "503", "500", "connection reset"}[(n/3)%4]
		if !read && (kind == "500" || kind == "connection reset") {
			kind = "503"
		}
	}
	if kind != "" {
		f.mu.Lock()
		f.seen[kind]++
		f.mu.Unlock()
	}
	synthetic := func(code int) *http.Response {
		return &http.Response{StatusCode: code, Status: fmt.Sprintf("%d injected", code), Header: http.Header{"Content-Type": {"text/plain"}},
			Body: io.NopCloser(strings.NewReader("injected")), Request: req, ProtoMajor: 1, ProtoMinor: 1}
	}
	switch kind {
	case "unreachable":
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	case "503":
		return synthetic(http.StatusServiceUnavailable), nil
	case "500":
		return synthetic(http.StatusInternalServerError), nil
	}
	resp, err := f.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	switch kind {
	case "connection reset":
		_ = resp.Body.Close()
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	case "watch closed":
		resp.Body = &endAfterFirstRead{ReadCloser: resp.Body}
	}
	return resp, nil
}

// endAfterFirstRead ends a watch stream after its first read.
type endAfterFirstRead struct {
	io.ReadCloser
	read bool
}

func (e *endAfterFirstRead) Read(p []byte) (int, error) {
	if e.read {
		return 0, io.EOF
	}
	e.read = true
	return e.ReadCloser.Read(p)
}

// add and rotate on 3 pods go through while every third API request
// fails transiently: the plugin retries them (pkg/apiretry) and its watches
// start over (client-go's informers), and both reach their goal.
func TestTransientAPIErrorsAreRetried(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 3)
	f := &faults{seen: map[string]int{}}
	run := func(args ...string) {
		t.Helper()
		var out, errOut bytes.Buffer
		root := cmd.NewRootCmd(genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut}, cmd.BuildInfo{Version: "test"},
			func(c *genericclioptions.ConfigFlags) {
				c.WrapConfigFn = func(cfg *rest.Config) *rest.Config {
					cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return faultyTransport{faults: f, next: rt} })
					return cfg
				}
			})
		root.SetArgs(append([]string{"--kubeconfig", env.Kubeconfig, "-n", ns}, args...))
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%s with transient API errors: %v\n%s\n%s", strings.Join(args, " "), err, out.String(), errOut.String())
		}
	}
	run("tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes")
	checkVolume(t, ns, l, true)
	checkLastOperation(t, ns, l, "add", "Succeeded")
	run("tls", "rotate", "pgpool", "--yes")
	checkLastOperation(t, ns, l, "rotate", "Succeeded")
	t.Logf("faults injected in %d requests: %v", f.n, f.seen)
	for _, k := range []string{"unreachable", "503", "500", "connection reset", "watch closed"} {
		if f.seen[k] == 0 {
			t.Errorf("no %q was injected", k)
		}
	}
}
