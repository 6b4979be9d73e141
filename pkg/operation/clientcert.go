package operation

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls/issuing"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// ClientCert is a client certificate to issue for one database user.
type ClientCert struct {
	// User is the database user: the certificate's CN.
	User string
	// Secret names the Secret and the Certificate ("": NAME-client-USER).
	Secret string
	// Duration is its lifetime (0: the pgpool's client certificate's).
	Duration time.Duration
}

// InputError is a request that cannot be carried out as given (bad
// input): nothing was written.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// IssueClientCert issues a Certificate for one user from the issuer of the
// pgpool's client certificate, with its subject and key, waits (up to
// timeout, reporting progress) until cert-manager has issued it, and
// returns its Secret. It refuses names that are the pgpool's own, or
// another user's, or not the plugin's.
func IssueClientCert(ctx context.Context, c *Clients, ns, name string, cc ClientCert, timeout time.Duration, progress func(string)) (*corev1.Secret, error) {
	base, err := c.CertManager.Certificates(ns).Get(ctx, pgpool.ClientCertName(name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("pgpool %s/%s has no client Certificate %s: client certificates come from its TLS setup; run `kubectl pgpool tls add %s --issuer NAME --client-auth-mode cert` first", ns, name, pgpool.ClientCertName(name), name)
	} else if err != nil {
		return nil, fmt.Errorf("get Certificate %s/%s: %w", ns, pgpool.ClientCertName(name), err)
	}
	secret := cc.Secret
	if secret == "" {
		secret = name + "-client-" + strings.ToLower(strings.NewReplacer("_", "-", "@", "-", ".", "-").Replace(cc.User))
	}
	reserved := map[string]string{pgpool.ServerCertName(name): "the pgpool's own server Certificate", pgpool.ClientCertName(name): "the pgpool's own client Certificate",
		pgpool.BackupName(name): "the pgpool's backup Secret", tls.CABundleName(name): "the pgpool's CA bundle"}
	if what, ok := reserved[secret]; ok {
		return nil, &InputError{fmt.Errorf("--user %s maps to %s/%s, %s: pass --secret with another name", cc.User, ns, secret, what)}
	}
	if cur, err := c.CertManager.Certificates(ns).Get(ctx, secret, metav1.GetOptions{}); err == nil {
		if !tls.Ours(cur, name) {
			return nil, &tls.NotOursError{Kind: "Certificate", Namespace: ns, Name: secret}
		}
		if u := cur.Labels[pgpool.LabelUser]; u != cc.User {
			return nil, &InputError{fmt.Errorf("Certificate %s/%s was issued for user %q (CN=%s); --user %s maps to the same name and would rewrite it: pass --secret with another name", ns, secret, u, cur.Spec.CommonName, cc.User)}
		}
	}
	labels := map[string]string{tls.LabelManagedBy: tls.ManagerName, tls.LabelInstance: name, pgpool.LabelUser: cc.User}
	crt := &cmapi.Certificate{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: "Certificate"},
		ObjectMeta: metav1.ObjectMeta{Name: secret, Namespace: ns, Labels: labels},
		Spec: cmapi.CertificateSpec{
			SecretName:     secret,
			SecretTemplate: &cmapi.CertificateSecretTemplate{Labels: labels},
			CommonName:     cc.User,
			Subject:        base.Spec.Subject,
			Usages:         []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageClientAuth},
			IssuerRef:      base.Spec.IssuerRef,
			PrivateKey:     base.Spec.PrivateKey,
			Duration:       base.Spec.Duration,
			RenewBefore:    base.Spec.RenewBefore,
		},
	}
	if cc.Duration > 0 {
		crt.Spec.Duration, crt.Spec.RenewBefore = &metav1.Duration{Duration: cc.Duration}, nil
	}
	if err := tls.Validate(crt, "--user"); err != nil {
		return nil, err
	}
	body, err := json.Marshal(crt)
	if err != nil {
		return nil, err
	}
	force := true
	started := time.Now()
	applied, err := c.CertManager.Certificates(ns).Patch(ctx, secret, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: runner.FieldManager, Force: &force})
	if err != nil {
		return nil, fmt.Errorf("apply Certificate %s/%s: %w", ns, secret, err)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	after := tls.Revision(applied)
	if tls.IsReady(applied) {
		after-- // unchanged and Ready already
	}
	if _, err := issuing.WaitReady(wctx, c.CertManager, ns, secret, after, started, progress); err != nil {
		return nil, fmt.Errorf("Certificate %s/%s for user %s: %w", ns, secret, cc.User, err)
	}
	sec, err := c.Core.Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get Secret %s/%s: %w", ns, secret, err)
	}
	return sec, nil
}
