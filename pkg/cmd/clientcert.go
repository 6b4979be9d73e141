package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
)

// ClientCertOptions are the options of `tls client-cert`.
type ClientCertOptions struct {
	connection
	User     string
	Secret   string
	Duration time.Duration
	WriteDir string
	Output   string
	Timeout  time.Duration
}

func newClientCertCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &ClientCertOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}, Output: "text", Timeout: 5 * time.Minute}
	c := &cobra.Command{
		Use:   "client-cert NAME --user USER",
		Short: "Issue a client certificate for one database user (pgpool's cert auth logs in as its CN)",
		Long: `Issue a Certificate from the pgpool's issuer with CN=USER and the subject
of the pgpool's client certificate, and wait until it is Ready. pgpool's cert
auth logs the client in as the certificate's CN, so each application user
gets its own. --write-dir writes tls.crt, tls.key (mode 0600) and ca.crt for
psql (sslcert, sslkey, sslrootcert). tls status lists them.`,
		Example: `  kubectl pgpool tls client-cert pgpool -n demo --user app --write-dir ./app-certs
  psql "host=localhost port=9999 dbname=postgres user=app sslmode=verify-ca sslrootcert=./app-certs/ca.crt sslcert=./app-certs/tls.crt sslkey=./app-certs/tls.key"
  kubectl pgpool tls client-cert pgpool -n demo --user reporting -o name   # prints the Secret's name`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	c.Flags().StringVar(&o.User, "user", "", "the database user: the certificate's CN (required)")
	c.Flags().StringVar(&o.Secret, "secret", "", "the Secret to write (default NAME-client-USER); also the Certificate's name")
	c.Flags().DurationVar(&o.Duration, "duration", 0, "certificate lifetime (default: cert-manager's, 2160h)")
	c.Flags().StringVar(&o.WriteDir, "write-dir", "", "also write tls.crt, tls.key (0600) and ca.crt into this directory")
	c.Flags().StringVarP(&o.Output, "output", "o", o.Output, `"text", or "name" (print only the Secret's name)`)
	c.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "how long to wait for cert-manager")
	return c
}

var userRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.@-]{0,62}$`)

// Validate checks the flags.
func (o *ClientCertOptions) Validate() error {
	if o.User == "" {
		return UsageError{fmt.Errorf("--user is required: the database user the certificate logs in as")}
	}
	if !userRE.MatchString(o.User) {
		return UsageError{fmt.Errorf("--user %q: use a PostgreSQL role name (letters, digits, _ . @ -, at most 63)", o.User)}
	}
	if err := oneOf("--output", o.Output, "text name"); err != nil {
		return err
	}
	if o.Timeout <= 0 {
		return UsageError{fmt.Errorf("--timeout must be positive")}
	}
	return nil
}

// Run issues the certificate and waits for it.
func (o *ClientCertOptions) Run(ctx context.Context) error {
	ns, name := o.Namespace, o.Name
	base, err := o.Clients.CertManager.Certificates(ns).Get(ctx, pgpool.ClientCertName(name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("pgpool %s/%s has no client Certificate %s: client certificates come from its TLS setup; run `kubectl pgpool tls add %s --issuer NAME --client-auth-mode cert` first", ns, name, pgpool.ClientCertName(name), name)
	} else if err != nil {
		return fmt.Errorf("get Certificate %s/%s: %w", ns, pgpool.ClientCertName(name), err)
	}
	secret := o.Secret
	if secret == "" {
		secret = name + "-client-" + strings.ToLower(strings.NewReplacer("_", "-", "@", "-", ".", "-").Replace(o.User))
	}
	reserved := map[string]string{pgpool.ServerCertName(name): "the pgpool's own server Certificate", pgpool.ClientCertName(name): "the pgpool's own client Certificate",
		pgpool.BackupName(name): "the pgpool's backup Secret", tls.CABundleName(name): "the pgpool's CA bundle"}
	if what, ok := reserved[secret]; ok {
		return UsageError{fmt.Errorf("--user %s maps to %s/%s, %s: pass --secret with another name", o.User, ns, secret, what)}
	}
	if cur, err := o.Clients.CertManager.Certificates(ns).Get(ctx, secret, metav1.GetOptions{}); err == nil {
		if !tls.Ours(cur, name) {
			return &tls.NotOursError{Kind: "Certificate", Namespace: ns, Name: secret}
		}
		if u := cur.Labels[pgpool.LabelUser]; u != o.User {
			return UsageError{fmt.Errorf("Certificate %s/%s was issued for user %q (CN=%s); --user %s maps to the same name and would rewrite it: pass --secret with another name", ns, secret, u, cur.Spec.CommonName, o.User)}
		}
	}
	labels := map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: name, pgpool.LabelUser: o.User}
	crt := &cmapi.Certificate{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: "Certificate"},
		ObjectMeta: metav1.ObjectMeta{Name: secret, Namespace: ns, Labels: labels},
		Spec: cmapi.CertificateSpec{
			SecretName:     secret,
			SecretTemplate: &cmapi.CertificateSecretTemplate{Labels: labels},
			CommonName:     o.User,
			Subject:        base.Spec.Subject,
			Usages:         []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageClientAuth},
			IssuerRef:      base.Spec.IssuerRef,
			PrivateKey:     base.Spec.PrivateKey,
			Duration:       base.Spec.Duration,
			RenewBefore:    base.Spec.RenewBefore,
		},
	}
	if o.Duration > 0 {
		crt.Spec.Duration, crt.Spec.RenewBefore = &metav1.Duration{Duration: o.Duration}, nil
	}
	if err := tls.Validate(crt, "--user"); err != nil {
		return err
	}
	body, err := json.Marshal(crt)
	if err != nil {
		return err
	}
	force := true
	started := time.Now()
	applied, err := o.Clients.CertManager.Certificates(ns).Patch(ctx, secret, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: runner.FieldManager, Force: &force})
	if err != nil {
		return fmt.Errorf("apply Certificate %s/%s: %w", ns, secret, err)
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	after := tls.Revision(applied)
	if tls.IsReady(applied) {
		after-- // unchanged and Ready already
	}
	if _, err := issuing.WaitReady(wctx, o.Clients.CertManager, ns, secret, after, started, func(s string) { fmt.Fprintln(o.ErrOut, s) }); err != nil {
		return fmt.Errorf("Certificate %s/%s for user %s: %w", ns, secret, o.User, err)
	}
	sec, err := o.Clients.Core.Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get Secret %s/%s: %w", ns, secret, err)
	}
	if o.WriteDir != "" {
		if err := os.MkdirAll(o.WriteDir, 0o700); err != nil {
			return err
		}
		for _, f := range []struct {
			key  string
			mode os.FileMode
		}{{"tls.crt", 0o644}, {"tls.key", 0o600}, {"ca.crt", 0o644}} {
			if err := writeFileAtomic(o.WriteDir, f.key, sec.Data[f.key], f.mode); err != nil {
				return err
			}
		}
	}
	if o.Output == "name" {
		fmt.Fprintln(o.Out, secret)
		return nil
	}
	info, _ := tls.ReadSecret(sec)
	fmt.Fprintf(o.Out, "client certificate for user %s: Secret %s/%s", o.User, ns, secret)
	if info != nil {
		fmt.Fprintf(o.Out, " (subject %s, issuer %s, expires %s)", info.Subject, info.Issuer, info.NotAfter.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(o.Out)
	if o.WriteDir != "" {
		fmt.Fprintf(o.Out, "wrote %s/tls.crt, %s/tls.key (0600) and %s/ca.crt\n", o.WriteDir, o.WriteDir, o.WriteDir)
	}
	return nil
}

// writeFileAtomic writes data as dir/name with mode: into a new file
// (O_EXCL, mode 0600 from the start, so the key is never readable by
// others), then renamed over name. A symlink at dir/name is replaced, never
// followed; an existing file's mode does not carry over.
func writeFileAtomic(dir, name string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}
