package planner

import (
	"fmt"
	"net"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// Operations.
const (
	Add          = "add"
	Rotate       = "rotate"
	ChangeIssuer = "change-issuer"
	Remove       = "remove"
	Rollback     = "rollback"
)

// Intent is what the user asked for, from flags or a PgpoolOpsRequest,
// normalised and checked once by Normalize; nothing downstream changes it.
type Intent struct {
	Operation   string
	Issuer      pgpool.IssuerRef
	SSLMode     string
	AuthMode    string
	ClientUser  string
	ClientOrgs  []string
	ClientOUs   []string
	ExtraDNS    []string
	ExtraIPs    []string
	Duration    time.Duration
	RenewBefore time.Duration
	// Duration and RenewBefore are the server certificate's,
	// ClientDuration and ClientRenewBefore the client certificate's (0:
	// cert-manager's defaults).
	ClientDuration    time.Duration
	ClientRenewBefore time.Duration
	KeepCertificates  bool
	// TakeOverCertificates lets add apply over Certificates of that name
	// that another tool created (--take-over-certificates).
	TakeOverCertificates bool
	// RestartOnly: rotate without re-issuing (--reissue=false): restart the
	// pods so that pgpool loads the certificates the Secrets hold now (after
	// cert-manager renewed them by itself).
	RestartOnly bool
	// OnlyStale: rotate --reissue=false --only-stale (Facts.Current says
	// which pods are current).
	OnlyStale bool
	// ApplyAlways: --apply Always (do not require every pod Ready first).
	ApplyAlways bool
	// BackendCASources are the --backend-ca sources (Facts.BackendCA holds
	// what they name), for the plan.
	BackendCASources []string
	// KeepPreviousCA: rotate keeps the previous issuer's CA in the bundle.
	KeepPreviousCA bool
	// CAOverlap is how long the issuer's CA stays in the bundle as the
	// previous one once rotate re-issued the certificates under its
	// renewal (--ca-overlap); 0: until every client certificate the
	// plugin issued under it has been re-issued, or has expired.
	CAOverlap time.Duration
	// CATrustOnly: when the issuer's CA was renewed in place, rotate does
	// only the first stage (every pod trusts the renewed CA) and stops
	// (--ca-trust-only).
	CATrustOnly bool
	// KeepCAs are SHA-256 prefixes (hex, at least 16 digits) of CAs of
	// unknown origin in the bundle to keep (--keep-ca) instead of dropping.
	KeepCAs []string
	// LeftoverTLS says what add does with ssl_ca_cert_dir and ssl_crl_file
	// settings it finds: "keep", "comment-out", or "" (refuse them with
	// cert auth, warn otherwise).
	LeftoverTLS string
	// RemoteTrust says what add does, under cert auth, with a rule that
	// trusts remote clients: "cert", "keep" or "" (refuse).
	RemoteTrust string
	// AllowOutage goes on when the plan takes every pod down at once (a
	// Deployment with strategy Recreate whose template changes).
	AllowOutage bool
	// Force (--force): go on although the KubeDB Pgpool is paused by
	// someone else or has a PgpoolOpsRequest that has not ended; rollback
	// also discards edits made to the config since the operation it undoes.
	Force bool
	// ForceUnlock takes the lock even from a run that still holds it.
	ForceUnlock bool
	// Owner is what to do when a tool that reverts changes at once (Flux's
	// kustomize-controller) manages an object the plan changes: "" refuses,
	// "ignore" goes on (--owner).
	Owner string
	// IssuerOnly: an add that names only the issuer (a PgpoolOpsRequest
	// with spec.tls.issuerRef alone), which KubeDB runs as change-issuer
	// on a pgpool that has TLS.
	IssuerOnly bool
}

// Facts are what the preflight learned for the planner, beside the
// discovered target: nothing in them is the user's choice.
type Facts struct {
	// Holder identifies who takes the lock (the run's identity).
	Holder string
	// Now is when the plan is made (the backup's time).
	Now time.Time
	// CurrentCA is ca.crt of the server Secret today: the previous CA after
	// change-issuer.
	CurrentCA []byte
	// RenewedCA is the issuer's signing CA when it was renewed in place
	// (same issuer name, a new key) after the server certificate was
	// issued: that certificate is not signed by it. nil otherwise.
	RenewedCA []byte
	// BackendCA is the PEM of the CAs that pgpool must trust for its
	// backends (read from Intent.BackendCASources), nil to keep what the CA
	// bundle holds.
	BackendCA []byte
	// BackendCAFrom says where BackendCA came from when the user did not
	// name it (KubeDB's AppBinding of the backend), for the plan.
	BackendCAFrom string
	// Login says how the verify step logs in through each pod beside the
	// client certificate: "password" (--verify-login) or "".
	Login string
	// Current are the UIDs of pods proven (by handshake) to serve what the
	// Secret holds: rotate --only-stale restarts only the others.
	Current map[string]bool
	// ClientLeaves are the certificates (tls.crt) of the client
	// Certificates the plugin issued (NAME-client-cert and those of tls
	// client-cert), by Certificate name, read when a CA in the bundle may
	// go once they are re-issued, or the issuer's CA was renewed.
	ClientLeaves map[string][]byte
	// UserCerts are the Certificates of tls client-cert, by name.
	UserCerts map[string]UserCert
	// IssuerCA is what the issuer signs with today, when that is known (a
	// CA Issuer's CA Secret).
	IssuerCA []byte
}

// UserCert is a Certificate of tls client-cert.
type UserCert struct {
	User, Secret, UID string
	Revision          int
}

// Names turns an Intent field into what the user wrote for it: a flag
// (--ssl-mode) or a manifest field (spec.tls.sslMode). The fields are
// issuer, issuerKind, sslMode, authMode, clientUser, serverDNSName,
// serverIP, duration, renewBefore, clientDuration, clientRenewBefore,
// leftoverTLS, and remove (how to turn TLS off instead).
type Names func(field string) string

// Normalize fills in the defaults of intent (the issuer kind, add's sslMode;
// the issuer may be written KIND/NAME) and checks it: every
// choice known, sslMode and clientAuthMode that fit each other, names and
// addresses the certificates can carry, lifetimes longer than their
// renewal. It is the one place the request is checked; its errors name
// the user's words through name.
func Normalize(intent Intent, name Names) (Intent, error) {
	switch intent.Operation {
	case Add, ChangeIssuer:
		if intent.Issuer.Kind == "" {
			intent.Issuer.Kind = "Issuer"
		}
		if intent.Issuer.Name == "" {
			if intent.Operation == Add {
				return intent, fmt.Errorf("%s is required: name the cert-manager Issuer (or, with %s ClusterIssuer, the ClusterIssuer) that signs pgpool's certificates", name("issuer"), name("issuerKind"))
			}
			return intent, fmt.Errorf("%s is required: name the new Issuer or ClusterIssuer", name("issuer"))
		}
		if err := splitIssuer(&intent.Issuer, name); err != nil {
			return intent, err
		}
		if k := intent.Issuer.Kind; k != "Issuer" && k != "ClusterIssuer" {
			return intent, fmt.Errorf(`%s must be "Issuer" or "ClusterIssuer", not %q`, name("issuerKind"), k)
		}
	case Remove:
		if intent.AuthMode != "" && intent.AuthMode != "md5" && intent.AuthMode != "scram" {
			return intent, fmt.Errorf(`%s after remove must be "md5" or "scram" (cert needs TLS), not %q`, name("authMode"), intent.AuthMode)
		}
	case Rotate:
		if intent.OnlyStale && !intent.RestartOnly {
			return intent, fmt.Errorf("--only-stale needs --reissue=false: a re-issue makes every pod stale")
		}
	case Rollback:
	default:
		return intent, fmt.Errorf("unknown operation %q", intent.Operation)
	}
	for _, ref := range intent.BackendCASources {
		if _, err := ParseCARef(ref); err != nil {
			return intent, err
		}
	}
	if intent.Owner != "" && intent.Owner != "ignore" {
		return intent, fmt.Errorf(`%s must be "ignore" (or not given: refuse when a tool that reverts changes at once manages an object the plan changes), not %q`, name("owner"), intent.Owner)
	}
	if intent.Operation != Add {
		return intent, nil
	}
	if intent.SSLMode == "" {
		intent.SSLMode = "require"
	}
	if intent.ClientUser == "" {
		return intent, fmt.Errorf("%s must not be empty", name("clientUser"))
	}
	switch intent.LeftoverTLS {
	case "", "keep", "comment-out":
	default:
		return intent, fmt.Errorf(`%s must be "keep" or "comment-out", not %q`, name("leftoverTLS"), intent.LeftoverTLS)
	}
	switch intent.RemoteTrust {
	case "", "keep", "cert":
	default:
		return intent, fmt.Errorf(`%s must be "cert" or "keep", not %q`, name("remoteTrust"), intent.RemoteTrust)
	}
	for _, n := range intent.ExtraDNS {
		if err := validDNSName(n, name); err != nil {
			return intent, err
		}
	}
	for _, ip := range intent.ExtraIPs {
		if net.ParseIP(ip) == nil {
			return intent, fmt.Errorf("%s %q is not an IP address", name("serverIP"), ip)
		}
	}
	if err := Shorter(name("renewBefore"), intent.RenewBefore, name("duration"), intent.Duration); err != nil {
		return intent, err
	}
	if err := Shorter(name("clientRenewBefore"), intent.ClientRenewBefore, name("clientDuration"), intent.ClientDuration); err != nil {
		return intent, err
	}
	if intent.SSLMode == "disable" {
		return intent, fmt.Errorf("%s disable means no TLS: use %s to turn TLS off", name("sslMode"), name("remove"))
	}
	if err := conf.ValidateModes(intent.SSLMode, intent.AuthMode); err != nil {
		return intent, fmt.Errorf("%s: %w", name("sslMode"), err)
	}
	return intent, nil
}

// Shorter refuses a renewal that is not shorter than the lifetime (both
// set); the names are what the user wrote.
func Shorter(renewName string, renew time.Duration, durName string, dur time.Duration) error {
	if renew > 0 && dur > 0 && renew >= dur {
		return fmt.Errorf("%s (%s) must be shorter than %s (%s)", renewName, renew, durName, dur)
	}
	return nil
}

// splitIssuer accepts kubectl's KIND/NAME form for the issuer
// (ClusterIssuer/ca, issuer/ca): the kind moves to Kind, unless the kind
// given names another one.
func splitIssuer(ref *pgpool.IssuerRef, name Names) error {
	k, n, ok := strings.Cut(ref.Name, "/")
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
		return fmt.Errorf("%s %q: a name has no '/'; write NAME with %s Issuer|ClusterIssuer, or Issuer/NAME, ClusterIssuer/NAME", name("issuer"), ref.Name, name("issuerKind"))
	}
	if n == "" || strings.Contains(n, "/") {
		return fmt.Errorf("%s %q: write Issuer/NAME or ClusterIssuer/NAME", name("issuer"), ref.Name)
	}
	if ref.Kind != "Issuer" && ref.Kind != want {
		return fmt.Errorf("%s %q names a %s but %s is %s: give one of them", name("issuer"), ref.Name, want, name("issuerKind"), ref.Kind)
	}
	ref.Name, ref.Kind = n, want
	return nil
}

