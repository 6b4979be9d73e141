package cmd

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
)

// AddOptions are the options of `tls add`.
type AddOptions struct {
	OperationOptions
	Issuer      string
	IssuerKind  string
	SSLMode     string
	AuthMode    string
	ClientUser  string
	ClientOrgs  []string
	ClientOUs   []string
	ServerDNS   []string
	ServerIPs   []string
	Duration    time.Duration
	RenewBefore time.Duration
	// ClientDuration and ClientRenewBefore: the client certificate's, when
	// they differ.
	ClientDuration    time.Duration
	ClientRenewBefore time.Duration
	// TakeOver applies over Certificates of that name another tool made.
	TakeOver bool
	// LeftoverTLS: what to do with ssl_ca_cert_dir / ssl_crl_file settings
	// found in pgpool.conf ("keep", "comment-out", "": refuse with cert).
	LeftoverTLS string
}

// NewAddOptions returns AddOptions with the defaults of the seed.
func NewAddOptions(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *AddOptions {
	return &AddOptions{OperationOptions: newOperationOptions(streams, flags),
		IssuerKind: "Issuer", SSLMode: "require", ClientUser: "postgres"}
}

func newAddCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := NewAddOptions(streams, flags)
	c := &cobra.Command{
		Use:   "add NAME --issuer ISSUER",
		Short: "Turn TLS on: issue certificates, configure pgpool, mount them, restart pod by pod",
		Example: `  # The seed's scenario: TLS required, clients log in with a certificate
  kubectl pgpool tls add pgpool -n demo --issuer pgpool-issuer \
    --ssl-mode require --client-auth-mode cert --client-org pgpool --client-ou client

  # Show the plan only
  kubectl pgpool tls add pgpool -n demo --issuer pgpool-issuer --dry-run=client

  # A ClusterIssuer, scram passwords over TLS, the plan and result as JSON
  kubectl pgpool tls add pgpool -n demo --issuer ca --issuer-kind ClusterIssuer --client-auth-mode scram -o json --yes`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	o.addFlags(c)
	o.addOnFailureFlag(c)
	c.Flags().StringVar(&o.Issuer, "issuer", "", "cert-manager issuer that signs the certificates (required)")
	c.Flags().StringVar(&o.IssuerKind, "issuer-kind", o.IssuerKind, "Issuer or ClusterIssuer")
	c.Flags().StringVar(&o.SSLMode, "ssl-mode", o.SSLMode, "disable, allow, prefer, require, verify-ca or verify-full (see the README's table)")
	c.Flags().StringVar(&o.AuthMode, "client-auth-mode", o.AuthMode, "md5, scram or cert: the method of pool_hba.conf's plain password rules (default: keep each rule's method)")
	c.Flags().StringVar(&o.ClientUser, "client-user", o.ClientUser, "CN of the client certificate: the pgpool user it logs in as")
	c.Flags().StringSliceVar(&o.ClientOrgs, "client-org", nil, "O of the client certificate's subject (repeatable)")
	c.Flags().StringSliceVar(&o.ClientOUs, "client-ou", nil, "OU of the client certificate's subject (repeatable)")
	c.Flags().StringSliceVar(&o.ServerDNS, "server-dns-name", nil, "extra DNS name for the server certificate (repeatable)")
	c.Flags().StringSliceVar(&o.ServerIPs, "server-ip-address", nil, "extra IP address for the server certificate, beside 127.0.0.1 (repeatable)")
	c.Flags().DurationVar(&o.Duration, "duration", 0, "certificate lifetime (cert-manager's default: 2160h)")
	addBackendCAFlag(c, &o.OperationOptions)
	c.Flags().StringVar(&o.LeftoverTLS, "leftover-tls", "", "keep or comment-out: what to do with ssl_ca_cert_dir and ssl_crl_file settings already in pgpool.conf (refused with --client-auth-mode cert until you choose)")
	c.Flags().BoolVar(&o.TakeOver, "take-over-certificates", false, "apply over Certificates NAME-server-cert/NAME-client-cert that another tool created (they become kubectl-pgpool's)")
	c.Flags().DurationVar(&o.RenewBefore, "renew-before", 0, "renew this long before expiry (cert-manager's default: a third of the lifetime)")
	c.Flags().DurationVar(&o.ClientDuration, "client-duration", 0, "the client certificate's lifetime, when it differs from --duration")
	c.Flags().DurationVar(&o.ClientRenewBefore, "client-renew-before", 0, "the client certificate's renewal, when it differs from --renew-before")
	_ = c.RegisterFlagCompletionFunc("ssl-mode", fixed(conf.SSLModes()))
	_ = c.RegisterFlagCompletionFunc("client-auth-mode", fixed(conf.ClientAuthModes()))
	_ = c.RegisterFlagCompletionFunc("issuer-kind", fixed([]string{"Issuer", "ClusterIssuer"}))
	return c
}

func fixed(vals []string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return vals, cobra.ShellCompDirectiveNoFileComp
	}
}

