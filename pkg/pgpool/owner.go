package pgpool

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// KubeDB's API: the Pgpool object that controls a KubeDB workload and the
// ops requests on it (read and written with the dynamic client: KubeDB's Go
// modules are not a dependency).
var (
	KubeDBPgpools     = schema.GroupVersionResource{Group: "kubedb.com", Version: "v1alpha2", Resource: "pgpools"}
	PgpoolOpsRequests = schema.GroupVersionResource{Group: "ops.kubedb.com", Version: "v1alpha1", Resource: "pgpoolopsrequests"}
	// AppBindings are KubeDB's connection records: the backend Postgres's
	// carries its CA (spec.clientConfig.caBundle).
	AppBindings = schema.GroupVersionResource{Group: "appcatalog.appscode.com", Version: "v1alpha1", Resource: "appbindings"}
)

// PauseReason is the reason of a Paused condition the plugin sets.
const PauseReason = "KubectlPgpool"

// OwnerSpec is what the plugin reads and writes of a KubeDB Pgpool's spec:
// spec.tls (nil: none), spec.sslMode and spec.clientAuthMode ("": unset).
type OwnerSpec struct {
	TLS            map[string]any `json:"tls,omitempty"`
	SSLMode        string         `json:"sslMode,omitempty"`
	ClientAuthMode string         `json:"clientAuthMode,omitempty"`
}

// Owner is the KubeDB Pgpool object that controls the workload, as
// discovery read it.
type Owner struct {
	APIVersion, Kind, Name, UID string
	Spec                        OwnerSpec
	// PostgresRef is spec.postgresRef: the backend's AppBinding (its
	// namespace defaults to the Pgpool's).
	PostgresRef struct{ Namespace, Name string }
	// Paused is its Paused status condition when that is True, else nil.
	Paused *metav1.Condition
	// Pending names the PgpoolOpsRequests on it that have not ended
	// ("NAME (phase PHASE)").
	Pending []string
}

// PausedByUs reports a pause the plugin set (a run that ended without
// lifting it left it behind, or this run's).
func (o *Owner) PausedByUs() bool { return o.Paused != nil && o.Paused.Reason == PauseReason }

// PausedByOther reports a pause by someone else (`kubectl dba pause`, KubeDB's
// ops-manager).
func (o *Owner) PausedByOther() bool { return o.Paused != nil && !o.PausedByUs() }

// ReadOwner reads what the plugin needs of a KubeDB Pgpool object.
func ReadOwner(u *unstructured.Unstructured) *Owner {
	o := &Owner{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Name: u.GetName(), UID: string(u.GetUID())}
	o.Spec.TLS, _, _ = unstructured.NestedMap(u.Object, "spec", "tls")
	o.Spec.SSLMode, _, _ = unstructured.NestedString(u.Object, "spec", "sslMode")
	o.Spec.ClientAuthMode, _, _ = unstructured.NestedString(u.Object, "spec", "clientAuthMode")
	o.PostgresRef.Name, _, _ = unstructured.NestedString(u.Object, "spec", "postgresRef", "name")
	o.PostgresRef.Namespace, _, _ = unstructured.NestedString(u.Object, "spec", "postgresRef", "namespace")
	if o.PostgresRef.Namespace == "" {
		o.PostgresRef.Namespace = u.GetNamespace()
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Paused" && m["status"] == "True" {
			s := func(k string) string { v, _ := m[k].(string); return v }
			o.Paused = &metav1.Condition{Type: "Paused", Status: metav1.ConditionTrue, Reason: s("reason"), Message: s("message")}
		}
	}
	return o
}

// OpsRequestPending says whether a PgpoolOpsRequest is on the Pgpool name
// and has not ended, and its phase.
func OpsRequestPending(u *unstructured.Unstructured, name string) (bool, string) {
	if db, _, _ := unstructured.NestedString(u.Object, "spec", "databaseRef", "name"); db != name {
		return false, ""
	}
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	switch phase {
	case "Successful", "Failed", "Skipped", "Denied":
		return false, phase
	case "":
		phase = "none yet"
	}
	return true, phase
}

// Summary says what the Pgpool object says of TLS, in the words of its
// spec (for status and plans).
func (s OwnerSpec) Summary() string {
	ssl, auth := s.SSLMode, s.ClientAuthMode
	if ssl == "" {
		ssl = "unset"
	}
	if auth == "" {
		auth = "unset (md5)"
	}
	tls := "no spec.tls"
	if s.TLS != nil {
		kind, _, _ := unstructured.NestedString(s.TLS, "issuerRef", "kind")
		name, _, _ := unstructured.NestedString(s.TLS, "issuerRef", "name")
		tls = fmt.Sprintf("spec.tls issuer %s %q", kind, name)
		var secrets []string
		certs, _, _ := unstructured.NestedSlice(s.TLS, "certificates")
		for _, c := range certs {
			m, _ := c.(map[string]any)
			secrets = append(secrets, fmt.Sprintf("%v: %v", m["alias"], m["secretName"]))
		}
		if len(secrets) > 0 {
			tls += " (" + strings.Join(secrets, ", ") + ")"
		}
	}
	return fmt.Sprintf("sslMode %s, clientAuthMode %s, %s", ssl, auth, tls)
}

// Differences names where the Pgpool's spec disagrees with the TLS that is
// live (for `tls status`): a KubeDB that believes its spec would put the
// workload back to it.
func (s OwnerSpec) Differences(live TLSState) []string {
	var out []string
	ssl := s.SSLMode
	if ssl == "" {
		ssl = "disable"
	}
	auth := s.ClientAuthMode
	if auth == "" {
		auth = "md5"
	}
	if !live.Enabled {
		if s.TLS != nil {
			out = append(out, "spec.tls is set, but TLS is off")
		}
		if ssl != "disable" {
			out = append(out, fmt.Sprintf("spec.sslMode is %s, but TLS is off", ssl))
		}
		return out
	}
	if s.TLS == nil {
		return append(out, "spec.tls is unset, but TLS is on")
	}
	if live.SSLMode != "" && ssl != live.SSLMode {
		out = append(out, fmt.Sprintf("spec.sslMode is %s, live %s", ssl, live.SSLMode))
	}
	if live.AuthMode != "" && auth != live.AuthMode {
		out = append(out, fmt.Sprintf("spec.clientAuthMode is %s, live %s", auth, live.AuthMode))
	}
	name, _, _ := unstructured.NestedString(s.TLS, "issuerRef", "name")
	kind, _, _ := unstructured.NestedString(s.TLS, "issuerRef", "kind")
	if live.Issuer.Name != "" && (name != live.Issuer.Name || (kind != "" && kind != live.Issuer.Kind)) {
		out = append(out, fmt.Sprintf("spec.tls.issuerRef is %s %q, live %s %q", kind, name, live.Issuer.Kind, live.Issuer.Name))
	}
	return out
}
