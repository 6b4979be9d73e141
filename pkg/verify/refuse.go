package verify

// The negative proof: a pod refuses what the policy forbids. Logins are
// tried with no password and no certificate, plain and (under cert auth)
// over TLS; pgpool must answer each with an error before it asks for any
// credential. An answer that lets the login on (AuthenticationOk, or a
// request for a password, SASL or another exchange) ends the connection at
// once, with nothing sent.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
)

// Answers to a login attempt.
const (
	// AnswerRefused: an ErrorResponse before any authentication exchange.
	AnswerRefused = "refused"
	// AnswerOK: AuthenticationOk with no credential at all.
	AnswerOK = "authenticated"
	// AnswerChallenged: pgpool (or the backend through it) asked for a
	// password, a SASL exchange or another credential.
	AnswerChallenged = "asked for a credential"
	// AnswerNoTLS: the pod answered the SSLRequest with 'N'.
	AnswerNoTLS = "no TLS"
)

// protocol3 is the PostgreSQL 3.0 protocol version of a StartupMessage.
const protocol3 = 3 << 16

// Try sends a StartupMessage for a on conn (after an SSLRequest and a TLS
// handshake without a client certificate when tlsOn) and returns pgpool's
// answer, with the server's message for a refusal. It closes conn.
func Try(ctx context.Context, conn net.Conn, a conf.Attempt, tlsOn bool) (answer, message string, err error) {
	defer func() { _ = conn.Close() }()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if tlsOn {
		b, err := sslRequest(conn)
		if err != nil {
			return "", "", err
		}
		if b != 'S' {
			return AnswerNoTLS, "", nil
		}
		// Only refusal is tested: no credential is sent, so the server's
		// identity does not matter here (the handshake proof checks it).
		tc := tls.Client(conn, &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}) //nolint:gosec // a refusal probe sends no secret
		if err := tc.HandshakeContext(ctx); err != nil {
			return AnswerRefused, "TLS handshake refused without a client certificate: " + err.Error(), nil
		}
		conn = tc
	}
	if _, err := conn.Write(startupMessage(a)); err != nil {
		return "", "", fmt.Errorf("send StartupMessage: %w", err)
	}
	for {
		typ, body, err := readMessage(conn)
		if err != nil {
			if tlsOn && isTLSAlert(err) {
				return AnswerRefused, "TLS alert without a client certificate: " + err.Error(), nil
			}
			return "", "", fmt.Errorf("read the answer to a StartupMessage: %w", err)
		}
		switch typ {
		case 'E':
			return AnswerRefused, errorMessage(body), nil
		case 'R':
			if len(body) >= 4 && binary.BigEndian.Uint32(body[:4]) == 0 {
				return AnswerOK, "", nil
			}
			return AnswerChallenged, "", nil
		case 'N', 'v': // a notice, or a protocol version negotiation: read on
		default:
			return "", "", fmt.Errorf("unexpected message %q in answer to a StartupMessage", typ)
		}
	}
}

