// Package pgpool is the real pgpool-II test tier: Debian's pgpool2 and
// PostgreSQL run on 127.0.0.1 as the non-root user postgres, configured from
// the project's own pkg/conf output (starting from the seed's pgpool.conf),
// with certificates issued by the local cluster's cert-manager from the same
// Certificate specs the plugin creates. Clients are psql and pgx.
package pgpool

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	if _, err := exec.LookPath("pgpool"); err != nil {
		fmt.Fprintln(os.Stderr, "pgpool tier: pgpool2 is not installed (apt-get install pgpool2 postgresql); .ci/run installs it")
		os.Exit(1)
	}
	os.Exit(testenv.Run(m, &env))
}

// The password pgpool knows for user postgres (pool_passwd, clear text).
const password = "s3cret-pw"

// runAs is the non-root user the servers run as.
type runAs struct {
	uid, gid int
	cred     *syscall.Credential
}

func serverUser(t testing.TB) runAs {
	t.Helper()
	if os.Geteuid() != 0 {
		return runAs{uid: os.Getuid(), gid: os.Getgid()}
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root needs the user postgres (from the postgresql package): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return runAs{uid: uid, gid: gid, cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

func (r runAs) command(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred, Setpgid: true}
	return c
}

func (r runAs) dir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pgpool-tier-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	if err := os.Chown(d, r.uid, r.gid); err != nil {
		t.Fatal(err)
	}
	return d
}

func (r runAs) write(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, r.uid, r.gid); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func pgBin(t testing.TB, name string) string {
	t.Helper()
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(m) == 0 {
		t.Fatalf("%s not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)", name)
	}
	return m[len(m)-1]
}

// startPostgres runs a PostgreSQL backend on 127.0.0.1 that trusts local
// TCP logins (so pgpool, which logs in to the backend itself, gets in
// whatever the client's auth mode: the README's "cert auth and the backend").
func startPostgres(t testing.TB, u runAs) int {
	t.Helper()
	return startPostgresTLS(t, u, nil, nil)
}

// startPostgresTLS is startPostgres serving TLS with cert and key (none
// when nil).
func startPostgresTLS(t testing.TB, u runAs, cert, key []byte) int {
	t.Helper()
	dir := u.dir(t)
	data := filepath.Join(dir, "data")
	if out, err := u.command(pgBin(t, "initdb"), "-D", data, "-U", "postgres", "--auth=trust").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n", port, dir)
	if cert != nil {
		u.write(t, filepath.Join(data, "server.crt"), string(cert), 0o644)
		u.write(t, filepath.Join(data, "server.key"), string(key), 0o600)
		fmt.Fprintf(f, "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
	}
	_ = f.Close()
	if out, err := u.command(pgBin(t, "pg_ctl"), "-D", data, "-l", filepath.Join(dir, "postgres.log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = u.command(pgBin(t, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop").Run() })
	return port
}

// pgpoolServer is one pgpool-II process and its files.
type pgpoolServer struct {
	t       testing.TB
	u       runAs
	dir     string
	Port    int
	backend int
	cmd     *exec.Cmd
	done    chan struct{}
	conf    string
	hba     string
}

func newPgpool(t testing.TB, u runAs, backendPort int) *pgpoolServer {
	t.Helper()
	p := &pgpoolServer{t: t, u: u, dir: u.dir(t), Port: freePort(t), backend: backendPort}
	if err := os.Mkdir(filepath.Join(p.dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	_ = os.Chown(filepath.Join(p.dir, "tls"), u.uid, u.gid)
	u.write(t, filepath.Join(p.dir, "pool_passwd"), "postgres:TEXT"+password+"\n", 0o600)
	u.write(t, filepath.Join(p.dir, "pcp.conf"), "", 0o600)
	t.Cleanup(p.Stop)
	return p
}

// Paths maps pgpool's TLS files into the temp dir.
func (p *pgpoolServer) Paths() conf.Paths {
	return conf.Paths{Cert: filepath.Join(p.dir, "tls", "tls.crt"), Key: filepath.Join(p.dir, "tls", "tls.key"), CA: filepath.Join(p.dir, "tls", "ca.pem")}
}

// Configure writes pgpool.conf (the seed's file, pointed at the local
// backend and ports, then TLS on or off through pkg/conf) and pool_hba.conf
// (EditHBA over baseHBA, which has no loopback trust rules, because every
// client here connects from 127.0.0.1).
func (p *pgpoolServer) Configure(sslMode, authMode string) {
	p.t.Helper()
	p.ConfigureWith(sslMode, authMode, baseHBA, nil)
}

// ConfigureWith is Configure from another pool_hba.conf, with a last edit
// of pgpool.conf (nil for none).
func (p *pgpoolServer) ConfigureWith(sslMode, authMode, base string, edit func(*conf.PgpoolConf)) {
	p.t.Helper()
	seed, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "pkg", "conf", "testdata", "kubedb-pgpool.conf"))
	if err != nil {
		p.t.Fatal(err)
	}
	c := p.localConf(string(seed))
	if sslMode == "disable" {
		conf.DisableTLS(c, p.Paths())
	} else {
		conf.EnableTLS(c, p.Paths())
	}
	if edit != nil {
		edit(c)
	}
	he, err := conf.EditHBA(base, conf.HBAOptions{SSLMode: sslMode, AuthMode: authMode, EnforcedBefore: true, EnforcedAfter: true})
	if err != nil {
		p.t.Fatal(err)
	}
	p.write(c.String(), he.Text)
}

// ConfigureAdd writes both files as tls add would from pgpool.conf (the
// seed's file, pointed at the local ports, then changed by before) and
// base as pool_hba.conf: through conf.AddTLS, as the planner does. It
// returns what AddTLS said.
func (p *pgpoolServer) ConfigureAdd(sslMode, authMode, base string, before func(string) string) *conf.AddResult {
	p.t.Helper()
	seed, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "pkg", "conf", "testdata", "kubedb-pgpool.conf"))
	if err != nil {
		p.t.Fatal(err)
	}
	text := p.localConf(string(seed)).String()
	if before != nil {
		text = before(text)
	}
	res, err := conf.AddTLS(conf.Files{PgpoolConf: text, PoolHBA: base}, conf.AddOptions{Paths: p.Paths(), SSLMode: sslMode, AuthMode: authMode})
	if err != nil {
		p.t.Fatal(err)
	}
	p.write(res.PgpoolConf, res.PoolHBA)
	return res
}

