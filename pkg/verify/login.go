package verify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Login is how to log in through pgpool to prove the whole path: TLS,
// client authentication, and pgpool's own connection to its backend.
type Login struct {
	User     string
	Database string
	// Password for md5/scram (empty for cert).
	Password string
	// TLS: connect with sslmode verify-full against Roots for ServerName,
	// presenting ClientCert when set; otherwise a plain connection.
	TLS        bool
	Roots      *x509.CertPool
	ServerName string
	ClientCert *tls.Certificate
}

// LoginResult is what a successful login showed.
type LoginResult struct {
	TLSVersion string `json:"tlsVersion,omitempty"`
	// BackendSSL: pgpool's own connection to the backend that served the
	// query uses TLS (from pg_stat_ssl on the backend).
	BackendSSL bool `json:"backendSSL"`
	// PgpoolVersion is what pgpool says it is (SHOW pool_version), ""
	// when it did not answer.
	PgpoolVersion string `json:"pgpoolVersion,omitempty"`
}

// LoginError is a refused or failed login, with pgpool's (or PostgreSQL's)
// own words.
type LoginError struct {
	Pod string
	Err error
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("pod %s: login through pgpool failed: %v", e.Pod, e.Err)
}
func (e *LoginError) Unwrap() error { return e.Err }

// LoginAndQuery logs in to one pod through dial and runs SELECT 1, then
// reads pg_stat_ssl of its own backend session.
func LoginAndQuery(ctx context.Context, dial Dialer, pod string, l Login) (*LoginResult, error) {
	mode := "disable"
	if l.TLS {
		mode = "verify-full"
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=5432 sslmode=%s connect_timeout=20", serverNameOr(l.ServerName), mode))
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Database, cfg.Password = l.User, l.Database, l.Password
	cfg.Fallbacks = nil
	if l.TLS {
		cfg.TLSConfig.RootCAs = l.Roots
		cfg.TLSConfig.ServerName = serverNameOr(l.ServerName)
		if l.ClientCert != nil {
			cfg.TLSConfig.Certificates = []tls.Certificate{*l.ClientCert}
		}
	}
	cfg.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx, pod) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, &LoginError{Pod: pod, Err: pgError(err)}
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		return nil, &LoginError{Pod: pod, Err: fmt.Errorf("SELECT 1: %w", pgError(err))}
	}
	res := &LoginResult{}
	if tc, ok := conn.PgConn().Conn().(*tls.Conn); ok {
		res.TLSVersion = tls.VersionName(tc.ConnectionState().Version)
	}
	// pgpool forwards this to its backend: the row is pgpool's own session.
	_ = conn.QueryRow(ctx, "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)").Scan(&res.BackendSSL)
	// pgpool's own command: its version, read from the running pod.
	_ = conn.QueryRow(ctx, "SHOW pool_version", pgx.QueryExecModeSimpleProtocol).Scan(&res.PgpoolVersion)
	return res, nil
}

func serverNameOr(s string) string {
	if s == "" {
		return "localhost"
	}
	return s
}

// pgError keeps the server's error (pgpool's refusal, e.g. "backend
// authentication failed") and drops pgx's connection-string prefix.
func pgError(err error) error {
	if err == nil {
		return fmt.Errorf("no row")
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return err
}