// validDNSName refuses a server DNS name that is not a DNS name (a
// wildcard only as the whole first label).
func validDNSName(n string, name Names) error {
	l := strings.ToLower(n)
	var errs []string
	if strings.HasPrefix(l, "*.") {
		errs = validation.IsWildcardDNS1123Subdomain(l)
	} else {
		errs = validation.IsDNS1123Subdomain(l)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s %q is not a DNS name: %s", name("serverDNSName"), n, strings.Join(errs, "; "))
	}
	return nil
}

// CARef is one --backend-ca source: secret/NAME[/KEY] or
// configmap/NAME[/KEY] (KEY defaults to ca.crt).
type CARef struct {
	Secret    bool
	Name, Key string
}

// ParseCARef parses a --backend-ca source.
func ParseCARef(ref string) (CARef, error) {
	f := strings.Split(ref, "/")
	if len(f) < 2 || len(f) > 3 || f[1] == "" {
		return CARef{}, fmt.Errorf("--backend-ca %q: use secret/NAME[/KEY] or configmap/NAME[/KEY]", ref)
	}
	r := CARef{Name: f[1], Key: "ca.crt"}
	if len(f) == 3 {
		r.Key = f[2]
	}
	switch strings.ToLower(f[0]) {
	case "secret", "secrets":
		r.Secret = true
	case "configmap", "configmaps", "cm":
	default:
		return CARef{}, fmt.Errorf("--backend-ca %q: the kind must be secret or configmap", ref)
	}
	return r, nil
}