// Validate checks the flags.
func (o *AddOptions) Validate() error {
	if err := o.OperationOptions.Validate(); err != nil {
		return err
	}
	if o.Issuer == "" {
		return UsageError{fmt.Errorf("--issuer is required: name the cert-manager Issuer (or, with --issuer-kind ClusterIssuer, the ClusterIssuer) that signs pgpool's certificates")}
	}
	if err := splitIssuer(&o.Issuer, &o.IssuerKind); err != nil {
		return err
	}
	if err := validIssuerKind(o.IssuerKind); err != nil {
		return err
	}
	switch o.LeftoverTLS {
	case "", "keep", "comment-out":
	default:
		return UsageError{fmt.Errorf(`--leftover-tls must be "keep" or "comment-out", not %q`, o.LeftoverTLS)}
	}
	for _, n := range o.ServerDNS {
		if err := validDNSName(n); err != nil {
			return UsageError{err}
		}
	}
	if err := conf.ValidateModes(o.SSLMode, o.AuthMode); err != nil {
		return UsageError{err}
	}
	if o.SSLMode == "disable" {
		return UsageError{fmt.Errorf("--ssl-mode disable means no TLS: use `kubectl pgpool tls remove` to turn TLS off")}
	}
	if o.ClientUser == "" {
		return UsageError{fmt.Errorf("--client-user must not be empty")}
	}
	for _, ip := range o.ServerIPs {
		if net.ParseIP(ip) == nil {
			return UsageError{fmt.Errorf("--server-ip-address %q is not an IP address", ip)}
		}
	}
	if err := shorter("--renew-before", o.RenewBefore, "--duration", o.Duration); err != nil {
		return UsageError{err}
	}
	// The client certificate's own values, or the shared ones.
	rf, df := "--renew-before", "--duration"
	if o.ClientRenewBefore > 0 {
		rf = "--client-renew-before"
	}
	if o.ClientDuration > 0 {
		df = "--client-duration"
	}
	if err := shorter(rf, cmp.Or(o.ClientRenewBefore, o.RenewBefore), df, cmp.Or(o.ClientDuration, o.Duration)); err != nil {
		return UsageError{err}
	}
	return nil
}

// shorter refuses a renewal that is not shorter than the lifetime (both
// set); the names are what the user wrote (flags or manifest fields).
func shorter(renewName string, renew time.Duration, durName string, dur time.Duration) error {
	if renew > 0 && dur > 0 && renew >= dur {
		return fmt.Errorf("%s (%s) must be shorter than %s (%s)", renewName, renew, durName, dur)
	}
	return nil
}

// Run adds TLS.
func (o *AddOptions) Run(ctx context.Context) error {
	return o.run(ctx, planner.Request{
		Operation: planner.Add, Issuer: pgpool.IssuerRef{Name: o.Issuer, Kind: o.IssuerKind},
		SSLMode: o.SSLMode, AuthMode: o.AuthMode, ClientUser: o.ClientUser, ClientOrgs: o.ClientOrgs, ClientOUs: o.ClientOUs,
		ExtraDNS: o.ServerDNS, ExtraIPs: o.ServerIPs, Duration: o.Duration, RenewBefore: o.RenewBefore, TakeOverCertificates: o.TakeOver,
		LeftoverTLS:    o.LeftoverTLS,
		ClientDuration: cmp.Or(o.ClientDuration, o.Duration), ClientRenewBefore: cmp.Or(o.ClientRenewBefore, o.RenewBefore),
	})
}

