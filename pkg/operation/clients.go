package operation

import (
	"errors"

	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/typed/certmanager/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	policyv1client "k8s.io/client-go/kubernetes/typed/policy/v1"
	"k8s.io/client-go/rest"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/apiretry"
	discoverpkg "github.com/kubectl-pgpool/kubectl-pgpool/pkg/discover"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/runner"
)

// Clients are every API client an operation and status use, built from one
// REST config (only the typed groups the plugin needs, to keep the binary
// small): the Runner's clients plus discovery and authorization.
type Clients struct {
	runner.Clients
	Discovery     discovery.DiscoveryInterface
	Authorization authorizationv1client.AuthorizationV1Interface
}

// ClientsFor builds the clients the plugin runs with from the user's REST
// config: transient API errors retried under every client, its user agent,
// and a client-side rate limit for parallel pgpools at once.
func ClientsFor(cfg *rest.Config, parallel int) (*Clients, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(apiretry.Wrap)
	cfg.UserAgent = "kubectl-pgpool"
	if cfg.WarningHandler == nil && cfg.WarningHandlerWithContext == nil {
		cfg.WarningHandlerWithContext = runner.WarningRouter{}
	}
	if cfg.QPS == 0 {
		// kubectl's limit is 50/100 per command; a fleet of N pgpools at
		// once gets N times that (the API server's own priority and
		// fairness still applies).
		scale := max(parallel, 1)
		cfg.QPS, cfg.Burst = float32(50*scale), 100*scale
	}
	return NewClients(cfg)
}

// NewClients builds the clients from a REST config; they share one HTTP
// client (one connection pool to the API server).
func NewClients(cfg *rest.Config) (*Clients, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	c := &Clients{}
	c.Config = cfg
	var errs [8]error
	c.Core, errs[0] = corev1client.NewForConfigAndClient(cfg, hc)
	c.Policy, errs[1] = policyv1client.NewForConfigAndClient(cfg, hc)
	c.Coordination, errs[2] = coordinationv1client.NewForConfigAndClient(cfg, hc)
	c.CertManager, errs[3] = cmclient.NewForConfigAndClient(cfg, hc)
	c.Dynamic, errs[4] = dynamic.NewForConfigAndClient(cfg, hc)
	c.Authorization, errs[5] = authorizationv1client.NewForConfigAndClient(cfg, hc)
	c.Discovery, errs[6] = discovery.NewDiscoveryClientForConfigAndClient(cfg, hc)
	c.EndpointSlices, errs[7] = discoveryv1client.NewForConfigAndClient(cfg, hc)
	return c, errors.Join(errs[:]...)
}

func (c *Clients) discover() discoverpkg.Clients {
	return discoverpkg.Clients{Core: c.Core, Dynamic: c.Dynamic, CertManager: c.CertManager}
}
