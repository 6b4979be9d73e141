package discover

import (
	"context"
	"fmt"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/owners"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// findHelmStored reads Helm's storage of each release whose annotations
// mark the workload or its config: its release Secrets (Helm's default
// driver), for the newest revision, or that there is none. The labels
// alone do not tell a release from `helm template` output applied by
// something else.
func findHelmStored(ctx context.Context, c Clients, t *pgpool.Target) {
	var rels [][2]string
	seen := map[string]bool{}
	for _, o := range append(owners.Of(t.Labels, t.Annotations), owners.Of(t.Config.Labels, t.Config.Annotations)...) {
		if o.Tool != "Helm" || o.Release[1] == "" {
			continue
		}
		if o.Release[0] == "" {
			o.Release[0] = t.Namespace
		}
		if k := o.Release[0] + "/" + o.Release[1]; !seen[k] {
			seen[k] = true
			rels = append(rels, o.Release)
		}
	}
	if len(rels) == 0 {
		return
	}
	got := make([]owners.HelmStored, len(rels))
	_ = parallel.Each(len(rels), func(i int) error {
		got[i] = readHelmStored(ctx, c, rels[i][0], rels[i][1])
		return nil
	})
	t.HelmStored = map[string]owners.HelmStored{}
	for i, r := range rels {
		t.HelmStored[r[0]+"/"+r[1]] = got[i]
	}
}

func readHelmStored(ctx context.Context, c Clients, ns, name string) owners.HelmStored {
	l, err := c.Core.Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + name})
	if err != nil {
		why := err.Error()
		if apierrors.IsForbidden(err) {
			why = fmt.Sprintf("no permission to list Secrets in namespace %s", ns)
		}
		return owners.HelmStored{Why: why}
	}
	h := owners.HelmStored{Read: true}
	for _, s := range l.Items {
		v, err := strconv.Atoi(s.Labels["version"])
		if err != nil || v <= h.Revision {
			continue
		}
		h.Revision, h.Status, h.Deployed = v, s.Labels["status"], s.CreationTimestamp.Time
	}
	return h
}