func addBackendCAFlag(c *cobra.Command, o *OperationOptions) {
	c.Flags().StringSliceVar(&o.BackendCA, "backend-ca", nil, "secret/NAME[/KEY] or configmap/NAME[/KEY] (KEY default ca.crt) with the CA of backends that serve TLS from another CA; pgpool verifies its backends against the CA bundle (repeatable; default: keep what the bundle holds)")
}

// splitIssuer accepts kubectl's KIND/NAME form in --issuer
// (ClusterIssuer/ca, issuer/ca): the kind moves to kind, unless --issuer-kind
// names another one.
func splitIssuer(name, kind *string) error {
	k, n, ok := strings.Cut(*name, "/")
	if !ok {
		return nil
	}
	var want string
	switch strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(k, ".cert-manager.io"), "s")) {
	case "issuer":
		want = "Issuer"
	case "clusterissuer":
		want = "ClusterIssuer"
	default:
		return UsageError{fmt.Errorf("--issuer %q: a name has no '/'; write NAME with --issuer-kind Issuer|ClusterIssuer, or Issuer/NAME, ClusterIssuer/NAME", *name)}
	}
	if n == "" || strings.Contains(n, "/") {
		return UsageError{fmt.Errorf("--issuer %q: write Issuer/NAME or ClusterIssuer/NAME", *name)}
	}
	if *kind != "Issuer" && *kind != want {
		return UsageError{fmt.Errorf("--issuer %q names a %s but --issuer-kind is %s: give one of them", *name, want, *kind)}
	}
	*name, *kind = n, want
	return nil
}

// validDNSName refuses a --server-dns-name that is not a DNS name (a
// wildcard only as the whole first label).
func validDNSName(n string) error {
	l := strings.ToLower(n)
	var errs []string
	if strings.HasPrefix(l, "*.") {
		errs = validation.IsWildcardDNS1123Subdomain(l)
	} else {
		errs = validation.IsDNS1123Subdomain(l)
	}
	if len(errs) > 0 {
		return fmt.Errorf("--server-dns-name %q is not a DNS name: %s", n, strings.Join(errs, "; "))
	}
	return nil
}

func validIssuerKind(k string) error {
	if k != "Issuer" && k != "ClusterIssuer" {
		return UsageError{fmt.Errorf(`--issuer-kind must be "Issuer" or "ClusterIssuer", not %q`, k)}
	}
	return nil
}

// The options of the tls subcommands other than add.
type (
	// RotateOptions are the options of `tls rotate`.
	RotateOptions struct {
		OperationOptions
		Fleet
		// Reissue re-issues the Certificates first (--reissue); false only
		// restarts the pods so that they load what the Secrets hold.
		Reissue bool
		// KeepPreviousCA keeps the previous issuer's CA in the CA bundle.
		KeepPreviousCA bool
		// OnlyStale (with --reissue=false) restarts only the pods whose
		// served certificate differs from the Secret's.
		OnlyStale bool
	}

	// ChangeIssuerOptions are the options of `tls change-issuer`.
	ChangeIssuerOptions struct {
		OperationOptions
		Fleet
		Issuer     string
		IssuerKind string
	}

	// RemoveOptions are the options of `tls remove`.
	RemoveOptions struct {
		OperationOptions
		// KeepCertificates keeps the Certificates and their Secrets.
		KeepCertificates bool
		// AuthMode is the method for cert rules that tls add did not write.
		AuthMode string
	}
)

func newRotateCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &RotateOptions{OperationOptions: newOperationOptions(streams, flags)}
	c := &cobra.Command{
		Use:   "rotate (NAME | -l SELECTOR | -A | --all)",
		Short: "Re-issue every certificate now, then restart the pods one at a time",
		Long: `Re-issue the server and client Certificates now (as cmctl renew), wait for
cert-manager, then restart the pods one at a time so that pgpool loads them.

pgpool reads its certificate only at start. When cert-manager has renewed a
certificate by itself (tls status shows every pod as a mismatch),
--reissue=false restarts the pods without issuing another one.`,
		Example: `  kubectl pgpool tls rotate pgpool -n demo
  kubectl pgpool tls rotate pgpool -n demo --dry-run=server
  # pods serve an older certificate than the Secret holds (tls status: mismatch)
  kubectl pgpool tls rotate pgpool -n demo --reissue=false
  # only the pods that still serve an older certificate (e.g. from CI, on a schedule)
  kubectl pgpool tls rotate pgpool -n demo --reissue=false --only-stale --yes
  # every pgpool labelled tier=tenant in every namespace, 5 at a time
  kubectl pgpool tls rotate -A -l tier=tenant --parallel 5 --yes`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	o.addFlags(c)
	o.addOnFailureFlag(c)
	c.Flags().BoolVar(&o.Reissue, "reissue", true, "re-issue the certificates first; false only restarts the pods so that they load what the Secrets hold")
	o.addFleetFlags(c, true)
	c.Flags().BoolVar(&o.OnlyStale, "only-stale", false, "with --reissue=false: restart only the pods whose served certificate (TLS handshake through port-forward) is not the Secret's; none stale is success")
	c.Flags().BoolVar(&o.KeepPreviousCA, "keep-previous-ca", false, "keep the previous issuer's CA (from change-issuer) in the CA bundle, so client certificates it signed still log in")
	addBackendCAFlag(c, &o.OperationOptions)
	return c
}

// Validate checks the flags.
func (o *RotateOptions) Validate() error {
	if err := o.OperationOptions.Validate(); err != nil {
		return err
	}
	if o.Parallel < 1 {
		return UsageError{fmt.Errorf("--parallel must be at least 1")}
	}
	if o.OnlyStale && o.Reissue {
		return UsageError{fmt.Errorf("--only-stale needs --reissue=false: a re-issue makes every pod stale")}
	}
	if o.OnlyStale && o.Verify == "false" {
		return UsageError{fmt.Errorf("--only-stale tells stale pods by their TLS handshake: it cannot be used with --verify=false")}
	}
	return nil
}

// Complete resolves NAME or the fleet, and the clients.
func (o *RotateOptions) Complete(args []string) error { return o.complete(&o.connection, args) }

// Run rotates the certificates.
func (o *RotateOptions) Run(ctx context.Context) error {
	req := planner.Request{Operation: planner.Rotate, RestartOnly: !o.Reissue, KeepPreviousCA: o.KeepPreviousCA, OnlyStale: o.OnlyStale}
	if o.on() {
		return o.runFleet(ctx, &o.Fleet, req)
	}
	return o.run(ctx, req)
}

func newChangeIssuerCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &ChangeIssuerOptions{OperationOptions: newOperationOptions(streams, flags), IssuerKind: "Issuer"}
	c := &cobra.Command{
		Use:   "change-issuer (NAME | -l SELECTOR | -A | --all) --issuer NEW",
		Short: "Move the certificates to another issuer (cert-manager re-issues them), then restart",
		Example: `  kubectl pgpool tls change-issuer pgpool -n demo --issuer pp-new-issuer
  kubectl pgpool tls change-issuer pgpool -n demo --issuer ca --issuer-kind ClusterIssuer`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	o.addFlags(c)
	o.addOnFailureFlag(c)
	c.Flags().StringVar(&o.Issuer, "issuer", "", "the new issuer (required)")
	o.addFleetFlags(c, true)
	addBackendCAFlag(c, &o.OperationOptions)
	c.Flags().StringVar(&o.IssuerKind, "issuer-kind", o.IssuerKind, "Issuer or ClusterIssuer")
	return c
}

// Validate checks the flags.
func (o *ChangeIssuerOptions) Validate() error {
	if err := o.OperationOptions.Validate(); err != nil {
		return err
	}
	if o.Issuer == "" {
		return UsageError{fmt.Errorf("--issuer is required: name the new Issuer or ClusterIssuer")}
	}
	if err := splitIssuer(&o.Issuer, &o.IssuerKind); err != nil {
		return err
	}
	if o.Parallel < 1 {
		return UsageError{fmt.Errorf("--parallel must be at least 1")}
	}
	return validIssuerKind(o.IssuerKind)
}