func startupMessage(a conf.Attempt) []byte {
	var body []byte
	body = binary.BigEndian.AppendUint32(body, protocol3)
	for _, kv := range [][2]string{{"user", a.User}, {"database", a.DB}, {"application_name", "kubectl-pgpool-refusal-probe"}} {
		body = append(append(append(append(body, kv[0]...), 0), kv[1]...), 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

// readMessage reads one backend message (type, body), refusing a body
// over 64 KiB (an answer to a StartupMessage is small).
func readMessage(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:5])
	if n < 4 || n > 64<<10 {
		return 0, nil, fmt.Errorf("message %q of length %d", h[0], n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return h[0], body, nil
}

// errorMessage is an ErrorResponse's severity, message and detail.
func errorMessage(body []byte) string {
	f := map[byte]string{}
	for len(body) > 1 {
		code := body[0]
		end := strings.IndexByte(string(body[1:]), 0)
		if end < 0 {
			break
		}
		f[code] = string(body[1 : 1+end])
		body = body[2+end:]
	}
	s := f['S'] + ": " + f['M']
	if f['D'] != "" {
		s += " (" + f['D'] + ")"
	}
	return s
}

func isTLSAlert(err error) bool {
	var ae tls.AlertError
	return errors.As(err, &ae) || strings.Contains(err.Error(), "remote error: tls")
}

// Results of a negative proof, per kind of connection.
const (
	Refused    = "refused"
	Accepted   = "accepted"
	NotChecked = "not-checked"
)

// Policy is what a pod must refuse, and the pool_hba.conf pgpool should
// read (judged as conf.HBAModel judges it) to say what admitted a probe.
type Policy struct {
	// Plaintext: the sslMode requires TLS, so a plain login must be
	// refused; Certless: clientAuthMode cert, so a TLS login without a
	// client certificate must be refused. Either false: the probe reports
	// what is accepted, and that is no failure.
	Plaintext bool
	Certless  bool
	// TLS: the pod should serve TLS (the certless probe needs it); Cert:
	// clientAuthMode is cert (certless is probed only then).
	TLS, Cert bool
	PoolHBA   string
	Model     conf.HBAModel
	// KeepTrust: a probe admitted by a remote trust rule the user chose to
	// keep (--remote-trust keep) is reported, not counted as accepted.
	KeepTrust bool
}

// Refusal is the negative proof of one pod.
type Refusal struct {
	Plaintext string `json:"plaintext"`
	Certless  string `json:"certless"`
	// Detail says what admitted a probe, or why one was not checked.
	Detail []string `json:"detail,omitempty"`
}

// Failure is the reason the proof falls short of what the policy
// requires, or nil.
func (r *Refusal) Failure(p Policy) error {
	var bad []string
	if p.Plaintext && r.Plaintext != Refused {
		bad = append(bad, "plaintext "+r.Plaintext)
	}
	if p.Certless && r.Certless != Refused {
		bad = append(bad, "TLS without a client certificate "+r.Certless)
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("the policy is not proven: %s (%s)", strings.Join(bad, ", "), strings.Join(r.Detail, "; "))
}

// ProveRefusal tries the policy's forbidden logins on pod through dial.
func ProveRefusal(ctx context.Context, dial Dialer, pod string, p Policy) *Refusal {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	attempts := conf.RefusalAttempts(p.PoolHBA, "kubectl_pgpool_probe_"+hex.EncodeToString(rnd[:]))
	r := &Refusal{Certless: NotChecked}
	var detail []string
	r.Plaintext, detail = tryAll(ctx, dial, pod, attempts, false, p)
	r.Detail = append(r.Detail, detail...)
	if p.Cert && p.TLS {
		r.Certless, detail = tryAll(ctx, dial, pod, attempts, true, p)
		r.Detail = append(r.Detail, detail...)
	} else if p.Certless {
		r.Detail = append(r.Detail, "certless: the pod is not meant to serve TLS")
	}
	return r
}

// tryAll tries every attempt: accepted if pgpool let one on by a rule
// that judges clients elsewhere too (or against the file), not-checked if
// one could not be judged (no connection, or admitted by a rule only
// port-forward's address meets), refused if all were refused.
func tryAll(ctx context.Context, dial Dialer, pod string, attempts []conf.Attempt, tlsOn bool, p Policy) (string, []string) {
	kind := "plaintext"
	if tlsOn {
		kind = "certless"
	}
	result := Refused
	var detail []string
	for _, a := range attempts {
		conn, err := dial(ctx, pod)
		if err != nil {
			return NotChecked, append(detail, fmt.Sprintf("%s: connect to pod %s: %v", kind, pod, err))
		}
		answer, _, err := Try(ctx, conn, a, tlsOn)
		switch {
		case err != nil:
			return NotChecked, append(detail, fmt.Sprintf("%s: %s: %v", kind, a, err))
		case answer == AnswerNoTLS:
			return NotChecked, append(detail, fmt.Sprintf("%s: pod %s answers the SSLRequest with 'N' (no TLS)", kind, pod))
		case answer == AnswerRefused:
			continue
		}
		v := p.Model.JudgeAttempt(a, tlsOn)
		line := fmt.Sprintf("%s: %s %s: %s", kind, a, answer, v.Explain(true))
		if p.KeepTrust && v.Method == "trust" && !v.Loopback {
			detail = append(detail, line+" (kept by --remote-trust keep)")
			continue
		}
		if (v.Loopback && v.Admits()) || v.FileList > 0 {
			if result == Refused {
				result = NotChecked
			}
		} else {
			result = Accepted
		}
		detail = append(detail, line)
	}
	return result, detail
}
