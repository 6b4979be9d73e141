package testenv

// Running the plugin as the user, or as a ServiceAccount with only some
// permissions.

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/cmd"
)

// ServiceAccountConfig creates ServiceAccount name in ns and returns a REST
// config that authenticates as it with a token from the TokenRequest API.
func (e *Env) ServiceAccountConfig(t testing.TB, ns, name string) *rest.Config {
	t.Helper()
	ctx := Context(t, time.Minute)
	_, err := e.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create ServiceAccount %s/%s: %v", ns, name, err)
	}
	exp := int64(3600)
	tr, err := e.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("request a token for ServiceAccount %s/%s: %v", ns, name, err)
	}
	cfg := rest.AnonymousClientConfig(e.Config)
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// Plugin runs `kubectl pgpool ARGS...` in-process with kubeconfig and -n ns
// (bounded by d), and returns stdout, stderr and the command's error.
func Plugin(kubeconfig, ns string, d time.Duration, args ...string) (string, string, error) {
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	root := cmd.NewRootCmd(streams, cmd.BuildInfo{Version: "test"})
	root.SetArgs(append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// WaitAllowed waits until the credential cfg may do what attrs describe
// (SelfSubjectAccessReview as that credential). The RBAC authorizer sees a
// new Role or RoleBinding through its informers, a moment after the write;
// nothing can be watched for that, so this asks again every 50ms until the
// deadline.
func (e *Env) WaitAllowed(t testing.TB, cfg *rest.Config, attrs authorizationv1.ResourceAttributes) {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := Context(t, time.Minute)
	var last string
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		r, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}, metav1.CreateOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = r.Status.Reason
		return r.Status.Allowed, nil
	})
	if err != nil {
		t.Fatalf("waiting for RBAC to allow %s %s/%s in %s: %v (last: %s)", attrs.Verb, attrs.Resource, attrs.Subresource, attrs.Namespace, err, last)
	}
}

// ServiceAccountKubeconfig writes a kubeconfig for cfg (from
// ServiceAccountConfig) into a temp dir and returns its path.
func (e *Env) ServiceAccountKubeconfig(t testing.TB, cfg *rest.Config, ns string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q, certificate-authority-data: %q}
users:
- name: u
  user: {token: %q}
contexts:
- name: c
  context: {cluster: c, user: u, namespace: %q}
current-context: c
`, cfg.Host, b64(cfg.CAData, cfg.CAFile), cfg.BearerToken, ns)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func b64(data []byte, file string) string {
	if len(data) == 0 && file != "" {
		data, _ = os.ReadFile(file)
	}
	return base64.StdEncoding.EncodeToString(data)
}
