package plan

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// Spec is what the Runner needs to carry out one step. Each kind of step
// has its own type, so planner and runner agree on its fields at compile
// time; the Runner switches on the type. Specs are printed in json/yaml
// output, so fields that may hold secrets are not marshalled.
type Spec interface {
	// StepKind is the kind of step this spec describes.
	StepKind() Kind
}

// LockSpec takes the operation lock; Force takes it even from a holder
// that still renews it (--force-unlock).
type LockSpec struct {
	Holder    string `json:"holder"`
	Operation string `json:"operation"`
	Force     bool   `json:"force,omitempty"`
}

// ApplyCertificateSpec creates or updates a cert-manager Certificate by
// server-side apply.
type ApplyCertificateSpec struct {
	Manifest json.RawMessage `json:"manifest"`
}

// ApplyBundleSpec writes the CA bundle ConfigMap: the issuer's CA read from
// a Secret when the step runs, then NextCA, PreviousCA and BackendCA (PEM),
// with Records of the next and previous CAs; or, when Data is set (a
// rollback), exactly Data.
type ApplyBundleSpec struct {
	IssuerCAFrom string         `json:"issuerCAFromSecret,omitempty"`
	NextCA       []byte         `json:"-"`
	PreviousCA   []byte         `json:"-"`
	Records      []tls.CARecord `json:"-"`
	BackendCA    []byte         `json:"-"`
	// KeptCA are CAs of unknown origin the user chose to keep (--keep-ca).
	KeptCA []byte            `json:"-"`
	Data   map[string]string `json:"-"`
}

// DistributeTrustSpec keeps the client CA copies of `tls trust` current:
// the issuer's CA and the previous one, read from the CA bundle when the
// step runs, written where Trust says.
type DistributeTrustSpec struct {
	Trust pgpool.Trust `json:"trust"`
}

// ApplyConfigMapSpec creates a ConfigMap of the plugin's (its labels) with
// Data, or replaces the data of one that is the plugin's; someone else's
// ConfigMap of that name is refused.
type ApplyConfigMapSpec struct {
	Data map[string]string `json:"-"`
}

// BackupSpec writes the backup Secret (the state before the operation's
// first write). Its data may hold passwords and is never printed.
type BackupSpec struct {
	Secret *corev1.Secret `json:"-"`
}

// TriggerSpec re-issues a Certificate now (its Issuing condition).
type TriggerSpec struct{}

// WaitCertificateSpec waits for a Certificate to be Ready with a revision
// after AfterRevision.
type WaitCertificateSpec struct {
	AfterRevision int `json:"afterRevision"`
}

// ConfigPatchSpec writes the new pgpool.conf and pool_hba.conf into the
// config ConfigMap or Secret, with the resourceVersion that was read as a
// precondition. The files may hold passwords and are never printed (the
// step's Diff shows the change, with password values masked).
type ConfigPatchSpec struct {
	ResourceVersion string `json:"resourceVersion"`
	PgpoolConf      string `json:"-"`
	PoolHBA         string `json:"-"`
}

// WorkloadPatchSpec patches the workload's pod template: a JSON patch whose
// test operations are the preconditions.
type WorkloadPatchSpec struct {
	Patch json.RawMessage `json:"patch"`
}

// CertificatePatchSpec merge-patches a Certificate.
type CertificatePatchSpec struct {
	Patch json.RawMessage `json:"patch"`
}

// Pods names the pods of the workload a step watches: those the selector
// matches, Want of them, none of the Known (pre-change) UIDs.
type Pods struct {
	Selector string   `json:"selector"`
	Known    []string `json:"known"`
	Want     int      `json:"want"`
}

// Check is what a step proves on each replaced pod: TLS served (or not),
// and a login through it ("cert", "password" or "" for none).
type Check struct {
	TLS   bool   `json:"tls"`
	Login string `json:"login,omitempty"`
	// Refuse is the negative proof every pod must pass (nil: none).
	Refuse *Refuse `json:"refuse,omitempty"`
}

