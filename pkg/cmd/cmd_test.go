package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/operation"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ui"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/fakes"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
)

// Fast tests of the commands: Options.Complete/Validate/Run against
// client-go's fake clientsets (as cmctl's tests call Run), for what needs
// no server behaviour: preflight refusals, permissions derived from the
// plan, dry runs that write nothing, errors that must not be swallowed.

// cluster is fakes.KubeDB with the clients the commands use.
type cluster struct {
	*fakes.Cluster
	clients *operation.Clients
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{Cluster: fakes.KubeDB(t, "../conf/testdata")}
	c.clients = &operation.Clients{
		Clients: runner.Clients{Config: &rest.Config{Host: "https://127.0.0.1:1"}, Core: c.Core.CoreV1(), Policy: c.Core.PolicyV1(),
			Coordination: c.Core.CoordinationV1(), CertManager: c.CertManager.CertmanagerV1(), Dynamic: c.Dynamic},
		Discovery: c.Core.Discovery(), Authorization: c.Core.AuthorizationV1(),
	}
	return c
}

func addOptions(c *cluster) *AddOptions {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	ns := "demo"
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = &ns
	o := NewAddOptions(streams, flags)
	o.Clients = c.clients
	o.Issuer, o.DryRun, o.Output, o.Apply, o.Verify, o.Timeout, o.Yes = "pgpool-issuer", "none", "text", "IfReady", "false", 5e9, true
	return o
}

func runAdd(t *testing.T, o *AddOptions) error {
	t.Helper()
	if err := o.Complete([]string{"pgpool"}); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	return o.Run(context.Background())
}

