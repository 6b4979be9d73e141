// Package verify owns the proof that a pgpool serves what it should and that
// clients get through it: it reaches a pod's port through the API server's
// port-forward (PortForwardDialer; tests dial a local pgpool instead), sends
// the PostgreSQL SSLRequest and either finishes a TLS handshake that trusts
// the issuer's CA and compares the served leaf certificate (serial and
// SHA-256 fingerprint) with the TLS Secret's, or expects the plain 'N' when
// TLS is off; and it logs in through pgpool with pgx and runs SELECT 1
// (LoginAndQuery). It reads Secrets and port-forwards, and writes nothing.
package verify

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Dialer opens a connection to pgpool's port of one pod.
type Dialer func(ctx context.Context, pod string) (net.Conn, error)

// sslRequestCode is PostgreSQL's SSLRequest code (1234 << 16 | 5679).
const sslRequestCode = 80877103

// Served is what one pgpool answered.
type Served struct {
	TLS      bool      `json:"tls"`
	Version  string    `json:"version,omitempty"` // e.g. TLS 1.3
	Serial   string    `json:"serial,omitempty"`
	SHA256   string    `json:"sha256,omitempty"`
	Subject  string    `json:"subject,omitempty"`
	NotAfter time.Time `json:"notAfter,omitempty"`
	Issuer   string    `json:"issuer,omitempty"`
	Verified bool      `json:"verified"` // the chain verified against the given CA
}

// Expect is what a pod should serve.
type Expect struct {
	TLS bool
	// Leaf is the certificate that must be served (from the TLS Secret).
	Leaf *x509.Certificate
	// Roots are trusted for the handshake (the issuer's CA).
	Roots *x509.CertPool
	// ServerName is checked against the served certificate's names.
	ServerName string
	// ClientCert is presented if pgpool asks for one (cert auth).
	ClientCert *tls.Certificate
}

// Probe sends an SSLRequest on conn and, if pgpool accepts, completes the
// TLS handshake with roots. It closes conn.
func Probe(ctx context.Context, conn net.Conn, roots *x509.CertPool, serverName string, clientCert *tls.Certificate) (*Served, error) {
	defer func() { _ = conn.Close() }()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	answer, err := sslRequest(conn)
	if err != nil {
		return nil, err
	}
	switch answer {
	case 'N':
		return &Served{TLS: false}, nil
	case 'S':
	default:
		return nil, fmt.Errorf("unexpected answer %q to SSLRequest (is this a pgpool or PostgreSQL port?)", answer)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		// Verified below, so that an untrusted certificate is reported with
		// what it is rather than only as a handshake failure.
		InsecureSkipVerify: true, //nolint:gosec // verified by hand against roots below
	}
	if clientCert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return clientCert, nil }
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return nil, errors.New("TLS handshake: no certificate served")
	}
	leaf := st.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	s := &Served{TLS: true, Version: tls.VersionName(st.Version), Serial: leaf.SerialNumber.Text(16),
		SHA256: hex.EncodeToString(sum[:]), Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(), NotAfter: leaf.NotAfter}
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if roots != nil {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: serverName})
		s.Verified = err == nil
	}
	return s, nil
}

// MismatchError says what was served and what was expected.
type MismatchError struct {
	Pod    string
	Served *Served
	Want   string
}

func (e *MismatchError) Error() string {
	got := "no TLS (SSLRequest answered 'N')"
	if e.Served.TLS {
		got = fmt.Sprintf("certificate serial %s (sha256 %.16s..., issuer %s, verified against the CA: %v)", e.Served.Serial, e.Served.SHA256, e.Served.Issuer, e.Served.Verified)
	}
	return fmt.Sprintf("pod %s serves %s, expected %s", e.Pod, got, e.Want)
}

// Check probes one pod through dial and compares with want.
func Check(ctx context.Context, dial Dialer, pod string, want Expect) (*Served, error) {
	conn, err := dial(ctx, pod)
	if err != nil {
		return nil, &DialError{Pod: pod, Err: err}
	}
	s, err := Probe(ctx, conn, want.Roots, want.ServerName, want.ClientCert)
	if errors.Is(err, ErrNoAnswer) {
		return nil, &DialError{Pod: pod, Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod, err)
	}
	if !want.TLS {
		if s.TLS {
			return s, &MismatchError{Pod: pod, Served: s, Want: "no TLS (TLS was removed)"}
		}
		return s, nil
	}
	wantDesc := "TLS"
	if want.Leaf != nil {
		sum := sha256.Sum256(want.Leaf.Raw)
		wantDesc = fmt.Sprintf("certificate serial %s (sha256 %.16s...) from the TLS Secret", want.Leaf.SerialNumber.Text(16), hex.EncodeToString(sum[:]))
		if !s.TLS || s.SHA256 != hex.EncodeToString(sum[:]) {
			return s, &MismatchError{Pod: pod, Served: s, Want: wantDesc}
		}
	}
	if !s.TLS {
		return s, &MismatchError{Pod: pod, Served: s, Want: wantDesc}
	}
	if want.Roots != nil && !s.Verified {
		return s, &MismatchError{Pod: pod, Served: s, Want: wantDesc + " verifying against the issuer's CA"}
	}
	return s, nil
}

// ErrNoAnswer means the connection closed before pgpool answered the
// SSLRequest, so nothing listens there (or the forward failed).
var ErrNoAnswer = errors.New("no answer to SSLRequest")

// DialError is a failure to reach the pod at all (e.g. no kubelet behind
// the node, as with kwok): the caller decides whether that is fatal.
type DialError struct {
	Pod string
	Err error
}

func (e *DialError) Error() string { return fmt.Sprintf("connect to pod %s: %v", e.Pod, e.Err) }
func (e *DialError) Unwrap() error { return e.Err }

// sslRequest sends the SSLRequest on conn and returns pgpool's one-byte
// answer ('S' or 'N').
func sslRequest(conn net.Conn) (byte, error) {
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:4], 8)
	binary.BigEndian.PutUint32(req[4:8], sslRequestCode)
	if _, err := conn.Write(req[:]); err != nil {
		return 0, fmt.Errorf("send SSLRequest: %w", err)
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	return answer[0], nil
}