// WriteFiles writes pgpool.conf and pool_hba.conf as they are.
func (p *pgpoolServer) WriteFiles(pgpoolConf, hba string) { p.write(pgpoolConf, hba) }

func (p *pgpoolServer) write(pgpoolConf, hba string) {
	p.conf, p.hba = pgpoolConf, hba
	p.u.write(p.t, filepath.Join(p.dir, "pgpool.conf"), p.conf, 0o600)
	p.u.write(p.t, filepath.Join(p.dir, "pool_hba.conf"), hba, 0o600)
}

// localConf points the seed's pgpool.conf at the local backend, ports and
// directories.
func (p *pgpoolServer) localConf(seed string) *conf.PgpoolConf {
	c := conf.ParsePgpoolConf(seed)
	c.Set("backend_hostname0", conf.Quote("127.0.0.1"))
	c.Set("backend_port0", strconv.Itoa(p.backend))
	for _, k := range []string{"backend_hostname1", "backend_port1", "backend_weight1", "backend_flag1"} {
		c.Unset(k)
	}
	for k, v := range map[string]string{
		"listen_addresses": conf.Quote("127.0.0.1"), "port": strconv.Itoa(p.Port), "socket_dir": conf.Quote(p.dir),
		"pcp_listen_addresses": conf.Quote("127.0.0.1"), "pcp_port": strconv.Itoa(freePort(p.t)), "pcp_socket_dir": conf.Quote(p.dir),
		"pid_file_name": conf.Quote(filepath.Join(p.dir, "pgpool.pid")), "logdir": conf.Quote(p.dir),
		"pool_passwd": conf.Quote(filepath.Join(p.dir, "pool_passwd")), "num_init_children": "4", "max_pool": "2",
		"memqcache_oiddir": conf.Quote(filepath.Join(p.dir, "oiddir")),
	} {
		c.Set(k, v)
	}
	return c
}

// baseHBA is the pool_hba.conf the tier starts from: KubeDB's remote rules
// without its loopback trust.
const baseHBA = "local all all trust\nhost all all 0.0.0.0/0 md5\nhost all all ::/0 md5\n"

// Start runs pgpool in the foreground (-n) as the server user and waits,
// with a deadline, until it answers an SSLRequest.
func (p *pgpoolServer) Start() {
	p.t.Helper()
	p.cmd = p.u.command("pgpool", "-n", "-f", filepath.Join(p.dir, "pgpool.conf"), "-a", filepath.Join(p.dir, "pool_hba.conf"),
		"-F", filepath.Join(p.dir, "pcp.conf"))
	logf, err := os.OpenFile(filepath.Join(p.dir, "pgpool.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start pgpool: %v", err)
	}
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); _ = logf.Close(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := p.Probe(ctx, nil)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-p.done:
			p.t.Fatalf("pgpool exited at start:\n%s", p.Log())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pgpool did not answer on 127.0.0.1:%d within 30s: %v\n%s", p.Port, err, p.Log())
		}
		time.Sleep(50 * time.Millisecond) // polling a port that is not listening yet
	}
}