// Refuse is what a pod must refuse, probed with logins that carry no
// credential: plain ones when the sslMode requires TLS, TLS ones without a
// client certificate under cert auth. PoolHBA (with Enforced) is the
// pool_hba.conf pgpool must read once the plan is done: it says what let a
// probe in.
type Refuse struct {
	Plaintext bool   `json:"plaintext"`
	Certless  bool   `json:"certless"`
	PoolHBA   string `json:"-"`
	Enforced  bool   `json:"-"`
	// KeepTrust: the user kept remote trust rules (--remote-trust keep), so
	// a probe one of them admits is expected, not a failure.
	KeepTrust bool `json:"keepTrust,omitempty"`
}

// EvictSpec evicts one pod and waits for its Ready replacement (same name
// for StatefulSets and PetSets), then checks it.
type EvictSpec struct {
	UID      string `json:"uid"`
	SameName bool   `json:"sameName"`
	Pods     Pods   `json:"pods"`
	Check    Check  `json:"check"`
	// Next: another pod of this roll is evicted after this one, so the
	// step ends only once the workload's controller counts the
	// replacement Ready (a controller acting on a stale view could delete
	// it again while the next pod is down).
	Next bool `json:"next,omitempty"`
}

// RolloutSpec waits for the workload controller's own rolling update and for
// the old pods to be gone.
type RolloutSpec struct {
	Pods Pods `json:"pods"`
}

// VerifySpec checks the end state: the config, the TLS volume, every pod
// replaced and Ready and proven, the server certificate's issuer.
type VerifySpec struct {
	Config       Object `json:"config"`
	TLSMountPath string `json:"tlsMountPath"`
	Issuer       string `json:"issuer,omitempty"`
	Pods         Pods   `json:"pods"`
	Check        Check  `json:"check"`
}

// DeleteSpec deletes the step's object.
type DeleteSpec struct{}

// RecordSpec records the outcome on the workload: TLS is the value of the
// TLS annotation after success ("" removes it).
type RecordSpec struct {
	Operation string `json:"operation"`
	TLS       string `json:"tls,omitempty"`
	// BackupDone: on success, mark the backup as that of a finished
	// operation (the next operation takes a new one).
	BackupDone bool `json:"backupDone,omitempty"`
	// Notices are Events to leave on other objects on success.
	Notices []Notice `json:"notices,omitempty"`
}

// Notice is an Event about Object (of UID) for the people who use it.
type Notice struct {
	Object  Object `json:"object"`
	UID     string `json:"uid,omitempty"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// UnlockSpec releases the lock.
type UnlockSpec struct{}

// PauseSpec sets (Pause) or lifts the Paused status condition of the step's
// object, a KubeDB Pgpool: while it is set, KubeDB's provisioner leaves the
// Pgpool's PetSet and config alone. Only a pause with the plugin's reason
// is lifted.
type PauseSpec struct {
	Pause   bool   `json:"pause"`
	Message string `json:"message,omitempty"`
}

// OwnerPatchSpec writes what the operation did into the step's object (a
// KubeDB Pgpool's spec), as KubeDB's ops-manager does: a merge patch.
type OwnerPatchSpec struct {
	Patch json.RawMessage `json:"patch"`
}

// StepKind implementations.
func (LockSpec) StepKind() Kind             { return Lock }
func (ApplyCertificateSpec) StepKind() Kind { return Apply }
func (ApplyBundleSpec) StepKind() Kind      { return Apply }
func (ApplyConfigMapSpec) StepKind() Kind   { return Apply }
func (DistributeTrustSpec) StepKind() Kind  { return Apply }
func (BackupSpec) StepKind() Kind           { return Apply }
func (TriggerSpec) StepKind() Kind          { return Trigger }
func (WaitCertificateSpec) StepKind() Kind  { return Wait }
func (ConfigPatchSpec) StepKind() Kind      { return Patch }
func (WorkloadPatchSpec) StepKind() Kind    { return Patch }
func (CertificatePatchSpec) StepKind() Kind { return Patch }
func (EvictSpec) StepKind() Kind            { return Evict }
func (RolloutSpec) StepKind() Kind          { return Rollout }
func (VerifySpec) StepKind() Kind           { return Verify }
func (DeleteSpec) StepKind() Kind           { return Delete }
func (RecordSpec) StepKind() Kind           { return Record }
func (UnlockSpec) StepKind() Kind           { return Unlock }
func (PauseSpec) StepKind() Kind            { return Patch }
func (OwnerPatchSpec) StepKind() Kind       { return Patch }
