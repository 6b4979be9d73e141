package testenv

// The real PetSet controller (kubeops/petset), run against the local API
// server for the tests that roll a real PetSet. Its webhook server listens
// on :9443 of every interface and has no flag for the address, so it runs
// in a network namespace of its own: there, 127.0.0.1:PORT of the API
// server is a bridge (through a unix socket) to the API server on this
// machine's loopback, and nothing it opens is reachable from outside.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// envNetnsChild, when set, makes a test binary the bridge inside the
// PetSet controller's network namespace (see netnsChild).
const envNetnsChild = "KUBECTL_PGPOOL_NETNS_CHILD"

type netnsSpec struct {
	Socket string   `json:"socket"` // the unix socket to the API server
	Listen string   `json:"listen"` // 127.0.0.1:PORT inside the namespace
	Log    string   `json:"log"`
	Args   []string `json:"args"` // the controller and its arguments
}

// PetSetController builds (once, cached) and starts the real PetSet
// controller from the source snapshot, installs its CRDs (replacing the
// e2e tier's stand-in) and stops it when the test ends. Without the
// snapshot the test is skipped, saying why.
func (e *Env) PetSetController(t testing.TB) {
	t.Helper()
	build := exec.Command("bash", filepath.Join(e.Root, "hack", "build-petset.sh"))
	var stderr strings.Builder
	build.Stderr = &stderr
	out, err := build.Output()
	if err != nil {
		t.Fatalf("build the PetSet controller: %v\n%s", err, stderr.String())
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		t.Skip(strings.TrimSpace(stderr.String()))
	}
	dir := lines[len(lines)-1]

	ctx := Context(t, 2*time.Minute)
	for _, f := range []string{"apps.k8s.appscode.com_petsets.yaml", "apps.k8s.appscode.com_placementpolicies.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, "crds", f))
		if err != nil {
			t.Fatal(err)
		}
		objs := decodeObjects(t, f, b)
		e.Apply(t, "", objs, 0)
		for _, o := range objs {
			e.waitEstablished(t, ctx, o.GetName())
		}
	}

	logPath := ""
	if e.Cluster != nil && e.Cluster.ClusterDir != "" {
		logPath = filepath.Join(e.Cluster.ClusterDir, "logs", "petset.log")
	}
	stop, pid, err := StartPetSet(e.Kubeconfig, e.Config.Host, dir, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	t.Logf("the PetSet controller runs in its own network namespace (pid %d)", pid)
}

// StartPetSet starts the PetSet controller built in dir (hack/build-petset.sh)
// against the API server at apiURL (kubeconfig names it too), in a network
// namespace of its own, logging to logPath (a temporary file when ""); it
// returns how to stop it and its pid. The running binary must hand
// NetnsChild its start (a test binary does it in Run).
func StartPetSet(kubeconfig, apiURL, dir, logPath string) (stop func(), pid int, err error) {
	u, err := url.Parse(apiURL)
	if err != nil {
		return nil, 0, err
	}
	tmp, err := os.MkdirTemp("", "petset-") // short: a unix socket path has a length limit
	if err != nil {
		return nil, 0, err
	}
	certs := filepath.Join(tmp, "certs")
	if err := writeSelfSigned(certs); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, 0, err
	}
	sock := filepath.Join(tmp, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, 0, err
	}
	go bridge(l, func() (net.Conn, error) { return net.Dial("tcp", u.Host) })
	if logPath == "" {
		logPath = filepath.Join(tmp, "petset.log")
	}
	spec, _ := json.Marshal(netnsSpec{Socket: sock, Listen: u.Host, Log: logPath, Args: []string{filepath.Join(dir, "petset"), "run",
		"--kubeconfig", kubeconfig, "--cert-dir", certs, "--metrics-bind-address", "0", "--health-probe-bind-address", "127.0.0.1:0"}})
	self, err := os.Executable()
	if err != nil {
		_ = l.Close()
		_ = os.RemoveAll(tmp)
		return nil, 0, err
	}
	c := exec.Command("unshare", "--net", "--fork", "--kill-child", self)
	c.Env = append(os.Environ(), envNetnsChild+"="+string(spec))
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	if err := c.Start(); err != nil {
		_ = l.Close()
		_ = os.RemoveAll(tmp)
		return nil, 0, err
	}
	exited := make(chan struct{})
	go func() { _ = c.Wait(); close(exited) }()
	return func() {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		_ = l.Close()
		_ = os.RemoveAll(tmp)
	}, c.Process.Pid, nil
}

// NetnsChild runs the bridge inside the PetSet controller's network
// namespace when this process was started for it (StartPetSet): then it
// returns the exit code and true.
func NetnsChild() (int, bool) {
	spec := os.Getenv(envNetnsChild)
	if spec == "" {
		return 0, false
	}
	return netnsChild(spec), true
}

// bridge copies every connection l accepts to one that dial opens, both
// ways, until l is closed.
func bridge(l net.Listener, dial func() (net.Conn, error)) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() { _ = in.Close() }()
			out, err := dial()
			if err != nil {
				return
			}
			defer func() { _ = out.Close() }()
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in); closeWrite(out) }()
			go func() { defer wg.Done(); _, _ = io.Copy(in, out); closeWrite(in) }()
			wg.Wait()
		}()
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// netnsChild runs inside the controller's network namespace when the test
// binary is started with envNetnsChild: it brings loopback up, bridges
// the API server's address to the unix socket, runs the controller and
// exits with its exit code (SIGTERM stops it).
func netnsChild(specJSON string) int {
	var s netnsSpec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		fmt.Fprintln(os.Stderr, "netns child:", err)
		return 2
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "netns child: ip link set lo up: %v %s\n", err, out)
		return 2
	}
	l, err := net.Listen("tcp", s.Listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "netns child:", err)
		return 2
	}
	go bridge(l, func() (net.Conn, error) { return net.Dial("unix", s.Socket) })
	logf, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "netns child:", err)
		return 2
	}
	defer func() { _ = logf.Close() }()
	c := exec.Command(s.Args[0], s.Args[1:]...)
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "netns child:", err)
		return 2
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; _ = c.Process.Signal(syscall.SIGTERM) }()
	if err := c.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 1
	}
	return 0
}

// writeSelfSigned writes tls.crt and tls.key for the controller's webhook
// server (nothing calls it: no webhook configuration points at it).
func writeSelfSigned(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "petset-webhook"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
}
