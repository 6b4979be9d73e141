package cmd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// withServerCert gives the fake pgpool a server Certificate whose Secret
// holds a certificate that ends at notAfter.
func withServerCert(t *testing.T, c *cluster, notAfter time.Time) {
	t.Helper()
	crt := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-server-cert", Namespace: "demo"}, Spec: cmapi.CertificateSpec{SecretName: "pgpool-server-cert"}}
	if _, err := c.CertManager.CertmanagerV1().Certificates("demo").Create(context.Background(), crt, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-server-cert", Namespace: "demo"}, Data: map[string][]byte{"tls.crt": selfSigned(t, notAfter)}}
	if _, err := c.Core.CoreV1().Secrets("demo").Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func statusRun(t *testing.T, c *cluster, out io.Writer, fleet bool, output string, args ...string) error {
	t.Helper()
	ns := "demo"
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = &ns
	o := &StatusOptions{connection: connection{IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: io.Discard}, ConfigFlags: flags, Clients: c.clients},
		Output: output, Verify: "false", Timeout: 5e9, Now: time.Now, WarnWithin: args[0], FailWithin: args[1]}
	o.All = fleet
	names := []string{"pgpool"}
	if fleet {
		names = nil
	}
	if err := o.Complete(names); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		return err
	}
	return o.Run(context.Background())
}

// Issue 28: `tls status --warn-within 30d --fail-within 7d` exits 0 when
// the certificate lasts longer, 3 inside the warning, 1 inside the failure
// threshold or when it has expired; the same for the fleet (-A).
func TestStatusExpiryExitCodes(t *testing.T) {
	for _, tc := range []struct {
		left time.Duration
		code int
		says string
	}{
		{60 * 24 * time.Hour, 0, ""},
		{31 * 24 * time.Hour, 0, ""},
		{29 * 24 * time.Hour, 3, "(--warn-within 30d)"},
		{8 * 24 * time.Hour, 3, "(--warn-within 30d)"},
		{6 * 24 * time.Hour, 1, "(--fail-within 7d)"},
		{-time.Hour, 1, "expired on"},
	} {
		for _, fleet := range []bool{false, true} {
			c := newCluster(t)
			withServerCert(t, c, time.Now().Add(tc.left))
			err := statusRun(t, c, io.Discard, fleet, "text", "30d", "7d")
			if got := ExitCode(err); got != tc.code || (tc.says != "" && !strings.Contains(err.Error(), tc.says)) {
				t.Errorf("%s left (fleet %v): exit %d (%v), want %d saying %q", tc.left, fleet, got, err, tc.code, tc.says)
			}
		}
	}
	// No thresholds: the same certificate an hour from its end is no error.
	c := newCluster(t)
	withServerCert(t, c, time.Now().Add(time.Hour))
	if err := statusRun(t, c, io.Discard, false, "text", "", ""); err != nil {
		t.Fatalf("without thresholds: %v", err)
	}
	for _, bad := range [][2]string{{"30", ""}, {"-3d", ""}, {"7d", "30d"}} {
		if err := statusRun(t, c, io.Discard, false, "text", bad[0], bad[1]); ExitCode(err) != 2 {
			t.Errorf("--warn-within %q --fail-within %q: %v, want a usage error", bad[0], bad[1], err)
		}
	}
}

// -o prometheus is the text exposition format: Prometheus' own parser
// reads it, with the Certificate's end and whether each pgpool's status
// could be read.
func TestStatusPrometheus(t *testing.T) {
	c := newCluster(t)
	end := time.Now().Add(40 * 24 * time.Hour).Truncate(time.Second)
	withServerCert(t, c, end)
	for _, fleet := range []bool{false, true} {
		var out bytes.Buffer
		if err := statusRun(t, c, &out, fleet, "prometheus", "", ""); err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		ce := fams["pgpool_tls_certificate_not_after_seconds"]
		if ce == nil || len(ce.Metric) != 1 || int64(ce.Metric[0].GetGauge().GetValue()) != end.Unix() {
			t.Fatalf("pgpool_tls_certificate_not_after_seconds: %v\n%s", ce, out.String())
		}
		if up := fams["pgpool_tls_status_up"]; up == nil || len(up.Metric) != 1 || up.Metric[0].GetGauge().GetValue() != 1 {
			t.Fatalf("pgpool_tls_status_up: %v", up)
		}
	}
}