// Complete resolves NAME or the fleet, and the clients.
func (o *ChangeIssuerOptions) Complete(args []string) error {
	return o.complete(&o.connection, args)
}

// Run changes the issuer.
func (o *ChangeIssuerOptions) Run(ctx context.Context) error {
	req := planner.Request{Operation: planner.ChangeIssuer, Issuer: pgpool.IssuerRef{Name: o.Issuer, Kind: o.IssuerKind}}
	if o.on() {
		return o.runFleet(ctx, &o.Fleet, req)
	}
	return o.run(ctx, req)
}

func newRemoveCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &RemoveOptions{OperationOptions: newOperationOptions(streams, flags)}
	c := &cobra.Command{
		Use:   "remove NAME",
		Short: "Turn TLS off: plain pool_hba rules, unmount the certificates, restart, delete them",
		Long: `Turn TLS off: ssl off in pgpool.conf, every pool_hba.conf rule and the
enable_pool_hba line that tls add changed put back as they were, the TLS
volume unmounted, the pods restarted one at a time (each proven to answer
without TLS), then the CA bundle and, unless --keep-certificates, the
Certificates and their Secrets deleted.`,
		Example: `  kubectl pgpool tls remove pgpool -n demo
  kubectl pgpool tls remove pgpool -n demo --keep-certificates --client-auth-mode scram`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	o.addFlags(c)
	o.addOnFailureFlag(c)
	c.Flags().BoolVar(&o.KeepCertificates, "keep-certificates", false, "keep the Certificates and their Secrets")
	c.Flags().StringVar(&o.AuthMode, "client-auth-mode", "", "md5 or scram for cert rules that tls add did not write (default md5); rules tls add changed get their original back")
	return c
}

// Validate checks the flags.
func (o *RemoveOptions) Validate() error {
	if err := o.OperationOptions.Validate(); err != nil {
		return err
	}
	if o.AuthMode != "" && o.AuthMode != "md5" && o.AuthMode != "scram" {
		return UsageError{fmt.Errorf(`--client-auth-mode after remove must be "md5" or "scram" (cert needs TLS), not %q`, o.AuthMode)}
	}
	return nil
}

// Run removes TLS.
func (o *RemoveOptions) Run(ctx context.Context) error {
	return o.run(ctx, planner.Request{Operation: planner.Remove, KeepCertificates: o.KeepCertificates, AuthMode: o.AuthMode})
}

// RollbackOptions are the options of `tls rollback`.
type RollbackOptions struct {
	OperationOptions
	// Force discards edits made to the config since the operation.
	Force bool
}

func newRollbackCmd(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &RollbackOptions{OperationOptions: newOperationOptions(streams, flags)}
	c := &cobra.Command{
		Use:   "rollback NAME",
		Short: "Undo the last operation: restore the backup taken before it and restart the pods it changed",
		Long: `Every tls add, rotate, change-issuer and remove first keeps a backup
(Secret NAME-kubectl-pgpool-backup): pgpool.conf, pool_hba.conf, the TLS
volume and mount, the Certificates and the CA bundle as they were. rollback
puts them back, restarts the pods started since (one at a time; pods that
never became Ready first), verifies them, deletes what did not exist before
and uses the backup up. It works on a pgpool whose pods are not all Ready:
that is what it is for. A failed operation rolls back by itself unless
--on-failure=stop.`,
		Example: `  kubectl pgpool tls rollback pgpool -n demo
  kubectl pgpool tls rollback pgpool -n demo --dry-run=client`,
		ValidArgsFunction: completePgpools(flags),
		RunE:              runE(o),
	}
	o.addFlags(c)
	c.Flags().BoolVar(&o.Force, "force", false, "roll back even when pgpool.conf or pool_hba.conf changed since the operation (those edits are lost)")
	return c
}

// Run rolls back.
func (o *RollbackOptions) Run(ctx context.Context) error {
	return o.run(ctx, planner.Request{Operation: planner.Rollback, Force: o.Force})
}
