// Package apiretry owns retrying transient API server errors at the HTTP
// transport, under every client the plugin builds: a request the server
// surely did not carry out (it could not be sent, or it was refused with 429
// or 503 before it was handled) is sent again after a backoff, and so is a
// read (GET, watches included) that failed with a reset connection or any
// 5xx. A write whose fate is unknown (a 500, 502 or 504, or a connection
// lost after it was sent) is not repeated: the step fails and the
// operation's own convergence (run again, or roll back) takes over. It does
// no Kubernetes I/O of its own.
package apiretry

import (
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Backoff is the default: 6 tries over about 3 s.
var defaultBackoff = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 6}

// Transport retries transient failures of the wrapped RoundTripper.
type Transport struct {
	Next    http.RoundTripper
	Backoff wait.Backoff
	// OnRetry, if set, hears of every retry (for tests and debugging).
	OnRetry func(req *http.Request, why string)
}

// Wrap is a rest.Config WrapTransport that adds the retries.
func Wrap(rt http.RoundTripper) http.RoundTripper {
	return &Transport{Next: rt, Backoff: defaultBackoff}
}

// RoundTrip sends req, again after a backoff while it fails transiently.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	b := t.Backoff
	if b.Steps == 0 {
		b = defaultBackoff
	}
	for {
		resp, err := t.Next.RoundTrip(req)
		why := transient(req, resp, err)
		if why == "" || b.Steps <= 1 || (req.Body != nil && req.GetBody == nil) {
			return resp, err
		}
		if req.GetBody != nil {
			body, gerr := req.GetBody()
			if gerr != nil {
				return resp, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
		}
		if t.OnRetry != nil {
			t.OnRetry(req, why)
		}
		timer := time.NewTimer(b.Step())
		select {
		case <-req.Context().Done():
			timer.Stop()
			return nil, req.Context().Err()
		case <-timer.C:
		}
	}
}

// transient says why the outcome of req is worth another try, or "".
func transient(req *http.Request, resp *http.Response, err error) string {
	read := req.Method == http.MethodGet || req.Method == http.MethodHead
	if err != nil {
		if req.Context().Err() != nil {
			return "" // cancelled or timed out: not the server's fault
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return "cannot connect: " + err.Error() // never sent
		}
		if read && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE)) {
			return "connection lost: " + err.Error()
		}
		return ""
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if resp.Header.Get("Retry-After") != "" {
			return "" // client-go waits and retries these itself
		}
		if isEviction(req) && resp.StatusCode == http.StatusTooManyRequests {
			return "" // a PodDisruptionBudget said no: pkg/restart decides
		}
		return resp.Status
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout:
		if read {
			return resp.Status
		}
	}
	return ""
}

func isEviction(req *http.Request) bool {
	p := req.URL.Path
	return len(p) > len("/eviction") && p[len(p)-len("/eviction"):] == "/eviction"
}