// Stop stops pgpool (fast shutdown) and waits for it to exit.
func (p *pgpoolServer) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
}

// Restart stops and starts pgpool: how the plugin makes pgpool read new
// certificates (a pod restart).
func (p *pgpoolServer) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}

// Reload sends SIGHUP (what pcp_reload_config does) and waits, by its log,
// until pgpool has reloaded.
func (p *pgpoolServer) Reload() {
	p.t.Helper()
	before := strings.Count(p.Log(), "reload config files")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(p.Log(), "reload config files") <= before {
		if time.Now().After(deadline) {
			p.t.Fatalf("pgpool did not log a reload within 20s:\n%s", p.Log())
		}
		time.Sleep(20 * time.Millisecond) // polling the log file for the reload line
	}
}

// Log returns pgpool's log so far.
func (p *pgpoolServer) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "pgpool.log"))
	return string(b)
}

// Dialer reaches this pgpool for pkg/verify.
func (p *pgpoolServer) Dialer() verify.Dialer {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", p.Port))
	}
}

// Probe sends an SSLRequest and handshakes, trusting roots.
func (p *pgpoolServer) Probe(ctx context.Context, want *verify.Expect) (*verify.Served, error) {
	conn, err := p.Dialer()(ctx, "")
	if err != nil {
		return nil, err
	}
	if want == nil {
		want = &verify.Expect{}
	}
	return verify.Probe(ctx, conn, want.Roots, "localhost", want.ClientCert)
}

// InstallSecrets writes the server Secret's files where pgpool reads them,
// as the image's entrypoint copies /config/tls: tls.key mode 0600.
func (p *pgpoolServer) InstallSecrets(s certSet) {
	p.t.Helper()
	paths := p.Paths()
	p.u.write(p.t, paths.Cert, string(s.ServerCert), 0o644)
	p.u.write(p.t, paths.Key, string(s.ServerKey), 0o600)
	p.u.write(p.t, paths.CA, string(s.CA), 0o644)
}

// InstallCA writes the CA bundle pgpool reads as ssl_ca_cert (ca.pem).
func (p *pgpoolServer) InstallCA(pem []byte) {
	p.t.Helper()
	p.u.write(p.t, p.Paths().CA, string(pem), 0o644)
}

// Login logs in through this pgpool with pgx and runs SELECT 1 (the verify
// step's own login).
func (p *pgpoolServer) Login(ctx context.Context, l verify.Login) (*verify.LoginResult, error) {
	return verify.LoginAndQuery(ctx, p.Dialer(), "pgpool", l)
}

// certSet is what cert-manager issued, as files.
type certSet struct {
	ServerCert, ServerKey, CA []byte
	ClientCert, ClientKey     []byte
}

// issued reads the Secrets of the plugin's server and client Certificates.
func issued(t testing.TB, ns string) certSet {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	get := func(name string) map[string][]byte {
		s, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Data
	}
	srv, cli := get("pgpool-server-cert"), get("pgpool-client-cert")
	return certSet{ServerCert: srv["tls.crt"], ServerKey: srv["tls.key"], CA: srv["ca.crt"], ClientCert: cli["tls.crt"], ClientKey: cli["tls.key"]}
}

// setupCerts creates the seed's issuers in a fresh namespace and the
// plugin's two Certificates from issuer, and returns the namespace.
func setupCerts(t testing.TB, issuer string) string {
	t.Helper()
	ns := env.Namespace(t)
	env.Apply(t, ns, env.Fixture(t, "issuers.yaml"), 0)
	ctx := testenv.Context(t, 2*time.Minute)
	env.WaitIssuerReady(t, ctx, ns, "pgpool-issuer")
	env.WaitIssuerReady(t, ctx, ns, "pp-new-issuer")
	p := tls.Params{Namespace: ns, Name: "pgpool", Issuer: cmmeta.IssuerReference{Name: issuer, Kind: "Issuer", Group: "cert-manager.io"},
		Services: []string{"pgpool", "pgpool-pods"}, Headless: "pgpool-pods", PodNames: []string{"pgpool-0"},
		ClientUser: "postgres", ClientOrgs: []string{"pgpool"}, ClientOUs: []string{"client"},
		ServerSecret: "pgpool-server-cert", ClientSecret: "pgpool-client-cert"}
	srv := tls.ServerCertificate(p, "pgpool-server-cert")
	cli := tls.ClientCertificate(p, "pgpool-client-cert")
	for _, c := range []*cmapi.Certificate{srv, cli} {
		if _, err := env.CertMgr.CertmanagerV1().Certificates(ns).Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Certificate %s: %v", c.Name, err)
		}
		if _, err := issuing.WaitReady(ctx, env.CertMgr.CertmanagerV1(), ns, c.Name, 0, time.Time{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}
