package verify

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
)

// fakeServer answers one StartupMessage with msgs and records the
// startup parameters it got.
func fakeServer(t *testing.T, msgs ...[]byte) (Dialer, chan string) {
	t.Helper()
	got := make(chan string, 8)
	return func(context.Context, string) (net.Conn, error) {
		c, s := net.Pipe()
		go func() {
			defer func() { _ = s.Close() }()
			var h [4]byte
			if _, err := io.ReadFull(s, h[:]); err != nil {
				return
			}
			body := make([]byte, binary.BigEndian.Uint32(h[:])-4)
			if _, err := io.ReadFull(s, body); err != nil {
				return
			}
			got <- strings.ReplaceAll(string(body[4:]), "\x00", " ")
			for _, m := range msgs {
				if _, err := s.Write(m); err != nil {
					return
				}
			}
			_, _ = io.Copy(io.Discard, s) // until the client closes
		}()
		return c, nil
	}, got
}

func msg(typ byte, body []byte) []byte {
	return append(append([]byte{typ}, binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))...), body...)
}

func TestTryClassifiesAnswers(t *testing.T) {
	errResp := msg('E', []byte("SFATAL\x00C28000\x00Mclient authentication failed\x00Dno pool_hba.conf entry\x00\x00"))
	notice := msg('N', []byte("SNOTICE\x00Mhello\x00\x00"))
	for _, tc := range []struct {
		name   string
		msgs   [][]byte
		answer string
	}{
		{"error", [][]byte{errResp}, AnswerRefused},
		{"notice then error", [][]byte{notice, errResp}, AnswerRefused},
		{"ok", [][]byte{msg('R', []byte{0, 0, 0, 0})}, AnswerOK},
		{"md5", [][]byte{msg('R', []byte{0, 0, 0, 5, 1, 2, 3, 4})}, AnswerChallenged},
		{"sasl", [][]byte{msg('R', append([]byte{0, 0, 0, 10}, "SCRAM-SHA-256\x00\x00"...))}, AnswerChallenged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dial, got := fakeServer(t, tc.msgs...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, _ := dial(ctx, "p")
			answer, message, err := Try(ctx, conn, conf.Attempt{DB: "db1", User: "u1"}, false)
			if err != nil || answer != tc.answer {
				t.Fatalf("answer %q %q %v, want %q", answer, message, err, tc.answer)
			}
			if answer == AnswerRefused && message != "FATAL: client authentication failed (no pool_hba.conf entry)" {
				t.Fatalf("message %q", message)
			}
			if p := <-got; !strings.Contains(p, "user u1 database db1 ") {
				t.Fatalf("startup parameters %q", p)
			}
		})
	}
}

// A probe admitted by a rule that only port-forward's address meets is
// not-checked; admitted against the file it is accepted, and named so.
func TestProveRefusalJudges(t *testing.T) {
	hba := "host all all 127.0.0.1/32 trust\nhostssl all all 0.0.0.0/0 cert\n"
	m, _ := conf.NewHBAModel(hba, true, true)
	pol := Policy{Plaintext: true, PoolHBA: hba, Model: m}
	dial, _ := fakeServer(t, msg('R', []byte{0, 0, 0, 0}))
	r := ProveRefusal(context.Background(), dial, "p", pol)
	if r.Plaintext != NotChecked || r.Failure(pol) == nil || !strings.Contains(r.Detail[0], "admits port-forward's 127.0.0.1") {
		t.Fatalf("%+v", r)
	}
	hba = "hostssl all all 0.0.0.0/0 cert\n"
	m, _ = conf.NewHBAModel(hba, true, true)
	pol = Policy{Plaintext: true, PoolHBA: hba, Model: m}
	r = ProveRefusal(context.Background(), dial, "p", pol)
	if r.Plaintext != Accepted || !strings.Contains(r.Failure(pol).Error(), "does not enforce that file") {
		t.Fatalf("%+v", r)
	}
	refuse, _ := fakeServer(t, msg('E', []byte("SFATAL\x00Mno\x00\x00")))
	if r = ProveRefusal(context.Background(), refuse, "p", pol); r.Plaintext != Refused || r.Certless != NotChecked || r.Failure(pol) != nil {
		t.Fatalf("%+v", r)
	}
}

// A remote trust rule the user kept (--remote-trust keep) admits a probe:
// reported, not a failure of the roll; without that choice it is
// accepted. (The fake speaks no TLS: the plain kind is judged the same.)
func TestKeptTrustIsNotAFailure(t *testing.T) {
	hba := "host all repmgr 0.0.0.0/0 trust\nhostssl all all 0.0.0.0/0 cert\n"
	m, _ := conf.NewHBAModel(hba, true, true)
	ok, _ := fakeServer(t, msg('R', []byte{0, 0, 0, 0}))
	pol := Policy{Plaintext: true, PoolHBA: hba, Model: m, KeepTrust: true}
	if got := tryAllKind(t, ok, pol); got != Refused {
		t.Fatalf("kept trust: %s", got)
	}
	pol.KeepTrust = false
	if got := tryAllKind(t, ok, pol); got != Accepted {
		t.Fatalf("trust not kept: %s", got)
	}
}

func tryAllKind(t *testing.T, dial Dialer, p Policy) string {
	t.Helper()
	got, _ := tryAll(context.Background(), dial, "p", []conf.Attempt{{DB: "postgres", User: "repmgr"}}, false, p)
	return got
}
