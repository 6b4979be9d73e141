package tls

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Client trust: the CAs a client needs to verify pgpool's server
// certificate, copied where the applications are (tls trust).
const (
	// TrustKey is the key of the client CA bundle, as trust-manager and
	// most client images name it.
	TrustKey = "ca.crt"
	// AnnotationCAOf marks a client CA ConfigMap or Bundle with the pgpool
	// whose CA it carries (NAMESPACE/NAME): the plugin changes and deletes
	// only those that carry it.
	AnnotationCAOf = "kubectl-pgpool.io/ca-of"
)

// Bundles is trust-manager's Bundle resource (cluster-scoped).
var Bundles = schema.GroupVersionResource{Group: "trust.cert-manager.io", Version: "v1alpha1", Resource: "bundles"}

// ClientTrust is what a client needs to verify pgpool, from the pgpool's CA
// bundle as the plugin wrote it: the issuer's CA, then the next one (while
// the issuer's CA is renewed in place), then the previous one (during the
// overlap after change-issuer or a renewal). Never the backends' CAs or a
// kept one: those are for pgpool, not for its clients.
func ClientTrust(bundle map[string]string) []byte {
	return JoinCAs([]byte(bundle[IssuerCAKey]), []byte(bundle[NextCAKey]), []byte(bundle[PreviousCAKey]))
}

// CarriesCAOf reports whether an object is a client CA copy of pgpool
// ns/name, written by the plugin.
func CarriesCAOf(m metav1.Object, ns, name string) bool {
	return m.GetLabels()[LabelManagedBy] == ManagerName && m.GetAnnotations()[AnnotationCAOf] == ns+"/"+name
}

func trustMeta(ns, name, pgpoolNS, pgpool string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns,
		Labels:      map[string]string{LabelManagedBy: ManagerName, LabelInstance: pgpool},
		Annotations: map[string]string{AnnotationCAOf: pgpoolNS + "/" + pgpool}}
}

// TrustConfigMap is the client CA ConfigMap name in namespace ns for the
// pgpool pgpoolNS/pgpool.
func TrustConfigMap(ns, name, pgpoolNS, pgpool string, ca []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: trustMeta(ns, name, pgpoolNS, pgpool), Data: map[string]string{TrustKey: string(ca)}}
}

// TrustBundle is a trust-manager Bundle that syncs ca as ConfigMap name
// (key ca.crt) into the namespaces listed and those selector picks; the
// copies carry the same marks as the Bundle.
func TrustBundle(name, pgpoolNS, pgpool string, ca []byte, namespaces []string, selector *metav1.LabelSelector) *unstructured.Unstructured {
	meta := trustMeta("", name, pgpoolNS, pgpool)
	target := map[string]any{"configMap": map[string]any{"key": TrustKey, "metadata": map[string]any{
		"labels": toAny(meta.Labels), "annotations": toAny(meta.Annotations)}}}
	if sel := bundleSelector(namespaces, selector); sel != nil {
		target["namespaceSelector"] = sel
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Bundles.GroupVersion().String(), "kind": "Bundle",
		"metadata": map[string]any{"name": name, "labels": toAny(meta.Labels), "annotations": toAny(meta.Annotations)},
		"spec":     map[string]any{"sources": []any{map[string]any{"inLine": string(ca)}}, "target": target},
	}}
}

// bundleSelector: the namespaces by name (kubernetes.io/metadata.name In),
// and the selector's own terms. trust-manager ANDs a selector's terms, so
// both at once would pick only what both pick: the caller gives one.
func bundleSelector(namespaces []string, sel *metav1.LabelSelector) map[string]any {
	if len(namespaces) > 0 {
		ns := append([]string(nil), namespaces...)
		sort.Strings(ns)
		vals := make([]any, len(ns))
		for i, n := range ns {
			vals[i] = n
		}
		return map[string]any{"matchExpressions": []any{map[string]any{"key": corev1.LabelMetadataName, "operator": "In", "values": vals}}}
	}
	if sel == nil {
		return nil
	}
	out := map[string]any{}
	if len(sel.MatchLabels) > 0 {
		out["matchLabels"] = toAny(sel.MatchLabels)
	}
	var exprs []any
	for _, e := range sel.MatchExpressions {
		vals := make([]any, len(e.Values))
		for i, v := range e.Values {
			vals[i] = v
		}
		x := map[string]any{"key": e.Key, "operator": string(e.Operator)}
		if len(vals) > 0 {
			x["values"] = vals
		}
		exprs = append(exprs, x)
	}
	if len(exprs) > 0 {
		out["matchExpressions"] = exprs
	}
	return out
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
