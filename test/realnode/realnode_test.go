// Package realnode runs the seed's walkthrough on the local cluster's real
// node (REAL_NODE=1: kubelet + containerd running real pgpool-II pods): the
// seed's exec, port-forward + psql and openssl checks, automated, for 1 and
// 3 replicas.
package realnode

import (
	"bufio"
	"bytes"
	"context"
	cryptotls "crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/cache"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	pgstatus "github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

var env *testenv.Env

const selector = "app.kubernetes.io/instance=pgpool,app.kubernetes.io/name=pgpools.kubedb.com"

func TestMain(m *testing.M) {
	_ = os.Setenv("REAL_NODE", "1") // a cluster the tests start gets the real node
	os.Exit(testenv.Run(m, &env))
}

func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(env.Cluster.BinDir, "kubectl"), append([]string{"--kubeconfig", env.Kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// portForward runs `kubectl port-forward` to target (pod/NAME or svc/NAME)
// port 9999 on a free local port and returns that port.
func portForward(t *testing.T, ns, target string) int {
	t.Helper()
	return portForwardTo(t, ns, target, 9999)
}

// portForwardTo is portForward to another port of target.
func portForwardTo(t *testing.T, ns, target string, port int) int {
	t.Helper()
	c := exec.Command(filepath.Join(env.Cluster.BinDir, "kubectl"), "--kubeconfig", env.Kubeconfig, "-n", ns,
		"port-forward", "--address", "127.0.0.1", target, fmt.Sprintf(":%d", port))
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) ->`)
	sc := bufio.NewScanner(out)
	got := make(chan int, 1)
	go func() {
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				var p int
				_, _ = fmt.Sscan(m[1], &p)
				got <- p
			}
		}
	}()
	select {
	case p := <-got:
		return p
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl port-forward did not report its port in 30s")
	}
	return 0
}

func psql(t *testing.T, connstr string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "psql", connstr, "-w", "-At", "-c", "select 'logged-in'")
	c.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	out, err := c.CombinedOutput()
	return string(out), err == nil && strings.Contains(string(out), "logged-in")
}

func plugin(t *testing.T, ns string, args ...string) {
	t.Helper()
	out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, append(args, "--yes", "--verify=required")...)
	if err != nil {
		t.Fatalf("kubectl pgpool %s: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
	}
}

// roll runs a plugin command while watching the pods: with 3 replicas at
// least 2 are Ready at every moment, and every pod is replaced exactly once.
func roll(t *testing.T, ns string, replicas int, args ...string) {
	t.Helper()
	rollChecked(t, ns, replicas, true, args...)
}

// rollChecked is roll; with exact false, a pod that the workload's
// controller recreated once more by itself is allowed (and logged):
// kubeops/petset deletes a terminated pod by name from a stale view, which
// can hit its fresh replacement; the plugin evicts each pod once.
func rollChecked(t *testing.T, ns string, replicas int, exact bool, args ...string) {
	t.Helper()
	before := env.WaitPodsReady(t, ns, selector, replicas, 2*time.Minute)
	log := env.WatchPods(t, ns, selector)
	plugin(t, ns, args...)
	after := env.WaitPodsReady(t, ns, selector, replicas, 2*time.Minute)
	log.Stop()
	allReplaced(t, args[1], before, after)
	if n := len(log.Added()); n > replicas && !exact {
		t.Logf("%s: %d pods created for %d replicas: the controller recreated %d by itself: %v", args[1], n, replicas, n-replicas, log.Added())
	} else if n != replicas {
		t.Fatalf("%s: %d pods created for %d replicas, want each replaced exactly once: %v", args[1], n, replicas, log.Added())
	}
	if replicas >= 3 && log.MinReady() < replicas-1 {
		t.Fatalf("%s: only %d pods were Ready at one moment, want at least %d", args[1], log.MinReady(), replicas-1)
	}
}

// allReplaced fails unless no pod of before is among after.
func allReplaced(t *testing.T, op string, before, after []corev1.Pod) {
	t.Helper()
	old := map[string]bool{}
	for _, p := range before {
		old[string(p.UID)] = true
	}
	for _, p := range after {
		if old[string(p.UID)] {
			t.Fatalf("%s: pod %s was not restarted", op, p.Name)
		}
	}
}

// runStatus runs `tls status --verify=required -o json`.
func runStatus(t *testing.T, ns string) (pgstatus.Status, error) {
	t.Helper()
	return runStatusOf(t, ns, "pgpool")
}

// runStatusOf is runStatus of the pgpool name.
func runStatusOf(t *testing.T, ns, name string) (pgstatus.Status, error) {
	t.Helper()
	out, errOut, runErr := testenv.Plugin(env.Kubeconfig, ns, 2*time.Minute, "tls", "status", name, "--verify=required", "-o", "json")
	var st pgstatus.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v (%v)\n%s\n%s", err, runErr, out, errOut)
	}
	return st, runErr
}

func serverSerial(t *testing.T, ns string) string {
	t.Helper()
	crt, err := tls.ParseFirstCert(secretPEM(t, ns, "pgpool-server-cert", "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return crt.SerialNumber.Text(16)
}

// status checks that `tls status --verify=required` proved every pod by its
// handshake: it serves the Secret's serial over TLS 1.3 (tlsOn) or answers
// 'N'.
func status(t *testing.T, ns string, replicas int, tlsOn bool) {
	t.Helper()
	st, err := runStatus(t, ns)
	if err != nil {
		t.Fatalf("kubectl pgpool tls status --verify=required: %v", err)
	}
	wantSerial := ""
	if tlsOn {
		wantSerial = serverSerial(t, ns)
	}
	if len(st.Pods) != replicas {
		t.Fatalf("status lists %d pods, want %d", len(st.Pods), replicas)
	}
	for _, p := range st.Pods {
		s := p.Served
		if p.Check != "ok" || s == nil || s.TLS != tlsOn || s.Serial != wantSerial || (tlsOn && (s.Version != "TLS 1.3" || !s.Verified)) {
			t.Fatalf("status of pod %s: check %q (%s), served %+v; want TLS %v serial %q", p.Name, p.Check, p.Detail, s, tlsOn, wantSerial)
		}
		// The negative proof, against real pgpool: under require + cert
		// plain logins and TLS logins without a certificate are refused;
		// without TLS a plain login is asked for its password (accepted).
		wantPlain, wantCertless := "accepted", "not-checked"
		if tlsOn && st.SSLMode == "require" {
			wantPlain = "refused"
		}
		if tlsOn && st.AuthMode == "cert" {
			wantCertless = "refused"
		}
		if p.Plaintext != wantPlain || p.Certless != wantCertless {
			t.Fatalf("status of pod %s (%s, %s): plaintext %q, certless %q, want %q, %q (%s)", p.Name, st.SSLMode, st.AuthMode, p.Plaintext, p.Certless, wantPlain, wantCertless, strings.Join(p.Refusal, "; "))
		}
	}
}

// A pgpool that reads another pool_hba.conf than its config holds (the
// container runs pgpool with -a pointing at a file that trusts everyone):
// the files the plugin writes say require + cert, pgpool admits anyone.
// add's proof stops the roll at the first pod and names the cause; with
// the proofs off add succeeds, and then status --verify=required exits 1
// and says pgpool does not read the file.
func TestPlaintextAdmittedFailsTheProof(t *testing.T) {
	ns := env.RealPgpool(t, 1, func(o *unstructured.Unstructured) {
		if o.GetKind() != "StatefulSet" {
			return
		}
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for i, c := range cs {
			m := c.(map[string]any)
			if m["name"] == "pgpool" {
				m["command"] = []any{"sh", "-ec", `printf 'local all all trust\nhost all all all trust\n' >/tmp/other_hba.conf
ETC=/opt/pgpool-II/etc; mkdir -p $ETC /opt/pgpool-II/tls
cp /config/pgpool.conf "$ETC/"; cp /config/pool_passwd "$ETC/pool_passwd"; chmod 0600 "$ETC/pool_passwd"; : >"$ETC/pcp.conf"
rm -f /opt/pgpool-II/tls/*; if [ -d /config/tls ]; then cp /config/tls/* /opt/pgpool-II/tls/; chmod 0600 /opt/pgpool-II/tls/tls.key; fi
exec pgpool -n -f "$ETC/pgpool.conf" -a /tmp/other_hba.conf -F "$ETC/pcp.conf"`}
				cs[i] = m
			}
		}
		_ = unstructured.SetNestedSlice(o.Object, cs, "spec", "template", "spec", "containers")
	})
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert",
		"--client-org", "pgpool", "--client-ou", "client", "--backend-ca", "secret/pgpool-backend-cert", "--yes"}
	out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, add...)
	if err == nil || !strings.Contains(out+errOut, "the roll stops at pod pgpool-0") || !strings.Contains(out+errOut, "plaintext accepted") || !strings.Contains(out+errOut, "does not enforce that file") {
		t.Fatalf("add against a pgpool that reads another pool_hba.conf: %v\n%s\n%s", err, out, errOut)
	}
	// What add undid is put right by rollback when the run did not; either
	// way, add again with the proofs off.
	_, _, _ = testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, "tls", "rollback", "pgpool", "--yes")
	if out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, append(add, "--verify=false")...); err != nil {
		t.Fatalf("add --verify=false: %v\n%s\n%s", err, out, errOut)
	}
	st, err := runStatus(t, ns)
	if err == nil || len(st.Pods) != 1 || st.Pods[0].Check != "ok" || st.Pods[0].Plaintext != "accepted" || st.Pods[0].Certless != "accepted" {
		t.Fatalf("status --verify=required of a pgpool that admits plaintext: %v %+v", err, st.Pods)
	}
	if !strings.Contains(err.Error(), "plaintext accepted") {
		t.Fatalf("status --verify=required says: %v", err)
	}
}

// renewedBehindPgpool has cert-manager re-issue the server certificate on
// its own (as at renewBefore, or `cmctl renew`), without the plugin: the
// Secret changes, but pgpool keeps serving the certificate it loaded at
// start. `tls status` must show every pod as a mismatch that names the
// served serial, and --verify=required must fail.
func renewedBehindPgpool(t *testing.T, ns string, replicas int) {
	t.Helper()
	ctx := testenv.Context(t, 2*time.Minute)
	cm := env.CertMgr.CertmanagerV1()
	old := serverSerial(t, ns)
	crt, err := cm.Certificates(ns).Get(ctx, "pgpool-server-cert", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// `tls status --watch` sees it happen: first every pod proven with the
	// old serial, then each pod turning into a mismatch, and the verdict
	// of --verify=required turning to failing, each printed once.
	w := watchStatus(t, ns, "pgpool", "--verify=required", "--interval", "1s")
	for i := range replicas {
		w.expect(t, fmt.Sprintf(" pod pgpool-%d: ok, serves serial %s until ", i, old))
	}
	w.expect(t, " verdict: ok")
	if err := issuing.TriggerIssuance(ctx, cm, ns, crt.Name, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := issuing.WaitReady(ctx, cm, ns, crt.Name, tls.Revision(crt), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	renewed := serverSerial(t, ns)
	for i := range replicas {
		w.expect(t, fmt.Sprintf(" pod pgpool-%d: mismatch, serves serial %s until ", i, old), "(was ok, serves serial "+old)
	}
	w.expect(t, " verdict: failing: ", "is not proven", "(was ok)")
	w.stop(t)
	st, err := runStatus(t, ns)
	if err == nil || !strings.Contains(err.Error(), "is not proven") {
		t.Fatalf("status --verify=required after a renewal pgpool did not load: %v, want exit 1", err)
	}
	if len(st.Pods) != replicas {
		t.Fatalf("status lists %d pods, want %d", len(st.Pods), replicas)
	}
	for _, p := range st.Pods {
		if p.Check != "mismatch" || p.Served == nil || p.Served.Serial != old || !strings.Contains(p.Detail, "serial "+renewed) {
			t.Fatalf("status of pod %s after a renewal behind pgpool: check %q (%s); want a mismatch serving %s, expecting %s", p.Name, p.Check, p.Detail, old, renewed)
		}
	}
}

// statusWatch is a `tls status --watch` running in-process, its lines
// read as they are printed.
type statusWatch struct {
	lines  chan string
	seen   []string
	cancel context.CancelCauseFunc
	done   chan error
}

func watchStatus(t *testing.T, ns, name string, args ...string) *statusWatch {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancelCause(context.Background())
	w := &statusWatch{lines: make(chan string, 1000), cancel: cancel, done: make(chan error, 1)}
	root := cmd.NewRootCmd(genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: pw, ErrOut: io.Discard}, cmd.BuildInfo{Version: "test"})
	root.SetArgs(append([]string{"--kubeconfig", env.Kubeconfig, "-n", ns, "tls", "status", name, "--watch"}, args...))
	go func() { w.done <- root.ExecuteContext(ctx); _ = pw.Close() }()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	t.Cleanup(func() { cancel(plan.ErrInterrupted) })
	return w
}

// expect reads lines until one holds every part (2 min at most).
func (w *statusWatch) expect(t *testing.T, parts ...string) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("status --watch ended before a line with %q:\n%s", parts, strings.Join(w.seen, "\n"))
			}
			w.seen = append(w.seen, l)
			all := true
			for _, p := range parts {
				all = all && strings.Contains(l, p)
			}
			if all {
				return
			}
		case <-deadline:
			t.Fatalf("status --watch printed no line with %q:\n%s", parts, strings.Join(w.seen, "\n"))
		}
	}
}

// stop interrupts the watch, which must end without error.
func (w *statusWatch) stop(t *testing.T) {
	t.Helper()
	w.cancel(plan.ErrInterrupted)
	t.Logf("status --watch printed:\n%s", strings.Join(w.seen, "\n"))
	go func() {
		for range w.lines { //nolint:revive // drain the last probe's lines
		}
	}()
	if err := <-w.done; err != nil {
		t.Fatalf("an interrupted status --watch: %v", err)
	}
}

func secretPEM(t *testing.T, ns, name, key string) []byte {
	t.Helper()
	s, err := env.Kube.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data[key]
}

func writeClientFiles(t *testing.T, ns string) (ca, crt, key string) {
	t.Helper()
	d := t.TempDir()
	ca, crt, key = filepath.Join(d, "ca.crt"), filepath.Join(d, "client.crt"), filepath.Join(d, "client.key")
	for p, b := range map[string][]byte{
		ca: secretPEM(t, ns, "pgpool-server-cert", "ca.crt"), crt: secretPEM(t, ns, "pgpool-client-cert", "tls.crt"),
		key: secretPEM(t, ns, "pgpool-client-cert", "tls.key"),
	} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca, crt, key
}

// served probes what pgpool-0 serves through the API server's port-forward.
func served(t *testing.T, ns string, roots []byte) *verify.Served {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots)
	conn, err := verify.PortForwardDialer(env.Config, env.Kube.CoreV1(), ns, 9999)(ctx, "pgpool-0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := verify.Probe(ctx, conn, pool, "localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func execIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := kubectl(t, append([]string{"-n", ns, "exec", "pgpool-0", "-c", "pgpool", "--"}, args...)...)
	if err != nil {
		t.Fatalf("kubectl exec pgpool-0 -- %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestSeedWalkthroughOnRealNode(t *testing.T) {
	if !env.Cluster.RealNode {
		t.Fatal("the cluster has no real node: start it with REAL_NODE=1 make cluster-up")
	}
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			ns := realPgpool(t, replicas)
			// The pgpool users run: the generation KubeDB (4.5) and
			// Bitnami's chart (4.6) ship, not bookworm's 4.3.
			v := execIn(t, ns, "pgpool", "--version")
			t.Logf("real node: %s", strings.TrimSpace(v))
			if !strings.Contains(v, "pgpool-II version 4.6") {
				t.Fatalf("the real node runs %q, want pgpool-II 4.6", v)
			}

			// The backend serves TLS from its own CA: without that CA, add
			// refuses in preflight and writes nothing.
			seedAdd := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require",
				"--client-auth-mode", "cert", "--client-org", "pgpool", "--client-ou", "client"}
			before := objectVersions(t, ns)
			_, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 2*time.Minute, append(seedAdd, "--yes")...)
			if err == nil || !strings.Contains(err.Error(), "backend 0 (127.0.0.1:5432") || !strings.Contains(err.Error(), `"CN=backend-ca,O=postgres"`) || !strings.Contains(err.Error(), "--backend-ca") {
				t.Fatalf("add without the backend's CA: %v\n%s", err, errOut)
			}
			if after := objectVersions(t, ns); after != before {
				t.Fatalf("add refused in preflight but wrote: %s -> %s", before, after)
			}

			// add, as the seed: sslMode require, clientAuthMode cert; pgpool
			// trusts the backend's CA too.
			roll(t, ns, replicas, append(seedAdd, "--backend-ca", "secret/pgpool-backend-cert")...)
			loginThroughPgpool(t, ns, replicas, true)
			conf := execIn(t, ns, "cat", "/opt/pgpool-II/etc/pgpool.conf")
			for _, want := range []string{"ssl = on", "ssl_cert = '/opt/pgpool-II/tls/tls.crt'", "ssl_key = '/opt/pgpool-II/tls/tls.key'", "ssl_ca_cert = '/opt/pgpool-II/tls/ca.pem'"} {
				if !strings.Contains(conf, want) {
					t.Fatalf("the running pgpool.conf lacks %q:\n%s", want, conf)
				}
			}
			ca, crt, key := writeClientFiles(t, ns)
			port := portForward(t, ns, "svc/pgpool")
			base := fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres sslrootcert=%s", port, ca)
			if out, ok := psql(t, base+" sslmode=verify-ca sslcert="+crt+" sslkey="+key); !ok {
				t.Fatalf("psql with the client certificate through port-forward: %s", out)
			}
			if out, ok := psql(t, base+" sslmode=verify-ca sslcert=/nonexistent sslkey=/nonexistent"); ok {
				t.Fatalf("psql without a client certificate logged in: %s", out)
			}
			first := served(t, ns, secretPEM(t, ns, "pgpool-server-cert", "ca.crt"))
			if first.Version != "TLS 1.3" || !first.Verified {
				t.Fatalf("served after add: %+v", first)
			}
			status(t, ns, replicas, true)
			if st, _ := runStatus(t, ns); len(st.Backends) != 1 || st.Backends[0].Check != "tls-trusted" || st.Backends[0].Issuer != "CN=backend-ca,O=postgres" {
				t.Fatalf("status of the backend: %+v", st.Backends)
			}
			fileEnd := execIn(t, ns, "openssl", "x509", "-in", "/opt/pgpool-II/tls/tls.crt", "-enddate", "-noout")

			// rotate: the served certificate and the file in the pod change.
			roll(t, ns, replicas, "tls", "rotate", "pgpool")
			loginThroughPgpool(t, ns, replicas, true)
			second := served(t, ns, secretPEM(t, ns, "pgpool-server-cert", "ca.crt"))
			status(t, ns, replicas, true)
			renewedBehindPgpool(t, ns, replicas)
			// ...and rotate --reissue=false makes them load it.
			roll(t, ns, replicas, "tls", "rotate", "pgpool", "--reissue=false")
			status(t, ns, replicas, true)
			if second.Serial == first.Serial || second.NotAfter.Equal(first.NotAfter) {
				t.Fatalf("rotate: pgpool still serves serial %s, ending %s", first.Serial, first.NotAfter)
			}
			if end := execIn(t, ns, "openssl", "x509", "-in", "/opt/pgpool-II/tls/tls.crt", "-enddate", "-noout"); end == fileEnd {
				t.Fatalf("rotate: the end date of the certificate file in the pod did not change (%s)", fileEnd)
			}

			// change-issuer: the CA in the pod is the new one; the old CA no
			// longer verifies the served certificate.
			oldCA := secretPEM(t, ns, "pgpool-server-cert", "ca.crt")
			oldClient := clientCert(t, ns)
			logins := loginsDuring(t, ns, oldClient, oldCA)
			roll(t, ns, replicas, "tls", "change-issuer", "pgpool", "--issuer", "pp-new-issuer")
			logins.stop(t)
			loginThroughPgpool(t, ns, replicas, true)
			// The old CA stays in the bundle until the next rotate: a client
			// with a certificate it signed still gets in.
			loginWith(t, ns, replicas, true, oldClient)
			subj := execIn(t, ns, "openssl", "x509", "-in", "/opt/pgpool-II/tls/ca.pem", "-subject", "-nameopt", "RFC2253", "-noout")
			if !strings.Contains(subj, "CN=ca-updated,O=kubedb-updated") {
				t.Fatalf("ca.pem in the pod after change-issuer: %s", subj)
			}
			if s := served(t, ns, oldCA); s.Verified {
				t.Fatal("the old CA still verifies the served certificate")
			}
			if s := served(t, ns, secretPEM(t, ns, "pgpool-server-cert", "ca.crt")); !s.Verified {
				t.Fatal("the new CA does not verify the served certificate")
			}

			// remove: ssl off, plain connections work; the roll proves it
			// with a password login through each pod (--verify-login).
			login := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-login"},
				StringData: map[string]string{"username": "postgres", "password": "pgpool-demo-password"}}
			if _, err := env.Kube.CoreV1().Secrets(ns).Create(testenv.Context(t, time.Minute), login, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			roll(t, ns, replicas, "tls", "remove", "pgpool", "--verify-login", "pgpool-login")
			conf = execIn(t, ns, "cat", "/opt/pgpool-II/etc/pgpool.conf")
			if !strings.Contains(conf, "ssl = 'off'") {
				t.Fatalf("the running pgpool.conf after remove:\n%s", conf)
			}
			status(t, ns, replicas, false)
			loginThroughPgpool(t, ns, replicas, false)
			port = portForward(t, ns, "svc/pgpool")
			c := exec.Command("psql", fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres sslmode=disable", port), "-w", "-At", "-c", "select 'logged-in'")
			c.Env = append(os.Environ(), "PGPASSWORD=pgpool-demo-password", "PGCONNECT_TIMEOUT=10")
			if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "logged-in") {
				t.Fatalf("plain psql after remove: %v %s", err, out)
			}
		})
	}
}

// objectVersions names the resourceVersions of everything the plugin could
// write (config, workload, Certificates, CA bundle), to prove a refusal
// wrote nothing.
func objectVersions(t *testing.T, ns string) string {
	t.Helper()
	ctx := context.Background()
	sec, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, "pgpool-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sts, err := env.Kube.AppsV1().StatefulSets(ns).Get(ctx, "pgpool", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crts, err := env.CertMgr.CertmanagerV1().Certificates(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cms, err := env.Kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: tls.LabelManagedBy + "=" + tls.ManagerName})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("config %s, statefulset generation %d, %d Certificates, %d CA bundles", sec.ResourceVersion, sts.Generation, len(crts.Items), len(cms.Items))
}

func clientCert(t *testing.T, ns string) *cryptotls.Certificate {
	t.Helper()
	kp, err := cryptotls.X509KeyPair(secretPEM(t, ns, "pgpool-client-cert", "tls.crt"), secretPEM(t, ns, "pgpool-client-cert", "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &kp
}

// loginThroughPgpool logs in through every pod (port-forward, pgx) and runs
// SELECT 1: with the client certificate over TLS and verify-full when
// tlsOn, with the password without TLS otherwise. With TLS, pgpool's own
// session on the backend must be TLS (pg_stat_ssl on the backend).
func loginThroughPgpool(t *testing.T, ns string, replicas int, tlsOn bool) {
	t.Helper()
	loginWith(t, ns, replicas, tlsOn, nil)
}

// loginWith is loginThroughPgpool with a given client certificate (nil: the
// one the client Secret holds now).
func loginWith(t *testing.T, ns string, replicas int, tlsOn bool, cert *cryptotls.Certificate) {
	t.Helper()
	pods := env.WaitPodsReady(t, ns, selector, replicas, time.Minute)
	for _, p := range pods {
		l := verify.Login{User: "postgres", Database: "postgres", TLS: tlsOn, ServerName: "localhost"}
		if tlsOn {
			l.Roots = tls.Pool(secretPEM(t, ns, "pgpool-server-cert", "ca.crt"))

			l.ClientCert = cert
			if cert == nil {
				l.ClientCert = clientCert(t, ns)
			}
		} else {
			l.Password = "pgpool-demo-password"
		}
		ctx := testenv.Context(t, time.Minute)
		res, err := verify.LoginAndQuery(ctx, verify.PortForwardDialer(env.Config, env.Kube.CoreV1(), ns, 9999), p.Name, l)
		if err != nil {
			t.Fatalf("login through %s: %v", p.Name, err)
		}
		if tlsOn && (res.TLSVersion != "TLS 1.3" || !res.BackendSSL) {
			t.Fatalf("login through %s: %+v, want TLS 1.3 to pgpool and TLS from pgpool to the backend", p.Name, res)
		}
	}
}

// loginLoop logs in through every Ready pod, over and over, while a
// change-issuer rolls: with the client certificate from before the change,
// and with whatever the client Secret holds now. A refusal by pgpool is a
// failure; a connection that breaks because its pod is going away is not.
type loginLoop struct {
	cancel   context.CancelFunc
	done     chan struct{}
	failures []string
	ok       map[string]int
}

func loginsDuring(t *testing.T, ns string, oldClient *cryptotls.Certificate, oldCA []byte) *loginLoop {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ll := &loginLoop{cancel: cancel, done: make(chan struct{}), ok: map[string]int{}}
	dial := verify.PortForwardDialer(env.Config, env.Kube.CoreV1(), ns, 9999)
	go func() {
		defer close(ll.done)
		newCA := []byte(caOf(ns, "pp-new-issuer"))
		for ctx.Err() == nil {
			select { // pace the loop while no pod is Ready
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			pods, err := env.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				continue
			}
			// The new client certificate exists only once the client
			// Certificate moved, after the roll: then it is tried too.
			certs := map[string]*cryptotls.Certificate{"old client certificate": oldClient}
			if s, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, "pgpool-client-cert", metav1.GetOptions{}); err == nil {
				if kp, err := cryptotls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"]); err == nil && !bytes.Equal(kp.Certificate[0], oldClient.Certificate[0]) {
					certs["new client certificate"] = &kp
				}
			}
			roots := tls.Pool(oldCA, newCA)
			for _, p := range pods.Items {
				if !podReady(&p) {
					continue
				}
				for name, c := range certs {
					lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
					_, err := verify.LoginAndQuery(lctx, dial, p.Name, verify.Login{User: "postgres", Database: "postgres", TLS: true, ServerName: "localhost", Roots: roots, ClientCert: c})
					lcancel()
					var pe *pgconn.PgError
					switch {
					case err == nil:
						ll.ok[name]++
					case ctx.Err() != nil:
					case refused(err, &pe):
						ll.failures = append(ll.failures, fmt.Sprintf("%s on pod %s: %v", name, p.Name, err))
					}
				}
			}
		}
	}()
	return ll
}

// refused tells a refusal of the login or the certificate (an
// authentication error, SQLSTATE class 28, "authentication failed", or a
// TLS certificate alert) from a pod that goes away under the login (the
// eviction: its pgpool and backend shut down, "unable to read data from DB
// node", a reset connection), which is not the change's fault.
func refused(err error, pe **pgconn.PgError) bool {
	if errors.As(err, pe) {
		return strings.HasPrefix((*pe).Code, "28") || strings.Contains((*pe).Message, "authentication failed") || strings.Contains((*pe).Message, "certificate")
	}
	return strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "tls: ")
}

// stop ends the loop and fails the test on any refusal; the old client
// certificate must have logged in during the roll. (The new one is proven
// on every pod right after, by loginThroughPgpool.)
func (ll *loginLoop) stop(t *testing.T) {
	t.Helper()
	ll.cancel()
	<-ll.done
	if len(ll.failures) > 0 {
		t.Fatalf("logins refused during change-issuer: %s", strings.Join(ll.failures, "; "))
	}
	if ll.ok["old client certificate"] == 0 {
		t.Fatalf("logins during change-issuer: %v, want some with the old client certificate", ll.ok)
	}
	t.Logf("logins during change-issuer: %v", ll.ok)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil
		}
	}
	return false
}

// caOf reads the CA certificate of a CA Issuer's Secret.
func caOf(ns, issuer string) string {
	ctx := context.Background()
	iss, err := env.CertMgr.CertmanagerV1().Issuers(ns).Get(ctx, issuer, metav1.GetOptions{})
	if err != nil || iss.Spec.CA == nil {
		return ""
	}
	s, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, iss.Spec.CA.SecretName, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return string(s.Data["ca.crt"])
}

// A replacement pod that cannot start stops the roll within 30 s with the
// reason, and the rollback that follows by itself leaves every pod Ready on
// the original config, and the login that worked before works again. The
// cause is a realistic one the plan warns about: the pod runs as UID 70
// without an fsGroup, so the entrypoint cannot read the mounted tls.key (mode
// 0600, owned by root) and exits.
func TestFailedRollRollsBack(t *testing.T) {
	ns := realPgpool(t, 2)
	ctx := testenv.Context(t, 5*time.Minute)
	// OnDelete: the running pods keep the old template. The backend's key
	// is made readable without an fsGroup, so only pgpool's TLS key is not.
	patch := []byte(`[{"op":"remove","path":"/spec/template/spec/securityContext/fsGroup"},
		{"op":"test","path":"/spec/template/spec/volumes/2/name","value":"backend-tls"},
		{"op":"replace","path":"/spec/template/spec/volumes/2/secret/defaultMode","value":292}]`)
	if _, err := env.Kube.AppsV1().StatefulSets(ns).Patch(ctx, "pgpool", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	conf0 := secretPEM(t, ns, "pgpool-config", "pgpool.conf")
	hba0 := secretPEM(t, ns, "pgpool-config", "pool_hba.conf")
	loginThroughPgpool(t, ns, 2, false)
	before := map[string]types.UID{}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, time.Minute) {
		before[p.Name] = p.UID
	}

	out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, "tls", "add", "pgpool", "--issuer", "pgpool-issuer",
		"--backend-ca", "secret/pgpool-backend-cert", "--yes", "--timeout", "5m", "-o", "json")
	if err == nil || !strings.Contains(err.Error(), "replacement pod "+ns+"/pgpool-1 cannot start: container pgpool: CrashLoopBackOff") ||
		!strings.Contains(err.Error(), "rolled back") || !strings.Contains(errOut, "rolling back to the state before it") {
		t.Fatalf("add with a replacement that cannot start: %v\n%s", err, errOut)
	}
	// Two documents: the add (its plan warned, its roll failed fast), then
	// the rollback.
	dec := json.NewDecoder(strings.NewReader(out))
	var addDoc, rbDoc struct {
		Plan struct {
			Operation string   `json:"operation"`
			Warnings  []string `json:"warnings"`
		} `json:"plan"`
		Result plan.Result `json:"result"`
	}
	if err := dec.Decode(&addDoc); err != nil {
		t.Fatalf("the add's output: %v\n%s", err, out)
	}
	if err := dec.Decode(&rbDoc); err != nil {
		t.Fatalf("the rollback's output: %v\n%s", err, out)
	}
	if !strings.Contains(strings.Join(addDoc.Plan.Warnings, "\n"), "without an fsGroup") {
		t.Errorf("the add's plan did not warn about the missing fsGroup: %v", addDoc.Plan.Warnings)
	}
	for _, s := range addDoc.Result.Steps {
		if s.Status == "failed" {
			if s.Kind != plan.Evict || s.Seconds > 30 {
				t.Fatalf("the failed step is %s %s after %.0fs, want the eviction of pgpool-1 within 30s", s.Kind, s.Object, s.Seconds)
			}
			t.Logf("the roll stopped after %.1fs: %s", s.Seconds, s.Message)
		}
	}
	if !rbDoc.Result.Succeeded || rbDoc.Plan.Operation != "rollback" {
		t.Fatalf("the rollback: %+v", rbDoc.Result)
	}
	// Every pod Ready on the original config; pgpool-0 was never touched,
	// pgpool-1 runs the restored template.
	if !bytes.Equal(secretPEM(t, ns, "pgpool-config", "pgpool.conf"), conf0) || !bytes.Equal(secretPEM(t, ns, "pgpool-config", "pool_hba.conf"), hba0) {
		t.Fatal("after the rollback the config differs from before the add")
	}
	pods := env.WaitPodsReady(t, ns, selector, 2, time.Minute)
	for _, p := range pods {
		if p.Name == "pgpool-0" && p.UID != before["pgpool-0"] {
			t.Error("pgpool-0, never changed, was restarted")
		}
		for _, v := range p.Spec.Volumes {
			if v.Projected != nil {
				t.Errorf("pod %s still mounts the TLS volume %s", p.Name, v.Name)
			}
		}
	}
	status(t, ns, 2, false)
	loginThroughPgpool(t, ns, 2, false)
}

// realPgpool makes a namespace with the seed's issuers, a backend that
// serves TLS from its own CA, and the KubeDB-layout pgpool on the real node
// with replicas Ready pods.
func realPgpool(t *testing.T, replicas int) string {
	t.Helper()
	return env.RealPgpool(t, replicas, nil)
}

// An add killed with SIGKILL in the middle of its roll on the real node
// (pgpool-1 evicted onto TLS, pgpool-0 not yet) is finished by running it
// again: the dead run's lock is taken over at once, only the pods the dead
// run did not restart are restarted, and every pod serves the Secret's
// certificate and lets the client certificate log in.
//
// The kill lands while the dead run waits for pgpool-1's replacement (a
// container start and a readiness probe, seconds); what each pod went
// through is read from the pods, not assumed from where the kill was
// aimed: a kill after a step's last line once landed after the next
// eviction had been sent (a clean-clone run).
func TestKilledAddFinishesOnRealNode(t *testing.T) {
	ns := realPgpool(t, 2)
	add := []string{"tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert",
		"--client-org", "pgpool", "--client-ou", "client", "--backend-ca", "secret/pgpool-backend-cert"}
	orig := map[string]types.UID{}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, 2*time.Minute) {
		orig[p.Name] = p.UID
	}
	env.KillAt(t, ns, syscall.SIGKILL, func(l string) bool { return strings.Contains(l, "evicted pod pgpool-1") }, add...)
	mid := map[string]types.UID{}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, 2*time.Minute) {
		mid[p.Name] = p.UID
	}
	if mid["pgpool-1"] == orig["pgpool-1"] {
		t.Fatal("pgpool-1 was not replaced after the killed run had evicted it")
	}
	if mid["pgpool-0"] != orig["pgpool-0"] {
		t.Log("the kill landed after the dead run had evicted pgpool-0 too: the run again restarts no pod")
	}
	out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, append(add, "--yes")...)
	if err != nil || !strings.Contains(errOut, "whose process is gone") || !strings.Contains(out, "resuming a tls add") || strings.Contains(out, "evict   Pod "+ns+"/pgpool-1") {
		t.Fatalf("add again after SIGKILL: %v\n%s\n%s", err, out, errOut)
	}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, 2*time.Minute) {
		restartedBefore := mid[p.Name] != orig[p.Name]
		switch {
		case restartedBefore && p.UID != mid[p.Name]:
			t.Errorf("%s, restarted by the killed run, was restarted again", p.Name)
		case !restartedBefore && p.UID == mid[p.Name]:
			t.Errorf("%s, not restarted by the killed run, was not restarted", p.Name)
		}
	}
	status(t, ns, 2, true)
	loginThroughPgpool(t, ns, 2, true)
}

// After cert-manager renews the server certificate behind pgpool's back,
// and one pod has restarted by itself since, `rotate --reissue=false
// --only-stale` restarts exactly the pod that still serves the old
// certificate; run again, it finds every pod current and changes nothing.
func TestRotateOnlyStalePods(t *testing.T) {
	ns := realPgpool(t, 2)
	plugin(t, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert",
		"--client-org", "pgpool", "--client-ou", "client", "--backend-ca", "secret/pgpool-backend-cert")
	renewedBehindPgpool(t, ns, 2)
	ctx := testenv.Context(t, 3*time.Minute)
	pods := env.WaitPodsReady(t, ns, selector, 2, time.Minute)
	old := map[string]types.UID{}
	for _, p := range pods {
		old[p.Name] = p.UID
	}
	// pgpool-0 restarts by itself (a node drain, say): it loads the new one.
	if err := env.Kube.CoreV1().Pods(ns).Delete(ctx, "pgpool-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitObject(t, ctx, podLW(ns, "pgpool-0"), &corev1.Pod{}, "pgpool-0 to come back Ready", func(p *corev1.Pod) bool {
		return p.Name == "pgpool-0" && p.UID != old["pgpool-0"] && podReady(p)
	})
	mid := map[string]types.UID{}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, time.Minute) {
		mid[p.Name] = p.UID
	}
	out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, "tls", "rotate", "pgpool", "--reissue=false", "--only-stale", "--yes")
	if err != nil || !strings.Contains(errOut, "1 of 2 pods serve an older certificate than the Secret holds: pgpool-1") || strings.Contains(out, "evict   Pod "+ns+"/pgpool-0") {
		t.Fatalf("rotate --only-stale: %v\n%s\n%s", err, out, errOut)
	}
	for _, p := range env.WaitPodsReady(t, ns, selector, 2, time.Minute) {
		if (p.Name == "pgpool-0") != (p.UID == mid[p.Name]) {
			t.Fatalf("pod %s: restarted %v; want only pgpool-1 restarted", p.Name, p.UID != mid[p.Name])
		}
	}
	status(t, ns, 2, true)
	out, _, err = testenv.Plugin(env.Kubeconfig, ns, 10*time.Minute, "tls", "rotate", "pgpool", "--reissue=false", "--only-stale", "--yes")
	if err != nil || !strings.Contains(out, "all 2 pods current") {
		t.Fatalf("rotate --only-stale with every pod current: %v\n%s", err, out)
	}
}

// podLW lists and watches the pod name in ns.
func podLW(ns, name string) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, lo metav1.ListOptions) (k8sruntime.Object, error) {
			lo.FieldSelector = "metadata.name=" + name
			return env.Kube.CoreV1().Pods(ns).List(ctx, lo)
		},
		WatchFuncWithContext: func(ctx context.Context, lo metav1.ListOptions) (watch.Interface, error) {
			lo.FieldSelector = "metadata.name=" + name
			return env.Kube.CoreV1().Pods(ns).Watch(ctx, lo)
		},
	}
}

// A client certificate issued for user app (tls client-cert) logs in as app
// through pgpool with psql, and only as app; tls status lists it.
func TestClientCertForOneUser(t *testing.T) {
	ns := realPgpool(t, 1)
	plugin(t, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert",
		"--client-org", "pgpool", "--client-ou", "client", "--backend-ca", "secret/pgpool-backend-cert")
	if out, err := kubectl(t, "-n", ns, "exec", "pgpool-0", "-c", "postgres", "--", "psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", "CREATE ROLE app LOGIN"); err != nil {
		t.Fatalf("create role app in the backend: %v\n%s", err, out)
	}
	dir := t.TempDir()
	out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 5*time.Minute, "tls", "client-cert", "pgpool", "--user", "app", "--write-dir", dir, "-o", "name")
	if err != nil || out != "pgpool-client-app\n" {
		t.Fatalf("tls client-cert --user app: %v\n%q\n%s", err, out, errOut)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tls.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("tls.key written with %v (%v), want 0600", fi.Mode(), err)
	}
	port := portForward(t, ns, "svc/pgpool")
	who := func(user string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn := fmt.Sprintf("host=localhost port=%d dbname=postgres user=%s sslmode=verify-ca sslrootcert=%s sslcert=%s sslkey=%s",
			port, user, filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		b, err := exec.CommandContext(ctx, "psql", conn, "-w", "-At", "-c", "select current_user").CombinedOutput()
		return strings.TrimSpace(string(b)), err
	}
	if got, err := who("app"); err != nil || got != "app" {
		t.Fatalf("psql as app with app's certificate: %v: %s", err, got)
	}
	if got, err := who("postgres"); err == nil {
		t.Fatalf("psql as postgres with app's certificate logged in: %s", got)
	}
	st, err := runStatus(t, ns)
	if err != nil || len(st.ClientCerts) != 1 || st.ClientCerts[0].User != "app" || !st.ClientCerts[0].Ready {
		t.Fatalf("status lists client certificates %+v (%v)", st.ClientCerts, err)
	}
}

// Two pgpools, one renewed behind pgpool's back: rotate --reissue=false
// --only-stale across them (-A -l) restarts exactly that pgpool's pod and
// finds the other current.
func TestRotateOnlyStaleAcrossPgpools(t *testing.T) {
	label := fmt.Sprintf("kubectl-pgpool-fleet=r%d", time.Now().UnixNano()%1e9)
	k, v, _ := strings.Cut(label, "=")
	var nss []string
	for i := 0; i < 2; i++ {
		ns := realPgpool(t, 1)
		plugin(t, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--backend-ca", "secret/pgpool-backend-cert")
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, k, v)
		if _, err := env.Kube.AppsV1().StatefulSets(ns).Patch(testenv.Context(t, time.Minute), "pgpool", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		nss = append(nss, ns)
	}
	renewedBehindPgpool(t, nss[0], 1)
	before := map[string]types.UID{}
	for _, ns := range nss {
		before[ns] = env.WaitPodsReady(t, ns, selector, 1, time.Minute)[0].UID
	}
	out, errOut, err := testenv.Plugin(env.Kubeconfig, "", 10*time.Minute, "tls", "rotate", "-A", "-l", label, "--reissue=false", "--only-stale", "--yes")
	if err != nil || !strings.Contains(out, "all 1 pods current") || !strings.Contains(errOut, "["+nss[0]+"/pgpool] --only-stale: 1 of 1 pods serve an older certificate") {
		t.Fatalf("rotate --only-stale -A -l: %v\n%s\n%s", err, out, errOut)
	}
	for i, ns := range nss {
		restarted := env.WaitPodsReady(t, ns, selector, 1, time.Minute)[0].UID != before[ns]
		if restarted != (i == 0) {
			t.Fatalf("pgpool in %s restarted: %v, want %v", ns, restarted, i == 0)
		}
	}
	status(t, nss[0], 1, true)
}

// asPetSet turns the fixture's StatefulSet into the PetSet KubeDB makes
// (same spec), and its PDB into one that counts pods (minAvailable
// replicas-1: a maxUnavailable PDB needs the PetSet's scale, which the
// disruption controller learns only at its REST mapper's next refresh).
func asPetSet(replicas int) func(*unstructured.Unstructured) {
	return func(o *unstructured.Unstructured) {
		switch o.GetKind() {
		case "StatefulSet":
			o.SetAPIVersion("apps.k8s.appscode.com/v1")
			o.SetKind("PetSet")
		case "PodDisruptionBudget":
			unstructured.RemoveNestedField(o.Object, "spec", "maxUnavailable")
			_ = unstructured.SetNestedField(o.Object, int64(replicas-1), "spec", "minAvailable")
		}
	}
}

// The seed's walkthrough on KubeDB as it runs: a real PetSet, rolled by
// the real PetSet controller (kubeops/petset, built from its source
// snapshot), controlled by a Pgpool object whose backend's AppBinding
// carries the backend's CA, with real pgpool pods, 1 and 3 replicas: add
// (without --backend-ca: the AppBinding's CA is trusted), rotate,
// change-issuer, remove; after each, every pod was replaced exactly once by
// the controller (with 3, at least 2 Ready at every moment) and a login
// through every pod proves the path to the backend, and the Pgpool object
// says what is live and is not left paused.
func TestSeedWalkthroughOnRealPetSet(t *testing.T) {
	if !env.Cluster.RealNode {
		t.Fatal("the cluster has no real node: start it with REAL_NODE=1 make cluster-up")
	}
	env.PetSetController(t)
	env.InstallKubeDBAPI(t)
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			ns := env.RealPgpool(t, replicas, asPetSet(replicas))
			// As KubeDB runs it: a Pgpool object controls the PetSet and its
			// config, and the backend's AppBinding carries its CA.
			env.KubeDBOwned(t, ns, pgpool.PetSets)
			ab := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
				"metadata": map[string]any{"name": "ha-postgres", "namespace": ns},
				"spec": map[string]any{"type": "kubedb.com/postgres", "clientConfig": map[string]any{
					"caBundle": base64.StdEncoding.EncodeToString(secretPEM(t, ns, "pgpool-backend-cert", "ca.crt"))}}}}
			if _, err := env.Dynamic.Resource(pgpool.AppBindings).Namespace(ns).Create(testenv.Context(t, time.Minute), ab, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			pods, err := env.Kube.CoreV1().Pods(ns).List(testenv.Context(t, time.Minute), metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pods.Items {
				if o := metav1.GetControllerOf(&p); o == nil || o.Kind != "PetSet" || o.APIVersion != "apps.k8s.appscode.com/v1" {
					t.Fatalf("pod %s is not the PetSet controller's: %v", p.Name, p.OwnerReferences)
				}
			}
			// No --backend-ca: the backend's CA comes from its AppBinding.
			rollChecked(t, ns, replicas, false, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require",
				"--client-auth-mode", "cert", "--client-org", "pgpool", "--client-ou", "client")
			loginThroughPgpool(t, ns, replicas, true)
			env.CheckKubeDBSays(t, ns, "add", "require", "cert", "pgpool-issuer")
			rollChecked(t, ns, replicas, false, "tls", "rotate", "pgpool")
			loginThroughPgpool(t, ns, replicas, true)
			env.CheckKubeDBSays(t, ns, "rotate", "require", "cert", "pgpool-issuer")
			rollChecked(t, ns, replicas, false, "tls", "change-issuer", "pgpool", "--issuer", "pp-new-issuer")
			loginThroughPgpool(t, ns, replicas, true)
			env.CheckKubeDBSays(t, ns, "change-issuer", "require", "cert", "pp-new-issuer")
			login := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-login"},
				StringData: map[string]string{"username": "postgres", "password": "pgpool-demo-password"}}
			if _, err := env.Kube.CoreV1().Secrets(ns).Create(testenv.Context(t, time.Minute), login, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			rollChecked(t, ns, replicas, false, "tls", "remove", "pgpool", "--verify-login", "pgpool-login")
			loginThroughPgpool(t, ns, replicas, false)
			env.CheckKubeDBSays(t, ns, "remove", "disable", "md5", "")
		})
	}
}

// asPgpool2OnK8s turns the real-node KubeDB fixture into the
// pgpool2_on_k8s layout: a Deployment (rolling update, one pod at a time)
// whose config is a ConfigMap mounted at /config; the same image and
// entrypoint (pgpool2_on_k8s's copies /config the same way).
func asPgpool2OnK8s(o *unstructured.Unstructured) {
	switch {
	case o.GetKind() == "Secret" && o.GetName() == "pgpool-config":
		o.SetKind("ConfigMap")
		o.Object["data"] = o.Object["stringData"]
		delete(o.Object, "stringData")
	case o.GetKind() == "StatefulSet":
		o.SetKind("Deployment")
		spec := o.Object["spec"].(map[string]any)
		delete(spec, "serviceName")
		delete(spec, "podManagementPolicy")
		delete(spec, "updateStrategy")
		spec["strategy"] = map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxUnavailable": int64(1), "maxSurge": int64(0)}}
		vols, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
		for i, v := range vols {
			if m := v.(map[string]any); m["name"] == "pgpool-config" {
				delete(m, "secret")
				m["configMap"] = map[string]any{"name": "pgpool-config"}
				vols[i] = m
			}
		}
		_ = unstructured.SetNestedSlice(o.Object, vols, "spec", "template", "spec", "volumes")
	}
}

// The pgpool2_on_k8s layout with real pgpool (issue 27): after add with
// sslMode require and clientAuthMode cert, status proves against each pod
// that pgpool refuses a plain login and a TLS login without a client
// certificate, and the client certificate logs in through every pod.
func TestPgpool2OnK8sRefusesOnRealNode(t *testing.T) {
	ns := env.RealPgpool(t, 2, asPgpool2OnK8s)
	if _, err := env.Kube.AppsV1().Deployments(ns).Get(testenv.Context(t, time.Minute), "pgpool", metav1.GetOptions{}); err != nil {
		t.Fatalf("the pgpool2_on_k8s Deployment: %v", err)
	}
	plugin(t, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert",
		"--client-org", "pgpool", "--client-ou", "client", "--backend-ca", "secret/pgpool-backend-cert")
	status(t, ns, 2, true) // plaintext and certless refused by every pod
	loginThroughPgpool(t, ns, 2, true)
	// What a monitor reads (issue 28): -o prometheus, parsed by
	// Prometheus' own parser, says the same of each real pod.
	out, errOut, err := testenv.Plugin(env.Kubeconfig, ns, 2*time.Minute, "tls", "status", "pgpool", "-o", "prometheus", "--warn-within", "30d", "--fail-within", "7d")
	if err != nil {
		t.Fatalf("status -o prometheus --warn-within 30d --fail-within 7d of a 90-day certificate: %v\n%s\n%s", err, out, errOut)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, name := range []string{"pgpool_tls_served_matches_secret", "pgpool_tls_plaintext_refused", "pgpool_tls_certless_refused"} {
		if ms := fams[name].GetMetric(); len(ms) != 2 || ms[0].GetGauge().GetValue() != 1 || ms[1].GetGauge().GetValue() != 1 {
			t.Fatalf("%s: %v\n%s", name, ms, out)
		}
	}
	if ms := fams["pgpool_tls_served_not_after_seconds"].GetMetric(); len(ms) != 2 || ms[0].GetGauge().GetValue() < float64(time.Now().Add(7*24*time.Hour).Unix()) {
		t.Fatalf("pgpool_tls_served_not_after_seconds: %v", ms)
	}
}
