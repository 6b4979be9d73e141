package cmd

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
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
	// RemoteTrust: what to do under cert auth with a rule that trusts
	// remote clients (--remote-trust).
	RemoteTrust string

	intent planner.Intent
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
	c.Flags().StringVar(&o.RemoteTrust, "remote-trust", "", "cert or keep: what --client-auth-mode cert does with a pool_hba.conf rule that trusts clients on other hosts (refused until you choose): make it ask for a client certificate over TLS, or keep it")
	c.Flags().StringVar(&o.LeftoverTLS, "leftover-tls", "", "keep or comment-out: what to do with ssl_ca_cert_dir and ssl_crl_file settings already in pgpool.conf (refused with --client-auth-mode cert until you choose)")
	c.Flags().BoolVar(&o.TakeOver, "take-over-certificates", false, "apply over Certificates NAME-server-cert/NAME-client-cert that another tool created (they become kubectl-pgpool's)")
	c.Flags().DurationVar(&o.RenewBefore, "renew-before", 0, "renew this long before expiry (cert-manager's default: a third of the lifetime)")
	c.Flags().DurationVar(&o.ClientDuration, "client-duration", 0, "the client certificate's lifetime, when it differs from --duration")
	c.Flags().DurationVar(&o.ClientRenewBefore, "client-renew-before", 0, "the client certificate's renewal, when it differs from --renew-before")
	_ = c.RegisterFlagCompletionFunc("ssl-mode", cobra.FixedCompletions(conf.SSLModes(), cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("client-auth-mode", cobra.FixedCompletions(conf.ClientAuthModes(), cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("issuer-kind", cobra.FixedCompletions([]string{"Issuer", "ClusterIssuer"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

// Validate checks the flags and normalises the request.
func (o *AddOptions) Validate() (err error) {
	if err := o.OperationOptions.Validate(); err != nil {
		return err
	}
	// The client certificate's lifetime falls back to the server's: its
	// errors name the flags the user gave.
	names := func(field string) string {
		switch {
		case field == "clientDuration" && o.ClientDuration == 0:
			field = "duration"
		case field == "clientRenewBefore" && o.ClientRenewBefore == 0:
			field = "renewBefore"
		}
		return flagNames(field)
	}
	o.intent, err = o.normalize(planner.Intent{
		Operation: planner.Add, Issuer: pgpool.IssuerRef{Name: o.Issuer, Kind: o.IssuerKind},
		SSLMode: o.SSLMode, AuthMode: o.AuthMode, ClientUser: o.ClientUser, ClientOrgs: o.ClientOrgs, ClientOUs: o.ClientOUs,
		ExtraDNS: o.ServerDNS, ExtraIPs: o.ServerIPs, Duration: o.Duration, RenewBefore: o.RenewBefore, TakeOverCertificates: o.TakeOver,
		LeftoverTLS:    o.LeftoverTLS,
		RemoteTrust:    o.RemoteTrust,
		ClientDuration: cmp.Or(o.ClientDuration, o.Duration), ClientRenewBefore: cmp.Or(o.ClientRenewBefore, o.RenewBefore),
	}, names)
	return err
}

// Run adds TLS.
func (o *AddOptions) Run(ctx context.Context) error { return o.run(ctx, o.intent) }

func addBackendCAFlag(c *cobra.Command, o *OperationOptions) {
	c.Flags().StringSliceVar(&o.BackendCA, "backend-ca", nil, "secret/NAME[/KEY] or configmap/NAME[/KEY] (KEY default ca.crt) with the CA of backends that serve TLS from another CA; pgpool verifies its backends against the CA bundle (repeatable; default: keep what the bundle holds)")
	c.Flags().StringSliceVar(&o.KeepCA, "keep-ca", nil, "SHA256 (hex, at least 16 digits, as tls status prints it) of a CA of unknown origin in the CA bundle to keep instead of dropping: pgpool accepts client certificates it signs (repeatable)")
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
		// CAOverlap is how long the CA before a renewal in place stays
		// (--ca-overlap; 0: until the client certificates are re-issued).
		CAOverlap time.Duration
		// CATrustOnly stops a CA renewal after its first stage.
		CATrustOnly bool
		intent      planner.Intent
	}

	// ChangeIssuerOptions are the options of `tls change-issuer`.
	ChangeIssuerOptions struct {
		OperationOptions
		Fleet
		Issuer     string
		IssuerKind string
		intent     planner.Intent
	}

	// RemoveOptions are the options of `tls remove`.
	RemoveOptions struct {
		OperationOptions
		// KeepCertificates keeps the Certificates and their Secrets.
		KeepCertificates bool
		// AuthMode is the method for cert rules that tls add did not write.
		AuthMode string
		intent   planner.Intent
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
--reissue=false restarts the pods without issuing another one.

When the issuer's CA was renewed in place (same issuer, a new key: tls status
says "CA renewed"), rotate goes in the order that never refuses a client:
  1. the renewed CA joins the CA bundle and the pods restart (they still
     serve what the CA before signed; client certificates of either CA log in);
  2. its own plan, printed and asked: the certificates are re-issued under the
     renewed CA, including those of tls client-cert (their users get an
     Event), and the pods restart onto them; the CA before stays in the bundle;
  3. a later tls rotate drops the CA before once it may go: after
     --ca-overlap, or by default once every client certificate the plugin
     issued under it has been re-issued (at the latest when they expire).
--ca-trust-only stops after stage 1, to hand clients the renewed CA first.`,
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
	c.Flags().BoolVar(&o.KeepPreviousCA, "keep-previous-ca", false, "keep the previous issuer's CA (from change-issuer or a CA renewal) in the CA bundle, so client certificates it signed still log in")
	c.Flags().DurationVar(&o.CAOverlap, "ca-overlap", 0, "after a CA renewed in place: how long the CA before stays in the CA bundle once the certificates are re-issued (0: until every client certificate the plugin issued under it is re-issued, at the latest their expiry)")
	c.Flags().BoolVar(&o.CATrustOnly, "ca-trust-only", false, "after a CA renewed in place: only add the renewed CA to the CA bundle and restart (stage 1), so clients can be handed it before the certificates change")
	addBackendCAFlag(c, &o.OperationOptions)
	return c
}

// Validate checks the flags and normalises the request.
func (o *RotateOptions) Validate() (err error) {
	if err := o.OperationOptions.Validate(); err != nil {
		return err
	}
	if o.Parallel < 1 {
		return UsageError{fmt.Errorf("--parallel must be at least 1")}
	}
	if o.CAOverlap < 0 {
		return UsageError{fmt.Errorf("--ca-overlap must not be negative")}
	}
	if o.OnlyStale && o.Verify == "false" {
		return UsageError{fmt.Errorf("--only-stale tells stale pods by their TLS handshake: it cannot be used with --verify=false")}
	}
	o.intent, err = o.normalize(planner.Intent{Operation: planner.Rotate, RestartOnly: !o.Reissue, KeepPreviousCA: o.KeepPreviousCA, OnlyStale: o.OnlyStale, CAOverlap: o.CAOverlap, CATrustOnly: o.CATrustOnly}, nil)
	return err
}

// Complete resolves NAME or the fleet, and the clients.
func (o *RotateOptions) Complete(args []string) error { return o.complete(&o.connection, args) }

// Run rotates the certificates.
func (o *RotateOptions) Run(ctx context.Context) error {
	if o.on() {
		return o.runFleet(ctx, &o.Fleet, o.intent)
	}
	return o.run(ctx, o.intent)
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

// Validate checks the flags and normalises the request.
func (o *ChangeIssuerOptions) Validate() (err error) {
	if err := o.OperationOptions.Validate(); err != nil {
		return err
	}
	if o.Parallel < 1 {
		return UsageError{fmt.Errorf("--parallel must be at least 1")}
	}
	o.intent, err = o.normalize(planner.Intent{Operation: planner.ChangeIssuer, Issuer: pgpool.IssuerRef{Name: o.Issuer, Kind: o.IssuerKind}}, nil)
	return err
}

// Complete resolves NAME or the fleet, and the clients.
func (o *ChangeIssuerOptions) Complete(args []string) error {
	return o.complete(&o.connection, args)
}

// Run changes the issuer.
func (o *ChangeIssuerOptions) Run(ctx context.Context) error {
	if o.on() {
		return o.runFleet(ctx, &o.Fleet, o.intent)
	}
	return o.run(ctx, o.intent)
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

// Validate checks the flags and normalises the request.
func (o *RemoveOptions) Validate() (err error) {
	if err := o.OperationOptions.Validate(); err != nil {
		return err
	}
	o.intent, err = o.normalize(planner.Intent{Operation: planner.Remove, KeepCertificates: o.KeepCertificates, AuthMode: o.AuthMode}, nil)
	return err
}

// Run removes TLS.
func (o *RemoveOptions) Run(ctx context.Context) error { return o.run(ctx, o.intent) }

// RollbackOptions are the options of `tls rollback`.
type RollbackOptions struct{ OperationOptions }

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
	return c
}

// Run rolls back.
func (o *RollbackOptions) Run(ctx context.Context) error {
	intent, err := o.normalize(planner.Intent{Operation: planner.Rollback}, nil)
	if err != nil {
		return err
	}
	return o.run(ctx, intent)
}
