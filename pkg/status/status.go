// Package status holds what `tls status` reports about a pgpool, as data:
// pkg/operation fills it in, pkg/ui renders it, -o json|yaml prints it.
package status

import (
	"fmt"
	"strings"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/schedule"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
)

// Status is what `tls status` reports.
type Status struct {
	Workload     string             `json:"workload"`
	Config       string             `json:"config"`
	SSL          bool               `json:"ssl"`
	SSLMode      string             `json:"sslMode"`
	AuthMode     string             `json:"clientAuthMode"`
	HBAEnforced  bool               `json:"poolHBAEnforced"`
	Issuer       pgpool.IssuerRef   `json:"issuer,omitempty"`
	TLSVolume    bool               `json:"tlsVolume"`
	TLSMountPath string             `json:"tlsMountPath"`
	Certificates []CertStatus       `json:"certificates"`
	Pods         []PodStatus        `json:"pods"`
	CABundle     *BundleStatus      `json:"caBundle,omitempty"`
	ClientCerts  []ClientCertStatus `json:"clientCertificates,omitempty"`
	Backends     []BackendStatus    `json:"backends,omitempty"`
	LastOp       string             `json:"lastOperation,omitempty"`
	// Owner is the object that controls the workload and that the layout
	// knows to tell (KubeDB's Pgpool), as KIND NAMESPACE/NAME.
	Owner string `json:"owner,omitempty"`
	// OwnerSays is what that object's spec says of TLS; OwnerDiffers where
	// it disagrees with what is live; OwnerPaused its pause, if any; and
	// OwnerPending its PgpoolOpsRequests that have not ended.
	OwnerSays    string            `json:"ownerSays,omitempty"`
	OwnerDiffers []string          `json:"ownerDiffers,omitempty"`
	OwnerPaused  string            `json:"ownerPaused,omitempty"`
	OwnerPending []string          `json:"ownerPending,omitempty"`
	Paths        map[string]string `json:"pgpoolPaths,omitempty"`
	// Reverted says that TLS the plugin's last run set up is no longer
	// in the config, and who took it out when that can be told ("": not
	// reverted).
	Reverted string `json:"reverted,omitempty"`
	// ManagedBy names who else manages the workload and its config (Helm,
	// Argo CD, Flux) and what they do to a change made here.
	ManagedBy []string `json:"managedBy,omitempty"`
	// Layout is how the pgpool is deployed (kubedb, pgpool2_on_k8s,
	// bitnami).
	Layout string `json:"layout,omitempty"`
	// IssuerCA is what the issuer signs with today (a CA Issuer's CA
	// Secret), and which of the pgpool's certificates it did not sign:
	// renewed in place under the same issuer name, they are stale.
	IssuerCA *IssuerCAStatus `json:"issuerCA,omitempty"`
	// Schedule is the scheduled renewal (tls schedule), and LastRun what
	// its last run did; nil when there is none.
	Schedule *schedule.Spec `json:"schedule,omitempty"`
	LastRun  *schedule.Run  `json:"scheduleLastRun,omitempty"`
}

// IssuerCAStatus is the issuer's signing CA today and the pgpool's
// certificates it did not sign.
type IssuerCAStatus struct {
	Secret   string    `json:"secret"`
	Subject  string    `json:"subject"`
	SHA256   string    `json:"sha256"`
	NotAfter time.Time `json:"notAfter"`
	// Stale are the Certificates whose Secret holds a certificate this CA
	// did not sign (issued before the CA was renewed).
	Stale []string `json:"stale,omitempty"`
	// InBundle: the CA bundle pgpool reads holds this CA.
	InBundle bool `json:"inBundle"`
}

