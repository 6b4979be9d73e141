package e2e

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-pgpool/kubectl-pgpool/test/testenv"
)

// Issue 29, tls report: a pgpool whose config holds a password
// (sr_check_password) and an ldapbindpasswd rule, whose pod template
// holds a password literally and one from a Secret, and whose TLS Secret
// holds a private key. The bundle holds everything support needs, and
// none of the fixture's secret values: every value of every Secret in the
// namespace is looked for in every file. What it cannot read (a kwok
// pod's log) is listed, and the rest is written.
func TestReportRedactsEverySecret(t *testing.T) {
	ns := setup(t, layouts[0], 1)
	ctx := testenv.Context(t, 3*time.Minute)
	const confPW, ldapPW, envPW, refPW = "Sr-Check-Pw-7731", "Ldap-Bind-Pw-4412", "Env-Admin-Pw-9921", "Ref-Secret-Pw-5531"
	cfg, err := env.Kube.CoreV1().Secrets(ns).Get(ctx, "pgpool-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Data["pgpool.conf"] = append(cfg.Data["pgpool.conf"], []byte("sr_check_user = 'checker'\nsr_check_password = '"+confPW+"'\n")...)
	cfg.Data["pool_hba.conf"] = []byte(strings.Replace(string(cfg.Data["pool_hba.conf"]), "host       all             all             0.0.0.0/0               md5",
		`host       all             ldapuser        10.0.0.0/8              ldap ldapserver=ldap.example ldapbasedn="dc=example" ldapbinddn="cn=admin" ldapbindpasswd=`+ldapPW+"\nhost       all             all             0.0.0.0/0               md5", 1))
	if _, err := env.Kube.CoreV1().Secrets(ns).Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pgpool-auth"}, StringData: map[string]string{"password": refPW}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"pgpool","env":[{"name":"PGPOOL_ADMIN_PASSWORD","value":"` + envPW + `"},{"name":"PG_PASSWORD","valueFrom":{"secretKeyRef":{"name":"pgpool-auth","key":"password"}}}]}]}}}}`
	if _, err := env.Kube.AppsV1().StatefulSets(ns).Patch(ctx, "pgpool", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := plugin(t, env.Kubeconfig, ns, "tls", "add", "pgpool", "--issuer", "pgpool-issuer", "--yes"); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "report.tar.gz")
	_, errOut, err := plugin(t, env.Kubeconfig, ns, "tls", "report", "pgpool", "-f", file)
	if err != nil || !strings.Contains(errOut, "wrote "+file) {
		t.Fatalf("tls report: %v\n%s", err, errOut)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the report is written with %v (%v), want 0600", fi.Mode(), err)
	}
	files := untar(t, file)

	// Everything listed.
	for _, want := range []string{"plugin-version.txt", "server-version.txt", "workload.yaml", "config/pgpool.conf", "config/pool_hba.conf", "certificates.yaml",
		"certificaterequests.yaml", "issuers.yaml", "ca-bundle.yaml", "events.txt", "status.yaml", "backup-metadata.yaml", "owners.yaml", "pods/pgpool-0.yaml", "missing.txt"} {
		if _, ok := files[want]; !ok {
			names := make([]string, 0, len(files))
			for n := range files {
				names = append(names, n)
			}
			t.Fatalf("the report has no %s: %v", want, names)
		}
	}
	for file, want := range map[string]string{"certificates.yaml": "pgpool-server-cert", "config/pool_hba.conf": "ldapbindpasswd=<redacted>",
		"config/pgpool.conf": "sr_check_password = '<redacted>'", "events.txt": "TLSAddSucceeded", "status.yaml": "clientAuthMode", "missing.txt": "the log of pod pgpool-0 container pgpool"} {
		if !strings.Contains(files[file], want) {
			t.Fatalf("%s does not hold %q:\n%s", file, want, files[file])
		}
	}
	// Nothing secret: the fixture's values, and every value of every
	// Secret in the namespace (private keys included).
	secrets, err := env.Kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	values := []string{confPW, ldapPW, envPW, refPW, "PRIVATE KEY"}
	for _, s := range secrets.Items {
		for k, v := range s.Data {
			if k == "ca.crt" || k == "tls.crt" || len(v) < 8 {
				continue
			}
			values = append(values, string(v))
			for _, line := range strings.Split(string(v), "\n") {
				if strings.Contains(strings.ToLower(line), "password") || strings.Contains(line, "ldapbindpasswd") {
					values = append(values, line)
				}
			}
		}
	}
	for name, content := range files {
		for _, v := range values {
			if strings.Contains(content, v) {
				t.Fatalf("%s holds a secret value (%.24q...)", name, v)
			}
		}
	}
}

// untar reads a .tar.gz report into its files, by path below its top
// directory.
func untar(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(h.Name, "/")
		out[rest] = string(b)
	}
}
