package planner

// The plan's changes to objects that exist, as patches for a source of
// truth (-o patch): what the user puts into the kustomization or the
// manifests that Argo CD or Flux apply, so that the change lasts.

import (
	"encoding/json"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// patchDocs fills in the plan's Patches, Creates and Unprinted: one
// document per changed object (the JSON patches of the pod template
// joined in order; merge patches of the config and the Certificates
// without the resourceVersion the run pins them to), the objects it
// creates, and the Secret data it does not print.
func patchDocs(t *pgpool.Target, p *plan.Plan) {
	at := map[plan.Object]int{}
	add := func(o plan.Object, jsonOps []any, merge map[string]any) {
		gv, _ := schema.ParseGroupVersion(o.APIVersion)
		i, ok := at[o]
		if !ok {
			i = len(p.Patches)
			at[o] = i
			p.Patches = append(p.Patches, plan.PatchDoc{Target: plan.PatchTarget{Group: gv.Group, Version: gv.Version, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}})
		}
		d := &p.Patches[i]
		if jsonOps != nil {
			var ops []any
			if d.Patch != "" {
				_ = json.Unmarshal([]byte(d.Patch), &ops)
			}
			b, _ := json.MarshalIndent(append(ops, jsonOps...), "", "  ")
			d.Patch = string(b)
			return
		}
		m := map[string]any{}
		if d.Patch != "" {
			_ = json.Unmarshal([]byte(d.Patch), &m)
		}
		for k, v := range merge {
			m[k] = v
		}
		m["apiVersion"], m["kind"] = o.APIVersion, o.Kind
		meta, _ := m["metadata"].(map[string]any)
		if meta == nil {
			meta = map[string]any{}
		}
		delete(meta, "resourceVersion")
		meta["name"] = o.Name // the namespace is the target's (a copy elsewhere takes the patch too)
		m["metadata"] = meta
		b, _ := json.MarshalIndent(m, "", "  ")
		d.Patch = string(b)
	}
	for _, s := range p.Steps {
		var raw []byte
		switch spec := s.Spec.(type) {
		case plan.WorkloadPatchSpec:
			var ops []any
			if json.Unmarshal(spec.Patch, &ops) == nil {
				add(s.Object, ops, nil)
			}
			continue
		case plan.ConfigPatchSpec:
			if s.Object.Kind == "Secret" {
				p.Unprinted = append(p.Unprinted, "Secret "+s.Object.Namespace+"/"+s.Object.Name+": its new data (pgpool.conf may hold passwords; the plan's diff shows the change, with passwords masked)")
				continue
			}
			raw = t.Layout.ConfigPatch(pgpool.Config{Kind: s.Object.Kind, Name: s.Object.Name}, spec.PgpoolConf, spec.PoolHBA)
		case plan.CertificatePatchSpec:
			raw = spec.Patch
		case plan.OwnerPatchSpec:
			raw = spec.Patch
		case plan.ApplyCertificateSpec, plan.ApplyBundleSpec, plan.ApplyConfigMapSpec:
			if !slices.Contains(p.Creates, s.Object) {
				p.Creates = append(p.Creates, s.Object)
			}
			continue
		default:
			continue
		}
		m := map[string]any{}
		if json.Unmarshal(raw, &m) == nil && !strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
			add(s.Object, nil, m)
		}
	}
}