// Issue 28: a fleet where members failed exits 1, whatever made them fail
// (a member's own step timeout, a refusal); 124 is only for the fleet's
// own deadline, and 130 for an interruption.
func TestFleetExitCodes(t *testing.T) {
	memberTimeout := fmt.Errorf("step 5 (wait Certificate a/b): timed out: %w", context.DeadlineExceeded)
	refused := UsageError{errors.New("bad")}
	interrupted := fmt.Errorf("stopped: %w", plan.ErrInterrupted)
	live := context.Background()
	gone, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for _, c := range []struct {
		ctx  context.Context
		errs []error
		want int
	}{
		{live, []error{memberTimeout}, 1},
		{live, []error{refused, memberTimeout}, 1},
		{live, []error{memberTimeout, interrupted}, 130},
		{gone, []error{memberTimeout}, 124},
	} {
		err := &fleetError{msg: "tls rotate failed", errs: fleetCauses(c.ctx, c.errs)}
		if got := ExitCode(err); got != c.want {
			t.Errorf("%v (fleet deadline passed %v): exit %d, want %d", c.errs, c.ctx.Err() != nil, got, c.want)
		}
	}
}

// --watch prints every fact once, then only what changed, each with a
// timestamp: a Secret renewed behind the plugin's back is one line naming
// the old and the new serial, and a fact crossing --warn-within turns the
// verdict; an interruption ends the watch without error.
func TestStatusWatchPrintsChanges(t *testing.T) {
	c := newCluster(t)
	withServerCert(t, c, time.Now().Add(60*24*time.Hour))
	ns := "demo"
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = &ns
	pr, pw := io.Pipe()
	o := &StatusOptions{connection: connection{IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: pw, ErrOut: io.Discard}, ConfigFlags: flags, Clients: c.clients},
		Output: "text", Verify: "false", Timeout: 5e9, Now: time.Now, WarnWithin: "30d", Watch: true, Interval: 10 * time.Millisecond}
	if err := o.Complete([]string{"pgpool"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx); _ = pw.Close() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(20 * time.Second)
	var seen []string
	expect := func(parts ...string) string {
		t.Helper()
		for {
			select {
			case l := <-lines:
				seen = append(seen, l)
				ok := true
				for _, p := range parts {
					ok = ok && strings.Contains(l, p)
				}
				if ok {
					return l
				}
			case <-deadline:
				t.Fatalf("no line with %q; printed:\n%s", parts, strings.Join(seen, "\n"))
			}
		}
	}
	first := expect("demo/pgpool Certificate pgpool-server-cert: ", ", Secret holds serial ")
	if _, err := time.Parse(time.RFC3339, strings.Fields(first)[0]); err != nil {
		t.Fatalf("a line without a timestamp: %q", first)
	}
	expect("demo/pgpool verdict: ok")
	// Renewed behind the plugin's back, 20 days from its end.
	sec, _ := c.Core.CoreV1().Secrets("demo").Get(ctx, "pgpool-server-cert", metav1.GetOptions{})
	sec.Data["tls.crt"] = selfSigned(t, time.Now().Add(20*24*time.Hour))
	if _, err := c.Core.CoreV1().Secrets("demo").Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	changed := expect("demo/pgpool Certificate pgpool-server-cert: ", "(was revision")
	if v := expect("demo/pgpool verdict: warning: ", "(--warn-within 30d)", "(was ok)"); strings.Contains(v, ", in ") {
		t.Fatalf("a verdict with a countdown would change every hour: %q", v)
	}
	for _, l := range seen {
		if strings.Contains(l, "demo/pgpool Certificate pgpool-server-cert: ") && l != first && l != changed {
			t.Fatalf("a fact that did not change was printed again: %q\n%s", l, strings.Join(seen, "\n"))
		}
	}
	cancel(plan.ErrInterrupted)
	go func() {
		for range lines { //nolint:revive // drain what the last probe prints
		}
	}()
	if err := <-done; err != nil {
		t.Fatalf("an interrupted watch: %v", err)
	}
	if err := statusRunWatchOutput(t, c, "json"); ExitCode(err) != 2 {
		t.Fatalf("--watch -o json: %v, want a usage error", err)
	}
}

func statusRunWatchOutput(t *testing.T, c *cluster, output string) error {
	t.Helper()
	ns := "demo"
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = &ns
	o := &StatusOptions{connection: connection{IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}, ConfigFlags: flags, Clients: c.clients},
		Output: output, Verify: "false", Timeout: 5e9, Now: time.Now, Watch: true, Interval: time.Second}
	if err := o.Complete([]string{"pgpool"}); err != nil {
		t.Fatal(err)
	}
	return o.Validate()
}