// --dry-run=client prints the plan and writes nothing.
func TestAddDryRunWritesNothing(t *testing.T) {
	c := newCluster(t)
	o := addOptions(c)
	o.DryRun, o.Output = "client", "json"
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	o.IOStreams = streams
	if err := runAdd(t, o); err != nil {
		t.Fatal(err)
	}
	if w := c.Writes(); len(w) != 0 {
		t.Fatalf("a client dry run wrote: %v", w)
	}
	var doc struct {
		Plan struct {
			Operation string `json:"operation"`
			Steps     []struct {
				Kind plan.Kind `json:"kind"`
			} `json:"steps"`
		} `json:"plan"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if doc.Plan.Operation != "add" || len(doc.Plan.Steps) < 10 || doc.Plan.Steps[0].Kind != plan.Lock {
		t.Fatalf("plan output:\n%s", out)
	}
}

// A permission the plan needs and the user lacks stops the command before
// any write, naming it.
func TestAddRefusedWithoutPermission(t *testing.T) {
	c := newCluster(t)
	c.Denied["create pods/eviction"] = true
	c.Denied["create configmaps"] = true
	o := addOptions(c)
	err := runAdd(t, o)
	if err == nil || !strings.Contains(err.Error(), "you may not create configmaps, create pods/eviction") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("got %v", err)
	}
	if w := c.Writes(); len(w) != 0 {
		t.Fatalf("wrote before refusing: %v", w)
	}
}

// A Certificate that admission refuses (here a policy of the cluster's, in
// the server-side dry run of the preflight) stops the command before any
// write, with the server's reason, and exit code 2.
func TestAddRefusedByAdmission(t *testing.T) {
	c := newCluster(t)
	c.CertManager.PrependReactor("patch", "certificates", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pa := a.(k8stesting.PatchActionImpl)
		if d := pa.GetPatchOptions().DryRun; len(d) == 0 || pa.GetName() != "pgpool-server-cert" {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "cert-manager.io", Resource: "certificates"}, pa.GetName(),
			errors.New(`ValidatingAdmissionPolicy 'short-certificates' denied request: certificates may last at most 30 days`))
	})
	o := addOptions(c)
	err := runAdd(t, o)
	if err == nil || !strings.Contains(err.Error(), "the API server refuses Certificate demo/pgpool-server-cert") ||
		!strings.Contains(err.Error(), "certificates may last at most 30 days") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("got %v", err)
	}
	if code := ExitCode(err); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if w := c.Writes(); len(w) != 0 {
		t.Fatalf("wrote before refusing: %v", w)
	}
}

// A 403 or a 5xx while reading the Certificates is reported as it is, not
// taken for a pgpool without certificates.
func TestCertificateReadErrorsAreNotSwallowed(t *testing.T) {
	for _, fail := range []error{
		apierrors.NewForbidden(schema.GroupResource{Group: "cert-manager.io", Resource: "certificates"}, "pgpool-server-cert", errors.New("no")),
		apierrors.NewInternalError(errors.New("etcdserver: request timed out")),
	} {
		c := newCluster(t)
		c.CertManager.PrependReactor("get", "certificates", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, fail })
		o := addOptions(c)
		err := runAdd(t, o)
		if err == nil || !strings.Contains(err.Error(), "get Certificate demo/pgpool-server-cert") || !strings.Contains(err.Error(), fail.Error()) {
			t.Fatalf("%v: got %v", fail, err)
		}
		if apierrors.IsForbidden(fail) && !strings.Contains(Explain(err), "RBAC section of the README") {
			t.Fatalf("explanation: %s", Explain(err))
		}
		if w := c.Writes(); len(w) != 0 {
			t.Fatalf("wrote: %v", w)
		}
	}
}

// Flags are checked before any request, with exit code 2.
func TestValidate(t *testing.T) {
	c := newCluster(t)
	for _, tc := range []struct {
		set  func(o *AddOptions)
		want string
	}{
		{func(o *AddOptions) { o.Issuer = "" }, "--issuer is required"},
		{func(o *AddOptions) { o.SSLMode, o.AuthMode = "prefer", "cert" }, "needs every client on TLS"},
		{func(o *AddOptions) { o.BackendCA = []string{"pod/x"} }, "the kind must be secret or configmap"},
		{func(o *AddOptions) { o.BackendCA = []string{"secret"} }, "use secret/NAME[/KEY]"},
		{func(o *AddOptions) { o.Verify = "maybe" }, `--verify must be`},
	} {
		o := addOptions(c)
		tc.set(o)
		err := runAdd(t, o)
		if err == nil || !strings.Contains(err.Error(), tc.want) || ExitCode(err) != 2 {
			t.Errorf("%q: got %v (exit %d)", tc.want, err, ExitCode(err))
		}
	}
	if len(c.Core.Actions())+len(c.CertManager.Actions())+len(c.Dynamic.Actions()) != 0 {
		t.Fatal("invalid flags reached the API")
	}
}

// status has its own options: it reads, and says whether pool_hba.conf is
// enforced; --verify=required with no proof exits 1.
func TestStatus(t *testing.T) {
	c := newCluster(t)
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	ns := "demo"
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = &ns
	o := &StatusOptions{connection: connection{IOStreams: streams, ConfigFlags: flags, Clients: c.clients}, Output: "json", Verify: "false", Timeout: 5e9}
	if err := o.Complete([]string{"pgpool"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var st status.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if st.SSL || !st.HBAEnforced || st.SSLMode != "disable" || len(st.Pods) != 2 || st.Pods[0].Check != "" {
		t.Fatalf("status: %+v", st)
	}
	if w := c.Writes(); len(w) != 0 {
		t.Fatalf("status wrote: %v", w)
	}
	o.Output = "table"
	if err := o.Validate(); err == nil || ExitCode(err) != 2 {
		t.Fatalf("-o table: %v", err)
	}
}

// Exit codes: 130 for an interruption, even when it stopped a wait (not a
// timeout); the prompt gives way to Ctrl-C at once.
func TestInterrupted(t *testing.T) {
	wrapped := fmt.Errorf("step 4 (wait Certificate demo/x): %w", fmt.Errorf("%w: stopped waiting", plan.ErrInterrupted))
	if ExitCode(wrapped) != 130 || ExitCode(fmt.Errorf("x: %w", plan.ErrTimeout)) != 124 {
		t.Fatalf("exit codes %d %d", ExitCode(wrapped), ExitCode(fmt.Errorf("x: %w", plan.ErrTimeout)))
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(plan.ErrInterrupted)
	r, _ := io.Pipe() // never answers
	var out strings.Builder
	if ok, err := ui.Confirm(ctx, r, &out, "Apply? [y/N] "); ok || !errors.Is(err, plan.ErrInterrupted) {
		t.Fatalf("confirm after Ctrl-C: %v %v", ok, err)
	}
}

// A typo under any command is an unknown command (exit 2, with a
// suggestion), never help and success; the design's names are aliases of
// the tls subcommands, with the same flags.
func TestUnknownCommandsAndAliases(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		unknown string
	}{{[]string{"tls", "rotat", "pgpool"}, "rotat"}, {[]string{"rotat"}, "rotat"}, {[]string{"tls", "remove-tls"}, "remove-tls"}} {
		streams, _, _, _ := genericiooptions.NewTestIOStreams()
		root := NewRootCmd(streams, BuildInfo{})
		root.SetArgs(tc.args)
		err := root.Execute()
		if ExitCode(err) != 2 || !strings.Contains(err.Error(), fmt.Sprintf("unknown command %q", tc.unknown)) {
			t.Errorf("%v: exit %d, %v", tc.args, ExitCode(err), err)
		}
	}
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	root := NewRootCmd(streams, BuildInfo{})
	root.SetArgs([]string{"tls", "rotat", "pgpool"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "Did you mean this?\n\trotate") {
		t.Errorf("no suggestion: %v", err)
	}
	for alias, of := range map[string]string{"add-tls": "add", "rotate": "rotate", "change-issuer": "change-issuer", "remove-tls": "remove"} {
		a, _, err := root.Find([]string{alias})
		if err != nil || a.Name() != alias {
			t.Fatalf("alias %s: %v", alias, err)
		}
		c, _, _ := root.Find([]string{"tls", of})
		var af, cf []string
		a.Flags().VisitAll(func(f *pflag.Flag) { af = append(af, f.Name) })
		c.Flags().VisitAll(func(f *pflag.Flag) { cf = append(cf, f.Name) })
		if strings.Join(af, " ") != strings.Join(cf, " ") {
			t.Errorf("%s has flags %v, tls %s has %v", alias, af, of, cf)
		}
	}
}

// tls apply with several documents heads each one's output with a line
// naming the operation that runs: an issuer alone on a pgpool without TLS
// is an add; a remove on it has nothing to do. Nothing is written.
func TestApplySaysWhatEachDocumentRuns(t *testing.T) {
	c := newCluster(t)
	f := filepath.Join(t.TempDir(), "ops.yaml")
	docs := `apiVersion: ops.kubedb.com/v1alpha1
kind: PgpoolOpsRequest
metadata: {name: a, namespace: demo}
spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {issuerRef: {name: pgpool-issuer}}}
---
apiVersion: ops.kubedb.com/v1alpha1
kind: PgpoolOpsRequest
metadata: {name: b, namespace: demo}
spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {remove: true}}
`
	if err := os.WriteFile(f, []byte(docs), 0o600); err != nil {
		t.Fatal(err)
	}
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	ns := "demo"
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = &ns
	o := &ApplyOptions{OperationOptions: newOperationOptions(streams, flags), Filenames: []string{f}}
	o.Clients = c.clients
	o.DryRun, o.Output, o.Apply, o.Verify, o.Timeout, o.Yes = "client", "text", "IfReady", "false", 5e9, true
	if err := o.Complete(nil); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(PgpoolOpsRequest a) (1 of 2): tls add demo/pgpool", "(PgpoolOpsRequest b) (2 of 2): tls remove demo/pgpool"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("%q missing from:\n%s", want, out)
		}
	}
	if w := c.Writes(); len(w) != 0 {
		t.Fatalf("a client dry run wrote: %v", w)
	}
}

// Issue 27, item 9: a negative --lock-duration is a usage error (it was
// taken as is).
func TestNegativeLockDuration(t *testing.T) {
	o := addOptions(newCluster(t))
	o.LockDuration = -1e9
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--lock-duration") {
		t.Fatalf("%v", err)
	}
}
