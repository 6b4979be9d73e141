package cmd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/operation"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
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
	switch l := strings.ToLower(o.User); {
	case l == "public" || strings.HasPrefix(l, "pg_"):
		return UsageError{fmt.Errorf("--user %q: PostgreSQL reserves that role name (public, pg_*): no one logs in as it", o.User)}
	case l == "all" || l == "sameuser" || l == "samerole" || l == "samegroup":
		return UsageError{fmt.Errorf("--user %q: pool_hba.conf reads that name as a keyword, not a user, so a rule cannot name it plainly: use another role name", o.User)}
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
	ns := o.Namespace
	sec, err := operation.IssueClientCert(ctx, o.Clients, ns, o.Name, operation.ClientCert{User: o.User, Secret: o.Secret, Duration: o.Duration},
		o.Timeout, func(s string) { fmt.Fprintln(o.ErrOut, s) })
	if err != nil {
		return err
	}
	secret := sec.Name
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
