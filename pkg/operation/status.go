package operation

import (
	"context"
	"fmt"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
)

// Collect reads everything `tls status` shows about t; unless verifyMode
// is "false", it proves by handshake what each pod and backend serves
// (each bounded by timeout).
func Collect(ctx context.Context, c *Clients, t *pgpool.Target, verifyMode string, timeout time.Duration) *status.Status {
	pc := conf.ParsePgpoolConf(t.Config.PgpoolConf)
	st := status.Status{Workload: t.String(), Config: t.Config.Kind + " " + t.Config.Name, SSL: t.State.Enabled,
		SSLMode: t.State.SSLMode, AuthMode: t.State.AuthMode, HBAEnforced: t.State.HBAEnforced, Issuer: t.State.Issuer, TLSVolume: t.State.VolumePresent,
		TLSMountPath: t.TLSMountPath, LastOp: t.Annotations[pgpool.AnnotationLastOperation], Paths: map[string]string{}}
	st.Layout = t.Layout.Name()
	for _, m := range planner.Managers(t) {
		st.ManagedBy = append(st.ManagedBy, fmt.Sprintf("%s: %s (%s): %s", m.What, m.Owner.Tool, m.Owner.Name, m.Owner.Then))
	}
	if o := t.Layout.Owner(t); o != nil {
		st.Owner = fmt.Sprintf("%s %s/%s (%s)", o.Kind, t.Namespace, o.Name, o.APIVersion)
	}
	if o := t.Owner; o != nil {
		st.OwnerSays, st.OwnerDiffers, st.OwnerPending = o.Spec.Summary(), o.Spec.Differences(t.State), o.Pending
		switch {
		case o.PausedByUs():
			st.OwnerPaused = fmt.Sprintf("by kubectl-pgpool (%s): unless that run is still going, it did not end; run its command again, or `kubectl pgpool tls rollback %s`, to lift the pause", o.Paused.Message, t.Name)
		case o.Paused != nil:
			st.OwnerPaused = fmt.Sprintf("by someone else (reason %s: %s)", o.Paused.Reason, o.Paused.Message)
		}
	}
	for _, k := range []string{"ssl_cert", "ssl_key", "ssl_ca_cert"} {
		if v, ok := pc.Get(k); ok {
			st.Paths[k] = v
		}
	}
	for _, n := range []string{pgpool.ServerCertName(t.Name), pgpool.ClientCertName(t.Name)} {
		crt := t.Certificates[n]
		if crt == nil {
			continue
		}
		cs := status.CertStatus{Name: n, Ready: tls.IsReady(crt), Revision: tls.Revision(crt)}
		if sec, err := c.Core.Secrets(t.Namespace).Get(ctx, crt.Spec.SecretName, metav1.GetOptions{}); err == nil {
			cs.Secret, _ = tls.ReadSecret(sec)
		}
		st.Certificates = append(st.Certificates, cs)
	}
	sel := tls.LabelInstance + "=" + t.Name + "," + pgpool.LabelUser
	if users, err := c.CertManager.Certificates(t.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel}); err == nil {
		for _, cr := range users.Items {
			cs := status.ClientCertStatus{User: cr.Labels[pgpool.LabelUser], Secret: cr.Spec.SecretName, Ready: tls.IsReady(&cr)}
			if cr.Status.NotAfter != nil {
				cs.NotAfter = cr.Status.NotAfter.Time
			}
			st.ClientCerts = append(st.ClientCerts, cs)
		}
	}
	for i := range t.Pods {
		st.Pods = append(st.Pods, status.PodStatus{Name: t.Pods[i].Name, Ready: pgpool.PodReady(&t.Pods[i]), UID: string(t.Pods[i].UID)})
	}
	c.endpoints(ctx, t, st.Pods)
	var trust []byte
	if t.Bundle != nil {
		st.CABundle = &status.BundleStatus{ConfigMap: t.Bundle.Name, Issuer: tls.Subjects([]byte(t.Bundle.Data[tls.IssuerCAKey])),
			Previous: tls.Subjects([]byte(t.Bundle.Data[tls.PreviousCAKey])), Backend: tls.Subjects([]byte(t.Bundle.Data[tls.BackendCAKey]))}
		trust = []byte(t.Bundle.Data[tls.BundleKey])
	} else if sec, err := c.Core.Secrets(t.Namespace).Get(ctx, pgpool.ServerCertName(t.Name), metav1.GetOptions{}); err == nil {
		trust = sec.Data["ca.crt"]
	}
	if verifyMode != runner.VerifyOff {
		c.probePods(ctx, t, st.Pods, timeout)
		st.Backends = c.checkBackends(ctx, t, tls.Pool(trust), timeout)
	}
	return &st
}

// endpoints fills in, for each pod, whether it is a ready endpoint of each
// of the pgpool's Services (those without EndpointSlices are left out).
func (c *Clients) endpoints(ctx context.Context, t *pgpool.Target, pods []status.PodStatus) {
	if c.EndpointSlices == nil || len(t.Services) == 0 {
		return
	}
	sel := fmt.Sprintf("%s in (%s)", discoveryv1.LabelServiceName, strings.Join(t.Services, ","))
	slices, err := c.EndpointSlices.EndpointSlices(t.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return // not allowed, or not served: status shows what it can
	}
	for _, es := range slices.Items {
		svc := es.Labels[discoveryv1.LabelServiceName]
		for i := range pods {
			if pods[i].Endpoint == nil {
				pods[i].Endpoint = map[string]bool{}
			}
			if _, seen := pods[i].Endpoint[svc]; !seen {
				pods[i].Endpoint[svc] = false
			}
			for _, ep := range es.Endpoints {
				if ep.TargetRef != nil && string(ep.TargetRef.UID) == pods[i].UID && ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					pods[i].Endpoint[svc] = true
				}
			}
		}
	}
}

// probePods fills in each pod's handshake result (each bounded by
// timeout). Once a pod cannot be reached at all (a kwok node has no kubelet
// to port-forward), the rest are skipped.
func (c *Clients) probePods(ctx context.Context, t *pgpool.Target, pods []status.PodStatus, timeout time.Duration) {
	dial := verify.PortForwardDialer(c.Config, c.Core, t.Namespace, t.Port())
	want, wantErr := verify.Expectation(ctx, c.Core, t.Namespace, t.Name, t.State.Enabled)
	unreachable := ""
	for i := range pods {
		p := &pods[i]
		if unreachable != "" {
			p.Check, p.Detail = "skipped", "pod "+unreachable+" could not be reached"
			continue
		}
		if wantErr != nil {
			p.Check, p.Detail = "error", wantErr.Error()
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		proof := verify.Prove(pctx, dial, p.Name, want)
		cancel()
		p.Served, p.Check, p.Detail = proof.Served, proof.Check, proof.Detail
		if proof.Check == "unreachable" {
			unreachable = p.Name
		}
	}
}

// StatusOf discovers the pgpool ref names and collects its status.
func StatusOf(ctx context.Context, c *Clients, ref discover.Ref, verifyMode string, timeout time.Duration) (*pgpool.Target, *status.Status, error) {
	t, err := discover.DiscoverRef(ctx, c.discover(), ref)
	if err != nil {
		return nil, nil, err
	}
	return t, Collect(ctx, c, t, verifyMode, timeout), nil
}