// CARenewed says why the pgpool's certificates are stale against their
// issuer's renewed CA ("" when they are not).
func (s *Status) CARenewed() string {
	ca := s.IssuerCA
	if ca == nil || (len(ca.Stale) == 0 && (ca.InBundle || s.CABundle == nil)) {
		return ""
	}
	if len(ca.Stale) == 0 {
		return fmt.Sprintf("the issuer's CA %s (sha256 %.16s) is not in the CA bundle pgpool reads: client certificates it signs are refused; run `tls rotate`", ca.Subject, ca.SHA256)
	}
	return fmt.Sprintf("the issuer's CA was renewed in place (now %s, sha256 %.16s, Secret %s): %s not signed by it; run `tls rotate`, which re-issues them and keeps the previous CA in the bundle meanwhile", ca.Subject, ca.SHA256, ca.Secret, strings.Join(ca.Stale, ", ")+map[bool]string{true: " is", false: " are"}[len(ca.Stale) == 1])
}

// BundleStatus is the CA bundle pgpool reads as ssl_ca_cert, in order.
type BundleStatus struct {
	ConfigMap string   `json:"configMap"`
	Issuer    []string `json:"issuerCA"`
	Previous  []string `json:"previousCA,omitempty"`
	Backend   []string `json:"backendCA,omitempty"`
	// CAs is every CA of ca.pem, the file pgpool reads, with its origin
	// (tls.AuditBundle): an unknown one can sign client certificates.
	CAs []tls.BundleCA `json:"cas,omitempty"`
}

// UnknownCAs are the bundle's CAs of unknown origin.
func (s *Status) UnknownCAs() []tls.BundleCA {
	var out []tls.BundleCA
	if s.CABundle == nil {
		return nil
	}
	for _, c := range s.CABundle.CAs {
		if c.Origin == tls.OriginUnknown {
			out = append(out, c)
		}
	}
	return out
}

// CertStatus is one Certificate and what its Secret holds.
type CertStatus struct {
	Name     string        `json:"name"`
	Ready    bool          `json:"ready"`
	Revision int           `json:"revision"`
	Secret   *tls.CertInfo `json:"secret,omitempty"`
}

// ClientCertStatus is a client certificate issued for one user (tls
// client-cert).
type ClientCertStatus struct {
	User     string    `json:"user"`
	Secret   string    `json:"secret"`
	Ready    bool      `json:"ready"`
	NotAfter time.Time `json:"notAfter,omitempty"`
	// Reissued is the last Event ClientCertificateReissued on its
	// Certificate, for its user: when, and what to do.
	Reissued string `json:"reissued,omitempty"`
}

// PodStatus is one pod and, unless --verify=false, what its handshake
// showed.
type PodStatus struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
	UID   string `json:"uid"`
	// Check is "ok" (serves what the Secret holds, or no TLS when TLS is
	// off), "mismatch", "unreachable", "error" or "skipped".
	Check  string         `json:"check,omitempty"`
	Detail string         `json:"detail,omitempty"`
	Served *verify.Served `json:"served,omitempty"`
	// Plaintext and Certless are the negative proof: whether the pod
	// refused logins with no credential, without TLS and over TLS without
	// a client certificate ("refused", "accepted", "not-checked");
	// Refusal says what admitted one, or why one was not checked.
	Plaintext string   `json:"plaintext,omitempty"`
	Certless  string   `json:"certless,omitempty"`
	Refusal   []string `json:"refusal,omitempty"`
	// Endpoint maps each Service of the pgpool that has EndpointSlices to
	// whether the pod is a ready endpoint of it (takes its traffic).
	Endpoint map[string]bool `json:"endpoint,omitempty"`
}

// BackendStatus is what one of pgpool's backends serves, reached the way
// pgpool reaches it.
type BackendStatus struct {
	conf.Backend
	// Via names the pod the check went through.
	Via string `json:"via,omitempty"`
	// Check: "tls-trusted", "tls-untrusted", "plain", "not-checked".
	Check   string `json:"check"`
	Issuer  string `json:"issuer,omitempty"`
	Subject string `json:"subject,omitempty"`
	Detail  string `json:"detail,omitempty"`
}
