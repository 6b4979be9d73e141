package operation

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/schedule"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
)

// Report is what support needs of one pgpool (tls report), read with the
// caller's own permissions: objects (to redact and write as YAML), texts
// (the config files and logs, to redact), the values of the Secrets the
// pgpool uses (never written: every file is scrubbed of them), and what
// could not be read, each with why.
type Report struct {
	Target  *pgpool.Target
	Objects map[string]any
	Texts   map[string]string
	Secrets []string
	Missing []string
}

// LogLines is how much of each container's log a report keeps.
const LogLines = 200

// CollectReport reads the pgpool ref names and everything around it that
// a support case needs. Only discovery failing is an error: anything else
// it may not read is listed in Missing, and the rest goes on.
func CollectReport(ctx context.Context, c *Clients, ref discover.Ref, timeout time.Duration) (*Report, error) {
	t, st, err := StatusOf(ctx, c, ref, runner.VerifyOn, timeout)
	if err != nil {
		return nil, err
	}
	ns := t.Namespace
	r := &Report{Target: t, Objects: map[string]any{}, Texts: map[string]string{}}
	miss := func(what string, err error) {
		r.Missing = append(r.Missing, fmt.Sprintf("%s: %v", what, err))
	}
	r.Objects["status.yaml"] = st
	if v, err := c.Discovery.ServerVersion(); err == nil {
		r.Texts["server-version.txt"] = v.String() + "\n"
	} else {
		miss("the server's version", err)
	}
	if w, err := c.Dynamic.Resource(t.GVR).Namespace(ns).Get(ctx, t.Name, metav1.GetOptions{}); err == nil {
		w.SetManagedFields(nil)
		r.Objects["workload.yaml"] = w.Object
	} else {
		miss(t.String(), err)
	}
	r.Texts["config/pgpool.conf"] = t.Config.PgpoolConf
	r.Texts["config/pool_hba.conf"] = t.Config.PoolHBA
	r.Objects["owners.yaml"] = map[string]any{"owner": st.Owner, "ownerSays": st.OwnerSays, "ownerDiffers": st.OwnerDiffers, "managedBy": st.ManagedBy, "layout": st.Layout}

	if l, err := c.CertManager.Certificates(ns).List(ctx, metav1.ListOptions{}); err == nil {
		var keep []any
		for i := range l.Items {
			crt := &l.Items[i]
			if crt.Labels[tls.LabelInstance] == t.Name || t.Certificates[crt.Name] != nil {
				crt.ManagedFields = nil
				keep = append(keep, crt)
			}
		}
		r.Objects["certificates.yaml"] = keep
	} else {
		miss("Certificates", err)
	}
	if l, err := c.CertManager.CertificateRequests(ns).List(ctx, metav1.ListOptions{}); err == nil {
		var keep []any
		for i := range l.Items {
			cr := &l.Items[i]
			if strings.HasPrefix(cr.Name, t.Name+"-") {
				cr.ManagedFields = nil
				keep = append(keep, cr)
			}
		}
		r.Objects["certificaterequests.yaml"] = keep
	} else {
		miss("CertificateRequests", err)
	}
	if l, err := c.CertManager.Issuers(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for i := range l.Items {
			l.Items[i].ManagedFields = nil
		}
		r.Objects["issuers.yaml"] = l.Items
	} else {
		miss("Issuers", err)
	}
	if t.State.Issuer.Kind == "ClusterIssuer" {
		if ci, err := c.CertManager.ClusterIssuers().Get(ctx, t.State.Issuer.Name, metav1.GetOptions{}); err == nil {
			ci.ManagedFields = nil
			r.Objects["clusterissuer.yaml"] = ci
		} else {
			miss("ClusterIssuer "+t.State.Issuer.Name, err)
		}
	}
	// The plugin's own objects: the CA bundle (public), and of the backup
	// Secret and the lock only what they say about themselves.
	if t.Bundle != nil {
		b := t.Bundle.DeepCopy()
		b.ManagedFields = nil
		r.Objects["ca-bundle.yaml"] = b
	}
	if s, err := c.Core.Secrets(ns).Get(ctx, pgpool.BackupName(t.Name), metav1.GetOptions{}); err == nil {
		keys := slices.Sorted(maps.Keys(s.Data))
		r.Objects["backup-metadata.yaml"] = map[string]any{"name": s.Name, "labels": s.Labels, "annotations": s.Annotations, "created": s.CreationTimestamp, "keys": keys}
	} else if !apierrors.IsNotFound(err) {
		miss("the backup Secret's metadata", err)
	}
	if l, err := c.Coordination.Leases(ns).Get(ctx, pgpool.LeaseName(t.Name), metav1.GetOptions{}); err == nil {
		l.ManagedFields = nil
		r.Objects["lock.yaml"] = l
	} else if !apierrors.IsNotFound(err) {
		miss("the lock Lease", err)
	}
	if cj, err := c.Dynamic.Resource(schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}).Namespace(ns).Get(ctx, schedule.Name(t.Name), metav1.GetOptions{}); err == nil {
		cj.SetManagedFields(nil)
		r.Objects["schedule-cronjob.yaml"] = cj.Object
	} else if !apierrors.IsNotFound(err) {
		miss("the schedule's CronJob", err)
	}

	// Events about any of it.
	names := map[string]bool{t.Name: true, pgpool.LeaseName(t.Name): true, tls.CABundleName(t.Name): true, t.Config.Name: true}
	for n := range t.Certificates {
		names[n] = true
	}
	for _, p := range t.Pods {
		names[p.Name] = true
	}
	if evs, err := c.Core.Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
		sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].LastTimestamp.Before(&evs.Items[j].LastTimestamp) })
		var b strings.Builder
		for _, e := range evs.Items {
			if names[e.InvolvedObject.Name] || strings.HasPrefix(e.InvolvedObject.Name, t.Name+"-") {
				fmt.Fprintf(&b, "%s %s %s/%s %s: %s\n", e.LastTimestamp.UTC().Format(time.RFC3339), e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
		r.Texts["events.txt"] = b.String()
	} else {
		miss("Events", err)
	}

	// The pods, and the last lines of each container's log.
	lines := int64(LogLines)
	for i := range t.Pods {
		p := t.Pods[i].DeepCopy()
		p.ManagedFields = nil
		r.Objects["pods/"+p.Name+".yaml"] = p
		for _, ctr := range p.Spec.Containers {
			rc, err := c.Core.Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: ctr.Name, TailLines: &lines}).Stream(ctx)
			if err != nil {
				miss(fmt.Sprintf("the log of pod %s container %s", p.Name, ctr.Name), err)
				continue
			}
			b, err := io.ReadAll(io.LimitReader(rc, 4<<20))
			_ = rc.Close()
			if err != nil {
				miss(fmt.Sprintf("the log of pod %s container %s", p.Name, ctr.Name), err)
			}
			r.Texts[fmt.Sprintf("pods/%s/%s.log", p.Name, ctr.Name)] = string(b)
		}
	}

	// The values of every Secret the pgpool uses, to scrub from every file.
	for _, name := range secretsUsed(t) {
		s, err := c.Core.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			miss("Secret "+name+" (its values cannot be scrubbed from the logs; the config files are redacted all the same)", err)
			continue
		}
		for k, v := range s.Data {
			switch k {
			case "ca.crt", "tls.crt", "username", "user":
				continue // public
			}
			if len(v) >= 4 {
				r.Secrets = append(r.Secrets, string(v))
			}
		}
	}
	return r, nil
}

// secretsUsed names the Secrets t's pods read (env, envFrom, volumes,
// projected volumes), its config Secret, and its Certificates' Secrets.
func secretsUsed(t *pgpool.Target) []string {
	seen := map[string]bool{}
	add := func(n string) {
		if n != "" {
			seen[n] = true
		}
	}
	spec := t.Template.Spec
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					add(e.ValueFrom.SecretKeyRef.Name)
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					add(e.SecretRef.Name)
				}
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			add(v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					add(s.Secret.Name)
				}
			}
		}
	}
	if t.Config.Kind == "Secret" {
		add(t.Config.Name)
	}
	for _, crt := range t.Certificates {
		add(crt.Spec.SecretName)
	}
	return slices.Sorted(maps.Keys(seen))
}
