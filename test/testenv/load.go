package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// LoadLogin is how a load client logs in, asked again at every (re)connect
// (the client certificate changes during change-issuer): the user, its
// password, and a client certificate (nil: none).
type LoadLogin func(ctx context.Context) (user, password string, cert *tls.Certificate)

// LoadResult is what the clients of a Load saw.
type LoadResult struct {
	Clients int
	Queries int64
	// Dropped: connections that broke under a client (an error on a
	// connection that had worked).
	Dropped int
	// Failed: queries that failed and were not retried (Retry off), or
	// failed again after the reconnect and the one retry.
	Failed int
	// LongestGap: the longest time one client went without a successful
	// query (from the start, and between successes).
	LongestGap time.Duration
	// Errors: the first few errors, for the test's message.
	Errors []string
}

func (r LoadResult) String() string {
	return fmt.Sprintf("%d clients, %d queries, %d dropped connections, %d failed queries, longest gap %s", r.Clients, r.Queries, r.Dropped, r.Failed, r.LongestGap.Round(10*time.Millisecond))
}

// Load is a load generator: clients, each on its own connection to addr (a
// Service's ClusterIP:port, through kube-proxy), run SELECT 1 in a loop.
// With retry, a client whose query fails reconnects at once and runs the
// query once more; only a second failure counts as failed. TLS is
// preferred (plain when the server answers 'N'), presenting the client
// certificate when there is one, without verifying the server: this
// measures availability, not trust (the operations' own checks prove the
// certificates).
type Load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    LoadResult
	first  chan struct{} // closed at the first successful query
}

// StartLoad starts n clients against addr.
func StartLoad(addr string, n int, retry bool, login LoadLogin) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel, res: LoadResult{Clients: n}, first: make(chan struct{})}
	for i := 0; i < n; i++ {
		l.wg.Go(func() { l.client(ctx, addr, retry, login) })
	}
	return l
}

// WaitFirst waits for the first successful query, up to d.
func (l *Load) WaitFirst(d time.Duration) bool {
	select {
	case <-l.first:
		return true
	case <-time.After(d):
		return false
	}
}

// Stop ends the clients and returns what they saw.
func (l *Load) Stop() LoadResult {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res
}

func (l *Load) note(f func(r *LoadResult), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(&l.res)
	if err != nil && len(l.res.Errors) < 5 {
		l.res.Errors = append(l.res.Errors, err.Error())
	}
}

func (l *Load) client(ctx context.Context, addr string, retry bool, login LoadLogin) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	lastOK := time.Now()
	ok := func() {
		gap := time.Since(lastOK)
		lastOK = time.Now()
		l.note(func(r *LoadResult) {
			if r.Queries == 0 {
				close(l.first)
			}
			r.Queries++
			r.LongestGap = max(r.LongestGap, gap)
		}, nil)
	}
	// query runs SELECT 1 on conn, connecting first when there is none.
	query := func() error {
		if conn == nil {
			c, err := loadConnect(ctx, addr, login)
			if err != nil {
				return err
			}
			conn = c
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var one int
		err := conn.QueryRow(qctx, "SELECT 1").Scan(&one)
		if err != nil {
			_ = conn.Close(context.Background())
			conn = nil
			l.note(func(r *LoadResult) { r.Dropped++ }, fmt.Errorf("dropped: %w", err))
		}
		return err
	}
	for ctx.Err() == nil {
		err := query()
		if err != nil && retry && ctx.Err() == nil {
			err = query() // reconnect at once and retry once
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.note(func(r *LoadResult) { r.Failed++ }, err)
		default:
			ok()
		}
		// Pace each client (about 50 queries a second), so that 8 of them
		// leave the 2-core machine to the cluster.
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The time since the last success counts too, if the run ended in a gap.
	l.note(func(r *LoadResult) { r.LongestGap = max(r.LongestGap, time.Since(lastOK)) }, nil)
}

// loadConnect connects to addr preferring TLS, logging in as login says.
// Preferring TLS is done as libpq does it, on one connection: SSLRequest,
// then TLS on 'S' or the plain startup on 'N' (pgx would open a second
// connection for the plain fallback, which kube-proxy may send to another
// pod: a failure of the client, not of the roll).
func loadConnect(ctx context.Context, addr string, login LoadLogin) (*pgx.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	user, password, cert := login(ctx)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s dbname=postgres sslmode=disable connect_timeout=10", host, port))
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = user, password
	cfg.DialFunc = func(ctx context.Context, network, a string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, a)
		if err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		req := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f} // SSLRequest: length 8, code 80877103
		answer := make([]byte, 1)
		_, err = conn.Write(req)
		if err == nil {
			_, err = io.ReadFull(conn, answer)
		}
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("SSLRequest: %w", err)
		}
		_ = conn.SetDeadline(time.Time{})
		if answer[0] != 'S' {
			return conn, nil // 'N': plain on this connection
		}
		// Not verified: see Load.
		tc := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // availability, not trust
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		tlsConn := tls.Client(conn, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		return tlsConn, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return pgx.ConnectConfig(cctx, cfg)
}
