package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	if out, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--ssl-mode", "require", "--client-auth-mode", "cert", "--yes"); err != nil {
		t.Fatalf("add: %v\n%s\n%s", err, out, errOut)
	}
	ctx := testenv.Context(t, time.Minute)
	cms := env.Kube.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(ctx, tls.CABundleName("pgpool"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[tls.BundleKey] += string(fakes.SelfSigned(t, "intruder-ca"))
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
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
	cm, err = cms.Get(ctx, tls.CABundleName("pgpool"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(tls.Subjects([]byte(cm.Data[tls.BundleKey])), ";"); strings.Contains(s, "intruder") {
		t.Fatalf("after rotate the bundle still holds %s", s)
	}
}
