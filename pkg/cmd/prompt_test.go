package cmd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// openPTY opens a pseudo-terminal: the side a user types into (master) and
// the side the command sees as its terminal (tty).
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(); _ = m.Close() })
	return m, s
}

// On a terminal, a fleet asks once, listing every pgpool it would change;
// "n" cancels and nothing is written.
func TestFleetAsksOnceOnATerminal(t *testing.T) {
	c := newCluster(t)
	master, tty := openPTY(t)
	var screen bytes.Buffer
	read := make(chan struct{})
	go func() { defer close(read); _, _ = io.Copy(&screen, master) }()
	if _, err := master.Write([]byte("n\n")); err != nil {
		t.Fatal(err)
	}
	ns := "demo"
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = &ns
	o := &RotateOptions{OperationOptions: newOperationOptions(genericiooptions.IOStreams{In: tty, Out: io.Discard, ErrOut: tty}, flags), Reissue: true}
	o.Clients, o.All, o.Parallel, o.Verify, o.Timeout, o.DryRun, o.Output, o.Apply = c.clients, true, 1, "true", time.Minute, "none", "text", "IfReady"
	if err := o.Complete(nil); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	err := o.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cancelled: nothing was changed") {
		t.Fatalf("answer n: %v", err)
	}
	_ = tty.Close() // the master reads what is left, then EIO
	<-read
	got := screen.String()
	for _, want := range []string{"tls rotate on 1 pgpools:", "demo/pgpool", "Change all of them (each plan is printed as it runs)? [y/N]"} {
		if !strings.Contains(got, want) {
			t.Fatalf("the terminal shows %q, want %q", got, want)
		}
	}
	if strings.Count(got, "[y/N]") != 1 {
		t.Fatalf("asked more than once: %q", got)
	}
	if w := c.Writes(); len(w) != 0 {
		t.Fatalf("cancelled, but wrote: %v", w)
	}
}

// selfSigned is a PEM certificate that expires at notAfter.
func selfSigned(t *testing.T, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgpool"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// `tls status --all` colours the days to expiry on a terminal: red under 7,
// yellow under 30; in a pipe the same table is plain.
func TestStatusFleetExpiryColours(t *testing.T) {
	t.Setenv("TERM", "xterm-256color")
	t.Setenv("NO_COLOR", "")
	t.Setenv("CI", "") // lipgloss (termenv) takes any CI=... for no terminal
	for _, tc := range []struct {
		days int
		code string // lipgloss colour 9 (red) or 11 (yellow), as ANSI
	}{{5, "91"}, {20, "93"}, {60, ""}} {
		c := newCluster(t)
		crt := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-server-cert", Namespace: "demo"}, Spec: cmapi.CertificateSpec{SecretName: "pgpool-server-cert"}}
		if _, err := c.CertManager.CertmanagerV1().Certificates("demo").Create(context.Background(), crt, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-server-cert", Namespace: "demo"},
			Data: map[string][]byte{"tls.crt": selfSigned(t, time.Now().Add(time.Duration(tc.days)*24*time.Hour+time.Hour))}}
		if _, err := c.Core.CoreV1().Secrets("demo").Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		run := func(out io.Writer) {
			ns := "demo"
			flags := genericclioptions.NewConfigFlags(false)
			flags.Namespace = &ns
			o := &StatusOptions{connection: connection{IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: io.Discard}, ConfigFlags: flags, Clients: c.clients},
				Output: "text", Verify: "false", Timeout: 5e9}
			o.All = true
			if err := o.Complete(nil); err != nil {
				t.Fatal(err)
			}
			if err := o.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		master, tty := openPTY(t)
		var screen bytes.Buffer
		read := make(chan struct{})
		go func() { defer close(read); _, _ = io.Copy(&screen, master) }()
		run(tty)
		_ = tty.Close()
		<-read
		days := fmt.Sprintf("%dd", tc.days)
		coloured := regexp.MustCompile(`\x1b\[[0-9;]*` + tc.code + `[0-9;]*m` + days)
		if tc.code != "" && !coloured.MatchString(screen.String()) {
			t.Fatalf("%s on a terminal: %q, want it in colour %s", days, screen.String(), tc.code)
		}
		if tc.code == "" && strings.Contains(screen.String(), "\x1b[") {
			t.Fatalf("%s on a terminal is coloured: %q", days, screen.String())
		}
		var pipe bytes.Buffer
		run(&pipe)
		if !strings.Contains(pipe.String(), " "+days+" ") || strings.Contains(pipe.String(), "\x1b[") {
			t.Fatalf("%s in a pipe: %q", days, pipe.String())
		}
	}
}
