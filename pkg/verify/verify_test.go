package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream" //nolint:staticcheck // client-go's SPDY dialer (transport/spdy) returns this package's types
)

func selfSigned(t *testing.T, serial int64) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "pgpool"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, c
}

// fakePgpool answers an SSLRequest with answer and, for 'S', serves cert.
func fakePgpool(answer byte, cert *tls.Certificate) Dialer {
	return func(ctx context.Context, pod string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer func() { _ = server.Close() }()
			var req [8]byte
			if _, err := io.ReadFull(server, req[:]); err != nil {
				return
			}
			if answer == 0 {
				return // closes without answering
			}
			_, _ = server.Write([]byte{answer})
			if answer == 'S' {
				tc := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{*cert}})
				_ = tc.Handshake()
			}
		}()
		return client, nil
	}
}

func TestCheck(t *testing.T) {
	kp, leaf := selfSigned(t, 42)
	_, other := selfSigned(t, 43)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	s, err := Check(ctx, fakePgpool('S', &kp), "p-0", Expect{TLS: true, Leaf: leaf, Roots: roots, ServerName: "localhost"})
	if err != nil || !s.TLS || !s.Verified || s.Serial != "2a" || s.Version != "TLS 1.3" {
		t.Fatalf("good: %+v %v", s, err)
	}
	_, err = Check(ctx, fakePgpool('S', &kp), "p-0", Expect{TLS: true, Leaf: other, Roots: roots, ServerName: "localhost"})
	var mm *MismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), "serial 2a") || !strings.Contains(err.Error(), "expected certificate serial 2b") {
		t.Fatalf("another leaf: %v", err)
	}
	_, err = Check(ctx, fakePgpool('N', nil), "p-0", Expect{TLS: true, Leaf: leaf})
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), "no TLS") {
		t.Fatalf("'N' when TLS is expected: %v", err)
	}
	if _, err := Check(ctx, fakePgpool('N', nil), "p-0", Expect{TLS: false}); err != nil {
		t.Fatalf("'N' after remove: %v", err)
	}
	_, err = Check(ctx, fakePgpool(0, nil), "p-0", Expect{TLS: true})
	var de *DialError
	if !errors.As(err, &de) {
		t.Fatalf("no answer must be a DialError (unreachable), got %v", err)
	}
	untrusted := x509.NewCertPool()
	untrusted.AddCert(other)
	_, err = Check(ctx, fakePgpool('S', &kp), "p-0", Expect{TLS: true, Leaf: leaf, Roots: untrusted, ServerName: "localhost"})
	if !errors.As(err, &mm) || mm.Served.Verified {
		t.Fatalf("untrusted chain: %v", err)
	}
}

// hungDialer never answers the upgrade.
type hungDialer struct{ release chan struct{} }

func (h hungDialer) Dial(...string) (httpstream.Connection, string, error) {
	<-h.release
	return nil, "", errors.New("released")
}

// A port-forward upgrade that hangs ends with the context (--timeout,
// Ctrl-C), not when the server gives up.
func TestDialContextEndsWithTheContext(t *testing.T) {
	h := hungDialer{release: make(chan struct{})}
	defer close(h.release)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { _, err := dialContext(ctx, h); done <- err }()
	cancel(errors.New("interrupted"))
	if err := <-done; err == nil || err.Error() != "interrupted" {
		t.Fatalf("got %v", err)
	}
}
