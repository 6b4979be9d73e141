package runner

// The verify step: the end state read back and every pod proven.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/parallel"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/restart"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
)

func (r *Runner) verify(ctx context.Context, s plan.Step, spec plan.VerifySpec, report func(string)) (string, error) {
	ns := s.Object.Namespace
	on := spec.Check.TLS
	ssl := map[bool]string{true: "on", false: "off"}[on]
	// The reads are independent: the config, the workload, the server
	// Secret and the CA bundle are read while the pods are waited for.
	var (
		problems   []string
		pgpoolConf string
		workload   *unstructured.Unstructured
		sec        *corev1.Secret
		bundle     *corev1.ConfigMap
		pods       []corev1.Pod
	)
	kind, cname := spec.Config.Kind, spec.Config.Name
	certNames := []string{pgpool.ServerCertName(r.Target.Name), pgpool.ClientCertName(r.Target.Name)}
	crts := make([]*cmapi.Certificate, len(certNames))
	var crtErr atomic.Bool
	err := parallel.All(func() error {
		// 1. The config says what it should (read where the layout keeps it;
		// in the pod template: read below, from the workload).
		if _, ok := r.Target.Layout.TemplateConf(&r.Target.Template.Spec.Containers[r.Target.ContainerIndex]); ok {
			return nil
		}
		data := map[string]string{}
		if kind == "Secret" {
			cs, err := r.Clients.Core.Secrets(ns).Get(ctx, cname, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("verify: get Secret %s/%s: %w", ns, cname, err)
			}
			for k, v := range cs.Data {
				data[k] = string(v)
			}
		} else {
			cm, err := r.Clients.Core.ConfigMaps(ns).Get(ctx, cname, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("verify: get ConfigMap %s/%s: %w", ns, cname, err)
			}
			data = cm.Data
		}
		pgpoolConf, _, _ = r.Target.Layout.ConfigFiles(data)
		return nil
	}, func() error {
		// The Certificates as the operation leaves them: their digests go
		// into the backup when the run is recorded (read now, beside the
		// rest, so the record step only writes).
		return parallel.Each(len(certNames), func(i int) error {
			c, err := r.Clients.CertManager.Certificates(ns).Get(ctx, certNames[i], metav1.GetOptions{})
			switch {
			case err == nil:
				crts[i] = c
			case !apierrors.IsNotFound(err):
				crtErr.Store(true) // read again by the record
			}
			return nil
		})
	}, func() (err error) {
		// 2. The pod template mounts the TLS volume or not.
		workload, err = r.Clients.Dynamic.Resource(r.Target.GVR).Namespace(ns).Get(ctx, s.Object.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("verify: get %s %s/%s: %w", s.Object.Kind, ns, s.Object.Name, err)
		}
		return nil
	}, func() (err error) {
		// 3. Every pod is new and Ready (a roll another run started, or
		// the controller's, may still be ending: wait for it).
		pods, err = restart.WaitReady(ctx, r.Clients.Core, ns, spec.Pods.Selector, spec.Pods.Want, r.Target.Owns, restart.Options{OnProgress: report})
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		return nil
	}, func() (err error) {
		// 4. The served certificate comes from the expected issuer.
		if !on {
			return nil
		}
		sec, err = r.Clients.Core.Secrets(ns).Get(ctx, pgpool.ServerCertName(r.Target.Name), metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("verify: get Secret %s/%s: %w", ns, pgpool.ServerCertName(r.Target.Name), err)
		}
		return nil
	}, func() (err error) {
		if on {
			bundle, err = r.readBundle(ctx, ns)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	if !crtErr.Load() {
		r.digestsAfter = digestsOf(r.Target, certNames, crts, workload)
	}
	if pc, ok := templateConf(r.Target, workload); ok {
		pgpoolConf, kind, cname = pc, s.Object.Kind, s.Object.Name+" (its environment)"
	}
	if conf.ParsePgpoolConf(pgpoolConf).Bool("ssl") != on {
		problems = append(problems, fmt.Sprintf("%s %s/%s: pgpool.conf does not have ssl %s", kind, ns, cname, ssl))
	}
	if mounted(workload, spec.TLSMountPath) != on {
		problems = append(problems, fmt.Sprintf("%s %s/%s: TLS volume at %s is %s", s.Object.Kind, ns, s.Object.Name, spec.TLSMountPath, map[bool]string{true: "still mounted", false: "not mounted"}[mounted(workload, spec.TLSMountPath)]))
	}
	known := knownUIDs(spec.Pods)
	readyN := 0
	handshakes, logins := 0, 0
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || !r.Target.Owns(p) {
			// An evicted pod of a Deployment may still be shutting down
			// (its replacement has another name): it is on its way out. A
			// pod that only shares the labels is not the workload's.
			continue
		}
		if known[p.UID] {
			problems = append(problems, fmt.Sprintf("pod %s was not restarted", p.Name))
		}
		if pgpool.PodReady(p) {
			readyN++
			var leaf []byte
			if sec != nil {
				leaf = sec.Data[corev1.TLSCertKey]
			}
			if r.Verify != VerifyOff && r.stillProven(p, on, leaf, spec.Check.Login) {
				// Proven in this run's roll, and nothing changed since.
				handshakes++
				if spec.Check.Login != "" {
					logins++
				}
				continue
			}
			hs, err := r.checkPod(ctx, p.Name, on, func(string) {})
			if err != nil {
				problems = append(problems, err.Error())
			} else if hs != "" && hs != "handshake not checked" {
				handshakes++
				if _, err := r.refusePod(ctx, p.Name, spec.Check.Refuse, on, func(string) {}); err != nil {
					problems = append(problems, err.Error())
				}
				if spec.Check.Login != "" {
					if _, err := r.loginPod(ctx, p.Name, on, spec.Check.Login); err != nil {
						problems = append(problems, err.Error())
					} else {
						logins++
					}
				}
			}
		}
	}
	if readyN < spec.Pods.Want {
		problems = append(problems, fmt.Sprintf("%d of %d pods Ready", readyN, spec.Pods.Want))
	}
	detail := ""
	if on {
		if got := sec.Annotations[cmapi.IssuerNameAnnotationKey]; got != spec.Issuer {
			problems = append(problems, fmt.Sprintf("Secret %s/%s was issued by %q, expected %q", ns, sec.Name, got, spec.Issuer))
		}
		if p := bundleProblem(bundle, sec); p != "" {
			problems = append(problems, p)
		}
		if info, err := tls.ReadSecret(sec); err == nil {
			detail = fmt.Sprintf("; server certificate serial %s, issuer %s, expires %s", info.Serial, info.Issuer, info.NotAfter.UTC().Format(time.RFC3339))
		} else {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return "", fmt.Errorf("verify failed: %s", strings.Join(problems, "; "))
	}
	hs := fmt.Sprintf("; handshake checked on %d pods", handshakes)
	if spec.Check.Login != "" {
		hs += fmt.Sprintf(", login with SELECT 1 on %d", logins)
	}
	if rf := spec.Check.Refuse; rf != nil && (rf.Plaintext || rf.Certless) && handshakes > 0 {
		hs += ", logins without a credential refused on each of those"
	}
	switch {
	case r.Verify == VerifyOff:
		hs = "; handshake check off (--verify=false)"
	case r.verifyUnavailable && handshakes == 0:
		hs = "; handshake not checked (pods cannot be reached by port-forward)"
	case handshakes < readyN:
		hs = fmt.Sprintf("; handshake checked on %d of %d pods (not reached by port-forward during the run: %s)", handshakes, readyN, strings.Join(slices.Compact(slices.Sorted(slices.Values(r.unreached))), ", "))
	}
	return fmt.Sprintf("%d pods replaced and Ready, ssl %s%s%s", readyN, ssl, detail, hs), nil
}

// templateConf is what the workload's pod template sets of pgpool.conf,
// for a layout that keeps it there.
func templateConf(t *pgpool.Target, u *unstructured.Unstructured) (string, bool) {
	cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if t.ContainerIndex >= len(cs) {
		return "", false
	}
	m, _ := cs[t.ContainerIndex].(map[string]any)
	var c corev1.Container
	if runtime.DefaultUnstructuredConverter.FromUnstructured(m, &c) != nil {
		return "", false
	}
	return t.Layout.TemplateConf(&c)
}

func mounted(u *unstructured.Unstructured, path string) bool {
	cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		cm, _ := c.(map[string]any)
		ms, _, _ := unstructured.NestedSlice(cm, "volumeMounts")
		for _, m := range ms {
			mm, _ := m.(map[string]any)
			if mm["mountPath"] == path {
				return true
			}
		}
	}
	return false
}

// loginPod logs in through one pod and runs SELECT 1: with the client
// certificate ("cert") or the --verify-login user ("password"), over TLS
// when tlsOn.
func (r *Runner) loginPod(ctx context.Context, pod string, tlsOn bool, how string) (string, error) {
	l := verify.Login{TLS: tlsOn, ServerName: "localhost", Database: r.Database}
	if l.Database == "" {
		l.Database = "postgres"
	}
	want, err := r.expectation(ctx, tlsOn)
	if err != nil {
		return "", err
	}
	l.Roots = want.Roots
	switch how {
	case "cert":
		if want.ClientCert == nil || want.ClientCert.Leaf == nil {
			return "", fmt.Errorf("login check: Secret %s/%s holds no usable client certificate", r.Target.Namespace, pgpool.ClientCertName(r.Target.Name))
		}
		l.ClientCert, l.User = want.ClientCert, want.ClientCert.Leaf.Subject.CommonName
	case "password":
		l.User, l.Password = r.Password.User, r.Password.Password
		if r.Password.Database != "" {
			l.Database = r.Password.Database
		}
		l.ClientCert = want.ClientCert
	}
	res, err := verify.LoginAndQuery(ctx, r.dialer(), pod, l)
	if err != nil {
		return "", err
	}
	backend := "plain"
	if res.BackendSSL {
		backend = "TLS"
	}
	via := "without TLS"
	if res.TLSVersion != "" {
		via = "over " + res.TLSVersion
	}
	msg := fmt.Sprintf("logged in as %s %s, SELECT 1 answered (pgpool to backend: %s)", l.User, via, backend)
	if reloads, ok := pgpool.ReloadsCertificates(res.PgpoolVersion); ok {
		v := strings.Fields(res.PgpoolVersion)[0]
		if reloads {
			msg += fmt.Sprintf("; pgpool %s would reload certificates on SIGHUP, but no released pgpool does yet: pods are restarted", v)
		} else {
			msg += fmt.Sprintf("; pgpool %s loads certificates only at start: a restart is what makes it serve a new one", v)
		}
	}
	return msg, nil
}
