package pgpool

import (
	"encoding/json"
	"fmt"
	"slices"
)

// AnnotationTrust records on the workload where `tls trust` distributes
// the pgpool's CA to its clients, so that rotate and change-issuer keep
// those copies current (JSON of Trust).
const AnnotationTrust = "kubectl-pgpool.io/trust"

// Trust is where the CAs that clients need to verify pgpool (the issuer's,
// and the previous one during an overlap) are kept, under Name: a
// ConfigMap in each of Namespaces and of the namespaces Selector picks, or,
// with Bundle, one trust-manager Bundle of that name that syncs them there.
type Trust struct {
	Name       string   `json:"name"`
	Namespaces []string `json:"namespaces,omitempty"`
	Selector   string   `json:"namespaceSelector,omitempty"`
	Bundle     bool     `json:"trustManagerBundle,omitempty"`
}

// TrustName is the default name of the client CA ConfigMap (and Bundle).
func TrustName(pgpool string) string { return pgpool + "-ca" }

// Trust is the workload's trust record, nil when there is none.
func (t *Target) Trust() (*Trust, error) {
	a := t.Annotations[AnnotationTrust]
	if a == "" {
		return nil, nil
	}
	var tr Trust
	if err := json.Unmarshal([]byte(a), &tr); err != nil || tr.Name == "" {
		return nil, fmt.Errorf("annotation %s on %s is not what kubectl-pgpool writes (%q): remove it and run `kubectl pgpool tls trust %s` again", AnnotationTrust, t, a, t.Name)
	}
	return &tr, nil
}

// Where says where tr keeps the CA, for plans and messages.
func (tr Trust) Where() string {
	where := ""
	switch {
	case len(tr.Namespaces) > 0 && tr.Selector != "":
		where = fmt.Sprintf("namespaces %v and those labelled %s", tr.Namespaces, tr.Selector)
	case tr.Selector != "":
		where = "the namespaces labelled " + tr.Selector
	default:
		where = fmt.Sprintf("namespaces %v", tr.Namespaces)
	}
	if tr.Bundle {
		return fmt.Sprintf("trust-manager Bundle %s (synced as ConfigMap %s into %s)", tr.Name, tr.Name, where)
	}
	return fmt.Sprintf("ConfigMap %s in %s", tr.Name, where)
}

// Equal reports whether two records name the same places.
func (tr Trust) Equal(o Trust) bool {
	return tr.Name == o.Name && tr.Selector == o.Selector && tr.Bundle == o.Bundle && slices.Equal(tr.Namespaces, o.Namespaces)
}
