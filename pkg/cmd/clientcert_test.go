package cmd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// Issue 18, case 10: --user names that map onto the pgpool's own
// Certificates, or onto another user's, are refused before any write.
func TestClientCertNameCollisions(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	own := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-client-cert", Namespace: "demo",
		Labels: map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: "pgpool"}},
		Spec: cmapi.CertificateSpec{CommonName: "postgres", SecretName: "pgpool-client-cert"}}
	app := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-client-app", Namespace: "demo",
		Labels: map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: "pgpool", pgpool.LabelUser: "app"}},
		Spec: cmapi.CertificateSpec{CommonName: "app", SecretName: "pgpool-client-app"}}
	for _, crt := range []*cmapi.Certificate{own, app} {
		if _, err := c.CertManager.CertmanagerV1().Certificates("demo").Create(ctx, crt, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for user, want := range map[string]string{"cert": "the pgpool's own client Certificate", "App": `was issued for user "app"`} {
		streams, _, _, _ := genericiooptions.NewTestIOStreams()
		ns := "demo"
		flags := genericclioptions.NewConfigFlags(false)
		flags.Namespace = &ns
		o := &ClientCertOptions{connection: connection{IOStreams: streams, ConfigFlags: flags, Clients: c.clients}, User: user, Output: "text", Timeout: 5e9}
		if err := o.Complete([]string{"pgpool"}); err != nil {
			t.Fatal(err)
		}
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		err := o.Run(ctx)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--secret") {
			t.Errorf("--user %s: %v, want %q", user, err, want)
		}
	}
	got, _ := c.CertManager.CertmanagerV1().Certificates("demo").Get(ctx, "pgpool-client-app", metav1.GetOptions{})
	if got.Spec.CommonName != "app" {
		t.Fatalf("app's Certificate was rewritten: CN=%s", got.Spec.CommonName)
	}
}

// A key file is written through a new 0600 file and a rename: a symlink
// planted at its name is replaced, not followed; an old file's wider mode
// does not carry over.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("old"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(dir, "tls.key", []byte("KEY"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(dir, "ca.crt", []byte("CA"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Fatalf("the symlink was followed: %q", b)
	}
	for name, mode := range map[string]os.FileMode{"tls.key": 0o600, "ca.crt": 0o644} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v %v", name, fi.Mode(), err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

// Issue 27, finding 9: --user refuses what no one can log in as, or what
// pool_hba.conf reads as a keyword, before anything is asked of the API.
func TestClientCertUserNames(t *testing.T) {
	for user, ok := range map[string]bool{"app": true, "app_ro": true, "svc.app@corp": true,
		"public": false, "PUBLIC": false, "pg_monitor": false, "all": false, "sameuser": false, "samerole": false, "samegroup": false,
		"+admins": false, "@file": false, "x y": false, "": false} {
		o := &ClientCertOptions{User: user, Output: "text", Timeout: time.Minute}
		err := o.Validate()
		if (err == nil) != ok || (err != nil && ExitCode(err) != 2) {
			t.Errorf("--user %q: %v, want ok %v", user, err, ok)
		}
	}
}
