package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/fakes"
	pgstatus "github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// Issue 27, finding 6: a colleague who may edit ConfigMaps appends their
// own CA to the bundle pgpool reads (with it they could mint a client
// certificate for CN=postgres). tls status lists it as of unknown origin;
// rotate says it drops it, and the bundle no longer holds it. Before,
// status listed only the bundle's recorded parts and rotate kept ca.pem's
// extra CA unsaid.
func TestUnknownCAInTheBundle(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	cms, ctx := intrude(t, ns, []string{tls.BundleKey}, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes")
	out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "status", "pgpool", "--verify=false", "-o", "json")
	var st pgstatus.Status
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: %v\n%s\n%s", err, out, errOut)
	}
	if u := st.UnknownCAs(); len(u) != 1 || u[0].Subject != "CN=intruder-ca" {
		t.Fatalf("unknown CAs in status: %+v", st.CABundle)
	}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, "tls", "status", "pgpool", "--verify=false")
	if err != nil || !strings.Contains(out, "CA of unknown origin:") || !strings.Contains(out, "CN=intruder-ca") {
		t.Fatalf("status text: %v\n%s\n%s", err, out, errOut)
	}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, "tls", "rotate", "pgpool", "--yes")
	if err != nil || !strings.Contains(out+errOut, "CA of unknown origin, CN=intruder-ca") {
		t.Fatalf("rotate: %v\n%s\n%s", err, out, errOut)
	}
	cm, err := cms.Get(ctx, tls.CABundleName("pgpool"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(tls.Subjects([]byte(cm.Data[tls.BundleKey])), ";"); strings.Contains(s, "intruder") {
		t.Fatalf("after rotate the bundle still holds %s", s)
	}
}

// Issue 27, findings 5-6: a colleague who may edit ConfigMaps puts a CA
// into the bundle's backend-ca.pem (and ca.pem), where the plugin used to
// take it as a backend's. The bundle's digest on the workload no longer
// matches: status calls every CA but the issuer's unknown, rotate without
// --backend-ca refuses to carry the backend CAs over (nothing written),
// and with --backend-ca the intruder is dropped. A CA the user vouches for
// with --keep-ca stays, as origin kept, across a later rotate.
func TestBundleEditedByOthers(t *testing.T) {
	l := layouts[0]
	ns := setup(t, l, 1)
	intrude(t, ns, []string{tls.BackendCAKey, tls.BundleKey}, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--backend-ca", "secret/pgpool-new-ca", "--yes")
	status := func() pgstatus.Status {
		t.Helper()
		out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "status", "pgpool", "--verify=false", "-o", "json")
		var st pgstatus.Status
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("status: %v\n%s\n%s", err, out, errOut)
		}
		return st
	}
	st := status()
	var unknown []string
	for _, c := range st.UnknownCAs() {
		unknown = append(unknown, c.Subject)
	}
	if len(unknown) != 2 || !strings.Contains(strings.Join(unknown, ";"), "CN=intruder-ca") || !strings.Contains(st.UnknownCAs()[0].Why, "changed since kubectl-pgpool wrote it") {
		t.Fatalf("unknown CAs after the backend part was edited: %+v", st.CABundle.CAs)
	}
	before := resourceVersions(t, ns, l)
	out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "rotate", "pgpool", "--yes")
	if err == nil || !strings.Contains(err.Error(), "are not carried over as found") || !strings.Contains(err.Error(), "--backend-ca") {
		t.Fatalf("rotate of an edited bundle without --backend-ca: %v\n%s\n%s", err, out, errOut)
	}
	if after := resourceVersions(t, ns, l); after != before {
		t.Fatalf("the refused rotate wrote: %s -> %s", before, after)
	}
	// --keep-ca vouches for the intruder; --backend-ca says where the
	// backend's CA comes from.
	sum := ""
	for _, c := range st.CABundle.CAs {
		if c.Subject == "CN=intruder-ca" {
			sum = c.SHA256[:16]
		}
	}
	out, errOut, err = plugin(t, env.Kubeconfig, ns, "tls", "rotate", "pgpool", "--backend-ca", "secret/pgpool-new-ca", "--keep-ca", sum, "--yes")
	if err != nil || !strings.Contains(out+errOut, "--keep-ca: the CA of unknown origin CN=intruder-ca") {
		t.Fatalf("rotate --keep-ca: %v\n%s\n%s", err, out, errOut)
	}
	origins := func() string {
		var o []string
		for _, c := range status().CABundle.CAs {
			o = append(o, strings.TrimPrefix(c.Subject, "CN=")+"="+c.Origin)
		}
		return strings.Join(o, ";")
	}
	if got := origins(); !strings.Contains(got, "intruder-ca=kept") || strings.Contains(got, "unknown") {
		t.Fatalf("after rotate --keep-ca: %s", got)
	}
	// A plain rotate keeps it (the bundle is as the plugin wrote it).
	if out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "rotate", "pgpool", "--yes"); err != nil {
		t.Fatalf("rotate: %v\n%s\n%s", err, out, errOut)
	}
	if got := origins(); !strings.Contains(got, "intruder-ca=kept") || strings.Contains(got, "unknown") {
		t.Fatalf("after a second rotate: %s", got)
	}
}

// intrude runs the plugin with args (an add), then, as a colleague who may
// edit ConfigMaps, appends a CA of their own (CN=intruder-ca) to the CA
// bundle's keys.
func intrude(t *testing.T, ns string, keys []string, args ...string) (corev1client.ConfigMapInterface, context.Context) {
	t.Helper()
	if out, errOut, err := plugin(t, env.Kubeconfig, ns, args...); err != nil {
		t.Fatalf("%s: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
	}
	ctx := testenv.Context(t, time.Minute)
	cms := env.Kube.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(ctx, tls.CABundleName("pgpool"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	intruder := string(fakes.SelfSigned(t, "intruder-ca"))
	for _, k := range keys {
		cm.Data[k] += intruder
	}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return cms, ctx
}
