// Command petset runs the real PetSet controller (kubeops/petset, built by
// hack/build-petset.sh) against the local cluster, as the tests do, for
// `make cluster-up` and `make demo`: in a network namespace of its own
// (its webhook server listens on every interface), until SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

func main() {
	if code, ok := testenv.NetnsChild(); ok {
		os.Exit(code)
	}
	kubeconfig := flag.String("kubeconfig", "", "the local cluster's kubeconfig")
	dir := flag.String("dir", "", "where hack/build-petset.sh put the controller")
	logPath := flag.String("log", "", "the controller's log file")
	flag.Parse()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "petset:", err)
		os.Exit(2)
	}
	stop, pid, err := testenv.StartPetSet(*kubeconfig, cfg.Host, *dir, *logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "petset:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "petset: the PetSet controller runs in its own network namespace (pid %d, log %s)\n", pid, *logPath)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	stop()
}
