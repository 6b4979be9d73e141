// Package realnode runs the seed's walkthrough on the local cluster's real
// node (REAL_NODE=1: kubelet + containerd running real pgpool-II pods): the
// seed's exec, port-forward + psql and openssl checks, automated, for 1 and
// 3 replicas.
package realnode

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/apply"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
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
	bin, err := os.ReadFile(filepath.Join(filepath.Dir(env.Kubeconfig), "bin-dir"))
	if err != nil {
		t.Fatalf("read the cluster's bin-dir: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(strings.TrimSpace(string(bin)), "kubectl"), append([]string{"--kubeconfig", env.Kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// portForward runs `kubectl port-forward` to target (pod/NAME or svc/NAME)
// on a free local port and returns that port.
func portForward(t *testing.T, ns, target string) int {
	t.Helper()
	bin, _ := os.ReadFile(filepath.Join(filepath.Dir(env.Kubeconfig), "bin-dir"))
	c := exec.Command(filepath.Join(strings.TrimSpace(string(bin)), "kubectl"), "--kubeconfig", env.Kubeconfig, "-n", ns,
		"port-forward", "--address", "127.0.0.1", target, ":9999")
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
	before := env.WaitPodsReady(t, ns, selector, replicas, 2*time.Minute)
	log := env.WatchPods(t, ns, selector)
	plugin(t, ns, args...)
	after := env.WaitPodsReady(t, ns, selector, replicas, 2*time.Minute)
	log.Stop()
	old := map[string]bool{}
	for _, p := range before {
		old[string(p.UID)] = true
	}
	for _, p := range after {
		if old[string(p.UID)] {
			t.Fatalf("%s: pod %s was not restarted", args[1], p.Name)
		}
	}
	if n := len(log.Added()); n != replicas {
		t.Fatalf("%s: %d pods created for %d replicas, want each replaced exactly once", args[1], n, replicas)
	}
	if replicas >= 3 && log.MinReady() < replicas-1 {
		t.Fatalf("%s: only %d pods were Ready at one moment, want at least %d", args[1], log.MinReady(), replicas-1)
	}
}

// runStatus runs `tls status --verify=required -o json`.
func runStatus(t *testing.T, ns string) (cmd.Status, error) {
	t.Helper()
	out, errOut, runErr := testenv.Plugin(env.Kubeconfig, ns, 2*time.Minute, "tls", "status", "pgpool", "--verify=required", "-o", "json")
	var st cmd.Status
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
	if err := tls.TriggerIssuance(ctx, cm, ns, crt.Name, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.WaitReady(ctx, cm, ns, crt.Name, tls.Revision(crt), nil); err != nil {
		t.Fatal(err)
	}
	renewed := serverSerial(t, ns)
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
	conn, err := apply.PortForwardDialer(env.Config, env.Kube.CoreV1(), ns, 9999)(ctx, "pgpool-0")
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
	if _, err := env.Kube.CoreV1().Nodes().Get(context.Background(), "localhost", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Fatal("the cluster has no real node: start it with REAL_NODE=1 make cluster-up")
	}
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			ns := env.Namespace(t)
			env.Apply(t, ns, env.Fixture(t, "issuers.yaml"), 0)
			env.Apply(t, ns, env.Fixture(t, "kubedb-real.yaml"), replicas)
			ctx := testenv.Context(t, 2*time.Minute)
			env.WaitIssuerReady(t, ctx, ns, "pgpool-issuer")
			env.WaitIssuerReady(t, ctx, ns, "pp-new-issuer")
			env.WaitPodsReady(t, ns, selector, replicas, 3*time.Minute)

			// add, as the seed: sslMode require, clientAuthMode cert.
			roll(t, ns, replicas, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require",
				"--client-auth-mode", "cert", "--client-org", "pgpool", "--client-ou", "client")
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
			fileEnd := execIn(t, ns, "openssl", "x509", "-in", "/opt/pgpool-II/tls/tls.crt", "-enddate", "-noout")

			// rotate: the served certificate and the file in the pod change.
			roll(t, ns, replicas, "tls", "rotate", "pgpool")
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
			roll(t, ns, replicas, "tls", "change-issuer", "pgpool", "--issuer", "pp-new-issuer")
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

			// remove: ssl off, plain connections work.
			roll(t, ns, replicas, "tls", "remove", "pgpool")
			conf = execIn(t, ns, "cat", "/opt/pgpool-II/etc/pgpool.conf")
			if !strings.Contains(conf, "ssl = 'off'") {
				t.Fatalf("the running pgpool.conf after remove:\n%s", conf)
			}
			status(t, ns, replicas, false)
			port = portForward(t, ns, "svc/pgpool")
			c := exec.Command("psql", fmt.Sprintf("host=localhost port=%d dbname=postgres user=postgres sslmode=disable", port), "-w", "-At", "-c", "select 'logged-in'")
			c.Env = append(os.Environ(), "PGPASSWORD=pgpool-demo-password", "PGCONNECT_TIMEOUT=10")
			if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "logged-in") {
				t.Fatalf("plain psql after remove: %v %s", err, out)
			}
		})
	}
}
