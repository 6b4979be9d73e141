// Command cert-manager-webhook serves cert-manager's own admission webhook
// (the validation of every cert-manager resource and the identity fields
// of CertificateRequests) for the project's local test cluster, so that it
// rejects what a real cluster's webhook rejects. It is the upstream code
// (internal/webhook's admission chain); only the wiring is ours: it serves
// /validate and /mutate on 127.0.0.1 only, with a certificate from files.
//
// It imports cert-manager's internal packages, so it is built inside a
// copy of the cert-manager module (hack/build-cluster-bins.sh copies it to
// internal/localwebhook there); it lives under testdata so that the Go
// tools of this repository leave it alone.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	config "github.com/cert-manager/cert-manager/internal/apis/config/webhook"
	"github.com/cert-manager/cert-manager/internal/webhook"
	cmadmission "github.com/cert-manager/cert-manager/pkg/webhook/admission"
)

func main() {
	// Its own flag set: controller-runtime registers --kubeconfig on the
	// global one.
	fs := flag.NewFlagSet("cert-manager-webhook", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the API server")
	addr := fs.String("listen", "127.0.0.1:16490", "address to serve on (loopback only)")
	certFile := fs.String("tls-cert-file", "", "serving certificate")
	keyFile := fs.String("tls-private-key-file", "", "serving key")
	_ = fs.Parse(os.Args[1:])
	if err := run(*kubeconfig, *addr, *certFile, *keyFile); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(kubeconfig, addr, certFile, keyFile string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("--listen %q: give a loopback address (127.0.0.1:PORT)", addr)
	}
	log := klog.Background()
	ctrllog.SetLogger(log)
	s, err := webhook.NewCertManagerWebhookServer(log, config.WebhookConfiguration{KubeConfig: kubeconfig})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/validate", cmadmission.NewCustomValidationWebhook(s.ResourceScheme, s.ValidationWebhook))
	mux.Handle("/mutate", cmadmission.NewCustomMutationWebhook(s.MutationWebhook))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Info("serving cert-manager's admission webhook", "address", addr)
	if err := srv.ListenAndServeTLS("", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
