package cmd

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/operation"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/ui"
)

// ReportOptions are the options of `tls report`.
type ReportOptions struct {
	connection
	Fleet
	// File is where the .tar.gz goes ("-": standard output; "": a name
	// made of the namespace, the pgpool and the time, in the current
	// directory).
	File    string
	Timeout time.Duration
	info    BuildInfo
}

func newReportCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags, info BuildInfo) *cobra.Command {
	o := &ReportOptions{connection: connection{IOStreams: streams, ConfigFlags: flags}, Timeout: 20 * time.Second, info: info}
	c := &cobra.Command{
		Use:   "report (NAME | -l SELECTOR | -A | --all)",
		Short: "Write a support bundle (.tar.gz): the workload, its config and certificates, events, logs and status, secrets redacted",
		Long: `Write what a support case needs of a pgpool into a .tar.gz: the workload and its
pods, pgpool.conf and pool_hba.conf, the Certificates, CertificateRequests and
Issuers, the CA bundle, the events, the last ` + fmt.Sprint(operation.LogLines) + ` log lines of each container, tls
status (as JSON would give it), the metadata of the backup and of the lock,
the schedule, who else manages it, and the plugin's and the server's versions.

Nothing secret leaves the cluster: passwords in the config (and ldapbindpasswd
in pool_hba.conf) and in environment variables are redacted, private keys are
never read into it, and every value of the Secrets the pgpool uses is scrubbed
from every file, logs included. It reads with your own permissions: what it may
not read is listed in missing.txt, and the rest is written.`,
		Example: `  kubectl pgpool tls report pgpool -n demo
  kubectl pgpool tls report pgpool -n demo -f /tmp/pgpool-report.tar.gz
  kubectl pgpool tls report -A -f - > all-pgpools.tar.gz`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	c.Flags().StringVarP(&o.File, "file", "f", "", `where to write the .tar.gz ("-": standard output; default: kubectl-pgpool-report-NAMESPACE-NAME-TIME.tar.gz here)`)
	c.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "time limit of each pod's handshake for the status")
	o.addFleetFlags(c, false)
	return c
}

// Complete resolves NAME (or the fleet) and the clients.
func (o *ReportOptions) Complete(args []string) error { return o.complete(&o.connection, args) }

// Validate has nothing to check beyond the flags' types.
func (o *ReportOptions) Validate() error { return nil }

// Run collects each pgpool's report and writes one archive.
func (o *ReportOptions) Run(ctx context.Context) error {
	now := time.Now().UTC()
	refs := o.targets(&o.connection)
	base := fmt.Sprintf("kubectl-pgpool-report-%s", now.Format("20060102T150405Z"))
	if len(refs) == 1 {
		base = fmt.Sprintf("kubectl-pgpool-report-%s-%s-%s", refs[0].Namespace, refs[0].Name, now.Format("20060102T150405Z"))
	}
	files := map[string][]byte{path.Join(base, "plugin-version.txt"): fmt.Appendf(nil, "kubectl-pgpool %s (commit %s, built %s)\n", o.info.Version, o.info.Commit, o.info.Date)}
	var errs, missing []string
	for _, ref := range refs {
		r, err := operation.CollectReport(ctx, o.Clients, ref, o.Timeout)
		if err != nil {
			errs = append(errs, fleetErr(o.on(), ref, err).Error())
			continue
		}
		dir := base
		if len(refs) > 1 {
			dir = path.Join(base, ref.Namespace, ref.Name)
		}
		got, err := reportFiles(r)
		if err != nil {
			return err
		}
		for name, b := range got {
			files[path.Join(dir, name)] = b
		}
		for _, m := range r.Missing {
			missing = append(missing, fmt.Sprintf("%s/%s: %s", ref.Namespace, ref.Name, m))
		}
	}
	if len(errs) > 0 {
		files[path.Join(base, "errors.txt")] = []byte(strings.Join(errs, "\n") + "\n")
	}
	if len(missing) > 0 {
		files[path.Join(base, "missing.txt")] = []byte(strings.Join(missing, "\n") + "\n")
	}
	if len(errs) == len(refs) {
		return errors.New(strings.Join(errs, "; "))
	}
	out := o.Out
	name := o.File
	if name != "-" {
		if name == "" {
			name = base + ".tar.gz"
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("write the report: %w", err)
		}
		defer func() { _ = f.Close() }()
		out = f
	}
	if err := writeTarGz(out, files, now); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	if name != "-" {
		fmt.Fprintf(o.ErrOut, "wrote %s (%d files; secrets redacted)\n", name, len(files))
	}
	for _, m := range missing {
		fmt.Fprintf(o.ErrOut, "not in the report: %s\n", m)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// reportFiles renders a report: objects as YAML and texts, each redacted
// (secret environment values, config passwords, ldapbindpasswd, private
// keys), then every file scrubbed of the values of the pgpool's Secrets.
func reportFiles(r *operation.Report) (map[string][]byte, error) {
	out := map[string][]byte{}
	for name, obj := range r.Objects {
		red, err := ui.Redact(obj)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		b, err := yaml.Marshal(red)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = b
	}
	for name, text := range r.Texts {
		out[name] = []byte(conf.RedactSecrets(text))
	}
	secrets := append([]string(nil), r.Secrets...)
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	for name, b := range out {
		s := conf.RedactPrivateKeys(string(b))
		for _, v := range secrets {
			s = strings.ReplaceAll(s, v, conf.Redacted)
			if t := strings.TrimSpace(v); t != v && len(t) >= 4 {
				s = strings.ReplaceAll(s, t, conf.Redacted)
			}
		}
		out[name] = []byte(s)
	}
	return out, nil
}

// writeTarGz writes files (sorted by name, mode 0600) as a gzipped tar.
func writeTarGz(w io.Writer, files map[string][]byte, mtime time.Time) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(files[n])), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.Copy(tw, bytes.NewReader(files[n])); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}
