package apiretry

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

func fast() wait.Backoff { return wait.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 4} }

// Each row: how the server answers the first two calls, the method, and
// how many calls the client makes in all.
func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		status     int
		retryAfter bool
		calls      int32
	}{
		{"503 on a write is retried (not handled)", http.MethodPost, "/api/v1/namespaces/demo/events", 503, false, 3},
		{"429 on a write is retried", http.MethodPatch, "/api/v1/namespaces/demo/configmaps/x", 429, false, 3},
		{"500 on a read is retried", http.MethodGet, "/api/v1/namespaces/demo/pods", 500, false, 3},
		{"504 on a read is retried", http.MethodGet, "/api/v1/namespaces/demo/pods", 504, false, 3},
		{"500 on a write is not (it may have been carried out)", http.MethodPatch, "/api/v1/namespaces/demo/configmaps/x", 500, false, 1},
		{"429 with Retry-After is client-go's", http.MethodGet, "/api/v1/pods", 429, true, 1},
		{"429 on an eviction is a PDB's answer", http.MethodPost, "/api/v1/namespaces/demo/pods/p/eviction", 429, false, 1},
		{"404 is an answer", http.MethodGet, "/api/v1/namespaces/demo/pods/p", 404, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				body, _ := io.ReadAll(r.Body)
				if r.Method != http.MethodGet && string(body) != "payload" {
					t.Errorf("call %d: body %q, want the request's body again", n, body)
				}
				if n <= 2 {
					if tc.retryAfter {
						w.Header().Set("Retry-After", "1")
					}
					w.WriteHeader(tc.status)
					return
				}
				_, _ = w.Write([]byte("ok"))
			}))
			defer srv.Close()
			rt := &Transport{Next: http.DefaultTransport, Backoff: fast()}
			var body io.Reader
			if tc.method != http.MethodGet {
				body = strings.NewReader("payload")
			}
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, body)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if calls.Load() != tc.calls {
				t.Fatalf("%d calls, want %d", calls.Load(), tc.calls)
			}
		})
	}
}

// A server that cannot be reached is tried Steps times, then the error is
// returned; a write is retried too, since it was never sent.
func TestRetriesWhenTheServerCannotBeReached(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	var retries int
	rt := &Transport{Next: http.DefaultTransport, Backoff: fast(), OnRetry: func(*http.Request, string) { retries++ }}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v1/namespaces/demo/events", strings.NewReader("x"))
	if _, err := rt.RoundTrip(req); err == nil {
		t.Fatal("no error from a closed port")
	}
	if retries != 3 {
		t.Fatalf("%d retries, want 3 (4 tries)", retries)
	}
}
